"""The ``fuselink`` experiment at tiny scale: registered, rows for both policies and cases,
every payload intact, FuseLink ahead for one pair, headline and PNG written."""

from __future__ import annotations

import os

from labrig.tools.experiments import get_experiment
from labrig.tools.experiments import fuselink as exp
from labrig.tools.plot import have_matplotlib
from labrig.tools.results import RunContext


def test_fuselink_experiment_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(exp, "SIZES_QUICK", [256 << 10, 8 << 20])
    monkeypatch.setattr(exp, "ALL_PAIRS_MAX", {True: 1 << 20, False: 1 << 20})
    e = get_experiment("fuselink")
    res = e.run(RunContext(quick=True, out_dir=tmp_path, progress=False))
    assert {(r["case"], r["policy"]) for r in res.rows} == {
        (c, p) for c in ("one pair", "all pairs") for p in ("baseline", "fuselink")}
    assert all(r["intact"] for r in res.rows)
    big = {r["policy"]: r for r in res.rows if r["case"] == "one pair" and r["bytes"] == 8 << 20}
    assert big["fuselink"]["nics_used"] == 8 and big["baseline"]["nics_used"] == 1
    assert big["fuselink"]["GBps_per_pair"] > big["baseline"]["GBps_per_pair"]
    allp = [r for r in res.rows if r["case"] == "all pairs"]
    assert all(r["nics_used"] == 8 for r in allp)       # 8 pairs, each on its own NIC
    names = {h.metric for h in res.headline}
    assert {"fuselink_one_pair_GBps", "fuselink_over_baseline_one_pair",
            "fuselink_over_baseline_all_pairs"} <= names
    if have_matplotlib():            # the test extra has no matplotlib: no PNG then
        assert res.plots and all((tmp_path / p).exists() or os.path.exists(p)
                                 for p in res.plots)
    res.to_json()
