"""Splitting sequences over tasks and joining the parts back: ``dist='b'`` (blocks) and ``dist='r'`` (round robin)."""

from __future__ import annotations

import sys
from itertools import islice

DISTS = ("b", "r")


def _is_array(obj) -> bool:
    np = sys.modules.get("numpy")  # an array can only exist once numpy is imported
    return np is not None and isinstance(obj, np.ndarray)


def check_dist(dist: str) -> str:
    if dist not in DISTS:
        raise ValueError(f"dist must be 'b' (contiguous blocks) or 'r' (round robin), not {dist!r}")
    return dist


def part(seq, p: int, q: int, n=None, dist: str = "b"):
    """The ``p``-th of ``q`` parts of ``seq`` (its first ``n`` items): a block, or every q-th item."""
    n = len(seq) if n is None else n
    if not 0 <= p < q:
        raise ValueError(f"must have 0 <= p < q, but have p={p}, q={q}")
    if dist == "r":
        return seq[p:n:q]
    base, extra = divmod(n, q)
    low = p * base + min(p, extra)
    high = low + base + (1 if p < extra else 0)
    try:
        return seq[low:high]
    except TypeError:  # not sliceable
        return list(islice(seq, low, high))


def join(parts: list, dist: str = "b"):
    """The inverse of ``part``: arrays and lists are put back together, other values listed as they are."""
    if not parts:
        return []
    first = parts[0]
    if dist == "r":
        if _is_array(first):
            import numpy

            shape = list(first.shape)
            shape[0] = sum(p.shape[0] for p in parts)
            out = numpy.empty(shape, dtype=first.dtype)
            for i, p in enumerate(parts):
                out[i::len(parts)] = p
            return out
        if isinstance(first, (list, tuple, range)):
            flat = []
            for i in range(max(len(p) for p in parts)):
                flat.extend(p[i] for p in parts if len(p) > i)
            return flat
        return list(parts)
    if _is_array(first):
        import numpy

        return numpy.concatenate(parts)
    if isinstance(first, (list, tuple, range)):
        return [x for p in parts for x in p]
    return list(parts)


def joiner(dist: str):
    return lambda parts: join(parts, dist)


__all__ = ["part", "join", "joiner", "check_dist", "DISTS"]
