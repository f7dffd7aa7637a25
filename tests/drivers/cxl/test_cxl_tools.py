"""The cxl-fidelity experiment and the cxl bench run through their registries."""

import json

import pytest

from labrig.tools.bench import get_bench
from labrig.tools.experiments import get_experiment
from labrig.tools.results import RunContext


def test_cxl_fidelity_quick(tmp_path):
    res = get_experiment("cxl-fidelity").run(RunContext(quick=True, progress=False,
                                                        out_dir=tmp_path))
    d = json.loads(res.to_json())
    metrics = {h["metric"]: h for h in d["headline"]}
    assert metrics["cxl_over_local_latency"]["measured"] > 1
    assert 0 < metrics["cxl_over_local_bandwidth"]["measured"] < 1
    assert all(h["source"] for h in d["headline"])


@pytest.mark.slow
def test_cxl_bench_quick(tmp_path):
    res = get_bench("cxl").run(RunContext(quick=True, progress=False, out_dir=tmp_path))
    assert any(h.metric == "emulator_line_ops_per_wall_s" for h in res.headline)
