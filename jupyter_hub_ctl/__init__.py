"""jupyter_hub_ctl: interactive parallel computing for Jupyter."""

from ._version import __version__

__all__ = ["__version__"]
