"""The floor of a hub's CPU per load-balanced task: relays that do nothing but relay.

A load-balanced task crosses the hub twice: the request from the client to an engine, the
reply back.  This measures what the cheapest possible relays cost per task on this machine,
with the messages a task really has (eight small frames after the routing ids) over TCP on
loopback, everything else left out (no signature check, no parsing, no records, no scheduling):

* ``python``: one Python thread, two ROUTER sockets, ``recv_multipart`` and ``send_multipart``
  with the routing ids swapped (what any Python hub does at least);
* ``c``: ``zmq.proxy`` between a ROUTER and a DEALER (libzmq's own device; nothing in Python).

A client process keeps ``--window`` requests in flight (as our scheduler does when it sends short
tasks ahead) and an engine process answers each at once.  The relay process's CPU (all its
threads: the relaying one and libzmq's I/O thread) divided by the tasks is the figure, next to
our controller's CPU per task from ``stack_vs_ipyparallel.py``.

    python benchmarks/relay_floor.py --tasks 20000 --window 16
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time

import zmq

FRAMES = [b"<IDS|MSG>", b"0" * 64, b"{}" * 60, b"{}", b"{}" * 20, b"{}", b"\x80" * 90]


def engine(url: str, tasks: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(url)
    s.send_multipart([b"hello"])  # tells the relay this engine's routing id
    for _ in range(tasks):
        s.send_multipart(s.recv_multipart())
    s.close(0)
    ctx.term()


def client(url: str, tasks: int, window: int, ready, done) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(url)
    ready.wait()
    sent = 0
    for _ in range(min(window, tasks)):
        s.send_multipart(FRAMES)
        sent += 1
    for _ in range(tasks):
        s.recv_multipart()
        if sent < tasks:
            s.send_multipart(FRAMES)
            sent += 1
    done.set()
    s.close(0)
    ctx.term()


def python_relay(front, back, tasks: int) -> None:
    engine_id = back.recv_multipart()[0]
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    replies = 0
    while replies < tasks:
        for sock, _ in poller.poll(5000):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if sock is front:  # [client, ...] -> [engine, client, ...]
                    back.send_multipart([engine_id, *frames])
                else:  # [engine, client, ...] -> [client, engine, ...]
                    front.send_multipart([frames[1], frames[0], *frames[2:]])
                    replies += 1


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def run(kind: str, tasks: int, window: int) -> dict:
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.ROUTER if kind == "python" else zmq.DEALER)
    fport = front.bind_to_random_port("tcp://127.0.0.1")
    bport = back.bind_to_random_port("tcp://127.0.0.1")
    mp = multiprocessing.get_context("spawn")
    ready, done = mp.Event(), mp.Event()
    procs = [mp.Process(target=engine, args=(f"tcp://127.0.0.1:{bport}", tasks)),
             mp.Process(target=client, args=(f"tcp://127.0.0.1:{fport}", tasks, window, ready, done))]
    for p in procs:
        p.start()
    control = None
    try:
        if kind == "c":
            back.recv_multipart()  # the engine's hello
            control = ctx.socket(zmq.PAIR)
            control.bind("inproc://relay-control")
            steer = ctx.socket(zmq.PAIR)
            steer.connect("inproc://relay-control")
            device = threading.Thread(target=zmq.proxy_steerable, args=(front, back, None, steer))
        c0, t0 = cpu(), time.perf_counter()
        ready.set()
        if kind == "python":
            python_relay(front, back, tasks)
        else:
            device.start()
            if not done.wait(600):
                raise RuntimeError("the client did not get every reply within 600 s")
        dt, used = time.perf_counter() - t0, cpu() - c0
        return {"kind": kind, "tasks_per_s": tasks / dt, "relay_us_per_task": 1e6 * used / tasks}
    finally:
        if control is not None:
            control.send(b"TERMINATE")
            device.join(10)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        ctx.destroy(linger=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--window", type=int, default=16, help="requests the client keeps in flight")
    p.add_argument("--repeat", type=int, default=3)
    opts = p.parse_args(argv)
    rows = []
    for r in range(opts.repeat):
        for kind in ("python", "c") if r % 2 == 0 else ("c", "python"):
            out = run(kind, opts.tasks, opts.window)
            rows.append(out)
            print(f"round {r + 1} {kind:6}: {out['tasks_per_s']:8.0f} tasks/s, "
                  f"relay CPU {out['relay_us_per_task']:6.1f} us per task", flush=True)
    for kind in ("python", "c"):
        us = sorted(x["relay_us_per_task"] for x in rows if x["kind"] == kind)
        print(f"median {kind:6}: relay CPU {us[len(us) // 2]:.1f} us per task "
              f"(two messages in, two out), window {opts.window}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
