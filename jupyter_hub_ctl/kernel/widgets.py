"""Notebook widgets: hub status, task progress, engine registration, the results browser.

All are ``LiveView`` s (see ``live``): stock ipywidgets that the kernel's updater thread keeps
current, also while a cell blocks, throttled; they stop updating when closed, when the kernel
exits or when their hub stops, and show as text or HTML where no widget frontend exists (or
ipywidgets is not installed).  Colours come from JupyterLab's theme variables.

    status = HubStatus(client, hub_id="abc")   # or hub.status() after %hub start
    status.start()                             # live updates (done by hub.status())
    TaskProgress(ar)                           # a progress bar for an AsyncResult
    wait_for_engines(client, 4)                # block with a progress bar
"""

from __future__ import annotations

from typing import Optional

from .browser import ResultsBrowser
from .progress import EngineProgress, TaskProgress, in_notebook, show
from .status import HubStatus, check_hub, result_status


def wait_for_engines(client, n: int, timeout: Optional[float] = None, widget: Optional[bool] = None) -> list:
    """Block until ``client`` has ``n`` engines, showing progress (a widget in a notebook); return the ids."""
    return client.wait_for_engines(n, timeout, interactive=True, widget=widget)


__all__ = ["HubStatus", "TaskProgress", "EngineProgress", "ResultsBrowser", "wait_for_engines", "in_notebook",
           "result_status", "check_hub", "show"]
