"""The notebook widgets in a real Notebook 7 (``jupyter notebook``, its own single-document page):
the same scenario as in JupyterLab (widget_scenario.py).  Notebook 7 sends widget comm messages the
way JupyterLab does, so buttons work while a cell blocks; screenshots of each widget in Notebook 7's
light and dark themes go to tests/ui/artifacts/."""

from __future__ import annotations

import pytest

from .lab import SERVER_EXTENSION_MISSING
from .test_ui_hub_lifecycle import cells
from .ui_helpers import wait_kernel_idle
from .widget_scenario import widgets_stay_live_and_readable

pytest.importorskip("notebook", minversion="7.4", reason="Notebook 7 is not installed (pip install 'notebook>=7.4')")


@pytest.fixture
def notebook7(lab_factory):
    server = lab_factory(app="notebook")
    if not server.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    yield server
    server.stop_hubs()


def open_in_notebook7(page, server, name: str):
    """Notebook 7's page for one notebook: no JupyterLab dock panel, the notebook alone."""
    page.goto(server.lab_url(f"notebooks/{name}"), timeout=90_000)
    page.wait_for_selector("#main-panel .jp-NotebookPanel", timeout=60_000)
    assert page.locator("#jp-main-dock-panel").count() == 0, "this is JupyterLab's page, not Notebook 7's"
    cells(page).first.wait_for()
    wait_kernel_idle(page)


def notebook_shortcuts_error(message: str, stack: str) -> bool:
    """Notebook 7.6's keyboard-shortcuts settings handler throws this while its page loads, with
    this package's lab extension and ipyparallel's disabled too: Notebook's own, not ours."""
    first_frame = next((line for line in stack.splitlines() if line.strip().startswith("at ")), "")
    return message == "Cannot read properties of undefined (reading 'schema')" and \
        "/static/notebook/notebook_core." in first_frame


def test_widgets_stay_live_and_readable_in_notebook7(page, notebook7, screenshot):
    widgets_stay_live_and_readable(page, notebook7, screenshot, open_in_notebook7,
                                   foreign_error=notebook_shortcuts_error)
