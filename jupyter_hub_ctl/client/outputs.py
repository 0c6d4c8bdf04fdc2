"""Showing what tasks produced: ``ExecuteReply`` and ``AsyncResult.display_outputs``."""

from __future__ import annotations

import sys
from typing import Optional


class ExecuteReply:
    """The outcome of one ``execute`` on one engine.

    ``content`` is the reply content, ``outputs`` every IOPub message it produced,
    ``metadata`` its task metadata (also as items and attributes: ``er['engine_id']``,
    ``er.execute_result``).  Shown as ``Out[engine:n]: value`` like in ipyparallel.
    """

    def __init__(self, msg_id: str, content: dict, message):
        self.msg_id = msg_id
        self.content = content
        self.execution_count = content.get("execution_count")
        self._message = message

    @property
    def metadata(self):
        return self._message.metadata

    @property
    def outputs(self) -> list:
        return self._message.outputs

    @property
    def engine_id(self):
        return self._message.engine_id

    @property
    def execute_result(self) -> Optional[dict]:
        for o in self._message.outputs:
            if o["msg_type"] == "execute_result":
                return o["content"]
        return None

    @property
    def data(self) -> dict:
        r = self.execute_result
        return dict(r.get("data") or {}) if r else {}

    def __getitem__(self, key):
        return self.metadata[key]

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        md = self.metadata
        if key not in md:
            raise AttributeError(key)
        return md[key]

    def _plaintext(self) -> str:
        text = self.data.get("text/plain", "")
        if not text:
            return ""
        if "\n" in text and not text.startswith("\n"):
            text = "\n" + text
        return f"Out[{self.engine_id}:{self.execution_count}]: {text}"

    def _repr_pretty_(self, p, cycle):
        p.text(self._plaintext())

    def _repr_mimebundle_(self, include=None, exclude=None):
        r = self.execute_result
        if not r:
            return {}, {}
        data = dict(r.get("data") or {})
        if "text/plain" in data:
            data["text/plain"] = self._plaintext()
        return data, dict(r.get("metadata") or {})

    def display(self) -> None:
        from IPython.display import publish_display_data

        r = self.execute_result or {}
        publish_display_data(r.get("data") or {}, r.get("metadata") or {})

    def __repr__(self) -> str:
        text = self.data.get("text/plain", "")
        if len(text) > 32:
            text = text[:29] + "..."
        return f"<ExecuteReply[{self.execution_count}]: {text}>"


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


class _StreamWriter:
    """Writes engines' stream text with a ``[stdout:3]`` prefix line where the engine changes."""

    def __init__(self):
        self.last_prefix = ""

    def write(self, text: str, prefix: str, file=None) -> None:
        if not text:
            return
        file = file or sys.stdout
        head = ""
        if prefix and prefix != self.last_prefix:
            head = f"{prefix}\n"
            self.last_prefix = prefix
        file.write(head + text if text.endswith("\n") else head + text + "\n")
        file.flush()


def _republish(content: dict, eid) -> None:
    ip = _ipython()
    if ip is None:
        return
    md = dict(content.get("metadata") or {})
    md["engine"] = eid
    ip.display_pub.publish(data=content.get("data") or {}, metadata=md)


def display_outputs(ar, groupby: str = "type", result_only: bool = False) -> None:
    """Show an AsyncResult's outputs again (see ``AsyncResult.display_outputs``)."""
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")
    single = ar._single
    eids = [ar.engine_id] if single else list(ar.engine_id)
    stdouts = [ar.stdout] if single else list(ar.stdout)
    stderrs = [ar.stderr] if single else list(ar.stderr)
    displays = [ar.outputs] if single else list(ar.outputs)
    results = ar.get(return_exceptions=True)
    results = [results] if single else list(results)
    shown = [getattr(r, "execute_result", None) is not None for r in results]
    w = _StreamWriter()
    ip = _ipython()

    def streams(i):
        w.write(stdouts[i], "" if single else f"[stdout:{eids[i]}]")
        w.write(stderrs[i], "" if single else f"[stderr:{eids[i]}]", sys.stderr)

    def show_result(i):
        if shown[i] and ip is not None:
            from IPython.display import display

            display(results[i])

    if groupby == "engine":
        for i in range(len(eids)):
            if not result_only:
                streams(i)
            if ip is None:
                continue
            if not result_only:
                for content in displays[i]:
                    _republish(content, eids[i])
            show_result(i)
        return
    if not result_only:
        for i in range(len(eids)):
            w.write(stdouts[i], "" if single else f"[stdout:{eids[i]}]")
        for i in range(len(eids)):
            w.write(stderrs[i], "" if single else f"[stderr:{eids[i]}]", sys.stderr)
    if ip is None:
        return
    if not result_only:
        if groupby == "order":  # the first display of every engine, then the second, ...
            for n in range(max((len(d) for d in displays), default=0)):
                for i, d in enumerate(displays):
                    if n < len(d):
                        _republish(d[n], eids[i])
        else:
            for i, d in enumerate(displays):
                for content in d:
                    _republish(content, eids[i])
    for i in range(len(eids)):
        show_result(i)


__all__ = ["ExecuteReply", "display_outputs"]
