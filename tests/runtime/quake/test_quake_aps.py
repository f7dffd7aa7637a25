"""APS (OSDI'25 §5): the C loop against a Python transcription of Algorithm 1, and recall
against the target on clustered data, with the paper's estimator and with the calibrated
cap dimension."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labrig.errors import ConfigError
from labrig.runtime.quake import QuakeConfig, QuakeIndex, QuakeParams
from labrig.runtime.quake._aps import aps_probabilities
from labrig.runtime.quake._calibrate import cap_dim_grid
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors, recall_at_k

TARGET = 0.9
# Mean recall over seeds must not fall more than UNDER below the target and not exceed it by
# more than the stated margin (APS stops at the first partition that lifts the estimate past
# the target, so some overshoot is inherent; the paper's Table 5 shows 0.912 at 0.90).
UNDER = 0.01
OVER_PAPER = 0.06        # the paper's estimator (ambient dimension) on these clusters
OVER_CALIBRATED = 0.04   # cap dimension fitted at build time


def _recalls(calibrate: bool, levels: int = 1) -> list[float]:
    out = []
    for seed in range(4):
        x, q = clustered_vectors(6000, 32, n_clusters=32, dtype=np.float32, seed=seed,
                                 n_queries=100)
        _, gi = brute_force_knn(x, q, 10)
        with QuakeIndex(32, QuakeConfig(n_workers=2, levels=levels,
                                         calibrate_cap_dim=calibrate)) as ix:
            ix.build(x)
            _, got = ix.search(q, 10, params=QuakeParams(recall_target=TARGET))
        out.append(recall_at_k(got, gi, 10))
    return out


@pytest.mark.parametrize(("calibrate", "over"), [(False, OVER_PAPER), (True, OVER_CALIBRATED)])
def test_aps_meets_recall_target_on_average(calibrate: bool, over: float) -> None:
    r = float(np.mean(_recalls(calibrate)))
    assert TARGET - UNDER <= r <= TARGET + over, r


def test_aps_on_two_levels_meets_target() -> None:
    r = float(np.mean(_recalls(True, levels=2)))
    assert TARGET - UNDER <= r <= TARGET + OVER_CALIBRATED, r


def _reference_scans(ix: QuakeIndex, q: np.ndarray, k: int, target: float) -> list[set[int]]:
    """Algorithm 1 in Python on a single-level index: the partition ids each query scans."""
    cfg = ix.config
    pids, cent = ix.centroids(0)
    items = ix.partition_items(0)
    ncand = min(len(pids), max(cfg.min_candidates, math.ceil(cfg.candidate_fraction * len(pids))))
    out = []
    for row in q.astype(np.float64):
        cd = ((cent - row) ** 2).sum(1)
        cand = np.argsort(cd, kind="stable")[:ncand]
        gap = np.linalg.norm(cent[cand[1:]] - cent[cand[0]], axis=1)
        h = (cd[cand[1:]] - cd[cand[0]]) / (2 * gap)
        best: list[float] = []
        scanned = [0]

        def scan(j: int) -> None:
            x, _ = items[int(pids[cand[j]])]
            best.extend(((x - row) ** 2).sum(1).tolist())
            best.sort()
            del best[k:]

        scan(0)
        rho_at, p0, p = -1.0, 1.0, np.zeros(ncand - 1)
        while len(scanned) < ncand:
            if len(best) < k:
                nxt = next(j for j in range(1, ncand) if j not in scanned)
            else:
                rho = math.sqrt(best[k - 1])
                if rho_at < 0 or abs(rho - rho_at) > cfg.recompute_threshold * rho_at:
                    p0, p = aps_probabilities(h, rho, ix._cap)
                    rho_at = rho
                if p0 + sum(p[j - 1] for j in scanned if j) >= target:
                    break
                rest = [j for j in range(1, ncand) if j not in scanned]
                nxt = max(rest, key=lambda j: (p[j - 1], -j))
            scan(nxt)
            scanned.append(nxt)
        out.append({int(pids[cand[j]]) for j in scanned})
    return out


def test_c_aps_follows_algorithm_1() -> None:
    x, q = clustered_vectors(4000, 16, n_clusters=24, dtype=np.float32, seed=9, n_queries=60)
    with QuakeIndex(16, QuakeConfig(n_workers=1)) as ix:
        ix.build(x)
        want = _reference_scans(ix, q, 10, TARGET)
        got = []
        for r in range(len(q)):
            ix.search(q[r:r + 1], 10, params=QuakeParams(recall_target=TARGET))
            got.append(set(ix.tracker._records[-1].tolist()))
    same = sum(a == b for a, b in zip(want, got))
    # float32 (C) vs float64 (reference) distances may flip a recompute decision rarely
    assert same >= 0.95 * len(q), (same, len(q))


def test_cap_dim_grid_and_calibration_choice() -> None:
    grid = cap_dim_grid(64)
    assert grid[0] == 2 and grid[-1] <= 256 and grid == sorted(set(grid))
    x, _ = clustered_vectors(3000, 16, n_clusters=16, dtype=np.float32, seed=1)
    with QuakeIndex(16, QuakeConfig(n_workers=1, calibrate_cap_dim=True)) as ix:
        ix.build(x)
        assert ix.cap_dim in cap_dim_grid(16)
    with QuakeIndex(16, QuakeConfig(n_workers=1, cap_dim=40)) as ix:
        ix.build(x)
        assert ix.cap_dim == 40


def _single_query_recall(n_workers: int, target: float) -> tuple[float, list[set[int]]]:
    """Mean recall and scanned partitions of one-at-a-time queries (the single-query path
    that runs APS on all workers, §6, when n_workers > 1)."""
    x, q = clustered_vectors(6000, 32, n_clusters=32, dtype=np.float32, seed=3, n_queries=80)
    _, gi = brute_force_knn(x, q, 10)
    with QuakeIndex(32, QuakeConfig(n_workers=n_workers,
                                     single_query_parallel="always")) as ix:
        ix.build(x)
        got = np.stack([ix.search(q[r:r + 1], 10, params=QuakeParams(recall_target=target))[1][0]
                        for r in range(len(q))])
        scans = [set(r.tolist()) for r in list(ix.tracker._records)[-len(q):]]
    return recall_at_k(got, gi, 10), scans


def test_parallel_single_query_aps_meets_target_like_sequential() -> None:
    seq, seq_scans = _single_query_recall(1, TARGET)
    par, par_scans = _single_query_recall(2, TARGET)
    assert TARGET - UNDER <= par <= TARGET + OVER_PAPER, (par, seq)
    # both workers start at once, so the parallel loop scans at least the sequential set's
    # size minus one partition in flight when the estimate crosses the target
    assert np.mean([len(p) for p in par_scans]) >= np.mean([len(s) for s in seq_scans]) - 1


def test_parallel_single_query_full_target_is_exact() -> None:
    x, q = clustered_vectors(3000, 16, n_clusters=20, dtype=np.float32, seed=5, n_queries=30)
    _, gi = brute_force_knn(x, q, 10)
    with QuakeIndex(16, QuakeConfig(n_workers=2, candidate_fraction=1.0,
                                     single_query_parallel="always")) as ix:
        ix.build(x)
        for r in range(len(q)):
            _, got = ix.search(q[r:r + 1], 10, params=QuakeParams(recall_target=1.0))
            assert set(got[0].tolist()) == set(gi[r].tolist())


def test_close_joins_the_aps_workers_and_is_idempotent() -> None:
    x, _ = clustered_vectors(500, 8, n_clusters=4, dtype=np.float32, seed=0, n_queries=1)
    ix = QuakeIndex(8, QuakeConfig(n_workers=3))
    ix.build(x)
    ix.search(x[:1], 5)
    ix.close()
    ix.close()


def test_sequential_single_queries_are_deterministic_and_mode_is_checked() -> None:
    x, q = clustered_vectors(3000, 16, n_clusters=20, dtype=np.float32, seed=2, n_queries=40)

    def run() -> tuple[list[list[int]], list[list[int]]]:
        with QuakeIndex(16, QuakeConfig(n_workers=2, single_query_parallel="never")) as ix:
            ix.build(x)
            ids = [ix.search(q[r:r + 1], 10)[1][0].tolist() for r in range(len(q))]
            return ids, [sorted(r.tolist()) for r in ix.tracker._records]

    assert run() == run()
    with pytest.raises(ConfigError, match="single_query_parallel"):
        QuakeConfig(single_query_parallel="sometimes")


def test_nearest_centroids_kernel_orders_by_distance_then_slot() -> None:
    from labrig.runtime.quake._kernel import kernel

    mod = kernel()
    ffi, lib = mod.ffi, mod.lib
    rng = np.random.default_rng(4)
    cent = rng.integers(-3, 4, (53, 8)).astype(np.float32)    # small ints: many exact ties
    cent[10] = cent[3]
    cn = (cent * cent).sum(1, dtype=np.float32)
    q = rng.integers(-3, 4, 8).astype(np.float32)
    want = sorted(range(53), key=lambda j: (float(((cent[j] - q) ** 2).sum()), j))
    for m in (1, 7, 20, 53, 80):
        slots = np.empty(m, np.int32)
        dists = np.empty(m, np.float32)
        got = lib.qk_nearest(ffi.from_buffer("float[]", q), float((q * q).sum()),
                             ffi.from_buffer("float[]", cent), ffi.from_buffer("float[]", cn),
                             53, 8, m, ffi.from_buffer("int32_t[]", slots),
                             ffi.from_buffer("float[]", dists),
                             ffi.from_buffer("float[]", np.empty(2 * 53, np.float32)))
        assert got == min(m, 53)
        assert slots[:got].tolist() == want[:got]
