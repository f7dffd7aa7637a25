"""Vector data files, the exact k-NN oracle and synthetic data."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labrig.runtime.search_params import SearchParams, check_params
from labrig.runtime.vecdata import (
    DataFileError,
    brute_force_knn,
    clustered_vectors,
    load_dataset,
    read_bin,
    read_groundtruth,
    read_months,
    read_vecs,
    recall_at_k,
    write_bin,
    write_groundtruth,
    write_vecs,
)

DTYPES = [np.uint8, np.int8, np.float32, np.int32]
SUFFIX = {np.uint8: ".u8bin", np.int8: ".i8bin", np.float32: ".fbin", np.int32: ".ibin"}


@settings(max_examples=25)
@given(st.sampled_from(DTYPES), st.integers(0, 20), st.integers(1, 12), st.data())
def test_bin_round_trip(tmp_path_factory: pytest.TempPathFactory, dtype: type, n: int, d: int,
                        data: st.DataObject) -> None:
    arr = data.draw(hnp.arrays(dtype, (n, d), elements=hnp.from_dtype(np.dtype(dtype),
                                                                         allow_nan=False)))
    p = tmp_path_factory.mktemp("bin") / f"x{SUFFIX[dtype]}"
    write_bin(p, arr)
    back = read_bin(p)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)
    assert np.array_equal(read_bin(p, mmap=True), arr)


@pytest.mark.parametrize("suffix,dtype", [(".fvecs", np.float32), (".bvecs", np.uint8),
                                          (".ivecs", np.int32)])
def test_vecs_round_trip(tmp_path: Path, suffix: str, dtype: type) -> None:
    arr = (np.arange(60) % 97).astype(dtype).reshape(6, 10)
    p = write_vecs(tmp_path / f"a{suffix}", arr)
    assert np.array_equal(read_vecs(p), arr)
    assert read_vecs(p, max_rows=2).shape == (2, 10)


def test_groundtruth_round_trip_with_and_without_distances(tmp_path: Path) -> None:
    ids = np.arange(12).reshape(3, 4)
    dist = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    i2, d2 = read_groundtruth(write_groundtruth(tmp_path / "gt.ibin", ids, dist))
    assert np.array_equal(i2, ids) and np.array_equal(d2, dist)
    i3, d3 = read_groundtruth(write_groundtruth(tmp_path / "gt2.ibin", ids, None))
    assert np.array_equal(i3, ids) and d3 is None


def test_malformed_files_name_file_and_problem(tmp_path: Path) -> None:
    p = write_bin(tmp_path / "x.fbin", np.zeros((10, 4), np.float32))
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(DataFileError, match=r"x\.fbin: .*truncated"):
        read_bin(p)
    (tmp_path / "short.u8bin").write_bytes(b"\x01\x00")
    with pytest.raises(DataFileError, match="shorter than the 8-byte header"):
        read_bin(tmp_path / "short.u8bin")
    (tmp_path / "neg.u8bin").write_bytes(np.array([-1, 4], np.int32).tobytes())
    with pytest.raises(DataFileError, match="bad header"):
        read_bin(tmp_path / "neg.u8bin")
    with pytest.raises(DataFileError, match="no such file"):
        read_bin(tmp_path / "missing.fbin")
    with pytest.raises(DataFileError, match="cannot infer"):
        read_bin(p.with_suffix(".dat"))
    v = write_vecs(tmp_path / "v.fvecs", np.ones((3, 5), np.float32))
    v.write_bytes(v.read_bytes()[:-1])
    with pytest.raises(DataFileError, match="not a multiple of the record size"):
        read_vecs(v)
    (tmp_path / "m.txt").write_text("2020-01\n2020-13\n")
    with pytest.raises(DataFileError, match="line 2"):
        read_months(tmp_path / "m.txt")
    with pytest.raises(DataFileError, match="not a directory"):
        load_dataset(tmp_path / "nope")


def test_load_dataset_folder(tmp_path: Path) -> None:
    base, queries = clustered_vectors(300, 8, dtype=np.int8, n_queries=20, seed=3)
    write_bin(tmp_path / "base.i8bin", base)
    write_bin(tmp_path / "queries.i8bin", queries)
    D, I = brute_force_knn(base, queries, 10)
    write_groundtruth(tmp_path / "groundtruth.ibin", I, D)
    (tmp_path / "base.months.txt").write_text("2020-01\n" * 300)
    ds = load_dataset(tmp_path)
    assert ds.dim == 8 and ds.gt_ids is not None and ds.base_months is not None
    assert recall_at_k(ds.gt_ids, I, 10) == 1.0
    sub = load_dataset(tmp_path, max_base=100)
    assert sub.base.shape == (100, 8) and sub.gt_ids is None


@settings(max_examples=30)
@given(st.integers(1, 60), st.integers(1, 8), st.integers(1, 12), st.sampled_from(["l2", "ip"]),
       st.integers(0, 2**16))
def test_brute_force_matches_definition(n: int, nq: int, k: int, metric: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(-5, 6, size=(n, 3)).astype(np.float32)
    q = rng.integers(-5, 6, size=(nq, 3)).astype(np.float32)
    D, I = brute_force_knn(base, q, k, metric)
    full = ((q[:, None, :] - base[None]) ** 2).sum(-1) if metric == "l2" else -(q @ base.T)
    for r in range(nq):
        order = np.lexsort((np.arange(n), full[r]))[:k]
        assert np.array_equal(I[r, :len(order)], order)
        assert np.allclose(D[r, :len(order)], full[r, order])
        assert (I[r, len(order):] == -1).all() and np.isinf(D[r, len(order):]).all()


def test_synthetic_is_seeded_and_in_range() -> None:
    a, qa = clustered_vectors(500, 16, seed=1, n_queries=5)
    b, _ = clustered_vectors(500, 16, seed=1)
    assert a.dtype == np.uint8 and qa.shape == (5, 16)
    assert not np.array_equal(a, clustered_vectors(500, 16, seed=2)[0])
    assert np.array_equal(a[:100], b[:100]) or a.shape == b.shape


def test_check_params_type() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class A(SearchParams):
        x: int = 1

    @dataclass(frozen=True)
    class B(SearchParams):
        y: int = 2

    assert check_params(None, A, A()) == A()
    assert check_params(A(3), A, A()).x == 3
    with pytest.raises(TypeError, match="expected A, got B"):
        check_params(B(), A, A())
