"""ipyparallel's load-balancing tutorial (dependencies, retries, map), run on both clients."""

from __future__ import annotations

import time

import pytest


def nap(t):
    import time

    time.sleep(t)
    return t


def _helper(x):
    return x + 100


def test_apply_and_map_load_balanced(rc):
    lv = rc.load_balanced_view()
    assert len(lv) == len(rc.ids)
    assert lv.apply_sync(pow, 2, 5) == 32
    assert lv.map_sync(lambda x: x * x, range(7)) == [x * x for x in range(7)]
    amr = lv.map_async(str, range(10), chunksize=3)
    assert amr.get(30) == [str(x) for x in range(10)] and len(amr) == 10
    assert sorted(lv.map(nap, [0.3, 0.0, 0.0], ordered=False, block=False)) == [0.0, 0.0, 0.3]
    assert list(lv.imap(abs, [-1, -2, -3])) == [1, 2, 3]
    assert sorted(lv.imap(abs, [-1, -2, -3], ordered=False)) == [1, 2, 3]


def test_require_imports_modules_and_ships_functions(rc, ipp):
    lv = rc.load_balanced_view()

    @ipp.require("json")
    @ipp.interactive  # as if typed in a notebook: its globals are the engine's namespace
    def dumped(x):
        return json.dumps(x)  # noqa: F821 - imported on the engine by @require

    assert lv.apply_sync(dumped, [1, 2]) == "[1, 2]"

    @ipp.require(_helper)  # pushed to the engine under its name
    @ipp.interactive
    def uses_helper(x):
        return _helper(x)

    assert lv.apply_sync(uses_helper, 1) == 101

    @ipp.require("a_module_that_does_not_exist_here")
    def impossible():
        return 1

    with pytest.raises(ipp.RemoteError, match="ImpossibleDependency|UnmetDependency"):
        lv.apply_sync(impossible)


def test_depend_runs_only_where_the_dependency_holds(rc, ipp):
    target = rc.ids[-1]
    rc[:].push({"special": False}, block=True)
    rc[target].push({"special": True}, block=True)

    def is_special():
        return special  # noqa: F821 - the engine's own value

    @ipp.depend(ipp.interactive(is_special))
    def where():
        import os

        return os.getpid()

    lv = rc.load_balanced_view()
    special_pid = rc[target].apply_sync(lambda: __import__("os").getpid())
    assert {lv.apply_sync(where) for _ in range(4)} == {special_pid}


def test_after_and_follow(rc, ipp):
    lv = rc.load_balanced_view()
    first = lv.apply_async(nap, 0.3)
    with lv.temp_flags(after=first):
        then = lv.apply_async(time.time)
    assert then.get(30) >= first.metadata["completed"].timestamp() - 0.05
    assert then.metadata["started"] >= first.metadata["completed"]
    with lv.temp_flags(follow=first):
        same = lv.apply_async(nap, 0)
    same.get(30)
    assert same.metadata["engine_id"] == first.metadata["engine_id"]
    failed = lv.apply_async(lambda: 1 / 0)
    with pytest.raises(ipp.RemoteError):
        failed.get(30)
    with lv.temp_flags(after=failed):
        never = lv.apply_async(lambda: "ran")
    with pytest.raises(ipp.RemoteError, match="ImpossibleDependency"):
        never.get(30)
    with lv.temp_flags(after=ipp.Dependency(failed, success=False, failure=True)):
        after_failure = lv.apply_async(lambda: "ran after the failure")
    assert after_failure.get(30) == "ran after the failure"
    rule = ipp.Dependency([first, failed], all=False)
    assert rule.all is False and set(rule) == set(first.msg_ids + failed.msg_ids)
    with lv.temp_flags(after=rule):
        assert lv.apply_sync(lambda: "any") == "any"


def test_timeout_and_retries(rc, ipp):
    lv = rc.load_balanced_view()
    running = [lv.apply_async(nap, 1.5) for _ in rc.ids]
    with lv.temp_flags(after=running, timeout=0.2):
        late = lv.apply_async(lambda: None)
    with pytest.raises(ipp.RemoteError, match="TaskTimeout|DependencyTimeout"):
        late.get(30)
    for r in running:
        r.get(30)
    first = rc.ids[0]
    rc[:].push({"cursed": False}, block=True)
    rc[first].push({"cursed": True}, block=True)

    def flaky():
        if cursed:  # noqa: F821
            raise RuntimeError("this engine is cursed")
        return "ok"

    with lv.temp_flags(retries=len(rc.ids)):
        assert [lv.apply_async(ipp.interactive(flaky)).get(30) for _ in range(4)] == ["ok"] * 4
