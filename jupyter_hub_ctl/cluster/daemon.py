"""The background owner of a hub started by ``jupyter hubctl start``.

``python -m jupyter_hub_ctl.cluster.daemon --hub-id ID --config-json JSON`` runs detached
(its own session, output in ``<profile>/log/hubctl-daemon-<id>.log``).  It adopts the state
file the CLI claimed, starts the hub through ``Cluster``, supervises it (engine restarts,
controller exit), and stops it on SIGTERM/SIGINT/SIGHUP or when a tool sets
``stop_requested`` in the state file, also while it starts.  It exits 0 after a clean stop
(also one requested during start-up), 1 if the hub failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from traitlets.config import Config

from .cluster import Cluster
from .errors import ClusterError, StartCancelled


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_hub_ctl.cluster.daemon")
    parser.add_argument("--hub-id", required=True)
    parser.add_argument("--config-json", default="{}", help="traitlets config as JSON ({'Cluster': {...}, ...})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s hubctl-daemon %(levelname)s %(message)s",
                        stream=sys.stderr)
    config = Config(json.loads(args.config_json))
    cluster = Cluster(config=config, cluster_id=args.hub_id)
    cluster.log = logging.getLogger("hubctl-daemon")
    cluster._adopt = True
    cluster.stop_on_exit = True

    stop = threading.Event()
    starting = [True]

    def on_signal(signum, frame):
        stop.set()
        if starting[0]:
            raise KeyboardInterrupt  # aborts start_sync, which cleans up before re-raising

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        cluster.start_sync()
    except KeyboardInterrupt:
        cluster.log.info("start of hub %s interrupted", args.hub_id)
        return 1
    except StartCancelled as e:
        cluster.log.info("%s", e)
        return 0
    except ClusterError as e:
        cluster.log.error("%s", e)
        return 1
    finally:
        starting[0] = False
    cluster.log.info("hub %s running (%d engines); supervising", args.hub_id, cluster.n)
    while not stop.wait(0.25):
        if cluster._ended.is_set():
            break
    if not cluster._ended.is_set():
        cluster.log.info("stopping hub %s", args.hub_id)
        cluster.stop_sync()
    record_failed = cluster._ended.is_set() and not stop.is_set() and cluster._controller.returncode not in (0, None)
    return 1 if record_failed else 0


if __name__ == "__main__":
    sys.exit(main())
