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

import threading
from types import ModuleType

from labrig.cbuild import build_module

__all__ = ["ApsPool", "kernel"]

CDEF = """
typedef struct { const float *x; const float *norms; const int64_t *ids; int64_t size; } qk_part;
void qk_scan_batch(const float *Q, const float *QN, int d, int k, const qk_part *p,
                   int m, const int32_t *rows, float *TD, int64_t *TI, int32_t *CNT);
int qk_nearest(const float *q, float qn, const float *cent, const float *cn, int n, int d,
               int m, int32_t *out_slot, float *out_d, float *work);
int qk_aps(const float *q, float qn, int d, int k, int ncand, const int32_t *cand,
           const float *cd, const float *cent, const qk_part *parts,
           const double *cap_v, int cap_n, double target, double recompute,
           float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned, double *work);
typedef struct qk_pool qk_pool;
qk_pool *qk_pool_new(int nthreads);
void qk_pool_free(qk_pool *P);
int qk_pool_size(const qk_pool *P);
int qk_aps_par(qk_pool *P, const int32_t *owner, const float *q, float qn, int d, int k,
               int ncand, const int32_t *cand, const float *cd, const float *cent,
               const qk_part *parts, const double *cap_v, int cap_n, double target,
               double recompute, float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned,
               double *work);
"""

SOURCE = r"""
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SCAN_BLOCK 4

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

/* four dot products of q with consecutive rows x[0..4): four independent accumulator
   chains, so the loop runs at load/FMA throughput instead of one chain's FMA latency */
static inline void dot4(const float *restrict q, const float *restrict x, int d,
                        float *restrict out) {
    const float *x0 = x, *x1 = x + d, *x2 = x + 2 * (int64_t)d, *x3 = x + 3 * (int64_t)d;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    #pragma omp simd reduction(+:s0, s1, s2, s3)
    for (int i = 0; i < d; i++) {
        float qi = q[i];
        s0 += qi * x0[i]; s1 += qi * x1[i]; s2 += qi * x2[i]; s3 += qi * x3[i];
    }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

/* scan one partition into a top-k buffer, skipping rows not below `bound` (a k-th distance
   known from elsewhere, e.g. the shared buffer of a parallel APS; INFINITY if none) */
static void scan_part_bound(const float *q, float qn, const qk_part *p, int d, int k,
                            float bound, float *td, int64_t *ti, int32_t *cnt) {
    float dots[SCAN_BLOCK];
    for (int64_t r0 = 0; r0 < p->size; r0 += SCAN_BLOCK) {
        int64_t nb = p->size - r0 < SCAN_BLOCK ? p->size - r0 : SCAN_BLOCK;
        if (nb == SCAN_BLOCK) dot4(q, p->x + r0 * d, d, dots);
        else for (int64_t b = 0; b < nb; b++) dots[b] = dot(q, p->x + (r0 + b) * d, d);
        for (int64_t b = 0; b < nb; b++) {
            float dist = qn - 2.0f * dots[b] + p->norms[r0 + b];
            if (dist < 0.0f) dist = 0.0f;
            if (!(dist < bound)) continue;
            if (*cnt == k && !(dist < td[k - 1])) continue;
            topk_push(td, ti, cnt, k, dist, p->ids[r0 + b]);
        }
    }
}

static void scan_part(const float *q, float qn, const qk_part *p, int d, int k,
                      float *td, int64_t *ti, int32_t *cnt) {
    scan_part_bound(q, qn, p, d, k, INFINITY, td, ti, cnt);
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

/* the k-th smallest of a[0..n) (0-based), reordering a: Hoare quickselect */
static float select_kth(float *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) { float t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return a[k];
    }
    return a[k];
}

/* the m nearest centroids (slots and squared distances, ascending; ties by slot); returns
   how many.  All distances first (4 rows at a time) into work[0..n), then the m-th smallest
   by quickselect on a copy in work[n..2n) and one pass to collect: O(n·d + n + m²) rather
   than a top-m insertion per centroid. */
int qk_nearest(const float *q, float qn, const float *cent, const float *cn, int n, int d,
               int m, int32_t *out_slot, float *out_d, float *work) {
    if (m <= 0 || n <= 0) return 0;
    if (m > n) m = n;
    float *dist = work;
    float dots[SCAN_BLOCK];
    for (int j0 = 0; j0 < n; j0 += SCAN_BLOCK) {
        int nb = n - j0 < SCAN_BLOCK ? n - j0 : SCAN_BLOCK;
        if (nb == SCAN_BLOCK) dot4(q, cent + (int64_t)j0 * d, d, dots);
        else for (int b = 0; b < nb; b++) dots[b] = dot(q, cent + (int64_t)(j0 + b) * d, d);
        for (int b = 0; b < nb; b++) {
            float dj = qn - 2.0f * dots[b] + cn[j0 + b];
            dist[j0 + b] = dj < 0.0f ? 0.0f : dj;
        }
    }
    float *tmp = dist + n;
    for (int j = 0; j < n; j++) tmp[j] = dist[j];
    float thr = select_kth(tmp, n, m - 1);
    int c = 0;
    for (int j = 0; j < n && c < m; j++)
        if (dist[j] < thr) { out_slot[c] = j; out_d[c] = dist[j]; c++; }
    for (int j = 0; j < n && c < m; j++)
        if (dist[j] == thr) { out_slot[c] = j; out_d[c] = dist[j]; c++; }
    for (int i = 1; i < c; i++) {            /* ascending by (distance, slot) */
        float dv = out_d[i]; int32_t sv = out_slot[i]; int j = i;
        while (j > 0 && (out_d[j - 1] > dv || (out_d[j - 1] == dv && out_slot[j - 1] > sv))) {
            out_d[j] = out_d[j - 1]; out_slot[j] = out_slot[j - 1]; j--;
        }
        out_d[j] = dv; out_slot[j] = sv;
    }
    return c;
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

/* Bisector distances of APS (OSDI'25 §5): h_j is the distance from q to the bisector of
   c0 = cent[cand[0]] and c_j, from the squared centroid distances cd. */
static void aps_bisectors(int d, int ncand, const int32_t *cand, const float *cd,
                          const float *cent, double *h) {
    const float *c0 = cent + (int64_t)cand[0] * d;
    h[0] = 0.0;
    for (int j = 1; j < ncand; j++) {
        const float *cj = cent + (int64_t)cand[j] * d;
        double g = 0.0;
        for (int i = 0; i < d; i++) { double e = (double)cj[i] - c0[i]; g += e * e; }
        g = sqrt(g);
        h[j] = g > 0.0 ? ((double)cd[j] - cd[0]) / (2.0 * g) : 0.0;
    }
}

/* The cap model at k-th radius rho: v_j the cap fraction of B(q, rho) beyond bisector j,
   p0 = prod(1 - v_j), p_j = (1 - p0) v_j / sum(v).  Returns p0. */
static double aps_probs(int ncand, const double *h, double rho, const double *cap_v,
                        int cap_n, double *v, double *p) {
    double prod = 1.0, sum = 0.0;
    for (int j = 1; j < ncand; j++) {
        v[j] = rho > 0.0 ? cap_at(cap_v, cap_n, h[j] / rho) : 0.0;
        prod *= 1.0 - v[j];
        sum += v[j];
    }
    double p0 = sum > 0.0 ? prod : 1.0;
    p[0] = 0.0;
    for (int j = 1; j < ncand; j++) p[j] = sum > 0.0 ? (1.0 - p0) * v[j] / sum : 0.0;
    return p0;
}

/* APS over one level, OSDI'25 §5 Algorithm 1.
   cand[0..ncand) are partition slots sorted by centroid distance, cd their squared centroid
   distances; cand[0] is the query's nearest partition P0.  Scan P0, then the unscanned
   candidate with the largest p_j, until p0 + sum(scanned p_j) >= target; recompute the p_j
   only when rho (the k-th distance) moved by more than `recompute` (relative).  Until k
   results exist rho is unknown and partitions are taken in centroid order.
   work: 3 * ncand doubles.  Returns partitions scanned. */
int qk_aps(const float *q, float qn, int d, int k, int ncand, const int32_t *cand,
           const float *cd, const float *cent, const qk_part *parts,
           const double *cap_v, int cap_n, double target, double recompute,
           float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned, double *work) {
    *cnt = 0;
    if (ncand <= 0) return 0;
    double *h = work, *v = work + ncand, *p = work + 2 * ncand;
    aps_bisectors(d, ncand, cand, cd, cent, h);
    for (int j = 0; j < ncand; j++) { scanned[j] = 0; p[j] = 0.0; }
    scan_part(q, qn, &parts[cand[0]], d, k, td, ti, cnt);
    scanned[0] = 1;
    int n_scanned = 1;
    double rho_at = -1.0, p0 = 1.0;
    while (n_scanned < ncand) {
        int next = -1;
        if (*cnt < k) {                      /* no k-th neighbour yet: centroid order */
            for (int j = 1; j < ncand; j++) if (!scanned[j]) { next = j; break; }
        } else {
            double rho = sqrt((double)td[k - 1]);
            if (rho_at < 0.0 || fabs(rho - rho_at) > recompute * rho_at) {
                p0 = aps_probs(ncand, h, rho, cap_v, cap_n, v, p);
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

/* ---- Parallel APS for one query (OSDI'25 §6, Algorithm 2) ------------------------------
   Every candidate partition has an owner, worker (pid mod W) -- the paper's partition-to-
   core affinity.  Each worker scans its own most probable unscanned candidate into a local
   top-k buffer and steals the most probable one of another worker when it has none left
   (the paper's work stealing inside a NUMA node; this host is one node).  After each scan the
   worker merges into the shared top-k under a lock and re-evaluates the APS estimate -- the
   paper's coordinator does this every T_wait; here it happens at every merge, the tightest
   T_wait -- and when the estimate reaches the target, no worker starts another partition.
   A partition counts towards the estimate only once merged.  State per candidate:
   FREE -> CLAIMED (being scanned) -> DONE. */
enum { C_FREE = 0, C_CLAIMED = 1, C_DONE = 2 };

typedef struct {
    const float *q; float qn; int d, k, ncand;
    const int32_t *cand; const int32_t *owner; const qk_part *parts;
    const double *cap_v; int cap_n; double target, recompute;
    float *td; int64_t *ti; int32_t *cnt; uint8_t *state; double *h, *v, *p;
    pthread_mutex_t mu;
    int stop, n_done;
    double rho_at, p0;
} aps_job;

/* under job->mu: the candidate worker w scans next, or -1 (nothing to start) */
static int aps_pick(aps_job *J, int w) {
    int k = J->k, nc = J->ncand;
    if (J->stop) return -1;
    if (*J->cnt < k) {                       /* rho unknown: centroid order, own first */
        int any = -1;
        for (int j = 0; j < nc; j++) {
            if (J->state[j] != C_FREE) continue;
            if (J->owner[j] == w) return j;
            if (any < 0) any = j;
        }
        return any;
    }
    double rho = sqrt((double)J->td[k - 1]);
    if (J->rho_at < 0.0 || fabs(rho - J->rho_at) > J->recompute * J->rho_at) {
        J->p0 = aps_probs(nc, J->h, rho, J->cap_v, J->cap_n, J->v, J->p);
        J->rho_at = rho;
    }
    double est = J->state[0] == C_DONE ? J->p0 : 0.0;
    double best_own = -1.0, best_any = -1.0;
    int own = -1, any = -1;
    for (int j = 0; j < nc; j++) {
        /* P0 is always scanned first (p[0] = 0 would never pick it) */
        double pj = j == 0 ? 2.0 : J->p[j];
        if (J->state[j] == C_DONE) { if (j) est += pj; continue; }
        if (J->state[j] != C_FREE) continue;
        if (J->owner[j] == w && pj > best_own) { best_own = pj; own = j; }
        if (pj > best_any) { best_any = pj; any = j; }
    }
    if (est >= J->target) { J->stop = 1; return -1; }
    return own >= 0 ? own : any;
}

static void aps_work(aps_job *J, int w) {
    int k = J->k;
    float ltd[k];
    int64_t lti[k];
    for (;;) {
        pthread_mutex_lock(&J->mu);
        int j = aps_pick(J, w);
        float bound = *J->cnt == k ? J->td[k - 1] : INFINITY;
        if (j >= 0) J->state[j] = C_CLAIMED;
        pthread_mutex_unlock(&J->mu);
        if (j < 0) return;
        int32_t lcnt = 0;
        scan_part_bound(J->q, J->qn, &J->parts[J->cand[j]], J->d, k, bound, ltd, lti, &lcnt);
        pthread_mutex_lock(&J->mu);
        for (int i = 0; i < lcnt; i++) topk_push(J->td, J->ti, J->cnt, k, ltd[i], lti[i]);
        J->state[j] = C_DONE;
        J->n_done++;
        pthread_mutex_unlock(&J->mu);
    }
}

/* A persistent pool of W-1 threads (the caller is worker 0).  Idle threads spin briefly
   for the next job (queries come back to back) and then sleep on a condition variable.
   A thread that wakes late -- descheduled on a busy machine -- must not hold the query up:
   when the caller has nothing left to scan it closes the job (`open` = 0) and waits only
   for threads already inside it (`active`), which finish at most one partition each.
   Both sides use sequentially consistent atomics: a thread increments `active`, then
   reads `open`; the caller clears `open`, then reads `active` -- so either the caller sees
   the thread or the thread sees the job closed. */
#define POOL_SPIN 20000
#define POOL_YIELD_AFTER 256
typedef struct qk_pool {
    int n;                                   /* threads (workers 1..n) */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ullong gen;
    atomic_int open;                         /* the current job accepts workers */
    atomic_int active;                       /* workers inside the current job */
    int quit;
    aps_job *job;
} qk_pool;

typedef struct { qk_pool *pool; int w; } pool_arg;

static void *pool_main(void *arg) {
    qk_pool *P = ((pool_arg *)arg)->pool;
    int w = ((pool_arg *)arg)->w;
    free(arg);
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g = atomic_load(&P->gen);
        for (int i = 0; g == seen && i < POOL_SPIN; i++) g = atomic_load(&P->gen);
        if (g == seen) {
            pthread_mutex_lock(&P->mu);
            while ((g = atomic_load(&P->gen)) == seen && !P->quit)
                pthread_cond_wait(&P->cv, &P->mu);
            pthread_mutex_unlock(&P->mu);
        }
        if (P->quit) return NULL;
        seen = g;
        atomic_fetch_add(&P->active, 1);
        if (atomic_load(&P->open)) aps_work(P->job, w);
        atomic_fetch_sub(&P->active, 1);
    }
}

qk_pool *qk_pool_new(int nthreads) {
    qk_pool *P = calloc(1, sizeof *P);
    if (!P) return NULL;
    P->th = calloc(nthreads > 0 ? nthreads : 1, sizeof *P->th);
    if (!P->th) { free(P); return NULL; }
    pthread_mutex_init(&P->mu, NULL);
    pthread_cond_init(&P->cv, NULL);
    atomic_init(&P->gen, 0);
    atomic_init(&P->open, 0);
    atomic_init(&P->active, 0);
    for (int i = 0; i < nthreads; i++) {
        pool_arg *a = malloc(sizeof *a);
        if (!a) break;                       /* fewer threads: the caller still works */
        a->pool = P; a->w = i + 1;
        if (pthread_create(&P->th[i], NULL, pool_main, a) != 0) { free(a); break; }
        P->n = i + 1;
    }
    return P;
}

void qk_pool_free(qk_pool *P) {
    if (!P) return;
    pthread_mutex_lock(&P->mu);
    P->quit = 1;
    atomic_fetch_add(&P->gen, 1);
    pthread_cond_broadcast(&P->cv);
    pthread_mutex_unlock(&P->mu);
    for (int i = 0; i < P->n; i++) pthread_join(P->th[i], NULL);
    pthread_mutex_destroy(&P->mu);
    pthread_cond_destroy(&P->cv);
    free(P->th);
    free(P);
}

int qk_pool_size(const qk_pool *P) { return P ? P->n + 1 : 1; }

/* qk_aps on the pool's workers plus the caller; owner[j] is candidate j's worker (0..W-1).
   Same arguments and result buffers as qk_aps (work: 3 * ncand doubles, scanned: 1 where
   scanned).  Returns partitions scanned. */
int qk_aps_par(qk_pool *P, const int32_t *owner, const float *q, float qn, int d, int k,
               int ncand, const int32_t *cand, const float *cd, const float *cent,
               const qk_part *parts, const double *cap_v, int cap_n, double target,
               double recompute, float *td, int64_t *ti, int32_t *cnt, uint8_t *scanned,
               double *work) {
    *cnt = 0;
    if (ncand <= 0) return 0;
    aps_job J = {q, qn, d, k, ncand, cand, owner, parts, cap_v, cap_n, target, recompute,
                 td, ti, cnt, scanned, work, work + ncand, work + 2 * ncand};
    pthread_mutex_init(&J.mu, NULL);
    J.rho_at = -1.0; J.p0 = 1.0;
    aps_bisectors(d, ncand, cand, cd, cent, J.h);
    for (int j = 0; j < ncand; j++) { scanned[j] = C_FREE; J.p[j] = 0.0; }
    P->job = &J;
    atomic_store(&P->open, 1);
    pthread_mutex_lock(&P->mu);
    atomic_fetch_add(&P->gen, 1);
    pthread_cond_broadcast(&P->cv);
    pthread_mutex_unlock(&P->mu);
    aps_work(&J, 0);
    atomic_store(&P->open, 0);
    for (int i = 0; atomic_load(&P->active) > 0; i++)   /* finishing one partition each */
        if (i >= POOL_YIELD_AFTER) sched_yield();
    pthread_mutex_destroy(&J.mu);
    for (int j = 0; j < ncand; j++) scanned[j] = scanned[j] == C_DONE;
    return J.n_done;
}
"""

_COMPILE_ARGS = ("-O3", "-fno-math-errno", "-funroll-loops", "-fopenmp-simd", "-pthread")
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
                        extra_compile_args=args, libraries=("pthread",))


class ApsPool:
    """The C worker threads of single-query parallel APS (``qk_aps_par``, OSDI'25 §6).

    ``width`` workers in all: ``width - 1`` C threads plus the calling thread.  A Python
    thread pool costs ~50 µs per hand-off on a small machine, as much as a whole query's
    scan, so the workers live in C and wait on the next query by spinning briefly, then
    sleeping.  One query at a time: calls are serialized by a lock.
    """

    def __init__(self, mod: ModuleType, width: int) -> None:
        self.ffi, self.lib = mod.ffi, mod.lib
        ptr = self.lib.qk_pool_new(max(width - 1, 0))
        if ptr == self.ffi.NULL:
            raise MemoryError("quake: cannot allocate the APS worker pool")
        self._ptr = self.ffi.gc(ptr, self.lib.qk_pool_free)
        self.width = int(self.lib.qk_pool_size(self._ptr))
        self.lock = threading.Lock()

    @property
    def ptr(self) -> object:
        return self._ptr

    def close(self) -> None:
        """Join the threads now (idempotent); otherwise they go with the object."""
        if self._ptr is not None:
            self.ffi.release(self._ptr)
            self._ptr = None
