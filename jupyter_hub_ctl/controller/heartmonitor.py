"""Heartbeat monitor: pings engines and notices who answers and who stops.

It runs in its own thread with its own sockets, waiting in ``zmq.Poller``
(which releases the GIL), so slow work on the Hub's loop cannot delay pings or
make live engines look dead.  Results go back to the Hub's loop with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

import zmq
from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from .sockets import TINY_MSGSIZE, bound_port

STARTUP_ECHO = 0.1  # seconds between repeats of the first ping while the controller starts


class HeartMonitor(LoggingConfigurable):
    """Ping PUB + pong ROUTER, evaluated once per ``period``."""

    period = Integer(
        3000,
        config=True,
        help="Milliseconds between heartbeats (the ``--ping`` option). Engines are told this value.",
    )
    max_heartmonitor_misses = Integer(
        10,
        config=True,
        help="An engine that misses more than this many consecutive heartbeats is declared dead.",
    )
    debug = Bool(False, config=True, help="Log every beat at debug level.")
    grace = Float(
        0.0,
        config=True,
        help="Extra seconds of silence tolerated after the miss threshold before reporting a failure.",
    )

    def __init__(
        self,
        context: zmq.Context,
        policy,
        ping_url: str,
        pong_url: str,
        on_new: Callable,
        on_failed: Callable,
        loop=None,
        drops=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.context = context
        self.drops = drops  # a DropLog: pongs from unknown hearts, stale or malformed pongs
        self.ping_url = ping_url
        self.pong_url = pong_url
        self.on_new = on_new
        self.on_failed = on_failed
        self.loop = loop
        self.hearts: dict = {}  # uuid bytes -> consecutive misses
        # the hearts whose pongs count: engines registered, registering, or that may come back
        # (kept by the Hub; set operations are atomic, so it is shared without a lock)
        self.known: set = set()
        self.responses: set = set()
        self.last_seen: dict = {}  # uuid bytes -> monotonic time of last good pong
        self.lifetime = 0.0
        self.last_ping = b""
        self.prev_ping = b""
        self.beats = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start_time = time.monotonic()
        self.instance = os.urandom(6).hex()
        # bind in the caller's thread so ports are known (and errors surface) at once;
        # the sockets are used only by the monitor thread afterwards.
        self.pinger = policy.pub(context, ping_url)
        self.ponger = policy.router(context, pong_url, maxmsgsize=TINY_MSGSIZE)

    @property
    def ping_port(self) -> int:
        return bound_port(self.pinger)

    @property
    def pong_port(self) -> int:
        return bound_port(self.ponger)

    def beating(self, uuid: bytes) -> bool:
        """Whether ``uuid`` is a heart currently answering."""
        return uuid in self.hearts

    def forget(self, uuid: bytes) -> None:
        """Stop tracking a heart (called from the Hub's thread; dict ops are atomic)."""
        self.hearts.pop(uuid, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hubctl-heartmonitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _report(self, fn: Callable, hearts: list) -> None:
        if not hearts:
            return
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(fn, hearts)
            except RuntimeError:  # loop closed during shutdown
                pass
        else:
            fn(hearts)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.ponger, zmq.POLLIN)
        period = self.period / 1000.0
        next_beat = time.monotonic()
        next_echo = next_beat
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self.beat()
                    next_beat = max(next_beat + period, now + period / 2)
                    next_echo = now + STARTUP_ECHO
                elif now >= next_echo and now - self._start_time < period and self.last_ping:
                    # during the first period, repeat the current ping every STARTUP_ECHO seconds:
                    # engines (re)connecting to a just-started controller answer within a fraction
                    # of a period (a restart takes them back at once); misses are only counted
                    # by beat(), so this changes no engine's standing
                    self.pinger.send(self.last_ping)
                    next_echo = now + STARTUP_ECHO
                wake = min(next_beat, next_echo) if now - self._start_time < period else next_beat
                timeout = max(0.0, min(wake - time.monotonic(), 0.25))
                events = dict(poller.poll(timeout * 1000))
                if self.ponger in events:
                    self._drain_pongs()
        except zmq.ZMQError as e:
            if e.errno != zmq.ETERM:
                self.log.exception("heart monitor stopped by an error")
        finally:
            self.pinger.close(0)
            self.ponger.close(0)

    def _dropped(self, reason: str) -> None:
        if self.drops is not None:
            self.drops.drop("hb_pong", reason)

    def _drain_pongs(self) -> None:
        while True:
            try:
                frames = self.ponger.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                self._dropped("malformed")
                continue
            ident, payload = frames
            if ident not in self.known:
                self._dropped("unknown-heart")  # not an engine the Hub accepted: never a heartbeat
                continue
            if payload == self.last_ping or (payload == self.prev_ping and payload):
                self.responses.add(ident)
                self.last_seen[ident] = time.monotonic()
                if ident not in self.hearts:
                    # a heart seen for the first time (or again after failing): report it now,
                    # not at the next beat, so registrations and restores finish within a period
                    self.hearts[ident] = 0
                    self._report(self.on_new, [ident])
            else:
                self._dropped("stale")
                if self.debug:
                    self.log.debug("stale or unexpected pong from %r", ident[:40])

    def beat(self) -> None:
        """Evaluate the last round of answers, then send the next ping."""
        self.beats += 1
        responders = self.responses
        self.responses = set()
        hearts = self.hearts
        new = [u for u in responders if u not in hearts]
        failed = []
        for uuid in list(hearts):
            if uuid in responders:
                hearts[uuid] = 0
                continue
            misses = hearts.get(uuid, 0) + 1
            hearts[uuid] = misses
            if misses > self.max_heartmonitor_misses:
                silent = time.monotonic() - self.last_seen.get(uuid, 0.0)
                if silent >= self.grace:
                    failed.append(uuid)
        for uuid in failed:
            hearts.pop(uuid, None)
            self.last_seen.pop(uuid, None)
        for uuid in new:
            hearts[uuid] = 0
        if self.debug:
            self.log.debug("beat %d: %d hearts, %d new, %d failed", self.beats, len(hearts), len(new), len(failed))
        self._report(self.on_new, new)
        self._report(self.on_failed, failed)
        if self.drops is not None:
            self.drops.tick()
        self.prev_ping = self.last_ping
        self.lifetime = time.monotonic() - self._start_time
        # uptime, then this run's id: engines of ours notice a restarted controller by the id
        self.last_ping = f"{self.lifetime:.6f}:{self.instance}".encode("ascii")
        self.pinger.send(self.last_ping)

