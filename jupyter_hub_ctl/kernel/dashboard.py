"""``hub.dashboard()`` / ``%hub dashboard``: the hub dashboard in a notebook output.

The output is a MIME bundle of ``DASHBOARD_MIME`` naming the hub; the lab extension's renderer
(JupyterLab 4 and Notebook 7 both load it) shows the live dashboard there, fed by the Jupyter
server's extension, so neither this kernel nor a cell that blocks it is involved.  Frontends
without the renderer (nbclient, VS Code, a terminal) show the bundle's ``text/html`` or
``text/plain``: what the output is, and a snapshot of the hub taken when it was displayed.

The renderer asks the Jupyter server for the hub by id; the server knows the hubs whose state
files are in its runtime directory (hubs started by ``%hub start``, ``jupyter hubctl`` or the
panel on its machine), and the renderer says so plainly for any other.
"""

from __future__ import annotations

import time

from .render import clock, template, with_style

#: the MIME type the lab extension renders (labextension/src/mime.ts has the same)
DASHBOARD_MIME = "application/vnd.jupyter-hub-ctl.dashboard+json"


class Dashboard:
    """The live dashboard of hub ``hub_id`` as a notebook output; ``client`` takes the snapshot
    shown where the live view is not available."""

    def __init__(self, hub_id: str, client):
        self.hub_id = hub_id
        self.client = client

    def _snapshot(self) -> tuple:
        """The hub as the status view shows it now: (html, text)."""
        from .status import HubStatus

        status = HubStatus(self.client, hub_id=self.hub_id)
        try:
            status.refresh()
            return status.html(), status.text()
        finally:
            status.close()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        snapshot_html, snapshot_text = self._snapshot()
        taken = time.time()
        html = template("dashboard.html.j2").render(hub_id=self.hub_id, taken=taken, snapshot=snapshot_html)
        text = (f"Live dashboard of hub {self.hub_id} (shown in JupyterLab 4 and Notebook 7).\n"
                f"Snapshot at {clock(taken)}:\n{snapshot_text}")
        return {DASHBOARD_MIME: {"hub_id": self.hub_id}, "text/html": with_style(html), "text/plain": text}

    def __repr__(self) -> str:
        return f"<Dashboard of hub {self.hub_id}>"
