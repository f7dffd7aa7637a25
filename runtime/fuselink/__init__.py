"""FuseLink (OSDI'25, Ren et al.): GPU-to-GPU transfers between servers relayed through peer
GPUs over NVLink to idle NICs, behind a NCCL-net-shaped API; plus the nearest-NIC baseline.
See :mod:`labrig.runtime.fuselink.net` for the data path and the choices made."""

from labrig.runtime.fuselink.monitor import MONITOR_TIMEOUT_NS, NicMonitor
from labrig.runtime.fuselink.net import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_SLOTS,
    POLICIES,
    FuseLinkNet,
    ListenComm,
    MrHandle,
    RecvComm,
    Request,
    SendComm,
    ServerDevices,
)

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_SLOTS", "MONITOR_TIMEOUT_NS", "POLICIES",
           "FuseLinkNet", "ListenComm", "MrHandle", "NicMonitor", "RecvComm", "Request", "SendComm",
           "ServerDevices"]
