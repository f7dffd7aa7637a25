"""RDMA verbs driver with a pyverbs-shaped API (issue #8).

One API, two backends:

- ``emu`` drives the register-level NIC model :class:`labrig.hw.fabric.nic.NicDevice`
  through its BAR0 command queue, UAR doorbells and rings in host memory
  (``Context(device=nic)``, or ``Context(name="emu")`` for a private loopback NIC);
- ``pyverbs`` wraps real rdma-core (RDMA NICs or Soft-RoCE; ``Context(name="mlx5_0")``),
  handling pyverbs' enum-module rename between rdma-core v58 and v59.

Objects and signatures follow pyverbs: :class:`Context`, :class:`PD`, :class:`MR`,
:class:`CQ`, :class:`QP`, :class:`QPInitAttr`, :class:`QPCap`, :class:`QPAttr`,
:class:`SendWR`, :class:`RecvWR`, :class:`SGE`, :class:`WC`, and the ``IBV_*`` enums
(:mod:`labrig.drivers.verbs.enums`, also re-exported here).  Failed verbs raise
:class:`VerbsError` with rdma-core's errno; work requests that fail on the device come back as
WCs with an ``IBV_WC_*`` error status.
"""

from labrig.drivers.verbs import enums
from labrig.drivers.verbs._api import (
    CQ,
    MASK_INIT,
    MASK_RTR,
    MASK_RTS,
    MR,
    PD,
    QP,
    Context,
    connect_qps,
    poll_cq,
)
from labrig.drivers.verbs._errors import VerbsError
from labrig.drivers.verbs._registry import available_backends
from labrig.drivers.verbs._types import (
    SGE,
    WC,
    AHAttr,
    GlobalRoute,
    PortAttr,
    QPAttr,
    QPCap,
    QPInitAttr,
    RecvWR,
    SendWR,
)
from labrig.drivers.verbs.enums import *  # noqa: F403  (IBV_* names, as pyverbs.enums)

__all__ = [
    "AHAttr", "CQ", "Context", "GlobalRoute", "MASK_INIT", "MASK_RTR", "MASK_RTS", "MR", "PD",
    "PortAttr", "QP", "QPAttr", "QPCap", "QPInitAttr", "RecvWR", "SGE", "SendWR", "VerbsError",
    "WC", "available_backends", "connect_qps", "enums", "poll_cq", *enums.__all__,
]
