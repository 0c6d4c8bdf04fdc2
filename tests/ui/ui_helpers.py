"""Steps on the JupyterLab page that several UI tests take."""

from __future__ import annotations

import subprocess
import sys

PANEL = ".jp-HubCtl-panel"
PANEL_TAB = '.jp-SideBar [data-id="hubctl-panel"]'


def open_lab(page, lab, path: str = "lab"):
    """Load JupyterLab at ``path`` with a fresh layout (nothing restored from earlier pages)."""
    page.goto(lab.lab_url(path) + "&reset", timeout=90_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    page.wait_for_selector(PANEL_TAB, timeout=30_000)
    # the splash screen goes once the saved layout is restored
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)


def open_panel(page):
    """Open the hubs panel from the left sidebar; return its status once it has one."""
    if not page.locator(PANEL).is_visible():  # a restored layout may have it open already
        page.click(PANEL_TAB)
    page.wait_for_selector(f"{PANEL}:visible")
    page.wait_for_function(
        "sel => { const el = document.querySelector(sel); return el && el.dataset.status !== 'loading'; }",
        arg=PANEL,
    )
    return panel_status(page)


def panel_status(page) -> str:
    return page.get_attribute(PANEL, "data-status")


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def wait_kernel_idle(page, timeout: float = 60_000):
    """Wait until the visible notebook's kernel is connected and idle."""
    page.wait_for_selector(
        '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]',
        timeout=timeout,
    )


def hubctl(lab, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """``jupyter hubctl <args>`` in the lab's directories (its hubs show in its panel)."""
    return subprocess.run([sys.executable, "-m", "jupyter_hub_ctl.cli", *args], env=lab.env(),
                          capture_output=True, text=True, timeout=timeout)
