"""Engine metrics and the task stream with ipyparallel peers on the same hub.

ipyparallel engines register (and ignore the interval in the registration reply) and report
nothing; our engine on the same hub reports; ipyparallel's client, subscribed to
everything the hub publishes, sees no new message type; its tasks show in the task stream
under their message type.
"""

from __future__ import annotations

import os
import sys

import pytest
import zmq

from jupyter_hub_ctl import Client

from .harness import ManagedProcess, engine_env_additions, wait_for

pytestmark = pytest.mark.ours_only  # metrics and the task stream are extensions of our controller

KNOWN_NOTIFICATIONS = {"registration_notification", "unregistration_notification", "shutdown_notification"}


def _subscriber(ctx, info: dict, channel: str):
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(f"{info['interface']}:{info[channel]}")
    return sock


def _msg_types(sock) -> list:
    """msg_types of everything received so far (header frame after the delimiter)."""
    import json

    out = []
    while sock.poll(0):
        frames = sock.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        out.append(json.loads(frames[i + 2])["msg_type"])
    return out


def _start_our_engine(hub) -> ManagedProcess:
    """One of our engines on ``hub`` (next to its ipyparallel engines); stopped with the hub's."""
    env = hub.base_env()
    env.update(engine_env_additions())
    proc = ManagedProcess("engine#ours", [sys.executable, "-m", "jupyter_hub_ctl.engine", f"--file={hub.engine_file}"],
                          env, hub.log_dir / "engine-ours.log", cwd=hub.base_dir)
    hub.engines.append(proc)
    return proc


def test_ipyparallel_engines_report_nothing_and_ipyparallel_clients_see_nothing_new(hub_factory):
    hub = hub_factory(n_engines=1, args=["--Hub.metrics_interval=0.2"])
    ipp_id = hub.admin.ids[0]
    ctx = zmq.Context()
    info = hub.connection_info("client")
    notes, iopub = _subscriber(ctx, info, "notification"), _subscriber(ctx, info, "iopub")
    ours_proc = _start_our_engine(hub)
    rc = Client(str(hub.client_file))
    try:
        rc.wait_for_engines(2, timeout=30)
        ours_id = next(e for e in rc.ids if e != ipp_id)

        def reported():
            hist = rc.engine_metrics(history=5)["engines"][ours_id]["history"]
            return len(hist) >= 5

        wait_for(reported, 30, "five reports from our engine")
        ipp = hub.connect(n_engines=2)
        assert ipp[ipp_id].apply_sync(os.getpid) > 0  # the stock client and engine work as before
        ipp[ipp_id].execute("y = 2", block=True)
        assert ipp[ipp_id]["y"] == 2
        assert set(ipp.queue_status()) >= {ipp_id, ours_id, "unassigned"}
        since = rc.task_stream(limit=1)["now"]
        applied = ipp.load_balanced_view(targets=[ipp_id]).apply_async(abs, -3)
        assert applied.get(timeout=30) == 3
        metrics = rc.engine_metrics(history=5)
        assert metrics["engines"][ipp_id] == {"latest": None, "history": []}
        assert metrics["engines"][ours_id]["latest"]["pid"] == ours_proc.pid
        wait_for(lambda: [t for t in rc.task_stream(since=since)["tasks"] if t["state"] == "ok"], 20,
                 "the stock client's task in the stream")
        (task,) = rc.task_stream(since=since)["tasks"]
        assert (task["msg_id"], task["name"], task["label"], task["engine_id"]) == \
            (applied.msg_ids[0], "apply_request", None, ipp_id)
        # everything the hub published while our engine reported: nothing a stock client does not know
        seen_notes, seen_iopub = _msg_types(notes), _msg_types(iopub)
        assert set(seen_notes) <= KNOWN_NOTIFICATIONS, seen_notes
        assert "engine_metrics_report" not in seen_iopub and seen_iopub  # (the stock engine's output did arrive)
    finally:
        rc.close()
        notes.close(0)
        iopub.close(0)
        ctx.destroy(0)


def test_status_widget_shows_a_dash_for_ipyparallel_engines(hub_factory):
    """HubStatus on a hub with an ipyparallel engine and ours: our engine's CPU and memory, a dash
    for the ipyparallel engine's, and no error."""
    from jupyter_hub_ctl.kernel.widgets import HubStatus

    hub = hub_factory(n_engines=1, args=["--Hub.metrics_interval=0.2"])
    ipp_id = hub.admin.ids[0]
    _start_our_engine(hub)
    rc = Client(str(hub.client_file))
    try:
        rc.wait_for_engines(2, timeout=30)
        ours_id = next(e for e in rc.ids if e != ipp_id)
        wait_for(lambda: rc.engine_metrics(ours_id)["engines"][ours_id]["latest"], 30, "our engine's first report")
        view = HubStatus(rc)
        view.refresh()
        rows = {e["id"]: e for e in view.engines}
        assert view.metrics and view.problem == "" and view.error == ""
        assert (rows[ipp_id]["cpu"], rows[ipp_id]["rss"], rows[ipp_id]["task"]) == (None, None, None)
        assert rows[ours_id]["rss"] > 0 and rows[ours_id]["cpu"] >= 0
        html = view.html()
        ipp_row = html.split(f'data-engine-id="{ipp_id}"')[1].split("</tr>")[0]
        ours_row = html.split(f'data-engine-id="{ours_id}"')[1].split("</tr>")[0]
        assert 'data-metric="cpu">-<' in ipp_row and 'data-metric="memory">-<' in ipp_row
        assert 'data-metric="memory">-<' not in ours_row and "hubctl-meter" in ours_row
        view.close()
    finally:
        rc.close()
