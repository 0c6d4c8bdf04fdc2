"""jupyter_hub_ctl.cluster: hubs as managed objects.

``Cluster`` starts, supervises, scales and stops a hub; ``list_hubs``, ``find_hub`` and
``clean_stale`` read the state files every tool shares (see ``state``).
"""

from .cluster import Cluster, find_hub, random_hub_id
from .errors import (
    ClusterError, ConnectionFileTimeout, ControllerExited, EngineStartFailed, HubExists, HubNotFound,
    HubNotRunning, HubStopping, InvalidHubId, LauncherNotFound, LaunchFailed, RegistrationTimeout, StartCancelled,
    StartError,
)
from .launchers.base import describe_launchers, launcher_class, launcher_names
from .state import clean_stale, get_hub, list_hubs, state_dir

__all__ = [
    "Cluster", "find_hub", "list_hubs", "get_hub", "clean_stale", "state_dir", "random_hub_id",
    "launcher_class", "launcher_names", "describe_launchers",
    "ClusterError", "StartError", "ControllerExited", "ConnectionFileTimeout", "EngineStartFailed",
    "RegistrationTimeout", "LaunchFailed", "StartCancelled", "HubExists", "HubNotFound", "HubNotRunning",
    "HubStopping", "InvalidHubId", "LauncherNotFound",
]
