"""jupyter_hub_ctl: interactive parallel computing for Jupyter.

``import jupyter_hub_ctl as ipp`` gives the names ipyparallel code uses (``ipp.Client``,
``ipp.Reference``, ``ipp.require``, ``ipp.error``, ...).  They are imported when first used,
so importing the package stays cheap (engines start with it).
"""

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

from ._version import __version__

# public name -> module that defines it (imported on first use)
_LAZY = {
    "Client": "client.client",
    "AsyncResult": "client.asyncresult", "AsyncMapResult": "client.mapresult",
    "AsyncHubResult": "client.hubresult",
    "View": "client.views", "LoadBalancedView": "client.views", "DirectView": "client.directview",
    "BroadcastView": "client.directview", "ViewExecutor": "client.executor",
    "RemoteFunction": "client.remotefunction", "ParallelFunction": "client.remotefunction",
    "remote": "client.remotefunction", "parallel": "client.remotefunction", "interactive": "client.remotefunction",
    "Dependency": "client.dependency", "depend": "client.dependency", "dependent": "client.dependency",
    "require": "client.dependency",
    "Reference": "client.ops",
    "Cluster": "cluster",
    **{name: "client.errors" for name in (
        "RemoteError", "EngineError", "CompositeError", "TaskAborted", "TaskTimeout", "NoEnginesRegistered",
        "UnmetDependency", "ImpossibleDependency", "DependencyTimeout", "InvalidDependency", "KernelError",
        "IPythonError", "TaskRejectError", "HubError")},
}

__all__ = ["__version__", "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", "error", "register_joblib_backend",
           *_LAZY]


def __getattr__(name):
    import importlib

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name == "error":
        return importlib.import_module(f"{__name__}.error")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def register_joblib_backend(name: str = "ipyparallel", make_default: bool = False, view=None) -> None:
    """Make a load-balanced view joblib's backend ``name`` (default: a view of the default profile's hub,
    ``Client().load_balanced_view()``)."""
    if view is None:
        from .client.client import Client

        view = Client().load_balanced_view()
    view.register_joblib_backend(name, make_default)


def _jupyter_server_extension_points():  # enabled by jupyter-config/jupyter_server_config.d
    from .server import _jupyter_server_extension_points as points

    return points()


def load_ipython_extension(ip):  # %load_ext jupyter_hub_ctl
    from .kernel.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip):  # %unload_ext jupyter_hub_ctl
    from .kernel.magics import unload_ipython_extension as unload

    unload(ip)
