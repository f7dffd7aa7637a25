"""Vamana build and in-memory search: recall, graph invariants, determinism, RobustPrune."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann import build_vamana, exact_distances, robust_prune, search_memory
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors, recall_at_k

N, D, NQ = 10_000, 64, 100
R_TEST, L_BUILD = 32, 64          # smaller than DiskANN's 64/100 to keep the suite fast


@pytest.fixture(scope="module", params=[("uint8", "l2"), ("float32", "l2"), ("float32", "ip")])
def built(request):
    dtype, metric = request.param
    x, q = clustered_vectors(N, D, n_queries=NQ, dtype=np.dtype(dtype), seed=3)
    g = build_vamana(x, metric=metric, R=R_TEST, L=L_BUILD, seed=0)
    _, gt = brute_force_knn(x, q, 10, metric)
    return x, q, g, gt, metric


def _exact(x, q, ids, metric):
    v, qq = x[ids].astype(np.float64), q.astype(np.float64)
    return -(v @ qq) if metric == "ip" else ((v - qq) ** 2).sum(1)


def test_recall_at_L100_is_at_least_095(built):
    x, q, g, gt, _ = built
    res = search_memory(g, x, q, k=10, L=100)
    assert recall_at_k(res.ids, gt, 10) >= 0.95


def test_results_are_valid_ids_with_sorted_exact_distances(built):
    x, q, g, _, metric = built
    res = search_memory(g, x, q, k=10, L=40, threads=2)
    assert ((res.ids >= 0) & (res.ids < N)).all()
    assert (np.diff(res.dists, axis=1) >= 0).all()
    assert all(len(set(r)) == 10 for r in res.ids.tolist())
    for i in range(10):
        np.testing.assert_allclose(res.dists[i], _exact(x, q[i], res.ids[i], metric),
                                   rtol=1e-4, atol=1e-2)
    assert (res.hops > 0).all() and (res.dist_comps >= res.hops).all()


def test_graph_invariants(built):
    _, _, g, _, _ = built
    assert g.neighbors.shape == (N, R_TEST) and g.neighbors.dtype == np.uint32
    assert g.degrees.dtype == np.uint32
    assert (g.degrees <= R_TEST).all() and (g.degrees >= 1).all()
    mask = np.arange(R_TEST)[None, :] < g.degrees[:, None]
    assert (g.neighbors[mask] < N).all()
    assert (g.neighbors[~mask] == 0).all()                        # padding is zero
    self_loop = (g.neighbors == np.arange(N, dtype=np.uint32)[:, None]) & mask
    assert not self_loop.any()
    srt = np.sort(np.where(mask, g.neighbors.astype(np.int64), -1 - np.arange(R_TEST)), axis=1)
    assert not (np.diff(srt, axis=1) == 0).any()                  # no repeated edge


def test_medoid_is_the_point_nearest_the_mean(built):
    x, _, g, _, _ = built
    xf = x.astype(np.float64)
    dd = ((xf - xf.mean(0)) ** 2).sum(1)
    assert dd[g.medoid] == dd.min()


def test_every_base_point_finds_itself():
    x, _ = clustered_vectors(2000, 16, dtype=np.int8, seed=4)
    x = np.unique(x, axis=0)                                      # self is then the unique best
    g = build_vamana(x, R=16, L=32, seed=1)
    res = search_memory(g, x, x, k=1, L=32)
    assert (res.ids[:, 0] == np.arange(len(x))).mean() >= 0.99


def test_same_seed_same_graph_whatever_the_thread_count():
    x, _ = clustered_vectors(3000, 16, seed=1)
    a = build_vamana(x, R=16, L=32, seed=5, threads=1)
    b = build_vamana(x, R=16, L=32, seed=5, threads=2)
    c = build_vamana(x, R=16, L=32, seed=6, threads=2)
    np.testing.assert_array_equal(a.degrees, b.degrees)
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    assert a.medoid == b.medoid
    assert not np.array_equal(a.neighbors, c.neighbors)


def test_progress_reports_every_point_once_in_order():
    x, _ = clustered_vectors(500, 8, seed=2)
    seen = []
    build_vamana(x, R=8, L=16, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (500, 500)
    assert all(t == 500 for _, t in seen)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})


def test_entry_seeds_shared_or_per_query():
    x, q = clustered_vectors(1000, 8, n_queries=4, dtype=np.float32, seed=0)
    g = build_vamana(x, R=12, L=24)
    base = search_memory(g, x, q, k=5, L=30)
    shared = search_memory(g, x, q, k=5, L=30, entry=np.array([g.medoid, 7]))
    per_q = search_memory(g, x, q, k=5, L=30, entry=np.array([[g.medoid]] * 4))
    np.testing.assert_array_equal(base.ids, per_q.ids)
    assert shared.ids.shape == (4, 5)
    with pytest.raises(UsageError, match="queries"):
        search_memory(g, x, q, k=5, L=30, entry=np.zeros((3, 1), np.int64))


@pytest.mark.parametrize("dtype, lo, hi", [("uint8", 0, 256), ("int8", -128, 128),
                                           ("float32", -1000, 1000)])
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_distance_kernels_are_exact_at_the_extremes(dtype, lo, hi, metric):
    rng = np.random.default_rng(0)
    d = 4096                                                      # sums far beyond int16
    x = rng.integers(lo, hi, size=(6, d)).astype(dtype)
    x[0] = hi - 1
    x[1] = lo
    got = exact_distances(x, x[0], np.arange(6), metric)
    want = _exact(x, x[0], np.arange(6), metric)
    # integer rows sum exactly; only the final conversion to float32 rounds
    atol = 1e-5 * np.abs(want).max() if dtype == "float32" else 0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=atol)


# ---- RobustPrune against a plain transcription of DiskANN occlude_list ----

def _occlude_reference(data, node, cand, alpha, R, maxc, metric):
    """``prune_neighbors`` + ``occlude_list`` in float32 arithmetic, as the C does it."""
    f32 = np.float32
    rows = data.astype(np.float64)

    def dist(a, b):
        if metric == "ip":
            return f32(-(rows[a] @ rows[b]))
        return f32(((rows[a] - rows[b]) ** 2).sum())

    pool = sorted({c for c in cand if c != node}, key=lambda c: (dist(node, c), c))[:maxc]
    pd = [dist(node, c) for c in pool]
    occl = [f32(0)] * len(pool)
    out = []
    cur, alpha = f32(1), f32(alpha)
    big = f32(np.finfo(np.float32).max)                           # FLT_MAX
    while cur <= alpha and len(out) < R:
        eps = f32(cur + f32(0.01))
        for i in range(len(pool)):
            if len(out) >= R:
                break
            if occl[i] > cur:
                continue
            occl[i] = big
            out.append(pool[i])
            for t in range(i + 1, len(pool)):
                if occl[t] > alpha:
                    continue
                djk = dist(pool[i], pool[t])
                if metric == "l2":
                    occl[t] = big if djk == 0 else max(occl[t], f32(pd[t] / djk))
                elif f32(-djk) > f32(cur * f32(-pd[t])):
                    occl[t] = max(occl[t], eps)
        cur = f32(cur * f32(1.2))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 30), R=st.integers(1, 10),
       maxc=st.integers(1, 40), alpha=st.sampled_from([1.0, 1.2, 1.5, 2.0]),
       metric=st.sampled_from(["l2", "ip"]),
       dtype=st.sampled_from(["uint8", "int8", "float32"]))
def test_robust_prune_matches_diskann_occlude_list(seed, n, R, maxc, alpha, metric, dtype):
    rng = np.random.default_rng(seed)
    lo = -4 if dtype != "uint8" else 0
    data = rng.integers(lo, 5, size=(n + 1, 3)).astype(dtype)    # ties and duplicates too
    node = int(rng.integers(0, n + 1))
    cand = rng.integers(0, n + 1, size=int(rng.integers(1, 2 * n + 1)))
    got = robust_prune(data, node, cand, metric=metric, R=R, alpha=alpha, maxc=maxc)
    assert got.tolist() == _occlude_reference(data, node, cand.tolist(), alpha, R, maxc, metric)
    assert len(got) <= R and node not in got.tolist()


# ---- bad input ----

@pytest.mark.parametrize("kwargs, field", [
    ({"R": 0}, "R"), ({"R": 1000}, "R"), ({"L": 8, "R": 16}, "L"), ({"alpha": 0.5}, "alpha"),
    ({"alpha": 9.0}, "alpha"), ({"metric": "cosine"}, "metric"), ({"threads": 0}, "threads"),
    ({"maxc": 4, "R": 8, "L": 8}, "maxc"), ({"seed": -1}, "seed"), ({"R": 2.5}, "R"),
])
def test_bad_parameters_name_the_parameter(kwargs, field):
    x, _ = clustered_vectors(50, 4, seed=0)
    with pytest.raises(ConfigError, match=field):
        build_vamana(x, **kwargs)


@pytest.mark.parametrize("data, words", [
    (np.zeros((10, 4), np.float64), "dtype"),
    (np.zeros(10, np.float32), "2-D"),
    (np.full((10, 4), np.nan, np.float32), "NaN"),
    (np.array([[1.0, np.inf]] * 5, np.float32), "infinite"),
    (np.zeros((0, 4), np.float32), "empty"),
    (np.zeros((10, 8), np.float32)[:, ::2], "contiguous"),
    ([[1, 2], [3, 4]], "numpy"),
])
def test_bad_data_is_a_usage_error(data, words):
    with pytest.raises(UsageError, match=words):
        build_vamana(data)


def test_search_rejects_mismatched_queries_graphs_and_entries():
    x, q = clustered_vectors(200, 8, n_queries=3, seed=0)
    g = build_vamana(x, R=8, L=16)
    with pytest.raises(UsageError, match="dims"):
        search_memory(g, x, q[:, :4].copy(), k=1, L=10)
    with pytest.raises(UsageError, match="dtype"):
        search_memory(g, x, q.astype(np.float32), k=1, L=10)
    with pytest.raises(UsageError, match="out of range"):
        search_memory(g, x, q, k=1, L=10, entry=10_000)
    with pytest.raises(UsageError, match="out of range"):
        search_memory(g, x, q, k=1, L=10, entry=-1)
    with pytest.raises(ConfigError, match="k"):
        search_memory(g, x, q, k=11, L=10)
    with pytest.raises(UsageError, match="rows"):
        search_memory(g, x[:100].copy(), q, k=1, L=10)
    with pytest.raises(UsageError, match="dtype"):
        exact_distances(x, q[0].astype(np.float32), np.arange(3), "l2")
    with pytest.raises(UsageError, match="ids"):
        exact_distances(x, q[0], np.array([0, 200]), "l2")
    with pytest.raises(ConfigError, match="node"):
        robust_prune(x, 200, np.arange(5))
    bad = build_vamana(x, R=8, L=16)
    bad.neighbors[0, 0] = 5000
    with pytest.raises(UsageError, match="out of range"):
        search_memory(bad, x, q, k=1, L=10)
