"""Errors of the NVMe driver, under the shared :mod:`labrig.errors` hierarchy.

- :class:`NvmeCommandError` -- a command completed with an error status (a
  :class:`~labrig.errors.DeviceError` carrying the :class:`~labrig.hw.nvme.spec.NvmeStatus`;
  ``retryable`` is the inverse of Do Not Retry, after SPDK ``nvme_completion_is_retry``).
- :class:`NvmeInitError` -- the controller did not come up; names the init state and the cause.
- :class:`NvmeControllerError` -- the controller failed after init (CSTS.CFS, device gone, lost
  commands), so outstanding commands will never complete.
"""

from __future__ import annotations

from labrig.errors import DeviceError, LabrigError
from labrig.hw.nvme.spec import NvmeStatus

__all__ = ["NvmeCommandError", "NvmeControllerError", "NvmeInitError"]


class NvmeCommandError(DeviceError):
    """A command completed with a non-success status.

    Attributes
    ----------
    status : NvmeStatus
        SCT/SC plus More and DNR; ``str(status)`` is the spec name.
    retryable : bool
        ``not status.dnr``.
    opc, sqid, cid : int
        Which command failed.
    dw0 : int
        Completion DW0 (command specific).
    """

    def __init__(self, status: NvmeStatus, what: str, *, opc: int = 0, sqid: int = 0,
                 cid: int = 0, dw0: int = 0) -> None:
        super().__init__(status, what, retryable=not status.dnr)
        self.opc = opc
        self.sqid = sqid
        self.cid = cid
        self.dw0 = dw0


class NvmeInitError(LabrigError):
    """Controller initialization failed.

    The message reads ``STATE: cause``, e.g. ``ENABLE_WAIT_FOR_READY_1: CSTS.CFS=1 (controller
    fatal status) after CC.EN=1``.

    Attributes
    ----------
    state : str
        Name of the :class:`~labrig.drivers.nvme.controller.InitState` that failed.
    cause : str
        What went wrong.
    status : NvmeStatus or None
        The completion status when an admin command failed.
    """

    def __init__(self, state: str, cause: str, status: NvmeStatus | None = None) -> None:
        self.state = state
        self.cause = cause
        self.status = status
        super().__init__(f"{state}: {cause}")


class NvmeControllerError(LabrigError):
    """The controller stopped answering (fatal status, removed, or commands lost)."""
