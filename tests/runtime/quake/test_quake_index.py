"""QuakeIndex behaviour: exactness, APS recall, maintenance invariants, persistence, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.runtime.quake import (CostModel, QuakeConfig, QuakeFileError, QuakeIndex,
                                  QuakeParams, ScanLatency)
from labrig.runtime.search_params import SearchParams
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors

D = 16


def _index(x: np.ndarray, **cfg: object) -> QuakeIndex:
    ix = QuakeIndex(x.shape[1], QuakeConfig(n_workers=2, **cfg))  # type: ignore[arg-type]
    ix.build(x)
    return ix


def _data(n: int, seed: int, nq: int = 50) -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(n, D, n_clusters=16, dtype=np.float32, seed=seed, n_queries=nq)


def _check_exact(ix: QuakeIndex, ids: np.ndarray, x: np.ndarray, q: np.ndarray, k: int) -> None:
    gd, gi = brute_force_knn(x, q, k)
    dist, got = ix.search(q, k, params=QuakeParams(nprobe=ix.nlist))
    np.testing.assert_allclose(dist[:, :min(k, len(x))], gd[:, :min(k, len(x))],
                               rtol=1e-4, atol=1e-2)
    # ids agree wherever distances are not tied
    assert set(got[got >= 0].ravel()) <= set(ids.tolist())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400), st.integers(1, 12), st.integers(0, 10_000))
def test_full_nprobe_equals_brute_force(n: int, k: int, seed: int) -> None:
    x, q = _data(n, seed, nq=7)
    with _index(x, nlist=max(1, n // 40)) as ix:
        dist, got = ix.search(q, k, params=QuakeParams(nprobe=ix.nlist))
        assert dist.shape == got.shape == (7, k)
        assert dist.dtype == np.float32 and got.dtype == np.int64
        gd, _ = brute_force_knn(x, q, min(k, n))
        np.testing.assert_allclose(dist[:, :min(k, n)], gd, rtol=1e-4, atol=1e-2)
        if k > n:
            assert np.all(got[:, n:] == -1) and np.all(np.isinf(dist[:, n:]))


def _forcing_model(ix: QuakeIndex, kind: str) -> None:
    """Replace λ so that every partition wants to split (convex) or merge (big constant)."""
    if kind == "split":
        lam = ScanLatency([0, 10, 100, 1000], [0.0, 1e-6, 1e-3, 1.0])
    else:  # linear: merging an unvisited partition saves one centroid scan
        lam = ScanLatency([0, 1, 10_000], [0.0, 1e-3, 10.0])
    ix.cost = CostModel(lam, ix.config.alpha)
    ix._lam = lam


@pytest.mark.parametrize("kind", ["split", "merge"])
def test_maintenance_preserves_ids_and_vectors(kind: str) -> None:
    x, q = _data(3000, 7)
    with _index(x, nlist=20, min_partition_size=8, refinement_radius=4) as ix:
        hot = q if kind == "split" else q[:1]   # merge: one hot partition, the rest cold
        ix.search(hot, 5, params=QuakeParams(nprobe=1))
        before = ix.nlist
        _forcing_model(ix, kind)
        rep = ix.maintenance()
        if kind == "split":
            assert rep.splits > 0
        else:
            assert rep.merges > 0 and ix.nlist < before
        assert np.array_equal(ix.ids(), np.arange(3000))
        np.testing.assert_array_equal(ix.get_vectors(np.arange(3000)), x)
        assert sum(ix.partition_sizes().values()) == 3000
        _check_exact(ix, np.arange(3000), x, q, 10)


def test_split_rejected_when_verification_fails() -> None:
    x, q = _data(2000, 3)
    with _index(x, nlist=10) as ix:
        ix.search(q, 5)
        lam = ScanLatency([0, 1, 10_000], [0.0, 1e-9, 1e-5])   # linear: a split never pays
        ix.cost, ix._lam = CostModel(lam, 1.0), lam
        rep = ix.maintenance()
        assert rep.splits == 0 and ix.nlist == 10


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "query", "maint"]),
                          st.integers(0, 2 ** 16)), min_size=1, max_size=12))
def test_removed_ids_never_come_back(steps: list[tuple[str, int]]) -> None:
    x, q = _data(800, 11, nq=10)
    live = dict(enumerate(x))
    removed: set[int] = set()
    next_id = 800
    with _index(x, nlist=8, maintenance_every=50, min_partition_size=4) as ix:
        for kind, s in steps:
            rng = np.random.default_rng(s)
            if kind == "add":
                v = rng.standard_normal((20, D)).astype(np.float32)
                ids = np.arange(next_id, next_id + 20)
                ix.add(v, ids)
                live.update(zip(ids.tolist(), v))
                next_id += 20
            elif kind == "remove" and len(live) > 20:
                gone = rng.choice(sorted(live), 20, replace=False)
                ix.remove(gone)
                for g in gone.tolist():
                    del live[g]
                    removed.add(g)
            elif kind == "maint":
                _forcing_model(ix, "split" if s % 2 else "merge")
                ix.maintenance()
            _, got = ix.search(q, 10, params=QuakeParams(recall_target=0.9))
            assert not removed & set(got.ravel().tolist())
        assert set(ix.ids().tolist()) == set(live)
        keys = np.array(sorted(live))
        np.testing.assert_array_equal(ix.get_vectors(keys), np.stack([live[i] for i in keys]))
        _check_exact(ix, keys, np.stack([live[i] for i in keys]), q, 5)


def test_save_load_identical(tmp_path: Path) -> None:
    x, q = _data(2000, 5)
    with _index(x) as ix:
        ix.remove(np.arange(0, 2000, 7))
        ix.add(x[:10] + 1, np.arange(5000, 5010))
        path = tmp_path / "q.quake"
        ix.save(path)
        with QuakeIndex.load(path) as back:
            for p in (QuakeParams(nprobe=3), QuakeParams(recall_target=0.9)):
                a, b = ix.search(q, 10, params=p), back.search(q, 10, params=p)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
            assert back.ntotal == ix.ntotal and back.nlist == ix.nlist


def test_corrupt_or_truncated_file(tmp_path: Path) -> None:
    x, _ = _data(300, 1)
    with _index(x) as ix:
        path = tmp_path / "q.quake"
        ix.save(path)
    blob = path.read_bytes()
    (tmp_path / "t").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(QuakeFileError, match="checksum|truncated"):
        QuakeIndex.load(tmp_path / "t")
    (tmp_path / "s").write_bytes(blob[:10])
    with pytest.raises(QuakeFileError, match="truncated"):
        QuakeIndex.load(tmp_path / "s")
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "c").write_bytes(bytes(bad))
    with pytest.raises(QuakeFileError, match="checksum"):
        QuakeIndex.load(tmp_path / "c")
    (tmp_path / "m").write_bytes(b"NOTQUAKE" + blob[8:])
    with pytest.raises(QuakeFileError, match="not a Quake index"):
        QuakeIndex.load(tmp_path / "m")
    with pytest.raises(QuakeFileError, match="cannot read"):
        QuakeIndex.load(tmp_path / "missing")


def test_errors() -> None:
    x, q = _data(200, 2)

    @dataclass_frozen
    class Other(SearchParams):
        pass

    with _index(x) as ix:
        with pytest.raises(TypeError, match="expected QuakeParams, got Other"):
            ix.search(q, 5, params=Other())
        with pytest.raises(UsageError, match=r"shape \(3,\)"):
            ix.search(np.zeros(3), 5)
        with pytest.raises(UsageError, match="k=0"):
            ix.search(q, 0)
        with pytest.raises(UsageError, match="already present"):
            ix.add(x[:2], [0, 1])
        with pytest.raises(UsageError, match="not in the index"):
            ix.remove([999_999])
        with pytest.raises(UsageError, match="NaN"):
            ix.add(np.full((1, D), np.nan), [10_000])
    with pytest.raises(UsageError, match="not both"):
        QuakeParams(nprobe=1, recall_target=0.9)
    with pytest.raises(ConfigError, match="recall_target"):
        QuakeParams(recall_target=1.5)
    with pytest.raises(ConfigError, match="n_workers"):
        QuakeConfig(n_workers=0)
    with pytest.raises(UsageError, match="build"):
        QuakeIndex(D).search(q, 1)


def dataclass_frozen(cls: type) -> type:
    from dataclasses import dataclass
    return dataclass(frozen=True)(cls)
