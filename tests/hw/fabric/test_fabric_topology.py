"""Topology builder validation, routing rules and the DGX presets."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.hw.fabric import (A100_SXM4_80GB, H100_SXM5_80GB, NodeKind, TopologyBuilder,
                              dgx_a100, dgx_h100, dgx_like)


def small():
    b = TopologyBuilder()
    for n in ("a", "b"):
        b.add_node(n, "nic")
    b.add_node("sw", "switch")
    b.connect("a", "sw", bandwidth_Bps=1e9, latency_ns=10)
    b.connect("b", "sw", bandwidth_Bps=2e9, latency_ns=20)
    return b


# -- builder validation ------------------------------------------------------------------------
def test_unknown_node_is_named():
    b = small()
    with pytest.raises(UsageError, match="unknown node 'nope'"):
        b.add_link("a", "nope", bandwidth_Bps=1e9, latency_ns=0)


def test_duplicate_link_and_node_are_named():
    b = small()
    with pytest.raises(UsageError, match="'a->sw' added twice"):
        b.add_link("a", "sw", bandwidth_Bps=1e9, latency_ns=0)
    with pytest.raises(UsageError, match="node 'a' added twice"):
        b.add_node("a", "gpu")


@pytest.mark.parametrize("bw", [0, -1.0, float("inf"), float("nan"), "fast", True])
def test_bad_bandwidth(bw):
    b = small()
    b.add_node("c", "gpu")
    with pytest.raises(ConfigError, match="bandwidth_Bps"):
        b.add_link("c", "sw", bandwidth_Bps=bw, latency_ns=0)


@pytest.mark.parametrize("lat", [-1, 1.5, None])
def test_bad_latency(lat):
    b = small()
    b.add_node("c", "gpu")
    with pytest.raises(ConfigError, match="latency_ns"):
        b.add_link("c", "sw", bandwidth_Bps=1e9, latency_ns=lat)


def test_bad_kind_self_loop_and_name():
    b = small()
    with pytest.raises(UsageError, match="kind 'router'"):
        b.add_node("r", "router")
    with pytest.raises(UsageError, match="two different nodes"):
        b.add_link("a", "a", bandwidth_Bps=1e9, latency_ns=0)
    with pytest.raises(UsageError, match="without '->'"):
        b.add_node("x->y", "gpu")


def test_disconnected_path_names_both_ends():
    b = small()
    b.add_node("island", "gpu")
    topo = b.build()
    with pytest.raises(UsageError, match="no route from 'a' to 'island'"):
        topo.path("a", "island")
    with pytest.raises(UsageError, match="unknown node 'zz'"):
        topo.path("a", "zz")


def test_one_way_link_routes_one_way():
    b = TopologyBuilder()
    b.add_node("x", "switch"); b.add_node("y", "switch")
    b.add_link("x", "y", bandwidth_Bps=1e9, latency_ns=5)
    topo = b.build()
    assert topo.path("x", "y") == ("x->y",)
    with pytest.raises(UsageError, match="no route"):
        topo.path("y", "x")


def test_topology_is_immutable_and_arrays_read_only():
    topo = small().build()
    with pytest.raises(TypeError):
        topo.links["new"] = None
    with pytest.raises(ValueError):
        topo.bandwidth_Bps[0] = 1.0
    assert topo.path("a", "a") == ()
    assert topo.path("a", "b") == ("a->sw", "sw->b")
    assert topo.path_latency_ns(topo.path("a", "b")) == 30
    assert topo.path_bandwidth_Bps(topo.path("a", "b")) == 1e9


def test_check_path_reports_first_problem():
    topo = small().build()
    assert topo.check_path("a", "b", ["a->sw", "sw->b"]) == ("a->sw", "sw->b")
    with pytest.raises(UsageError, match="hop 1 'a->sw' starts at 'a', expected 'sw'"):
        topo.check_path("a", "b", ["a->sw", "a->sw"])
    with pytest.raises(UsageError, match="ends at 'sw'"):
        topo.check_path("a", "b", ["a->sw"])
    with pytest.raises(UsageError, match="unknown link"):
        topo.check_path("a", "b", ["a->b"])


# -- forwarding rules --------------------------------------------------------------------------
def test_gpu_never_forwards():
    b = TopologyBuilder()
    for n in ("g0", "g1", "g2"):
        b.add_node(n, "gpu")
    b.connect("g0", "g1", bandwidth_Bps=1e9, latency_ns=1)
    b.connect("g1", "g2", bandwidth_Bps=1e9, latency_ns=1)
    topo = b.build()
    assert topo.path("g0", "g1") == ("g0->g1",)
    with pytest.raises(UsageError, match="no route from 'g0' to 'g2'"):
        topo.path("g0", "g2")


def test_nic_forwards_only_between_host_and_network_side():
    # two NICs of one server behind a PCIe switch, each on its own ToR, no spine: the only
    # way from tor0 to tor1 would cross nic0 -> pcie -> nic1, which a NIC does not do
    b = TopologyBuilder()
    b.add_node("pcie", "pcie_switch", server=0)
    for j in (0, 1):
        b.add_node(f"nic{j}", "nic", server=0)
        b.add_node(f"tor{j}", "switch")
        b.connect(f"nic{j}", "pcie", bandwidth_Bps=1e9, latency_ns=1)
        b.connect(f"nic{j}", f"tor{j}", bandwidth_Bps=1e9, latency_ns=1)
    topo = b.build()
    assert topo.path("pcie", "tor1") == ("pcie->nic1", "nic1->tor1")
    with pytest.raises(UsageError, match="no route from 'tor0' to 'tor1'"):
        topo.path("tor0", "tor1")


@given(st.integers(1, 3), st.sampled_from(["rail", "single"]), st.integers(0, 2),
       st.data())
def test_routes_are_deterministic_and_chain(n_servers, network, spines, data):
    topo = dgx_like(n_servers, network=network, spines=spines)
    again = dgx_like(n_servers, network=network, spines=spines)
    nodes = sorted(topo.nodes)
    src = data.draw(st.sampled_from(nodes))
    dst = data.draw(st.sampled_from(nodes))
    try:
        p = topo.path(src, dst)
    except UsageError:
        with pytest.raises(UsageError):
            again.path(src, dst)
        return
    assert p == again.path(src, dst)
    assert topo.check_path(src, dst, p) == p
    for ln in p[:-1]:                           # no GPU in the middle of a route
        assert topo.node(topo.link(ln).dst).kind is not NodeKind.GPU


# -- presets -----------------------------------------------------------------------------------
def test_dgx_a100_shape():
    topo = dgx_a100(2)
    for k in (0, 1):
        assert len(topo.nodes_of("gpu", k)) == 8
        assert len(topo.nodes_of("nic", k)) == 8
        assert len(topo.nodes_of("pcie_switch", k)) == 4
        assert topo.nodes_of("cpu", k) == (f"s{k}.cpu",)
    assert topo.servers == (0, 1)
    assert topo.nodes_of("switch") == ("spine0", *(f"tor{j}" for j in range(8)))
    assert topo.node("s1.gpu3").model == A100_SXM4_80GB.name
    assert topo.link("s0.nic2->tor2").bandwidth_Bps == 25e9          # 200 Gb/s
    assert topo.link("s0.gpu0->s0.nvsw").bandwidth_Bps == 300e9       # 600 GB/s both ways
    assert topo.link("s0.gpu0->s0.pcie0").bandwidth_Bps == 32e9       # PCIe Gen4 x16


def test_dgx_gpu_to_nic_through_its_pcie_switch():
    topo = dgx_a100(2)
    assert topo.path("s0.gpu3", "s0.nic3") == ("s0.gpu3->s0.pcie1", "s0.pcie1->s0.nic3")
    assert topo.path("s1.nic6", "s1.gpu7") == ("s1.nic6->s1.pcie3", "s1.pcie3->s1.gpu7")
    # a NIC on another switch is reached through the CPU root complex
    assert "s0.pcie0->s0.cpu" in topo.path("s0.gpu0", "s0.nic7")
    # GPU to GPU inside a server: NVLink through the NVSwitch
    assert topo.path("s0.gpu0", "s0.gpu1") == ("s0.gpu0->s0.nvsw", "s0.nvsw->s0.gpu1")
    assert topo.pair_nearest(0, "gpu", "nic") == {f"s0.gpu{i}": f"s0.nic{i}" for i in range(8)}
    assert topo.nearest("s0.gpu5", "nic") in ("s0.nic4", "s0.nic5")


def test_dgx_rail_network_routes():
    topo = dgx_a100(2)
    assert topo.path("s0.nic2", "s1.nic2") == ("s0.nic2->tor2", "tor2->s1.nic2")
    assert topo.path("s0.nic2", "s1.nic5") == ("s0.nic2->tor2", "tor2->spine0", "spine0->tor5",
                                              "tor5->s1.nic5")
    # explicit NIC choice for an RDMA transfer
    r = topo.route(["s0.gpu1", "s0.nic1", "s1.nic1", "s1.gpu1"])
    assert r[0] == "s0.gpu1->s0.pcie0" and r[-1] == "s1.pcie0->s1.gpu1"
    assert topo.link("tor0->spine0").bandwidth_Bps == 2 * 25e9       # non-blocking uplink


def test_dgx_h100_one_gpu_one_nic_per_switch():
    topo = dgx_h100(1)
    assert len(topo.nodes_of("pcie_switch", 0)) == 8
    assert topo.link("s0.nic0->tor0").bandwidth_Bps == 50e9           # 400 Gb/s
    assert topo.link("s0.gpu0->s0.nvsw").bandwidth_Bps == H100_SXM5_80GB.nvlink_Bps
    assert topo.path("s0.gpu5", "s0.nic5") == ("s0.gpu5->s0.pcie5", "s0.pcie5->s0.nic5")


@pytest.mark.parametrize(("kw", "field"), [
    ({"n_servers": 0}, "n_servers"), ({"gpus": 6, "gpus_per_pcie_switch": 4},
                                      "gpus_per_pcie_switch"),
    ({"nics": 3}, "nics"), ({"network": "torus"}, "network"), ({"nic_gbps": 0}, "nic_gbps"),
    ({"spines": -1}, "spines"),
])
def test_dgx_like_config_errors(kw, field):
    with pytest.raises(ConfigError, match=field):
        dgx_like(**kw)


def test_single_switch_network():
    topo = dgx_like(3, network="single")
    assert topo.nodes_of("switch") == ("tor0",)
    assert topo.path("s0.nic5", "s2.nic1") == ("s0.nic5->tor0", "tor0->s2.nic1")
