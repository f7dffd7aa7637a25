"""Workload generators and the ``quake`` experiment (run directly, tiny sizes)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from labrig.errors import UsageError
from labrig.runtime.quake import drifting_workload, month_workload
from labrig.runtime.vecdata import VectorDataset, clustered_vectors, write_bin
from labrig.tools.experiments import quake as quake_exp
from labrig.tools.results import RunContext

TINY = dict(d=8, n_initial=600, steps=3, inserts_per_step=100, deletes_per_step=80,
            queries_per_step=20, n_clusters=12)


def _ids_consistent(wl: object) -> None:
    live = set(wl.base_ids.tolist())  # type: ignore[attr-defined]
    for op in wl.ops:  # type: ignore[attr-defined]
        if op.kind == "insert":
            assert not live & set(op.ids.tolist())
            live |= set(op.ids.tolist())
        elif op.kind == "delete":
            assert set(op.ids.tolist()) <= live
            live -= set(op.ids.tolist())
    assert live


def test_drifting_workload_is_seeded_and_consistent() -> None:
    a, b = drifting_workload(seed=3, **TINY), drifting_workload(seed=3, **TINY)
    assert [o.kind for o in a.ops] == ["insert", "delete", "query"] * 3
    for x, y in zip(a.ops, b.ops):
        for f in ("vectors", "ids"):
            u, v = getattr(x, f), getattr(y, f)
            assert (u is None and v is None) or np.array_equal(u, v)
    _ids_consistent(a)
    # the last inserts come from clusters the build never saw: the mean moves
    first, last = a.ops[0].vectors, a.ops[-3].vectors
    assert np.linalg.norm(first.mean(0) - last.mean(0)) > 0


def _months_ds(n: int = 1200, nq: int = 60) -> VectorDataset:
    x, q = clustered_vectors(n, 8, dtype=np.int8, seed=1, n_queries=nq)
    rng = np.random.default_rng(0)
    base_months = np.sort(rng.integers(24_000, 24_040, n)).astype(np.int32)
    return VectorDataset("toy", x, q, base_months=base_months,
                         query_months=rng.integers(24_000, 24_040, nq).astype(np.int32))


def test_month_workload_arrives_in_month_order() -> None:
    ds = _months_ds()
    wl = month_workload(ds, steps=4, queries_per_step=10)
    _ids_consistent(wl)
    inserts = [o for o in wl.ops if o.kind == "insert"]
    assert sum(len(o.ids) for o in inserts) + len(wl.base_ids) == len(ds.base)
    with pytest.raises(UsageError, match="months"):
        month_workload(VectorDataset("x", ds.base, ds.queries), steps=2)


def test_experiment_quick_runs_all_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quake_exp, "QUICK_SYNTH", TINY)
    res = quake_exp.run(RunContext(quick=True, progress=False, out_dir=tmp_path))
    systems = {r["system"] for r in res.rows}
    assert "quake" in systems
    metrics = {h.metric for h in res.headline}
    assert "quake_recall_max_abs_deviation" in metrics
    for row in res.rows:
        assert 0.0 <= row["recall_mean"] <= 1.0 and row["total_s"] > 0


def test_experiment_without_peers_says_how_to_install(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quake_exp, "QUICK_SYNTH", TINY)
    monkeypatch.setitem(sys.modules, "faiss", None)
    monkeypatch.setitem(sys.modules, "hnswlib", None)
    res = quake_exp.run(RunContext(quick=True, progress=False, out_dir=tmp_path))
    assert [r["system"] for r in res.rows] == ["quake", "quake-calibrated"]
    assert any("pip install 'labrig[bench]'" in n for n in res.notes)


def test_experiment_with_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _months_ds()
    folder = tmp_path / "toy"
    folder.mkdir()
    write_bin(folder / "base.i8bin", ds.base)
    write_bin(folder / "queries.i8bin", ds.queries)
    for name, m in (("base", ds.base_months), ("queries", ds.query_months)):
        (folder / f"{name}.months.txt").write_text(
            "\n".join(f"{v // 12:04d}-{v % 12 + 1:02d}" for v in m.tolist()) + "\n")
    monkeypatch.setattr(quake_exp, "QUICK_MONTHS", dict(steps=3, queries_per_step=10,
                                                        max_base=None))
    monkeypatch.setitem(sys.modules, "hnswlib", None)
    res = quake_exp.run(RunContext(quick=True, progress=False, out_dir=tmp_path / "o",
                                   data=folder))
    assert {r["workload"] for r in res.rows} == {"toy-months"}
