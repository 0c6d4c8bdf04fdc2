"""Errors raised by the cluster API; each names what went wrong in words a person can act on."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """Base class: a hub could not be started, found, changed or stopped."""


class InvalidHubId(ClusterError, ValueError):
    """A hub id that cannot name a hub (it becomes part of file names)."""


class HubNotFound(ClusterError, LookupError):
    """No state file exists for the requested hub id."""


class HubExists(ClusterError):
    """A live hub already uses the requested id."""


class HubNotRunning(ClusterError):
    """The hub's controller is not running (stopped, failed, or gone)."""


class HubStopping(HubNotRunning):
    """The hub is being stopped: it takes no other request (a stop always wins)."""


class LauncherNotFound(ClusterError, LookupError):
    """No launcher is registered under the requested name."""


class StartError(ClusterError):
    """Starting a hub or engines failed; ``reason`` is a short code, ``log_tail`` the evidence."""

    reason = "start failed"

    def __init__(self, message: str, log_tail: str = "", **details):
        self.message = message
        self.log_tail = log_tail
        self.details = details
        super().__init__(self.full_message())

    def full_message(self) -> str:
        if not self.log_tail.strip():
            return self.message
        tail = "\n".join("    " + line for line in self.log_tail.rstrip().splitlines())
        return f"{self.message}\n  last log lines:\n{tail}"


class ControllerExited(StartError):
    reason = "controller exited"


class ConnectionFileTimeout(StartError):
    reason = "no connection file"


class EngineStartFailed(StartError):
    reason = "engines crashed on start"


class RegistrationTimeout(StartError):
    reason = "registration timeout"


class LaunchFailed(StartError):
    reason = "launch failed"


class StartCancelled(StartError):
    """A stop was requested while the hub was starting: everything launched so far was stopped."""

    reason = "stopped while starting"
