"""Hypothesis strategies and state machines for testing drivers and runtimes against the
device models (public API; STYLE.md section 6)."""

__all__: list[str] = []
from labrig.testing import cxl  # noqa: E402,F401  (CXL strategies and state machines)
from labrig.testing import mesh  # noqa: E402,F401  (wafer-mesh strategies)
