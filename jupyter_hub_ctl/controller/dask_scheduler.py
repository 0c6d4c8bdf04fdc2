"""``python -m jupyter_hub_ctl.controller.dask_scheduler``: a hub's dask.distributed scheduler.

The controller starts it beside itself for ``become_dask`` (a process of its own, so dask's work
never holds up the hub's loop, and a scheduler in trouble cannot take the hub with it).  Protocol
on the pipes: the controller writes the ``distributed.Scheduler`` keyword arguments as one JSON
line to stdin; the scheduler answers with one JSON line on stdout, ``{address, ip, port,
dashboard_link, pid}`` once it listens or ``{error}``; then it runs until its stdin closes.  The
controller closes it to stop the scheduler, and a controller that dies closes it too, so no
scheduler outlives its hub.  dask's own messages go to stderr (the controller's log).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(kwargs: dict) -> None:
    from distributed import Scheduler

    scheduler = await Scheduler(**kwargs)
    try:
        link = scheduler.dashboard_link if "dashboard" in scheduler.services else None
    except Exception:  # no dashboard (bokeh missing) or no address to show
        link = None
    _say({"address": scheduler.address, "ip": scheduler.ip, "port": scheduler.port, "dashboard_link": link,
          "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait_for_eof, name="stdin-eof", daemon=True).start()
    await closed.wait()
    await scheduler.close()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the controller: it stops us
    try:
        kwargs = json.loads(sys.stdin.buffer.readline() or b"{}")
        if not isinstance(kwargs, dict):
            raise TypeError("the scheduler arguments must be a JSON object")
        asyncio.run(_serve(kwargs))
    except Exception as e:
        _say({"error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
