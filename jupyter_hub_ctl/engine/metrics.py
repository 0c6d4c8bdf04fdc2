"""The engine's own metrics, sampled in a thread of their own and reported to the hub.

Every ``interval`` seconds: this process's CPU use (100 = one core busy), resident
memory, number of threads and the task it is running; every few samples also the
host's load, CPU count and memory.  The report (``engine_metrics_report``, signed like
every message) goes to the hub's registration/query socket from a socket of its own, so
the thread that runs tasks never waits for it; a report the hub cannot take at once is
dropped, not queued.
"""

from __future__ import annotations

import logging
import os
import threading

import zmq

log = logging.getLogger("jupyter_hub_ctl.engine")

#: host figures go with every HOST_EVERY-th report (and the first)
HOST_EVERY = 5
REPORT_TYPE = "engine_metrics_report"


def host_figures(psutil) -> dict:
    """Load average (1 min), CPU count and memory of this host."""
    mem = psutil.virtual_memory()
    return {"load1": os.getloadavg()[0], "cpus": os.cpu_count() or 1,
            "mem_total": mem.total, "mem_used": mem.total - mem.available}


class MetricsReporter:
    """Samples this process every ``interval`` seconds and reports to the hub.

    ``engine.task`` is read as the running task: ``(msg_id, name, started epoch)`` or None.
    Changing ``interval`` takes effect at the next sample; 0 pauses the reports.
    """

    def __init__(self, engine, interval: float):
        self.engine = engine
        self.interval = interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hubctl-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        try:
            import psutil

            proc = psutil.Process()
            proc.cpu_percent(None)  # the first call starts the measurement
        except Exception as e:  # psutil missing or unusable here: no metrics, the engine runs on
            log.warning("engine metrics are off: %s", e)
            return
        engine = self.engine
        sock = engine.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)  # a hub that does not read gets the newest few, then nothing
        sock.setsockopt(zmq.RCVHWM, 4)
        try:
            sock.connect(engine.url("registration"))
            n = 0
            while not self._stop.wait(self.interval if self.interval > 0 else 1.0):
                if engine.exiting:
                    break
                while sock.poll(0):  # the hub never answers reports; anything else is discarded
                    sock.recv_multipart()
                if self.interval <= 0:
                    continue
                content = self.sample(proc)
                if n % HOST_EVERY == 0:
                    content["host_info"] = host_figures(psutil)
                n += 1
                try:
                    sock.send_multipart(engine.session.serialize(REPORT_TYPE, content), zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    pass
        except zmq.ZMQError as e:
            if e.errno != zmq.ETERM:
                log.warning("engine metrics stopped: %s", e)
        finally:
            sock.close(0)

    def sample(self, proc) -> dict:
        with proc.oneshot():
            cpu = proc.cpu_percent(None)
            rss = proc.memory_info().rss
            threads = proc.num_threads()
        task = self.engine.task
        msg_id, name, started = task if task is not None else (None, None, None)
        return {"cpu": cpu, "rss": rss, "threads": threads, "task": msg_id, "task_name": name,
                "task_started": started}
