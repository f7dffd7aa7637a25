"""The ``waferllm-gemm`` experiment is registered and produces headlines, rows and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

import labrig.tools.experiments.waferllm_gemm as exp
from labrig.tools.experiments import get_experiment
from labrig.tools.results import RunContext


def test_registered() -> None:
    assert get_experiment("waferllm-gemm").run is exp.run


def test_small_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exp, "QUICK_P", (4, 8))
    monkeypatch.setattr(exp, "QUICK_TILES", (1, 2))
    res = exp.run(RunContext(quick=True, progress=False, out_dir=tmp_path))
    metrics = {h.metric: h.measured for h in res.headline}
    assert metrics["pipeline_gemv_over_meshgemv_P8"] > 1
    assert metrics["cannon_over_meshgemm_shift_P8"] > 1
    assert any(r["system"] == "summa" for r in res.rows)
    res.to_json()
    for plot in res.plots:
        assert Path(plot).exists()


@pytest.mark.slow
def test_quick_run(tmp_path: Path) -> None:
    res = exp.run(RunContext(quick=True, progress=False, out_dir=tmp_path))
    assert len(res.headline) == 7
