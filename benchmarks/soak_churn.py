"""Soak: engine churn for a configurable time, controller memory over time, ours next to ipyparallel.

For each stack (ours: our client, controller with the SQLite store, our engines; ref: ipyparallel's
client, ipcontroller with its SQLite store, ipengines), in the same run:

- start a controller and ``--engines`` engines;
- keep ``--outstanding`` short load-balanced tasks (``retries=3``) in flight for ``--minutes``;
- every ``--kill-every`` seconds SIGKILL one engine and start a replacement;
- every ``--sample`` seconds record the controller's RSS (summed over its process tree) and the
  tasks completed/failed so far.

Printed: the samples per stack, then a summary with tasks done, failures, throughput, RSS at the
first sample after warm-up and at the end, and RSS growth per 10,000 tasks (ratio ours/ref).
Every process started is stopped by pid at the end (also on Ctrl-C).

    python benchmarks/soak_churn.py --minutes 5
    python benchmarks/soak_churn.py --minutes 1 --only ours --json soak.json
    python benchmarks/soak_churn.py --minutes 5 --only ours --ours-arg=--retention-records=20000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import (  # noqa: E402  (process management shared with that benchmark)
    POLL,
    Failure,
    Managed,
    log,
    log_environment,
    print_table,
    ready_json,
    run_stopping_all,
    use_checkout,
)

use_checkout()  # this process and every process it starts (controllers, engines)

CONTROLLER = {
    "ours": [sys.executable, "-m", "jupyter_hub_ctl.controller", "--sqlitedb"],
    "ref": [sys.executable, "-m", "ipyparallel.controller", "--sqlitedb"],
}
ENGINE = {
    "ours": [sys.executable, "-m", "jupyter_hub_ctl.engine"],
    "ref": [sys.executable, "-m", "ipyparallel.engine"],
}
LABEL = {"ours": "jupyter_hub_ctl", "ref": "ipyparallel"}


def short_task(i):
    import time

    time.sleep(0.002)
    return i


short_task.__module__ = "__main__"  # shipped by value


def soak(kind: str, opts) -> dict:
    root = tempfile.mkdtemp(prefix=f"hubctl-soak-{kind}-")
    profile = os.path.join(root, "profile")
    os.makedirs(os.path.join(profile, "security"))
    cid = f"soak-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, IPP_PROFILE_DIR=profile, IPP_CLUSTER_ID=cid, PYTHONUNBUFFERED="1")
    argv = CONTROLLER[kind] + [f"--profile-dir={profile}", f"--cluster-id={cid}", f"--ping={opts.ping}",
                               "--log-level=WARN", "--HeartMonitor.max_heartmonitor_misses=3"]
    if kind == "ours":
        argv += opts.ours_arg
    ctl = Managed(f"{kind} controller", argv, env, root, os.path.join(root, "controller.log"))
    engines: list = []
    client = None
    sec = os.path.join(profile, "security")
    cfile, efile = (os.path.join(sec, f"ipcontroller-{cid}-{s}.json") for s in ("client", "engine"))
    try:
        deadline = time.monotonic() + 60
        while not (ready_json(cfile) and ready_json(efile)):
            if not ctl.running() or time.monotonic() > deadline:
                raise Failure(f"{kind} controller did not start:\n{ctl.log_tail()}")
            time.sleep(POLL)

        def start_engine():
            args = ENGINE[kind] + [f"--file={efile}", "--log-level=WARN"]
            if kind == "ref":
                args.append(f"--profile-dir={profile}")
            engines.append(Managed(f"engine {len(engines)}", args, env, root,
                                   os.path.join(root, f"engine{len(engines)}.log")))

        for _ in range(opts.engines):
            start_engine()
        if kind == "ours":
            from jupyter_hub_ctl import Client

            client = Client(cfile, timeout=60)
            client.wait_for_engines(opts.engines, 60)
        else:
            from ipyparallel import Client

            client = Client(cfile, profile_dir=profile, timeout=60)
            client.wait_for_engines(opts.engines, timeout=60, interactive=False)
        lv = client.load_balanced_view()
        lv.retries = 3
        rng = random.Random(1)
        inflight: list = []
        done = failed = submitted = kills = 0
        samples = []
        t0 = time.monotonic()
        next_kill = t0 + opts.kill_every
        next_sample = t0
        end = t0 + opts.minutes * 60
        while True:
            now = time.monotonic()
            if now >= next_sample:
                samples.append({"t": round(now - t0, 1), "done": done, "failed": failed,
                                "rss_mb": round(ctl.memory()["rss_mb"], 1), "kills": kills})
                log(f"  {kind} t={samples[-1]['t']:>6}s done={done:>8} failed={failed:>5} "
                    f"kills={kills:>4} controller RSS {samples[-1]['rss_mb']:.1f} MB")
                next_sample += opts.sample
            if now >= end:
                break
            if not ctl.running():
                raise Failure(f"{kind} controller exited:\n{ctl.log_tail()}")
            if now >= next_kill:
                alive = [m for m in engines if m.running()]
                if alive:
                    victim = rng.choice(alive)
                    victim.proc.send_signal(signal.SIGKILL)  # the engine only, not its nanny
                    kills += 1
                start_engine()
                next_kill += opts.kill_every
            while len(inflight) < opts.outstanding:
                inflight.append(lv.apply_async(short_task, submitted))
                submitted += 1
            still = []
            for ar in inflight:
                if ar.ready():
                    try:
                        ar.get(0)
                        done += 1
                    except Exception:
                        failed += 1
                else:
                    still.append(ar)
            if len(still) == len(inflight):
                inflight[0].wait(0.05)  # block on the oldest task until something finishes
            inflight = still
        warm = next((s for s in samples if s["done"] >= opts.warmup_tasks), samples[0])
        last = samples[-1]
        growth = (last["rss_mb"] - warm["rss_mb"]) / max(1, last["done"] - warm["done"]) * 10_000
        return {"samples": samples, "done": done, "failed": failed, "kills": kills,
                "tasks_per_s": done / (opts.minutes * 60), "rss_warm_mb": warm["rss_mb"],
                "rss_end_mb": last["rss_mb"], "rss_growth_mb_per_10k": growth}
    finally:
        if client is not None:
            try:
                client.close() if kind == "ours" else client.close(linger=0)
            except Exception as e:
                log(f"  client close failed: {e}")
        leftovers = []
        for m in engines:
            leftovers += m.stop(grace=5.0)
        leftovers += ctl.stop(grace=5.0)
        if leftovers:
            log(f"  processes still alive after SIGKILL: {leftovers}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="soak time per stack")
    p.add_argument("--engines", type=int, default=3)
    p.add_argument("--kill-every", type=float, default=2.0, help="seconds between engine kills")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--outstanding", type=int, default=200, help="tasks kept in flight")
    p.add_argument("--warmup-tasks", type=int, default=2000, help="RSS growth is counted from here")
    p.add_argument("--ping", type=int, default=200, help="heartbeat period (ms) for both controllers")
    p.add_argument("--only", choices=("ours", "ref"))
    p.add_argument("--ours-arg", action="append", default=[],
                   help="extra argument for our controller, e.g. --ours-arg=--retention-records=20000 (repeatable)")
    p.add_argument("--json", help="also write every sample here")
    opts = p.parse_args(argv)
    env = log_environment()
    results, failures = {}, []

    def measure():
        for kind in ([opts.only] if opts.only else ["ours", "ref"]):
            log(f"{LABEL[kind]}: {opts.minutes:g} min, {opts.engines} engines, one SIGKILLed every "
                f"{opts.kill_every:g} s")
            try:
                results[kind] = soak(kind, opts)
            except (Failure, TimeoutError) as e:
                failures.append(f"{kind}: {e}")
                log(f"  FAILED: {e}")

    interrupted = run_stopping_all(measure)
    rows = []
    for key, title, fmt in [("done", "tasks completed", "{:.0f}"),
                            ("failed", "tasks failed (retries exhausted)", "{:.0f}"),
                            ("kills", "engines killed", "{:.0f}"), ("tasks_per_s", "tasks/s", "{:.2f}"),
                            ("rss_warm_mb", "controller RSS after warm-up, MB", "{:.2f}"),
                            ("rss_end_mb", "controller RSS at end, MB", "{:.2f}"),
                            ("rss_growth_mb_per_10k", "RSS growth per 10k tasks, MB", "{:.2f}")]:
        ref, ours = ((results.get(kind) or {}).get(key) for kind in ("ref", "ours"))
        rows.append((title, ref, ours, fmt, ours / ref if ref and ours is not None else None, "(context)", "-"))
    print_table(rows, [], LABEL)
    for f in failures:
        print("FAILED:", f)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"env": env, "options": vars(opts), "results": results, "failures": failures,
                       "interrupted": interrupted}, f, indent=1)
    return 130 if interrupted else (1 if failures else 0)


if __name__ == "__main__":
    sys.exit(main())
