"""The task-stream query on a hub holding 1,000,000 task records, side by side with ipyparallel.

Fill: ``--records`` finished load-balanced task records (realistic fields: headers, metadata,
a pickled call, result headers/metadata/content, a small result buffer; 2 % errors; 8 engines)
are written into a fresh SQLite file through each project's own store class -- ours
(``SQLiteDB.adopt_record``, its batched writer) and ipyparallel's (``SQLiteDB.add_record``) --
finishing ``--rate`` per second up to the end of the fill, so that any one-second window of
the history holds about ``--rate`` tasks.  The files are kept for the next run with ``--keep``.

1. Store classes, in this process: the query a dashboard makes every second, ``--queries``
   times (median and p99): ours ``SQLiteDB.task_stream(end-1, end, 5000)`` on the newest second
   of the history (the hub's query: a range scan of the index on the hub's change stamp);
   ipyparallel's closest query, ``find_records({"completed": <that second>})`` with the
   task-stream fields (its table has no index but the msg_id); for context ours on one-second
   windows anywhere in the history (catching up: pages not in the cache) and on a column
   without an index (``received``); and ours in memory: ``DictDB`` full at its default bound
   (1024 records) and at ``--dictdb-big`` records.
2. Real controllers on the filled records: ours started on its file (``--sqlitedb`` with
   ``SQLiteDB.location`` and ``table`` pointing at it; no ``--restore`` needed, the records are
   read where they are), ipcontroller with the records copied into the table it makes (it
   cannot reopen a table of its own: see ``copy_into_ref``),
   ``--engines`` engines each, and a second process submitting no-op tasks at
   ``--live-rate`` per second; meanwhile a client asks every ``--every`` seconds for the last
   second: ours ``Client.task_stream(since=now-1)``, ipyparallel's
   ``Client.db_query({"completed": {"$gte": now-1}}, keys=...)``; and ours again on an empty file.

Run ``python benchmarks/task_stream_query.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import (  # noqa: E402
    Failure,
    Managed,
    call_with_timeout,
    log,
    log_environment,
    run_stopping_all,
)
from stack_vs_ipyparallel import Stack, add_stack_options, close_client, make_client, noop  # noqa: E402  (also: this checkout first)

UTC = timezone.utc
KEYS = ["msg_id", "engine_uuid", "submitted", "started", "completed", "label"]
ENGINES = [f"{i:08x}-{'e' * 24}" for i in range(8)]
CLIENT = "0badc0de-" + "c" * 23


# --------------------------------------------------------------------------- records
def make_record(i: int, done: float, ours: bool) -> dict:
    """A finished load-balanced task record as the hubs write them."""
    msg_id = f"{CLIENT}_4242_{i}"
    t = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
    submitted, started, completed = t(done - 0.012), t(done - 0.004), t(done)
    engine = ENGINES[i % len(ENGINES)]
    ok = i % 50
    md = {"serializer": "cloudpickle-5", "label": None, "targets": [], "retries": 0, "after": [], "follow": [],
          "timeout": None}
    if ours:
        md["hubctl_name"] = "work"
    rmd = {"started": started.isoformat(), "dependencies_met": True, "engine": engine, "is_broadcast": False,
           "is_coalescing": False, "original_msg_id": "", "label": None, "status": "ok" if ok else "error"}
    content = {"status": "ok"} if ok else {"status": "error", "ename": "ValueError", "evalue": f"bad {i}",
                                           "traceback": ["Traceback...", f"ValueError: bad {i}"], "engine_info": {}}
    rec = {
        "msg_id": msg_id,
        "header": {"msg_id": msg_id, "msg_type": "apply_request", "username": "bench", "session": CLIENT,
                   "date": submitted, "version": "5.3"},
        "metadata": md, "content": {}, "buffers": [b"\x80\x05" + b"c" * 150],
        "submitted": submitted, "client_uuid": CLIENT, "engine_uuid": engine, "started": started,
        "completed": completed, "resubmitted": None, "received": t(done + 0.0004),
        "result_header": {"msg_id": f"{engine}_1_{i}", "msg_type": "apply_reply", "username": "engine",
                          "session": engine, "date": completed, "version": "5.3"},
        "result_metadata": rmd, "result_content": content, "result_buffers": [b"\x80\x05N." + b"r" * 40],
        "queue": "task", "execute_input": None, "execute_result": None, "error": None, "stdout": "", "stderr": "",
        "label": None,
    }
    if ours:
        rec.update(name="work", changed=done + 0.0005)
    return rec


def fill(kind: str, path: str, n: int, end: float, rate: float) -> float:
    """Write ``n`` records into a fresh file through ``kind``'s store class; return the seconds taken."""
    t0 = time.perf_counter()
    location, filename = os.path.split(path)
    if kind == "ours":
        from jupyter_hub_ctl.controller.db import SQLiteDB

        db = SQLiteDB(location=location, filename=filename, table="bench", max_batch=20000)
        for i in range(n):
            db.adopt_record(f"{CLIENT}_4242_{i}", make_record(i, end - (n - 1 - i) / rate, True))
        db.flush()
    else:
        from ipyparallel.controller.sqlitedb import SQLiteDB

        db = SQLiteDB(location=location, filename=filename, table="bench")
        for i in range(n):
            db.add_record(f"{CLIENT}_4242_{i}", make_record(i, end - (n - 1 - i) / rate, False))
            if i % 20000 == 19999:
                db._db.commit()
    db.close()
    return time.perf_counter() - t0


def files(opts) -> dict:
    """The filled files (made now unless ``--keep`` kept matching ones): ``{kind: (path, end)}``."""
    os.makedirs(opts.dir, exist_ok=True)
    meta_path = os.path.join(opts.dir, "fill.json")
    want = {"records": opts.records, "rate": opts.rate}
    meta = {}
    if opts.keep and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    out = {}
    for kind in ("ours", "ref"):
        path = os.path.join(opts.dir, f"{kind}.db")
        done = meta.get(kind)
        if done and done["want"] == want and os.path.exists(path):
            log(f"{kind}: reusing {path} ({opts.records} records)")
        else:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            end = time.time()
            seconds = fill(kind, path, opts.records, end, opts.rate)
            done = meta[kind] = {"want": want, "end": end, "fill_s": seconds, "mb": os.path.getsize(path) / 2**20}
            log(f"{kind}: filled {path} with {opts.records} records in {seconds:.0f} s ({done['mb']:.0f} MB)")
            with open(meta_path, "w") as f:
                json.dump(meta, f)
        out[kind] = (path, done["end"], done)
    return out


# --------------------------------------------------------------------------- part 1
def timed(fn, windows: list) -> dict:
    lat, rows = [], []
    for t in windows:
        t0 = time.perf_counter()
        n = fn(t)
        lat.append(time.perf_counter() - t0)
        rows.append(n)
    return summary(lat, rows)


def summary(lat: list, rows: list) -> dict:
    lat = sorted(lat)
    return {"median_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "rows_median": statistics.median(rows), "queries": len(lat)}


def part_stores(opts, made: dict) -> dict:
    from ipyparallel.controller.sqlitedb import SQLiteDB as RefSQLiteDB

    from jupyter_hub_ctl.controller.db import DictDB, SQLiteDB

    path, end, _ = made["ours"]
    newest = [end] * opts.queries  # the last second of the history, as a dashboard asks every second
    few = newest[: max(5, opts.queries // 20)]
    rng = random.Random(1)
    anywhere = [rng.uniform(end - opts.records / opts.rate + 1, end) for _ in range(opts.queries)]
    out = {}
    location, filename = os.path.split(path)
    db = SQLiteDB(location=location, filename=filename, table="bench")
    try:
        stream = lambda t: len(db.task_stream(t - 1, t, 5000)[0])  # noqa: E731
        out["ours SQLite task_stream, newest second"] = timed(stream, newest)
        out["ours SQLite task_stream, any second (context)"] = timed(stream, anywhere)
        out["ours SQLite, unindexed column (context)"] = timed(
            lambda t: len(db.find_records({"received": {"$gt": _dt(t - 1), "$lte": _dt(t)}}, KEYS[1:])), few)
    finally:
        db.close()
    path, end, _ = made["ref"]
    location, filename = os.path.split(path)
    ref = RefSQLiteDB(location=location, filename=filename, table="bench")
    ref.table = "bench"  # (reopening, it rejects its own table and starts another: see copy_into_ref)
    try:
        out["ipyparallel SQLite completed in newest second"] = timed(
            lambda t: len(ref.find_records({"completed": {"$gte": _dt(t - 1), "$lt": _dt(t)}}, KEYS)),
            [end] * len(few))
    finally:
        ref.close()
    for bound in (1024, opts.dictdb_big):
        mem = DictDB(record_limit=bound)
        for i in range(bound):
            mem.adopt_record(f"{CLIENT}_4242_{i}", make_record(i, end - (bound - 1 - i) / opts.rate, True))
        out[f"ours DictDB full at {bound} records, newest second"] = timed(
            lambda t: len(mem.task_stream(t - 1, t, 5000)[0]), [end + 0.001] * opts.queries)
    for name, r in out.items():
        log(f"  {name}: median {r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['rows_median']:.0f} rows "
            f"({r['queries']} queries)")
    return out


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# --------------------------------------------------------------------------- part 2
def load_child(argv: list) -> int:
    """Runs in its own process: submit no-op tasks at ``rate`` per second for ``seconds``."""
    kind, client_file, profile_dir, rate, seconds = argv[0], argv[1], argv[2], float(argv[3]), float(argv[4])
    rc = make_client(kind, client_file, profile_dir, 30)
    lview = rc.load_balanced_view()
    lview.apply_async(noop).get(timeout=60)
    print(json.dumps({"started": True}), flush=True)
    t0 = time.monotonic()
    sent, pending = 0, []
    while time.monotonic() - t0 < seconds:
        due = int((time.monotonic() - t0) * rate)
        while sent < due:
            pending.append(lview.apply_async(noop))
            sent += 1
        pending = [ar for ar in pending if not ar.ready()]
        time.sleep(0.01)
    for ar in pending:
        ar.get(timeout=60)
    print(json.dumps({"sent": sent}), flush=True)
    close_client(kind, rc)
    return 0


def copy_into_ref(profile_dir: str, source: str) -> None:
    """Copy the filled records into the table the running ipcontroller just made.

    ipcontroller cannot be pointed at the filled table: reopening a file, its SQLiteDB finds
    the msg_id column's type reported as ``TEXT`` (SQLite normalises it) where it expects
    ``text``, so it leaves the table alone and starts ``<table>_1``.
    """
    import sqlite3

    conn = sqlite3.connect(os.path.join(profile_dir, "tasks.db"), timeout=60)
    try:
        conn.execute("ATTACH DATABASE ? AS src", (source,))
        conn.execute("INSERT INTO main.bench SELECT * FROM src.bench")
        conn.commit()
    finally:
        conn.close()


def live(opts, kind: str, tag: str, db_args: list, source: str = "") -> dict:
    args = ["--sqlitedb", *db_args]
    with Stack(kind, opts, tag, opts.engines, controller_args=args) as s:
        if source:
            t0 = time.perf_counter()
            copy_into_ref(s.profile_dir, source)
            log(f"  copied the records into ipcontroller's table in {time.perf_counter() - t0:.0f} s")
        load = Managed("load", [sys.executable, os.path.abspath(__file__), "--load-child", kind, s.client_file,
                                s.profile_dir, str(opts.live_rate), str(opts.seconds + 3)],
                       s.env, s.dir, os.path.join(s.dir, "load.log"))
        rc = s.client
        try:
            if kind == "ours":
                ask = lambda: len(rc.task_stream(since=time.time() - 1)["tasks"])  # noqa: E731
            else:
                ask = lambda: len(rc.db_query({"completed": {"$gte": _dt(time.time() - 1)}}, keys=KEYS))  # noqa: E731
            deadline = time.monotonic() + 60
            while '"started"' not in load.log_tail(5):  # its first task is done: the load is going
                if time.monotonic() > deadline or not load.running():
                    raise Failure(f"the load did not start: {load.log_tail(5)}")
                time.sleep(0.1)
            lat, rows = [], []
            t_end = time.monotonic() + opts.seconds
            while time.monotonic() < t_end:
                s.check_alive()
                if not load.running():
                    raise Failure(f"load process ended early: {load.log_tail(5)}")
                t0 = time.perf_counter()
                rows.append(call_with_timeout(ask, 60, "task-stream query"))
                lat.append(time.perf_counter() - t0)
                time.sleep(max(0.0, opts.every - (time.perf_counter() - t0)))
            out = summary(lat, rows)
        finally:
            deadline = time.monotonic() + 120
            while load.running() and time.monotonic() < deadline:
                time.sleep(0.2)
            load.stop()
    log(f"  {tag}: median {out['median_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, {out['rows_median']:.0f} rows "
        f"({out['queries']} queries)")
    return out


def part_live(opts, made: dict) -> dict:
    ours_dir = os.path.dirname(made["ours"][0])
    empty = tempfile.mkdtemp(prefix="hubctl-stream-empty-")
    full = f"{opts.records:,} records"
    runs = {
        f"ours, {full}": ("ours", [f"--SQLiteDB.location={ours_dir}", "--SQLiteDB.filename=ours.db",
                                      "--SQLiteDB.table=bench"], ""),
        "ours, empty file": ("ours", [f"--SQLiteDB.location={empty}", "--SQLiteDB.table=bench"], ""),
        f"ipyparallel, {full}": ("ref", ["--SQLiteDB.table=bench"], made["ref"][0]),
    }
    out = {}
    for name, (kind, args, source) in runs.items():
        log(f"live: {name}")
        out[name] = live(opts, kind, name.split(",")[0] + ("-empty" if "empty" in name else ""), args, source)
    return out


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--rate", type=float, default=500.0, help="tasks finished per second in the filled history")
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "hubctl-stream-bench"),
                   help="where the filled files go")
    p.add_argument("--keep", action="store_true", help="reuse filled files of an earlier run (same --records/--rate)")
    p.add_argument("--queries", type=int, default=400, help="store-level queries per store (ipyparallel: 1/20)")
    p.add_argument("--dictdb-big", type=int, default=100_000)
    p.add_argument("--skip-live", action="store_true")
    p.add_argument("--live-rate", type=float, default=150.0, help="tasks per second submitted during the live part")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of queries per live run")
    p.add_argument("--every", type=float, default=1.0, help="seconds between live queries")
    add_stack_options(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    env = log_environment()
    results: dict = {}

    def measure():
        made = files(opts)
        results["fill"] = {k: v[2] for k, v in made.items()}
        log("store classes:")
        results["stores"] = part_stores(opts, made)
        if not opts.skip_live:
            results["live"] = part_live(opts, made)

    interrupted = run_stopping_all(measure)
    print(f"\n{opts.records} records finished at {opts.rate:g}/s; one-second windows; {env['cpus']} CPUs")
    for part in ("stores", "live"):
        for name, r in results.get(part, {}).items():
            print(f"{part:<7} {name:<46} median {r['median_ms']:>9.2f} ms  p99 {r['p99_ms']:>9.2f} ms  "
                  f"rows {r['rows_median']:>6.0f}")
    st, lv = results.get("stores", {}), results.get("live", {})
    full = f"{opts.records:,} records"
    pairs = [("stores", st, "ours SQLite task_stream, newest second", "ipyparallel SQLite completed in newest second"),
             ("live", lv, f"ours, {full}", f"ipyparallel, {full}"),
             ("live", lv, f"ours, {full}", "ours, empty file")]
    for part, got, a, b in pairs:
        if a in got and b in got:
            print(f"{part}: {a} / {b}: median {got[a]['median_ms'] / got[b]['median_ms']:.3f}x, "
                  f"p99 {got[a]['p99_ms'] / got[b]['p99_ms']:.3f}x")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results, "interrupted": interrupted},
                      f, indent=1, default=str)
    return 130 if interrupted else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load-child":
        sys.exit(load_child(sys.argv[2:]))
    sys.exit(main())
