"""ECMP: equal-cost routes over spines, a stable per-switch flow hash, and more bandwidth for
flows that hash onto different spines."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, QueueNetwork, dgx_like

TOPO = dgx_like(n_servers=4, network="rail", spines=4)
SRC, DST = "tor0", "tor1"            # rail 0 to rail 1 through any of the 4 spines


def _spine(route):
    return next(ln.split("->")[1] for ln in route if ln.startswith("tor") and "->spine" in ln)


def test_cross_rail_has_one_route_per_spine_and_path_is_the_first():
    routes = TOPO.paths(SRC, DST)
    assert sorted(_spine(r) for r in routes) == [f"spine{i}" for i in range(4)]
    assert TOPO.path(SRC, DST) == routes[0]
    assert TOPO.paths("s0.nic0", "s1.nic0") == (TOPO.path("s0.nic0", "s1.nic0"),)  # same rail
    # NIC to NIC across rails through the ToRs: the middle leg is its ECMP route
    legs = TOPO.route(["s0.nic0", SRC, DST, "s1.nic1"], flow_hash=3)
    assert _spine(legs) == _spine(TOPO.ecmp_path(SRC, DST, 3))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**63 - 1))
def test_every_hash_gives_an_equal_cost_route(key):
    route = TOPO.ecmp_path(SRC, DST, key)
    assert route in TOPO.paths(SRC, DST)
    assert TOPO.check_path(SRC, DST, route) == route


def test_hash_is_stable_and_spreads_over_spines():
    # fixed keys -> fixed spines in every process (no salted str hash)
    assert [_spine(TOPO.ecmp_path(SRC, DST, k)) for k in range(4)] == \
        [_spine(TOPO.ecmp_path(SRC, DST, k)) for k in range(4)]
    counts = Counter(_spine(TOPO.ecmp_path(SRC, DST, k)) for k in range(4000))
    assert len(counts) == 4 and min(counts.values()) > 800


@pytest.mark.parametrize("model", [FlowNetwork, QueueNetwork])
def test_flows_on_different_spines_get_more_bandwidth(model):
    pairs = [(SRC, DST)] * 4
    # one key per pair that puts it on its own spine (found by the same hash the fabric uses)
    keys = []
    for i, (a, b) in enumerate(pairs):
        keys.append(next(k for k in range(10_000)
                         if _spine(TOPO.ecmp_path(a, b, k)) == f"spine{i}"))
    n = 64 << 20

    def run(use_keys):
        plat = Platform(seed=0)
        net = model(plat, TOPO)
        fs = [net.transfer(a, b, n, lambda t: None, ecmp_key=k if use_keys else None)
              for (a, b), k in zip(pairs, keys)]
        plat.run_until_idle()
        return max(f.done_ns for f in fs)

    assert run(True) < run(False)


def test_bad_flow_hash_is_a_usage_error():
    with pytest.raises(UsageError):
        TOPO.ecmp_path(SRC, DST, "seven")  # type: ignore[arg-type]
