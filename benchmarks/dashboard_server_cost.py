"""What open hub dashboards cost the Jupyter server: CPU of the server process per dashboard.

A real ``jupyter server`` with the extension, a hub of ``--engines`` real engines (64 by default)
started through its REST API, and a load generator (our client in a process of its own) that
first runs ``--finished`` short tasks (100,000 by default: the hub's history a dashboard must not
pay for), then, with ``--load busy``, keeps the engines busy with short tasks while measuring.
Each "dashboard" is a polling client doing exactly what the dashboard page does: one
``GET hubs/{id}/dashboard?since=<previous stream.now>&limit=10000`` a second. For 0, 1, 2, 4, ...
dashboards in turn, the server process's CPU time (user + system of that process alone; the hub
and engines are other processes) is measured over ``--seconds``; the cost of one dashboard is the
increase over no dashboard, divided by the number of dashboards. Target: < 5 % of a core per
dashboard. ipyparallel has no dashboard to compare with; the figures are absolute.

    python benchmarks/dashboard_server_cost.py
    python benchmarks/dashboard_server_cost.py --engines 4 --finished 1000 --dashboards 0,1,2,4,8 --seconds 30
    python benchmarks/dashboard_server_cost.py --load idle
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from controller_vs_ipcontroller import (  # noqa: E402  (process management shared with that benchmark)
    POLL,
    Failure,
    Managed,
    describe,
    environment,
    imported_from,
    log,
    run_stopping_all,
    use_checkout,
)

#: the load generator: the history first (argv[3] tasks, then "filled"), then, unless argv[4] is
#: "idle", short tasks one map after the other, counting what finished
LOAD = """
import sys, time
from jupyter_hub_ctl import Client
rc = Client(sys.argv[1])
rc.wait_for_engines(int(sys.argv[2]), timeout=300)
lview = rc.load_balanced_view()
def work(x):
    return x
history = int(sys.argv[3])
for first in range(0, history, 10000):
    lview.map_sync(work, range(first, min(history, first + 10000)))
print("filled", history, flush=True)
done, started = 0, time.monotonic()
while sys.argv[4] != "idle":
    lview.map_sync(work, range(500))
    done += 500
    print(f"{done} {time.monotonic() - started:.3f}", flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A jupyter server with the extension, in private config, data, runtime and IPython dirs."""

    def __init__(self, root: str):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.env = dict(os.environ, JUPYTER_CONFIG_DIR=f"{root}/config", JUPYTER_DATA_DIR=f"{root}/data",
                        JUPYTER_RUNTIME_DIR=f"{root}/runtime", IPYTHONDIR=f"{root}/ipython")
        argv = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                "--port-retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                "--ServerApp.log_level=WARN"]
        os.makedirs(f"{root}/config")
        with open(f"{root}/config/jupyter_server_config.json", "w") as f:  # the extension, however it was installed
            json.dump({"ServerApp": {"jpserver_extensions": {"jupyter_hub_ctl": True}}}, f)
        if os.geteuid() == 0:
            argv.append("--allow-root")
        self.proc = Managed("jupyter-server", argv, self.env, root, f"{root}/server.log")
        self.process = psutil.Process(self.proc.pid)

    def request(self, method: str, path: str, body=None, timeout: float = 30):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/hubctl/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None, len(raw)

    def wait(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.proc.running():
                raise Failure(f"the server exited while waiting for {what}:\n{self.proc.log_tail()}")
            try:
                if condition():
                    return
            except (OSError, ValueError, urllib.error.HTTPError):
                pass
            time.sleep(POLL)
        raise Failure(f"timed out waiting for {what}")

    def cpu_seconds(self) -> float:
        """CPU time of the server process alone (its hubs run in other processes)."""
        times = self.process.cpu_times()
        return times.user + times.system


class Dashboard(threading.Thread):
    """One open dashboard's requests, as the page makes them (labextension/src/dashboard/feed.ts): a GET of
    hubs/{id}/dashboard a second, the first for the latest 10,000 changes, then those since the last reply."""

    def __init__(self, server: Server, hub_id: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.server, self.hub_id, self.stop_event = server, hub_id, stop
        self.since, self.latencies, self.sizes, self.tasks, self.errors = None, [], [], 0, []

    def run(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            query = f"?limit=10000{'' if self.since is None else f'&since={self.since}'}"
            try:
                reply, size = self.server.request("GET", f"hubs/{self.hub_id}/dashboard{query}")
                self.latencies.append(time.monotonic() - started)
                self.sizes.append(size)
                if reply["stream"]:
                    self.since = reply["stream"]["now"]
                    self.tasks += len(reply["stream"]["tasks"])
            except (OSError, ValueError) as e:
                self.errors.append(repr(e))
            self.stop_event.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def measure(server: Server, hub_id: str, dashboards: int, seconds: float, load) -> dict:
    stop = threading.Event()
    pollers = [Dashboard(server, hub_id, stop) for _ in range(dashboards)]
    for p in pollers:
        p.start()
    deadline = time.monotonic() + 60
    while any(len(p.latencies) < 2 for p in pollers):  # every poller past its first (largest) reply
        if time.monotonic() > deadline or any(p.errors for p in pollers):
            raise Failure(f"dashboards got no replies: {[e for p in pollers for e in p.errors][:3]}")
        time.sleep(POLL)
    done_before = load.done()
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = server.cpu_seconds() - cpu_before, time.monotonic() - wall_before
    done = load.done() - done_before
    stop.set()
    for p in pollers:
        p.join(10)
    latencies = [t for p in pollers for t in p.latencies]
    sizes = [s for p in pollers for s in p.sizes]
    errors = [e for p in pollers for e in p.errors]
    if errors:
        raise Failure(f"dashboard requests failed: {errors[:3]}")
    return {"dashboards": dashboards, "server_cpu_pct": 100 * cpu / wall, "tasks_per_s": done / wall,
            "latency_ms_p50": 1000 * statistics.median(latencies) if latencies else None,
            "reply_kb_mean": statistics.mean(sizes) / 1024 if sizes else None,
            "changes_per_reply": (sum(p.tasks for p in pollers) / len(latencies)) if latencies else None}


class Load:
    """The load generator process, and how many tasks it has finished."""

    def __init__(self, connection_file: str, engines: int, history: int, load: str, root: str, env: dict):
        self.proc = Managed("load", [sys.executable, "-u", "-c", LOAD, connection_file, str(engines), str(history),
                                     load], env, root, f"{root}/load.log")
        self.log_path = f"{root}/load.log"

    def lines(self) -> list:
        with open(self.log_path) as f:
            return [line.split() for line in f if line.strip()]

    def filled(self) -> bool:
        return any(line[0] == "filled" for line in self.lines())

    def done(self) -> int:
        counts = [int(line[0]) for line in self.lines() if line[0].isdigit()]
        return counts[-1] if counts else 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--engines", type=int, default=64, help="engines of the hub")
    p.add_argument("--finished", type=int, default=100_000, help="tasks run before measuring (the hub's history)")
    p.add_argument("--dashboards", default="0,1,2,4", help="numbers of open dashboards to measure, in turn")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per number of dashboards")
    p.add_argument("--load", choices=["busy", "idle"], default="busy",
                   help="busy: the engines run short tasks all along; idle: no tasks")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse_args(argv)
    use_checkout()
    env = environment()
    log(f"{describe(env)} from {imported_from()}")
    counts = [int(x) for x in opts.dashboards.split(",")]
    if 0 not in counts:
        counts.insert(0, 0)
    results: list = []

    def run():
        root = tempfile.mkdtemp(prefix="hubctl-dash-bench-")
        server = Server(root)
        server.wait(lambda: server.request("GET", "version")[0], 60, "the server")
        server.request("POST", "hubs", {"name": "bench", "n": opts.engines})
        server.wait(lambda: server.request("GET", "hubs/bench")[0]["engines"] == opts.engines, 600,
                    f"{opts.engines} engines")
        connection = server.request("GET", "hubs/bench/connection")[0]["connection_file"]
        load = Load(connection, opts.engines, opts.finished, opts.load, root, server.env)
        began = time.monotonic()
        server.wait(load.filled, 3600, f"{opts.finished} finished tasks")
        log(f"{opts.finished} tasks finished in {time.monotonic() - began:.0f} s")
        if opts.load == "busy":
            server.wait(lambda: load.done() > 0, 60, "the first tasks of the load")
        for k in counts:
            log(f"measuring {k} dashboard(s) for {opts.seconds:g} s")
            results.append(measure(server, "bench", k, opts.seconds, load))
        server.request("DELETE", "hubs/bench", timeout=60)

    interrupted = run_stopping_all(run)
    base = next((r["server_cpu_pct"] for r in results if r["dashboards"] == 0), None)
    print(f"\nserver CPU with open dashboards ({opts.engines} engines, {opts.finished} finished tasks before, "
          f"load {opts.load}, {opts.seconds:g} s each)")
    print(f"{'dashboards':>10} {'server CPU':>11} {'per dashboard':>14} {'tasks/s':>8} {'latency p50':>12} "
          f"{'reply':>9} {'changes/reply':>14}")
    for r in results:
        per = (r["server_cpu_pct"] - base) / r["dashboards"] if r["dashboards"] and base is not None else None
        r["per_dashboard_pct"] = per
        fmt = (lambda v, spec: "-" if v is None else format(v, spec))
        print(f"{r['dashboards']:>10} {r['server_cpu_pct']:>10.2f}% {fmt(per, '>13.2f') + '%':>14} "
              f"{r['tasks_per_s']:>8.0f} {fmt(r['latency_ms_p50'], '>9.1f') + ' ms':>12} "
              f"{fmt(r['reply_kb_mean'], '>6.1f') + ' kB':>9} {fmt(r['changes_per_reply'], '>14.0f')}")
    verdict = [r for r in results if r["dashboards"] and r["per_dashboard_pct"] is not None]
    if verdict:
        worst = max(r["per_dashboard_pct"] for r in verdict)
        print(f"\nworst cost per dashboard: {worst:.2f} % of a core (target < 5 %): {'PASS' if worst < 5 else 'MISS'}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"environment": env, "options": vars(opts), "results": results}, f, indent=1)
    return 1 if interrupted or len(results) < len(counts) else 0


if __name__ == "__main__":
    sys.exit(main())
