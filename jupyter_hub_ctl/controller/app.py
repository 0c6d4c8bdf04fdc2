"""``python -m jupyter_hub_ctl.controller``: the controller process.

Accepts the command line and environment that ipcontroller users and
launchers (``ipyparallel.Cluster``, ``ipcluster``) use: ``--profile``,
``--profile-dir``, ``--cluster-id``, ``--ip``, ``--location``, ``--ping``,
``--scheme``, ``--hwm``, ``--ports``, ``--reuse``, ``--restore``, the DB flags,
``--enable-curve``, ``IPP_PROFILE_DIR``, ``IPP_CLUSTER_ID``, ``IPP_SESSION_KEY``,
``IPP_ENABLE_CURVE``, ``IPP_CURVE_SECRETKEY``/``IPP_CURVE_PUBLICKEY``, ``IPController.*``
curve settings and profile config files (``ipcontroller_config.py``,
``hubctl_controller_config.py``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import signal
import sys
from typing import Optional

from jupyter_client.session import Session
from traitlets import Bool, Dict, Unicode, default
from traitlets.config import Application
from traitlets.utils.importstring import import_item

from .._version import __version__
from ..wire.connection import (
    connection_file_paths, curve_key_path, ensure_profile_dir, ipython_dir, profile_dir_for, read_connection_file,
    write_connection_file,
)
from ..wire.session import WireSession
from .db import DB_CLASSES
from .dask import DaskSupport
from .dbguard import DatabaseInUse, DBLock, open_guarded
from . import limits
from .factory import CLIENT_CHANNELS, ENGINE_CHANNELS, HubFactory
from .heartmonitor import HeartMonitor
from .hub import Hub
from .replaymark import ReplayMark
from .scheduler.task import TaskScheduler

aliases = {
    "ip": "HubFactory.ip",
    "transport": "HubFactory.transport",
    "location": "HubFactory.location",
    "engine-ip": "HubFactory.engine_ip",
    "client-ip": "HubFactory.client_ip",
    "port": "HubFactory.registration_port",
    "ports": "ControllerApp.port_pool",
    "ping": "HeartMonitor.period",
    "scheme": "TaskScheduler.scheme_name",
    "hwm": "TaskScheduler.hwm",
    "profile": "ControllerApp.profile",
    "profile-dir": "ControllerApp.profile_dir",
    "ipython-dir": "ControllerApp.ipython_dir",
    "cluster-id": "ControllerApp.cluster_id",
    "work-dir": "ControllerApp.work_dir",
    "log-level": "Application.log_level",
    "config": "ControllerApp.extra_config_file",
    "ident": "Session.session",
    "user": "Session.username",
    "keyfile": "Session.keyfile",
    "db-class": "ControllerApp.db_class",
    "ssh": "ControllerApp.ssh_server",
    "enginessh": "ControllerApp.engine_ssh_server",
    "log-url": "ControllerApp.log_url",
    "retention-age": "Hub.retention_max_age",
    "retention-records": "Hub.retention_max_records",
    "retention-bytes": "Hub.retention_max_bytes",
    "reconnect-grace": "Hub.reconnect_grace",
}

flags = {
    "reuse": ({"ControllerApp": {"reuse_files": True}}, "Keep and re-use existing connection files (same ports and key)."),
    "restore": ({"ControllerApp": {"restore_engines": True, "reuse_files": True}},
                "Restore the engine id map of the previous run (implies --reuse)."),
    "dictdb": ({"ControllerApp": {"db_class": "dictdb"}}, "Keep task records in memory (bounded)."),
    "sqlitedb": ({"ControllerApp": {"db_class": "sqlitedb"}}, "Keep task records in SQLite in the profile dir."),
    "nodb": ({"ControllerApp": {"db_class": "nodb"}}, "Keep no task records (result/history queries fail)."),
    "mongodb": ({"ControllerApp": {"db_class": "mongodb"}}, "Not supported: fails at start with a message."),
    "usethreads": ({"ControllerApp": {"use_threads": True}}, "Accepted for compatibility; relays always run in threads."),
    "log-to-file": ({"ControllerApp": {"log_to_file": True}}, "Log to a file in the profile's log dir."),
    "clean-logs": ({"ControllerApp": {"clean_logs": True}}, "Accepted for compatibility."),
    "secure": ({"ControllerApp": {"secure": True}}, "Sign messages with a key (the default)."),
    "no-secure": ({"ControllerApp": {"secure": False}}, "Do not sign messages (empty key)."),
    "enable-curve": ({"HubFactory": {"enable_curve": True}},
                     "Encrypt every connection with CurveZMQ (the default when listening beyond loopback)."),
    "no-curve": ({"HubFactory": {"enable_curve": False}},
                 "Do not encrypt, even when listening beyond loopback (anyone on the network can read the traffic)."),
    "debug": ({"Application": {"log_level": 10}}, "Log at debug level."),
    "quiet": ({"Application": {"log_level": 30}}, "Log warnings and errors only."),
}


class ControllerApp(Application):
    """The controller: hub, relays, heartbeat, schedulers and task-record store."""

    name = "hubctl-controller"
    description = "Run a jupyter_hub_ctl controller (an IPython-parallel compatible Hub)."
    version = __version__
    aliases = aliases
    flags = flags
    classes = [HubFactory, Hub, HeartMonitor, TaskScheduler, DaskSupport, Session]

    profile = Unicode("default", config=True, help="Profile name (directory profile_<name> in the IPython dir).")
    profile_dir = Unicode("", config=True, help="Profile directory (overrides --profile); env IPP_PROFILE_DIR.")
    ipython_dir = Unicode("", config=True, help="IPython directory holding profiles; env IPYTHONDIR.")
    cluster_id = Unicode("", config=True, help="Cluster id, part of the connection file names; env IPP_CLUSTER_ID.")
    work_dir = Unicode("", config=True, help="Directory to change to at start.")
    extra_config_file = Unicode("", config=True, help="An extra config file to load.")
    port_pool = Unicode("", config=True, help="Ports to use: a range 'A-B' or a comma list.")
    reuse_files = Bool(False, config=True, help="Re-use existing connection files and keep them at exit.")
    restore_engines = Bool(False, config=True, help="Accept engines of the previous run under their old ids.")
    db_class = Unicode("dictdb", config=True,
                       help="Task-record store: dictdb, sqlitedb, nodb, or an import string of a BaseDB class.")
    use_threads = Bool(True, config=True, help="Compatibility flag; relays always run in threads.")
    log_to_file = Bool(False, config=True, help="Write the log to <profile>/log/ instead of stderr.")
    clean_logs = Bool(False, config=True, help="Compatibility flag; ignored.")
    secure = Bool(True, config=True, help="Sign messages with an HMAC key.")
    ssh_server = Unicode("", config=True, help="ssh server clients should tunnel through (written to the client file).")
    engine_ssh_server = Unicode("", config=True, help="ssh server engines should tunnel through.")
    log_url = Unicode("", config=True, help="Compatibility option; ignored.")
    db_config = Dict(help="Resolved DB settings (for inspection).")

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        cl_config = copy.deepcopy(self.config)
        if not self.profile_dir and os.environ.get("IPP_PROFILE_DIR"):
            self.profile_dir = os.environ["IPP_PROFILE_DIR"]
        if not self.cluster_id and os.environ.get("IPP_CLUSTER_ID"):
            self.cluster_id = os.environ["IPP_CLUSTER_ID"]
        if not self.profile_dir:
            self.profile_dir = profile_dir_for(self.profile, self.ipython_dir or ipython_dir())
        self.profile_dir = ensure_profile_dir(self.profile_dir)
        for name in ("ipcontroller_config.py", "hubctl_controller_config.py"):
            if os.path.exists(os.path.join(self.profile_dir, name)):
                self.load_config_file(name, path=[self.profile_dir])
        if self.extra_config_file:
            self.load_config_file(self.extra_config_file)
        self.update_config(cl_config)  # the command line wins over files
        self._curve_settings()
        if self.work_dir:
            os.chdir(os.path.expanduser(self.work_dir))
        if self.log_to_file:
            path = os.path.join(self.profile_dir, "log", f"hubctl-controller-{self.cluster_id or 'default'}-{os.getpid()}.log")
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter(self.log_format, self.log_datefmt))
            self.log.handlers[:] = [handler]
        # traitlets leaves the logger at DEBUG and filters in the handler, so every debug()
        # call would build a LogRecord only to drop it: filter at the logger instead
        self.log.setLevel(self.log_level)

    def _curve_settings(self) -> None:
        """ipyparallel's ways of asking for CurveZMQ, onto HubFactory (its own settings win)."""
        ours = self.config.HubFactory
        theirs = self.config.IPController if "IPController" in self.config else {}
        env = {"enable_curve": os.environ.get("IPP_ENABLE_CURVE") == "1" or None,
               "curve_secretkey": os.environ.get("IPP_CURVE_SECRETKEY"),
               "curve_publickey": os.environ.get("IPP_CURVE_PUBLICKEY")}
        for name, from_env in env.items():
            if name in ours:
                continue
            value = theirs.get(name, from_env)
            if isinstance(value, bytes):
                value = value.decode("ascii")
            if value is not None:
                setattr(ours, name, value)

    def _configure_logging(self):
        super()._configure_logging()  # (re)done by traitlets whenever log_level changes
        self.log.setLevel(self.log_level)

    # ------------------------------------------------------------------ pieces
    def _ports(self) -> list:
        spec = self.port_pool.strip()
        if not spec:
            return []
        if "-" in spec:
            a, b = spec.split("-", 1)
            return list(range(int(a), int(b) + 1))
        return [int(p) for p in spec.split(",") if p.strip()]

    def _session(self, reused: Optional[dict]) -> WireSession:
        s = Session(parent=self)
        if reused is not None:
            s.key = reused.get("key", "").encode("ascii")
            s.signature_scheme = reused.get("signature_scheme", s.signature_scheme)
        elif os.environ.get("IPP_SESSION_KEY"):
            s.key = os.environ["IPP_SESSION_KEY"].encode("ascii")
        if not self.secure:
            s.key = b""
        return WireSession.from_session(s)

    def _db(self):
        name = self.db_class
        if name == "mongodb":
            raise SystemExit("MongoDB task records are not supported; use --sqlitedb or --dictdb")
        cls = DB_CLASSES.get(name.lower()) or name
        if isinstance(cls, str):
            cls = import_item(cls)
        kwargs = {"parent": self, "config": self.config}
        if "location" not in getattr(cls, "class_trait_names", lambda: [])():
            return cls(**kwargs)
        loc = self.config.get(cls.__name__, {}).get("location")
        if not loc:
            kwargs["location"] = self.profile_dir
        cfg = self.config.get(cls.__name__, {})
        location = os.path.expanduser(kwargs.get("location") or cfg.get("location") or ".")
        filename = cfg.get("filename") or cls.class_traits()["filename"].default_value
        table = cfg.get("table")
        if not table:  # one table per cluster id: controllers sharing a profile keep their records apart
            table = cls.class_traits()["table"].default_value + (f"_{self.cluster_id}" if self.cluster_id else "")
            kwargs["table"] = table
        path = os.path.join(location, filename)
        if filename == ":memory:":
            return cls(**kwargs)
        self._db_lock = DBLock(path, table)
        try:
            self._db_lock.acquire()
        except DatabaseInUse as e:
            raise SystemExit(str(e)) from None
        return open_guarded(lambda: cls(**kwargs), path,
                            lambda e: "not a database" in str(e) or "malformed" in str(e))

    def _reused(self) -> Optional[dict]:
        if not self.reuse_files:
            return None
        cpath, epath = connection_file_paths(self.profile_dir, self.cluster_id)
        if not (os.path.exists(cpath) and os.path.exists(epath)):
            return None
        try:
            c, e = read_connection_file(cpath), read_connection_file(epath)
        except (OSError, ValueError) as err:
            self.log.warning("cannot re-use connection files: %s", err)
            return None
        if c.get("key") != e.get("key") or c.get("registration") != e.get("registration"):
            self.log.warning("connection files disagree; writing new ones")
            return None
        return {"client": c, "engine": e, "key": c.get("key", ""), "signature_scheme": c.get("signature_scheme")}

    def _engine_state_path(self) -> str:
        return os.path.join(self.profile_dir, "log", f"engines{self.cluster_id}.json")

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        try:
            asyncio.run(self._main())
        except KeyboardInterrupt:
            pass

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        reused = self._reused()
        session = self._session(reused)
        factory = self.factory = HubFactory(parent=self, config=self.config)
        if self._ports():
            factory._pool = self._ports()
        if reused is not None:
            factory.preset_ports(
                {k: v for k, v in reused["client"].items() if k in CLIENT_CHANNELS},
                {k: v for k, v in reused["engine"].items() if k in ENGINE_CHANNELS},
            )
        try:
            encrypted = factory.resolve_curve(self._saved_curve_keys(reused))
        except ValueError as e:
            raise SystemExit(f"controller: {e}") from None
        limits.raise_fd_limit(limits.wanted_fds())  # every engine holds ~8 connections here
        db = self.db = self._db()
        try:
            hub = factory.init_hub(loop, session, db, on_shutdown=self.stop, config=self.config)
        except Exception as e:
            db.close()
            self.log.critical("controller failed to start: %s", e)
            factory.stop()
            raise SystemExit(1)
        self.hub = hub
        hub.engine_state_file = self._engine_state_path()
        if self.restore_engines:
            self._restore(hub)
        self.replay_mark = None
        if session.key:  # nothing accepted by an earlier run with this key is accepted again
            path = os.path.join(self.profile_dir, "log", f"replay{self.cluster_id}.json")
            self.replay_mark = ReplayMark(path, session.key, session.replay, loop, self.log)
            self.replay_mark.restore()
            self.replay_mark.start()
        factory.start()
        if self.reuse_files or self.restore_engines:
            hub.mark_lost_tasks()
        hub.start_retention()
        cpath, epath = connection_file_paths(self.profile_dir, self.cluster_id)
        self.files = (cpath, epath)
        cinfo = factory.client_info(session, hub.scheduler.scheme_name)
        einfo = factory.engine_info(session)
        if self.ssh_server:
            cinfo["ssh"] = self.ssh_server
        if self.engine_ssh_server:
            einfo["ssh"] = self.engine_ssh_server
        if encrypted:
            write_connection_file(curve_key_path(self.profile_dir, self.cluster_id), factory.curve_keys())
        write_connection_file(epath, einfo)
        write_connection_file(cpath, cinfo)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.log.info("controller ready: registration %s, profile %s, cluster id %r, store %s, %s, room for %d "
                      "engines (open-file limit %d)", factory.client_url("registration"), self.profile_dir,
                      self.cluster_id, type(db).__name__, "encrypted (CurveZMQ)" if encrypted else "not encrypted",
                      hub.engine_capacity, limits.fd_limits()[0])
        if limits.fd_limits()[1] < limits.wanted_fds():
            self.log.info("the hard open-file limit (%d) leaves room for about %d engines; for more, %s",
                          limits.fd_limits()[1], limits.engine_capacity(), limits.RAISE_HINT.format(n=limits.wanted_fds()))
        await self._stopped.wait()
        if hub.dask is not None:
            await hub.dask.stop()
        self._cleanup()

    def _restore(self, hub: Hub) -> None:
        path = self._engine_state_path()
        try:
            with open(path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            self.log.info("no engine state to restore at %s", path)
            return
        engines = state.get("engines") if isinstance(state, dict) else None
        next_id = state.get("next_id", 0) if isinstance(state, dict) else None
        if not isinstance(engines, dict) or not isinstance(next_id, int):
            self.log.warning("engine state at %s is not what this controller writes; not restored", path)
            return
        hub.restore({uuid: int(eid) for eid, uuid in engines.items() if eid.isdigit() and isinstance(uuid, str)},
                    next_id)
        self.log.info("restoring %d engine ids from %s", len(hub.restore_engines), path)

    def _saved_curve_keys(self, reused: Optional[dict]) -> Optional[dict]:
        """The key pair of the previous run, if its connection files are reused and were encrypted."""
        if reused is None or not reused["client"].get("curve_serverkey"):
            return None
        path = curve_key_path(self.profile_dir, self.cluster_id)
        try:
            keys = read_connection_file(path)
        except (OSError, ValueError):
            keys = {}
        if keys.get("public") != reused["client"]["curve_serverkey"] or not keys.get("secret"):
            raise SystemExit(f"controller: the reused connection files are encrypted but {path} does not "
                             "hold their key pair; start without --reuse/--restore")
        return keys

    def stop(self) -> None:
        if not self._stopped.is_set():
            self.log.info("controller stopping")
            self._stopped.set()

    def _cleanup(self) -> None:
        try:
            if self.replay_mark is not None:
                self.replay_mark.stop()
            self.hub.stop_retention()
            self.factory.stop()
        finally:
            try:
                self.db.close()
            except Exception as e:
                self.log.error("closing the task store failed: %s", e)
            if getattr(self, "_db_lock", None) is not None:
                self._db_lock.release()
            if not self.reuse_files:
                for path in (*self.files, curve_key_path(self.profile_dir, self.cluster_id)):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
        self.log.info("controller stopped")


def main(argv=None) -> None:
    app = ControllerApp()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main(sys.argv[1:])
