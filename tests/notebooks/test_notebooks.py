"""Every notebook in notebooks/ runs top to bottom on a real kernel, without error outputs, and the
widgets it displays have their state stored (what a reader of the saved notebook sees)."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from kernel.helpers import processes_marked, stop_all_hubs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: (model, text its value must contain) the stored widget state of each notebook must show
EXPECTED = {
    "quickstart.ipynb": [("HTMLModel", "ready:\u2007100%"), ("HTMLModel", "40/40"), ("FloatProgressModel", 40),
                         ("HTMLModel", "hubctl-badge-stopped"), ("HTMLModel", ">heartbeat</th>")],
    "load_balancing.ipynb": [("HTMLModel", "200/200"), ("HTMLModel", "hubctl-badge-stopped")],
    "results_database.ipynb": [("HTMLModel", "(state=failed, engine=all, label=frag"),
                               ("HTMLModel", "resubmitted 1 task"),
                               ("ButtonModel", "ValueError: 3 is a multiple of 3"),
                               ("HTMLModel", "ValueError: 0 is a multiple of 3")],
    "dashboard.ipynb": [("HTMLModel", "2 of 66 (state=failed"), ("HTMLModel", "ready:\u2007100%")],
    "scaling_out.ipynb": [("HTMLModel", "ready:\u2007100%")] if shutil.which("mpiexec") else [],
}

#: MIME types of outputs a notebook must have (outputs that are no widgets), with text their text/plain shows
BUNDLES = {
    "dashboard.ipynb": [("application/vnd.jupyter-hub-ctl.dashboard+json", "completed 0 "),
                        ("application/vnd.jupyter-hub-ctl.dashboard+json", "completed 66 ")],
}


def test_every_notebook_is_checked():
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)


@pytest.fixture
def fresh_dirs(tmp_path, monkeypatch):
    """The kernel (and every hub it starts) uses private runtime / IPython dirs; nothing may outlive it."""
    for key in ("IPP_PROFILE_DIR", "IPP_CLUSTER_ID", "IPP_CONNECTION_INFO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    yield tmp_path
    from jupyter_hub_ctl.cluster import list_hubs

    live = [h["id"] for h in list_hubs() if h.get("alive")]
    stop_all_hubs()
    deadline = time.monotonic() + 10
    while processes_marked(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = processes_marked(str(tmp_path))
    for proc in left:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    assert not live, f"the notebook left hubs running: {live}"
    assert not left, f"processes outlived the notebook: {[p.pid for p in left]}"


def _outputs(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", ()):
            yield cell, out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, fresh_dirs):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(fresh_dirs)}})
    client.execute()  # raises CellExecutionError at the first failing cell

    errors = [(cell.source, out.get("ename"), out.get("evalue")) for cell, out in _outputs(nb)
              if out.output_type == "error"]
    assert not errors

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = {out["data"][WIDGET_VIEW]["model_id"] for _, out in _outputs(nb)
             if WIDGET_VIEW in out.get("data", {})}
    assert shown <= set(state), "every displayed widget has stored state"
    for model, text in EXPECTED[path.name]:
        models = [m["state"] for m in state.values() if m["model_name"] == model]
        if isinstance(text, str):
            assert any(text in json.dumps(m, ensure_ascii=False) for m in models), (model, text)
        else:
            assert any(m.get("value") == text for m in models), (model, text)
    for mime, text in BUNDLES.get(path.name, ()):
        assert any(mime in out.get("data", {}) and text in out["data"].get("text/plain", "")
                   for _, out in _outputs(nb)), (mime, text)
