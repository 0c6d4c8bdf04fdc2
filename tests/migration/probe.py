"""The probe: documented user-level cases of ipyparallel 9's API, run on our Client and on ipyparallel's.

``python tests/migration/probe.py`` starts both stacks (our controller; our engines and Client,
or ipyparallel's) and prints, per client, how many cases pass, are missing (AttributeError,
ImportError, a signature that does not take the documented arguments), give a different
result, or fail otherwise; ``-v`` lists every case that does not pass.  ``test_probe.py``
runs it in the test suite.

A case is ``(name, run, expected)``: ``run(p)`` gets a ``Probe`` (``p.ipp``, ``p.rc``, ``p.dv``
for all engines, ``p.lv``, ``p.e0``/``p.e1`` the engine ids) and its value must equal
``expected``, or satisfy it when ``expected`` is a function.  Cases run in order and may use
what earlier ones left on the engines.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from controller_vs_ipcontroller import call_with_timeout  # noqa: E402  (the benchmarks' bounded call)

MISSING_TYPES = (AttributeError, ImportError, NotImplementedError)
# cases that fail on a client, with the reason (test_probe.py checks nothing else fails)
KNOWN_FAILURES = {
    "ipyparallel": {
        "rc.wait()": "ipyparallel keeps a broadcast's original msg_id in Client.outstanding, so waiting for "
                     "everything outstanding never returns",
        "dv.sync_imports(local=False)": "ipyparallel: 'remote-only imports not yet implemented'",
        "await AsyncResult": "ipyparallel's AsyncResult is a concurrent Future, not awaitable (ours is both)",
    },
    "ours": {},
}

SIGNATURE_WORDS = ("unexpected keyword", "positional argument", "is not callable", "not subscriptable",
                   "not iterable", "has no len", "object is not", "missing 1 required", "takes no arguments")


class Probe:
    def __init__(self, ipp, rc):
        self.ipp, self.rc = ipp, rc
        self.dv = rc[:]
        self.lv = rc.load_balanced_view()
        self.e0, self.e1 = rc.ids[0], rc.ids[-1]
        self.keep: dict = {}  # values earlier cases leave for later ones


def _sq(x):
    return x * x


def _pid():
    import os

    return os.getpid()


def _fail():
    raise ValueError("probe failure")


def _nap(t):
    import time

    time.sleep(t)
    return t


def _announce_nap(t):
    import time

    print("started", flush=True)
    time.sleep(t)
    return "finished"


def _is_dt(v):
    return isinstance(v, datetime)


def _keep(p, key, value):
    p.keep[key] = value
    return value


def _raises(fn, exc_names):
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the class name is what is checked
        return type(e).__name__ in exc_names or any(c.__name__ in exc_names for c in type(e).__mro__)
    return False


def _until(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _interrupt(p, sig=signal.SIGINT):
    ar = p.rc[p.e1].apply_async(_announce_nap, 30)
    _until(lambda: "started" in (ar.stdout or ""))
    p.rc.send_signal(sig, targets=p.e1, block=True)
    return _raises(lambda: ar.get(20), ("RemoteError",)) and "KeyboardInterrupt" in str(ar.exception())


def _abort_queued(p):
    first = p.rc[p.e0].apply_async(_nap, 0.8)
    queued = p.rc[p.e0].apply_async(_sq, 3)
    p.rc.abort(jobs=queued, targets=p.e0, block=True)
    first.get(30)
    return _raises(lambda: queued.get(30), ("TaskAborted",))


def _sync_imports(p, **kw):
    with p.dv.sync_imports(**kw):
        import math  # noqa: F401
    p.dv.execute("probe_sqrt = math.sqrt(9)", block=True)
    return p.dv.pull("probe_sqrt", block=True)


def _as_completed(p):
    ex = p.rc.executor()
    futs = [ex.submit(_sq, i) for i in range(6)]
    return sorted(f.result() for f in cf.as_completed(futs, timeout=30))


def _wait_fc(p):
    done, pending = p.dv.apply_async(_nap, 0.1).wait(30, return_when=cf.FIRST_COMPLETED)
    return len(done) >= 1


def _first_exception(p):
    ar = p.dv.apply_async(_fail)
    return _raises(lambda: ar.get(30, return_when=p.ipp.FIRST_EXCEPTION), ("RemoteError",))


def _joblib(p, n_jobs=2):
    import joblib

    p.dv.use_cloudpickle().get(30)  # joblib's batches hold functions of __main__: send them by value
    p.lv.register_joblib_backend("probe-backend")
    with joblib.parallel_backend("probe-backend"):
        return joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_sq)(i) for i in range(10))


def _require(p):
    @p.ipp.require("json")
    @p.ipp.interactive
    def dumped(x):
        return json.dumps(x)  # noqa: F821

    return p.lv.apply_sync(dumped, [1])


def _depend(p):
    p.dv.push({"probe_flag": False}, block=True)
    p.rc[p.e1].push({"probe_flag": True}, block=True)

    def flagged():
        return probe_flag  # noqa: F821

    @p.ipp.depend(p.ipp.interactive(flagged))
    def where():
        import os

        return os.getpid()

    return {p.lv.apply_sync(where) for _ in range(3)} == {p.rc[p.e1].apply_sync(_pid)}


def _remote(p):
    @p.dv.remote(block=True)
    def f(x):
        return x + 1

    return f(1)


def _parallel(p):
    @p.dv.parallel(block=True)
    def f(chunk):
        return [x * 10 for x in chunk]

    return f(list(range(6)))


def _parallel_map(p):
    @p.dv.parallel(block=True)
    def f(x):
        return x * 10

    return f.map(range(4))


def _after(p):
    a = p.lv.apply_async(_nap, 0.2)
    with p.lv.temp_flags(after=a):
        b = p.lv.apply_async(_sq, 2)
    b.get(30)
    return b.metadata["started"] >= a.metadata["completed"]


def _follow(p):
    a = p.lv.apply_async(_pid)
    a.get(30)
    with p.lv.temp_flags(follow=a):
        b = p.lv.apply_async(_pid)
    return b.get(30) == a.get()


def _impossible(p):
    bad = p.lv.apply_async(_fail)
    _raises(lambda: bad.get(30), ("RemoteError",))
    with p.lv.temp_flags(after=bad):
        never = p.lv.apply_async(_sq, 1)
    return _raises(lambda: never.get(30), ("RemoteError",)) and "ImpossibleDependency" in str(never.exception())


def _dependency_failure(p):
    bad = p.lv.apply_async(_fail)
    _raises(lambda: bad.get(30), ("RemoteError",))
    with p.lv.temp_flags(after=p.ipp.Dependency(bad, success=False, failure=True)):
        return p.lv.apply_sync(_sq, 4)


def _timeout_flag(p):
    busy = [p.lv.apply_async(_nap, 1.0) for _ in p.rc.ids]
    with p.lv.temp_flags(after=busy, timeout=0.1):
        late = p.lv.apply_async(_sq, 1)
    ok = _raises(lambda: late.get(30), ("RemoteError",))
    for b in busy:
        b.get(30)
    return ok


def _display_outputs(p):
    ar = p.dv.execute("print('shown')", block=True)
    ar.display_outputs()
    return True


def _cases():
    C = []

    def case(name, run, expected=True):
        C.append((name, run, expected))

    # ---- the package and its names
    for name in ("Client", "Reference", "require", "depend", "dependent", "interactive", "Dependency", "RemoteError",
                 "CompositeError", "EngineError", "TaskAborted", "TaskTimeout", "NoEnginesRegistered",
                 "UnmetDependency", "ImpossibleDependency", "DependencyTimeout", "InvalidDependency", "AsyncResult",
                 "AsyncMapResult", "AsyncHubResult", "DirectView", "LoadBalancedView", "BroadcastView", "ViewExecutor",
                 "RemoteFunction", "ParallelFunction", "remote", "parallel", "error", "FIRST_EXCEPTION",
                 "FIRST_COMPLETED", "ALL_COMPLETED", "register_joblib_backend", "Cluster"):
        case(f"ipp.{name}", lambda p, name=name: getattr(p.ipp, name) is not None)
    for name in ("RemoteError", "CompositeError", "EngineError", "TaskAborted", "TaskTimeout", "KernelError",
                 "NoEnginesRegistered", "UnmetDependency", "ImpossibleDependency", "DependencyTimeout",
                 "InvalidDependency", "TimeoutError", "TaskRejectError", "collect_exceptions"):
        case(f"ipp.error.{name}", lambda p, name=name: getattr(p.ipp.error, name) is not None)
    case("CompositeError is a RemoteError", lambda p: issubclass(p.ipp.error.CompositeError, p.ipp.error.RemoteError))
    case("RemoteError is a KernelError", lambda p: issubclass(p.ipp.error.RemoteError, p.ipp.error.KernelError))
    case("DependencyTimeout is an ImpossibleDependency",
         lambda p: issubclass(p.ipp.error.DependencyTimeout, p.ipp.error.ImpossibleDependency))
    case("error.TimeoutError is TimeoutError", lambda p: p.ipp.error.TimeoutError is TimeoutError)

    # ---- the client
    case("rc.ids", lambda p: p.rc.ids == sorted(p.rc.ids) and len(p.rc.ids) == 2)
    case("len(rc)", lambda p: len(p.rc), 2)
    case("rc[0] targets", lambda p: p.rc[p.e0].targets == p.e0)
    case("rc[-1] targets", lambda p: p.rc[-1].targets == p.e1)
    case("rc[:] targets", lambda p: p.rc[:].targets == p.rc.ids)
    case("rc[[0]] targets", lambda p: p.rc[[p.e0]].targets == [p.e0])
    case("iter(rc)", lambda p: [v.targets for v in p.rc] == p.rc.ids)
    case("rc.direct_view()", lambda p: p.rc.direct_view().targets == "all")
    case("rc.direct_view(0)", lambda p: p.rc.direct_view(p.e0).targets == p.e0)
    case("rc.load_balanced_view()", lambda p: p.rc.load_balanced_view().targets is None)
    case("rc.load_balanced_view([0])", lambda p: p.rc.load_balanced_view([p.e0]).targets == [p.e0])
    case("rc.broadcast_view()", lambda p: p.rc.broadcast_view().apply_sync(_sq, 3), [9, 9])
    case("rc.broadcast_view(is_coalescing)", lambda p: p.rc.broadcast_view(is_coalescing=True).apply_sync(_sq, 2),
         [4, 4])
    case("rc.executor()", lambda p: isinstance(p.rc.executor(), cf.Executor))
    case("rc.block default", lambda p: p.rc.block, False)
    case("rc.history", lambda p: isinstance(p.rc.history[-1], str) if p.rc.history else True)
    case("rc.outstanding", lambda p: isinstance(p.rc.outstanding, set))
    case("rc.results", lambda p: hasattr(p.rc.results, "get"))
    case("rc.metadata", lambda p: hasattr(p.rc.metadata, "get"))
    case("rc.wait()", lambda p: p.rc.wait(), True)
    case("rc.wait(ar)", lambda p: p.rc.wait(p.lv.apply_async(_sq, 1), timeout=30), True)
    case("rc.wait([msg_id])", lambda p: p.rc.wait(p.lv.apply_async(_sq, 1).msg_ids, timeout=30), True)
    case("rc.wait(timeout)", lambda p: p.rc.wait(p.lv.apply_async(_nap, 1.0), timeout=0.05), False)
    case("rc.queue_status()", lambda p: set(p.rc.queue_status()) >= set(p.rc.ids) | {"unassigned"})
    case("rc.queue_status(0)", lambda p: "queue" in p.rc.queue_status(p.e0))
    case("rc.queue_status(verbose)", lambda p: isinstance(p.rc.queue_status(verbose=True)[p.e0]["queue"], list))
    case("rc.hub_history()", lambda p: isinstance(p.rc.hub_history(), list) and len(p.rc.hub_history()) > 0)
    case("rc.db_query", lambda p: isinstance(p.rc.db_query({"msg_id": {"$ne": None}}, keys=["msg_id"]), list))
    case("rc.db_query dates", lambda p: _is_dt(p.rc.db_query({"completed": {"$ne": None}}, ["completed"])[0]["completed"]))
    case("rc.get_result(msg_id) is AsyncResult",
         lambda p: isinstance(p.rc.get_result(p.lv.apply_async(_sq, 5).msg_ids[0]), p.ipp.AsyncResult))
    case("rc.get_result(msg_id).get()",
         lambda p: p.rc.get_result(_keep(p, "done", p.lv.apply_async(_sq, 6)).msg_ids[0]).get(30), 36)
    case("rc.get_result(ar)", lambda p: p.rc.get_result(p.keep["done"]).get(30), 36)
    case("rc.get_result() last", lambda p: isinstance(p.rc.get_result(), p.ipp.AsyncResult))
    case("rc.get_result(block=True)", lambda p: p.rc.get_result(p.keep["done"].msg_ids[0], block=True).ready())
    case("rc.resubmit is AsyncResult", lambda p: isinstance(p.rc.resubmit(p.keep["done"].msg_ids), p.ipp.AsyncResult))
    case("rc.resubmit().get()", lambda p: p.rc.resubmit(p.keep["done"].msg_ids).get(30), [36])
    case("rc.result_status", lambda p: p.rc.result_status(p.keep["done"].msg_ids)["completed"],
         lambda v: isinstance(v, list) and len(v) == 1)
    case("rc.result_status(status_only=False)",
         lambda p: p.rc.result_status(p.keep["done"].msg_ids, status_only=False)[p.keep["done"].msg_ids[0]], 36)
    case("rc.purge_local_results(ar)", lambda p: p.rc.purge_local_results(p.keep["done"]) is None)
    case("rc.purge_hub_results(ar)", lambda p: p.rc.purge_hub_results(p.lv.apply_async(_sq, 1).get(30) and
                                                                       p.rc.history[-1]) is None)
    case("rc.purge_results(ar)", lambda p: p.rc.purge_results(_keep(p, "gone", p.lv.apply_async(_sq, 1)).get(30) and
                                                               p.keep["gone"]) is None)
    case("rc.send_signal(SIGINT)", _interrupt)
    case("rc.send_signal('SIGINT') by name", lambda p: _interrupt(p, "SIGINT"))
    case("rc.abort(jobs=) of a queued task", _abort_queued)
    case("rc.spin()", lambda p: p.rc.spin() is None)
    case("rc.close is callable", lambda p: callable(p.rc.close))
    case("rc.wait_for_engines", lambda p: p.rc.wait_for_engines(2, timeout=10) is None or True)
    case("rc.activate()", lambda p: p.rc.activate(suffix="_probe").block is True)

    # ---- direct view data movement
    case("dv.push block", lambda p: p.dv.push({"pa": 5, "pb": [1, 2]}, block=True), [None, None])
    case("dv.pull", lambda p: p.dv.pull("pa", block=True), [5, 5])
    case("dv.pull list", lambda p: p.dv.pull(["pa", "pb"], block=True), [[5, [1, 2]], [5, [1, 2]]])
    case("dv.pull tuple", lambda p: p.dv.pull(("pa",), block=True), [[5], [5]])
    case("dv.pull targets=0 scalar", lambda p: p.dv.pull("pa", targets=p.e0, block=True), 5)
    case("dv.push targets=0 scalar", lambda p: p.dv.push({"pc": 1}, targets=p.e0, block=True), None)
    case("dv.apply targets int via rc[0]", lambda p: p.rc[p.e0].apply_sync(_sq, 4), 16)
    case("dv.execute targets=0", lambda p: p.dv.execute("pd = 4", targets=p.e0, block=True).get().__class__.__name__,
         "ExecuteReply")
    case("dv['key']", lambda p: p.dv["pa"], [5, 5])
    case("dv['key'] = value", lambda p: (p.dv.__setitem__("pe", 9), p.dv["pe"])[1], [9, 9])
    case("rc[0]['key']", lambda p: p.rc[p.e0]["pa"], 5)
    case("dv.get", lambda p: p.dv.get("pa"), [5, 5])
    case("dv.get list", lambda p: p.dv.get(["pa", "pe"]), [[5, 9], [5, 9]])
    case("dv.update", lambda p: (p.dv.update({"pf": 1}), p.dv.get("pf"))[1], [1, 1])
    case("dv.pull non-block", lambda p: p.dv.pull("pa").get(30), [5, 5])
    case("dv.pull bad name raises", lambda p: _raises(lambda: p.dv.pull("never_defined_here", block=True),
                                                        ("RemoteError",)))
    case("dv.pull bad key type", lambda p: _raises(lambda: p.dv.pull(5), ("TypeError",)))
    case("dv.push non-dict", lambda p: _raises(lambda: p.dv.push([1]), ("TypeError",)))
    case("dv.scatter block returns None", lambda p: p.dv.scatter("sx", list(range(10)), block=True), None)
    case("dv.scatter parts", lambda p: p.dv["sx"], [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    case("dv.gather block", lambda p: p.dv.gather("sx", block=True), list(range(10)))
    case("dv.gather non-block get", lambda p: p.dv.gather("sx", block=False).get(30), list(range(10)))
    case("dv.gather is AsyncMapResult", lambda p: isinstance(p.dv.gather("sx"), p.ipp.AsyncMapResult))
    case("dv.scatter dist='r'", lambda p: (p.dv.scatter("sr", list(range(5)), dist="r", block=True), p.dv["sr"])[1],
         [[0, 2, 4], [1, 3]])
    case("dv.gather dist='r'", lambda p: p.dv.gather("sr", dist="r", block=True), list(range(5)))
    case("dv.scatter flatten", lambda p: (p.dv.scatter("sf", [7, 8], flatten=True, block=True), p.dv["sf"])[1], [7, 8])
    case("dv.scatter targets=", lambda p: (p.dv.scatter("st", [1, 2], targets=[p.e1], block=True),
                                           p.rc[p.e1]["st"])[1], [1, 2])
    case("dv.gather targets=", lambda p: p.dv.gather("st", targets=[p.e1], block=True), [1, 2])
    case("dv.scatter non-block", lambda p: p.dv.scatter("sn", list(range(4))).get(30), [None, None])
    case("dv.scatter numpy", lambda p: [a.shape for a in (p.dv.scatter("sa", __import__("numpy").arange(6.0),
                                                                      block=True), p.dv["sa"])[1]], [(3,), (3,)])
    case("dv.gather numpy", lambda p: p.dv.gather("sa", block=True).tolist(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])

    # ---- direct view execution
    case("dv.apply non-block", lambda p: p.dv.apply(_sq, 3).get(30), [9, 9])
    case("dv.apply_sync", lambda p: p.dv.apply_sync(_sq, 3), [9, 9])
    case("dv.apply_async", lambda p: isinstance(p.dv.apply_async(_sq, 3), p.ipp.AsyncResult))
    case("dv.apply kwargs", lambda p: p.dv.apply_sync(lambda a, b=1: a + b, 1, b=2), [3, 3])
    case("dv.apply lambda closure", lambda p: (lambda k: p.dv.apply_sync(lambda: k))(11), [11, 11])
    case("dv.apply_sync raises CompositeError", lambda p: _raises(lambda: p.dv.apply_sync(_fail), ("CompositeError",)))
    case("except RemoteError catches multi-engine", lambda p: _raises(lambda: p.dv.apply_sync(_fail), ("RemoteError",)))
    case("rc[0].apply_sync raises RemoteError", lambda p: _raises(lambda: p.rc[p.e0].apply_sync(_fail),
                                                                    ("RemoteError",)))
    case("dv.execute block returns AsyncResult", lambda p: isinstance(p.dv.execute("px1 = 1", block=True),
                                                                       p.ipp.AsyncResult))
    case("dv.execute stdout", lambda p: p.dv.execute("print('hello')", block=True).stdout, ["hello\n", "hello\n"])
    case("dv.execute silent=False result",
         lambda p: [r.execute_result["data"]["text/plain"] for r in p.dv.execute("1 + 1", silent=False,
                                                                                 block=True).get()], ["2", "2"])
    case("dv.execute default silent", lambda p: p.dv.execute("2 + 2", block=True).execute_result, [None, None])
    case("dv.execute error", lambda p: _raises(lambda: p.dv.execute("1/0", block=True), ("RemoteError",)))
    case("dv.run file", lambda p: _run_file(p), [3, 3])
    case("dv.map_sync", lambda p: p.dv.map_sync(_sq, range(5)), [0, 1, 4, 9, 16])
    case("dv.map_async", lambda p: p.dv.map_async(_sq, range(5)).get(30), [0, 1, 4, 9, 16])
    case("dv.map two sequences", lambda p: p.dv.map_sync(lambda a, b: a * b, [1, 2], [3, 4]), [3, 8])
    case("dv.map block flag", lambda p: p.dv.map(_sq, range(3), block=True), [0, 1, 4])
    case("dv.map returns AsyncMapResult", lambda p: isinstance(p.dv.map(_sq, range(3)), p.ipp.AsyncMapResult))
    case("dv.map_async block kwarg refused", lambda p: _raises(lambda: p.dv.map_async(_sq, [1], block=True),
                                                                ("TypeError",)))
    case("dv.imap", lambda p: list(p.dv.imap(_sq, range(4))), [0, 1, 4, 9])
    case("dv.map return_exceptions", lambda p: [type(x).__name__ for x in p.dv.map(
        lambda x: 1 / x, [0, 1], return_exceptions=True).get(30)], ["RemoteError", "float"])
    case("@dv.remote", _remote, [2, 2])
    case("@dv.parallel", _parallel, [0, 10, 20, 30, 40, 50])
    case("@dv.parallel .map", _parallel_map, [0, 10, 20, 30])
    case("ipp.remote(view)", lambda p: p.ipp.remote(p.dv, block=True)(_sq)(3), [9, 9])
    case("ipp.parallel(view)", lambda p: p.ipp.parallel(p.dv, block=True)(_sq).map(range(3)), [0, 1, 4])
    case("dv.sync_imports", lambda p: _sync_imports(p), [3.0, 3.0])
    case("dv.sync_imports(quiet=True)", lambda p: _sync_imports(p, quiet=True), [3.0, 3.0])
    case("dv.sync_imports(local=False)", lambda p: _sync_imports(p, local=False), [3.0, 3.0])
    case("dv.importer", lambda p: hasattr(p.dv.importer, "__enter__"))
    case("dv.use_cloudpickle", lambda p: p.dv.use_cloudpickle().get(30), [None, None])
    case("dv.use_pickle", lambda p: p.dv.use_pickle().get(30), [None, None])
    case("Reference", lambda p: (p.dv.push({"ref_me": [1, 2, 3]}, block=True),
                                 p.dv.apply_sync(len, p.ipp.Reference("ref_me")))[1], [3, 3])
    case("interactive", lambda p: (p.dv.push({"scale_me": 3}, block=True),
                                   p.dv.apply_sync(p.ipp.interactive(_scaled), 2))[1], [6, 6])
    case("len(dv)", lambda p: len(p.dv), 2)
    case("len(rc[0])", lambda p: len(p.rc[p.e0]), 1)
    case("dv.targets", lambda p: p.dv.targets, lambda v: sorted(v) == [0, 1])
    case("dv.block flag", lambda p: p.dv.block, False)
    case("dv.set_flags", lambda p: p.dv.set_flags(block=False) is not None or True)
    case("dv.temp_flags", lambda p: _temp_flags(p), [[9, 9], False])
    case("dv.set_flags bad", lambda p: _raises(lambda: p.dv.set_flags(bogus=1), ("KeyError",)))
    case("dv.history", lambda p: isinstance(p.dv.history, list) or hasattr(p.dv.history, "append"))
    case("dv.outstanding", lambda p: isinstance(p.dv.outstanding, set))
    case("dv.wait", lambda p: (p.dv.apply_async(_sq, 1), p.dv.wait(timeout=30))[1], True)
    case("dv.queue_status", lambda p: set(p.dv.queue_status()) >= set(p.rc.ids))
    case("dv.get_result", lambda p: (p.dv.apply_async(_sq, 7).get(30), p.dv.get_result().get(30))[1], 49)
    case("dv.executor", lambda p: sorted(p.dv.executor.map(_sq, range(4))), [0, 1, 4, 9])
    case("dv.activate(suffix)", lambda p: p.dv.activate("_probe2") is None)

    # ---- load balanced view
    case("lv.apply_sync", lambda p: p.lv.apply_sync(_sq, 5), 25)
    case("lv.apply_async", lambda p: p.lv.apply_async(_sq, 5).get(30), 25)
    case("lv.apply block flag", lambda p: p.lv.apply(_sq, 5).get(30), 25)
    case("lv.map_sync", lambda p: p.lv.map_sync(_sq, range(6)), [0, 1, 4, 9, 16, 25])
    case("lv.map chunksize", lambda p: p.lv.map(_sq, range(6), chunksize=4, block=True), [0, 1, 4, 9, 16, 25])
    case("lv.map len", lambda p: len(p.lv.map(_sq, range(6), chunksize=4)), 6)
    case("lv.map unordered iteration", lambda p: sorted(p.lv.map(_nap, [0.2, 0.0], ordered=False)), [0.0, 0.2])
    case("lv.map_async iterate", lambda p: list(p.lv.map_async(_sq, range(4))), [0, 1, 4, 9])
    case("lv.imap", lambda p: list(p.lv.imap(_sq, range(5))), [0, 1, 4, 9, 16])
    case("lv.imap unordered", lambda p: sorted(p.lv.imap(_sq, range(5), ordered=False)), [0, 1, 4, 9, 16])
    case("lv.imap max_outstanding", lambda p: list(p.lv.imap(_sq, range(5), max_outstanding=1)), [0, 1, 4, 9, 16])
    case("lv.imap generator input", lambda p: list(p.lv.imap(_sq, (i for i in range(3)))), [0, 1, 4])
    case("lv.imap cancel", lambda p: hasattr(p.lv.imap(_sq, range(3)), "cancel"))
    case("len(lv)", lambda p: len(p.lv), 2)
    case("lv.targets", lambda p: p.lv.targets, None)
    case("lv.set_flags(retries)", lambda p: (p.lv.set_flags(retries=1), p.lv.retries, p.lv.set_flags(retries=0))[1], 1)
    case("lv.set_flags bad timeout", lambda p: _raises(lambda: p.lv.set_flags(timeout="x"),
                                                         ("TypeError", "TraitError")))
    case("lv.temp_flags(targets)", lambda p: _lb_targets(p), True)
    case("after", _after)
    case("follow", _follow)
    case("ImpossibleDependency", _impossible)
    case("Dependency(success=False, failure=True)", _dependency_failure, 16)
    case("Dependency all=False", lambda p: p.ipp.Dependency(["a", "b"], all=False).all, False)
    case("Dependency.as_dict", lambda p: set(p.ipp.Dependency(["a"]).as_dict()), {"dependencies", "all", "success",
                                                                                   "failure"})
    case("Dependency.check", lambda p: p.ipp.Dependency(["a", "b"]).check({"a", "b"}), True)
    case("timeout flag", _timeout_flag)
    case("retries", lambda p: _retries(p), ["ok"] * 3)
    case("@require module", _require, "[1]")
    case("@depend", _depend)
    case("lv.executor", lambda p: isinstance(p.lv.executor, cf.Executor))
    case("register_joblib_backend", lambda p: _joblib(p), [i * i for i in range(10)])
    case("joblib n_jobs=-1", lambda p: _joblib(p, -1), [i * i for i in range(10)])

    # ---- AsyncResult
    def ar_case(name, fn, expected=True):
        case(name, lambda p, fn=fn: fn(p, p.keep["ar"]), expected)

    case("make AsyncResult", lambda p: _keep(p, "ar", p.dv.apply_async(_talk, 2)).get(30), [2, 2])
    ar_case("ar.msg_ids", lambda p, ar: len(ar.msg_ids), 2)
    ar_case("ar.ready()", lambda p, ar: ar.ready())
    ar_case("ar.successful()", lambda p, ar: ar.successful())
    ar_case("ar.get(timeout)", lambda p, ar: ar.get(1), [2, 2])
    ar_case("ar.get(-1)", lambda p, ar: ar.get(-1), [2, 2])
    ar_case("ar.r", lambda p, ar: ar.r, [2, 2])
    ar_case("ar.result()", lambda p, ar: ar.result(), [2, 2])
    ar_case("ar.wait()", lambda p, ar: ar.wait(), True)
    ar_case("ar[0]", lambda p, ar: ar[0], 2)
    ar_case("ar[0:1]", lambda p, ar: ar[0:1], [2])
    ar_case("ar['engine_id']", lambda p, ar: ar["engine_id"], lambda v: sorted(v) == [0, 1])
    ar_case("ar.engine_id", lambda p, ar: ar.engine_id, lambda v: sorted(v) == [0, 1])
    ar_case("len(ar)", lambda p, ar: len(ar), 2)
    ar_case("ar.progress", lambda p, ar: ar.progress, 2)
    ar_case("ar.get_dict()", lambda p, ar: ar.get_dict(), lambda v: v == {0: 2, 1: 2})
    ar_case("ar.result_dict", lambda p, ar: ar.result_dict, lambda v: v == {0: 2, 1: 2})
    ar_case("ar.stdout", lambda p, ar: ar.stdout, ["talk 2\n", "talk 2\n"])
    ar_case("ar.stderr", lambda p, ar: ar.stderr, ["", ""])
    ar_case("ar.outputs", lambda p, ar: ar.outputs, [[], []])
    ar_case("ar.metadata list", lambda p, ar: isinstance(ar.metadata, list) and len(ar.metadata) == 2)
    for key in ("msg_id", "submitted", "started", "completed", "received", "engine_uuid", "engine_id", "follow",
                "after", "status", "execute_input", "execute_result", "error", "stdout", "stderr", "outputs",
                "data", "label", "is_broadcast", "is_coalescing"):
        ar_case(f"ar.metadata[{key!r}]", lambda p, ar, key=key: key in ar.metadata[0])
    for key in ("submitted", "started", "completed", "received"):
        ar_case(f"ar.{key} datetimes", lambda p, ar, key=key: all(_is_dt(v) for v in getattr(ar, key)))
    ar_case("metadata attribute access", lambda p, ar: ar.metadata[0].engine_id == ar.metadata[0]["engine_id"])
    ar_case("ar.status", lambda p, ar: ar.status, ["ok", "ok"])
    ar_case("ar.timedelta", lambda p, ar: ar.timedelta(ar.submitted, ar.received) >= 0)
    ar_case("ar.serial_time", lambda p, ar: ar.serial_time >= 0)
    ar_case("ar.wall_time", lambda p, ar: ar.wall_time >= 0)
    ar_case("ar.elapsed", lambda p, ar: ar.elapsed >= 0)
    ar_case("ar.sent", lambda p, ar: ar.sent)
    ar_case("ar.wait_for_send()", lambda p, ar: ar.wait_for_send(5) is not False)
    ar_case("ar.wait_for_output()", lambda p, ar: ar.wait_for_output(5))
    ar_case("ar.display_outputs()", lambda p, ar: ar.display_outputs() is None)
    ar_case("iter(ar)", lambda p, ar: list(ar), [2, 2])
    ar_case("ar.split()", lambda p, ar: len(ar.split()), 2)
    ar_case("concurrent.futures.wait(ar)", lambda p, ar: len(cf.wait([ar], timeout=5).done), 1)
    ar_case("ar.add_done_callback", lambda p, ar: (ar.add_done_callback(lambda f: p.keep.update(cb=f.result())),
                                                     p.keep["cb"])[1], [2, 2])
    ar_case("ar.abort() when done raises", lambda p, ar: _raises(ar.abort, ("RuntimeError", "AssertionError")))
    case("single ar.metadata is a dict", lambda p: isinstance(p.lv.apply_async(_sq, 2).metadata, dict))
    case("single ar['engine_id']", lambda p: (lambda a: (a.get(30), a["engine_id"])[1])(p.lv.apply_async(_sq, 2)),
         lambda v: v in (0, 1))
    case("single ar iteration refused", lambda p: _raises(lambda: list((lambda a: (a.get(30), a)[1])(
        p.lv.apply_async(_sq, 2))), ("TypeError",)))
    case("ar.get timeout raises TimeoutError", lambda p: _raises(lambda: p.lv.apply_async(_nap, 0.5).get(0.01),
                                                                 ("TimeoutError",)))
    case("ar.wait timeout False", lambda p: p.lv.apply_async(_nap, 0.5).wait(0.01), False)
    case("ar.get(return_exceptions=True)", lambda p: [type(x).__name__ for x in p.dv.apply_async(_fail).get(
        30, return_exceptions=True)], ["RemoteError", "RemoteError"])
    case("ar.get(return_when=FIRST_EXCEPTION)", _first_exception)
    case("ar.wait(return_when=FIRST_COMPLETED)", _wait_fc)
    case("ar.successful() on failure", lambda p: (lambda a: (a.wait(30), a.successful())[1])(
        p.dv.apply_async(_fail)), False)
    case("ar.successful() not ready raises", lambda p: _raises(p.lv.apply_async(_nap, 0.5).successful,
                                                                ("RuntimeError", "AssertionError")))
    case("CompositeError.elist", lambda p: _elist(p), ["ValueError", "ValueError"])
    case("CompositeError.raise_exception", lambda p: _raise_one(p), True)
    case("CompositeError.print_traceback", lambda p: _print_tb(p), True)
    case("RemoteError fields", lambda p: _remote_fields(p), ["ValueError", "probe failure", True])
    case("AsyncMapResult iteration", lambda p: list(p.lv.map_async(_sq, range(3))), [0, 1, 4])
    case("AsyncMapResult len", lambda p: len(p.dv.map_async(_sq, range(7))), 7)
    case("await AsyncResult", lambda p: __import__("asyncio").run(_awaited(p)), 9)
    case("ar.display_outputs execute", _display_outputs)
    case("ExecuteReply repr", lambda p: repr(p.rc[p.e0].execute("3", silent=False, block=True).get()),
         lambda v: v.startswith("<ExecuteReply[") and v.endswith(": 3>"))
    case("ExecuteReply['engine_id']", lambda p: p.rc[p.e0].execute("3", silent=False, block=True).get()["engine_id"],
         lambda v: v == 0 or v == 1)
    case("ExecuteReply.execution_count", lambda p: isinstance(
        p.rc[p.e0].execute("3", silent=False, block=True).get().execution_count, int))

    # ---- executor
    case("executor as_completed", _as_completed, [0, 1, 4, 9, 16, 25])
    case("executor.map", lambda p: list(p.rc.executor().map(_sq, range(4))), [0, 1, 4, 9])
    case("executor.submit result", lambda p: p.rc.executor().submit(_sq, 8).result(30), 64)
    case("executor as context manager", lambda p: _executor_cm(p), [0, 1, 4])
    case("executor shutdown", lambda p: p.rc.executor().shutdown() is None)

    case("EngineError class", lambda p: issubclass(p.ipp.error.EngineError, p.ipp.error.KernelError))
    case("TaskAborted class", lambda p: issubclass(p.ipp.error.TaskAborted, p.ipp.error.KernelError))

    # ---- control requests that change the engines' state: last
    case("rc.abort() nothing outstanding", lambda p: p.rc.abort(block=True) is None)
    case("dv.abort", lambda p: p.dv.abort(block=True) is None)
    case("dv.clear", lambda p: p.rc[p.e0].clear(block=True) is None and
         _raises(lambda: p.rc[p.e0].pull("pa", block=True), ("RemoteError",)))
    case("execute after clear", lambda p: p.rc[p.e0].execute("after_clear = 1", block=True).get() is not None)
    case("apply after abort and clear", lambda p: p.rc[:].apply_sync(_sq, 2), [4, 4])
    return C


def _scaled(x):
    return x * scale_me  # noqa: F821 - made interactive: the engine's own name


def _talk(x):
    print("talk", x)
    return x


def _temp_flags(p):
    with p.dv.temp_flags(block=True):
        inside = p.dv.apply(_sq, 3)
    return [inside, p.dv.block]


def _lb_targets(p):
    with p.lv.temp_flags(targets=[p.e1]):
        ar = p.lv.apply_async(_sq, 2)
    ar.get(30)
    return ar.metadata["engine_id"] == p.e1


def _retries(p):
    p.dv.push({"probe_cursed": False}, block=True)
    p.rc[p.e0].push({"probe_cursed": True}, block=True)

    def flaky():
        if probe_cursed:  # noqa: F821
            raise RuntimeError("cursed")
        return "ok"

    with p.lv.temp_flags(retries=2):
        return [p.lv.apply_async(p.ipp.interactive(flaky)).get(30) for _ in range(3)]


def _elist(p):
    try:
        p.dv.apply_sync(_fail)
    except p.ipp.error.CompositeError as e:
        return [x[0] for x in e.elist]


def _raise_one(p):
    try:
        p.dv.apply_sync(_fail)
    except p.ipp.error.CompositeError as e:
        return _raises(e.raise_exception, ("RemoteError",))


def _print_tb(p):
    import contextlib
    import io

    try:
        p.dv.apply_sync(_fail)
    except p.ipp.error.CompositeError as e:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            e.print_traceback()
        return "ValueError" in buf.getvalue()


def _remote_fields(p):
    try:
        p.rc[p.e0].apply_sync(_fail)
    except p.ipp.RemoteError as e:
        return [e.ename, e.evalue, e.engine_info.get("engine_id") == p.e0]


async def _awaited(p):
    return await p.lv.apply_async(_sq, 3)


def _run_file(p):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("from_file = 1 + 2\n")
    try:
        p.dv.run(f.name, block=True)
    finally:
        os.unlink(f.name)
    return p.dv.pull("from_file", block=True)


def _executor_cm(p):
    with p.rc.executor() as ex:
        futs = [ex.submit(_sq, i) for i in range(3)]
    return [f.result(0) for f in futs]


for _f in [v for v in list(globals().values()) if callable(v) and getattr(v, "__module__", None) == __name__]:
    _f.__module__ = "__main__"  # sent by value: the engines need not import this file
del _f

CASES = _cases()


CASE_TIMEOUT = 60.0  # seconds one case may take; then it counts as an error (its thread is left behind)


def _call(run, p):
    """``run(p)`` in a helper thread, bounded by CASE_TIMEOUT (a case that hangs must not stop the probe)."""
    return call_with_timeout(lambda: run(p), CASE_TIMEOUT, "probe case")


def classify(p: Probe, run, expected):
    """(outcome, detail) of one case: pass, missing, different or error."""
    try:
        value = _call(run, p)
    except MISSING_TYPES as e:
        return "missing", f"{type(e).__name__}: {e}"
    except TypeError as e:
        kind = "missing" if any(w in str(e) for w in SIGNATURE_WORDS) else "error"
        return kind, f"TypeError: {e}"
    except BaseException as e:  # noqa: BLE001 - every outcome is recorded
        return "error", f"{type(e).__name__}: {str(e)[:200]}"
    ok = expected(value) if callable(expected) else value == expected
    return ("pass", "") if ok else ("different", f"got {value!r:.200}")


def run_probe(ipp, rc) -> dict:
    """Every case on one client: ``{name: (outcome, detail)}``."""
    import contextlib
    import io

    p = Probe(ipp, rc)
    results = {}
    for name, run, expected in CASES:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            results[name] = classify(p, run, expected)
    return results


def tally(results: dict) -> dict:
    out = {"pass": 0, "missing": 0, "different": 0, "error": 0}
    for outcome, _ in results.values():
        out[outcome] += 1
    return out


def counts_text(counts: dict) -> str:
    """A tally in words: ``pass 80, missing 0, ...``."""
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def main(argv=None) -> int:
    import argparse
    import tempfile

    here = Path(__file__).resolve()
    sys.path[:0] = [str(here.parents[1]), str(here.parents[2])]
    from migration.stacks import KINDS, Stack

    parser = argparse.ArgumentParser(description="Run the probe on both clients.")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case that does not pass")
    args = parser.parse_args(argv)
    os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="probe-ipython-"))
    summary = {}
    for kind in KINDS:
        stack = Stack(kind, Path(tempfile.mkdtemp(prefix=f"probe-{kind}-")))
        try:
            stack.start()
            results = run_probe(stack.ipp, stack.rc)
        finally:
            stack.stop()
        summary[kind] = tally(results)
        if args.verbose:
            for name, (outcome, detail) in results.items():
                if outcome != "pass":
                    print(f"[{kind}] {outcome:9} {name}: {detail}")
    print(f"{len(CASES)} cases")
    for kind, counts in summary.items():
        print(f"{kind:12} {counts_text(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
