"""IPython magics: ``%hub`` (start, stop, list, connect, status, engines, results) and the ``%px`` family.

Load with ``%load_ext jupyter_hub_ctl`` (or ``c.InteractiveShellApp.extensions =
['jupyter_hub_ctl']``).  Configure with ``c.HubMagics.<trait>`` / ``c.PxMagics.<trait>``.
"""

from __future__ import annotations

import json
import shlex
import sys
import weakref
from typing import Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Bool, Enum, Float, Integer, List, Unicode

from .hubs import HubConnection, HubStartFailed, KernelHubs
from .px_magics import ParallelMagics, _Help, _Parser

_registries: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _hub_parser() -> _Parser:
    p = _Parser(prog="%hub", description="Start, find, inspect and stop hubs from this kernel.")
    sub = p.add_subparsers(dest="command", metavar="{start,stop,list,connect,status,engines,results,dashboard}",
                           parser_class=_Parser)
    s = sub.add_parser("start", help="start a hub (in the background) and connect to it",
                       description="Start a hub owned by a background process, wait for its engines, connect.")
    s.add_argument("-n", type=int, default=None, help="number of engines")
    s.add_argument("--launcher", default=None, help="engine launcher: local, mpi, ssh, slurm, pbs, sge, lsf, ...")
    s.add_argument("--profile", default=None, help="IPython profile of the hub")
    s.add_argument("--id", default=None, help="hub id (default: random)")
    s.add_argument("--stop-on-exit", action="store_true", help="stop the hub when this kernel exits")
    s.add_argument("--name", default=None, help="variable to bind the connection to (default: hub)")
    s.add_argument("--set", action="append", default=[], metavar="Class.trait=value",
                   help="any Cluster, launcher or controller trait (e.g. SQLiteDB.max_page_count=30), "
                        "value as JSON (repeatable)")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait for the engines")
    s.add_argument("--dry-run", action="store_true", help="show the engine commands or job script; start nothing")
    st = sub.add_parser("stop", help="stop a hub (default: the connected one)")
    st.add_argument("id", nargs="?", default=None)
    sub.add_parser("list", help="list hubs (from every tool: CLI, server, kernels)")
    c = sub.add_parser("connect", help="connect to a running hub")
    c.add_argument("id")
    c.add_argument("--name", default=None, help="variable to bind the connection to (default: hub)")
    for name, text in (("status", "a live status widget of a hub"), ("engines", "the engines of a hub"),
                       ("results", "a browser of a hub's task records"),
                       ("dashboard", "a hub's live dashboard: task stream, throughput, engines, progress")):
        q = sub.add_parser(name, help=f"{text} (default: the connected one)")
        q.add_argument("id", nargs="?", default=None)
    return p


def _json_or_str(raw: str):
    """A --set value: JSON, else a Python literal (IPython expands {...} to Python reprs), else the text."""
    import ast

    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    if raw[:1] in "[{" and raw[-1:] in "]}":
        raise UsageError(f"%hub start: --set value {raw!r} looks like a list or dict but is not valid JSON; "
                         "quote the whole setting, e.g. --set 'MPIEngineLauncher.mpi_args=[\"--oversubscribe\"]'")
    return raw


@magics_class
class HubMagics(Magics):
    """``%hub``: start, stop, list, connect to and inspect hubs from this kernel."""

    default_n = Integer(None, allow_none=True, config=True,
                        help="Engines %hub start launches without -n (None: the Cluster default, one per CPU).")
    default_launcher = Unicode("local", config=True, help="Engine launcher of %hub start without --launcher.")
    default_name = Unicode("hub", config=True, help="Variable %hub start / connect bind the connection to.")
    start_timeout = Float(120.0, config=True,
                          help="Seconds %hub start waits for the controller and engines before giving up "
                               "(and stopping what it started).")
    progress = Enum(["auto", "widget", "text", "none"], "auto", config=True,
                    help="How %hub start shows engines registering: a widget (notebooks), text lines, or "
                         "nothing; auto picks the widget where a widget frontend may exist.")
    controller_args = List(Unicode(), config=True, help="Extra controller arguments for hubs %hub start launches.")
    engine_args = List(Unicode(), config=True, help="Extra engine arguments for hubs %hub start launches.")
    restart_engines = Bool(False, config=True, help="Hubs %hub start launches replace engines that die.")

    def __init__(self, shell=None, registry: Optional[KernelHubs] = None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.registry = registry if registry is not None else KernelHubs()
        self.parser = _hub_parser()

    # ------------------------------------------------------------------ entry point
    @line_magic
    def hub(self, line: str = ""):
        """Start, stop, list, connect to and inspect hubs. ``%hub -h`` / ``%hub start -h`` for help."""
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%hub: {e}") from None
        if not argv:
            raise UsageError("%hub needs a command: start, stop, list, connect, status, engines, results or dashboard\n"
                             + self.parser.format_usage().rstrip())
        try:
            args = self.parser.parse_args(argv)
        except _Help:
            return None
        return getattr(self, f"_cmd_{args.command}")(args)

    # ------------------------------------------------------------------ commands
    def _config(self, args):
        from traitlets.config import Config

        cfg = Config()
        cl = cfg.Cluster
        n = args.n if args.n is not None else self.default_n
        if n is not None:
            from ..cluster.lifecycle import MIN_ENGINES

            if n < MIN_ENGINES:
                raise UsageError(f"%hub start: -n must be {MIN_ENGINES} or more")
            cl.n = n
        cl.engine_launcher = args.launcher or self.default_launcher
        if args.profile:
            cl.profile = args.profile
        if args.id:
            cl.cluster_id = args.id
        if self.controller_args:
            cl.controller_args = list(self.controller_args)
        if self.engine_args:
            cl.engine_args = list(self.engine_args)
        cl.restart_engines = self.restart_engines
        cl.stop_on_exit = bool(args.stop_on_exit)
        for item in args.set:
            key, eq, raw = item.partition("=")
            cls, dot, trait = key.rpartition(".")
            if not eq or not dot or not cls or not trait:
                raise UsageError(f"%hub start: --set expects Class.trait=value, not {item!r}")
            cfg[cls][trait] = _json_or_str(raw)
        return cfg

    def _progress_view(self, n: Optional[int]):
        from .widgets import EngineProgress, in_notebook, show

        mode = self.progress
        if mode == "auto":
            mode = "widget" if in_notebook() else "text"
        wanted = n if n is not None else 0
        view = EngineProgress(wanted, stream=sys.stdout if mode == "text" else None)
        if mode == "widget":
            view.handle = show(view)
        if mode != "none":
            view.start()  # the updater thread draws it (throttled) while this thread waits
        return view

    def _cmd_start(self, args):
        from ..cluster import ClusterError, HubExists, InvalidHubId, LauncherNotFound
        from ..cluster.background import make_cluster
        from . import hubs

        cfg = self._config(args)
        name = args.name or self.default_name
        if not name.isidentifier():
            raise UsageError(f"%hub start: --name must be a Python identifier, not {name!r}")
        try:
            cluster = make_cluster(cfg)  # bad ids, launchers and trait values surface here
        except (InvalidHubId, LauncherNotFound) as e:
            raise UsageError(f"%hub start: {e}") from None
        except Exception as e:
            raise UsageError(f"%hub start: invalid configuration: {e}") from None
        cfg.Cluster.cluster_id = cluster.cluster_id
        if args.dry_run:
            plan = hubs.dry_run(cfg)
            print(f"# dry run: {plan['launcher']} launcher, {plan['n']} engines ({plan['kind']})")
            print(plan["text"])
            return None
        timeout = args.timeout if args.timeout is not None else self.start_timeout
        progress = self._progress_view(cluster.n)
        try:
            conn = hubs.start(cfg, progress, timeout, stop_on_exit=args.stop_on_exit)
        except HubExists as e:
            raise UsageError(f"%hub start: {e}") from None
        except (HubStartFailed, ClusterError) as e:
            raise HubStartFailed(str(e)) from None
        self._bind(conn, name)
        print(f"hub {conn.id} running with {len(conn.client.ids)} engines; connected as `{name}` "
              f"(`{name}.client` is the Client). Stop it with %hub stop"
              + ("" if args.stop_on_exit else " — it keeps running if the kernel restarts."))
        return None

    def _bind(self, conn: HubConnection, name: str) -> None:
        self.registry.add(conn)
        self.shell.user_ns[name] = conn

    def _conn(self, hub_id: Optional[str], what: str) -> HubConnection:
        if hub_id is None:
            if self.registry.current is None:
                raise UsageError(f"%hub {what}: no hub connected here; give a hub id, or run %hub start / "
                                 "%hub connect ID (%hub list shows hubs)")
            return self.registry.current
        conn = self.registry.connections.get(hub_id)
        if conn is not None:
            return conn
        return self._connect(hub_id, what)

    def _connect(self, hub_id: str, what: str) -> HubConnection:
        from ..cluster.errors import HubNotFound, HubNotRunning, InvalidHubId
        from . import hubs

        try:
            return hubs.connect(hub_id)
        except (HubNotFound, InvalidHubId) as e:
            raise UsageError(f"%hub {what}: {e}") from None
        except HubNotRunning as e:
            raise UsageError(f"%hub {what}: {e}") from None
        except Exception as e:
            raise UsageError(f"%hub {what}: hub {hub_id} did not answer: {type(e).__name__}: {e}") from None

    def _cmd_stop(self, args):
        from ..cluster import find_hub
        from ..cluster.errors import HubNotFound, InvalidHubId

        hub_id = args.id or (self.registry.current.id if self.registry.current else None)
        if hub_id is None:
            raise UsageError("%hub stop: no hub connected here; give the id of the hub to stop (%hub list)")
        conn = self.registry.connections.get(hub_id)
        if conn is not None:
            conn.stop()
        else:
            try:
                find_hub(hub_id).stop_sync()
            except (HubNotFound, InvalidHubId) as e:
                raise UsageError(f"%hub stop: {e}") from None
        self.registry.forget(hub_id)
        print(f"hub {hub_id} stopped")

    def _cmd_list(self, args):
        from .hubs import hubs_table

        return hubs_table(self.registry.current.id if self.registry.current else None)

    def _cmd_connect(self, args):
        name = args.name or self.default_name
        if not name.isidentifier():
            raise UsageError(f"%hub connect: --name must be a Python identifier, not {name!r}")
        existing = self.registry.connections.get(args.id)
        conn = existing if existing is not None and not existing.stopped else self._connect(args.id, "connect")
        self._bind(conn, name)
        print(f"connected to hub {conn.id} ({len(conn.client.ids)} engines) as `{name}`")

    def _cmd_status(self, args):
        conn = self._conn(args.id, "status")
        return conn.status()

    def _cmd_engines(self, args):
        return self._conn(args.id, "engines").engines()

    def _cmd_results(self, args):
        return self._conn(args.id, "results").results()

    def _cmd_dashboard(self, args):
        return self._conn(args.id, "dashboard").dashboard()


class PxMagics(ParallelMagics):
    """``%px`` / ``%%px`` / ``%pxresult`` / ``%pxconfig`` / ``%autopx`` on the engines of the connected hub."""

    block = Bool(True, config=True, help="Wait for the engines and show their output (False: --noblock).")
    targets = Unicode("all", config=True, help="Engines %px runs on without --targets (all, 3, 0,2, 1:4).")

    def __init__(self, shell=None, registry: Optional[KernelHubs] = None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.registry = registry if registry is not None else KernelHubs()

    def _view(self, prog: str):
        conn = self.registry.current
        if conn is None or conn.stopped:
            raise UsageError(f"{prog}: no hub connected; run %hub start or %hub connect ID first")
        from .px import parse_targets

        view = conn.client.direct_view("all")
        try:
            view.targets = parse_targets(self.targets)
        except ValueError as e:
            raise UsageError(f"{prog}: {e}") from None
        return view

    def _set_targets(self, targets) -> None:
        self.targets = "all" if targets == "all" else repr(targets) if not isinstance(targets, slice) else \
            ":".join("" if v is None else str(v) for v in (targets.start, targets.stop, targets.step))

    def _set_block(self, block: bool) -> None:
        self.block = block

    def _block(self, view) -> bool:
        return self.block


def load_ipython_extension(ip) -> None:
    """Register ``%hub`` and the ``%px`` family for the connected hub (once per shell)."""
    if ip in _registries:
        return
    registry = KernelHubs()
    _registries[ip] = registry
    ip.register_magics(HubMagics(ip, registry=registry), PxMagics(ip, registry=registry))


def unload_ipython_extension(ip) -> None:
    """``%unload_ext jupyter_hub_ctl``: remove the magics and disconnect this kernel from its hubs.

    Hubs keep running, except those started here with ``--stop-on-exit``: nothing would be left
    to stop them when the kernel exits, so they are stopped now.  ``%load_ext`` starts afresh.
    """
    registry = _registries.pop(ip, None)
    if registry is None:
        return
    manager = ip.magics_manager
    for cls in (HubMagics, PxMagics):
        instance = manager.registry.get(cls.__name__)
        if not isinstance(instance, cls) or getattr(instance, "registry", None) is not registry:
            continue  # someone else's magics of that name: not ours to remove
        del manager.registry[cls.__name__]
        for kind, table in instance.magics.items():
            for name, fn in table.items():
                if manager.magics.get(kind, {}).get(name) is fn:
                    del manager.magics[kind][name]
    registry.unregister_at_exit()
    for conn in list(registry.connections.values()):
        try:
            if conn.stop_on_exit and not conn.stopped:
                print(f"stopping hub {conn.id} (started with --stop-on-exit)")
                conn.stop()
            else:
                conn.close()
        except Exception as e:  # unloading goes on: the other hubs still get their turn
            print(f"hub {conn.id}: {type(e).__name__}: {e}", file=sys.stderr)
    registry.connections.clear()
    registry.current = None


def registry_of(ip) -> Optional[KernelHubs]:
    """The hub registry the magics of shell ``ip`` share (None before the extension is loaded)."""
    return _registries.get(ip)
