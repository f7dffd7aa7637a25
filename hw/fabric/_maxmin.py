"""Progressive filling (max-min fair rates) over a sparse links x flows incidence.

Two implementations of one algorithm, bit-identical by construction:

- :func:`fill_numpy`, vectorized with numpy, always available -- the reference;
- :func:`fill_c`, the same loop in C (built with cffi at first use by
  :func:`labrig.cbuild.build_module`); each round costs ~a dozen numpy calls in the reference,
  which dominates the flow model's wall time when many flows share links.

Bit-identical because only integer crossing counts are ever summed; every floating-point
value is one IEEE operation on the same operands in both (``cap / count``, ``level * (1 +
rtol)``, ``max(cap - count * level, 0)``), and the C is compiled with ``-ffp-contract=off`` so no
fused multiply-add changes a rounding.  Hence the flow model gives the same virtual times
whichever implementation runs, on any machine.

Algorithm (Bertsekas & Gallager, *Data Networks*, 2nd ed., section 6.5.2): all unfrozen flows
rise together; the links with the smallest remaining-capacity / unfrozen-crossings ratio
saturate at that level; every flow crossing one freezes at it; repeat until all are frozen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labrig.cbuild import build_module
from labrig.errors import BackendUnavailable

__all__ = ["SATURATION_RTOL", "c_unavailable_reason", "fill", "fill_c", "fill_numpy"]

#: Links whose fair share is within this relative slack of the minimum saturate together
#: (absorbs float rounding only).
SATURATION_RTOL = 1e-12

_CDEF = """
int64_t labrig_maxmin_fill(int64_t nf, int64_t nl, const int64_t *li, const int64_t *fi,
                           int64_t nnz, double *cap, double *rate, double rtol,
                           int64_t *count, unsigned char *state, unsigned char *tight);
"""

_SRC = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

/* state[f]: 0 unfrozen, 1 frozen, 2 freezing this round */
int64_t labrig_maxmin_fill(int64_t nf, int64_t nl, const int64_t *li, const int64_t *fi,
                           int64_t nnz, double *cap, double *rate, double rtol,
                           int64_t *count, unsigned char *state, unsigned char *tight)
{
    int64_t left = nf, rounds = 0, k, l, f;
    memset(state, 0, (size_t)nf);
    while (left > 0) {
        double level = INFINITY, thr;
        rounds++;
        memset(count, 0, sizeof(int64_t) * (size_t)nl);
        for (k = 0; k < nnz; k++)
            if (!state[fi[k]]) count[li[k]]++;
        for (l = 0; l < nl; l++)
            if (count[l] > 0) {
                double s = cap[l] / (double)count[l];
                if (s < level) level = s;
            }
        thr = level * (1.0 + rtol);
        for (l = 0; l < nl; l++)
            tight[l] = count[l] > 0 && cap[l] / (double)count[l] <= thr;
        for (k = 0; k < nnz; k++)
            if (!state[fi[k]] && tight[li[k]]) state[fi[k]] = 2;
        memset(count, 0, sizeof(int64_t) * (size_t)nl);
        for (k = 0; k < nnz; k++)
            if (state[fi[k]] == 2) count[li[k]]++;
        for (l = 0; l < nl; l++) {
            double c = cap[l] - (double)count[l] * level;
            cap[l] = c > 0.0 ? c : 0.0;
        }
        for (f = 0; f < nf; f++)
            if (state[f] == 2) { rate[f] = level; state[f] = 1; left--; }
    }
    return rounds;
}
"""

_lib: Any = None
_reason: str | None = None


def _load() -> Any:
    global _lib, _reason
    if _lib is None and _reason is None:
        try:
            _lib = build_module("fabric", "_labrig_maxmin", _CDEF, _SRC, backend="fabric max-min",
                                extra_compile_args=("-O2", "-ffp-contract=off"))
        except BackendUnavailable as exc:
            _reason = exc.reason
    return _lib


def c_unavailable_reason() -> str | None:
    """Why the C kernel cannot be used here, or ``None`` when it can."""
    _load()
    return _reason


def fill_numpy(li: np.ndarray, fi: np.ndarray, cap: np.ndarray, nf: int
               ) -> tuple[np.ndarray, int]:
    """Max-min rates of ``nf`` flows; crossing ``k`` is flow ``fi[k]`` on link ``li[k]``
    (links ``0..len(cap)-1``, capacities ``cap``).  Returns ``(rates, rounds)``."""
    nl = len(cap)
    cap = cap.astype(np.float64, copy=True)
    rate = np.zeros(nf)
    left = nf
    rounds = 0
    while left:
        rounds += 1
        load = np.bincount(li, minlength=nl)
        share = cap / np.maximum(load, 1)
        share[load == 0] = np.inf
        level = share.min()
        tight = share <= level * (1.0 + SATURATION_RTOL)
        freeze = np.zeros(nf, dtype=bool)
        freeze[fi[tight[li]]] = True
        rate[freeze] = level
        gone = freeze[fi]
        cap = np.maximum(cap - np.bincount(li[gone], minlength=nl) * level, 0.0)
        li = li[~gone]
        fi = fi[~gone]
        left -= int(np.count_nonzero(freeze))
    return rate, rounds


def fill_c(li: np.ndarray, fi: np.ndarray, cap: np.ndarray, nf: int) -> tuple[np.ndarray, int]:
    """:func:`fill_numpy` in C (raises BackendUnavailable when it cannot be built)."""
    lib = _load()
    if lib is None:
        raise BackendUnavailable("fabric max-min", _reason or "C kernel unavailable")
    ffi = lib.ffi
    nl = len(cap)
    li = np.ascontiguousarray(li, dtype=np.int64)
    fi = np.ascontiguousarray(fi, dtype=np.int64)
    capw = np.array(cap, dtype=np.float64)
    rate = np.zeros(nf)
    count = np.empty(max(nl, 1), dtype=np.int64)
    state = np.empty(max(nf, 1), dtype=np.uint8)
    tight = np.empty(max(nl, 1), dtype=np.uint8)
    buf = ffi.from_buffer
    rounds = lib.lib.labrig_maxmin_fill(
        nf, nl, buf("int64_t[]", li), buf("int64_t[]", fi), len(li), buf("double[]", capw),
        buf("double[]", rate), SATURATION_RTOL, buf("int64_t[]", count),
        buf("unsigned char[]", state), buf("unsigned char[]", tight))
    return rate, int(rounds)


def fill(li: np.ndarray, fi: np.ndarray, cap: np.ndarray, nf: int) -> tuple[np.ndarray, int]:
    """The C kernel where it builds, else the numpy reference (same bits either way)."""
    if _load() is not None:
        return fill_c(li, fi, cap, nf)
    return fill_numpy(li, fi, cap, nf)
