"""What the REST API returns, and validation of what it accepts."""

from __future__ import annotations

import datetime
import os
import re
from typing import Any, Optional

from traitlets import Bool, Dict, Float, Integer, List, Unicode

from ..cluster.lifecycle import MIN_ENGINES

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STATES = ("stopped", "starting", "running", "stopping", "failed")


class BadRequest(ValueError):
    """A request body or path value the API refuses (400)."""


def iso(ts) -> Optional[str]:
    if ts is None:
        return None
    if isinstance(ts, (int, float)):
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()
    return str(ts)


def profile_name(profile_dir: str) -> str:
    base = os.path.basename((profile_dir or "").rstrip(os.sep))
    return base[len("profile_"):] if base.startswith("profile_") else base


def hub_state(record: dict) -> tuple:
    """(state, error) of an annotated state record."""
    status = record.get("status") or record.get("state")
    if status == "corrupt":
        return "failed", "the hub's state file is unreadable"
    if record.get("alive") is False and record.get("state") in ("starting", "running", "stopping"):
        return "failed", record.get("stale_reason") or "the hub's processes are gone"
    if record.get("stop_requested") and record.get("state") in ("starting", "running"):
        return "stopping", record.get("error")
    state = record.get("state")
    return (state if state in STATES else "failed"), record.get("error")


HEALTH_STATES = ("ok", "degraded")
MAX_REASONS = 10


def health_model(health: Optional[dict]) -> Optional[dict]:
    """What a hub says of its own health (its ``health_request`` reply), for people; None when unknown.

    ``state`` is ``ok`` or ``degraded`` (a degraded hub keeps scheduling), ``reasons`` one
    sentence per problem, ``degraded_since`` an ISO date while degraded, ``encrypted`` whether
    every connection to the hub is encrypted (CurveZMQ).
    """
    if not isinstance(health, dict) or health.get("state") not in HEALTH_STATES:
        return None
    reasons = health.get("reasons")
    reasons = [_short(r) for r in reasons if r][:MAX_REASONS] if isinstance(reasons, list) else []
    degraded = health["state"] == "degraded"
    return {
        "state": health["state"],
        "reasons": reasons,
        "degraded_since": iso(health.get("degraded_since")) if degraded else None,
        "encrypted": bool(health.get("encrypted")),
    }


def hub_model(record: dict, engines: Optional[int] = None, health: Optional[dict] = None) -> dict:
    """The REST model of a hub; ``health`` is a ``health_model`` (shown only while the hub runs)."""
    state, error = hub_state(record)
    if engines is None:
        engines = 0
    return {
        "id": record.get("id"),
        "name": record.get("name") or record.get("id"),
        "state": state,
        "error": _short(error),
        "engines": engines if state == "running" else 0,
        "health": health if state == "running" else None,
        "n": record.get("n") or 0,
        "launcher": record.get("launcher") or "local",
        "profile": profile_name(record.get("profile_dir") or ""),
        "created": record.get("created"),
        "updated": record.get("updated"),
        "ended": ended_model(record, error) if state in ("stopped", "failed") else None,
    }


#: most lines (and characters per line) of a log tail in a hub model
LOG_TAIL_LINES = 20
LOG_LINE_CHARS = 200


def ended_model(record: dict, error) -> dict:
    """How a stopped or failed hub ended, from its record: when, why (the error's first line), the
    exit codes its processes left, and the log lines its error quotes."""
    def code(process) -> Optional[int]:
        exit_info = (process or {}).get("exit") if isinstance(process, dict) else None
        return exit_info.get("code") if isinstance(exit_info, dict) else None

    text = str(error or "")
    tail = text.split("last log lines:", 1)[1].splitlines() if "last log lines:" in text else []
    return {
        "time": record.get("updated"),
        "reason": _short(error),
        "exit_codes": {"controller": code(record.get("controller")),
                       "engines": [code(e) for e in record.get("engines") or () if code(e) is not None]},
        "log_tail": [line.strip()[:LOG_LINE_CHARS] for line in tail if line.strip()][-LOG_TAIL_LINES:],
    }


def first_line(error) -> str:
    """The first line of an error's text ("" when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _short(error) -> Optional[str]:
    """An error for people: its first line, without file paths."""
    if not error:
        return None
    return re.sub(r"(/[^\s:'\",()]+)+", "<path>", first_line(error))[:300]


def engine_model(e: dict) -> dict:
    return {
        "id": e.get("id"),
        "uuid": e.get("uuid"),
        "host": e.get("host") or "",
        "pid": e.get("pid"),
        "state": e.get("state", "running"),
        "queue": e.get("queue", 0),
        "tasks": e.get("tasks", 0),
        "completed": e.get("completed", 0),
        "last_heartbeat": iso(e.get("last_heartbeat")),
        "metrics": metrics_model(e.get("metrics")),
    }


ENGINE_PAGE = 200  # engines per page of GET hubs/{id}/engines, and in an event, unless asked otherwise
ENGINE_PAGE_MAX = 1000


def engines_summary(engines: list) -> dict:
    """What a list of engine models adds up to: how many, in which states, on how many hosts, queue totals."""
    states: dict = {}
    for e in engines:
        states[e["state"]] = states.get(e["state"], 0) + 1
    # hosts: distinct known ones (ipyparallel's engines do not say theirs)
    return {"total": len(engines), "states": states, "hosts": len({e["host"] for e in engines if e["host"]}),
            **{key: sum(e.get(key) or 0 for e in engines) for key in ("queue", "tasks", "completed")}}


def engines_page(engines: list, offset: int = 0, limit: int = ENGINE_PAGE) -> dict:
    """One page of a hub's engines (in id order) with the summary of all of them."""
    return {"engines": engines[offset:offset + limit], "offset": offset, "limit": limit,
            "total": len(engines), "summary": engines_summary(engines)}


METRICS_KEYS = ("time", "cpu", "rss", "threads", "task", "task_name")
HOST_KEYS = ("time", "load1", "cpus", "mem_total", "mem_used")


def metrics_model(sample) -> Optional[dict]:
    """An engine's latest metrics as the hub reports them (None: it reports none): ``time``
    (epoch s, hub clock), ``cpu`` (% of one core), ``rss`` (bytes), ``threads``, and the running
    task's ``task`` (msg_id) and ``task_name`` (None while idle)."""
    if not isinstance(sample, dict):
        return None
    return {key: sample.get(key) for key in METRICS_KEYS}


def engines_event(hub_id: str, hub: dict, engines: list, hosts: dict) -> dict:
    """The ``engines`` event: sent when a hub's engines change and when they report new metrics; it
    carries the first page of engines (with their metrics), the summary of all, and the hosts."""
    return {"action": "engines", "hub_id": hub_id, "hub": hub, **engines_page(engines), "hosts": hosts}


def hosts_model(engines: list) -> dict:
    """The latest figures of each host the engines (as the hub lists them) report from."""
    hosts = {}
    for e in engines:
        figures = e.get("host_metrics")
        if isinstance(figures, dict) and e.get("host"):
            hosts[e["host"]] = {key: figures.get(key) for key in HOST_KEYS}
    return hosts


#: the queue counts of a hub not asked yet (or not answering)
NO_QUEUES = {"engines": {}, "unassigned": 0, "totals": {"queue": 0, "tasks": 0, "completed": 0}}


def queues_model(status: dict) -> dict:
    engines = {str(k): v for k, v in status.items() if isinstance(k, int) or str(k).isdigit()}
    totals = {key: sum(v.get(key, 0) for v in engines.values()) for key in ("queue", "tasks", "completed")}
    return {"engines": engines, "unassigned": status.get("unassigned", 0), "totals": totals}


def first_page_counts(queues: dict, engines: list) -> dict:
    """Queue counts with the per-engine part cut to the engines of the first page (the totals stay whole)."""
    if len(queues["engines"]) <= ENGINE_PAGE:
        return queues
    page = {str(e["id"]) for e in engines[:ENGINE_PAGE]}
    return dict(queues, engines={k: v for k, v in queues["engines"].items() if k in page})


# ---------------------------------------------------------------- launcher option schemas
#: words of option names, as people write them in a label
_LABEL_WORDS = {"cmd": "command", "args": "arguments", "dir": "directory", "regexp": "pattern", "mpi": "MPI",
                "ssh": "SSH", "id": "ID", "ids": "IDs"}


def option_title(name: str) -> str:
    """A label for an option: ``engine_cmd`` -> "Engine command"."""
    words = [_LABEL_WORDS.get(w, w) for w in name.split("_") if w]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _scalar_schema(trait) -> Optional[dict]:
    for kind, name in ((Bool, "boolean"), (Integer, "integer"), (Float, "number"), (Unicode, "string")):
        if isinstance(trait, kind):
            return {"type": name}
    return None


def _trait_schema(trait) -> Optional[dict]:
    """The JSON schema of a launcher option for the create form: type, default, a label, the help,
    and whether it is advanced (options not tagged ``basic=True`` are)."""
    schema = _scalar_schema(trait)
    if schema is None and isinstance(trait, List):
        schema = {"type": "array", "items": {"type": "string"}}
    elif schema is None and isinstance(trait, Dict):
        values = _scalar_schema(trait._value_trait) if trait._value_trait is not None else None
        schema = {"type": "object", "additionalProperties": values or {"type": "string"}}
    if schema is None:
        return None
    default = trait.default_value
    if isinstance(default, (bool, int, float, str, list, dict)) and not (isinstance(default, str) and os.sep in default):
        schema["default"] = default
    schema["title"] = trait.metadata.get("title") or option_title(trait.name)
    schema["description"] = trait.help or ""
    schema["advanced"] = not trait.metadata.get("basic", False)
    if "example" in trait.metadata:
        schema["examples"] = [trait.metadata["example"]]
    return schema


def launcher_schema(cls) -> dict:
    props = {}
    for name, trait in sorted(cls.class_traits(config=True).items()):
        s = _trait_schema(trait)
        if s is not None:
            props[name] = s
    return {"type": "object", "properties": props, "additionalProperties": False}


# ---------------------------------------------------------------- validation
def check_name(value: Any, what: str = "hub id") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise BadRequest(f"invalid {what}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


def check_profile(value: Any) -> str:
    if not isinstance(value, str) or not PROFILE_RE.match(value):
        raise BadRequest("invalid profile: use 1-64 letters, digits, '_' or '-' (a name, not a path)")
    return value




def check_n(value: Any, max_engines: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_ENGINES <= value <= max_engines:
        raise BadRequest(f"n must be an integer from {MIN_ENGINES} to {max_engines}")
    return value


_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}


def _is_json_type(value: Any, kind: str) -> bool:
    return isinstance(value, _JSON_TYPES[kind]) and (kind == "boolean" or not isinstance(value, bool))


def check_options(options: Any, cls) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    allowed = cls.class_traits(config=True)
    out = {}
    for key, value in options.items():
        trait = allowed.get(key)
        schema = _trait_schema(trait) if trait is not None else None
        if schema is None:
            raise BadRequest(f"unknown option {key!r} for this launcher")
        if schema["type"] == "array":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise BadRequest(f"option {key!r} must be a list of strings")
        elif schema["type"] == "object":
            kind = schema["additionalProperties"]["type"]
            if not (isinstance(value, dict) and all(_is_json_type(v, kind) for v in value.values())):
                raise BadRequest(f"option {key!r} must be an object of {kind} values")
        else:
            try:
                trait.validate(None, value)
            except Exception:
                raise BadRequest(f"option {key!r} has an invalid value") from None
        out[key] = value
    return out
