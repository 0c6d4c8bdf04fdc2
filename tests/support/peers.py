"""Raw ZeroMQ peers speaking the wire protocol with jupyter_client's Session."""

from __future__ import annotations

import zmq


class Peer:
    """A DEALER speaking to one controller socket with a jupyter_client Session."""

    def __init__(self, ctx, url, session, identity=None):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(url)
        self.session = session

    def send(self, msg_type, content=None, **kw):
        return self.session.send(self.sock, msg_type, content=content or {}, **kw)

    def recv(self, timeout=5.0):
        if not self.sock.poll(timeout * 1000):
            raise TimeoutError("no reply")
        idents, msg = self.session.feed_identities(self.sock.recv_multipart())
        return self.session.deserialize(msg)

    def request(self, msg_type, content=None, timeout=5.0, **kw):
        sent = self.send(msg_type, content, **kw)
        reply = self.recv(timeout)
        assert reply["parent_header"].get("msg_id") == sent["header"]["msg_id"]
        return reply

    def close(self):
        self.sock.close(0)
