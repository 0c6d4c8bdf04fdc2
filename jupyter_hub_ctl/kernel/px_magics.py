"""The ``%px`` family over a view: ``%px``, ``%%px``, ``%pxresult``, ``%pxconfig``, ``%autopx``.

``view.activate(suffix)`` (and ``Client.activate``) registers them for a DirectView as
``%px<suffix>`` etc., as ipyparallel does; ``%load_ext jupyter_hub_ctl`` registers them for the
connected hub (``PxMagics`` in ``magics.py``).  Output is streamed as it arrives (``--stream``,
the default) or shown once every engine is done (``--no-stream``, grouped by ``--group-outputs``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import warnings
from typing import Optional

from IPython.core.error import UsageError
from IPython.core.magic import Magics
from traitlets import Bool, Enum, Float, Unicode

GROUPS = ("type", "engine", "order")


class _Help(Exception):
    """-h was given: the help has been printed."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports misuse as IPython UsageErrors instead of exiting."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().rstrip()}")

    def exit(self, status=0, message=None):
        if status:
            raise UsageError(message or f"{self.prog}: error")
        raise _Help()

    def print_help(self, file=None):
        super().print_help(file or sys.stdout)


def _exec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--targets", default=None, help="engines: all, 3, 0,2,5, 1:4, ::2 (default: the view's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-b", "--block", dest="block", action="store_true", default=None,
                   help="wait for the engines and show their output (default)")
    g.add_argument("-a", "--noblock", dest="block", action="store_false",
                   help="return an AsyncResult at once (show it later with %%pxresult)")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--stream", dest="stream", action="store_true", default=None,
                   help="show the engines' output as it arrives (default)")
    s.add_argument("--no-stream", dest="stream", action="store_false",
                   help="show the output once every engine is done, grouped by --group-outputs")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--verbose", dest="verbose", action="store_true", default=None,
                   help="print which engines run each command")
    v.add_argument("--no-verbose", dest="verbose", action="store_false", help="do not")
    p.add_argument("--progress-after", dest="progress_after", type=float, default=None,
                   help="with --no-stream, show a progress bar after this many seconds (-1: never)")
    p.add_argument("--signal-on-interrupt", default=None,
                   help="signal sent to the engines on Ctrl-C (name or number; default SIGINT)")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-outputs", dest="groupby", choices=GROUPS, default=None,
                   help="order: as it arrives, interleaved; engine: one block per engine; "
                        "type (with --no-stream): all stdout, then all stderr, then outputs")
    p.add_argument("-r", dest="groupby", action="store_const", const="order", help="--group-outputs=order")
    p.add_argument("-e", dest="groupby", action="store_const", const="engine", help="--group-outputs=engine")
    p.add_argument("-o", "--out", dest="save_name", default=None,
                   help="also store the AsyncResult in this variable")


def px_parser(prog: str, cell: bool = False) -> _Parser:
    p = _Parser(prog=prog, description="Run code on engines.")
    _exec_args(p)
    _output_args(p)
    if cell:
        p.add_argument("--local", action="store_true", help="also run the cell in this kernel")
    return p


def _value_opts(parser) -> set:
    """The options of ``parser`` that take a value."""
    return {opt for a in parser._actions if a.nargs is None and a.option_strings and a.const is None
            for opt in a.option_strings}


def split_px_line(line: str, parser) -> tuple:
    """Split ``%px`` options from the code that follows them (``--`` ends the options)."""
    flags = {opt for a in parser._actions for opt in a.option_strings}
    values = _value_opts(parser)
    opts, rest = [], line
    while True:
        m = re.match(r"\s*(\S+)", rest)
        if not m:
            return opts, ""
        token = m.group(1)
        name = token.split("=", 1)[0]
        if token == "--":
            return opts, rest[m.end():].strip()
        if name in values and "=" not in token:
            rest = rest[m.end():]
            v = re.match(r"\s*(\S+)", rest)
            if not v:
                raise UsageError(f"%px: {token} needs a value")
            opts += [token, v.group(1)]
            rest = rest[v.end():]
        elif name in flags:
            opts.append(token)
            rest = rest[m.end():]
        elif token.startswith("--"):
            raise UsageError(f"%px: unknown option {token} (see %px -h; put code after --)")
        else:
            return opts, rest.strip()


def _signal(spec):
    return int(spec) if isinstance(spec, str) and spec.isdigit() else spec


class ParallelMagics(Magics):
    """``%px<suffix>``, ``%%px<suffix>``, ``%pxresult<suffix>``, ``%pxconfig<suffix>``, ``%autopx<suffix>``
    over one view (``view.activate(suffix)``)."""

    registered = True
    stream = Bool(True, config=True, help="Show engines' output as it arrives (False: once all are done).")
    group_outputs = Enum(list(GROUPS), "type", config=True,
                         help="How output is grouped: type, engine or order (see %px -h).")
    verbose = Bool(False, config=True, help="Print which engines run each %px command.")
    progress_after = Float(2.0, config=True,
                           help="Seconds before a progress bar is shown while waiting without streaming (-1: never).")
    signal_on_interrupt = Unicode("SIGINT", config=True, help="Signal sent to the engines on Ctrl-C.")
    poll_interval = Float(0.05, config=True, help="Seconds between two looks for new engine output.")
    interrupt_timeout = Float(10.0, config=True,
                              help="After Ctrl-C, seconds to wait for the signalled engines to stop.")

    def __init__(self, shell=None, view=None, suffix: str = "", **kwargs):
        self.view = view
        self.suffix = suffix
        self.last_result = None  # (AsyncResult, engine ids) of the last %px
        px = "px" + suffix
        self.magics = {
            "line": {px: self.px, "pxresult" + suffix: self.pxresult, "pxconfig" + suffix: self.pxconfig,
                     "auto" + px: self.autopx},
            "cell": {px: self.cell_px},
        }
        self._autopx = None  # the input transformer while %autopx is on
        super().__init__(shell=shell, **kwargs)

    # ------------------------------------------------------------------ where and how
    def _view(self, prog: str):
        """The view %px runs on."""
        return self.view

    def _set_targets(self, targets) -> None:
        self.view.targets = targets

    def _set_block(self, block: bool) -> None:
        self.view.block = block

    def _block(self, view) -> bool:
        return view.block

    def _engine_ids(self, view, spec: Optional[str], prog: str) -> list:
        from .px import parse_targets

        try:
            targets = view.targets if spec is None else parse_targets(spec)
            ids = view.client.ids
            chosen = view.client._resolve_targets(targets) if targets != "all" else ids
        except ValueError as e:
            raise UsageError(f"{prog}: {e}") from None
        except IndexError:
            missing = [t for t in ([targets] if isinstance(targets, int) else targets) if t not in ids]
            raise UsageError(f"{prog}: no engine {', '.join(map(str, missing))} (engines: {ids})") from None
        except Exception as e:  # no engines registered
            raise UsageError(f"{prog}: {e}") from None
        return chosen

    # ------------------------------------------------------------------ the magics
    def px(self, line: str = ""):
        """Run code on engines: ``%px [options] code``; ``%px -h`` for the options."""
        prog = "%px" + self.suffix
        parser = px_parser(prog)
        opts, code = split_px_line(line, parser)
        try:
            args = parser.parse_args(opts)
        except _Help:
            return None
        return self._run(prog, args, code)

    def cell_px(self, line: str = "", cell: Optional[str] = None):
        """Run the cell on engines: ``%%px [options]``; ``--local`` runs it here too."""
        prog = "%%px" + self.suffix
        try:
            argv = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"{prog}: {e}") from None
        try:
            args = px_parser(prog, cell=True).parse_args(argv)
        except _Help:
            return None
        if not args.local:
            return self._run(prog, args, cell or "")
        block = args.block
        args.block = False
        ar = self._run(prog, args, cell or "")  # submitted first, so both run at once
        self.shell.run_cell(cell)
        if block is False or (block is None and not self._block(self._view(prog))):
            return ar
        self._show(prog, args)
        return None

    def _run(self, prog: str, args, code: str):
        if not code.strip():
            raise UsageError(f"{prog}: no code given\n{px_parser(prog).format_usage().rstrip()}")
        view = self._view(prog)
        ids = self._engine_ids(view, args.targets, prog)
        block = self._block(view) if args.block is None else args.block
        if self.verbose if args.verbose is None else args.verbose:
            print(f"{'Parallel' if block else 'Async parallel'} execution on engine(s): {ids}")
        ar = view.execute(code, silent=False, targets=ids, block=False)
        ar._fname = "%px"
        self.last_result = (ar, ids)
        if args.save_name:
            self.shell.user_ns[args.save_name] = ar
        if not block:
            return ar
        self._show(prog, args)
        return None

    def _show(self, prog: str, args) -> None:
        """Show the last result's output (streamed or grouped) and raise PxError for engines' errors."""
        import signal as signal_mod

        from .px import PxOutput, raise_errors, runs_of_combined, wait_and_show

        ar, ids = self.last_result
        groupby = args.groupby or self.group_outputs
        stream = self.stream if getattr(args, "stream", None) is None else args.stream
        sig = _signal(getattr(args, "signal_on_interrupt", None) or self.signal_on_interrupt)
        if stream:
            out = PxOutput(runs_of_combined(ar, ids), "engine" if groupby == "engine" else "order")
            wait_and_show(out, ar._client, self.poll_interval, self.interrupt_timeout, sig=sig)
            return
        progress_after = getattr(args, "progress_after", None)
        progress_after = self.progress_after if progress_after is None else progress_after
        try:
            if not ar.wait(progress_after if progress_after >= 0 else None):
                ar.wait_interactive()
        except KeyboardInterrupt:
            pending = [eid for eid, c in zip(ids, ar._children) if not c.done]
            print(f"KeyboardInterrupt: sending {sig} to engines {pending}", file=sys.stderr)
            ar._client.send_signal(getattr(signal_mod, sig) if isinstance(sig, str) else sig, targets=pending,
                                   block=True)
            raise
        ar.display_outputs(groupby)
        raise_errors([c.error for c in ar._children if c.error is not None], len(ids))

    def _parse(self, name: str, description: str, add_args, line: str):
        """(prog, the parsed arguments of ``line``), or (prog, None) when -h printed the help."""
        prog = f"%{name}{self.suffix}"
        p = _Parser(prog=prog, description=description)
        add_args(p)
        try:
            return prog, p.parse_args(shlex.split(line))
        except _Help:
            return prog, None

    def pxresult(self, line: str = ""):
        """Wait for the last ``%px`` and show its outputs (``-o NAME`` stores its AsyncResult instead)."""
        prog, args = self._parse("pxresult", "Show the result of the last %px.", _output_args, line)
        if args is None:
            return None
        if self.last_result is None:
            raise UsageError(f"{prog}: no %px --noblock result to show")
        if args.save_name:
            self.shell.user_ns[args.save_name] = self.last_result[0]
            return None
        args.groupby = args.groupby or "engine"
        self._show(prog, args)
        return None

    def pxconfig(self, line: str = ""):
        """Set the defaults of ``%px``: ``--targets``, ``--block``/``--noblock``, ``--stream``, ``--verbose``, ..."""
        prog, args = self._parse("pxconfig", "Configure %px.", _exec_args, line)
        if args is None:
            return None
        if args.targets is not None:
            from .px import parse_targets

            try:
                self._set_targets(parse_targets(args.targets))
            except ValueError as e:
                raise UsageError(f"{prog}: {e}") from None
        if args.block is not None:
            self._set_block(args.block)
        for name in ("stream", "verbose", "progress_after", "signal_on_interrupt"):
            value = getattr(args, name)
            if value is not None:
                setattr(self, name, str(value) if name == "signal_on_interrupt" else value)

    def autopx(self, line: str = ""):
        """Toggle running every cell on the engines (as ``%%px``) until ``%autopx`` again."""
        cleanup = self.shell.input_transformers_cleanup
        if self._autopx is not None:
            if self._autopx in cleanup:
                cleanup.remove(self._autopx)
            self._autopx = None
            print("%autopx disabled")
            return
        name = "auto" + "px" + self.suffix
        px = "px" + self.suffix

        def to_px(lines: list) -> list:
            cell = "".join(lines)
            if re.match(rf"\s*%{re.escape(name)}\b", cell) or not cell.strip():
                return lines
            return [f"get_ipython().run_cell_magic({px!r}, '', {cell!r})\n"]

        self._autopx = to_px
        cleanup.append(to_px)
        print("%autopx enabled")


def activate(view, suffix: str = "") -> Optional[ParallelMagics]:
    """Register the %px family (with ``suffix``) for ``view`` in the running IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    ip = get_ipython() if get_ipython else None
    if ip is None:
        warnings.warn("The parallel magics (%px, etc.) only work within IPython.", stacklevel=3)
        return None
    magics = ParallelMagics(ip, view, suffix)
    ip.magics_manager.register(magics)
    return magics


__all__ = ["ParallelMagics", "activate", "px_parser", "split_px_line"]
