"""Running code on engines for ``%px`` / ``%%px``: streaming their output into this kernel.

Each engine's output is shown as it arrives: stream text line by line as
``[stdout:3] ...`` (``--group-outputs=order``, interleaved as the engines print) or each
engine's whole output as one block, in engine order, as soon as it and the engines before
it are done (``--group-outputs=engine``).  Rich display output is passed through, the
value of the last expression is shown as ``Out[3:7]: ...`` and a remote exception as the
engine's traceback.  Errors make the magic raise ``PxError`` (a ``CompositeError``) after
everything was shown; Ctrl-C sends SIGINT to the engines still running.
"""

from __future__ import annotations

import ast
import signal
import sys
import time
from typing import Callable, List, Optional

from ..client.errors import CompositeError

GROUPINGS = ("order", "engine")


class PxError(CompositeError):
    """Engines raised exceptions during ``%px`` (their tracebacks were shown above)."""

    def _render_traceback_(self) -> list:
        lines = [f"PxError: {self.args[0]}"]
        lines += [f"  {e}" for e in self.errors]
        return lines


def parse_targets(text: Optional[str]):
    """``all`` / ``3`` / ``0,2,5`` / ``1:4`` / ``::2`` / ``[0, 2]`` -> 'all', an int, a slice or a list."""
    if text is None or text.strip() in ("", "all", "*"):
        return "all"
    text = text.strip()
    if ":" in text and not text.startswith("["):
        parts = text.split(":")
        if len(parts) > 3:
            raise ValueError(f"bad target slice {text!r}")
        try:
            return slice(*[int(p) if p.strip() else None for p in parts])
        except ValueError:
            raise ValueError(f"bad target slice {text!r}") from None
    try:
        value = ast.literal_eval(text if not text.endswith(",") else text[:-1])
    except (ValueError, SyntaxError):
        raise ValueError(f"bad targets {text!r}: use all, an engine id, a list (0,2,5) or a slice (1:4)") from None
    if isinstance(value, bool):
        raise ValueError(f"bad targets {text!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    raise ValueError(f"bad targets {text!r}: use all, an engine id, a list (0,2,5) or a slice (1:4)")


class EngineRun:
    """One engine's share of a ``%px``: its live output list, and whether / how it finished."""

    def __init__(self, eid: int, outputs: list, done: Callable[[], bool], error: Callable[[], Optional[BaseException]]):
        self.eid = eid
        self.outputs = outputs
        self.done = done
        self.error = error
        self.seen = 0
        self.shown_done = False
        self.partial: dict = {}  # stream name -> text after the last newline


def runs_of_combined(ar, eids: list) -> List[EngineRun]:
    """EngineRuns over one AsyncResult of ``view.execute(code, targets=eids)``: one output list per engine."""
    outputs = ar.output_messages

    def error_of(eid):
        if not ar.done():
            return None
        exc = ar.exception(0)
        if exc is None:
            return None
        errors = exc.errors if isinstance(exc, CompositeError) else [exc]
        for e in errors:
            if getattr(e, "engine_id", None) == eid:
                return e
        return None

    return [EngineRun(eid, outputs[i], ar.done, lambda eid=eid: error_of(eid)) for i, eid in enumerate(eids)]


class PxOutput:
    """Shows engine outputs in this kernel as they arrive (see the module docs)."""

    def __init__(self, runs: List[EngineRun], group: str = "order"):
        if group not in GROUPINGS:
            raise ValueError(f"group_outputs must be one of {GROUPINGS}")
        self.runs = runs
        self.group = group
        self.next_block = 0  # engine mode: index of the next engine whose block is due

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _write(name: str, text: str) -> None:
        stream = sys.stderr if name == "stderr" else sys.stdout
        stream.write(text)
        stream.flush()

    def _lines(self, run: EngineRun, name: str, text: str, final: bool) -> None:
        """Write complete lines of ``text`` prefixed ``[name:eid]``; keep an unfinished line for later."""
        text = run.partial.pop(name, "") + text
        lines = text.split("\n")
        rest = lines.pop()
        if rest and final:
            lines.append(rest)
            rest = ""
        if rest:
            run.partial[name] = rest
        if lines:
            prefix = f"[{name}:{run.eid}] "
            self._write(name, "".join(f"{prefix}{line}\n" for line in lines))

    def _display(self, run: EngineRun, msg_type: str, content: dict) -> None:
        from IPython.display import display

        data = dict(content.get("data") or {})
        if msg_type == "execute_result":
            prefix = f"Out[{run.eid}:{content.get('execution_count', '')}]: "
            text = data.get("text/plain", "")
            data["text/plain"] = prefix + ("\n" + text if "\n" in text else text)
        elif "text/plain" in data and self.group == "order":
            data["text/plain"] = f"[output:{run.eid}] " + data["text/plain"]
        display(data, raw=True, metadata=content.get("metadata") or {})

    def _error(self, run: EngineRun, content: dict) -> None:
        tb = content.get("traceback") or [f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"]
        self._write("stderr", f"[{run.eid}:execute] {content.get('ename', 'Error')}: {content.get('evalue', '')}\n"
                    + "\n".join(tb) + "\n")

    def _emit(self, run: EngineRun, item: dict) -> None:
        kind, content = item["msg_type"], item["content"]
        if kind == "stream":
            self._lines(run, content.get("name", "stdout"), content.get("text", ""), final=False)
        elif kind in ("display_data", "update_display_data"):
            self._display(run, kind, content)
        # execute_result, error: shown when the engine is done (after its last stream text)

    def _finish_run(self, run: EngineRun) -> None:
        for name in list(run.partial):
            self._lines(run, name, "", final=True)
        shown_error = False
        for item in run.outputs:
            if item["msg_type"] == "execute_result":
                self._display(run, "execute_result", item["content"])
        for item in run.outputs:
            if item["msg_type"] == "error":
                self._error(run, item["content"])
                shown_error = True
        error = run.error()
        if error is not None and not shown_error:  # e.g. the engine died: no error output came
            self._write("stderr", f"[{run.eid}:execute] {error}\n")
        run.shown_done = True

    # ------------------------------------------------------------------ progress
    def poll(self) -> bool:
        """Show what arrived since the last call; True once everything is shown."""
        if self.group == "order":
            for run in self.runs:
                if run.shown_done:
                    continue
                done = run.done()  # read before the outputs: nothing can be missed
                items = run.outputs[run.seen:]
                run.seen += len(items)
                for item in items:
                    self._emit(run, item)
                if done:
                    self._finish_run(run)
        else:
            while self.next_block < len(self.runs) and self.runs[self.next_block].done():
                run = self.runs[self.next_block]
                for item in run.outputs:
                    self._emit(run, item)
                self._finish_run(run)
                self.next_block += 1
        return all(r.shown_done for r in self.runs)

    def errors(self) -> list:
        return [e for e in (r.error() for r in self.runs) if e is not None]

    def pending(self) -> list:
        return [r.eid for r in self.runs if not r.done()]


def wait_and_show(out: PxOutput, client, poll_interval: float = 0.05, interrupt_timeout: float = 10.0,
                  waiter=None, sig="SIGINT") -> None:
    """Stream outputs until every engine is done; relay Ctrl-C to the engines still running.

    After a KeyboardInterrupt the engines get ``sig`` (SIGINT) and their outcome (usually their
    own KeyboardInterrupt traceback) is shown for up to ``interrupt_timeout`` seconds; then the
    KeyboardInterrupt is raised.  Raises PxError if engines raised exceptions.
    """
    waiter = waiter or (lambda t: time.sleep(t))
    interrupted = False
    deadline = None
    while True:
        try:
            if out.poll():
                break
            if deadline is not None and time.monotonic() > deadline:
                sys.stderr.write(f"engines {out.pending()} did not stop within {interrupt_timeout:g}s of SIGINT\n")
                break
            waiter(poll_interval)
        except KeyboardInterrupt:
            if interrupted:  # a second Ctrl-C: stop waiting
                break
            interrupted = True
            pending = out.pending()
            sys.stderr.write(f"KeyboardInterrupt: sending {sig} to engines {pending}\n")
            sys.stderr.flush()
            if pending:
                try:
                    client.send_signal(getattr(signal, sig) if isinstance(sig, str) else sig, targets=pending,
                                       block=True)
                except Exception as e:
                    sys.stderr.write(f"could not signal the engines: {e}\n")
            deadline = time.monotonic() + interrupt_timeout
    if interrupted:
        raise KeyboardInterrupt
    raise_errors(out.errors(), len(out.runs))


def raise_errors(errors: list, n: int) -> None:
    """PxError for the engines' errors (``n`` engines ran), if there are any."""
    if errors:
        raise PxError(f"{len(errors)} of {n} engine{'s' if n != 1 else ''} raised an exception", errors)
