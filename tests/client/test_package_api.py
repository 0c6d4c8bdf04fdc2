"""``import jupyter_hub_ctl as ipp``: the names ipyparallel code uses, imported only when used."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_cheap_and_names_load_on_first_use():
    code = ("import sys, jupyter_hub_ctl as ipp\n"
            "heavy = [m for m in ('zmq', 'jupyter_hub_ctl.client.client', 'IPython') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "names = ['Client', 'Reference', 'require', 'depend', 'dependent', 'interactive', 'Dependency',\n"
            "         'RemoteError', 'CompositeError', 'EngineError', 'TaskAborted', 'AsyncResult', 'AsyncMapResult',\n"
            "         'AsyncHubResult', 'DirectView', 'LoadBalancedView', 'BroadcastView', 'ViewExecutor',\n"
            "         'remote', 'parallel', 'FIRST_EXCEPTION', 'ALL_COMPLETED', 'FIRST_COMPLETED']\n"
            "missing = [n for n in names if not hasattr(ipp, n)]\n"
            "assert not missing, missing\n"
            "assert issubclass(ipp.CompositeError, ipp.RemoteError)\n"
            "assert ipp.error.CompositeError is ipp.CompositeError and ipp.error.TimeoutError is TimeoutError\n"
            "from jupyter_hub_ctl import error\n"
            "assert issubclass(error.DependencyTimeout, error.ImpossibleDependency)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_composite_error_flattens_and_renders():
    from jupyter_hub_ctl.client.errors import CompositeError, RemoteError, collect_exceptions

    a = RemoteError("ValueError", "a", ["Traceback", "ValueError: a"], {"engine_id": 0, "method": "apply"})
    b = RemoteError("KeyError", "'b'", "tb b", {"engine_id": 1, "method": "execute"})
    inner = CompositeError("inner", [a])
    outer = CompositeError("outer", [inner, b])
    assert [e[0] for e in outer.elist] == ["ValueError", "KeyError"]
    assert "[0:apply] ValueError: a" in str(outer) and "[1:execute] KeyError: 'b'" in str(outer)
    assert outer.render_traceback(1) == ["[1:execute]:", "tb b", ""]
    try:
        outer.raise_exception(1)
    except RemoteError as e:
        assert e is b
    try:
        collect_exceptions([1, a], "f")
    except CompositeError as e:
        assert e.elist[0][1] == "a" and "one or more exceptions raised in: f" in str(e)
    assert collect_exceptions([1, 2]) == [1, 2]
