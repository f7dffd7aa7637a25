"""Product quantization: ADC vs exact distances, codes round-trip, DiskANN files, bad input."""

import numpy as np
import pytest

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann.pq import (
    METADATA_SIZE,
    PQ_CENTRES,
    PQCodebook,
    pq_file_paths,
    read_pq_files,
    train_pq,
    write_pq_files,
)
from labrig.runtime.vecdata import DataFileError, brute_force_knn, clustered_vectors


@pytest.fixture(scope="module")
def sift_like():
    x, q = clustered_vectors(5000, 64, n_queries=20, seed=2)
    return x, q


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_adc_ranks_the_true_neighbours_high_and_stays_close_to_exact(sift_like, metric):
    x, q = sift_like
    pq = train_pq(x, metric=metric, bytes_per_vector=16, seed=0)
    assert pq.n_chunks == 16 and pq.metric == metric
    codes = pq.encode(x)
    _, gt = brute_force_knn(x, q, 10, metric)
    xf = x.astype(np.float64)
    rel, hit = [], []
    for i in range(len(q)):
        adc = pq.distances(pq.table(q[i]), codes)
        qf = q[i].astype(np.float64)
        exact = -(xf @ qf) if metric == "ip" else ((xf - qf) ** 2).sum(1)
        rel.append(np.mean(np.abs(adc - exact)) / np.mean(np.abs(exact)))
        hit.append(len(set(np.argsort(adc, kind="stable")[:100]) & set(gt[i])) / 10)
    # Stated bounds: mean absolute ADC error under 10% of the mean exact distance, and the true
    # top-10 recalled at >= 0.95 within ADC's top-100 (what DiskANN's re-rank relies on).
    assert np.mean(rel) < 0.10
    assert np.mean(hit) >= 0.95


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_adc_equals_the_exact_distance_to_the_decoded_vector(metric):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 12)).astype(np.float32)
    pq = train_pq(x, metric=metric, n_chunks=5, seed=1)
    codes = pq.encode(x)
    dec = pq.decode(codes).astype(np.float64)
    qv = rng.normal(size=12).astype(np.float32)
    want = -(dec @ qv) if metric == "ip" else ((dec - qv) ** 2).sum(1)
    np.testing.assert_allclose(pq.distances(pq.table(qv), codes), want, rtol=1e-4, atol=1e-4)


def test_l2_is_centred_on_the_mean_and_ip_is_not(sift_like):
    x, _ = sift_like
    l2 = train_pq(x, metric="l2", n_chunks=4, iters=1)
    ip = train_pq(x, metric="ip", n_chunks=4, iters=1)
    np.testing.assert_allclose(l2.centre, x.astype(np.float64).mean(0), rtol=1e-5)
    assert not ip.centre.any()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exactly_representable_data_round_trips(metric):
    rng = np.random.default_rng(1)
    protos = rng.integers(-50, 50, size=(PQ_CENTRES // 4, 8)).astype(np.float32)
    x = protos[rng.integers(0, len(protos), 3000)]
    pq = train_pq(x, metric=metric, n_chunks=2, iters=15, seed=0)
    codes = pq.encode(x)
    np.testing.assert_allclose(pq.decode(codes), x, atol=1e-4)
    np.testing.assert_array_equal(pq.encode(pq.decode(codes)), codes)


def test_training_is_deterministic_for_a_seed(sift_like):
    x, _ = sift_like
    a = train_pq(x, n_chunks=8, iters=3, seed=4, threads=1)
    b = train_pq(x, n_chunks=8, iters=3, seed=4, threads=2)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.encode(x[:500]), b.encode(x[:500]))


def test_chunks_cover_every_dimension_larger_ones_first():
    x = np.random.default_rng(0).normal(size=(300, 10)).astype(np.float32)
    pq = train_pq(x, n_chunks=4, iters=2)
    assert pq.chunk_offsets.tolist() == [0, 3, 6, 8, 10]          # DiskANN: 3, 3, 2, 2
    assert train_pq(x, bytes_per_vector=64, iters=1).n_chunks == 10   # clipped to dim


def test_progress_counts_lloyd_rounds():
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    seen = []
    train_pq(x, n_chunks=2, iters=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("kw, field", [
    ({}, "n_chunks"), ({"n_chunks": 2, "bytes_per_vector": 2}, "n_chunks"),
    ({"n_chunks": 0}, "n_chunks"), ({"bytes_per_vector": -3}, "bytes_per_vector"),
    ({"n_chunks": 2, "metric": "cos"}, "metric"), ({"n_chunks": 2, "iters": -1}, "iters"),
    ({"n_chunks": 2, "sample": 0}, "sample"), ({"n_chunks": 2, "threads": 0}, "threads"),
])
def test_bad_budgets_and_parameters_name_the_parameter(kw, field):
    with pytest.raises(ConfigError, match=field):
        train_pq(np.zeros((10, 4), np.float32), **kw)


@pytest.mark.parametrize("data, words", [
    (np.zeros((10, 4), np.float64), "dtype"), (np.zeros((0, 4), np.float32), "non-empty"),
    (np.full((10, 4), np.nan, np.float32), "NaN"),
])
def test_bad_training_data_is_a_usage_error(data, words):
    with pytest.raises(UsageError, match=words):
        train_pq(data, n_chunks=2)


def test_encode_table_and_distances_check_shapes():
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    pq = train_pq(x, n_chunks=2, iters=1)
    with pytest.raises(UsageError, match="dimension"):
        pq.encode(x[:, :4])
    with pytest.raises(UsageError, match="query"):
        pq.table(x[0, :4])
    with pytest.raises(UsageError, match="codes"):
        pq.distances(pq.table(x[0]), np.zeros((3, 5), np.uint8))


# ---- DiskANN files ----

@pytest.fixture()
def saved(tmp_path, sift_like):
    x, _ = sift_like
    pq = train_pq(x, n_chunks=6, iters=2, seed=3)
    codes = pq.encode(x)
    prefix = tmp_path / "index"
    write_pq_files(prefix, pq, codes)
    return prefix, pq, codes


def test_files_round_trip(saved):
    prefix, pq, codes = saved
    pq2, codes2 = read_pq_files(prefix)
    np.testing.assert_array_equal(pq2.centroids, pq.centroids)
    np.testing.assert_array_equal(pq2.centre, pq.centre)
    np.testing.assert_array_equal(pq2.chunk_offsets, pq.chunk_offsets)
    np.testing.assert_array_equal(codes2, codes)
    assert (pq2.dim, pq2.n_chunks) == (pq.dim, pq.n_chunks)


def test_pivots_file_has_diskanns_layout(saved):
    prefix, pq, _ = saved
    pivots, codes_path = pq_file_paths(prefix)
    blob = pivots.read_bytes()
    assert np.frombuffer(blob, "<i4", 2).tolist() == [4, 1]
    offs = np.frombuffer(blob, "<u8", 4, 8).tolist()
    dim, m = pq.dim, pq.n_chunks
    assert offs[0] == METADATA_SIZE
    assert offs[1] == offs[0] + 8 + PQ_CENTRES * dim * 4
    assert offs[2] == offs[1] + 8 + dim * 4
    assert offs[3] == offs[2] + 8 + (m + 1) * 4 == len(blob)
    assert np.frombuffer(blob, "<i4", 2, offs[0]).tolist() == [PQ_CENTRES, dim]
    assert np.frombuffer(blob, "<i4", 2, offs[1]).tolist() == [dim, 1]
    assert np.frombuffer(blob, "<i4", 2, offs[2]).tolist() == [m + 1, 1]
    head = codes_path.read_bytes()[:8]
    assert np.frombuffer(head, "<u4", 2).tolist() == [5000, m]


def _corrupt(path, at, value, dtype):
    blob = bytearray(path.read_bytes())
    blob[at:at + np.dtype(dtype).itemsize] = np.array([value], dtype).tobytes()
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage, words", [
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated"),
    (lambda p: _corrupt(p, 0, 7, "<i4"), "offset table"),
    (lambda p: _corrupt(p, 8, 10**9, "<u8"), "past the end"),
    (lambda p: _corrupt(p, METADATA_SIZE, 255, "<i4"), "pivots"),
    (lambda p: _corrupt(p, len(p.read_bytes()) - 4, 3, "<u4"), "chunk offsets"),
    (lambda p: p.unlink(), "no such file"),
])
def test_corrupted_pivots_file_names_the_file_and_problem(saved, damage, words):
    prefix, _, _ = saved
    pivots, _ = pq_file_paths(prefix)
    damage(pivots)
    with pytest.raises(DataFileError, match=words) as info:
        read_pq_files(prefix)
    assert str(pivots) in str(info.value)


def test_codes_file_must_match_the_pivots(saved, tmp_path):
    prefix, pq, codes = saved
    _, codes_path = pq_file_paths(prefix)
    codes_path.write_bytes(codes_path.read_bytes()[:-3])
    with pytest.raises(DataFileError, match="truncated") as info:
        read_pq_files(prefix)
    assert str(codes_path) in str(info.value)
    other = tmp_path / "other"
    write_pq_files(other, pq)
    pq_file_paths(other)[1].write_bytes(pq_file_paths(prefix)[1].read_bytes()[:8])  # header only
    _corrupt(pq_file_paths(other)[1], 0, 0, "<i4")
    _corrupt(pq_file_paths(other)[1], 4, pq.n_chunks + 1, "<i4")
    with pytest.raises(DataFileError, match="chunks"):
        read_pq_files(other)


def test_codebook_rejects_inconsistent_arrays():
    with pytest.raises(UsageError, match="chunk offsets"):
        PQCodebook(8, 2, np.array([0, 3, 7]), np.zeros((256, 8), np.float32),
                   np.zeros(8, np.float32))
    with pytest.raises(UsageError, match="centroids"):
        PQCodebook(8, 2, np.array([0, 4, 8]), np.zeros((16, 8), np.float32),
                   np.zeros(8, np.float32))
