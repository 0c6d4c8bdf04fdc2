"""%hub and %px in a real IPython shell, against real hubs (background daemons, controllers, engines)."""

from __future__ import annotations

import _thread
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from support.procs import wait_for

from jupyter_hub_ctl.cluster import get_hub, list_hubs, state
from jupyter_hub_ctl.cluster.lifecycle import request_scale
from jupyter_hub_ctl.kernel.hubs import HubConnection, HubStartFailed
from jupyter_hub_ctl.kernel.px import PxError

from .helpers import processes_marked


def shown(cap) -> str:
    """Everything the user saw: stdout, then the plain text of rich outputs (results, displays)."""
    return cap.stdout + "".join(o.data.get("text/plain", "") + "\n" for o in cap.outputs)


@pytest.fixture
def ctrl_c():
    """Ctrl-C as a kernel delivers it while a cell runs: SIGINT raises KeyboardInterrupt in the main
    thread (``_thread.interrupt_main`` does nothing while SIGINT is ignored or left to the default
    action, which a process started in the background may have)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield _thread.interrupt_main
    signal.signal(signal.SIGINT, previous)


def hub_magic(ip, line):
    return ip.run_line_magic("hub", line)


def px(ip, line, cell=None):
    if cell is None:
        return ip.run_line_magic("px", line)
    return ip.run_cell_magic("px", line, cell)


def test_hub_start_binds_a_connection_px_runs_on_its_engines_and_stop_ends_it(ip, hub_dirs):
    with capture_output() as cap:
        hub_magic(ip, "start -n 2 --id first")
    hub = ip.user_ns["hub"]
    assert isinstance(hub, HubConnection) and hub.id == "first"
    assert hub.client.ids == [0, 1]
    assert "hub first: ready: 100%" in cap.stdout and "2/2" in cap.stdout  # progress, as text outside a notebook
    assert "connected as `hub`" in cap.stdout
    record = get_hub("first")
    assert record["status"] == "running" and record["owner"]["role"] == "daemon"  # outlives the kernel
    with capture_output() as cap:
        px(ip, "x = 41")
        px(ip, "print(x + 1)")
    # %px streams each engine's output as it arrives (as ipyparallel's does): any order
    assert sorted(cap.stdout.splitlines()) == ["[stdout:0] 42", "[stdout:1] 42"]
    assert hub[:].pull("x", block=True) == [41, 41]
    controller = record["controller"]
    with capture_output() as cap:
        hub_magic(ip, "stop")
    assert "hub first stopped" in cap.stdout
    assert list_hubs() == [] and state.process_status(controller) == "gone"
    assert hub.stopped
    with pytest.raises(UsageError, match="no hub connected"):
        px(ip, "1")


def test_hub_start_with_no_engines_runs_the_controller_alone_and_scales_later(ip, hub_dirs):
    """-n 0 is allowed, as in jupyter hubctl start, the REST API and the panel (cluster.lifecycle.MIN_ENGINES)."""
    with capture_output():
        hub_magic(ip, "start -n 0 --id bare")
    hub = ip.user_ns["hub"]
    assert hub.client.ids == [] and get_hub("bare")["status"] == "running"
    request_scale("bare", 1)  # what the panel's scale does
    wait_for(lambda: hub.client.ids == [0], 60, "the engine added by scaling")
    with capture_output() as cap:
        hub_magic(ip, "stop")
    assert "hub bare stopped" in cap.stdout and list_hubs() == []


def test_px_streams_each_engines_output_while_the_code_still_runs(ip, hub_dirs):
    hub_magic(ip, "start -n 2")
    gate = hub_dirs / "gate"
    # the engines print, then wait for a file the test creates only once it has *seen* that output
    code = (f"import os, time\nprint('first', flush=True)\ndeadline = time.time() + 30\n"
            f"while not os.path.exists({str(gate)!r}) and time.time() < deadline:\n    time.sleep(0.01)\n"
            f"print('released' if os.path.exists({str(gate)!r}) else 'never released')\n")
    with capture_output() as cap:
        def release():
            wait_for(lambda: "[stdout:0] first" in cap.stdout and "[stdout:1] first" in cap.stdout, 30,
                     "the engines' first lines to be shown")
            gate.write_text("go")

        helper = threading.Thread(target=release)
        helper.start()
        px(ip, "", code)
        helper.join()
    lines = cap.stdout.splitlines()
    assert lines[:2] in (["[stdout:0] first", "[stdout:1] first"], ["[stdout:1] first", "[stdout:0] first"])
    assert sorted(lines[2:]) == ["[stdout:0] released", "[stdout:1] released"]


def test_px_targets_results_and_noblock(ip, hub_dirs):
    hub_magic(ip, "start -n 3")
    ip.user_ns["hub"][:].scatter("eid", [0, 1, 2], flatten=True, block=True)
    with capture_output() as cap:
        px(ip, "--targets 1 eid * 10")
        px(ip, "-t 0,2 eid * 100")
        px(ip, "--targets=::2 print('even', eid)")
        px(ip, "--targets 1: print('tail', eid)")
    out = shown(cap)
    assert "Out[1:" in out and "]: 10" in out
    assert "Out[0:" in out and "]: 0" in out and "Out[2:" in out and "]: 200" in out
    assert "[stdout:0] even 0" in out and "[stdout:2] even 2" in out and "[stdout:1] even" not in out
    assert "[stdout:1] tail 1" in out and "[stdout:2] tail 2" in out and "[stdout:0] tail" not in out
    ar = px(ip, "--noblock print('later', eid); eid")
    assert [r.execute_result["data"]["text/plain"] for r in ar.get(30)] == ["0", "1", "2"]
    with capture_output() as cap:
        ip.run_line_magic("pxresult", "")
    assert [ln for ln in cap.stdout.splitlines() if ln.startswith("[stdout")] == \
        ["[stdout:0] later 0", "[stdout:1] later 1", "[stdout:2] later 2"]
    ip.user_ns["ar"] = px(ip, "--noblock --targets 2 print('alone', eid)")
    with capture_output() as cap:
        ip.run_line_magic("pxresult", "")
    assert cap.stdout.splitlines() == ["[stdout:2] alone 2"]


def test_px_shows_each_engines_error_and_raises_after_showing_everything(ip, hub_dirs):
    hub_magic(ip, "start -n 2")
    ip.user_ns["hub"][:].scatter("eid", [0, 1], flatten=True, block=True)
    with capture_output() as cap:
        with pytest.raises(PxError) as err:
            px(ip, "", "print('before', eid)\nif eid == 1:\n    raise ValueError(f'bad engine {eid}')\n'fine'")
    assert len(err.value.errors) == 1 and err.value.errors[0].engine_id == 1
    assert "1 of 2 engines raised" in str(err.value)
    assert "[stdout:0] before 0" in cap.stdout and "[stdout:1] before 1" in cap.stdout
    assert "Out[0:" in shown(cap) and "'fine'" in shown(cap)  # engine 0's value is still shown
    assert "[1:execute] ValueError: bad engine 1" in cap.stderr
    assert "Traceback" in cap.stderr and "raise ValueError" in cap.stderr  # the remote traceback
    assert "[0:execute]" not in cap.stderr
    # run as a cell, the error ends the cell with a short summary (the details were shown above)
    with capture_output() as cap:
        result = ip.run_cell("%px 1/0")
    assert isinstance(result.error_in_exec, PxError)
    assert "PxError: 2 of 2 engines raised an exception" in cap.stdout + cap.stderr
    assert cap.stderr.count("ZeroDivisionError: division by zero") >= 2


def test_group_outputs_by_order_or_by_engine(ip, hub_dirs):
    hub_magic(ip, "start -n 2")
    hub = ip.user_ns["hub"]
    hub[:].scatter("eid", [0, 1], flatten=True, block=True)
    flags = hub_dirs / "flags"
    flags.mkdir()

    def code(tag):
        # engine 1 prints (and creates a flag); engine 0 prints once the flag exists
        return (f"import os, time\nflag = os.path.join({str(flags)!r}, {tag!r})\n"
                "if eid == 1:\n    print('one'); print('one again', flush=True)\n"
                "    if {tag!r} == 'b':\n        open(flag, 'w').close()\n"
                "else:\n    deadline = time.time() + 30\n"
                "    while not os.path.exists(flag) and time.time() < deadline:\n        time.sleep(0.01)\n"
                "    print('zero' if os.path.exists(flag) else 'no flag')\n").replace("{tag!r}", repr(tag))

    # by order: lines appear as they arrive, so engine 1's come first; the flag is set only once the
    # kernel has shown them
    with capture_output() as cap:
        def release():
            wait_for(lambda: "[stdout:1] one again" in cap.stdout, 30, "engine 1's lines to be shown")
            (flags / "a").write_text("")

        helper = threading.Thread(target=release)
        helper.start()
        px(ip, "--group-outputs order", code("a"))
        helper.join()
    assert cap.stdout.splitlines() == ["[stdout:1] one", "[stdout:1] one again", "[stdout:0] zero"]
    # by engine: engine 0's block comes first although engine 1 printed first
    with capture_output() as cap:
        px(ip, "--group-outputs engine", code("b"))
    assert cap.stdout.splitlines() == ["[stdout:0] zero", "[stdout:1] one", "[stdout:1] one again"]


def test_ctrl_c_while_waiting_sends_sigint_to_the_engines(ip, hub_dirs, ctrl_c):
    hub_magic(ip, "start -n 2")
    hub = ip.user_ns["hub"]
    hub[:].scatter("eid", [0, 1], flatten=True, block=True)
    marks = hub_dirs / "running"
    marks.mkdir()
    code = (f"import os, time\nopen(os.path.join({str(marks)!r}, str(eid)), 'w').close()\n"
            "time.sleep(120)\nprint('not interrupted')")

    def interrupt():
        wait_for(lambda: len(os.listdir(marks)) == 2, 30, "both engines to run the cell")
        ctrl_c()  # what ipykernel does on an interrupt request: KeyboardInterrupt here

    helper = threading.Thread(target=interrupt)
    helper.start()
    started = time.monotonic()
    with capture_output() as cap:
        with pytest.raises(KeyboardInterrupt):
            px(ip, "", code)
    helper.join()
    assert time.monotonic() - started < 60
    assert "sending SIGINT to engines [0, 1]" in cap.stderr
    assert "[0:execute] KeyboardInterrupt" in cap.stderr and "[1:execute] KeyboardInterrupt" in cap.stderr
    assert "not interrupted" not in cap.stdout
    with capture_output() as cap:  # the engines are fine afterwards
        px(ip, "print('alive', eid)")
    assert sorted(cap.stdout.splitlines()) == ["[stdout:0] alive 0", "[stdout:1] alive 1"]


def test_hub_list_connect_status_and_engines_find_a_hub_started_elsewhere(ip, start_hub):
    other = start_hub(2, hub_id="elsewhere")  # as if started by the CLI or another kernel
    listing = hub_magic(ip, "list")
    assert [row[1:3] for row in listing.rows] == [["elsewhere", "running"]]
    assert "elsewhere" in listing._repr_html_() and "elsewhere" in repr(listing)
    with capture_output() as cap:
        hub_magic(ip, "connect elsewhere --name h2")
    h2 = ip.user_ns["h2"]
    assert h2.id == "elsewhere" and h2.client.ids == [0, 1] and not h2.started_here
    assert "connected to hub elsewhere" in cap.stdout
    assert hub_magic(ip, "list").rows[0][0] == "*"
    engines = hub_magic(ip, "engines")
    assert [row[0] for row in engines.rows] == [0, 1]
    assert {e["pid"] for e in engines.data} == {e["pid"] for e in get_hub("elsewhere")["engines"]}
    ip.run_line_magic("config", "HubStatus.recent_count = 3")  # views take the shell's config
    try:
        status = hub_magic(ip, "status")
    finally:
        ip.run_line_magic("config", "HubStatus.recent_count = 8")
    try:
        assert [e["id"] for e in status.engines] == [0, 1] and status.hub_state == "running"
        assert "hub elsewhere: running · 2 engines" in status.text()
        assert status.recent_count == 3
    finally:
        status.close()
    with capture_output():
        hub_magic(ip, "stop elsewhere")
    assert list_hubs() == []
    other.stopped = True


def test_stop_on_exit_stops_the_hub_when_the_kernel_exits_and_others_survive(ip, hub_dirs):
    from jupyter_hub_ctl.kernel.magics import registry_of

    with capture_output():
        hub_magic(ip, "start -n 1 --id keeper")
        hub_magic(ip, "start -n 1 --id temp --stop-on-exit --name h2")
    assert ip.user_ns["h2"].stop_on_exit and not ip.user_ns["hub"].stop_on_exit
    registry_of(ip).at_exit()  # what the kernel's atexit runs
    wait_for(lambda: state.read_state("temp") is None, 30, "the stop-on-exit hub to stop")
    assert get_hub("keeper")["status"] == "running"
    with capture_output():
        hub_magic(ip, "stop keeper")


def test_failed_start_reports_the_reason_and_leaves_nothing_running(ip, hub_dirs):
    bad = json.dumps([sys.executable, "-c", "import sys; print('engine broke'); sys.exit(3)"])
    with capture_output():
        with pytest.raises(HubStartFailed) as err:
            hub_magic(ip, f"start -n 1 --id broken --set {shlex.quote('Cluster.engine_cmd=' + bad)} --timeout 60")
    message = str(err.value)
    assert "hub broken failed to start" in message and "code 3" in message
    assert "hub" not in ip.user_ns
    assert get_hub("broken")["state"] == "failed"
    wait_for(lambda: processes_marked(str(hub_dirs)) == [], 20, "the failed hub's processes to exit")


def test_ctrl_c_during_start_stops_the_hub_being_started(ip, hub_dirs, ctrl_c):
    def interrupt():
        wait_for(lambda: (state.read_state("halfway") or {}).get("controller"), 30, "the controller to start")
        ctrl_c()

    helper = threading.Thread(target=interrupt)
    helper.start()
    with capture_output():
        with pytest.raises(KeyboardInterrupt):
            hub_magic(ip, "start -n 2 --id halfway")
    helper.join()
    wait_for(lambda: state.read_state("halfway") is None or state.read_state("halfway")["state"] == "failed", 30,
             "the interrupted hub to be cleaned up")
    wait_for(lambda: processes_marked(str(hub_dirs)) == [], 20, "the interrupted hub's processes to exit")


def test_dry_run_shows_the_job_script_or_commands_and_starts_nothing(ip, hub_dirs):
    with capture_output() as cap:
        hub_magic(ip, "start -n 3 --launcher slurm --id plan --dry-run --set SlurmEngineLauncher.queue=debug "
                      "--set SlurmEngineLauncher.walltime=00:10:00")
    assert "#SBATCH --ntasks=3" in cap.stdout and "#SBATCH --partition=debug" in cap.stdout
    assert "#SBATCH --time=00:10:00" in cap.stdout and "jupyter_hub_ctl.engine" in cap.stdout
    with capture_output() as cap:
        hub_magic(ip, "start -n 4 --launcher mpi --dry-run")
    assert "mpiexec" in cap.stdout and "-n 4" in cap.stdout
    assert list_hubs() == [] and "hub" not in ip.user_ns


@pytest.mark.parametrize("line, message", [
    ("", "%hub needs a command"),
    ("bogus", "invalid choice: 'bogus'"),
    ("start -n -1", "-n must be 0 or more"),
    ("start -n two", "invalid int value"),
    ("start --launcher nosuch", "nosuch"),
    ("start --id 'bad id!'", "bad id!"),
    ("start --set nonsense", "--set expects Class.trait=value"),
    ("start --name 'not a name'", "--name must be a Python identifier"),
    ("stop", "no hub connected here"),
    ("stop nosuchhub", "nosuchhub"),
    ("connect", "the following arguments are required: id"),
    ("connect nosuchhub", "nosuchhub"),
    ("status", "no hub connected here"),
    ("engines", "no hub connected here"),
])
def test_hub_misuse_is_a_usage_error_that_says_what_is_wrong(ip, line, message):
    with pytest.raises(UsageError) as err:
        hub_magic(ip, line)
    assert message in str(err.value)
    assert list_hubs() == []


def test_px_misuse_is_a_usage_error_that_says_what_is_wrong(ip, start_hub):
    with pytest.raises(UsageError, match="no hub connected"):
        px(ip, "1")
    conn = start_hub(1)
    with capture_output():
        hub_magic(ip, f"connect {conn.id}")
    cases = [("--bogus 1", "unknown option --bogus"), ("--targets x 1", "bad targets 'x'"),
             ("--targets 5 1", "no engine 5 (engines: [0])"), ("--targets", "--targets needs a value"),
             ("", "no code given"), ("--group-outputs bogus 1", "invalid choice: 'bogus'"),
             ("--block --noblock 1", "not allowed with argument")]
    for line, message in cases:
        with pytest.raises(UsageError) as err:
            px(ip, line)
        assert message in str(err.value), (line, str(err.value))
    with pytest.raises(UsageError, match="no %px --noblock result"):
        ip.run_line_magic("pxresult", "")
    with capture_output() as cap:  # code after -- may start with a dash
        px(ip, "-- -1 + 3")
    assert "]: 2" in shown(cap)


def test_help_is_printed_not_an_error(ip):
    with capture_output() as cap:
        assert hub_magic(ip, "-h") is None
        assert hub_magic(ip, "start -h") is None
        assert px(ip, "-h") is None
    assert "--stop-on-exit" in cap.stdout and "--group-outputs" in cap.stdout and "status" in cap.stdout


def test_extension_loads_from_ipython_config(hub_dirs):
    env = dict(os.environ)
    res = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                          "--InteractiveShellApp.extensions=['jupyter_hub_ctl']", "-c", "%hub list"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "no hubs" in res.stdout


def test_stop_on_exit_hub_stops_when_the_ipython_process_exits(hub_dirs):
    code = "%hub start -n 1 --id exiting --stop-on-exit\n%hub start -n 1 --id staying"
    res = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                          "--InteractiveShellApp.extensions=['jupyter_hub_ctl']",
                          "--HubMagics.controller_args=['--ping=250']", "-c", code],
                         env=dict(os.environ), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "hub exiting running with 1 engines" in res.stdout and "hub staying running" in res.stdout
    wait_for(lambda: state.read_state("exiting") is None, 30, "the stop-on-exit hub to stop after the exit")
    assert get_hub("staying")["status"] == "running"  # the default: hubs outlive the kernel
    from jupyter_hub_ctl.cluster import find_hub

    find_hub("staying").stop_sync()


def test_unload_ext_removes_the_magics_and_the_exit_hook_and_disconnects(ip, hub_dirs, monkeypatch):
    import atexit

    from jupyter_hub_ctl.kernel.magics import registry_of

    unregistered = []  # atexit keeps no count of what was unregistered: watch the calls
    real_unregister = atexit.unregister
    monkeypatch.setattr(atexit, "unregister", lambda fn: (unregistered.append(fn), real_unregister(fn))[1])

    with capture_output():
        hub_magic(ip, "start -n 1 --id keep")
        hub_magic(ip, "start -n 1 --id temp --stop-on-exit --name h2")
    keep, temp = ip.user_ns["hub"], ip.user_ns["h2"]
    registry = registry_of(ip)
    try:
        with capture_output() as cap:
            ip.run_line_magic("unload_ext", "jupyter_hub_ctl")
        assert "stopping hub temp (started with --stop-on-exit)" in cap.stdout
        assert "jupyter_hub_ctl" not in ip.extension_manager.loaded
        assert all(ip.find_line_magic(name) is None for name in ("hub", "px", "pxresult"))
        assert ip.find_cell_magic("px") is None
        assert not {"HubMagics", "PxMagics"} & set(ip.magics_manager.registry)
        with pytest.raises(UsageError):
            hub_magic(ip, "list")
        assert registry_of(ip) is None and unregistered == [registry.at_exit]  # the stop-on-exit hook
        assert keep.client._closed and temp.stopped
        assert state.read_state("temp") is None  # stopped: nothing would stop it at exit any more
        assert get_hub("keep")["status"] == "running"  # the others keep running
    finally:
        ip.run_line_magic("load_ext", "jupyter_hub_ctl")
    assert registry_of(ip) is not registry and registry_of(ip).connections == {}
    assert [row[1] for row in hub_magic(ip, "list").rows] == ["keep"]
    with capture_output():
        hub_magic(ip, "stop keep")
    assert list_hubs() == []
