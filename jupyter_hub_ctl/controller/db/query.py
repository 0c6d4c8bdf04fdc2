"""Task-record queries: a subset of the MongoDB query language.

A query is a dict.  ``{key: value}`` tests equality (``None`` matches a null
or missing value); ``{key: {"$op": arg, ...}}`` applies operators, all of
which must hold; every top-level key must hold; ``{}`` matches everything.

Semantics, shared by every backend:

* ``$eq``/``$ne`` -- equality / its negation (null-safe: ``$ne: "x"`` matches null).
* ``$lt $lte $gt $gte`` -- ordering; false when either side is null or the
  two values cannot be ordered (e.g. a string against a datetime).
* ``$in``/``$nin`` -- membership in a list; ``None`` in the list matches null.
* ``$all`` -- a list value contains every listed item (a scalar value must
  equal every listed item); an empty list matches nothing.
* ``$mod: [divisor, remainder]`` -- numeric values only.
* ``$exists: bool`` -- the value is (not) null.
* ``$glob`` -- fnmatch-style, case-sensitive pattern; only strings match.

This module parses queries (:func:`parse_query`), matches them against
Python dicts (:func:`compile_query`, :func:`match`), and translates what SQL
can express into a parameterised WHERE clause (:func:`to_sql`), leaving the
rest to be applied in Python.
"""

from __future__ import annotations

import fnmatch
import json
import numbers
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from .base import iso_utc, to_utc

OPERATORS = frozenset(
    [
        "$lt",
        "$lte",
        "$gt",
        "$gte",
        "$eq",
        "$ne",
        "$in",
        "$nin",
        "$all",
        "$mod",
        "$exists",
        "$glob",
    ]
)
_LIST_OPS = ("$in", "$nin", "$all")
#: above this many list items, SQL membership tests use one JSON parameter
SQL_LIST_LIMIT = 200


class Condition(NamedTuple):
    key: str
    op: str
    arg: Any
    #: for $in/$nin: the hashable arguments as a set, for fast membership
    lookup: frozenset | None = None


def _norm(value):
    """Normalise a query argument (datetimes become aware UTC)."""
    if isinstance(value, datetime):
        return to_utc(value)
    return value


def _condition(key: str, op: str, arg) -> Condition:
    if op not in OPERATORS:
        raise ValueError(f"Unsupported operator {op}")
    if op in _LIST_OPS:
        if isinstance(arg, (str, bytes, dict)) or not hasattr(arg, "__iter__"):
            raise ValueError(f"{op} on {key!r} needs a list, not {arg!r}")
        items = tuple(_norm(a) for a in arg)
        lookup = None
        if op != "$all":
            try:
                lookup = frozenset(a for a in items if a is not None)
            except TypeError:
                lookup = None
        return Condition(key, op, items, lookup)
    if op == "$mod":
        ok = (
            isinstance(arg, (list, tuple))
            and len(arg) == 2
            and all(
                isinstance(a, numbers.Real) and not isinstance(a, bool) for a in arg
            )
            and arg[0] != 0
        )
        if not ok:
            raise ValueError(f"$mod on {key!r} needs [divisor, remainder], not {arg!r}")
        return Condition(key, op, tuple(arg))
    if op == "$glob" and not isinstance(arg, str):
        raise ValueError(f"$glob on {key!r} needs a string pattern, not {arg!r}")
    if op == "$exists":
        return Condition(key, op, bool(arg))
    return Condition(key, op, _norm(arg))


def _is_operator_dict(spec) -> bool:
    return (
        isinstance(spec, dict)
        and bool(spec)
        and any(isinstance(k, str) and k.startswith("$") for k in spec)
    )


def parse_query(query) -> list[Condition]:
    """Turn a query dict into a flat list of conditions, all of which must hold.

    Raises ValueError for unsupported operators or malformed arguments and
    TypeError when ``query`` is not a dict with string keys.
    """
    if query is None:
        return []
    if not isinstance(query, dict):
        raise TypeError(f"a query must be a dict, not {type(query).__name__}")
    conds = []
    for key, spec in query.items():
        if not isinstance(key, str):
            raise TypeError(f"query keys must be strings, not {key!r}")
        if _is_operator_dict(spec):
            for op, arg in spec.items():
                if not (isinstance(op, str) and op.startswith("$")):
                    raise ValueError(
                        f"query on {key!r} mixes operators and plain keys ({op!r})"
                    )
                conds.append(_condition(key, op, arg))
        else:
            conds.append(_condition(key, "$eq", spec))
    return conds


# -- matching in Python -------------------------------------------------------


def _equal(value, arg) -> bool:
    if arg is None:
        return value is None
    if value is None:
        return False
    try:
        return bool(value == arg)
    except Exception:
        return False


def _ordered(compare: Callable) -> Callable:
    def test(value, cond):
        if value is None or cond.arg is None:
            return False
        try:
            return bool(compare(value, cond.arg))
        except TypeError:
            return False

    return test


def _in(value, cond) -> bool:
    if value is None:
        return None in cond.arg
    if cond.lookup is not None:
        try:
            return value in cond.lookup
        except TypeError:
            pass
    return any(_equal(value, a) for a in cond.arg)


def _all(value, cond) -> bool:
    if not cond.arg:
        return False
    if isinstance(value, (list, tuple)):
        return all(any(_equal(v, a) for v in value) for a in cond.arg)
    return all(_equal(value, a) for a in cond.arg)


def _mod(value, cond) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    divisor, remainder = cond.arg
    return value % divisor == remainder


def _glob(value, cond) -> bool:
    return isinstance(value, str) and fnmatch.fnmatchcase(value, cond.arg)


_MATCHERS: dict[str, Callable[[Any, Condition], bool]] = {
    "$eq": lambda v, c: _equal(v, c.arg),
    "$ne": lambda v, c: not _equal(v, c.arg),
    "$lt": _ordered(operator.lt),
    "$lte": _ordered(operator.le),
    "$gt": _ordered(operator.gt),
    "$gte": _ordered(operator.ge),
    "$in": _in,
    "$nin": lambda v, c: not _in(v, c),
    "$all": _all,
    "$mod": _mod,
    "$exists": lambda v, c: (v is not None) == c.arg,
    "$glob": _glob,
}


def match(record: dict, conds: list[Condition]) -> bool:
    """True if ``record`` satisfies every condition (absent keys count as None)."""
    for cond in conds:
        value = record.get(cond.key)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = to_utc(value)
        if not _MATCHERS[cond.op](value, cond):
            return False
    return True


def compile_query(query) -> Callable[[dict], bool]:
    """Parse ``query`` once and return a predicate over record dicts."""
    conds = parse_query(query)
    if not conds:
        return lambda record: True
    return lambda record: match(record, conds)


# -- translation to SQL -------------------------------------------------------

_SQL_COMPARE = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}


def _sql_param(kind: str, value):
    """The SQL parameter for ``value`` in a column of ``kind``, or raise TypeError.

    Only values whose SQL comparison provably agrees with the Python one are
    translated: strings in text columns, datetimes in time columns, numbers in real ones.
    """
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "real" and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if kind == "time" and isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(value)


def _sql_membership(col: str, kind: str, items, negate: bool, json_each: bool):
    """SQL for $in (or $nin when ``negate``); TypeError if SQL cannot express it."""
    has_null = any(a is None for a in items)
    params = [_sql_param(kind, a) for a in items if a is not None]
    if not params:
        member = "0"
    elif len(params) > SQL_LIST_LIMIT:
        if not json_each:
            raise TypeError("list too long for SQL")
        member = f"{col} IN (SELECT value FROM json_each(?))"
        params = [json.dumps(params)]
    else:
        member = f"{col} IN ({', '.join('?' * len(params))})"
    if not negate:
        sql = f"({member} OR {col} IS NULL)" if has_null else member
    elif has_null:
        sql = f"({col} IS NOT NULL AND NOT {member})"
    else:
        sql = f"({col} IS NULL OR NOT {member})"
    return sql, params


def _sql_condition(col: str, kind: str, cond: Condition, json_each: bool):
    op, arg = cond.op, cond.arg
    if op == "$exists":
        return (f"{col} IS NOT NULL" if arg else f"{col} IS NULL"), []
    if op in ("$eq", "$ne"):
        if arg is None:
            return (f"{col} IS NULL" if op == "$eq" else f"{col} IS NOT NULL"), []
        return (f"{col} IS ?" if op == "$eq" else f"{col} IS NOT ?"), [
            _sql_param(kind, arg)
        ]
    if op in _SQL_COMPARE:
        if arg is None:
            return "0", []
        sql = f"{col} {_SQL_COMPARE[op]} ?"
        if kind == "text":
            # untyped columns may hold numbers, which SQL would order before text
            sql = f"(typeof({col}) = 'text' AND {sql})"
        return sql, [_sql_param(kind, arg)]
    if op in ("$in", "$nin"):
        return _sql_membership(col, kind, arg, op == "$nin", json_each)
    if op == "$glob" and kind == "text" and "[" not in arg:
        return f"(typeof({col}) = 'text' AND {col} GLOB ?)", [arg]
    raise TypeError(op)


def to_sql(conds: list[Condition], kinds: dict[str, str], json_each: bool = True):
    """Translate conditions for a table whose columns have the given kinds.

    ``kinds`` maps column names to ``"text"``, ``"time"``, ``"real"``, ``"json"`` or
    ``"bufs"``.  Returns ``(where, params, rest)`` where ``rest`` are the
    conditions that must still be applied in Python to the selected rows.
    Raises KeyError for a key that is not a column.
    """
    clauses, params, rest = [], [], []
    for cond in conds:
        if cond.key not in kinds:
            raise KeyError(
                f"Unknown task record key {cond.key!r} in query; "
                f"valid keys are {sorted(kinds)}"
            )
        col = f'"{cond.key}"'
        try:
            sql, args = _sql_condition(col, kinds[cond.key], cond, json_each)
        except TypeError:
            rest.append(cond)
            continue
        clauses.append(sql)
        params.extend(args)
    return (" AND ".join(clauses) or "1"), params, rest
