"""ipyparallel's direct-view tutorial, run on both clients: the same code, the same results."""

from __future__ import annotations

import os

import pytest


def double(x):
    return 2 * x


def test_push_pull_and_dict_access(rc):
    dv = rc[:]
    dv.block = True
    dv.push(dict(a=1, b="two"))
    assert dv.pull("a") == [1, 1]
    assert dv.pull(("a", "b")) == [[1, "two"], [1, "two"]]
    dv["c"] = [3]
    assert dv["c"] == [[3], [3]]
    dv.update({"d": 4})
    assert dv.get("d") == [4, 4]
    last = rc.ids[-1]
    assert rc[-1].targets == last


def test_an_int_target_gives_one_value_not_a_list(rc):
    dv = rc[:]
    first = rc.ids[0]
    dv.push({"e": 5}, targets=first, block=True)
    assert dv.pull("e", targets=first, block=True) == 5
    assert dv.apply_sync(lambda: "x") == ["x", "x"]
    assert dv.apply(lambda: 6, ).get() == [6, 6]
    single = rc[first]
    single.block = True
    assert single.apply(lambda: 7) == 7
    assert single["e"] == 5
    ar = dv.execute("f = 8", targets=first, block=True)  # an AsyncResult even when blocking
    assert ar.ready() and ar.get().__class__.__name__ == "ExecuteReply"
    assert single["f"] == 8


def test_scatter_gather_blocks_and_round_robin(rc):
    dv = rc[:]
    dv.block = True
    assert dv.scatter("x", list(range(9))) is None  # blocking scatter returns nothing
    parts = dv["x"]
    assert [len(p) for p in parts] == [5, 4] and parts[0] == [0, 1, 2, 3, 4]
    assert dv.gather("x") == list(range(9))
    gathered = dv.gather("x", block=False)
    assert gathered.get(30) == list(range(9))
    dv.scatter("r", list(range(7)), dist="r")
    assert dv["r"] == [[0, 2, 4, 6], [1, 3, 5]]
    assert dv.gather("r", dist="r") == list(range(7))
    dv.scatter("one", list(range(2)), flatten=True)
    assert dv["one"] == [0, 1]
    dv.scatter("only", [1, 2, 3], targets=[rc.ids[1]])
    assert rc[rc.ids[1]]["only"] == [1, 2, 3]


def test_scatter_and_gather_numpy_arrays(rc):
    np = pytest.importorskip("numpy")
    dv = rc[:]
    dv.block = True
    dv.scatter("arr", np.arange(10.0))
    assert [p.shape for p in dv["arr"]] == [(5,), (5,)]
    assert np.array_equal(dv.gather("arr"), np.arange(10.0))
    dv.execute("arr2 = arr * 2")
    assert np.array_equal(dv.gather("arr2"), np.arange(10.0) * 2)


def test_execute_runs_code_in_the_engines_namespace(rc):
    dv = rc[:]
    ar = dv.execute("import os\nepid = os.getpid()\nprint('hi')", block=True)
    assert ar.stdout == ["hi\n", "hi\n"]
    pids = dv.pull("epid", block=True)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    ar = dv.execute("epid", silent=False, block=True)
    assert [r.execute_result["data"]["text/plain"] for r in ar.get()] == [str(p) for p in pids]


def test_map_sync_async_and_imap(rc):
    dv = rc[:]
    assert dv.map_sync(double, range(10)) == [2 * x for x in range(10)]
    amr = dv.map_async(lambda x, y: x + y, range(5), range(5))
    assert amr.get(30) == [0, 2, 4, 6, 8] and len(amr) == 5
    assert list(dv.imap(double, range(6))) == [0, 2, 4, 6, 8, 10]
    assert dv.map_sync(double, []) == []


def test_remote_and_parallel_decorators(rc):
    dv = rc[:]

    @dv.remote(block=True)
    def getpid():
        import os

        return os.getpid()

    pids = getpid()
    assert len(pids) == 2 and len(set(pids)) == 2

    @dv.parallel(block=True)
    def chunk_sums(chunk):
        return [sum(chunk)]

    assert chunk_sums(list(range(10))) == [sum(range(5)), sum(range(5, 10))]
    assert chunk_sums.map([[1, 2], [3], [4, 5]]) == [[3], [3], [9]]
    lv = rc.load_balanced_view()

    @lv.parallel(block=True)
    def add(a, b):
        return a + b

    assert add.map(range(4), range(4)) == [0, 2, 4, 6]


def test_sync_imports(rc, capsys):
    dv = rc[:]
    with dv.sync_imports():
        import math  # noqa: F401
    assert "importing math on engine(s)" in capsys.readouterr().out
    dv.execute("sq = math.sqrt(16)", block=True)
    assert dv.pull("sq", block=True) == [4.0, 4.0]
    with dv.sync_imports(quiet=True):
        from json import dumps  # noqa: F401
    assert capsys.readouterr().out == ""
    dv.execute("js = dumps([1])", block=True)
    assert dv.pull("js", block=True) == ["[1]", "[1]"]


def _scaled(x):
    return x * scale  # noqa: F821 - made interactive below: the engine's own `scale`


def test_reference_and_interactive(rc, ipp):
    dv = rc[:]
    dv.block = True
    dv.push({"engine_list": [1, 2, 3], "scale": 10})
    assert dv.apply(len, ipp.Reference("engine_list")) == [3, 3]
    assert dv.apply(ipp.interactive(_scaled), 2) == [20, 20]


def test_serializers_can_be_chosen(rc):
    dv = rc[:]
    dv.use_cloudpickle().get(30)
    offset = 1
    assert dv.apply_sync(lambda: (lambda y: y + offset)(1)) == [2, 2]  # a closure
    dv.use_pickle().get(30)
