"""NVMe passthrough (``/dev/ngXnY``) over io_uring ``URING_CMD``, with the emulated driver's
command builders and status decoding (:mod:`labrig.drivers.nvme.commands`)."""

from labrig.drivers.nvmept.device import (
    NvmePassthruDevice,
    encode_uring_cmd,
    open_passthru,
    passthru_unavailable_reason,
)

__all__ = ["NvmePassthruDevice", "encode_uring_cmd", "open_passthru",
           "passthru_unavailable_reason"]
