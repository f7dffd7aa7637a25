"""Quake's cost model (OSDI'25 §4.1): C = Σ_j A_j · λ(s_j).

``A_j`` is the fraction of the last W queries that scanned partition j (:class:`AccessTracker`),
``λ(s)`` the latency of scanning s vectors, profiled on the running machine at build time
(:class:`ScanLatency`).  :class:`CostModel` holds Eq. 4-7: exact and estimated deltas of a split
and of a merge (delete).  An action is taken only when ΔC < -τ.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["AccessTracker", "CostModel", "ScanLatency", "PROFILE_SIZES"]

PROFILE_SIZES = (1, 4, 16, 64, 256, 1024, 4096, 16384)   # public code's grid, capped for build time
PROFILE_TRIALS = 5
PROFILE_MIN_ITEMS = 4096   # vectors scanned per timed trial (small sizes are repeated)


class ScanLatency:
    """λ(s): scan latency in seconds of a partition of s vectors.

    Linear interpolation on a profiled grid and linear extrapolation from the last two (or
    first two) grid points outside it, as the public ``ListScanLatencyEstimator`` does.
    """

    def __init__(self, sizes: Sequence[float], seconds: Sequence[float]) -> None:
        s = np.asarray(sizes, dtype=np.float64)
        t = np.asarray(seconds, dtype=np.float64)
        if s.ndim != 1 or s.shape != t.shape or s.size < 2 or np.any(np.diff(s) <= 0):
            raise ValueError("ScanLatency: need >= 2 strictly increasing sizes with one time each")
        self.sizes, self.seconds = s, t
        # plain lists: maintenance evaluates λ ~10^5 times per pass, one scalar at a time,
        # and bisect on a list is an order of magnitude cheaper than np.interp on a scalar
        self._s, self._t = s.tolist(), t.tolist()

    def __call__(self, size: float) -> float:
        s, t = self._s, self._t
        if size > s[-1]:
            return t[-1] + (size - s[-1]) * (t[-1] - t[-2]) / (s[-1] - s[-2])
        if size < s[0]:
            return max(0.0, t[0] + (size - s[0]) * (t[1] - t[0]) / (s[1] - s[0]))
        i = max(1, bisect.bisect_left(s, size))
        return t[i - 1] + (size - s[i - 1]) * (t[i] - t[i - 1]) / (s[i] - s[i - 1])

    def many(self, sizes: NDArray[np.floating]) -> NDArray[np.float64]:
        """λ of every entry of ``sizes`` (any shape), same rule as ``__call__``."""
        x = np.asarray(sizes, np.float64)
        s, t = self.sizes, self.seconds
        out = np.interp(x, s, t)
        hi, lo = x > s[-1], x < s[0]
        out[hi] = t[-1] + (x[hi] - s[-1]) * (t[-1] - t[-2]) / (s[-1] - s[-2])
        out[lo] = np.maximum(0.0, t[0] + (x[lo] - s[0]) * (t[1] - t[0]) / (s[1] - s[0]))
        return out

    @classmethod
    def profile(cls, scan: Callable[[NDArray[np.float32], NDArray[np.float32]], object], d: int,
                *, sizes: Sequence[int] = PROFILE_SIZES, trials: int = PROFILE_TRIALS,
                seed: int = 0, prepared: bool = False) -> ScanLatency:
        """Time ``scan(query (1, d), vectors (s, d))`` on random data; median of ``trials``.

        With ``prepared``, ``scan(q, x)`` returns a zero-argument callable and only that is
        timed (set-up such as building C pointers stays outside the measurement).  Small
        sizes are repeated until about ``PROFILE_MIN_ITEMS`` vectors are scanned per trial,
        so µs-scale scans are not lost in timer noise.
        """
        rng = np.random.default_rng(seed)
        q = rng.standard_normal((1, d)).astype(np.float32)
        out = []
        for s in sizes:
            x = rng.standard_normal((s, d)).astype(np.float32)
            run = scan(q, x) if prepared else (lambda x=x: scan(q, x))
            assert callable(run)
            reps = max(1, PROFILE_MIN_ITEMS // s)
            run()  # warm up
            ts = []
            for _ in range(trials):
                t0 = time.perf_counter()
                for _ in range(reps):
                    run()
                ts.append((time.perf_counter() - t0) / reps)
            out.append(float(np.median(ts)))
        # scan time is non-decreasing in s; remove timer noise so extrapolation stays sane
        return cls(list(sizes), list(np.maximum.accumulate(out)))


@dataclass(frozen=True)
class CostModel:
    """Deltas of maintenance actions (seconds), OSDI'25 §4.2.

    Parameters
    ----------
    lam : ScanLatency
        λ(s).
    alpha : float
        Fraction of the parent's access frequency each split child is assumed to keep.
    """

    lam: ScanLatency
    alpha: float

    def overhead_add(self, nlist: int) -> float:
        """ΔO⁺ = λ(N+1) − λ(N): every query scans one more centroid."""
        return self.lam(nlist + 1) - self.lam(nlist)

    def split_estimate(self, a: float, s: float, nlist: int) -> float:
        """Eq. 5, Δ'Split = ΔO⁺ − A·λ(s) + 2αA·λ(s/2) (balanced split assumed)."""
        return self.overhead_add(nlist) - a * self.lam(s) + 2 * self.alpha * a * self.lam(s / 2)

    def split_exact(self, a: float, s: float, s_left: float, s_right: float, nlist: int) -> float:
        """Eq. 4 with the children's real sizes and A_L = A_R = αA (the verify step)."""
        return (self.overhead_add(nlist) - a * self.lam(s)
                + self.alpha * a * (self.lam(s_left) + self.lam(s_right)))

    def merge_delta(self, a: float, s: float, nlist: int,
                    receivers: Iterable[tuple[float, float, float, float]]) -> float:
        """Eq. 7, ΔMerge = ΔO⁻ − A·λ(s) + Σ_m [(A_m+ΔA_m)·λ(s_m+Δs_m) − A_m·λ(s_m)].

        ``receivers`` yields ``(A_m, s_m, ΔA_m, Δs_m)`` for each receiving partition.
        """
        total = (self.lam(nlist - 1) - self.lam(nlist)) - a * self.lam(s)
        for a_m, s_m, da, ds in receivers:
            total += (a_m + da) * self.lam(s_m + ds) - a_m * self.lam(s_m)
        return total

    def split_estimate_many(self, a: NDArray[np.float64], s: NDArray[np.float64], nlist: int
                            ) -> NDArray[np.float64]:
        """:meth:`split_estimate` for arrays of partitions (one maintenance pass)."""
        lam = self.lam.many
        return self.overhead_add(nlist) - a * lam(s) + 2 * self.alpha * a * lam(s / 2)

    def merge_estimate_many(self, a: NDArray[np.float64], s: NDArray[np.float64], nlist: int,
                            a_nb: NDArray[np.float64], s_nb: NDArray[np.float64]
                            ) -> NDArray[np.float64]:
        """:meth:`merge_estimate` for arrays: ``a``, ``s`` (n,), neighbours' ``a_nb``, ``s_nb``
        (n, r) with r >= 1."""
        lam = self.lam.many
        r = a_nb.shape[1]
        gain = ((a_nb + (a / r)[:, None]) * lam(s_nb + (s / r)[:, None])
                - a_nb * lam(s_nb)).sum(1)
        return (self.lam(nlist - 1) - self.lam(nlist)) - a * lam(s) + gain

    def merge_estimate(self, a: float, s: float, nlist: int,
                       neighbours: Sequence[tuple[float, float]]) -> float:
        """Eq. 7 assuming the vectors and traffic spread evenly over ``neighbours`` (A_m, s_m)."""
        r = max(len(neighbours), 1)
        return self.merge_delta(a, s, nlist, ((a_m, s_m, a / r, s / r) for a_m, s_m in neighbours))


class AccessTracker:
    """Sliding window of the last W queries' scanned partitions (A_j of §4.1)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._records: deque[NDArray[np.int64]] = deque()
        self.counts: dict[int, float] = {}

    def record(self, pids: NDArray[np.int64]) -> None:
        """Note that one query scanned partitions ``pids``."""
        self._records.append(pids)
        for p in pids.tolist():
            self.counts[p] = self.counts.get(p, 0.0) + 1.0
        while len(self._records) > self.window:
            for p in self._records.popleft().tolist():
                if p in self.counts:
                    self.counts[p] = max(0.0, self.counts[p] - 1.0)

    def __len__(self) -> int:
        return len(self._records)

    def frequency(self, pid: int) -> float:
        """A_j: fraction of window queries that scanned ``pid``."""
        return self.counts.get(pid, 0.0) / max(len(self._records), 1)

    def replace(self, old: Sequence[int], new: dict[int, float]) -> None:
        """Forget partitions ``old``; give partitions ``new`` the stated hit counts."""
        for p in old:
            self.counts.pop(p, None)
        self.counts.update(new)
