"""labrig: emulated AI-and-storage hardware with real-hardware backends.

Sub-packages (DESIGN.md, "Layers"; arrows point down only):

- :mod:`labrig.tools`   -- the ``labrig`` CLI: devices, bench, reproduce
- :mod:`labrig.runtime` -- the papers' algorithms, written against driver interfaces
- :mod:`labrig.drivers` -- poll-mode drivers with emulated and real backends
- :mod:`labrig.hw`      -- device models on a virtual-time platform
- :mod:`labrig.testing` -- hypothesis strategies and state machines for users' own drivers
"""

from labrig.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DeviceError,
    LabrigError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeviceError",
    "LabrigError",
    "UsageError",
    "__version__",
]
