"""``view.sync_imports()``: imports that run locally and on a view's engines."""

from __future__ import annotations

import builtins
import contextlib
import sys

from . import ops


@contextlib.contextmanager
def sync_imports(view, local: bool = True, quiet: bool = False):
    """Import statements in the ``with`` block run here (if ``local``) and on ``view``'s engines.

    Only the block's own top-level imports are sent (not the imports those modules make);
    ``import x as y`` binds ``x`` on the engines, as in ipyparallel.  The engines' ImportErrors
    are raised when the block ends.  ``quiet``: no "importing numpy on engine(s)" lines.
    ``local=False`` imports only on the engines (the names are bound to placeholders here);
    ipyparallel raises NotImplementedError for it.
    """
    real_import = builtins.__import__
    block_frame = sys._getframe(2)  # the frame of the `with` block (below contextmanager's __enter__)
    sent, results = set(), []

    def view_import(name, globals=None, locals=None, fromlist=(), level=0):
        if sys._getframe(1) is not block_frame:  # an import made by the modules being imported
            return real_import(name, globals, locals, fromlist, level)
        module = real_import(name, globals, locals, fromlist, level) if local else None
        key = (name, tuple(fromlist or ()))
        if level <= 0 and key not in sent:
            sent.add(key)
            if not quiet:
                what = f"{', '.join(fromlist)} from {name}" if fromlist else name
                print(f"importing {what} on engine(s)")
            results.append(view.apply_async(ops.import_into_namespace, name, list(fromlist or ()), level))
        if module is None:
            module = _stand_in(name, fromlist)
        return module

    builtins.__import__ = view_import
    try:
        yield
    finally:
        builtins.__import__ = real_import
    for ar in results:
        ar.get()


def _stand_in(name: str, fromlist):
    """What ``import`` binds here with ``local=False``: a placeholder module (nothing is imported here)."""
    import types

    module = types.ModuleType(name)
    for key in fromlist or ():
        setattr(module, key, None)
    return module


__all__ = ["sync_imports"]
