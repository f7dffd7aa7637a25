"""ECMP: equal-cost routes (``Topology.paths``), a stable per-switch flow hash
(``Topology.path(..., flow_hash=)``), and more bandwidth for flows that hash onto different
spines (``transfer(..., ecmp_key=)``)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import zlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, QueueNetwork, TopologyBuilder, dgx_like

TOPO = dgx_like(n_servers=4, network="rail", spines=4)
SRC, DST = "tor0", "tor1"            # rail 0 to rail 1 through any of the 4 spines
# NIC to NIC across rails on different PCIe switches: rail 0 -> ToR -> spine -> rail 2
NIC_SRC, NIC_DST = "s0.nic0", "s1.nic2"
SPINES = [f"spine{i}" for i in range(4)]
_M64 = (1 << 64) - 1


def _spine(route):
    return next(ln.split("->")[1] for ln in route if ln.startswith("tor") and "->spine" in ln)


def _ref_mix(h, switch):
    """Independent copy of the documented hash: splitmix64 of (h ^ crc32(switch) << 32)."""
    z = ((h & _M64) ^ (zlib.crc32(switch.encode()) << 32)) & _M64
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


# -- paths() ------------------------------------------------------------------------------
def test_cross_rail_has_one_route_per_spine_and_path_is_the_first():
    for a, b in ((SRC, DST), (NIC_SRC, NIC_DST)):
        routes = TOPO.paths(a, b)
        assert len(routes) == 4
        assert sorted(_spine(r) for r in routes) == SPINES
        assert routes == tuple(sorted(routes))
        assert TOPO.path(a, b) == routes[0]
        assert TOPO.paths(a, b) is routes                 # cached
        assert {len(r) for r in routes} == {len(routes[0])}
        assert {TOPO.path_latency_ns(r) for r in routes} == {TOPO.path_latency_ns(routes[0])}
    assert TOPO.paths("s0.nic0", "s1.nic0") == (TOPO.path("s0.nic0", "s1.nic0"),)  # same rail
    assert TOPO.paths("s0.gpu0", "s0.gpu0") == ((),)
    assert TOPO.path("s0.gpu0", "s0.gpu0", flow_hash=5) == ()


def test_paths_limit_is_an_error_not_a_truncation():
    with pytest.raises(UsageError, match=r"4 equal-cost routes.*limit=3"):
        TOPO.paths(SRC, DST, limit=3)
    assert len(TOPO.paths(SRC, DST, limit=4)) == 4
    for bad in (0, -1, True, 2.0, "4"):
        with pytest.raises(UsageError, match="limit"):
            TOPO.paths(SRC, DST, limit=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown node"):
        TOPO.paths("nowhere", DST)
    with pytest.raises(UsageError, match="no route"):
        dgx_like(n_servers=2, network="rail", spines=0).paths("tor0", "tor1")


def _routable(topo, a, b):
    try:
        topo.path(a, b)
    except UsageError:
        with pytest.raises(UsageError, match="no route"):
            topo.paths(a, b)
        return False
    return True


def _brute_force(topo, src, dst):
    """All routes with the best (hops, latency), by exhaustive walk of the forwarding rules."""
    best = topo.path(src, dst)
    hops, lat = len(best), topo.path_latency_ns(best)
    out = []

    def walk(at, phase, names, lat_so_far):
        if at == dst:
            if len(names) == hops and lat_so_far == lat:
                out.append(tuple(names))
            return
        if len(names) == hops:
            return
        for ln, nxt in topo._steps(src, at, phase):
            walk(ln.dst, nxt, [*names, ln.name], lat_so_far + ln.latency_ns)

    walk(src, 1 if topo.node(src).kind == "switch" else 0, [], 0)
    return tuple(sorted(out))


def test_paths_match_an_exhaustive_search_on_a_small_fabric():
    topo = dgx_like(n_servers=2, gpus=2, nics=2, gpus_per_pcie_switch=1, network="rail",
                    spines=2)
    checked = 0
    for a, b in itertools.product(topo.nodes, repeat=2):
        if a == b or not _routable(topo, a, b):
            continue
        assert topo.paths(a, b) == _brute_force(topo, a, b), (a, b)
        checked += 1
    assert checked > 200


# -- path(flow_hash=) -----------------------------------------------------------------------
NODES = sorted(TOPO.nodes)


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**70), 2**70), st.sampled_from(NODES), st.sampled_from(NODES))
def test_every_hash_gives_an_equal_cost_route(key, a, b):
    if not _routable(TOPO, a, b):                         # e.g. nothing forwards to an NVSwitch
        with pytest.raises(UsageError, match="no route"):
            TOPO.path(a, b, flow_hash=key)
        return
    routes = TOPO.paths(a, b)
    route = TOPO.path(a, b, flow_hash=key)
    assert route in routes
    assert TOPO.check_path(a, b, route) == route
    assert TOPO.path(a, b) == routes[0]                   # flow_hash=None: unchanged
    assert TOPO.route([a, b], flow_hash=key) == route
    assert TOPO.ecmp_path(a, b, key) == route             # older spelling


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_cross_rail_hash_is_the_documented_mix_at_the_tor(key):
    # tor0 is the only switch with a choice: next hop = mix(key, "tor0") mod 4 by link name
    want = SPINES[_ref_mix(key, "tor0") % 4]
    assert _spine(TOPO.path(SRC, DST, flow_hash=key)) == want
    assert _spine(TOPO.path(NIC_SRC, NIC_DST, flow_hash=key)) == want
    assert TOPO.path(SRC, DST, flow_hash=key - 2**64) == TOPO.path(SRC, DST, flow_hash=key)


def test_hash_is_stable_across_processes(tmp_path):
    golden = ["spine1", "spine2", "spine0", "spine0", "spine2", "spine0", "spine1", "spine3"]
    assert [_spine(TOPO.path(SRC, DST, flow_hash=k)) for k in range(8)] == golden
    code = ("from labrig.hw.fabric import dgx_like\n"
            "t = dgx_like(n_servers=4, network='rail', spines=4)\n"
            "print(' '.join(t.path('s0.nic0', 's1.nic2', flow_hash=k)[1] for k in range(8)))\n")
    want = " ".join(f"tor0->{s}" for s in golden)
    for seed in ("1", "12345"):                           # str hash() differs per seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        # run outside the checkout: its top-level labrig/ folder would shadow the installed
        # package for `python -c` (the current directory comes first on sys.path)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=60, cwd=tmp_path)
        assert out.stdout.strip() == want


def test_hash_spreads_over_spines():
    counts = Counter(_spine(TOPO.path(SRC, DST, flow_hash=k)) for k in range(4000))
    assert sorted(counts) == SPINES
    assert all(850 <= c <= 1150 for c in counts.values()), counts


def test_each_switch_hashes_independently():
    # two tiers of choice: t0 -> {a0, a1}, then a_i -> {c0, c1}; a hash that ignored the
    # switch would make the same choice twice (polarization) and use only 2 of the 4 routes
    b = TopologyBuilder()
    for n in ("h0", "h1"):
        b.add_node(n, "nic")
    for n in ("t0", "a0", "a1", "c0", "c1", "t1"):
        b.add_node(n, "switch")
    cables = [("h0", "t0"), ("t0", "a0"), ("t0", "a1"), ("a0", "c0"), ("a0", "c1"),
              ("a1", "c0"), ("a1", "c1"), ("c0", "t1"), ("c1", "t1"), ("t1", "h1")]
    for x, y in cables:
        b.connect(x, y, bandwidth_Bps=1e9, latency_ns=100)
    topo = b.build()
    routes = topo.paths("h0", "h1")
    assert len(routes) == 4
    counts = Counter(topo.path("h0", "h1", flow_hash=k) for k in range(4000))
    assert set(counts) == set(routes)
    assert all(850 <= c <= 1150 for c in counts.values()), counts


def test_hosts_do_not_hash():
    # GPU to GPU across servers: the equal-cost choices are at PCIe switches / the root
    # complex (which NIC), not at network switches, so every hash gives path()'s route
    assert len(TOPO.paths("s0.gpu0", "s1.gpu4")) > 1
    assert {TOPO.path("s0.gpu0", "s1.gpu4", flow_hash=k) for k in range(64)} == \
        {TOPO.path("s0.gpu0", "s1.gpu4")}


def test_bad_flow_hash_is_a_usage_error():
    for bad in ("seven", 1.5, True, b"\x01", (1,)):
        with pytest.raises(UsageError, match="flow_hash"):
            TOPO.path(SRC, DST, flow_hash=bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="flow_hash"):
            TOPO.route([NIC_SRC, SRC, DST], flow_hash=bad)  # type: ignore[arg-type]
    net = FlowNetwork(Platform(seed=0), TOPO)
    with pytest.raises(UsageError, match="flow_hash"):
        net.transfer(NIC_SRC, NIC_DST, 1, lambda t: None, ecmp_key="7")  # type: ignore[arg-type]


# -- transfer(ecmp_key=) ---------------------------------------------------------------------
# four flows from rail 0 (one per server) to other rails: all leave through tor0's uplinks
PAIRS = [("s0.nic0", "s1.nic2"), ("s1.nic0", "s2.nic4"), ("s2.nic0", "s3.nic6"),
         ("s3.nic0", "s0.nic2")]


def _key_for(a, b, spine):
    return next(k for k in range(10_000) if _spine(TOPO.path(a, b, flow_hash=k)) == spine)


@pytest.mark.parametrize("model", [FlowNetwork, QueueNetwork])
def test_flows_on_different_spines_get_more_bandwidth(model):
    spread = [_key_for(a, b, SPINES[i]) for i, (a, b) in enumerate(PAIRS)]
    same = [_key_for(a, b, "spine2") for a, b in PAIRS]
    assert len(set(spread)) == 4
    n = 4 << 20

    def run(keys):
        plat = Platform(seed=0)
        net = model(plat, TOPO)
        fs = [net.transfer(a, b, n, lambda t: None, ecmp_key=k)
              for (a, b), k in zip(PAIRS, keys, strict=True)]
        plat.run_until_idle()
        assert all(f.done_ns is not None for f in fs)
        if keys[0] is not None:
            assert [_spine(f.path) for f in fs] == [_spine(TOPO.path(a, b, flow_hash=k))
                                                    for (a, b), k in zip(PAIRS, keys, strict=True)]
        return max(f.done_ns for f in fs) - min(f.posted_ns for f in fs)

    t_none, t_spread, t_same = run([None] * 4), run(spread), run(same)
    # ecmp_key=None: all four on tor0->spine0 (25 GB/s shared); spread: one uplink each
    agg_none, agg_spread = 4 * n / t_none, 4 * n / t_spread
    assert agg_spread > 2 * agg_none
    if model is FlowNetwork:                              # max-min fair: exactly 4x, minus latency
        assert agg_spread == pytest.approx(4 * agg_none, rel=0.02)
    # all hashed onto one spine: no better than no ECMP at all
    assert t_same == pytest.approx(t_none, rel=0.02)
