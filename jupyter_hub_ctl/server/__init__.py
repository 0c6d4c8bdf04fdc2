"""jupyter_hub_ctl.server: the Jupyter server extension (REST API + events)."""


def _jupyter_server_extension_points():
    from .app import HubCtlExtension

    return [{"module": "jupyter_hub_ctl.server", "app": HubCtlExtension}]
