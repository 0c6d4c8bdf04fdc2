"""The notebook widgets in a real JupyterLab (the scenario is in widget_scenario.py): they stay live
while a cell blocks, their buttons work while a cell runs, a failing action says why inside the
widget, and every text element reads well in the light and the dark theme."""

from __future__ import annotations

import pytest

from .lab import SERVER_EXTENSION_MISSING
from .test_ui_hub_lifecycle import cells
from .ui_helpers import open_lab, wait_kernel_idle
from .widget_scenario import widgets_stay_live_and_readable


@pytest.fixture
def widget_lab(lab_factory):
    lab = lab_factory()
    if not lab.has_server_extension():
        pytest.fail(SERVER_EXTENSION_MISSING)
    yield lab
    lab.stop_hubs()


def open_in_lab(page, lab, name: str):
    open_lab(page, lab, f"lab/tree/{name}")
    cells(page).first.wait_for()
    wait_kernel_idle(page)


def test_widgets_stay_live_and_readable(page, widget_lab, screenshot):
    widgets_stay_live_and_readable(page, widget_lab, screenshot, open_in_lab)
