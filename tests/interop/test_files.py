"""Connection files (PROTOCOL.md §2) and the controller's clean exit."""

import signal
import stat

import pytest

from .harness import wait_for

pytestmark = pytest.mark.timeout(120)

COMMON_KEYS = {
    "key",
    "signature_scheme",
    "pack",
    "unpack",
    "location",
    "curve_serverkey",
    "ssh",
    "interface",
    "registration",
}
CLIENT_PORT_KEYS = {"registration", "control", "mux", "task", "iopub", "notification", "broadcast"}
ENGINE_PORT_KEYS = {"registration", "control", "mux", "task", "iopub", "hb_ping", "hb_pong"}


def _is_port(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def test_connection_files_are_private(shared_hub):
    for path in (shared_hub.client_file, shared_hub.engine_file):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {oct(mode)}, expected 0o600"


def test_client_file_has_every_protocol_key(shared_hub):
    info = shared_hub.connection_info("client")
    missing = (COMMON_KEYS | CLIENT_PORT_KEYS | {"task_scheme"}) - set(info)
    assert not missing, f"client file lacks {sorted(missing)}"
    for key in CLIENT_PORT_KEYS:
        assert _is_port(info[key]), f"client {key} is not a port number: {info[key]!r}"
    assert isinstance(info["task_scheme"], str) and info["task_scheme"] == "leastload"
    assert info["interface"].startswith("tcp://")
    assert info["signature_scheme"].startswith("hmac-")
    assert isinstance(info["key"], str) and info["key"], "default setup signs messages"
    assert isinstance(info["location"], str) and info["location"]
    assert info["curve_serverkey"] is None
    assert info["ssh"] == ""


def test_engine_file_has_every_protocol_key(shared_hub):
    info = shared_hub.connection_info("engine")
    missing = (COMMON_KEYS | ENGINE_PORT_KEYS | {"broadcast"}) - set(info)
    assert not missing, f"engine file lacks {sorted(missing)}"
    for key in ENGINE_PORT_KEYS:
        assert _is_port(info[key]), f"engine {key} is not a port number: {info[key]!r}"
    assert isinstance(info["broadcast"], list) and info["broadcast"], info["broadcast"]
    assert all(_is_port(p) for p in info["broadcast"]), info["broadcast"]
    assert "task_scheme" not in info or isinstance(info["task_scheme"], str)


def test_client_and_engine_files_agree_and_ports_are_distinct(shared_hub):
    client = shared_hub.connection_info("client")
    engine = shared_hub.connection_info("engine")
    for key in COMMON_KEYS:
        assert client[key] == engine[key], f"{key} differs: {client[key]!r} vs {engine[key]!r}"
    ports = [client[k] for k in CLIENT_PORT_KEYS]
    ports += [engine[k] for k in ENGINE_PORT_KEYS - {"registration"}]
    ports += engine["broadcast"]
    assert len(ports) == len(set(ports)), f"a port is used twice: {sorted(ports)}"


def test_sigterm_exits_zero_removes_files_and_children(hub_factory):
    hub = hub_factory(n_engines=1)
    client = hub.connect(n_engines=1)
    assert client[:].apply_sync(lambda: 7) == [7]
    client.close()
    controller = hub.controller
    controller.remember_descendants()

    controller.send_signal(signal.SIGTERM)
    code = controller.wait(timeout=15)

    assert code == 0, f"controller exited with {code} on SIGTERM"
    assert not hub.client_file.exists(), "client connection file left behind"
    assert not hub.engine_file.exists(), "engine connection file left behind"
    wait_for(
        lambda: not controller.live_descendants(),
        10,
        "the controller's child processes to exit after SIGTERM",
    )


def test_reuse_keeps_files_and_restart_reuses_ports_and_key(hub_factory):
    hub = hub_factory(args=["--reuse"])
    first_client = hub.connection_info("client")
    first_engine = hub.connection_info("engine")

    assert hub.stop_controller(signal.SIGTERM) == 0
    assert hub.client_file.exists() and hub.engine_file.exists(), "--reuse must keep the files"
    assert hub.connection_info("client") == first_client
    assert hub.connection_info("engine") == first_engine

    hub.start_controller()
    assert hub.connection_info("client") == first_client, "restart with --reuse rewrote ports/key"
    assert hub.connection_info("engine") == first_engine

    # the restarted controller really serves on the reused ports with the reused key
    hub.start_engines(1)
    client = hub.connect(n_engines=1)
    assert client[:].apply_sync(lambda x: x + 1, 41) == [42]
