"""Multi-level Quake (OSDI'25 §3): exact search with full nprobe, upper levels that always
hold the centroids of the level below through maintenance, and save/load of every level."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.runtime.quake import (CostModel, QuakeConfig, QuakeFileError, QuakeIndex,
                                  QuakeParams, ScanLatency)
from labrig.runtime.quake._persist import MAGIC
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors

D = 12


def _data(n: int, seed: int, nq: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(n, D, n_clusters=24, dtype=np.float32, seed=seed, n_queries=nq)


def _index(x: np.ndarray, levels: int, **cfg: object) -> QuakeIndex:
    ix = QuakeIndex(D, QuakeConfig(n_workers=2, levels=levels, **cfg))  # type: ignore[arg-type]
    ix.build(x)
    return ix


def _check_levels(ix: QuakeIndex) -> None:
    """Level l+1's items are exactly level l's partitions: same ids, same centroid vectors."""
    for lv in range(1, ix.levels):
        pids, cent = ix.centroids(lv - 1)
        items = ix.partition_items(lv)
        got_ids = np.concatenate([i for _, i in items.values()])
        got_x = np.concatenate([x for x, _ in items.values()])
        order = np.argsort(got_ids)
        np.testing.assert_array_equal(got_ids[order], pids)
        np.testing.assert_array_equal(got_x[order], cent)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(200, 1500), st.integers(1, 12), st.sampled_from([2, 3]),
       st.integers(0, 10_000))
def test_full_nprobe_equals_brute_force_on_every_depth(n: int, k: int, levels: int,
                                                       seed: int) -> None:
    x, q = _data(n, seed, nq=7)
    with _index(x, levels, nlist=max(4, n // 20)) as ix:
        assert ix.levels == levels
        _check_levels(ix)
        dist, got = ix.search(q, k, params=QuakeParams(nprobe=ix.nlist))
        gd, _ = brute_force_knn(x, q, k)
        np.testing.assert_allclose(dist, gd, rtol=1e-4, atol=1e-2)
        assert got.shape == (7, k) and np.all(got >= 0)


def _force(ix: QuakeIndex, kind: str) -> None:
    if kind == "split":   # convex λ: every visited partition wants to split
        lam = ScanLatency([0, 10, 100, 1000], [0.0, 1e-6, 1e-3, 1.0])
    else:                 # linear λ: an unvisited partition saves one centroid scan by merging
        lam = ScanLatency([0, 1, 10_000], [0.0, 1e-3, 10.0])
    ix.cost, ix._lam = CostModel(lam, ix.config.alpha), lam


@pytest.mark.parametrize("kind", ["split", "merge", "delete"])
def test_actions_preserve_ids_and_vectors_at_every_level(kind: str) -> None:
    x, q = _data(3000, 4)
    ids = np.arange(3000)
    with _index(x, 3, nlist=40, min_partition_size=8) as ix:
        ix.search(q if kind != "merge" else q[:1], 5, params=QuakeParams(nprobe=2))
        if kind == "delete":
            gone = np.arange(0, 3000, 3)
            ix.remove(gone)
            ids = np.setdiff1d(ids, gone)
            _force(ix, "merge")
        else:
            _force(ix, kind)
        before = [ix.level_nlist(lv) for lv in range(ix.levels)]
        rep = ix.maintenance()
        if kind == "split":
            assert rep.splits > 0
        else:
            assert rep.merges > 0
        assert [ix.level_nlist(lv) for lv in range(ix.levels)] != before
        np.testing.assert_array_equal(ix.ids(), ids)
        np.testing.assert_array_equal(ix.get_vectors(ids), x[ids])
        _check_levels(ix)
        dist, _ = ix.search(q, 10, params=QuakeParams(nprobe=ix.nlist))
        np.testing.assert_allclose(dist, brute_force_knn(x[ids], q, 10)[0], rtol=1e-4, atol=1e-2)
        _, found = ix.search(q, 10, params=QuakeParams(recall_target=0.9))
        assert set(found.ravel().tolist()) <= set(ids.tolist())


def test_add_level_and_errors() -> None:
    x, q = _data(1000, 2)
    with _index(x, 1, nlist=30) as ix:
        ix.add_level()
        assert ix.levels == 2 and ix.level_nlist(1) == round(30 ** 0.5)
        _check_levels(ix)
        with pytest.raises(UsageError, match="level=5"):
            ix.partition_sizes(5)
    with _index(x[:1], 1) as tiny:
        with pytest.raises(UsageError, match="need at least 2"):
            tiny.add_level()


def test_save_load_identical_multilevel(tmp_path: Path) -> None:
    x, q = _data(2500, 6)
    with _index(x, 3, nlist=50, min_partition_size=8) as ix:
        ix.search(q, 5)
        _force(ix, "split")
        ix.maintenance()
        ix.remove(np.arange(0, 2500, 11))
        path = tmp_path / "m.quake"
        ix.save(path)
        with QuakeIndex.load(path) as back:
            assert back.levels == 3 and back.cap_dim == ix.cap_dim
            for lv in range(3):
                assert back.partition_sizes(lv) == ix.partition_sizes(lv)
            _check_levels(back)
            for p in (QuakeParams(nprobe=4), QuakeParams(recall_target=0.9)):
                a, b = ix.search(q, 10, params=p), back.search(q, 10, params=p)
                np.testing.assert_array_equal(a[0], b[0])
                np.testing.assert_array_equal(a[1], b[1])
            back.add(x[:3] + 100, [9000, 9001, 9002])   # the loaded hierarchy stays live
            _check_levels(back)


def _write_v1(path: Path, ix: QuakeIndex) -> None:
    """A file in the version-1 (single-level) layout, as labrig wrote before multi-level."""
    from dataclasses import asdict
    cfg = {k: v for k, v in asdict(ix.config).items()
           if k not in ("levels", "upper_recall_target", "cap_dim", "calibrate_cap_dim")}
    lam = ix.scan_latency
    sizes = ix.partition_sizes(0)
    header = {"d": D, "config": cfg, "lambda": [lam.sizes.tolist(), lam.seconds.tolist()],
              "partitions": [[p, sizes[p]] for p in sorted(sizes)],
              "next_pid": max(sizes) + 1}
    hb = json.dumps(header).encode()
    items = ix.partition_items(0)
    pids, cent = ix.centroids(0)
    chunks = [struct.pack("<8sIQ", MAGIC, 1, len(hb)), hb]
    for p, c in zip(pids.tolist(), cent):
        x, i = items[p]
        chunks += [c.astype("<f4").tobytes(), i.astype("<i8").tobytes(), x.astype("<f4").tobytes()]
    blob = b"".join(chunks)
    path.write_bytes(blob + struct.pack("<I", zlib.crc32(blob)))


def test_version_1_file_still_loads_and_unknown_version_is_named(tmp_path: Path) -> None:
    x, q = _data(800, 8)
    with _index(x, 1) as ix:
        _write_v1(tmp_path / "v1.quake", ix)
        with QuakeIndex.load(tmp_path / "v1.quake") as back:
            assert back.levels == 1
            a, b = ix.search(q, 5, params=QuakeParams(nprobe=3)), back.search(
                q, 5, params=QuakeParams(nprobe=3))
            np.testing.assert_array_equal(a[1], b[1])
        ix.save(tmp_path / "v2.quake")
    blob = bytearray((tmp_path / "v2.quake").read_bytes())
    blob[8:12] = struct.pack("<I", 99)
    body = bytes(blob[:-4])
    (tmp_path / "v99.quake").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(QuakeFileError, match="format version 99; this labrig reads versions 1, 2"):
        QuakeIndex.load(tmp_path / "v99.quake")


def test_nearly_empty_hierarchy_still_answers() -> None:
    x, q = _data(1200, 3)
    with _index(x, 3, nlist=36) as ix:
        keep = np.array([5, 600, 1100])
        ix.remove(np.setdiff1d(np.arange(1200), keep))
        _force(ix, "merge")
        ix.search(q[:2], 3, params=QuakeParams(nprobe=1))
        ix.maintenance()
        _check_levels(ix)
        for p in (QuakeParams(recall_target=0.9), QuakeParams(nprobe=ix.nlist)):
            dist, got = ix.search(q, 5, params=p)
            assert set(got[got >= 0].ravel().tolist()) <= set(keep.tolist())
            assert np.all(got[:, 3:] == -1) and np.all(np.isinf(dist[:, 3:]))
