"""Signing, packing and parsing of wire messages.

The envelope is the Jupyter one: ``[ident*, DELIM, signature, header, parent,
metadata, content, buffer*]``.  `WireSession` is a lean codec built from a
`jupyter_client.session.Session` (which stays the holder of configuration:
key, signature scheme, session id, username), tuned for the controller's hot
path: one HMAC object copied per message, JSON only, dates left as strings
unless asked for, and a bounded replay cache.
"""

from __future__ import annotations

import hmac
import hashlib
import json
import os
from datetime import datetime, timezone
from itertools import accumulate, count
from typing import Any, Iterable, Optional, Sequence

from .errors import MessageError
from .replay import ReplayCache

DELIM = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.3"

#: Deepest nesting of JSON arrays/objects accepted in any frame.  Legitimate messages nest a few
#: levels (a task record inside a reply: about ten); the limit keeps every later step (storing,
#: copying, re-encoding) far from Python's recursion limit.
MAX_JSON_DEPTH = 100
#: Largest header or parent header accepted (they hold a handful of short strings).
MAX_HEADER_BYTES = 64 * 1024
#: Largest metadata frame accepted (dependency lists of many thousand msg_ids fit).
MAX_METADATA_BYTES = 64 * 1024 * 1024


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=timezone.utc)
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(
    default=_json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def pack(obj: Any) -> bytes:
    return _encoder.encode(obj).encode("utf8", "surrogateescape")


def _refuse_constant(name: str):
    raise MessageError("bad-json", f"{name} is not a JSON number")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)  # NaN, Infinity: refused, never stored
_decode = _decoder.decode
_scan = _decoder.scan_once  # the C scanner: skips decode()'s two whitespace regex matches

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NESTING = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))  # 255: -1 as signed


def json_depth(data: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    if b'\\' in data:  # escaped backslashes, then escaped quotes: every quote left delimits a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(data.split(b'"')[::2]) if b'"' in data else data
    steps = outside.translate(None, _NOT_BRACKETS).translate(_NESTING)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def _check_depth(data: bytes) -> None:
    if len(data) > MAX_JSON_DEPTH and data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and json_depth(data) > MAX_JSON_DEPTH:
        raise MessageError("too-deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


_EMPTY = b"{}"  # most parent headers, metadata and contents of requests


def _loads(text: str) -> Any:
    try:
        obj, end = _scan(text, 0)
    except StopIteration:  # leading whitespace, or not JSON: let decode() handle it or say why
        return _decode(text)
    if end != len(text):  # trailing whitespace or garbage
        return _decode(text)
    return obj


def unpack(data, max_bytes: Optional[int] = None) -> Any:
    """JSON bytes to Python; MessageError (a ValueError) for anything not acceptable: invalid JSON
    or UTF-8, NaN/Infinity, nesting deeper than MAX_JSON_DEPTH, more than ``max_bytes`` bytes."""
    if type(data) is not bytes:
        data = bytes(data)
    elif data == _EMPTY:
        return {}
    if max_bytes is not None and len(data) > max_bytes:
        raise MessageError("too-large", f"{len(data)} bytes of JSON where at most {max_bytes} are accepted")
    _check_depth(data)  # (within it the C scanner cannot hit the recursion limit)
    try:
        return _loads(data.decode("utf8", "surrogateescape"))
    except MessageError:
        raise
    except ValueError as e:
        raise MessageError("bad-json", str(e)[:80]) from None


def nbytes(part) -> int:
    """Size in bytes of a message part (bytes, buffer or zmq.Frame)."""
    return len(part) if isinstance(part, bytes) else memoryview(part).nbytes


def check_part_sizes(parts, limit: Optional[int]) -> None:
    """ValueError if a part is larger than ``limit`` (the hub's ``max_message_size``; None: no limit).

    The hub refuses such a part when its size is announced, so the message would be lost without a
    word: saying so before sending is the only way to answer it."""
    if not limit:
        return
    for part in parts:
        n = nbytes(part)
        if n > limit:
            raise ValueError(f"a message part of {n} bytes is larger than the hub accepts ({limit} bytes, "
                             "HubFactory.maxmsgsize): send it in smaller pieces, or raise the limit")


def frame_bytes(frame) -> bytes:
    """bytes of a frame received with copy=True (bytes) or copy=False (zmq.Frame)."""
    if isinstance(frame, bytes):
        return frame
    b = getattr(frame, "bytes", None)
    if b is not None:
        return b
    return bytes(frame)


class Msg:
    """A parsed message; ``frames`` keeps the raw signed part for relaying."""

    __slots__ = (
        "idents", "frames", "header", "parent", "metadata", "content",
        "buffers", "msg_id", "msg_type",
    )

    def __init__(self, idents, frames, header, parent, metadata, content, buffers):
        self.idents = idents
        self.frames = frames
        self.header = header
        self.parent = parent
        self.metadata = metadata
        self.content = content
        self.buffers = buffers
        self.msg_id = header.get("msg_id")
        self.msg_type = header.get("msg_type")

    def as_dict(self) -> dict:
        return {
            "header": self.header,
            "parent_header": self.parent,
            "metadata": self.metadata,
            "content": self.content,
            "buffers": self.buffers,
            "msg_id": self.msg_id,
            "msg_type": self.msg_type,
        }


class WireSession:
    """Codec for one identity (the controller's session id) and one key."""

    def __init__(
        self,
        key: bytes = b"",
        signature_scheme: str = "hmac-sha256",
        session: Optional[str] = None,
        username: str = "hubctl",
        replay_cache: int = 65536,
        replay=None,
    ):
        if isinstance(key, str):
            key = key.encode("ascii")
        self.key = key
        self.signature_scheme = signature_scheme
        if not signature_scheme.startswith("hmac-"):
            raise ValueError(f"unsupported signature scheme {signature_scheme!r}")
        digest = signature_scheme[len("hmac-"):]
        try:
            digestmod = getattr(hashlib, digest)
        except AttributeError:
            raise ValueError(f"unknown hash {digest!r} in signature scheme") from None
        self._auth = hmac.new(key, digestmod=digestmod) if key else None
        # the OpenSSL HMAC object inside (copying it skips hmac.HMAC's Python layer); hmac.HMAC
        # falls back to a pure-Python digest where OpenSSL lacks the hash: then use it as it is
        self._mac = getattr(self._auth, "_hmac", None) or self._auth
        self.session = session or new_id()
        self.username = username
        self._counter = count()
        self._pid = os.getpid()
        # header_bytes(): the constant parts of a header, JSON-escaped once
        self._id_prefix = pack(f"{self.session}_{self._pid}_")[:-1].decode("utf8", "surrogateescape")
        self._header_mid = (',"username":' + pack(username).decode("utf8", "surrogateescape")
                            + ',"session":' + pack(self.session).decode("utf8", "surrogateescape") + ',"date":"')
        self._header_end = f'","version":"{PROTOCOL_VERSION}"}}'
        self._msg_types: dict = {}
        # what remembers accepted signatures: a ReplayCache of the last ``replay_cache`` ones, or
        # (the controller's, shared by all its sockets) a ReplayWindow that also checks dates
        self.replay = replay if replay is not None else ReplayCache(replay_cache)

    @classmethod
    def from_session(cls, s) -> "WireSession":
        """Build from a configured `jupyter_client.session.Session`."""
        return cls(
            key=s.key,
            signature_scheme=s.signature_scheme,
            session=s.session,
            username=s.username,
            replay_cache=getattr(s, "digest_history_size", 65536),
        )

    # --- signing -------------------------------------------------------
    def sign(self, parts: Sequence[bytes]) -> bytes:
        if self._mac is None:
            return b""
        h = self._mac.copy()
        h.update(b"".join(parts))  # one call: the parts of a small message cost more as calls than as a copy
        return h.hexdigest().encode("ascii")

    # --- building --------------------------------------------------------
    def new_msg_id(self) -> str:
        return f"{self.session}_{self._pid}_{next(self._counter)}"

    def header(self, msg_type: str) -> dict:
        return {
            "msg_id": self.new_msg_id(),
            "msg_type": msg_type,
            "username": self.username,
            "session": self.session,
            "date": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "version": PROTOCOL_VERSION,
        }

    def header_bytes(self, msg_type: str) -> tuple:
        """``(msg_id, packed header)``: the same JSON as ``pack(self.header(msg_type))``, faster."""
        n = next(self._counter)
        t = self._msg_types.get(msg_type)
        if t is None:
            t = self._msg_types[msg_type] = ',"msg_type":' + pack(msg_type).decode("utf8", "surrogateescape")
        date = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        text = f'{{"msg_id":{self._id_prefix}{n}"{t}{self._header_mid}{date}{self._header_end}'
        return f"{self.session}_{self._pid}_{n}", text.encode("utf8", "surrogateescape")

    def serialize(
        self,
        msg_type: str,
        content: Any = None,
        parent: Optional[dict] = None,
        metadata: Optional[dict] = None,
        buffers: Iterable = (),
        header: Optional[dict] = None,
        idents: Sequence[bytes] = (),
    ) -> list:
        # header, parent, metadata and content may each come packed already (bytes)
        if header is None:
            h = self.header_bytes(msg_type)[1]
        else:
            h = header if isinstance(header, bytes) else pack(header)
        p = parent if isinstance(parent, bytes) else (pack(parent) if parent else b"{}")
        m = metadata if isinstance(metadata, bytes) else (pack(metadata) if metadata else b"{}")
        if isinstance(content, bytes):
            c = content
        else:
            c = b"{}" if content is None or (type(content) is dict and not content) else pack(content)
        parts = [h, p, m, c]
        return [*idents, DELIM, self.sign(parts), *parts, *buffers]

    def resign(self, header: bytes, parent: bytes, metadata: bytes, content: bytes) -> bytes:
        return self.sign((header, parent, metadata, content))

    # --- parsing ---------------------------------------------------------
    @staticmethod
    def split(frames: Sequence) -> tuple:
        """(idents, rest) around the delimiter; raises MessageError."""
        if type(frames) is list:  # the delimiter received as bytes is found in C
            try:
                i = frames.index(DELIM, 0, 16)
            except ValueError:
                pass
            else:
                return frames[:i], frames[i + 1:]
        for i in range(min(len(frames), 16)):
            if frame_bytes(frames[i]) == DELIM:
                return list(frames[:i]), list(frames[i + 1:])
        raise MessageError("no-delimiter", f"{len(frames)} frames")

    def _verify(self, raw: list) -> None:
        """The signature of ``[sig, h, p, m, c]`` (bytes), with a key."""
        sig = raw[0]
        if not sig:
            raise MessageError("unsigned")
        if not hmac.compare_digest(sig, self.sign(raw[1:])):
            raise MessageError("bad-signature")

    def parse(self, frames: Sequence, content: bool = True, idents=None) -> Msg:
        """Parse a multipart message (with idents unless ``idents`` given).

        The signature is verified first; then the header is read and the message checked
        against the replay memory; only then are the other frames decoded.  A MessageError
        raised after the header was read carries it (``header``; ``parent`` too once read).
        """
        if idents is None:
            idents, parts = self.split(frames)
        else:
            parts = list(frames)
        if len(parts) < 5:
            raise MessageError("short", f"{len(parts)} frames after delimiter")
        raw = parts[:5]
        if not all(type(p) is bytes for p in raw):
            raw = [frame_bytes(p) for p in raw]
        if self._auth is not None:
            self._verify(raw)
        header = unpack(raw[1], MAX_HEADER_BYTES)
        if not isinstance(header, dict) or not isinstance(header.get("msg_id"), str) \
                or not isinstance(header.get("msg_type"), str):
            raise MessageError("bad-header")
        if self._auth is not None:
            self.replay.check(raw[0], header)
        parent = None
        try:
            parent = unpack(raw[2], MAX_HEADER_BYTES)
            if not isinstance(parent, dict):
                raise MessageError("bad-parent")
            metadata = unpack(raw[3], MAX_METADATA_BYTES)
            if not isinstance(metadata, dict):
                raise MessageError("bad-metadata")
            body = unpack(raw[4]) if content else None
            if content and not isinstance(body, dict):
                raise MessageError("bad-content")
        except MessageError as e:
            e.header, e.parent = header, parent if isinstance(parent, dict) else None
            raise
        return Msg(idents, parts, header, parent, metadata, body, parts[5:])


def new_id() -> str:
    """A session/engine id in Jupyter's ``8hex-24hex`` shape."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:]}"
