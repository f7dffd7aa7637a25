"""Hypothesis strategies and state machines for testing drivers and runtimes against the
device models (public API; STYLE.md section 6).

Needs the ``test`` extra (hypothesis).  Sub-modules: :mod:`labrig.testing.nvme`,
:mod:`labrig.testing.cxl`, :mod:`labrig.testing.mesh`,
:mod:`labrig.testing.verbs`.
"""

__all__: list[str] = []
from labrig.testing import nvme  # noqa: E402,F401  (NVMe strategies and state machine)
from labrig.testing import cxl  # noqa: E402,F401  (CXL strategies and state machines)
from labrig.testing import mesh  # noqa: E402,F401  (wafer-mesh strategies)
from labrig.testing import verbs  # noqa: E402,F401  (RDMA NIC / verbs state machine)
