"""A real ``jupyter lab`` process for the browser tests, and small helpers around it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from support.procs import end_process, free_port, wait_for  # noqa: F401  (wait_for: re-exported for the UI tests)

#: The lab extension's npm name, as `jupyter labextension list` shows it.
LABEXTENSION = "jupyter-hub-ctl-labextension"

#: Set to a built lab extension directory (e.g. a checkout's jupyter_hub_ctl/labextension) to make
#: the labs load it instead of the installed one (a user data dir wins over sys-prefix).  CI installs
#: the package with pip, which builds and installs the extension, and needs no such setting.
LABEXTENSION_OVERRIDE = "HUBCTL_UI_LABEXTENSION"

#: Why tests that need the REST API are skipped until the server extension exists.
SERVER_EXTENSION_MISSING = "server extension jupyter_hub_ctl.server not available yet"

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Reply:
    status: int
    body: object = None


@dataclass
class LabServer:
    """One ``jupyter lab`` (or, with ``app="notebook"``, Notebook 7's ``jupyter notebook``) in its own
    config, data, runtime and root directories."""

    root: Path
    base_url: str = "/"
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = field(default_factory=free_port)
    #: User settings to write before start: ``{"plugin-id": {...}}``.
    settings: dict = field(default_factory=dict)
    #: The Jupyter application module to run: ``jupyterlab`` or ``notebook`` (Notebook 7).
    app: str = "jupyterlab"
    proc: subprocess.Popen | None = None

    def __post_init__(self):
        if not (self.base_url.startswith("/") and self.base_url.endswith("/")):
            raise ValueError(f"base_url must start and end with '/': {self.base_url!r}")
        self.home = self.root / "home"
        self.notebooks = self.root / "notebooks"
        self.log_path = self.root / "lab.log"
        # Kernels listen on unix sockets here; their paths must stay short (about 100 bytes).
        self.runtime = Path(tempfile.mkdtemp(prefix="hubctl-ui-"))

    # -- process -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTER_RUNTIME_DIR=str(self.runtime),
            IPYTHONDIR=str(self.home / "ipython"),
            JUPYTERLAB_SETTINGS_DIR=str(self.home / "lab-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.home / "lab-workspaces"),
        )
        env.pop("JUPYTER_PATH", None)
        return env

    def _write_config(self):
        for sub in ("config", "data", "ipython", "lab-workspaces"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.notebooks.mkdir(parents=True, exist_ok=True)
        # No news or update toasts over the panel.
        notification = self.home / "lab-settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        # Another package's lab panel would only add noise to the page these tests read.
        labconfig = self.home / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"ipyparallel-labextension": True}})
        )
        for plugin, values in self.settings.items():
            self.write_settings(plugin, values)
        override = os.environ.get(LABEXTENSION_OVERRIDE)
        if override:
            self._link_labextension(Path(override))
        # the real server extension, whether or not the install enabled it (editable installs don't)
        (self.home / "config" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_hub_ctl": True}}})
        )

    def _link_labextension(self, built: Path):
        if not (built / "package.json").is_file():
            raise RuntimeError(f"{LABEXTENSION_OVERRIDE}={built} is not a built lab extension (no package.json)")
        target = self.home / "data" / "labextensions" / LABEXTENSION
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(built.resolve(), target_is_directory=True)

    def write_settings(self, plugin: str, values: dict):
        """User settings of a lab plugin, read by the next page load."""
        package, _, name = plugin.partition(":")
        target = self.home / "lab-settings" / package
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{name}.jupyterlab-settings").write_text(json.dumps(values))

    def start(self, timeout: float = 90) -> LabServer:
        self._write_config()
        cmd = [
            sys.executable, "-m", self.app,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.base_url={self.base_url}",
            f"--ServerApp.root_dir={self.notebooks}",
            "--ServerApp.terminals_enabled=False",
            # Kernels on unix sockets in the runtime dir: no TCP port for a busy machine to take
            # between the kernel manager choosing it and the kernel binding it.
            "--KernelManager.transport=ipc",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                cmd, env=self.env(), cwd=str(self.notebooks),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for(lambda: self.proc.poll() is not None or self._ready(), timeout, f"{self.app} to answer")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.app} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return self

    def _ready(self) -> bool:
        try:
            return self.get("api/status").status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 30):
        """Shut kernels down, then stop the server by its pid (whatever the kernels did)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            kernels = self.get("api/kernels").body
            for kernel in kernels if isinstance(kernels, list) else []:
                self.request("DELETE", f"api/kernels/{kernel['id']}")
        except OSError:
            pass
        finally:
            end_process(self.proc, timeout, 10)

    def remove_runtime(self):
        """Remove the runtime directory, once the server is stopped for good."""
        shutil.rmtree(self.runtime, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- REST --------------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, timeout: float = 30) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(status, parsed)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def has_server_extension(self) -> bool:
        reply = self.get("hubctl/api/version")
        if reply.status == 404:
            return False
        assert reply.status == 200, f"GET hubctl/api/version answered {reply.status}: {reply.body}"
        return True

    def stop_hubs(self, timeout: float = 60):
        """Stop every hub the server lists (what a failed test left running) and wait until they are down."""
        for hub in self.get("hubctl/api/hubs").body["hubs"]:
            if hub["state"] not in ("stopped", "stopping"):
                self.request("DELETE", f"hubctl/api/hubs/{hub['id']}")
        wait_for(lambda: all(h["state"] in ("stopped", "failed") for h in self.get("hubctl/api/hubs").body["hubs"]),
                 timeout, "the test's hubs to stop", interval=0.5)

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"

    def write_notebook(self, name: str, sources=("",)) -> str:
        cells = [
            {"cell_type": "code", "source": src, "metadata": {}, "outputs": [], "execution_count": None}
            for src in sources
        ]
        nb = {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (self.notebooks / name).write_text(json.dumps(nb))
        return name


def labextension_list() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return ANSI.sub("", out.stdout + out.stderr)
