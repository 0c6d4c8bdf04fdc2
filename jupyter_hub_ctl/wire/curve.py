"""CurveZMQ on the peers' side: a controller's connection info names its public key
(``curve_serverkey``, Z85); engines and clients make a key pair of their own and connect
every socket as a CURVE client (ipyparallel 9's convention)."""

from __future__ import annotations

import os
from typing import Optional

import zmq


class CurveClient:
    """The key material for connecting to one encrypting controller."""

    def __init__(self, serverkey: bytes):
        self.serverkey = serverkey
        self.publickey, self.secretkey = zmq.curve_keypair()

    @classmethod
    def from_info(cls, info: dict) -> Optional["CurveClient"]:
        """From connection info (or env ``IPP_CURVE_SERVERKEY``); None if the controller does not encrypt."""
        key = info.get("curve_serverkey") or os.environ.get("IPP_CURVE_SERVERKEY")
        if not key:
            return None
        return cls(key.encode("ascii") if isinstance(key, str) else key)

    def apply(self, sock: zmq.Socket) -> zmq.Socket:
        """Make ``sock`` (not yet connected) a CURVE client of the controller."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.serverkey)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.publickey)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secretkey)
        return sock


def secure(sock: zmq.Socket, curve: Optional[CurveClient]) -> zmq.Socket:
    """``sock`` as a CURVE client when ``curve`` is given, unchanged otherwise."""
    return curve.apply(sock) if curve is not None else sock
