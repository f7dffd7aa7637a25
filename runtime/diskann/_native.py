"""The graph kernels in C: distances, greedy search, RobustPrune and batched Vamana insertion.

These loops decide build and search speed (issue 4: 100k x 128-d in <= 5 min on two cores), so
they are C compiled with cffi on first use (:func:`labrig.cbuild.build_module`); the Python side
(:mod:`.vamana`) only checks arguments and orders the batches.  Rows stay in their own type
(uint8, int8 or float32, as DiskANN's ``Index<T>``): integer rows accumulate exactly in 32-bit
integers, float rows in float.  Distances are DiskANN's (``src/distance.cpp``): squared L2, or
``-<a, b>`` for inner product, so smaller is always closer.

The algorithms follow DiskANN ``cpp_main`` ``src/index.cpp``:

* ``greedy_core`` is ``iterate_to_fixed_point``: a pool of at most ``L`` candidates sorted by
  distance; repeatedly expand the nearest unexpanded one and insert its unvisited neighbours.
  During a build every expanded node is also appended to the prune candidates (DiskANN's
  ``expanded_nodes`` pool).
* ``prune_core`` is ``occlude_list``: walk the candidates in distance order with
  ``cur_alpha = 1, 1.2, 1.44, ... <= alpha``; a candidate is picked unless its occlusion factor
  exceeds ``cur_alpha``; each pick ``p`` raises the factor of every later candidate ``c`` to
  ``d(node, c) / d(p, c)`` for L2, and for inner product marks ``c`` occluded for this round
  (factor ``cur_alpha + 0.01``) when ``-d(p, c) > cur_alpha * -d(node, c)``; at most ``R``.
* ``ann_insert_batch`` is ``link()`` made deterministic the ParlayANN way (Dobson et al.,
  "Scaling Graph-Based ANNS Algorithms to Billion-Size Datasets", 2023): every point of a batch
  searches and prunes against the graph frozen at the batch start, in parallel (pthreads own
  contiguous slices), then out-edges and reverse edges (``inter_insert``: append while the list
  is shorter than ``1.3 * R``, else re-prune the list plus the new edge) are applied serially in
  batch order.  Same seed, same graph, whatever the thread count.
* ``ann_final_prune`` is the cleanup loop at the end of ``link()``: every list longer than ``R``
  is re-pruned to ``R``.
* ``ann_pq_assign`` is the nearest-centre step of PQ training and encoding (``src/pq.cpp``
  ``generate_pq_data_from_pivots``), over DiskANN's transposed pivot table.

Distances and the PQ loop also get an AVX2 clone chosen at load time (GCC ``target_clones``);
the baseline clone keeps the cached module valid on any x86-64.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from labrig.cbuild import build_module
from labrig.errors import UsageError

__all__ = ["DTYPE_CODES", "METRIC_CODES", "dtype_code", "load_native", "metric_code"]

#: Element type codes the C side dispatches on (``ANN_U8`` ... in the source).
DTYPE_CODES: dict[np.dtype, int] = {np.dtype(np.float32): 0, np.dtype(np.uint8): 1,
                                    np.dtype(np.int8): 2}
#: Metric codes: 0 squared L2, 1 negated inner product.
METRIC_CODES: dict[str, int] = {"l2": 0, "ip": 1}

_CDEF = """
int ann_distances(const void *data, int d, int dtype, int metric, const void *q,
                  const uint32_t *ids, int64_t nids, float *out);
int ann_search_batch(const void *data, int64_t n, int d, int dtype, int metric,
                     const uint32_t *nbrs, const uint32_t *deg, int cap, const void *queries,
                     int64_t nq, const uint32_t *seeds, int nseeds, int seed_stride, int L, int k,
                     int64_t *out_ids, float *out_d, int32_t *out_hops, int64_t *out_cmps,
                     int nthreads);
int ann_robust_prune(const void *data, int d, int dtype, int metric, uint32_t node,
                     const uint32_t *cand, const float *cand_d, int nc, float alpha, int R,
                     int maxc, uint32_t *out);
int ann_insert_batch(const void *data, int64_t n, int d, int dtype, int metric, uint32_t *nbrs,
                     uint32_t *deg, int cap, int R, int L, float alpha, int maxc,
                     uint32_t medoid, const uint32_t *pts, int64_t npts, int nthreads);
int ann_final_prune(const void *data, int64_t n, int d, int dtype, int metric, uint32_t *nbrs,
                    uint32_t *deg, int cap, int R, float alpha, int maxc, int nthreads);
int ann_pq_assign(const float *x, int64_t n, int dim, const float *cent_tr,
                  const uint32_t *chunk_offsets, int n_chunks, uint8_t *codes, int nthreads);
"""

_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <pthread.h>

enum { ANN_F32 = 0, ANN_U8 = 1, ANN_I8 = 2 };
enum { ANN_L2 = 0, ANN_IP = 1 };
#define ANN_ALPHA_STEP 1.2f    /* occlude_list: cur_alpha *= 1.2f */
#define ANN_IP_EPS 0.01f       /* occlude_list: eps = cur_alpha + 0.01f for MIPS */
#define ANN_ENOMEM (-1)
/* The hot loops get an AVX2+FMA clone picked at load time where the CPU has it (GCC function
   multi-versioning); the baseline x86-64 clone runs everywhere else. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ANN_HOT __attribute__((target_clones("avx2", "default")))
#else
#define ANN_HOT
#endif

/* ---- distances (DiskANN src/distance.cpp: DistanceL2*, DistanceInnerProduct) ----
   uint8/int8 sums are exact in 32 bits up to 65536 dims: 255^2 * 65536 < 2^32. */
ANN_HOT static float l2_f32(const void *a_, const void *b_, int d) {
    const float *a = (const float *)a_, *b = (const float *)b_;
    float s = 0.f;
    for (int i = 0; i < d; i++) { float t = a[i] - b[i]; s += t * t; }
    return s;
}
ANN_HOT static float l2_u8(const void *a_, const void *b_, int d) {
    const uint8_t *a = (const uint8_t *)a_, *b = (const uint8_t *)b_;
    uint32_t s = 0;
    for (int i = 0; i < d; i++) {
        int32_t t = (int32_t)a[i] - (int32_t)b[i];
        s += (uint32_t)(t * t);
    }
    return (float)s;
}
ANN_HOT static float l2_i8(const void *a_, const void *b_, int d) {
    const int8_t *a = (const int8_t *)a_, *b = (const int8_t *)b_;
    uint32_t s = 0;
    for (int i = 0; i < d; i++) {
        int32_t t = (int32_t)a[i] - (int32_t)b[i];
        s += (uint32_t)(t * t);
    }
    return (float)s;
}
ANN_HOT static float ip_f32(const void *a_, const void *b_, int d) {
    const float *a = (const float *)a_, *b = (const float *)b_;
    float s = 0.f;
    for (int i = 0; i < d; i++) s += a[i] * b[i];
    return -s;
}
ANN_HOT static float ip_u8(const void *a_, const void *b_, int d) {
    const uint8_t *a = (const uint8_t *)a_, *b = (const uint8_t *)b_;
    uint32_t s = 0;
    for (int i = 0; i < d; i++) s += (uint32_t)a[i] * (uint32_t)b[i];
    return -(float)s;
}
ANN_HOT static float ip_i8(const void *a_, const void *b_, int d) {
    const int8_t *a = (const int8_t *)a_, *b = (const int8_t *)b_;
    int32_t s = 0;
    for (int i = 0; i < d; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return -(float)s;
}

typedef float (*dist_fn)(const void *, const void *, int);

/* The rows and how to compare them. */
typedef struct {
    const char *data; size_t row_bytes; int d; int metric; dist_fn dist;
} space_t;

static int space_init(space_t *s, const void *data, int d, int dtype, int metric) {
    static const dist_fn table[2][3] = {{l2_f32, l2_u8, l2_i8}, {ip_f32, ip_u8, ip_i8}};
    static const size_t width[3] = {sizeof(float), 1, 1};
    if (dtype < 0 || dtype > 2 || metric < 0 || metric > 1 || d <= 0) return -1;
    s->data = (const char *)data; s->d = d; s->metric = metric;
    s->row_bytes = (size_t)d * width[dtype]; s->dist = table[metric][dtype];
    return 0;
}

static inline const void *row(const space_t *s, uint32_t i) {
    return s->data + (size_t)i * s->row_bytes;
}

int ann_distances(const void *data, int d, int dtype, int metric, const void *q,
                  const uint32_t *ids, int64_t nids, float *out) {
    space_t s;
    if (space_init(&s, data, d, dtype, metric) != 0) return -1;
    for (int64_t i = 0; i < nids; i++) out[i] = s.dist(q, row(&s, ids[i]), d);
    return 0;
}

/* ---- candidate pool (DiskANN NeighborPriorityQueue) ----
   Insert (id, dist) into the pool sorted by distance, capacity L; returns the position, or L
   when the pool is full and the candidate is no better than the worst. */
static int pool_insert(uint32_t *pid, float *pd, uint8_t *pexp, int *pn, int L,
                       uint32_t id, float dist) {
    int n = *pn;
    if (n == L && dist >= pd[n - 1]) return L;
    int lo = 0, hi = n;
    while (lo < hi) { int mid = (lo + hi) >> 1; if (pd[mid] <= dist) lo = mid + 1; else hi = mid; }
    int move = (n == L ? n - 1 : n) - lo;
    if (move > 0) {
        memmove(pid + lo + 1, pid + lo, (size_t)move * sizeof(uint32_t));
        memmove(pd + lo + 1, pd + lo, (size_t)move * sizeof(float));
        memmove(pexp + lo + 1, pexp + lo, (size_t)move);
    }
    pid[lo] = id; pd[lo] = dist; pexp[lo] = 0;
    if (n < L) *pn = n + 1;
    return lo;
}

/* Per-thread scratch (DiskANN InMemQueryScratch).  visited[] holds epochs so it is never
   cleared between searches. */
typedef struct {
    uint32_t *visited; uint32_t epoch;
    uint32_t *pid; float *pd; uint8_t *pexp; int pn;       /* the L-best pool */
    uint32_t *exp_id; float *exp_d; int exp_n, exp_cap;     /* expanded nodes (build only) */
    float *occl; int occl_cap;                              /* occlusion factors */
    uint32_t *ids; float *ds; int list_cap;                 /* re-prune lists */
    void *sortbuf; int sort_cap;                            /* (distance, id) sort space */
} scratch_t;

static void scratch_free(scratch_t *s) {
    free(s->visited); free(s->pid); free(s->pd); free(s->pexp); free(s->exp_id);
    free(s->exp_d); free(s->occl); free(s->ids); free(s->ds); free(s->sortbuf);
    memset(s, 0, sizeof(*s));
}

/* list_cap bounds every candidate list handled by prune_core (maxc, or slack * R + 1). */
static int scratch_init(scratch_t *s, int64_t n, int L, int list_cap, int build) {
    memset(s, 0, sizeof(*s));
    s->visited = (uint32_t *)calloc((size_t)n, sizeof(uint32_t));
    s->pid = (uint32_t *)malloc((size_t)(L + 1) * sizeof(uint32_t));
    s->pd = (float *)malloc((size_t)(L + 1) * sizeof(float));
    s->pexp = (uint8_t *)malloc((size_t)(L + 1));
    int ok = s->visited && s->pid && s->pd && s->pexp;
    if (build) {
        s->exp_cap = 4 * L + 16;
        s->exp_id = (uint32_t *)malloc((size_t)s->exp_cap * sizeof(uint32_t));
        s->exp_d = (float *)malloc((size_t)s->exp_cap * sizeof(float));
        s->list_cap = list_cap + 1;
        s->occl = (float *)malloc((size_t)s->list_cap * sizeof(float));
        s->ids = (uint32_t *)malloc((size_t)s->list_cap * sizeof(uint32_t));
        s->ds = (float *)malloc((size_t)s->list_cap * sizeof(float));
        ok = ok && s->exp_id && s->exp_d && s->occl && s->ids && s->ds;
    }
    if (!ok) { scratch_free(s); return ANN_ENOMEM; }
    return 0;
}

static int expanded_push(scratch_t *s, uint32_t id, float d) {
    if (s->exp_n == s->exp_cap) {
        int cap = 2 * s->exp_cap;
        uint32_t *ni = (uint32_t *)realloc(s->exp_id, (size_t)cap * sizeof(uint32_t));
        if (!ni) return ANN_ENOMEM;
        s->exp_id = ni;
        float *nd = (float *)realloc(s->exp_d, (size_t)cap * sizeof(float));
        if (!nd) return ANN_ENOMEM;
        s->exp_d = nd;
        s->exp_cap = cap;
    }
    s->exp_id[s->exp_n] = id; s->exp_d[s->exp_n] = d; s->exp_n++;
    return 0;
}

/* iterate_to_fixed_point over the padded neighbour array nbrs (n x cap, deg[i] used).  With
   collect != 0 every expanded node goes to s->exp_*.  Returns hops, or ANN_ENOMEM. */
static int greedy_core(const space_t *sp, const uint32_t *nbrs, const uint32_t *deg, int cap,
                       const void *q, const uint32_t *seeds, int nseeds, int L, scratch_t *s,
                       int collect, int64_t *cmps) {
    int hops = 0;
    s->epoch++;
    s->pn = 0;
    s->exp_n = 0;
    for (int i = 0; i < nseeds; i++) {
        uint32_t id = seeds[i];
        if (s->visited[id] == s->epoch) continue;
        s->visited[id] = s->epoch;
        pool_insert(s->pid, s->pd, s->pexp, &s->pn, L, id, sp->dist(q, row(sp, id), sp->d));
        (*cmps)++;
    }
    int cur = 0;
    for (;;) {
        while (cur < s->pn && s->pexp[cur]) cur++;
        if (cur >= s->pn) break;
        s->pexp[cur] = 1;
        uint32_t node = s->pid[cur];
        hops++;
        if (collect && expanded_push(s, node, s->pd[cur]) != 0) return ANN_ENOMEM;
        const uint32_t *nb = nbrs + (size_t)node * cap;
        int best = s->pn;
        for (uint32_t j = 0; j < deg[node]; j++) {
            uint32_t id = nb[j];
            if (s->visited[id] == s->epoch) continue;
            s->visited[id] = s->epoch;
            float dist = sp->dist(q, row(sp, id), sp->d);
            (*cmps)++;
            int pos = pool_insert(s->pid, s->pd, s->pexp, &s->pn, L, id, dist);
            if (pos < best) best = pos;
        }
        if (best < cur) cur = best;
    }
    return hops;
}

/* ---- run a job array on nthreads pthreads (job t on thread t); inline if creation fails ---- */
static void run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int nthreads) {
    if (nthreads <= 1) { fn(jobs); return; }
    pthread_t *th = (pthread_t *)calloc((size_t)nthreads, sizeof(pthread_t));
    char *started = (char *)calloc((size_t)nthreads, 1);
    for (int t = 0; t < nthreads; t++) {
        void *job = (char *)jobs + (size_t)t * job_size;
        if (th && started && pthread_create(&th[t], NULL, fn, job) == 0) started[t] = 1;
        else fn(job);
    }
    for (int t = 0; t < nthreads; t++) if (started && started[t]) pthread_join(th[t], NULL);
    free(th); free(started);
}

/* ---- search of a batch of queries ---- */
typedef struct {
    const space_t *sp; int64_t n; const uint32_t *nbrs; const uint32_t *deg; int cap;
    const char *queries; int64_t q0, q1; const uint32_t *seeds; int nseeds, seed_stride;
    int L, k; int64_t *out_ids; float *out_d; int32_t *out_hops; int64_t *out_cmps; int err;
} search_job_t;

static void *search_worker(void *arg) {
    search_job_t *j = (search_job_t *)arg;
    scratch_t s;
    if (scratch_init(&s, j->n, j->L, 0, 0) != 0) { j->err = ANN_ENOMEM; return NULL; }
    for (int64_t qi = j->q0; qi < j->q1; qi++) {
        int64_t cmps = 0;
        int hops = greedy_core(j->sp, j->nbrs, j->deg, j->cap,
                               j->queries + (size_t)qi * j->sp->row_bytes,
                               j->seeds + (size_t)qi * j->seed_stride, j->nseeds, j->L, &s, 0,
                               &cmps);
        for (int r = 0; r < j->k; r++) {
            j->out_ids[qi * j->k + r] = r < s.pn ? (int64_t)s.pid[r] : -1;
            j->out_d[qi * j->k + r] = r < s.pn ? s.pd[r] : FLT_MAX;
        }
        j->out_hops[qi] = hops;
        j->out_cmps[qi] = cmps;
    }
    scratch_free(&s);
    return NULL;
}

/* seed_stride 0: every query starts from the same nseeds seeds; else query i uses
   seeds[i * seed_stride ...]. */
int ann_search_batch(const void *data, int64_t n, int d, int dtype, int metric,
                     const uint32_t *nbrs, const uint32_t *deg, int cap, const void *queries,
                     int64_t nq, const uint32_t *seeds, int nseeds, int seed_stride, int L, int k,
                     int64_t *out_ids, float *out_d, int32_t *out_hops, int64_t *out_cmps,
                     int nthreads) {
    space_t sp;
    if (space_init(&sp, data, d, dtype, metric) != 0) return -2;
    if (nq <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > nq) nthreads = (int)nq;
    search_job_t *jobs = (search_job_t *)calloc((size_t)nthreads, sizeof(search_job_t));
    if (!jobs) return ANN_ENOMEM;
    for (int t = 0; t < nthreads; t++) {
        search_job_t *j = &jobs[t];
        j->sp = &sp; j->n = n; j->nbrs = nbrs; j->deg = deg; j->cap = cap;
        j->queries = (const char *)queries; j->q0 = nq * t / nthreads;
        j->q1 = nq * (t + 1) / nthreads; j->seeds = seeds; j->nseeds = nseeds;
        j->seed_stride = seed_stride; j->L = L; j->k = k; j->out_ids = out_ids;
        j->out_d = out_d; j->out_hops = out_hops; j->out_cmps = out_cmps;
    }
    run_jobs(search_worker, jobs, sizeof(search_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) if (jobs[t].err) err = jobs[t].err;
    free(jobs);
    return err;
}

/* ---- RobustPrune: occlude_list.  cand sorted by (distance to node, id), truncated to maxc by
   the caller; occl has room for nc floats.  Returns the number of picks written to out. ---- */
static int prune_core(const space_t *sp, uint32_t node, const uint32_t *cand, const float *cand_d,
                      int nc, float alpha, int R, uint32_t *out, float *occl) {
    for (int t = 0; t < nc; t++) occl[t] = 0.f;
    int nout = 0;
    float cur_alpha = 1.f;
    while (cur_alpha <= alpha && nout < R) {
        float eps = cur_alpha + ANN_IP_EPS;
        for (int i = 0; i < nc && nout < R; i++) {
            if (occl[i] > cur_alpha) continue;
            occl[i] = FLT_MAX;
            if (cand[i] != node) out[nout++] = cand[i];
            const void *pi = row(sp, cand[i]);
            for (int t = i + 1; t < nc; t++) {
                if (occl[t] > alpha) continue;
                float djk = sp->dist(pi, row(sp, cand[t]), sp->d);
                if (sp->metric == ANN_L2) {
                    float f = djk == 0.f ? FLT_MAX : cand_d[t] / djk;
                    if (f > occl[t]) occl[t] = f;
                } else if (-djk > cur_alpha * -cand_d[t]) {
                    if (eps > occl[t]) occl[t] = eps;
                }
            }
        }
        cur_alpha *= ANN_ALPHA_STEP;
    }
    return nout;
}

int ann_robust_prune(const void *data, int d, int dtype, int metric, uint32_t node,
                     const uint32_t *cand, const float *cand_d, int nc, float alpha, int R,
                     int maxc, uint32_t *out) {
    space_t sp;
    if (space_init(&sp, data, d, dtype, metric) != 0) return -2;
    if (nc > maxc) nc = maxc;
    float *occl = (float *)malloc((size_t)(nc + 1) * sizeof(float));
    if (!occl) return ANN_ENOMEM;
    int r = prune_core(&sp, node, cand, cand_d, nc, alpha, R, out, occl);
    free(occl);
    return r;
}

/* Candidates sort by (distance, id): the id tie-break keeps builds deterministic. */
typedef struct { float d; uint32_t id; } cand_t;
static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = (const cand_t *)a, *y = (const cand_t *)b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sort (ids, ds) of length n in place by (distance, id), dropping `self` and duplicates,
   truncated to maxc (occlude_list: pool.resize(maxc)); returns the new length. */
static int sort_candidates(scratch_t *s, uint32_t *ids, float *ds, int n, uint32_t self,
                           int maxc) {
    if (n > s->sort_cap) {
        void *nb = realloc(s->sortbuf, (size_t)n * sizeof(cand_t));
        if (!nb) return ANN_ENOMEM;
        s->sortbuf = nb;
        s->sort_cap = n;
    }
    cand_t *tmp = (cand_t *)s->sortbuf;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] != self) { tmp[m].d = ds[i]; tmp[m].id = ids[i]; m++; }
    qsort(tmp, (size_t)m, sizeof(cand_t), cand_cmp);
    int w = 0;
    for (int i = 0; i < m && w < maxc; i++) {
        if (w > 0 && tmp[i].id == ids[w - 1] && tmp[i].d == ds[w - 1]) continue;
        ids[w] = tmp[i].id; ds[w] = tmp[i].d; w++;
    }
    return w;
}

/* prune_neighbors on an explicit list: distances to node, sort, occlude into nbrs[node]. */
static int reprune(const space_t *sp, uint32_t *nbrs, uint32_t *deg, int cap, uint32_t node,
                   int n, float alpha, int R, int maxc, scratch_t *s) {
    const void *pv = row(sp, node);
    for (int i = 0; i < n; i++) s->ds[i] = sp->dist(pv, row(sp, s->ids[i]), sp->d);
    int m = sort_candidates(s, s->ids, s->ds, n, node, maxc);
    if (m < 0) return m;
    deg[node] = (uint32_t)prune_core(sp, node, s->ids, s->ds, m, alpha, R,
                                     nbrs + (size_t)node * cap, s->occl);
    return 0;
}

/* ---- batched insertion (link) ---- */
typedef struct {
    const space_t *sp; int64_t n; const uint32_t *nbrs; const uint32_t *deg; int cap;
    int R, L, maxc; float alpha; uint32_t medoid; const uint32_t *pts; int64_t i0, i1;
    uint32_t *out; uint32_t *outdeg; int err;
} insert_job_t;

static void *insert_worker(void *arg) {
    insert_job_t *j = (insert_job_t *)arg;
    scratch_t s;
    if (scratch_init(&s, j->n, j->L, j->maxc, 1) != 0) { j->err = ANN_ENOMEM; return NULL; }
    for (int64_t i = j->i0; i < j->i1 && !j->err; i++) {
        uint32_t p = j->pts[i];
        int64_t cmps = 0;
        /* search_for_point_and_prune: search for p from the medoid, prune the expanded set */
        if (greedy_core(j->sp, j->nbrs, j->deg, j->cap, row(j->sp, p), &j->medoid, 1, j->L,
                        &s, 1, &cmps) < 0) { j->err = ANN_ENOMEM; break; }
        int m = sort_candidates(&s, s.exp_id, s.exp_d, s.exp_n, p, j->maxc);
        if (m < 0) { j->err = m; break; }
        j->outdeg[i] = (uint32_t)prune_core(j->sp, p, s.exp_id, s.exp_d, m, j->alpha, j->R,
                                            j->out + (size_t)i * j->R, s.occl);
    }
    scratch_free(&s);
    return NULL;
}

int ann_insert_batch(const void *data, int64_t n, int d, int dtype, int metric, uint32_t *nbrs,
                     uint32_t *deg, int cap, int R, int L, float alpha, int maxc,
                     uint32_t medoid, const uint32_t *pts, int64_t npts, int nthreads) {
    space_t sp;
    if (space_init(&sp, data, d, dtype, metric) != 0) return -2;
    if (npts <= 0) return 0;
    uint32_t *out = (uint32_t *)malloc((size_t)npts * R * sizeof(uint32_t));
    uint32_t *outdeg = (uint32_t *)calloc((size_t)npts, sizeof(uint32_t));
    if (nthreads < 1) nthreads = 1;
    if (nthreads > npts) nthreads = (int)npts;
    insert_job_t *jobs = (insert_job_t *)calloc((size_t)nthreads, sizeof(insert_job_t));
    if (!out || !outdeg || !jobs) { free(out); free(outdeg); free(jobs); return ANN_ENOMEM; }
    for (int t = 0; t < nthreads; t++) {
        insert_job_t *j = &jobs[t];
        j->sp = &sp; j->n = n; j->nbrs = nbrs; j->deg = deg; j->cap = cap; j->R = R; j->L = L;
        j->maxc = maxc; j->alpha = alpha; j->medoid = medoid; j->pts = pts;
        j->i0 = npts * t / nthreads; j->i1 = npts * (t + 1) / nthreads;
        j->out = out; j->outdeg = outdeg;
    }
    run_jobs(insert_worker, jobs, sizeof(insert_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) if (jobs[t].err) err = jobs[t].err;
    free(jobs);
    scratch_t s;
    if (err || scratch_init(&s, 1, 1, cap + 1, 1) != 0) {
        free(out); free(outdeg); return err ? err : ANN_ENOMEM;
    }
    /* serial apply, in batch order: set_neighbours for every point ... */
    for (int64_t i = 0; i < npts; i++) {
        memcpy(nbrs + (size_t)pts[i] * cap, out + (size_t)i * R,
               (size_t)outdeg[i] * sizeof(uint32_t));
        deg[pts[i]] = outdeg[i];
    }
    /* ... then inter_insert: add p to each out-neighbour's list, re-prune past slack * R */
    for (int64_t i = 0; i < npts && !err; i++) {
        uint32_t p = pts[i];
        for (uint32_t e = 0; e < outdeg[i]; e++) {
            uint32_t q = out[(size_t)i * R + e];
            uint32_t *nq = nbrs + (size_t)q * cap;
            uint32_t dq = deg[q], found = 0;
            for (uint32_t x = 0; x < dq; x++) if (nq[x] == p) { found = 1; break; }
            if (found) continue;
            if ((int)dq < cap) { nq[dq] = p; deg[q] = dq + 1; continue; }
            memcpy(s.ids, nq, (size_t)dq * sizeof(uint32_t));
            s.ids[dq] = p;
            err = reprune(&sp, nbrs, deg, cap, q, (int)dq + 1, alpha, R, maxc, &s);
            if (err != 0) break;
        }
    }
    scratch_free(&s);
    free(out); free(outdeg);
    return err;
}

/* ---- final cleanup of link(): prune every list longer than R ---- */
typedef struct {
    const space_t *sp; uint32_t *nbrs; uint32_t *deg; int cap, R, maxc; float alpha;
    int64_t i0, i1; int err;
} final_job_t;

static void *final_worker(void *arg) {
    final_job_t *j = (final_job_t *)arg;
    scratch_t s;
    if (scratch_init(&s, 1, 1, j->cap + 1, 1) != 0) { j->err = ANN_ENOMEM; return NULL; }
    for (int64_t v = j->i0; v < j->i1; v++) {
        if ((int)j->deg[v] <= j->R) continue;
        memcpy(s.ids, j->nbrs + (size_t)v * j->cap, (size_t)j->deg[v] * sizeof(uint32_t));
        int rc = reprune(j->sp, j->nbrs, j->deg, j->cap, (uint32_t)v, (int)j->deg[v], j->alpha,
                         j->R, j->maxc, &s);
        if (rc != 0) { j->err = rc; break; }
    }
    scratch_free(&s);
    return NULL;
}

int ann_final_prune(const void *data, int64_t n, int d, int dtype, int metric, uint32_t *nbrs,
                    uint32_t *deg, int cap, int R, float alpha, int maxc, int nthreads) {
    space_t sp;
    if (space_init(&sp, data, d, dtype, metric) != 0) return -2;
    if (n <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > n) nthreads = (int)n;
    final_job_t *jobs = (final_job_t *)calloc((size_t)nthreads, sizeof(final_job_t));
    if (!jobs) return ANN_ENOMEM;
    for (int t = 0; t < nthreads; t++) {
        final_job_t *j = &jobs[t];
        j->sp = &sp; j->nbrs = nbrs; j->deg = deg; j->cap = cap; j->R = R; j->maxc = maxc;
        j->alpha = alpha; j->i0 = n * t / nthreads; j->i1 = n * (t + 1) / nthreads;
    }
    run_jobs(final_worker, jobs, sizeof(final_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) if (jobs[t].err) err = jobs[t].err;
    free(jobs);
    return err;
}

/* ---- PQ: nearest of the 256 centres in every chunk (DiskANN generate_pq_data_from_pivots /
   math_utils::compute_closest_centers).  cent_tr is the (dim x 256) transpose of the pivots,
   DiskANN's tables_tr, so the inner loop runs over 256 contiguous centres.  Ties go to the
   lower centre index. ---- */
#define ANN_PQ_CENTRES 256
typedef struct {
    const float *x; int dim; const float *ct; const uint32_t *co; int m; uint8_t *codes;
    int64_t r0, r1;
} pq_job_t;

ANN_HOT static void *pq_worker(void *arg) {
    pq_job_t *j = (pq_job_t *)arg;
    float acc[ANN_PQ_CENTRES];
    for (int64_t r = j->r0; r < j->r1; r++) {
        const float *xr = j->x + (size_t)r * j->dim;
        for (int c = 0; c < j->m; c++) {
            for (int k = 0; k < ANN_PQ_CENTRES; k++) acc[k] = 0.f;
            for (uint32_t t = j->co[c]; t < j->co[c + 1]; t++) {
                const float *col = j->ct + (size_t)t * ANN_PQ_CENTRES;
                float v = xr[t];
                for (int k = 0; k < ANN_PQ_CENTRES; k++) {
                    float df = v - col[k];
                    acc[k] += df * df;
                }
            }
            float lo = acc[0];      /* min first (vectorises), then its first index */
            for (int k = 1; k < ANN_PQ_CENTRES; k++) lo = acc[k] < lo ? acc[k] : lo;
            int best = 0;
            while (acc[best] != lo) best++;
            j->codes[(size_t)r * j->m + c] = (uint8_t)best;
        }
    }
    return NULL;
}

int ann_pq_assign(const float *x, int64_t n, int dim, const float *cent_tr,
                  const uint32_t *chunk_offsets, int n_chunks, uint8_t *codes, int nthreads) {
    if (n <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > n) nthreads = (int)n;
    pq_job_t *jobs = (pq_job_t *)calloc((size_t)nthreads, sizeof(pq_job_t));
    if (!jobs) return ANN_ENOMEM;
    for (int t = 0; t < nthreads; t++) {
        pq_job_t *j = &jobs[t];
        j->x = x; j->dim = dim; j->ct = cent_tr; j->co = chunk_offsets; j->m = n_chunks;
        j->codes = codes; j->r0 = n * t / nthreads; j->r1 = n * (t + 1) / nthreads;
    }
    run_jobs(pq_worker, jobs, sizeof(pq_job_t), nthreads);
    free(jobs);
    return 0;
}
"""

#: -O3 with reassociation (so the distance sums vectorise) but without -ffast-math's
#: reciprocal division, which would change occlusion ratios at ties.
_COMPILE_ARGS = ("-O3", "-fno-math-errno", "-fno-signed-zeros", "-fno-trapping-math",
                 "-fassociative-math", "-pthread")


def load_native() -> ModuleType:
    """The compiled kernels (``.ffi``, ``.lib``), built on first use.

    Raises
    ------
    labrig.errors.BackendUnavailable
        cffi or a C compiler is missing, or the build failed.
    """
    return build_module("ann", "_labrig_ann", _CDEF, _SRC, backend="diskann",
                        extra_compile_args=_COMPILE_ARGS, libraries=("pthread",))


def dtype_code(dtype: np.dtype) -> int:
    """The C element-type code of ``dtype`` (uint8, int8 or float32)."""
    try:
        return DTYPE_CODES[np.dtype(dtype)]
    except KeyError:
        raise UsageError(f"dtype {np.dtype(dtype)} is not supported; use uint8, int8 or float32") \
            from None


def metric_code(metric: str) -> int:
    """The C metric code of ``"l2"`` or ``"ip"``."""
    try:
        return METRIC_CODES[metric]
    except KeyError:
        raise UsageError(f"metric {metric!r} is not supported; use 'l2' or 'ip'") from None
