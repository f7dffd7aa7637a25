"""The optional queue model (ECN, PFC, DCQCN): conservation, agreement with the flow model when
nothing queues, PFC vs drops under incast, DCQCN convergence, failures, config checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, FlowState, dgx_like
from labrig.hw.fabric.congestion import MB, QueueConfig, QueueNetwork
from labrig.hw.fabric.nic import NicConfig, NicDevice

DT = QueueConfig().dt_ns


def _incast(cfg: QueueConfig, senders: int = 3, nbytes: int = 20_000_000, observe=None):
    plat = Platform(seed=0)
    net = QueueNetwork(plat, dgx_like(n_servers=senders + 1, network="single"), cfg)
    if observe is not None:
        net.observers.append(observe)
    done: dict[int, int] = {}
    flows = [net.transfer(f"s{s}.gpu0", f"s{senders}.gpu0", nbytes,
                          lambda t, s=s: done.__setitem__(s, t)) for s in range(senders)]
    plat.run_until_idle()
    return net, flows, done


def test_unshared_flow_agrees_with_the_flow_model():
    for nbytes in (4096, 1_000_000, 50_000_000):
        plats = [Platform(seed=0), Platform(seed=0)]
        topo = dgx_like(n_servers=2)
        nets = [FlowNetwork(plats[0], topo), QueueNetwork(plats[1], topo)]
        fs = [n.transfer("s0.gpu3", "s1.gpu3", nbytes, lambda t: None) for n in nets]
        for p in plats:
            p.run_until_idle()
        # bound: one step per hop of pipeline rounding plus 1 %
        assert abs(fs[1].done_ns - fs[0].done_ns) <= DT + 0.01 * fs[0].done_ns, nbytes


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(0, 3),
                          st.integers(0, 7), st.integers(1, 3_000_000), st.integers(0, 200_000)),
                min_size=1, max_size=12),
       st.sampled_from([(1, True), (0, True), (0, False)]))
def test_every_flow_delivers_its_bytes(traffic, mode):
    cc, pfc = mode
    plat = Platform(seed=1)
    net = QueueNetwork(plat, dgx_like(n_servers=4), QueueConfig(CC_MODE=cc, ENABLE_PFC=pfc))
    flows, done = [], []
    for sa, ga, sb, gb, n, t in traffic:
        if (sa, ga) == (sb, gb):
            continue
        plat.schedule(t, lambda a=f"s{sa}.gpu{ga}", b=f"s{sb}.gpu{gb}", n=n: flows.append(
            net.transfer(a, b, n, done.append)))
    plat.run_until_idle()
    assert len(done) == len(flows)
    assert all(f.state is FlowState.DONE and f.done_ns >= f.posted_ns + f.latency_ns
               for f in flows)
    assert net.active_flows() == () and not net._q.any()


def test_incast_without_pfc_drops_and_with_pfc_pauses_instead():
    lossy, flows, done = _incast(QueueConfig(CC_MODE=0, ENABLE_PFC=False))
    assert lossy.stats["dropped_bytes"] > 0 and len(done) == 3
    lossless, flows, done = _incast(QueueConfig(CC_MODE=0, ENABLE_PFC=True))
    assert lossless.stats["dropped_bytes"] == 0 and lossless.stats["pauses"] > 0
    assert len(done) == 3
    # a switch never holds more than its buffer
    assert lossless.max_queue_bytes.max() <= QueueConfig().BUFFER_SIZE * MB


def test_dcqcn_incast_converges_fair_with_a_bounded_queue():
    cfg = QueueConfig()
    trace: list[tuple[int, float, list[float]]] = []
    net, flows, done = _incast(cfg, senders=4, nbytes=80_000_000, observe=lambda n: trace.append(
        (n.plat.now_ns, n.queue_bytes().get("tor0->s4.nic0", 0.0),
         [r for _f, r in n.snapshot()])))
    assert net.stats["cnps"] > 0 and net.stats["rate_decreases"] > 0
    end = trace[-1][0]
    late = [(q, r) for t, q, r in trace if t > end / 2 and len(r) == 4]
    rates = np.mean([r for _q, r in late], axis=0)
    jain = rates.sum() ** 2 / (len(rates) * (rates ** 2).sum())
    assert jain > 0.9
    kmin, kmax, _p = cfg.ecn_thresholds(200e9 / 8)
    assert np.mean([q for q, _r in late]) <= kmax
    assert len(done) == 4


def test_down_link_fails_flows_and_never_hangs():
    plat = Platform(seed=0)
    net = QueueNetwork(plat, dgx_like(n_servers=2))
    reasons: list[str] = []
    f = net.transfer("s0.gpu0", "s1.gpu0", 50_000_000, lambda t: None, on_fail=reasons.append)
    other = net.transfer("s0.gpu1", "s1.gpu1", 1_000_000, lambda t: None)
    plat.run_until(200_000)
    net.set_link_up(f.path[2], False)
    plat.run_until_idle()
    assert f.state is FlowState.FAILED and reasons and "went down" in reasons[0]
    assert other.state is FlowState.DONE
    late = net.transfer("s0.gpu0", "s1.gpu0", 10, lambda t: None, on_fail=reasons.append)
    plat.run_until_idle()
    assert late.state is FlowState.FAILED and len(reasons) == 2


def test_runs_are_deterministic():
    a = _incast(QueueConfig(), senders=3, nbytes=5_000_000)[2]
    b = _incast(QueueConfig(), senders=3, nbytes=5_000_000)[2]
    assert a == b


def test_a_nic_runs_on_the_queue_model():
    plat = Platform(seed=0)
    net = QueueNetwork(plat, dgx_like(n_servers=2))
    NicDevice(plat, NicConfig(node="s0.nic0"), net)   # accepted as the NIC's wire


@pytest.mark.parametrize(("kw", "field"), [
    ({"CC_MODE": 2}, "CC_MODE"), ({"EWMA_GAIN": 0.0}, "EWMA_GAIN"),
    ({"RATE_AI": -1}, "RATE_AI"), ({"dt_ns": 0}, "dt_ns"),
    ({"PMAX_MAP": ((1e9, 1.5),)}, "PMAX_MAP"), ({"KMIN_MAP": ()}, "KMIN_MAP")])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        QueueConfig(**kw)


def test_reads_an_ns3_config():
    text = """CC_MODE 1
ENABLE_PFC 1
RATE_AI 5Gb/s
RATE_HAI 100Mb/s
EWMA_GAIN 0.00390625
KMAX_MAP 2 100000000000 1600 200000000000 2400
FLOW_FILE mix/flow.txt
"""
    cfg = QueueConfig.from_ns3(text)
    assert cfg.RATE_AI == 5000 and cfg.RATE_HAI == 100 and cfg.EWMA_GAIN == 1 / 256
    assert cfg.KMAX_MAP == ((100e9, 1600.0), (200e9, 2400.0))
    assert cfg.extra == {"FLOW_FILE": "mix/flow.txt"}
    assert cfg.ecn_thresholds(200e9 / 8)[1] == 2400 * 1000
    with pytest.raises(ConfigError, match="KMAX_MAP"):
        QueueConfig.from_ns3("KMAX_MAP 3 1 2")


def test_bad_transfer_arguments_are_usage_errors():
    net = QueueNetwork(Platform(seed=0), dgx_like(n_servers=2))
    with pytest.raises(UsageError):
        net.transfer("s0.gpu0", "s1.gpu0", -1, lambda t: None)
    with pytest.raises(UsageError):
        net.transfer("s0.gpu0", "nowhere", 10, lambda t: None)
    with pytest.raises(UsageError):
        QueueNetwork(Platform(seed=0), dgx_like(n_servers=2), config="fast")  # type: ignore[arg-type]
