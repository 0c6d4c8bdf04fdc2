"""The serializer's function cache: a function sent again is pickled once, and never stale.

Functions here are defined by ``exec`` in a namespace named ``__main__``, as in a notebook, so
that cloudpickle pickles them by value (functions of importable modules go by reference).
"""

from __future__ import annotations

import textwrap

import numpy
import pytest

from jupyter_hub_ctl.client import ops
from jupyter_hub_ctl.client import serialize as S
from jupyter_hub_ctl.engine.executor import Executor


def interactive(source: str, **names) -> dict:
    ns = {"__name__": "__main__", **names}
    exec(textwrap.dedent(source), ns)
    return ns


def run_call(buffers):
    """What an engine does with an apply payload: unpickle, call."""
    f, args, kwargs = S.deserialize_call(buffers)
    return f(*args, **kwargs)


def roundtrip(f, *args):
    return run_call(S.serialize_call(f, args, {}))


def test_same_function_is_pickled_once_and_loaded_once():
    ns = interactive("""
        K = 3
        def f(x):
            return x * K
    """)
    f = ns["f"]
    first = S._function_bytes(f)
    assert first is not None
    assert S._function_bytes(f) is first  # the cached bytes, not a new pickle
    a, _, _ = S.deserialize_call(S.serialize_call(f, (1,), {}))
    b, _, _ = S.deserialize_call(S.serialize_call(f, (2,), {}))
    assert a is b  # the receiving side unpickled it once
    assert roundtrip(f, 2) == 6


def test_rebound_global_is_seen():
    ns = interactive("""
        K = 3
        def f(x):
            return x * K
    """)
    assert roundtrip(ns["f"], 2) == 6
    ns["K"] = 10
    assert roundtrip(ns["f"], 2) == 20
    del ns["K"]
    with pytest.raises(NameError):
        roundtrip(ns["f"], 2)


def test_mutable_global_mutated_in_place_is_seen():
    ns = interactive("""
        ITEMS = [1, 2]
        def f():
            return list(ITEMS)
    """)
    assert S._function_bytes(ns["f"]) is None  # a list is mutable: never cached
    assert roundtrip(ns["f"]) == [1, 2]
    ns["ITEMS"].append(3)
    assert roundtrip(ns["f"]) == [1, 2, 3]


def test_mutable_default_is_fresh_on_every_call():
    ns = interactive("""
        def f(x, acc=[]):
            acc.append(x)
            return acc
    """)
    assert S._function_bytes(ns["f"]) is None
    assert roundtrip(ns["f"], 1) == [1]
    assert roundtrip(ns["f"], 2) == [2]  # as a fresh function each time, like ipyparallel


def test_changed_defaults_attributes_and_closures_are_seen():
    ns = interactive("""
        def f(x, k=2):
            return x * k
        def make(n):
            def g():
                return n
            def bump(v):
                nonlocal n
                n = v
            return g, bump
    """)
    f = ns["f"]
    assert roundtrip(f, 3) == 6
    f.__defaults__ = (5,)
    assert roundtrip(f, 3) == 15
    f.tag = "x"
    assert S.deserialize_call(S.serialize_call(f, (), {}))[0].tag == "x"
    g, bump = ns["make"](1)
    assert roundtrip(g) == 1
    bump(7)
    assert roundtrip(g) == 7


def test_redefined_helper_is_seen():
    ns = interactive("""
        def helper():
            return 1
        def f():
            return helper()
    """)
    assert roundtrip(ns["f"]) == 1
    exec("def helper():\n    return 2\n", ns)
    assert roundtrip(ns["f"]) == 2


def test_functions_inside_arguments_are_cached_too():
    ns = interactive("""
        def ident(x):
            return x
    """)
    first = S.serialize_call(ops.map_chunk, (ns["ident"], [1, 2]), {})
    assert run_call(first) == [1, 2]
    assert run_call(S.serialize_call(ops.map_chunk, (ns["ident"], [3]), {})) == [3]
    assert S._function_bytes(ns["ident"]) is S._function_bytes(ns["ident"])


def test_large_arrays_still_travel_out_of_band():
    arr = numpy.arange(100_000, dtype="float64")
    ns = interactive("""
        def total(a):
            return float(a.sum())
    """)
    buffers = S.serialize_call(ns["total"], (arr,), {})
    assert len(buffers) == 2 and memoryview(buffers[1]).nbytes == arr.nbytes
    assert run_call(buffers) == float(arr.sum())


def test_engine_binds_a_resent_function_once_and_reinjects_its_globals():
    ex = Executor(lambda method: {}, lambda *a: None, lambda *a: None, lambda *a: None)
    ns = interactive("""
        K = 4
        def f():
            return K
    """)
    buffers = S.serialize_call(ns["f"], (), {})
    for _ in range(2):
        content, out, status = ex.apply({"serializer": S.SERIALIZER}, buffers)
        assert status == "ok" and S.deserialize(out) == 4
    raw, _, _ = S.deserialize_call(buffers)
    assert ex._bind(raw) is ex._bind(raw)  # bound to the namespace once
    ex.clear()  # the engine's namespace emptied: the captured global comes back on the next call
    content, out, status = ex.apply({"serializer": S.SERIALIZER}, buffers)
    assert status == "ok" and S.deserialize(out) == 4
    ex.namespace["K"] = 9  # the engine's own value wins, as before
    content, out, status = ex.apply({"serializer": S.SERIALIZER}, buffers)
    assert S.deserialize(out) == 9


def test_modules_registered_by_value_are_walked_not_referenced(tmp_path, monkeypatch):
    import sys

    import cloudpickle

    (tmp_path / "hubctl_byvalue_mod.py").write_text("CONFIG = {'n': 1}\ndef helper():\n    return CONFIG['n']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import hubctl_byvalue_mod as mod

    cloudpickle.register_pickle_by_value(mod)
    try:
        assert not S._by_reference(mod.helper)
        ns = interactive("""
            def f():
                return helper()
        """, helper=mod.helper)
        assert S._function_bytes(ns["f"]) is None  # helper goes by value, with a mutable global
        assert roundtrip(ns["f"]) == 1
        mod.CONFIG["n"] = 2
        assert roundtrip(ns["f"]) == 2
    finally:
        cloudpickle.unregister_pickle_by_value(mod)
        sys.modules.pop("hubctl_byvalue_mod", None)
