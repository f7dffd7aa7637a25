"""C kernels of Quake's query path: partition scans, top-k buffers and the APS loop (cffi).

Why C: the APS loop of OSDI'25 §5 (Algorithm 1) takes one small step per scanned partition —
scan, merge into the top-k, maybe recompute the recall model, pick the next partition — and in
Python each step costs more than the scan itself.  Here one call runs the whole loop of one
level for one query.  cffi releases the GIL around every call, so worker threads that call
these kernels scan in parallel (§6: partition p is always scanned by worker p mod W).

Distances are squared L2, ``‖q‖² − 2 q·x + ‖x‖²`` clamped at 0, computed in float32.
A top-k buffer is ``k`` ascending distances, ``k`` ids and a count (worker-local, §6).
"""

from __future__ import annotations

from types import ModuleType

from labrig.cbuild import build_module

__all__ = ["kernel"]

CDEF = """
typedef struct { const float *x; const float *norms; const int64_t *ids; int64_t size; } qk_part;
void qk_scan_batch(const float *Q, const float *QN, int d, int k, const qk_part *p,
                   int m, const int32_t *rows, float *TD, int64_t *TI, int32_t *CNT);
int qk_nearest(const float *q, float qn, const float *cent, const float *cn, int n, int d,
               int m, int32_t *out_slot, float *out_d);
int qk_aps(const float *q, float qn, int d, int k, int ncand, const int32_t *cand,
           const float *cd, const float *cent, const qk_part *parts,
           const double *cap_v, int cap_n, double target, double recompute,
           float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned, double *work);
"""

SOURCE = r"""
#include <stdint.h>
#include <math.h>

typedef struct { const float *x; const float *norms; const int64_t *ids; int64_t size; } qk_part;

/* the simd reduction lets the compiler reassociate the sum into vector lanes */
static inline float dot(const float *restrict a, const float *restrict b, int d) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

/* ascending top-k buffer: keep the k smallest (distance, id) pairs */
static void topk_push(float *td, int64_t *ti, int32_t *cnt, int k, float dist, int64_t id) {
    int n = *cnt;
    if (n == k) {
        if (!(dist < td[k - 1])) return;
        n = k - 1;
    }
    int j = n;
    while (j > 0 && td[j - 1] > dist) { td[j] = td[j - 1]; ti[j] = ti[j - 1]; j--; }
    td[j] = dist; ti[j] = id; *cnt = n + 1;
}

static void scan_part(const float *q, float qn, const qk_part *p, int d, int k,
                      float *td, int64_t *ti, int32_t *cnt) {
    for (int64_t r = 0; r < p->size; r++) {
        float dist = qn - 2.0f * dot(q, p->x + r * d, d) + p->norms[r];
        if (dist < 0.0f) dist = 0.0f;
        if (*cnt == k && !(dist < td[k - 1])) continue;
        topk_push(td, ti, cnt, k, dist, p->ids[r]);
    }
}

/* scan one partition for queries rows[0..m) into their top-k buffers (row-major, k wide) */
void qk_scan_batch(const float *Q, const float *QN, int d, int k, const qk_part *p,
                   int m, const int32_t *rows, float *TD, int64_t *TI, int32_t *CNT) {
    for (int i = 0; i < m; i++) {
        int r = rows[i];
        scan_part(Q + (int64_t)r * d, QN[r], p, d, k, TD + (int64_t)r * k,
                  TI + (int64_t)r * k, CNT + r);
    }
}

/* the m nearest centroids (slots and squared distances, ascending); returns how many */
int qk_nearest(const float *q, float qn, const float *cent, const float *cn, int n, int d,
               int m, int32_t *out_slot, float *out_d) {
    if (m <= 0 || n <= 0) return 0;
    int32_t cnt = 0;
    int64_t tmp_i[m];
    for (int j = 0; j < n; j++) {
        float dist = qn - 2.0f * dot(q, cent + (int64_t)j * d, d) + cn[j];
        if (dist < 0.0f) dist = 0.0f;
        if (cnt == m && !(dist < out_d[m - 1])) continue;
        topk_push(out_d, tmp_i, &cnt, m, dist, j);
    }
    for (int j = 0; j < cnt; j++) out_slot[j] = (int32_t)tmp_i[j];
    return cnt;
}

/* linear interpolation of the tabulated cap fraction at t = h / rho (OSDI'25 §5) */
static double cap_at(const double *cap_v, int cap_n, double t) {
    if (t < 0) t = -t;
    if (t >= 1.0) return 0.0;
    double pos = t * (cap_n - 1);
    int i = (int)pos;
    if (i >= cap_n - 1) return cap_v[cap_n - 1];
    double f = pos - i;
    return cap_v[i] * (1.0 - f) + cap_v[i + 1] * f;
}

/* APS over one level, OSDI'25 §5 Algorithm 1.
   cand[0..ncand) are partition slots sorted by centroid distance, cd their squared centroid
   distances; cand[0] is the query's nearest partition P0.  h_j is the distance from q to the
   bisector of c0 and c_j; the cap of B(q, rho) beyond it has volume fraction v_j; p0 =
   prod(1 - v_j), p_j = (1 - p0) v_j / sum(v).  Scan P0, then the unscanned candidate with the
   largest p_j, until p0 + sum(scanned p_j) >= target; recompute the p_j only when rho moved by
   more than `recompute` (relative).  Until k results exist rho is unknown and partitions
   are taken in centroid order.  work: 3 * ncand doubles.  Returns partitions scanned. */
int qk_aps(const float *q, float qn, int d, int k, int ncand, const int32_t *cand,
           const float *cd, const float *cent, const qk_part *parts,
           const double *cap_v, int cap_n, double target, double recompute,
           float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned, double *work) {
    *cnt = 0;
    if (ncand <= 0) return 0;
    double *h = work, *v = work + ncand, *p = work + 2 * ncand;
    const float *c0 = cent + (int64_t)cand[0] * d;
    for (int j = 1; j < ncand; j++) {
        const float *cj = cent + (int64_t)cand[j] * d;
        double g = 0.0;
        for (int i = 0; i < d; i++) { double e = (double)cj[i] - c0[i]; g += e * e; }
        g = sqrt(g);
        h[j] = g > 0.0 ? ((double)cd[j] - cd[0]) / (2.0 * g) : 0.0;
        scanned[j] = 0;
    }
    scan_part(q, qn, &parts[cand[0]], d, k, td, ti, cnt);
    scanned[0] = 1;
    int n_scanned = 1;
    double rho_at = -1.0, p0 = 1.0;
    for (int j = 0; j < ncand; j++) p[j] = 0.0;
    while (n_scanned < ncand) {
        int next = -1;
        if (*cnt < k) {                      /* no k-th neighbour yet: centroid order */
            for (int j = 1; j < ncand; j++) if (!scanned[j]) { next = j; break; }
        } else {
            double rho = sqrt((double)td[k - 1]);
            if (rho_at < 0.0 || fabs(rho - rho_at) > recompute * rho_at) {
                double prod = 1.0, sum = 0.0;
                for (int j = 1; j < ncand; j++) {
                    v[j] = rho > 0.0 ? cap_at(cap_v, cap_n, h[j] / rho) : 0.0;
                    prod *= 1.0 - v[j];
                    sum += v[j];
                }
                p0 = sum > 0.0 ? prod : 1.0;
                for (int j = 1; j < ncand; j++) p[j] = sum > 0.0 ? (1.0 - p0) * v[j] / sum : 0.0;
                rho_at = rho;
            }
            double est = p0, best = -1.0;
            for (int j = 1; j < ncand; j++) {
                if (scanned[j]) est += p[j];
                else if (p[j] > best) { best = p[j]; next = j; }
            }
            if (est >= target) break;
        }
        if (next < 0) break;
        scan_part(q, qn, &parts[cand[next]], d, k, td, ti, cnt);
        scanned[next] = 1;
        n_scanned++;
    }
    return n_scanned;
}
"""

_COMPILE_ARGS = ("-O3", "-fno-math-errno", "-funroll-loops", "-fopenmp-simd")
# Wider SIMD only when this CPU reports it (not -march=native: the build cache is per user,
# and a home directory may be shared by machines of different CPU generations).
_SIMD_ARGS = ("-mavx2", "-mfma")
_SIMD_FLAGS = ("avx2", "fma")
_CPUINFO = "/proc/cpuinfo"


def _cpu_flags() -> set[str]:
    try:
        with open(_CPUINFO) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kernel() -> ModuleType:
    """The compiled module (``.ffi``, ``.lib``); built once per user and cached.

    Raises
    ------
    BackendUnavailable
        cffi or a C compiler is missing; the message says which.
    """
    args = _COMPILE_ARGS
    if set(_SIMD_FLAGS) <= _cpu_flags():
        args += _SIMD_ARGS
    return build_module("quake", "labrig_quake", CDEF, SOURCE, backend="quake C kernel",
                        extra_compile_args=args)
