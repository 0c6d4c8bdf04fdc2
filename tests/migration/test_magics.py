"""The %px family activated from a Client or a view, in IPython, on both clients."""

from __future__ import annotations

import re

import pytest
from IPython.utils.capture import capture_output

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def shell(rc):
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    view = rc.activate(suffix="mig")  # %pxmig, %%pxmig, %pxresultmig, %pxconfigmig, %autopxmig
    view.scatter("eid", rc.ids, flatten=True, block=True)
    yield ip
    for name in ("pxmig", "pxresultmig", "pxconfigmig", "autopxmig"):
        ip.magics_manager.magics["line"].pop(name, None)
    ip.magics_manager.magics["cell"].pop("pxmig", None)


def shown(cap) -> str:
    """Everything a notebook would show: stdout, stderr and the text of rich outputs."""
    text = cap.stdout + cap.stderr + "".join(o.data.get("text/plain", "") + "\n" for o in cap.outputs)
    return ANSI.sub("", text)


def test_px_runs_on_the_engines_and_shows_out_engine_n(shell, rc):
    with capture_output() as cap:
        shell.run_line_magic("pxmig", "a = eid * 10")
        shell.run_line_magic("pxmig", "print('eid is', eid)")
        shell.run_line_magic("pxmig", "a + 1")
    out = shown(cap)
    for eid in rc.ids:
        assert re.search(rf"\[stdout:{eid}\]\s*eid is {eid}", out), out
        assert re.search(rf"Out\[{eid}:\d+\]: {eid * 10 + 1}", out), out
    assert rc[:].pull("a", block=True) == [eid * 10 for eid in rc.ids]


def test_cell_px_targets_noblock_and_pxresult(shell, rc):
    last = rc.ids[-1]
    with capture_output() as cap:
        shell.run_cell_magic("pxmig", f"--targets {last}", "print('only', eid)")
    assert f"only {last}" in shown(cap) and f"only {rc.ids[0]}" not in shown(cap)
    ar = shell.run_cell_magic("pxmig", "--noblock", "import time; time.sleep(0.2); print('later', eid)")
    assert ar.get(30) is not None
    with capture_output() as cap:
        shell.run_line_magic("pxresultmig", "")
    assert all(f"later {eid}" in shown(cap) for eid in rc.ids)
    shell.run_line_magic("pxresultmig", "-o saved")
    assert shell.user_ns["saved"] is ar


def test_cell_px_local_runs_here_too(shell, rc):
    with capture_output():
        shell.run_cell_magic("pxmig", "--local", "local_and_remote = 42")
    assert shell.user_ns["local_and_remote"] == 42
    assert rc[:].pull("local_and_remote", block=True) == [42] * len(rc.ids)


def test_pxconfig_and_autopx(shell, rc):
    first = rc.ids[0]
    shell.run_line_magic("pxconfigmig", f"--targets {first}")
    with capture_output() as cap:
        shell.run_line_magic("pxmig", "print('configured', eid)")
    assert f"configured {first}" in shown(cap) and f"configured {rc.ids[-1]}" not in shown(cap)
    shell.run_line_magic("pxconfigmig", "--targets all")


@pytest.fixture
def plain_magics(shell, rc):
    """``rc.activate()`` without a suffix (ipyparallel's %autopx only stops for an unsuffixed ``%autopx``);
    the magics of those names from before are put back afterwards."""
    tables = shell.magics_manager.magics
    saved = {kind: dict(table) for kind, table in tables.items()}
    rc.activate()
    yield shell
    for kind, table in tables.items():
        table.clear()
        table.update(saved[kind])


def test_autopx_runs_every_cell_on_the_engines(plain_magics, rc):
    shell = plain_magics
    with capture_output() as cap:
        shell.run_cell("%autopx")
        shell.run_cell("auto_value = eid + 100")
        shell.run_cell("%autopx")
    assert "%autopx enabled" in cap.stdout and "%autopx disabled" in cap.stdout
    assert "auto_value" not in shell.user_ns  # it ran on the engines, not here
    assert rc[:].pull("auto_value", block=True) == [eid + 100 for eid in rc.ids]


def test_errors_are_shown_and_raised(shell, rc, stack):
    with capture_output() as cap:
        result = shell.run_cell("%pxmig 1/0")
    assert result.error_in_exec is not None
    assert isinstance(result.error_in_exec, stack.ipp.RemoteError)
    assert "ZeroDivisionError" in shown(cap)
