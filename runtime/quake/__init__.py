"""Quake (Mohoney et al., OSDI'25): adaptive partitioned vector search for dynamic workloads.

Public API: :class:`QuakeIndex` with ``build``/``add``/``remove``/``search``/``maintenance``/
``add_level``/``save``/``load`` over a multi-level partition hierarchy (``QuakeConfig.levels``);
:class:`QuakeParams`; :class:`QuakeConfig`; the cost model pieces; the workload generators
used by ``labrig reproduce quake``.  The query path (partition scans, the APS loop) is a small
cffi C kernel built at first use (``_kernel``).
"""

from labrig.runtime.quake._betainc import betainc, cap_fraction
from labrig.runtime.quake._cost import AccessTracker, CostModel, ScanLatency
from labrig.runtime.quake._index import MaintenanceReport, QuakeIndex
from labrig.runtime.quake._params import QuakeConfig, QuakeParams
from labrig.runtime.quake._persist import QuakeFileError
from labrig.runtime.quake._workload import Op, Workload, drifting_workload, month_workload

__all__ = [
    "AccessTracker",
    "CostModel",
    "MaintenanceReport",
    "Op",
    "QuakeConfig",
    "QuakeFileError",
    "QuakeIndex",
    "QuakeParams",
    "ScanLatency",
    "Workload",
    "betainc",
    "cap_fraction",
    "drifting_workload",
    "month_workload",
]
