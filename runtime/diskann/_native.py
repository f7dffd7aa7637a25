"""The graph kernels in C: greedy search, RobustPrune and the batched Vamana insertion.

These are the loops that decide build and search speed (issue 4: 100k x 128-d in <= 5 min on
two cores), so they are C compiled with cffi at first use (:func:`labrig.cbuild.build_module`);
the Python side only orders batches and checks arguments.  Every kernel works on float32 rows
and squared L2 distance: uint8/int8 data is widened once by the caller, and inner product is
reduced to L2 by DiskANN's MIPS transform (``vamana.mips_transform``).

The algorithms follow DiskANN ``cpp_main`` ``src/index.cpp``:

* ``greedy_search`` is ``iterate_to_fixed_point``: a pool of at most ``L`` candidates sorted by
  distance; repeatedly expand the nearest unexpanded one, inserting its unvisited neighbours.
* ``robust_prune`` is ``occlude_list``: walk the candidates in distance order with
  ``cur_alpha`` = 1, 1.2, 1.44, ... <= alpha; pick a candidate unless some picked ``p`` has
  ``cur_alpha * d(p, c) < d(node, c)`` (squared distances, as DiskANN), at most ``R`` picks.
* ``vamana_insert_batch`` is ``link()`` made deterministic the ParlayANN way: every point of a
  batch searches and prunes against the graph frozen at the start of the batch (in parallel,
  threads own contiguous slices), then out-edges and reverse edges (``inter_insert``, re-prune
  when a list would exceed ``slack * R``) are applied serially in batch order.  Same seed, same
  graph, whatever the thread count.
"""

from __future__ import annotations

from types import ModuleType

from labrig.cbuild import build_module

__all__ = ["load_native"]

_CDEF = """
int ann_greedy_search(const float *data, int64_t n, int d, const uint32_t *nbrs,
                      const uint32_t *deg, int cap, const float *q, const uint32_t *seeds,
                      int nseeds, int L, uint32_t *visited, uint32_t epoch,
                      uint32_t *pool_id, float *pool_d, uint8_t *pool_exp, int *pool_n,
                      int64_t *cmps);
int ann_search_batch(const float *data, int64_t n, int d, const uint32_t *nbrs,
                     const uint32_t *deg, int cap, const float *queries, int64_t nq,
                     const uint32_t *seeds, int nseeds, int L, int k, int64_t *out_ids,
                     float *out_d, int32_t *out_hops, int64_t *out_cmps, int nthreads);
int ann_robust_prune(const float *data, int d, uint32_t node, const uint32_t *cand,
                     const float *cand_d, int nc, float alpha, int R, uint32_t *out);
int ann_insert_batch(const float *data, int64_t n, int d, uint32_t *nbrs, uint32_t *deg,
                     int cap, int R, int L, float alpha, int maxc, uint32_t medoid,
                     const uint32_t *pts, int64_t npts, int nthreads);
int ann_final_prune(const float *data, int64_t n, int d, uint32_t *nbrs, uint32_t *deg,
                    int cap, int R, float alpha, int maxc, int nthreads);
"""

_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <pthread.h>

static inline float l2sq(const float *a, const float *b, int d) {
    float s = 0.f;
    for (int i = 0; i < d; i++) { float t = a[i] - b[i]; s += t * t; }
    return s;
}

/* Insert (id, dist) into the sorted pool of capacity L; returns its position or L when the
   pool is full and the candidate is no better than the worst (DiskANN InsertIntoPool). */
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

/* iterate_to_fixed_point.  visited[] holds epochs so it is never cleared.  When expanded_id is
   not NULL every expanded node is appended there (the build's candidate pool).  Returns the
   number of hops (expansions). */
static int greedy_core(const float *data, int d, const uint32_t *nbrs, const uint32_t *deg,
                       int cap, const float *q, const uint32_t *seeds, int nseeds, int L,
                       uint32_t *visited, uint32_t epoch, uint32_t *pid, float *pd,
                       uint8_t *pexp, int *pn, int64_t *cmps,
                       uint32_t **exp_id, float **exp_d, int *exp_n, int *exp_cap) {
    int hops = 0;
    *pn = 0;
    for (int s = 0; s < nseeds; s++) {
        uint32_t id = seeds[s];
        if (visited[id] == epoch) continue;
        visited[id] = epoch;
        pool_insert(pid, pd, pexp, pn, L, id, l2sq(q, data + (int64_t)id * d, d));
        (*cmps)++;
    }
    int cur = 0;
    for (;;) {
        while (cur < *pn && pexp[cur]) cur++;
        if (cur >= *pn) break;
        pexp[cur] = 1;
        uint32_t node = pid[cur];
        float nd = pd[cur];
        hops++;
        if (exp_id != NULL) {
            if (*exp_n == *exp_cap) {
                *exp_cap *= 2;
                *exp_id = (uint32_t *)realloc(*exp_id, (size_t)*exp_cap * sizeof(uint32_t));
                *exp_d = (float *)realloc(*exp_d, (size_t)*exp_cap * sizeof(float));
            }
            (*exp_id)[*exp_n] = node; (*exp_d)[*exp_n] = nd; (*exp_n)++;
        }
        const uint32_t *nb = nbrs + (int64_t)node * cap;
        int best = *pn;
        for (uint32_t j = 0; j < deg[node]; j++) {
            uint32_t id = nb[j];
            if (visited[id] == epoch) continue;
            visited[id] = epoch;
            float dist = l2sq(q, data + (int64_t)id * d, d);
            (*cmps)++;
            int pos = pool_insert(pid, pd, pexp, pn, L, id, dist);
            if (pos < best) best = pos;
        }
        if (best < cur) cur = best;
    }
    return hops;
}

int ann_greedy_search(const float *data, int64_t n, int d, const uint32_t *nbrs,
                      const uint32_t *deg, int cap, const float *q, const uint32_t *seeds,
                      int nseeds, int L, uint32_t *visited, uint32_t epoch,
                      uint32_t *pool_id, float *pool_d, uint8_t *pool_exp, int *pool_n,
                      int64_t *cmps) {
    (void)n;
    return greedy_core(data, d, nbrs, deg, cap, q, seeds, nseeds, L, visited, epoch,
                       pool_id, pool_d, pool_exp, pool_n, cmps, NULL, NULL, NULL, NULL);
}

/* ---- per-thread scratch ---- */
typedef struct {
    uint32_t *visited; uint32_t epoch;
    uint32_t *pid; float *pd; uint8_t *pexp;
    uint32_t *exp_id; float *exp_d; int exp_cap;
    uint32_t *cand; float *cand_d; float *occl;
} scratch_t;

static int scratch_init(scratch_t *s, int64_t n, int L, int maxc) {
    memset(s, 0, sizeof(*s));
    s->visited = (uint32_t *)calloc((size_t)n, sizeof(uint32_t));
    s->pid = (uint32_t *)malloc((size_t)(L + 1) * sizeof(uint32_t));
    s->pd = (float *)malloc((size_t)(L + 1) * sizeof(float));
    s->pexp = (uint8_t *)malloc((size_t)(L + 1));
    s->exp_cap = 4 * L + 16;
    s->exp_id = (uint32_t *)malloc((size_t)s->exp_cap * sizeof(uint32_t));
    s->exp_d = (float *)malloc((size_t)s->exp_cap * sizeof(float));
    int cc = maxc + 1;
    s->cand = (uint32_t *)malloc((size_t)cc * sizeof(uint32_t));
    s->cand_d = (float *)malloc((size_t)cc * sizeof(float));
    s->occl = (float *)malloc((size_t)cc * sizeof(float));
    return s->visited && s->pid && s->pd && s->pexp && s->exp_id && s->exp_d && s->cand
           && s->cand_d && s->occl ? 0 : -1;
}

static void scratch_free(scratch_t *s) {
    free(s->visited); free(s->pid); free(s->pd); free(s->pexp); free(s->exp_id);
    free(s->exp_d); free(s->cand); free(s->cand_d); free(s->occl);
}

/* ---- search of a batch of queries ---- */
typedef struct {
    const float *data; int64_t n; int d; const uint32_t *nbrs; const uint32_t *deg; int cap;
    const float *queries; int64_t q0, q1; const uint32_t *seeds; int nseeds; int L; int k;
    int64_t *out_ids; float *out_d; int32_t *out_hops; int64_t *out_cmps; int err;
} search_job_t;

static void *search_worker(void *arg) {
    search_job_t *j = (search_job_t *)arg;
    scratch_t s;
    if (scratch_init(&s, j->n, j->L, 1) != 0) { j->err = -1; scratch_free(&s); return NULL; }
    int pn = 0;
    for (int64_t qi = j->q0; qi < j->q1; qi++) {
        s.epoch++;
        int64_t cmps = 0;
        const uint32_t *sd = j->seeds + qi * j->nseeds;
        int hops = greedy_core(j->data, j->d, j->nbrs, j->deg, j->cap,
                               j->queries + qi * j->d, sd, j->nseeds, j->L, s.visited,
                               s.epoch, s.pid, s.pd, s.pexp, &pn, &cmps,
                               NULL, NULL, NULL, NULL);
        for (int r = 0; r < j->k; r++) {
            j->out_ids[qi * j->k + r] = r < pn ? (int64_t)s.pid[r] : -1;
            j->out_d[qi * j->k + r] = r < pn ? s.pd[r] : FLT_MAX;
        }
        j->out_hops[qi] = hops;
        j->out_cmps[qi] = cmps;
    }
    scratch_free(&s);
    return NULL;
}

static int run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int nthreads) {
    if (nthreads <= 1) { fn(jobs); return 0; }
    pthread_t *th = (pthread_t *)malloc((size_t)nthreads * sizeof(pthread_t));
    if (!th) return -1;
    int started = 0;
    for (int t = 0; t < nthreads; t++) {
        if (pthread_create(&th[t], NULL, fn, (char *)jobs + t * job_size) != 0) {
            fn((char *)jobs + t * job_size);  /* run inline if a thread cannot start */
            th[t] = 0;
        } else started++;
    }
    for (int t = 0; t < nthreads; t++) if (th[t]) pthread_join(th[t], NULL);
    free(th);
    (void)started;
    return 0;
}

int ann_search_batch(const float *data, int64_t n, int d, const uint32_t *nbrs,
                     const uint32_t *deg, int cap, const float *queries, int64_t nq,
                     const uint32_t *seeds, int nseeds, int L, int k, int64_t *out_ids,
                     float *out_d, int32_t *out_hops, int64_t *out_cmps, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > nq) nthreads = nq > 0 ? (int)nq : 1;
    search_job_t *jobs = (search_job_t *)calloc((size_t)nthreads, sizeof(search_job_t));
    if (!jobs) return -1;
    for (int t = 0; t < nthreads; t++) {
        search_job_t *j = &jobs[t];
        j->data = data; j->n = n; j->d = d; j->nbrs = nbrs; j->deg = deg; j->cap = cap;
        j->queries = queries; j->q0 = nq * t / nthreads; j->q1 = nq * (t + 1) / nthreads;
        j->seeds = seeds; j->nseeds = nseeds; j->L = L; j->k = k; j->out_ids = out_ids;
        j->out_d = out_d; j->out_hops = out_hops; j->out_cmps = out_cmps;
    }
    run_jobs(search_worker, jobs, sizeof(search_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) err |= jobs[t].err;
    free(jobs);
    return err;
}

/* ---- RobustPrune (occlude_list) ---- */
static int prune_core(const float *data, int d, const uint32_t *cand, const float *cand_d,
                      int nc, float alpha, int R, uint32_t *out, float *occl) {
    for (int t = 0; t < nc; t++) occl[t] = 0.f;
    int nout = 0;
    float cur_alpha = 1.f;
    while (cur_alpha <= alpha && nout < R) {
        for (int i = 0; i < nc && nout < R; i++) {
            if (occl[i] > cur_alpha) continue;
            occl[i] = FLT_MAX;
            out[nout++] = cand[i];
            const float *pi = data + (int64_t)cand[i] * d;
            for (int t = i + 1; t < nc; t++) {
                if (occl[t] > alpha) continue;
                float djk = l2sq(pi, data + (int64_t)cand[t] * d, d);
                float f = djk == 0.f ? FLT_MAX : cand_d[t] / djk;
                if (f > occl[t]) occl[t] = f;
            }
        }
        cur_alpha *= 1.2f;
    }
    return nout;
}

int ann_robust_prune(const float *data, int d, uint32_t node, const uint32_t *cand,
                     const float *cand_d, int nc, float alpha, int R, uint32_t *out) {
    (void)node;
    float *occl = (float *)malloc((size_t)(nc + 1) * sizeof(float));
    if (!occl) return -1;
    int r = prune_core(data, d, cand, cand_d, nc, alpha, R, out, occl);
    free(occl);
    return r;
}

/* Sort candidates by (distance, id): the id tie-break keeps builds deterministic. */
typedef struct { float d; uint32_t id; } cand_t;
static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = (const cand_t *)a, *y = (const cand_t *)b;
    if (x->d < y->d) return -1;
    if (x->d > y->d) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sort (ids, dists) in place, drop `self`, truncate to maxc; returns the count. */
static int sort_candidates(uint32_t *ids, float *ds, int n, uint32_t self, int maxc,
                           cand_t *tmp) {
    int m = 0;
    for (int i = 0; i < n; i++) if (ids[i] != self) { tmp[m].d = ds[i]; tmp[m].id = ids[i]; m++; }
    qsort(tmp, (size_t)m, sizeof(cand_t), cand_cmp);
    int w = 0;
    for (int i = 0; i < m && w < maxc; i++) {
        if (w > 0 && tmp[i].id == ids[w - 1]) continue;
        ids[w] = tmp[i].id; ds[w] = tmp[i].d; w++;
    }
    return w;
}

/* Prune node's list (ids/ds of length n) to at most R into nbrs[node]. */
static void reprune(const float *data, int d, uint32_t *nbrs, uint32_t *deg, int cap,
                    uint32_t node, uint32_t *ids, float *ds, int n, float alpha, int R,
                    int maxc, float *occl, cand_t *tmp) {
    const float *pv = data + (int64_t)node * d;
    for (int i = 0; i < n; i++) ds[i] = l2sq(pv, data + (int64_t)ids[i] * d, d);
    int m = sort_candidates(ids, ds, n, node, maxc, tmp);
    deg[node] = (uint32_t)prune_core(data, d, ids, ds, m, alpha, R,
                                     nbrs + (int64_t)node * cap, occl);
}

/* ---- batched insertion ---- */
typedef struct {
    const float *data; int64_t n; int d; const uint32_t *nbrs; const uint32_t *deg; int cap;
    int R; int L; float alpha; int maxc; uint32_t medoid; const uint32_t *pts; int64_t i0, i1;
    uint32_t *out; uint32_t *outdeg; int err;
} insert_job_t;

static void *insert_worker(void *arg) {
    insert_job_t *j = (insert_job_t *)arg;
    scratch_t s;
    if (scratch_init(&s, j->n, j->L, j->maxc) != 0) { j->err = -1; scratch_free(&s); return NULL; }
    cand_t *tmp = NULL; int tmp_cap = 0;
    int pn = 0;
    for (int64_t i = j->i0; i < j->i1; i++) {
        uint32_t p = j->pts[i];
        s.epoch++;
        int64_t cmps = 0;
        int en = 0;
        greedy_core(j->data, j->d, j->nbrs, j->deg, j->cap, j->data + (int64_t)p * j->d,
                    &j->medoid, 1, j->L, s.visited, s.epoch, s.pid, s.pd, s.pexp, &pn, &cmps,
                    &s.exp_id, &s.exp_d, &en, &s.exp_cap);
        if (en > tmp_cap) { tmp_cap = s.exp_cap; tmp = (cand_t *)realloc(tmp, (size_t)tmp_cap * sizeof(cand_t)); }
        int m = sort_candidates(s.exp_id, s.exp_d, en, p, j->maxc, tmp);
        j->outdeg[i] = (uint32_t)prune_core(j->data, j->d, s.exp_id, s.exp_d, m, j->alpha,
                                            j->R, j->out + i * j->R, s.occl);
    }
    free(tmp);
    scratch_free(&s);
    return NULL;
}

int ann_insert_batch(const float *data, int64_t n, int d, uint32_t *nbrs, uint32_t *deg,
                     int cap, int R, int L, float alpha, int maxc, uint32_t medoid,
                     const uint32_t *pts, int64_t npts, int nthreads) {
    uint32_t *out = (uint32_t *)malloc((size_t)(npts * R + 1) * sizeof(uint32_t));
    uint32_t *outdeg = (uint32_t *)calloc((size_t)npts + 1, sizeof(uint32_t));
    if (!out || !outdeg) { free(out); free(outdeg); return -1; }
    if (nthreads < 1) nthreads = 1;
    if (nthreads > npts) nthreads = (int)npts;
    insert_job_t *jobs = (insert_job_t *)calloc((size_t)nthreads, sizeof(insert_job_t));
    if (!jobs) { free(out); free(outdeg); return -1; }
    for (int t = 0; t < nthreads; t++) {
        insert_job_t *j = &jobs[t];
        j->data = data; j->n = n; j->d = d; j->nbrs = nbrs; j->deg = deg; j->cap = cap;
        j->R = R; j->L = L; j->alpha = alpha; j->maxc = maxc; j->medoid = medoid;
        j->pts = pts; j->i0 = npts * t / nthreads; j->i1 = npts * (t + 1) / nthreads;
        j->out = out; j->outdeg = outdeg;
    }
    run_jobs(insert_worker, jobs, sizeof(insert_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) err |= jobs[t].err;
    free(jobs);
    if (err) { free(out); free(outdeg); return -1; }
    /* serial apply: out-edges, then inter_insert with re-prune beyond cap = slack * R */
    uint32_t *ids = (uint32_t *)malloc((size_t)(cap + 1) * sizeof(uint32_t));
    float *ds = (float *)malloc((size_t)(cap + 1) * sizeof(float));
    float *occl = (float *)malloc((size_t)(cap + 1) * sizeof(float));
    cand_t *tmp = (cand_t *)malloc((size_t)(cap + 1) * sizeof(cand_t));
    if (!ids || !ds || !occl || !tmp) { free(out); free(outdeg); free(ids); free(ds); free(occl); free(tmp); return -1; }
    for (int64_t i = 0; i < npts; i++) {
        uint32_t p = pts[i];
        memcpy(nbrs + (int64_t)p * cap, out + i * R, (size_t)outdeg[i] * sizeof(uint32_t));
        deg[p] = outdeg[i];
    }
    for (int64_t i = 0; i < npts; i++) {
        uint32_t p = pts[i];
        for (uint32_t e = 0; e < outdeg[i]; e++) {
            uint32_t q = out[i * R + e];
            uint32_t *nq = nbrs + (int64_t)q * cap;
            uint32_t dq = deg[q], f = 0;
            for (uint32_t x = 0; x < dq; x++) if (nq[x] == p) { f = 1; break; }
            if (f) continue;
            if ((int)dq < cap) { nq[dq] = p; deg[q] = dq + 1; continue; }
            memcpy(ids, nq, (size_t)dq * sizeof(uint32_t));
            ids[dq] = p;
            reprune(data, d, nbrs, deg, cap, q, ids, ds, (int)dq + 1, alpha, R, maxc, occl, tmp);
        }
    }
    free(ids); free(ds); free(occl); free(tmp); free(out); free(outdeg);
    return 0;
}

/* ---- final pass: prune every list longer than R ---- */
typedef struct {
    const float *data; int d; uint32_t *nbrs; uint32_t *deg; int cap; int R; float alpha;
    int maxc; int64_t i0, i1; int err;
} final_job_t;

static void *final_worker(void *arg) {
    final_job_t *j = (final_job_t *)arg;
    uint32_t *ids = (uint32_t *)malloc((size_t)(j->cap + 1) * sizeof(uint32_t));
    float *ds = (float *)malloc((size_t)(j->cap + 1) * sizeof(float));
    float *occl = (float *)malloc((size_t)(j->cap + 1) * sizeof(float));
    cand_t *tmp = (cand_t *)malloc((size_t)(j->cap + 1) * sizeof(cand_t));
    if (!ids || !ds || !occl || !tmp) { j->err = -1; }
    else {
        for (int64_t v = j->i0; v < j->i1; v++) {
            if ((int)j->deg[v] <= j->R) continue;
            memcpy(ids, j->nbrs + v * j->cap, (size_t)j->deg[v] * sizeof(uint32_t));
            reprune(j->data, j->d, j->nbrs, j->deg, j->cap, (uint32_t)v, ids, ds,
                    (int)j->deg[v], j->alpha, j->R, j->maxc, occl, tmp);
        }
    }
    free(ids); free(ds); free(occl); free(tmp);
    return NULL;
}

int ann_final_prune(const float *data, int64_t n, int d, uint32_t *nbrs, uint32_t *deg,
                    int cap, int R, float alpha, int maxc, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > n) nthreads = n > 0 ? (int)n : 1;
    final_job_t *jobs = (final_job_t *)calloc((size_t)nthreads, sizeof(final_job_t));
    if (!jobs) return -1;
    for (int t = 0; t < nthreads; t++) {
        final_job_t *j = &jobs[t];
        j->data = data; j->d = d; j->nbrs = nbrs; j->deg = deg; j->cap = cap; j->R = R;
        j->alpha = alpha; j->maxc = maxc; j->i0 = n * t / nthreads; j->i1 = n * (t + 1) / nthreads;
    }
    run_jobs(final_worker, jobs, sizeof(final_job_t), nthreads);
    int err = 0;
    for (int t = 0; t < nthreads; t++) err |= jobs[t].err;
    free(jobs);
    return err;
}
"""

_COMPILE_ARGS = ("-O3", "-ffast-math", "-pthread")


def load_native() -> ModuleType:
    """The compiled kernels (``.ffi``, ``.lib``), built on first use.

    Raises
    ------
    labrig.errors.BackendUnavailable
        cffi or a C compiler is missing, or the build failed.
    """
    return build_module("ann", "_labrig_ann", _CDEF, _SRC, backend="diskann",
                        extra_compile_args=_COMPILE_ARGS, libraries=("pthread",))
