"""Running user work: apply (functions) and execute (code through IPython)."""

from __future__ import annotations

import sys
import traceback
import types
import weakref
from typing import Callable, Optional

from ..client.errors import UnmetDependency
from ..client.serialize import SERIALIZER, SerializerMismatch, deserialize_call, serialize


_current: dict = {}
OK_CONTENT = {"status": "ok"}  # shared: callers must not modify it


def current_namespace() -> dict:
    """The user namespace of the engine running in this process."""
    ns = _current.get("ns")
    if ns is None:
        raise RuntimeError("not running inside a jupyter_hub_ctl engine")
    return ns


def bind(f):
    """``f`` with the engine's namespace as its globals, as a task function sent by value gets;
    ``f`` itself outside an engine (used by ``@require``/``@depend`` tasks for their inner functions)."""
    binder = _current.get("bind")
    return f if binder is None else binder(f)


def error_content(exc: BaseException, engine_info: dict, tb_lines: Optional[list] = None) -> dict:
    if tb_lines is None:
        tb_lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        # drop the engine's own frames from the top of the traceback
        tb_lines = [line for line in tb_lines if "jupyter_hub_ctl/engine/" not in line]
    return {
        "status": "error",
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": tb_lines,
        "engine_info": engine_info,
    }


class Executor:
    """Holds the user namespace and runs requests against it."""

    def __init__(self, engine_info: Callable[[str], dict], publish_display: Callable, publish_result: Callable,
                 publish_error: Callable):
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        _current["ns"] = self.namespace
        _current["bind"] = self._bind
        self._engine_info = engine_info
        self._publish_display = publish_display
        self._publish_result = publish_result
        self._publish_error = publish_error
        self._shell = None
        # by-value functions bound to the namespace, by the function as unpickled: functions the
        # client sends again arrive as the same object (serialize._load_function), bound once
        self._bound: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ apply
    def _bind(self, f):
        """Functions sent by value (interactive ones, lambdas) see the engine namespace as globals.

        Names they captured from the sender's globals are added where the engine
        namespace does not define them; the engine's own values win.
        """
        if type(f) is not types.FunctionType:
            return f
        bound = self._bound.get(f)  # a function the serializer's cache sent again
        if bound is None:
            mod = sys.modules.get(f.__module__ or "")
            if mod is not None and f.__globals__ is vars(mod) and f.__module__ != "__main__":
                return f
        ns = self.namespace
        for name, value in f.__globals__.items():
            if name not in ns and not name.startswith("__"):
                ns[name] = value
        if bound is None:
            bound = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
            bound.__kwdefaults__ = f.__kwdefaults__
            bound.__dict__.update(f.__dict__)
            self._bound[f] = bound
        return bound

    def apply(self, metadata: dict, buffers: list) -> tuple:
        """(content, result buffers, status) for an apply request."""
        if metadata.get("serializer") != SERIALIZER:
            exc = SerializerMismatch(
                "this is a jupyter_hub_ctl engine and the request was not made by jupyter_hub_ctl.Client "
                "(ipyparallel's client uses another payload format); use jupyter_hub_ctl.Client with these "
                "engines, or start ipyparallel engines (ipengine) for ipyparallel clients")
            return error_content(exc, self._engine_info("apply"), [f"SerializerMismatch: {exc}"]), [], "error"
        try:
            f, args, kwargs = deserialize_call(buffers)
            f = self._bind(f)
            result = f(*args, **kwargs)
        except UnmetDependency as e:
            return error_content(e, self._engine_info("apply")), [], "unmet"
        except KeyboardInterrupt as e:
            return error_content(e, self._engine_info("apply")), [], "error"
        except Exception as e:
            return error_content(e, self._engine_info("apply")), [], "error"
        try:
            bufs = serialize(result, "the result")
        except Exception as e:
            return error_content(e, self._engine_info("apply")), [], "error"
        return OK_CONTENT, bufs, "ok"

    # ------------------------------------------------------------------ execute
    def shell(self):
        if self._shell is None:
            from .shell import make_shell

            self._shell = make_shell(self.namespace, self._publish_display, self._publish_result)
        return self._shell

    def execute(self, content: dict, parent: dict) -> dict:
        code = content.get("code", "")
        if not isinstance(code, str):
            return error_content(TypeError("code must be a string"), self._engine_info("execute"))
        silent = bool(content.get("silent", False))
        shell = self.shell()
        shell.current_parent = parent
        result = shell.run_cell(code, store_history=not silent, silent=silent)
        err = result.error_before_exec or result.error_in_exec
        count = getattr(shell, "execution_count", 0)
        if err is not None:
            tb = shell.last_traceback_lines or traceback.format_exception(type(err), err, err.__traceback__)
            reply = error_content(err, self._engine_info("execute"), tb)
            self._publish_error({k: reply[k] for k in ("ename", "evalue", "traceback")})
            reply["execution_count"] = count
            return reply
        return {"status": "ok", "execution_count": count, "user_expressions": {}, "payload": []}

    def clear(self) -> None:
        keep = {"__name__", "__builtins__"}
        for k in list(self.namespace):
            if k not in keep:
                del self.namespace[k]
        if self._shell is not None:
            self._shell.reset_namespace()

