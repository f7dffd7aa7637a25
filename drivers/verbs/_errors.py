"""Errors of the verbs driver, shared by both backends."""

from __future__ import annotations

from labrig.errors import BackendError

__all__ = ["VerbsError"]


class VerbsError(BackendError):
    """A verbs call failed, with the errno rdma-core would report (after pyverbs'
    ``PyverbsRDMAError``).  ``status`` is the NIC's command status code on the emulator
    (e.g. ``CmdStatus.BAD_QP_STATE_ERR`` for an illegal QP transition), else ``None``."""

    def __init__(self, message: str, error_code: int = 0, *, status: int | None = None) -> None:
        super().__init__(message, error_code)
        self.status = status
