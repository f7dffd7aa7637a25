"""Product quantization: ADC distances approximate exact ones; codes round-trip; bad budgets."""

import numpy as np
import pytest

from labrig.errors import ConfigError
from labrig.runtime.diskann.pq import PQ_CENTRES, train_pq
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors


def test_adc_distance_is_close_to_exact_and_ranks_the_true_neighbours_high():
    x, q = clustered_vectors(5000, 64, n_queries=20, seed=2)
    xf = x.astype(np.float32)
    pq = train_pq(xf, bytes_per_vector=16, seed=0)
    assert pq.n_chunks == 16
    codes = pq.encode(xf)
    _, gt = brute_force_knn(x, q, 10)
    rel, hit = [], []
    for i in range(len(q)):
        adc = pq.distances(pq.table(q[i]), codes)
        exact = ((xf - q[i].astype(np.float32)) ** 2).sum(1)
        rel.append(np.mean(np.abs(adc - exact) / exact))
        hit.append(len(set(np.argsort(adc)[:100]) & set(gt[i])) / 10)
    # Stated bound: mean relative error under 10%, and the true top-10 within ADC's top-100.
    assert np.mean(rel) < 0.10
    assert np.mean(hit) >= 0.95


def test_adc_equals_exact_distance_to_the_decoded_vector():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 12)).astype(np.float32)
    pq = train_pq(x, n_chunks=4, seed=1)
    codes = pq.encode(x)
    dec = pq.decode(codes)
    qv = rng.normal(size=12).astype(np.float32)
    np.testing.assert_allclose(pq.distances(pq.table(qv), codes), ((dec - qv) ** 2).sum(1),
                               rtol=1e-4, atol=1e-4)


def test_exactly_representable_data_round_trips():
    rng = np.random.default_rng(1)
    protos = rng.normal(size=(PQ_CENTRES // 2, 8)).astype(np.float32)
    x = protos[rng.integers(0, len(protos), 3000)]
    pq = train_pq(x, n_chunks=2, iters=20, seed=0)
    np.testing.assert_allclose(pq.decode(pq.encode(x)), x, atol=1e-4)


def test_chunks_cover_every_dimension_with_sizes_within_one():
    x = np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32)
    pq = train_pq(x, n_chunks=4, iters=2)
    sizes = np.diff(pq.chunk_offsets)
    assert sizes.sum() == 10 and sizes.max() - sizes.min() <= 1
    assert train_pq(x, bytes_per_vector=64, iters=1).n_chunks == 10   # clipped to dim


@pytest.mark.parametrize("kw", [{}, {"n_chunks": 2, "bytes_per_vector": 2}, {"n_chunks": 0}])
def test_chunk_budget_must_be_exactly_one_positive_value(kw):
    with pytest.raises(ConfigError):
        train_pq(np.zeros((10, 4), np.float32), **kw)
