"""hub.dashboard() / %hub dashboard: a bundle the lab extension renders live (naming the hub), with a
snapshot as text/html and text/plain for frontends without it."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_hub_ctl.kernel.dashboard import DASHBOARD_MIME

from .test_magics import hub_magic


def test_dashboard_names_the_hub_for_the_live_view_and_shows_a_snapshot(ip, start_hub):
    conn = start_hub(2, hub_id="dashed")
    conn.client.load_balanced_view().map_sync(lambda x: x, range(6))
    with capture_output():
        hub_magic(ip, "connect dashed")
    for dashboard in (hub_magic(ip, "dashboard"), ip.user_ns["hub"].dashboard(), hub_magic(ip, "dashboard dashed")):
        bundle = dashboard._repr_mimebundle_()
        assert bundle[DASHBOARD_MIME] == {"hub_id": "dashed"}
        text, html = bundle["text/plain"], bundle["text/html"]
        assert text.startswith("Live dashboard of hub dashed") and "2 engines" in text and "completed 6" in text
        assert 'data-hub-id="dashed"' in html and "JupyterLab 4 and Notebook 7" in html
        assert "<script" not in html
    with capture_output():
        hub_magic(ip, "stop dashed")
    conn.stopped = True


def test_dashboard_of_an_unknown_hub_is_a_usage_error(ip, hub_dirs):
    with pytest.raises(UsageError, match="no hub connected here"):
        hub_magic(ip, "dashboard")
    with pytest.raises(UsageError, match="nosuch"):
        hub_magic(ip, "dashboard nosuch")
