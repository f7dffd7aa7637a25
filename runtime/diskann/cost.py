"""Host compute time of the searches, for emulated devices whose clock does not see the CPU.

On a real device the searches' latency is wall time and includes their computation.  On
``emu:nvme`` the clock is virtual and only the device moves it, so a search declares what its
CPU work would cost through :meth:`BlockDevice.spend` (a no-op on real devices).  Without this
PipeANN's point — overlapping distance computations with reads instead of alternating them —
would not show at all.  The model counts the work the search really did (distances, neighbour
probes, table entries, reads) and prices each unit; the prices are assumptions about one modern
x86 core, stated here and configurable, not measurements of this machine, so virtual latencies
stay the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HostCost"]


@dataclass(frozen=True)
class HostCost:
    """Nanoseconds per unit of host work ([derived] estimates for one ~3 GHz AVX2 core).

    Attributes
    ----------
    exact_ns_per_dim : float
        Full-precision distance, per dimension (AVX2 does 8 float lanes per cycle; loads and
        conversion from uint8/int8 bring it to ~0.1 ns).
    pq_ns_per_chunk : float
        One ADC table lookup-and-add per code byte (DiskANN's scalar ``pq_dist_lookup``).
    fetch_ns : float
        A dependent random DRAM access: a PQ code or an in-memory vector of a neighbour
        (typical idle DRAM latency is 80-100 ns).
    visit_ns : float
        Probing the visited set and the candidate pool for one neighbour id.
    table_ns_per_entry : float
        Building the ADC table: 256 x dim subtract-square-accumulate, vectorized.
    io_ns : float
        Host CPU per read issued and reaped (an ``io_uring_enter`` submit and a CQE reap).
    """

    exact_ns_per_dim: float = 0.1
    pq_ns_per_chunk: float = 1.0
    fetch_ns: float = 80.0
    visit_ns: float = 10.0
    table_ns_per_entry: float = 0.25
    io_ns: float = 1000.0

    def exact(self, dim: int, count: int = 1) -> float:
        return count * dim * self.exact_ns_per_dim

    def pq(self, n_chunks: int, count: int) -> float:
        return count * (n_chunks * self.pq_ns_per_chunk + self.fetch_ns)

    def table(self, dim: int) -> float:
        return 256 * dim * self.table_ns_per_entry

    def memory_search(self, dim: int, dist_comps: int, probes: int) -> float:
        """An in-memory graph search: exact distances on vectors fetched from DRAM."""
        return dist_comps * (dim * self.exact_ns_per_dim + self.fetch_ns) + probes * self.visit_ns
