"""ipyparallel's ``error`` module under this package's name: ``from jupyter_hub_ctl import error``.

The exceptions are defined in ``jupyter_hub_ctl.client.errors`` (see its docstring for the hierarchy).
"""

from .client.errors import *  # noqa: F401,F403 - this module is those names
from .client.errors import __all__  # noqa: F401
