"""``jupyter hubctl``: start, inspect and stop hubs from a shell.

Exit codes: 0 success, 1 failure (a hub failed, is not running, or did not answer),
2 usage error, 3 no such hub.  ``--json`` prints machine-readable data on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Optional

OK, FAILURE, USAGE, NOT_FOUND = 0, 1, 2, 3


class CLIError(Exception):
    def __init__(self, message: str, code: int = FAILURE):
        super().__init__(message)
        self.code = code


def _out(args, data, text: Optional[str] = None) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    elif text is not None:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def _err(message: str) -> None:
    sys.stderr.write(f"jupyter-hubctl: {message}\n")


# ====================================================================== start
def _build_config(args):
    from traitlets.config import Config
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    cfg = Config()
    if args.config:
        path = os.path.abspath(os.path.expanduser(args.config))
        if not os.path.exists(path):
            raise CLIError(f"config file {path} does not exist", USAGE)
        loader_cls = JSONFileConfigLoader if path.endswith(".json") else PyFileConfigLoader
        cfg.merge(loader_cls(os.path.basename(path), os.path.dirname(path)).load_config())
    c = cfg.Cluster
    if args.n is not None:
        from .cluster.lifecycle import MIN_ENGINES

        if args.n < MIN_ENGINES:
            raise CLIError(f"-n must be {MIN_ENGINES} or more", USAGE)
        c.n = args.n
    for opt, trait in (("launcher", "engine_launcher"), ("profile", "profile"), ("profile_dir", "profile_dir"),
                       ("ip", "controller_ip"), ("location", "controller_location"), ("db", "db"),
                       ("restart_limit", "restart_limit"), ("timeout", "engine_timeout")):
        value = getattr(args, opt, None)
        if value is not None:
            c[trait] = os.path.abspath(os.path.expanduser(value)) if opt == "profile_dir" else value
    if args.restart_engines:
        c.restart_engines = True
    for opt, trait in (("engine_cmd", "engine_cmd"), ("engine_args", "engine_args"),
                       ("controller_args", "controller_args")):
        value = getattr(args, opt, None)
        if value is not None:
            c[trait] = shlex.split(value)
    for item in args.set or ():
        key, eq, raw = item.partition("=")
        cls, dot, trait = key.rpartition(".")
        if not eq or not dot or not cls or not trait:
            raise CLIError(f"--set expects Class.trait=value, not {item!r}", USAGE)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        cfg[cls][trait] = value
    if args.id:
        c.cluster_id = args.id
    return cfg


def _make_cluster(cfg):
    from .cluster import Cluster, InvalidHubId, LauncherNotFound

    try:
        cluster = Cluster(config=cfg)
        cluster.launcher  # resolves and configures the launcher now
    except (InvalidHubId, LauncherNotFound) as e:
        raise CLIError(str(e), USAGE) from None
    except Exception as e:  # a bad trait value from --set / a config file
        raise CLIError(f"invalid configuration: {e}", USAGE) from None
    return cluster


def _dry_run(args, cluster) -> int:
    from .wire.connection import connection_file_paths

    launcher = cluster.launcher
    n = cluster.n
    engine_file = connection_file_paths(cluster.profile_dir, cluster.cluster_id)[1]
    if hasattr(launcher, "render"):
        data = {"kind": "script", "script": launcher.render(n, engine_file)}
        text = data["script"]
    elif hasattr(launcher, "hosts"):
        cmds = [launcher.command(launcher.host_for(slot)) for slot in range(n)]
        data = {"kind": "commands", "commands": cmds}
        text = "\n".join(shlex.join(c) for c in cmds)
    elif hasattr(launcher, "mpi_cmd"):
        data = {"kind": "commands", "commands": [launcher.command(n)]}
        text = shlex.join(data["commands"][0])
    else:
        data = {"kind": "commands", "commands": [launcher.engine_command() for _ in range(n)]}
        text = "\n".join(shlex.join(c) for c in data["commands"])
    data.update(id=cluster.cluster_id, launcher=cluster.engine_launcher, n=n)
    _out(args, data, text)
    return OK


def cmd_start(args) -> int:
    from .cluster import background, state
    from .cluster.errors import HubExists

    cfg = _build_config(args)
    cluster = _make_cluster(cfg)
    cfg.Cluster.cluster_id = hub_id = cluster.cluster_id
    if args.dry_run:
        return _dry_run(args, cluster)
    if args.foreground:
        return _start_foreground(args, cluster)
    try:
        started = background.start(cfg, owner_role="cli")
    except HubExists as e:
        raise CLIError(str(e)) from None
    daemon, log = started["process"], started["log"]
    if not args.wait:
        _out(args, {"id": hub_id, "state": "starting", "daemon_pid": daemon.pid, "log": log},
             f"hub {hub_id} starting in the background (daemon pid {daemon.pid}, log {log})\n"
             f"check it with: jupyter hubctl status {hub_id}")
        return OK
    deadline = time.monotonic() + cluster.connection_timeout + cluster.engine_timeout + 30
    try:
        while True:
            record = state.read_state(hub_id)
            current = record and record.get("state")
            if current == "running":
                return _report_started(args, record, daemon.pid, log)
            if current == "failed" or record is None:
                error = (record or {}).get("error") or "the hub stopped while starting"
                _await_daemon_exit(daemon, hub_id)
                raise CLIError(f"hub {hub_id} failed to start: {error}")
            if daemon.poll() is not None:
                from .cluster.processes import log_tail

                tail = log_tail(log, 15)
                state.update_state(hub_id, lambda r: r.update(state="failed", error=f"daemon exited: {tail}"))
                raise CLIError(f"hub {hub_id} failed to start: its daemon exited with code {daemon.returncode}"
                               f"\n  last log lines:\n" + "\n".join("    " + ln for ln in tail.splitlines()))
            if time.monotonic() > deadline:
                _request_stop(hub_id)
                raise CLIError(f"hub {hub_id} did not come up in time (see {log}); stopping it")
            time.sleep(0.1)
    except KeyboardInterrupt:
        _err(f"interrupted: stopping hub {hub_id}")
        _request_stop(hub_id)
        return 130


def _await_daemon_exit(daemon, hub_id: str, timeout: float = 30.0) -> None:
    """After a failed start, return only once the daemon has cleaned up and exited, so that the
    command's failure means nothing of the hub is left running."""
    import subprocess

    try:
        daemon.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _err(f"hub {hub_id}: its daemon (pid {daemon.pid}) is still cleaning up after {timeout:.0f}s")


def _request_stop(hub_id: str) -> None:
    from .cluster import find_hub

    try:
        find_hub(hub_id).stop_sync()
    except Exception as e:
        _err(f"stopping hub {hub_id}: {e}")


def _report_started(args, record, daemon_pid, log) -> int:
    from .cluster.state import connection_file

    conn = connection_file(record) or ""
    engines = sum(e.get("count", 1) for e in record.get("engines") or () if e.get("status") in ("starting", "running"))
    data = {"id": record["id"], "state": record["state"], "engines": engines, "connection_file": conn,
            "profile_dir": record.get("profile_dir"), "daemon_pid": daemon_pid,
            "controller_pid": (record.get("controller") or {}).get("pid"), "log": log}
    _out(args, data, f"hub {record['id']} running with {engines} engines\n"
                     f"connection file: {conn}\nstop it with: jupyter hubctl stop {record['id']}")
    return OK


def _start_foreground(args, cluster) -> int:
    import signal

    from .cluster import ClusterError

    try:
        cluster.start_sync()
    except ClusterError as e:
        raise CLIError(str(e)) from None
    except KeyboardInterrupt:
        return 130
    _out(args, {"id": cluster.cluster_id, "state": "running", "connection_file": cluster.client_connection_file},
         f"hub {cluster.cluster_id} running with {cluster.n} engines (Ctrl-C stops it)\n"
         f"connection file: {cluster.client_connection_file}")
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while not cluster._ended.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    cluster.stop_sync()
    return OK


# ====================================================================== inspecting
def _hub(hub_id: str) -> dict:
    from .cluster import get_hub
    from .cluster.errors import HubNotFound, InvalidHubId

    try:
        return get_hub(hub_id)
    except (HubNotFound, InvalidHubId) as e:
        raise CLIError(str(e), NOT_FOUND) from None
    except ValueError as e:
        raise CLIError(str(e)) from None


def _client(hub_id: str, timeout: float = 10.0):
    from .client.client import Client
    from .cluster import ClusterError, find_hub

    _hub(hub_id)
    try:
        info = find_hub(hub_id).client_connection_info()
    except ClusterError as e:
        raise CLIError(str(e)) from None
    try:
        return Client(info, timeout=timeout)
    except Exception as e:
        raise CLIError(f"hub {hub_id} did not answer: {e or type(e).__name__}") from None


def _live_engines(record: dict) -> list:
    from .cluster.state import process_status

    return [e for e in record.get("engines") or () if e.get("status") in ("starting", "running")
            and (not e.get("pid") or process_status(e) == "alive")]


def _summary(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "events"}
    out["engine_processes"] = sum(e.get("count", 1) for e in _live_engines(record))
    return out


def _health(client) -> dict:
    """The hub's health reply (state ok/degraded, reasons, degraded_since, details); state unknown on failure."""
    try:
        health = client.health()
    except Exception as e:
        return {"state": "unknown", "reasons": [], "degraded_since": None,
                "error": f"{type(e).__name__}: {e}"}
    return {k: v for k, v in health.items() if k != "status"}


def _health_lines(health: dict) -> list:
    state = health.get("state", "unknown")
    if state == "degraded":
        since = health.get("degraded_since")
        head = "  health: DEGRADED" + (f" since {str(since)[:19]}" if since else "") + " (tasks are still scheduled)"
        return [head] + [f"    - {reason}" for reason in health.get("reasons") or ()]
    if state == "unknown":
        return [f"  health: unknown ({health.get('error')})"]
    return [f"  health: {state}"]


def cmd_list(args) -> int:
    from .cluster import list_hubs

    hubs = list_hubs()
    rows = [("ID", "STATUS", "ENGINES", "LAUNCHER", "CONTROLLER", "PROFILE", "CREATED")]
    for h in hubs:
        rows.append((h["id"], h.get("status", "?"), str(sum(e.get("count", 1) for e in _live_engines(h)))
                     if h.get("status") != "corrupt" else "-", h.get("launcher", "-"),
                     str((h.get("controller") or {}).get("pid", "-")), h.get("profile_dir", "-"),
                     (h.get("created") or "")[:19]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) if hubs else "no hubs"
    _out(args, [_summary(h) for h in hubs], text)
    return OK


def cmd_status(args) -> int:
    record = _hub(args.id)
    data = _summary(record)
    data["events"] = record.get("events", [])[-10:]
    if record.get("alive") and record.get("state") == "running":
        try:
            client = _client(args.id, timeout=5)
        except CLIError as e:
            data["registered"], data["query_error"] = None, str(e)
        else:
            try:
                data["registered"] = client.ids
                data["queue"] = {str(k): v for k, v in client.queue_status().items()}
                data["health"] = _health(client)
                data["encrypted"] = client.curve is not None
            finally:
                client.close()
    lines = [f"hub {record['id']}: {record.get('status')}"
             + (f" ({record.get('stale_reason')})" if not record.get("alive") and record.get("stale_reason") else "")
             + (", degraded" if (data.get("health") or {}).get("state") == "degraded" else "")]
    for key in ("profile_dir", "launcher", "db", "created", "updated"):
        lines.append(f"  {key.replace('_', ' ')}: {record.get(key)}")
    ctl = record.get("controller") or {}
    lines.append(f"  controller pid: {ctl.get('pid', '-')}  log: {ctl.get('log', '-')}")
    owner = record.get("owner") or {}
    lines.append(f"  supervised by: pid {owner.get('pid')} ({owner.get('role')})" if record.get("supervised")
                 else "  supervised by: nobody (engines that die are not replaced)")
    lines.append(f"  engine processes: {data['engine_processes']}")
    if "registered" in data:
        lines.append(f"  registered engines: {data['registered'] if data['registered'] is not None else data.get('query_error')}")
    if "health" in data:
        lines += _health_lines(data["health"])
    if "encrypted" in data:
        lines.append("  encryption: " + ("CurveZMQ on every connection" if data["encrypted"]
                                         else "none (plaintext; set --enable-curve beyond loopback)"))
    if record.get("error"):
        lines.append("  error: " + str(record["error"]).replace("\n", "\n    "))
    for ev in data["events"]:
        lines.append(f"  {ev.get('time', '')[:19]}  {ev.get('message')}")
    _out(args, data, "\n".join(lines))
    return OK if record.get("alive") else FAILURE


def cmd_engines(args) -> int:
    record = _running_hub(args.id)
    client = _client(args.id)
    try:
        registered = client.ids
    finally:
        client.close()
    procs = record.get("engines") or []
    data = {"id": args.id, "registered": registered, "processes": procs}
    lines = [f"registered engines ({len(registered)}): {registered}", "processes:"]
    for e in procs:
        where = f"pid {e.get('pid')}" if e.get("pid") else f"job {e.get('job_id')}"
        extra = f"  last exit: {e['exit']['reason']}" if e.get("exit") else ""
        lines.append(f"  slot {e.get('slot')}: {where} x{e.get('count', 1)} {e.get('status')} "
                     f"restarts={e.get('restarts', 0)}{extra}")
    _out(args, data, "\n".join(lines))
    return OK


def _running_hub(hub_id: str) -> dict:
    """The annotated record of a hub that runs; CLIError saying why otherwise."""
    from .cluster.state import not_running

    record = _hub(hub_id)
    reason = not_running(record)
    if reason is not None:
        raise CLIError(reason)
    return record


def _with_client(hub_id, fn):
    _running_hub(hub_id)
    client = _client(hub_id)
    try:
        return fn(client)
    except CLIError:
        raise
    except Exception as e:
        raise CLIError(f"hub {hub_id}: {type(e).__name__}: {e}") from None
    finally:
        client.close()


def cmd_queue(args) -> int:
    status = _with_client(args.id, lambda c: c.queue_status(verbose=args.verbose))
    data = {str(k): v for k, v in status.items()}
    lines = [f"engine {k}: " + ", ".join(f"{n}={len(v) if isinstance(v, list) else v}" for n, v in sorted(d.items()))
             for k, d in status.items() if isinstance(d, dict)]
    lines.append(f"unassigned: {status.get('unassigned', 0)}")
    _out(args, data, "\n".join(lines))
    return OK


def cmd_results(args) -> int:
    def query(client):
        status = client.result_status(args.msg_ids)
        out = {"pending": status["pending"], "completed": {}}
        for msg_id in status["completed"]:
            try:
                out["completed"][msg_id] = {"value": repr(client.get_result(msg_id).get(5))}
            except Exception as e:
                out["completed"][msg_id] = {"error": f"{type(e).__name__}: {e}"}
        return out

    data = _with_client(args.id, query)
    unknown = [m for m in args.msg_ids if m not in data["pending"] and m not in data["completed"]]
    lines = [f"{m}: pending" for m in data["pending"]]
    lines += [f"{m}: {r.get('value', r.get('error'))}" for m, r in data["completed"].items()]
    _out(args, data, "\n".join(lines) or "no results")
    return FAILURE if unknown else OK


def cmd_history(args) -> int:
    history = _with_client(args.id, lambda c: c.hub_history())
    _out(args, history, "\n".join(history) if history else "no tasks")
    return OK


def cmd_purge(args) -> int:
    _with_client(args.id, lambda c: c.purge_results(args.msg_ids if args.msg_ids else "all"))
    what = f"{len(args.msg_ids)} results" if args.msg_ids else "all completed results"
    _out(args, {"id": args.id, "purged": args.msg_ids or "all"}, f"purged {what} from hub {args.id}")
    return OK


def cmd_resubmit(args) -> int:
    mapping = dict(zip(args.msg_ids, _with_client(args.id, lambda c: c.resubmit(args.msg_ids).msg_ids)))
    _out(args, mapping, "\n".join(f"{old} -> {new}" for old, new in dict(mapping).items()))
    return OK


# ====================================================================== stop / clean
def cmd_stop(args) -> int:
    from .cluster import find_hub, list_hubs

    if args.all and args.ids:
        raise CLIError("give hub ids or --all, not both", USAGE)
    if not args.all and not args.ids:
        raise CLIError("which hub? give its id (see `jupyter hubctl list`) or --all", USAGE)
    ids = [h["id"] for h in list_hubs() if h.get("alive")] if args.all else args.ids
    results, code = [], OK
    for hub_id in ids:
        try:
            record = _hub(hub_id)
        except CLIError as e:
            _err(str(e))
            results.append({"id": hub_id, "stopped": False, "error": str(e)})
            code = max(code, e.code)
            continue
        was_alive = record.get("alive")
        try:
            find_hub(hub_id).stop_sync()
            results.append({"id": hub_id, "stopped": True, "was_running": bool(was_alive)})
        except Exception as e:
            _err(f"stopping hub {hub_id} failed: {e}")
            results.append({"id": hub_id, "stopped": False, "error": str(e)})
            code = FAILURE
    text = "\n".join(f"stopped hub {r['id']}" + ("" if r.get("was_running", True) else " (it was not running; "
                                                  "removed its state file)") for r in results if r["stopped"])
    _out(args, results, text or "no hubs running")
    return code


def cmd_clean(args) -> int:
    from .cluster import clean_stale

    removed = clean_stale()
    lines = [f"removed hub {r['id']} ({r['reason'] or r['status']})"
             + (f"; stopped leftover engine pids {r['stopped_pids']}" if r["stopped_pids"] else "") for r in removed]
    _out(args, removed, "\n".join(lines) or "nothing to clean")
    return OK


# ====================================================================== parser
def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="jupyter hubctl", description="Start, inspect and stop jupyter_hub_ctl hubs.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("start", parents=[js], help="start a hub with engines (in the background)")
    p.add_argument("-n", type=int, default=None, help="number of engines (default: CPU count)")
    p.add_argument("--launcher", help="engine launcher: local (default), mpi, ssh, slurm, pbs, sge, lsf")
    p.add_argument("--profile", help="IPython profile name (default: default)")
    p.add_argument("--profile-dir", help="profile directory (overrides --profile)")
    p.add_argument("--id", help="hub id (default: random)")
    p.add_argument("--wait", dest="wait", action="store_true", default=True,
                   help="return once the engines registered (default)")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="return as soon as the hub is launching")
    p.add_argument("--foreground", action="store_true", help="run the hub in this process until Ctrl-C")
    p.add_argument("--ip", help="address the controller listens on (for engines on other hosts)")
    p.add_argument("--location", help="host name peers use to reach a wildcard --ip")
    p.add_argument("--db", choices=["sqlitedb", "dictdb", "nodb"], help="task-record store (default sqlitedb)")
    p.add_argument("--restart-engines", action="store_true", help="replace engines that die")
    p.add_argument("--restart-limit", type=int, help="restarts allowed per engine slot (default 5)")
    p.add_argument("--timeout", type=float, help="seconds to wait for engines to register (default 60)")
    p.add_argument("--engine-cmd", help="engine command replacing the launcher's default (quoted string)")
    p.add_argument("--engine-args", help="extra engine arguments (quoted string)")
    p.add_argument("--controller-args", help="extra controller arguments (quoted string)")
    p.add_argument("--config", help="a traitlets config file (.py or .json)")
    p.add_argument("--set", action="append", metavar="CLASS.TRAIT=VALUE",
                   help="set any trait, value as JSON or text (e.g. MPIEngineLauncher.mpi_args='[\"-v\"]'); "
                        "settings of controller classes (HubFactory, Hub, TaskScheduler, SQLiteDB, ...) are "
                        "passed to the controller (e.g. SQLiteDB.max_page_count=30)")
    p.add_argument("--dry-run", action="store_true", help="print the engine commands or job script; start nothing")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", parents=[js], help="stop hubs")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="stop every running hub")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("list", parents=[js], help="list hubs")
    p.set_defaults(func=cmd_list)

    for name, func, help_ in (("status", cmd_status, "a hub's state, processes and recent events"),
                              ("engines", cmd_engines, "a hub's engines and their processes"),
                              ("history", cmd_history, "msg_ids of the tasks a hub has seen")):
        p = sub.add_parser(name, parents=[js], help=help_)
        p.add_argument("id", metavar="ID")
        p.set_defaults(func=func)
    p = sub.add_parser("queue", parents=[js], help="a hub's queue status per engine")
    p.add_argument("id", metavar="ID")
    p.add_argument("--verbose", action="store_true", help="list msg_ids instead of counting them")
    p.set_defaults(func=cmd_queue)
    for name, func, help_, nargs in (("results", cmd_results, "results of tasks by msg_id", "+"),
                                     ("purge", cmd_purge, "drop task records (all completed ones without msg_ids)",
                                      "*"),
                                     ("resubmit", cmd_resubmit, "run tasks again", "+")):
        p = sub.add_parser(name, parents=[js], help=help_)
        p.add_argument("id", metavar="ID")
        p.add_argument("msg_ids", nargs=nargs, metavar="MSG_ID")
        p.set_defaults(func=func)

    p = sub.add_parser("clean", parents=[js], help="remove state files of hubs that are no longer running")
    p.set_defaults(func=cmd_clean)
    sub.add_parser("controller", help="run a controller in the foreground (ipcontroller's options)")
    sub.add_parser("engine", help="run an engine in the foreground (ipengine's options)")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "controller":
        from .controller.app import main as controller_main

        controller_main(argv[1:])
        return OK
    if argv and argv[0] == "engine":
        from .engine.app import main as engine_main

        engine_main(argv[1:])
        return OK
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except CLIError as e:
        _err(str(e))
        code = e.code
    except KeyboardInterrupt:
        code = 130
    except Exception as e:
        from .cluster import ClusterError

        if not isinstance(e, ClusterError):
            raise
        _err(str(e))
        code = FAILURE
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
