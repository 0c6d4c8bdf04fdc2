"""An engine's watchdog (``EngineApp.watchdog``): a small process that tells the hub the moment
the engine's process ends, however it ends (``kill -9`` included), so its tasks fail or are
retried within a second instead of after the hub's heartbeat misses.  It is what ipyparallel's
nanny does for its engines, for engines that no ``cluster`` supervisor watches (those started
by hand, or by another launcher).

The engine starts it with a pipe as its stdin, writes one JSON line (where the hub's
registration socket is, the key, the engine's uuid and id) and keeps the pipe open.  The pipe
closes when the engine's process ends; the watchdog then sends a signed
``unregistration_request {id, uuid}`` (the nanny's message) and exits.  An engine that shuts
down cleanly has unregistered already; the hub ignores the second message.
"""

from __future__ import annotations

import json
import subprocess
import sys

LINGER_MS = 3000  # how long the goodbye may wait for the connection to the hub


def start(registration_url: str, key: bytes, signature_scheme: str, uuid: str, engine_id: int) -> subprocess.Popen:
    """Start the watchdog of the engine running in this process."""
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_hub_ctl.engine.watchdog"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, start_new_session=True)  # (a signal to our group spares it)
    spec = {"url": registration_url, "key": key.decode("ascii"), "signature_scheme": signature_scheme,
            "uuid": uuid, "id": engine_id}
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()  # and kept open: it closes when this process ends
    return proc


def main() -> int:
    import zmq

    from ..wire.session import WireSession

    spec = json.loads(sys.stdin.buffer.readline())
    sys.stdin.buffer.read()  # returns when the engine's process has ended
    session = WireSession(key=spec["key"].encode("ascii"), signature_scheme=spec["signature_scheme"])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.connect(spec["url"])
    sock.send_multipart(session.serialize("unregistration_request", {"id": spec["id"], "uuid": spec["uuid"]}))
    sock.close()
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
