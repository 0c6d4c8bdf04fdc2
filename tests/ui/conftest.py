"""Fixtures for the browser tests: Debian's chromium driven by Playwright, and real labs.

Without Playwright or ``/usr/bin/chromium`` these tests skip, except under CI (``CI`` set),
where a missing browser is a failure of the setup rather than a reason to test less.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# the scenario the JupyterLab and Notebook 7 tests share asserts with pytest's detailed messages
pytest.register_assert_rewrite("ui.widget_scenario")

from .lab import LabServer  # noqa: E402

try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # the fixtures below skip (or fail under CI) without playwright
    PlaywrightError = Exception

CHROMIUM = os.environ.get("HUBCTL_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"UI tests cannot run: {reason}")
    pytest.skip(reason)


# Package scope, not session: Playwright's sync API keeps an event loop running on this thread
# while it is open, and the asyncio tests of other directories (run after these) need none running.
@pytest.fixture(scope="package")
def playwright_instance():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright_instance):
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class PageLog:
    """What the page said: console errors, uncaught exceptions, failed and made requests."""

    console_errors: list = field(default_factory=list)
    page_errors: list = field(default_factory=list)
    #: the JavaScript stack of each page error, in the same order
    page_error_stacks: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    responses: dict = field(default_factory=dict)

    def hubctl_requests(self, method: str | None = None):
        return [url for verb, url in self.requests
                if "/hubctl/api/" in url and (method is None or verb == method)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"ui_report_{report.when}", report)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    log = PageLog()

    def on_console(msg):
        if msg.type == "error":
            log.console_errors.append((msg.text, msg.location.get("url", "")))

    page.on("console", on_console)
    def on_page_error(exc):
        log.page_errors.append(str(exc))
        log.page_error_stacks.append(getattr(exc, "stack", None) or "")

    page.on("pageerror", on_page_error)
    page.on("request", lambda req: log.requests.append((req.method, req.url)))
    page.on("response", lambda resp: log.responses.__setitem__(resp.url, resp.status))
    page.hubctl_log = log
    yield page
    report = getattr(request.node, "ui_report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}-FAILED.png"))
        except PlaywrightError as exc:
            print(f"no screenshot of the failure: {exc}")
    context.close()


def _stop_all(labs):
    """Stop every lab, even when stopping one of them fails."""
    if not labs:
        return
    lab, rest = labs[0], labs[1:]
    try:
        lab.stop()
        lab.remove_runtime()
    finally:
        _stop_all(rest)


def _lab_factory(root: Path):
    labs: list[LabServer] = []

    def start(base_url: str = "/", **kwargs) -> LabServer:
        lab = LabServer(root=root / f"lab{len(labs)}", base_url=base_url, **kwargs)
        labs.append(lab)
        return lab.start()

    return start, labs


@pytest.fixture
def lab_factory(tmp_path):
    """Start labs on demand (``lab_factory(base_url='/prefix/')``); all are stopped at the end."""
    start, labs = _lab_factory(tmp_path)
    yield start
    _stop_all(labs)


@pytest.fixture(scope="module")
def module_lab_factory(tmp_path_factory):
    """Like ``lab_factory``, for labs that all tests of a module share."""
    start, labs = _lab_factory(tmp_path_factory.mktemp("labs"))
    yield start
    _stop_all(labs)


@pytest.fixture
def lab(lab_factory):
    return lab_factory()


@pytest.fixture
def screenshot(request):
    """Save a screenshot of an element or page under tests/ui/artifacts (not an assertion)."""
    ARTIFACTS.mkdir(exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def shoot(target, step: str):
        path = ARTIFACTS / f"{test}-{step}.png"
        try:
            target.screenshot(path=str(path))
        except PlaywrightError as exc:  # a failed screenshot must not fail or mask the test
            print(f"screenshot {path.name} failed: {exc}")
        return path

    return shoot


@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    """Playwright's sync API runs its own loop; pytest-jupyter's per-test loop must stay out of it."""
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    """No in-process Jupyter server here (the labs are subprocesses): nothing to clean."""
    yield None
