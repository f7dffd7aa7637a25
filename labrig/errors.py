"""Exception hierarchy shared by every labrig layer.

Devices never raise these because of what a driver wrote (DESIGN.md, "The device contract"):
a device answers with a status.  Drivers and backends turn statuses and OS errors into these
classes at their boundary, so users catch one family of exceptions.  Messages name the
parameter, the value and what was allowed, after numpy's ``AxisError`` and QEMU's
``nvme_check_params``.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "DeviceError",
    "LabrigError",
    "UsageError",
]


class LabrigError(Exception):
    """Base class of every error labrig raises on purpose."""


class ConfigError(LabrigError, ValueError):
    """A configuration value is outside what the device or backend accepts.

    Raised where the config is constructed, e.g.
    ``NvmeConfig.num_queues=0: must be in 1..65535``.
    """

    def __init__(self, owner: str, field: str, value: object, allowed: str) -> None:
        self.owner = owner
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{owner}.{field}={value!r}: {allowed}")


class UsageError(LabrigError, ValueError):
    """A caller passed a bad argument (device string, buffer, CLI option, data file)."""


class BackendUnavailable(LabrigError):
    """A backend cannot run on this machine; ``reason`` says why (tests skip with it)."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__(f"{backend}: {reason}")


class BackendError(LabrigError, OSError):
    """An OS-level failure of a real backend, carrying the errno (after pyverbs' RDMA errors)."""

    def __init__(self, message: str, error_code: int = 0) -> None:
        self.error_code = error_code
        text = message
        if error_code:
            name = _errno.errorcode.get(error_code, str(error_code))
            text = f"{message}: [{name}] {os.strerror(error_code)}"
        super().__init__(error_code or None, text)
        self.message = text

    def __str__(self) -> str:
        return self.message


class DeviceError(LabrigError):
    """A command completed with an error status.

    ``status`` is the device family's status object (for NVMe an ``NvmeStatus`` whose ``str``
    is the spec name); ``retryable`` is false when the device set Do Not Retry.
    """

    def __init__(self, status: object, message: str = "", *, retryable: bool = False) -> None:
        self.status = status
        self.retryable = retryable
        text = f"{message}: {status}" if message else str(status)
        super().__init__(text)
