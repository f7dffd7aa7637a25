"""Incomplete beta, cap fraction and the cost model (OSDI'25 §4.1-4.2, §5)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy as np

from labrig.runtime.quake import CostModel, ScanLatency, betainc, cap_fraction
from labrig.runtime.quake._cost import AccessTracker


@pytest.mark.parametrize(("a", "b", "x", "want"), [
    (1.0, 1.0, 0.3, 0.3),                      # I_x(1,1) = x
    (2.0, 1.0, 0.5, 0.25),                     # I_x(a,1) = x^a
    (1.0, 3.0, 0.2, 1 - 0.8 ** 3),             # I_x(1,b) = 1-(1-x)^b
    (0.5, 0.5, 0.5, 0.5),                      # symmetry
    (0.5, 0.5, 0.25, 2 / math.pi * math.asin(0.5)),  # arcsine law
])
def test_betainc_known_values(a: float, b: float, x: float, want: float) -> None:
    assert betainc(a, b, x) == pytest.approx(want, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.1, 200), st.floats(0.1, 20), st.floats(0, 1))
def test_betainc_matches_scipy(a: float, b: float, x: float) -> None:
    special = pytest.importorskip("scipy.special")
    assert betainc(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.1, 50), st.floats(0.1, 50), st.floats(1e-3, 1 - 1e-3))
def test_betainc_symmetry_and_range(a: float, b: float, x: float) -> None:
    v = betainc(a, b, x)
    assert 0.0 <= v <= 1.0
    assert v + betainc(b, a, 1.0 - x) == pytest.approx(1.0, abs=1e-9)


def test_betainc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="a=-1"):
        betainc(-1, 1, 0.5)
    with pytest.raises(ValueError, match="x=2"):
        betainc(1, 1, 2)


def test_cap_fraction_geometry() -> None:
    assert cap_fraction(0.0, 8) == pytest.approx(0.5)      # hyperplane through the centre
    assert cap_fraction(1.0, 8) == 0.0
    # d = 1: the "ball" is a segment; a cut at h/r leaves (1 - h/r)/2 of it
    assert cap_fraction(0.4, 1) == pytest.approx(0.3)
    assert cap_fraction(0.3, 64) < cap_fraction(0.3, 8)      # caps shrink with dimension
    assert cap_fraction(0.3, 64, "public-code") > cap_fraction(0.3, 64)
    with pytest.raises(ValueError, match="form='x'"):
        cap_fraction(0.3, 8, "x")


# The paper's worked example (final §4.2.4): λ(50)=250, λ(250)=550, λ(450)=1050, λ(500)=1200 µs,
# ΔO⁺ = 60 µs, τ = 4 µs, α = 0.5, A = 0.1.
US = 1e-6
LAM = ScanLatency([50, 250, 450, 500], [250 * US, 550 * US, 1050 * US, 1200 * US])


class _Example(CostModel):
    def overhead_add(self, nlist: int) -> float:
        return 60 * US


def test_paper_worked_split_example() -> None:
    model, tau, a = _Example(LAM, alpha=0.5), 4 * US, 0.1
    est = model.split_estimate(a, 500, nlist=100)
    assert est == pytest.approx(-5 * US)
    assert est < -tau                                 # estimate: split tentatively
    exact = model.split_exact(a, 500, 450, 50, nlist=100)
    assert exact == pytest.approx(5 * US)
    assert not exact < -tau                           # verify: rejected


def test_scan_latency_interpolates_and_extrapolates() -> None:
    assert LAM(350) == pytest.approx(800 * US)
    assert LAM(600) == pytest.approx(1500 * US)       # slope of the last segment: 3 µs/vector
    assert LAM(0) == pytest.approx(175 * US)
    with pytest.raises(ValueError):
        ScanLatency([2, 1], [1, 2])


def test_profiled_latency_is_monotone() -> None:
    lam = ScanLatency.profile(lambda q, x: q @ x.T, 8, sizes=(1, 64, 1024), trials=2)
    assert lam(1) <= lam(64) <= lam(1024) <= lam(5000)


def test_merge_delta_matches_equation_7() -> None:
    model = _Example(LAM, alpha=0.5)
    delta = model.merge_delta(0.1, 50, 10, [(0.2, 450, 0.1, 50)])
    want = (LAM(9) - LAM(10)) - 0.1 * LAM(50) + 0.3 * LAM(500) - 0.2 * LAM(450)
    assert delta == pytest.approx(want)


def test_access_tracker_window() -> None:
    tr = AccessTracker(window=2)
    for pids in ([1, 2], [1], [3]):
        tr.record(np.array(pids))
    assert len(tr) == 2
    assert tr.frequency(1) == pytest.approx(0.5)
    assert tr.frequency(2) == 0.0
    assert tr.frequency(3) == pytest.approx(0.5)
