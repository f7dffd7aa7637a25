"""DiskANN beam search from an emulated SSD and a real file, against the in-memory search."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.block import open_block_device
from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann import build_vamana, search_memory
from labrig.runtime.diskann.beam_search import BeamSearchParams, beam_search
from labrig.runtime.diskann.disk_index import CandidatePool, DiskIndex
from labrig.runtime.diskann.layout import open_disk_index, write_disk_index
from labrig.runtime.diskann.pq import train_pq
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors, recall_at_k

N, D, NQ, K = 10_000, 32, 40, 10


@pytest.fixture(scope="module")
def data():
    x, q = clustered_vectors(N, D, n_queries=NQ, seed=11)
    g = build_vamana(x, R=32, L=64)
    xf = x.astype(np.float32)
    pq = train_pq(xf, n_chunks=16, iters=8)
    _, gt = brute_force_knn(x, q, K)
    return x, q, g, pq, pq.encode(xf), gt


def _index(dev, data, write=True):
    x, _, g, pq, codes, _ = data
    layout = write_disk_index(dev, x, g) if write else open_disk_index(dev, np.uint8)
    return DiskIndex(dev, layout, pq, codes)


def _check_results(res, data):
    x, q = data[0].astype(np.float32), data[1].astype(np.float32)
    assert ((res.ids >= 0) & (res.ids < N)).all()
    assert (np.diff(res.dists, axis=1) >= 0).all()
    for i in range(len(q)):
        np.testing.assert_allclose(res.dists[i], ((x[res.ids[i]] - q[i]) ** 2).sum(1),
                                   rtol=1e-5)
        assert len(set(res.ids[i].tolist())) == K


def test_beam_search_recall_at_L100_on_10k_is_at_least_095(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        res = beam_search(_index(dev, data), data[1], K, params=BeamSearchParams(L=100, W=8))
    assert recall_at_k(res.ids, data[5], K) >= 0.95
    _check_results(res, data)
    # Every read is expanded (nothing is speculative), and each query took device time.
    np.testing.assert_array_equal(res.column("ios"), res.column("hops"))
    assert (res.column("wasted") == 0).all() and (res.column("latency_ns") > 0).all()


def test_in_memory_reference_recall_at_L100_on_10k_is_at_least_095(data):
    x, q, g = data[0], data[1], data[2]
    m = search_memory(g, x, q, k=K, L=100)
    assert recall_at_k(m.ids, data[5], K) >= 0.95
    assert ((m.ids >= 0) & (m.ids < N)).all() and (np.diff(m.dists, axis=1) >= 0).all()


def test_wider_beams_need_fewer_round_trips(data):
    """Same L, W=1 vs W=8: W=8 reads several nodes per device round trip, so it finishes
    sooner in virtual time, at the price of at least as many reads."""
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        ix = _index(dev, data)
        one = beam_search(ix, data[1][:10], K, params=BeamSearchParams(L=40, W=1))
        eight = beam_search(ix, data[1][:10], K, params=BeamSearchParams(L=40, W=8))
    assert eight.column("latency_ns").mean() < one.column("latency_ns").mean()
    assert eight.column("ios").sum() >= one.column("ios").sum()


@pytest.mark.parametrize("lba", [512, 4096])
def test_emulated_ssd_and_real_file_return_identical_results(data, tmp_path, lba):
    params = BeamSearchParams(L=40, W=8)
    with open_block_device(f"emu:nvme?capacity=32M&lba={lba}") as dev:
        a = beam_search(_index(dev, data), data[1], K, params=params)
    path = tmp_path / "idx"
    with open_block_device(f"file:{path}?size=32M&lba={lba}") as dev:
        _index(dev, data)
    with open_block_device(f"file:{path}?lba={lba}") as dev:           # reopened: read back
        b = beam_search(_index(dev, data, write=False), data[1], K, params=params)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.dists, b.dists)
    np.testing.assert_array_equal(a.column("ios"), b.column("ios"))


def test_bad_parameters_and_queries_are_named(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        ix = _index(dev, data)
        with pytest.raises(ConfigError, match="L"):
            beam_search(ix, data[1], K, params=BeamSearchParams(L=5))
        with pytest.raises(ConfigError, match="W"):
            beam_search(ix, data[1], K, params=BeamSearchParams(W=0))
        with pytest.raises(ConfigError, match="W"):
            beam_search(ix, data[1], K, params=BeamSearchParams(W=129))
        with pytest.raises(UsageError, match="dims"):
            beam_search(ix, data[1][:, :5], K)


@settings(max_examples=60, deadline=None)
@given(L=st.integers(1, 12),
       items=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 30)), max_size=60))
def test_candidate_pool_keeps_the_best_L_sorted(L, items):
    """DiskANN ``InsertIntoPool`` semantics: sorted, capped at L, position reported."""
    pool, model = CandidatePool(L), []
    for node, d in items:
        pos = pool.insert(node, float(d))
        if pos < L:
            assert pool.ids[pos] == node and pool.dists[pos] == d
        else:
            assert len(model) >= L and d >= sorted(model)[L - 1]
        model.append(float(d))
        assert pool.dists == sorted(model)[:L]
