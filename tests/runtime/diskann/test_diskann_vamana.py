"""Vamana build and in-memory search: recall, graph invariants, determinism, RobustPrune."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann import build_vamana, search_memory
from labrig.runtime.diskann._native import load_native
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors, recall_at_k

N, D, NQ = 10_000, 64, 100


@pytest.fixture(scope="module", params=[("uint8", "l2"), ("float32", "l2"), ("float32", "ip")])
def built(request):
    dtype, metric = request.param
    x, q = clustered_vectors(N, D, n_queries=NQ, dtype=np.dtype(dtype), seed=3)
    g = build_vamana(x, metric=metric, R=32, L=64, seed=0)
    _, gt = brute_force_knn(x, q, 10, metric)
    return x, q, g, gt, metric


def test_recall_at_L100_is_at_least_095(built):
    x, q, g, gt, _ = built
    res = search_memory(g, x, q, k=10, L=100)
    assert recall_at_k(res.ids, gt, 10) >= 0.95


def test_results_are_valid_ids_with_sorted_exact_distances(built):
    x, q, g, _, metric = built
    res = search_memory(g, x, q, k=10, L=40)
    assert ((res.ids >= 0) & (res.ids < N)).all()
    assert (np.diff(res.dists, axis=1) >= 0).all()
    xf, qf = x.astype(np.float64), q.astype(np.float64)
    for i in range(5):
        v = xf[res.ids[i]]
        exact = -(v @ qf[i]) if metric == "ip" else ((v - qf[i]) ** 2).sum(1)
        np.testing.assert_allclose(res.dists[i], exact, rtol=1e-3, atol=1e-2)


def test_graph_invariants(built):
    _, _, g, _, _ = built
    assert g.neighbors.shape == (N, 32)
    assert (g.degrees <= 32).all() and (g.degrees >= 1).all()
    for i in range(0, N, 97):
        e = g.edges(i)
        assert i not in e
        assert len(set(e.tolist())) == len(e)
        assert (e < N).all()


def test_same_seed_same_graph_whatever_the_thread_count():
    x, _ = clustered_vectors(2000, 16, seed=1)
    a = build_vamana(x, R=16, L=32, seed=5, threads=1)
    b = build_vamana(x, R=16, L=32, seed=5, threads=2)
    np.testing.assert_array_equal(a.degrees, b.degrees)
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    assert a.medoid == b.medoid


def _occlude_reference(rows, cand, cand_d, alpha, R):
    """DiskANN occlude_list, written plainly."""
    occl = [0.0] * len(cand)
    out = []
    cur = np.float32(1.0)
    while cur <= np.float32(alpha) and len(out) < R:
        for i in range(len(cand)):
            if len(out) >= R:
                break
            if occl[i] > cur:
                continue
            occl[i] = float("inf")
            out.append(cand[i])
            for t in range(i + 1, len(cand)):
                if occl[t] > alpha:
                    continue
                djk = float(((rows[cand[i]] - rows[cand[t]]) ** 2).sum())
                f = float("inf") if djk == 0 else cand_d[t] / djk
                occl[t] = max(occl[t], f)
        cur = np.float32(cur * np.float32(1.2))
    return out


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), R=st.integers(1, 12),
       alpha=st.sampled_from([1.0, 1.2, 1.5, 2.0]))
def test_robust_prune_matches_diskann_occlude_list(seed, n, R, alpha):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 8, size=(n + 1, 3)).astype(np.float32)   # ties and duplicates too
    node = n
    cand = list(range(n))
    d = ((rows[:n] - rows[node]) ** 2).sum(1)
    order = sorted(cand, key=lambda c: (d[c], c))
    cand_d = [float(d[c]) for c in order]
    mod = load_native()
    out = np.zeros(max(R, 1), np.uint32)
    got = mod.lib.ann_robust_prune(mod.ffi.from_buffer("float[]", rows), 3, node,
                                   mod.ffi.from_buffer("uint32_t[]", np.array(order, np.uint32)),
                                   mod.ffi.from_buffer("float[]", np.array(cand_d, np.float32)),
                                   n, alpha, R, mod.ffi.from_buffer("uint32_t[]", out))
    ref = _occlude_reference(rows.astype(np.float64), order, cand_d, alpha, R)
    assert out[:got].tolist() == ref


@pytest.mark.parametrize("kwargs, field", [
    ({"R": 0}, "R"), ({"L": 8, "R": 16}, "L"), ({"alpha": 0.5}, "alpha"),
    ({"metric": "cosine"}, "metric"), ({"threads": 0}, "threads"),
])
def test_bad_parameters_name_the_parameter(kwargs, field):
    x, _ = clustered_vectors(50, 4, seed=0)
    with pytest.raises(ConfigError, match=field):
        build_vamana(x, **kwargs)


@pytest.mark.parametrize("data, words", [
    (np.zeros((10, 4), np.float64), "dtype"),
    (np.zeros(10, np.float32), "2-D"),
    (np.full((10, 4), np.nan, np.float32), "NaN"),
    (np.zeros((0, 4), np.float32), "empty"),
])
def test_bad_data_is_a_usage_error(data, words):
    with pytest.raises(UsageError, match=words):
        build_vamana(data)


def test_search_rejects_mismatched_queries_and_entries():
    x, q = clustered_vectors(200, 8, n_queries=3, seed=0)
    g = build_vamana(x, R=8, L=16)
    with pytest.raises(UsageError, match="dims"):
        search_memory(g, x, q[:, :4], k=1, L=10)
    with pytest.raises(UsageError, match="out of range"):
        search_memory(g, x, q, k=1, L=10, entry=10_000)
    with pytest.raises(ConfigError, match="k"):
        search_memory(g, x, q, k=11, L=10)
