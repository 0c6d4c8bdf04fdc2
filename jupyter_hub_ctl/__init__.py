"""jupyter_hub_ctl: interactive parallel computing for Jupyter."""

from ._version import __version__

__all__ = ["__version__", "Client"]


def __getattr__(name):
    # lazy: importing the package must stay cheap (engines start with it)
    if name == "Client":
        from .client.client import Client

        return Client
    if name in ("RemoteError", "EngineError", "CompositeError", "TaskAborted"):
        from .client import errors

        return getattr(errors, name)
    raise AttributeError(name)


def _jupyter_server_extension_points():  # enabled by jupyter-config/jupyter_server_config.d
    from .server import _jupyter_server_extension_points as points

    return points()


def load_ipython_extension(ip):  # %load_ext jupyter_hub_ctl
    from .kernel.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip):  # %unload_ext jupyter_hub_ctl
    from .kernel.magics import unload_ipython_extension as unload

    unload(ip)
