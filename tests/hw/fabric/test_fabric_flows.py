"""Max-min fair flow model: exact timing, fairness at every recompute, failures, determinism."""

from collections import defaultdict

import numpy as np

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, FlowState, TopologyBuilder, dgx_a100

RTOL = 1e-9


def line(bws=(1e9, 1e9), lats=(100, 200)):
    """a -> m -> b, one-way links of the given bandwidths (bytes/s) and latencies."""
    b = TopologyBuilder()
    for n in ("a", "m", "b"):
        b.add_node(n, "switch")
    b.add_link("a", "m", bandwidth_Bps=bws[0], latency_ns=lats[0])
    b.add_link("m", "b", bandwidth_Bps=bws[1], latency_ns=lats[1])
    return b.build()


def net_of(topo, seed=0):
    plat = Platform(seed=seed)
    return plat, FlowNetwork(plat, topo)


# -- exact timing --------------------------------------------------------------------------------
def test_single_flow_exact_completion():
    plat, net = net_of(line())                  # 1 byte/ns, 300 ns of latency
    got = []
    f = net.transfer("a", "b", 1000, got.append)
    assert got == []                            # never completes inside transfer()
    plat.run_until_idle()
    assert got == [1300] and f.done_ns == 1300 and f.sent_ns == 1000
    assert f.state is FlowState.DONE


def test_rate_rounds_up_to_whole_ns():
    plat, net = net_of(line(bws=(3e9, 3e9), lats=(0, 0)))
    f = net.transfer("a", "b", 10, lambda t: None)
    plat.run_until_idle()
    assert f.done_ns == 4                       # 10 bytes at 3 bytes/ns -> ceil(3.33)


def test_zero_bytes_and_empty_route_pay_latency_only():
    plat, net = net_of(line())
    got = []
    net.transfer("a", "b", 0, lambda t: got.append(("zero", t)))
    net.transfer("a", "a", 5000, lambda t: got.append(("self", t)))
    plat.run_until_idle()
    assert sorted(got) == [("self", 0), ("zero", 300)]


def test_two_flows_share_then_one_speeds_up():
    plat, net = net_of(line(lats=(0, 0)))
    done = {}
    net.transfer("a", "b", 1000, lambda t: done.setdefault("A", t))
    plat.run_until(500)
    g = net.transfer("a", "b", 1000, lambda t: done.setdefault("B", t))
    plat.run_for(1)
    assert net.rate_of(g) == pytest.approx(0.5e9)
    plat.run_until_idle()
    # A: 500 B alone, then 500 B at 0.5 B/ns -> 1500; B: 500 B shared, 500 B alone -> 2000
    assert done == {"A": 1500, "B": 2000}


def test_parking_lot_max_min_rates():
    # long flow over both links, short flows on each: link 2 is half as fast
    plat, net = net_of(line(bws=(2e9, 1e9), lats=(0, 0)))
    long = net.transfer("a", "b", 10**6, lambda t: None)
    s1 = net.transfer("a", "m", 10**6, lambda t: None)
    s2 = net.transfer("m", "b", 10**6, lambda t: None)
    assert net.rate_of(long) == pytest.approx(0.5e9)      # bottleneck m->b shared with s2
    assert net.rate_of(s2) == pytest.approx(0.5e9)
    assert net.rate_of(s1) == pytest.approx(1.5e9)        # takes what long leaves on a->m


def test_dgx_gpu_to_gpu_across_servers_runs_at_nic_rate():
    topo = dgx_a100(2)
    plat, net = net_of(topo)
    route = topo.route(["s0.gpu0", "s0.nic0", "s1.nic0", "s1.gpu0"])
    f = net.transfer("s0.gpu0", "s1.gpu0", 25_000_000, lambda t: None, path=route)
    assert net.rate_of(f) == pytest.approx(25e9)                # 200 Gb/s
    plat.run_until_idle()
    assert f.done_ns == 1_000_000 + topo.path_latency_ns(route)
    # two GPUs behind one PCIe switch to two NICs behind it share nothing but ... the NICs
    g0 = net.transfer("s0.gpu0", "s1.gpu0", 10**8, lambda t: None,
                      path=topo.route(["s0.gpu0", "s0.nic0", "s1.nic0", "s1.gpu0"]))
    g1 = net.transfer("s0.gpu1", "s1.gpu1", 10**8, lambda t: None,
                      path=topo.route(["s0.gpu1", "s0.nic0", "s1.nic0", "s1.gpu1"]))
    assert net.rate_of(g0) == net.rate_of(g1) == pytest.approx(12.5e9)   # one NIC, two GPUs


# -- validation ----------------------------------------------------------------------------------
def test_transfer_argument_errors():
    plat, net = net_of(line())
    with pytest.raises(UsageError, match="nbytes=-1"):
        net.transfer("a", "b", -1, lambda t: None)
    with pytest.raises(UsageError, match="on_done"):
        net.transfer("a", "b", 1, None)
    with pytest.raises(UsageError, match="no route from 'b' to 'a'"):
        net.transfer("b", "a", 1, lambda t: None)
    with pytest.raises(UsageError, match="ends at 'm'"):
        net.transfer("a", "b", 1, lambda t: None, path=["a->m"])
    with pytest.raises(UsageError, match="unknown link"):
        net.set_link_up("b->a", False)


# -- failures ------------------------------------------------------------------------------------
def test_link_down_fails_sending_and_landing_flows():
    plat, net = net_of(line(lats=(0, 10_000)))
    fails, dones = [], []
    f1 = net.transfer("a", "b", 1000, dones.append, on_fail=fails.append)    # sent at 2000
    f2 = net.transfer("a", "m", 10**6, dones.append, on_fail=fails.append)   # never crosses m->b
    plat.run_until(2500)                       # f1 is landing (last byte on the wire)
    assert f1.state is FlowState.LANDING
    net.set_link_up("m->b", False)
    plat.run_until_idle()
    assert f1.state is FlowState.FAILED and fails == ["link m->b went down"]
    assert f2.state is FlowState.DONE and len(dones) == 1
    # posting over a down link fails at once, as an event
    f3 = net.transfer("a", "b", 10, dones.append, on_fail=fails.append)
    assert f3.state is FlowState.FAILED and len(fails) == 1
    plat.run_until_idle()
    assert fails[-1] == "link m->b is down"
    net.set_link_up("m->b", True)
    f4 = net.transfer("a", "b", 10, dones.append, on_fail=fails.append)
    plat.run_until_idle()
    assert f4.state is FlowState.DONE


def test_cancel_drops_without_callbacks():
    plat, net = net_of(line(lats=(0, 0)))
    calls = []
    a = net.transfer("a", "b", 1000, calls.append, on_fail=calls.append)
    b = net.transfer("a", "b", 1000, calls.append, on_fail=calls.append)
    plat.run_until(100)
    net.cancel(a)
    plat.run_until_idle()
    assert a.state is FlowState.CANCELLED and calls == [b.done_ns]
    assert b.done_ns == 1000 + 50            # 50 B shared, then 950 B alone from t=100 -> 1050


# -- properties over random topologies and traffic -------------------------------------------
BANDWIDTHS = st.sampled_from([1e9, 2e9, 3e9, 12.5e9, 25e9, 100e9])


@st.composite
def topologies(draw):
    """Connected random graphs of forwarding switches: a random tree plus extra links."""
    n = draw(st.integers(2, 7))
    b = TopologyBuilder()
    names = [f"n{i}" for i in range(n)]
    for name in names:
        b.add_node(name, "switch")
    edges = set()
    for i in range(1, n):
        edges.add((draw(st.integers(0, i - 1)), i))
    for _ in range(draw(st.integers(0, n))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if i != j and (i, j) not in edges and (j, i) not in edges:
            edges.add((i, j))
    for i, j in sorted(edges):
        b.connect(names[i], names[j], bandwidth_Bps=draw(BANDWIDTHS),
                  latency_ns=draw(st.integers(0, 2000)))
    return b.build()


@st.composite
def scenarios(draw):
    topo = draw(topologies())
    names = sorted(topo.nodes)
    flows = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names),
                                    st.integers(0, 2_000_000), st.integers(0, 200_000)),
                          min_size=1, max_size=14))
    return topo, flows


def check_max_min(net):
    """Oracle: no link over capacity; each flow has a saturated link on its route where no
    other flow gets more (the bottleneck characterization of max-min fairness)."""
    snap = net.snapshot()
    load = defaultdict(float)
    per_link = defaultdict(list)
    for f, r in snap:
        assert r > 0
        for ln in f.path:
            load[ln] += r
            per_link[ln].append(r)
    for ln, used in load.items():
        assert used <= net.capacity_Bps(ln) * (1 + RTOL), ln
    for f, r in snap:
        assert any(load[ln] >= net.capacity_Bps(ln) * (1 - RTOL)
                   and r >= max(per_link[ln]) * (1 - RTOL) for ln in f.path), f


def run(topo, flows, down=None, seed=0, check=True):
    plat, net = net_of(topo, seed)
    if check:
        net.observers.append(check_max_min)
    out = {}

    def post(k, src, dst, nbytes):
        out[k] = net.transfer(src, dst, nbytes,
                              lambda t: out.setdefault(("done", k), []).append(t),
                              on_fail=lambda r: out.setdefault(("fail", k), []).append(r))

    for k, (src, dst, nbytes, at) in enumerate(flows):
        plat.schedule_at(at, post, k, src, dst, nbytes)
    if down is not None:
        plat.schedule_at(down[1], net.set_link_up, down[0], False)
    plat.run_until_idle()
    return net, out


@given(scenarios())
def test_bytes_delivered_equal_bytes_posted_and_max_min_holds(sc):
    topo, flows = sc
    net, out = run(topo, flows)
    delivered = 0
    for k, (src, dst, nbytes, at) in enumerate(flows):
        f = out[k]
        assert f.state is FlowState.DONE and out[("done", k)] == [f.done_ns]
        lower = at + f.latency_ns + (-(-nbytes * 10**9 // int(topo.path_bandwidth_Bps(f.path)))
                                     if f.path and nbytes else 0)
        assert f.done_ns >= lower - 1                   # never faster than alone on the path
        delivered += nbytes
    assert delivered == sum(n for _, _, n, _ in flows)
    assert net.stats["deliveries"] == len(flows) and not net.active_flows()


@given(scenarios(), st.data())
def test_downed_link_fails_its_flows_never_hangs(sc, data):
    topo, flows = sc
    link = data.draw(st.sampled_from(topo.link_names))
    t_down = data.draw(st.integers(0, 300_000))
    net, out = run(topo, flows, down=(link, t_down))
    for k, (src, dst, nbytes, at) in enumerate(flows):
        f = out[k]
        assert f.finished                               # every flow ends: done or failed
        if f.state is FlowState.FAILED:
            assert link in f.path and out[("fail", k)] == [f.fail_reason]
            assert ("done", k) not in out
        else:
            assert f.state is FlowState.DONE
            assert link not in f.path or f.done_ns <= t_down
    assert net.stats["deliveries"] + net.stats["failures"] == len(flows)


@given(scenarios())
def test_deterministic(sc):
    topo, flows = sc
    a = run(topo, flows, check=False)[1]
    b = run(topo, flows, check=False)[1]
    assert [a[k].done_ns for k in range(len(flows))] == [b[k].done_ns for k in range(len(flows))]


# -- the C kernel and the numpy reference agree bit for bit -------------------------------------
@given(st.integers(1, 12), st.integers(1, 20), st.data())
def test_c_kernel_equals_numpy_reference(nl, nf, data):
    from labrig.hw.fabric import _maxmin

    reason = _maxmin.c_unavailable_reason()
    if reason is not None:
        pytest.skip(f"C kernel unavailable: {reason}")
    routes = [data.draw(st.lists(st.integers(0, nl - 1), min_size=1, max_size=5))
              for _ in range(nf)]
    cap = np.array(data.draw(st.lists(st.sampled_from([0.5, 1.0, 3.0, 12.5, 25.0, 300.0]),
                                      min_size=nl, max_size=nl)))
    li = np.array([ln for r in routes for ln in r], dtype=np.int64)
    fi = np.repeat(np.arange(nf), [len(r) for r in routes])
    r_np, k_np = _maxmin.fill_numpy(li, fi, cap, nf)
    r_c, k_c = _maxmin.fill_c(li, fi, cap, nf)
    assert k_np == k_c and r_np.tobytes() == r_c.tobytes()


@given(scenarios())
def test_numpy_fallback_gives_the_same_virtual_times(sc):
    from labrig.hw.fabric import _maxmin, flows

    topo, fl = sc
    a = run(topo, fl, check=False)[1]
    saved = flows.fill
    flows.fill = _maxmin.fill_numpy
    try:
        b = run(topo, fl, check=True)[1]
    finally:
        flows.fill = saved
    assert [a[k].done_ns for k in range(len(fl))] == [b[k].done_ns for k in range(len(fl))]


@pytest.mark.parametrize("workload", ["poisson", "all-to-all"])
def test_bench_workloads_deliver_every_flow(workload):
    from labrig.tools.bench.fabric import flow_events_per_s

    row = flow_events_per_s(workload, 300)
    assert row["delivered"] == row["flows"] > 0
    assert row["events"] == 2 * row["flows"]
