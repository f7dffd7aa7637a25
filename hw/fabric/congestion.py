"""Per-link queues with ECN marking, PFC pause and DCQCN: the optional congestion-aware model.

The fast default of issue #8 is :class:`~labrig.hw.fabric.flows.FlowNetwork` (max-min fair
rates, no queues).  :class:`QueueNetwork` has the same interface and adds what RoCE fabrics do
under congestion, with the parameter names of the HPCC ns-3 RDMA simulator
(alibaba-edu/High-Precision-Congestion-Control, ``simulation/mix/config_doc.txt``; the same
keys are in SimAI's ``SimAI.conf``) so a config reads the same here and there:

* **Queues.**  Every directed link has an egress queue at its source node, served at the
  link's bandwidth.  The model is *fluid* and time-stepped (``dt_ns``, 1 µs by default): in a
  step each flow injects ``rate · dt`` bytes into its first hop, then the hops are swept in
  path order: a link serves what is queued for it within what is left of its
  ``bandwidth · dt``, shared among the flows in proportion to their bytes there (FIFO in the
  fluid limit), and served bytes join the next hop's queue in the same step.  Queues at
  NICs, PCIe and NVLink are lossless with credit flow control: a hop forwards into one only
  as far as it has room (``CREDIT_STEPS`` steps of its link's rate).  The standing queues
  after the sweep are what ECN and PFC see.  A flow's last byte lands one path latency after
  the point in its last step at which its slowest hop finished with it, so an unshared flow
  finishes as in the flow model (within a nanosecond of rounding).
* **ECN** (switch-mmu ``ShouldSendCN``): an egress queue of a switch above ``KMIN`` marks
  with probability rising linearly to ``PMAX`` at ``KMAX`` and always above ``KMAX``; the
  thresholds come from ``KMIN_MAP``/``KMAX_MAP``/``PMAX_MAP`` by link speed (KB, as in ns-3).
  Marking is by expected value: each flow accumulates ``served bytes × p / payload`` marked
  packets and a whole one counts as a marked arrival (deterministic, no RNG).
* **PFC** (IEEE 802.1Qbb; switch-mmu ``CheckShouldPause``/``CheckShouldResume``): a switch
  counts, per ingress link, the bytes it holds that came in on that link; above the pause
  threshold it pauses that link (the upstream sender stops serving it) and resumes it once the
  count is ``PFC_RESUME_OFFSET`` below the threshold.  The threshold is dynamic like ns-3's
  ``USE_DYNAMIC_PFC_THRESHOLD``: the switch's free buffer ``>> PFC_A_SHIFT``; otherwise the
  static ``PFC_XOFF``.  Pauses spread hop by hop towards the senders (head-of-line blocking).
  Without PFC a switch whose buffer (``BUFFER_SIZE``) overflows drops the excess of what
  arrived in that step; dropped bytes go back to their senders to be sent again (go-back-N,
  counted in ``stats["dropped_bytes"]``).
* **DCQCN** (``CC_MODE 1``; Zhu et al., SIGCOMM'15, and ns-3 ``rdma-hw.cc``'s Mellanox
  variant): the receiver (NP) answers marked arrivals with at most one CNP per flow per
  ``CNP_INTERVAL`` (50 µs in the paper; ns-3 echoes ECN on ACKs instead), reaching the sender
  one path latency later.  The sender (RP) keeps a current rate RC, target RT and α: every
  ``RATE_DECREASE_INTERVAL`` with a CNP since the last check, RT = RC (with
  ``CLAMP_TARGET_RATE`` or after an increase stage) and RC ·= 1 − α/2; every
  ``ALPHA_RESUME_INTERVAL`` α = (1 − g)·α (+ g if a CNP came), g = ``EWMA_GAIN``; every
  ``RP_TIMER`` without a decrease the increase stage grows: fast recovery RC = (RC + RT)/2 for
  the first ``FAST_RECOVERY_TIMES`` stages, then additive (RT += ``RATE_AI``), then hyper
  (RT += ``RATE_HAI``) increase, RC = (RC + RT)/2; RC stays in [``MIN_RATE``, line rate].

Simplifications, said here: no packets (so no per-packet latency jitter and no PFC frame
propagation delay: a pause acts from the next step); CNPs take the forward path latency back;
queues at NICs and PCIe switches are unbounded (only switches have buffers, ECN and PFC);
one traffic class.  Speed: numpy over flows × hops per step; while nothing queues, no CNP is
in flight and every sender is at line rate, the model jumps straight to the next event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from labrig.errors import ConfigError, UsageError
from labrig.hw.fabric.flows import NS_PER_S, FabricModel, Flow
from labrig.hw.fabric.topology import NodeKind, Topology

if TYPE_CHECKING:
    from labrig.hw._clock import Event
    from labrig.hw._platform import Platform

__all__ = ["QueueConfig", "QueueNetwork"]

KB = 1000                 # ns-3 KMIN/KMAX are in KB of 1000 bytes (switch-mmu: kmin * 1000)
MB = 1024 * 1024          # BUFFER_SIZE is in MB (third.cc: buffer_size * 1024 * 1024)
US = 1000                 # ns per µs: ns-3 intervals are in µs
MBPS = 1e6 / 8 / NS_PER_S  # bytes per ns in one Mb/s

# HPCC ns-3 defaults (mix/config.txt of the artifact and SimAI.conf): per link speed in bit/s,
# KMIN/KMAX in KB and PMAX.
DEFAULT_KMIN_MAP: tuple[tuple[float, float], ...] = (
    (25e9, 100), (40e9, 160), (100e9, 400), (200e9, 800), (400e9, 1600))
DEFAULT_KMAX_MAP: tuple[tuple[float, float], ...] = (
    (25e9, 400), (40e9, 800), (100e9, 1600), (200e9, 2400), (400e9, 3200))
DEFAULT_PMAX_MAP: tuple[tuple[float, float], ...] = (
    (25e9, 0.2), (40e9, 0.2), (100e9, 0.2), (200e9, 0.2), (400e9, 0.2))
SOURCE_QUEUE_STEPS = 2    # a sender keeps at most this many steps of line rate in its NIC queue
CREDIT_STEPS = 2          # queues at NICs/PCIe/NVLink hold this many steps of their link's rate


@dataclass(frozen=True)
class QueueConfig:
    """Knobs of :class:`QueueNetwork`, named as in the HPCC ns-3 config (units as there).

    Attributes
    ----------
    CC_MODE : int
        0 = no congestion control (senders at line rate), 1 = DCQCN.
    ENABLE_QCN : bool
        ECN marking at switch egress queues.
    ENABLE_PFC : bool
        PFC pause; without it switch buffer overflow drops.
    USE_DYNAMIC_PFC_THRESHOLD : bool
        Pause threshold = free switch buffer >> ``PFC_A_SHIFT`` (else ``PFC_XOFF``).
    PFC_A_SHIFT : int
    PFC_XOFF : int
        Static pause threshold, bytes per ingress link.
    PFC_RESUME_OFFSET : int
        Resume this many bytes below the pause threshold (ns-3 ``resume_offset``, 3 KB).
    BUFFER_SIZE : float
        Shared buffer per switch, MB.
    KMIN_MAP, KMAX_MAP, PMAX_MAP : tuple of (link bit/s, value)
        ECN thresholds (KB) and top probability by link speed; a link uses the entry of the
        largest speed not above its own (the smallest entry below all).
    ALPHA_RESUME_INTERVAL, RATE_DECREASE_INTERVAL, RP_TIMER : float
        DCQCN timers, µs.
    EWMA_GAIN : float
        g of the α update.
    FAST_RECOVERY_TIMES : int
    RATE_AI, RATE_HAI, MIN_RATE : float
        Mb/s.
    CLAMP_TARGET_RATE : bool
    CNP_INTERVAL : float
        Minimum gap between two CNPs of one flow at the receiver, µs (DCQCN paper: 50).
    PACKET_PAYLOAD_SIZE : int
        Bytes per packet (marking granularity).
    dt_ns : int
        Time step of the fluid model.
    """

    CC_MODE: int = 1
    ENABLE_QCN: bool = True
    ENABLE_PFC: bool = True
    USE_DYNAMIC_PFC_THRESHOLD: bool = True
    PFC_A_SHIFT: int = 3
    PFC_XOFF: int = 256 * KB
    PFC_RESUME_OFFSET: int = 3 * KB
    BUFFER_SIZE: float = 32
    KMIN_MAP: tuple[tuple[float, float], ...] = DEFAULT_KMIN_MAP
    KMAX_MAP: tuple[tuple[float, float], ...] = DEFAULT_KMAX_MAP
    PMAX_MAP: tuple[tuple[float, float], ...] = DEFAULT_PMAX_MAP
    ALPHA_RESUME_INTERVAL: float = 55
    RATE_DECREASE_INTERVAL: float = 4
    RP_TIMER: float = 300
    EWMA_GAIN: float = 1 / 256
    FAST_RECOVERY_TIMES: int = 5
    RATE_AI: float = 50
    RATE_HAI: float = 100
    MIN_RATE: float = 100
    CLAMP_TARGET_RATE: bool = False
    CNP_INTERVAL: float = 50
    PACKET_PAYLOAD_SIZE: int = 1000
    dt_ns: int = 1000
    extra: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError("QueueConfig", name, getattr(self, name), why)

        if self.CC_MODE not in (0, 1):
            raise bad("CC_MODE", "must be 0 (none) or 1 (DCQCN)")
        for name in ("PFC_A_SHIFT", "FAST_RECOVERY_TIMES"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, "must be an int >= 0")
        for name in ("PFC_XOFF", "PFC_RESUME_OFFSET", "PACKET_PAYLOAD_SIZE", "dt_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name ==
                                                                    "PFC_RESUME_OFFSET" else 1):
                raise bad(name, "must be a positive int")
        for name in ("BUFFER_SIZE", "ALPHA_RESUME_INTERVAL", "RATE_DECREASE_INTERVAL",
                     "RP_TIMER", "RATE_AI", "RATE_HAI", "MIN_RATE", "CNP_INTERVAL"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or not math.isfinite(v):
                raise bad(name, "must be a finite number > 0")
        if not 0 < self.EWMA_GAIN <= 1:
            raise bad("EWMA_GAIN", "must be in (0, 1]")
        for name in ("KMIN_MAP", "KMAX_MAP", "PMAX_MAP"):
            m = getattr(self, name)
            if not m or any(len(e) != 2 or not e[0] > 0 or e[1] < 0 for e in m):
                raise bad(name, "must be non-empty (link bit/s > 0, value >= 0) pairs")
        if any(not 0 <= p <= 1 for _, p in self.PMAX_MAP):
            raise bad("PMAX_MAP", "probabilities must be in [0, 1]")

    @classmethod
    def from_ns3(cls, text: str, **overrides: object) -> QueueConfig:
        """Read the keys this model knows from an ns-3 ``config.txt`` (``KEY value`` lines,
        rates like ``50Mb/s``, maps as ``KMAX_MAP n bw1 v1 ... bwn vn``); other keys are kept
        in ``extra`` unread.  A malformed known key is a ConfigError naming it."""
        known = {f.name: f for f in fields(cls) if f.name not in ("extra", "dt_ns")}
        vals: dict[str, object] = {}
        extra: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            key, args = parts[0], parts[1:]
            if key not in known:
                extra[key] = " ".join(args)
                continue
            try:
                vals[key] = _parse_ns3(key, args, known[key].type)
            except (ValueError, IndexError) as e:
                raise ConfigError("QueueConfig", key, " ".join(args),
                                  f"not a valid ns-3 value ({e})") from None
        vals.update(overrides)
        return cls(**vals, extra=extra)  # type: ignore[arg-type]

    def ecn_thresholds(self, bandwidth_Bps: float) -> tuple[float, float, float]:
        """(KMIN bytes, KMAX bytes, PMAX) of a link of this speed."""
        bps = bandwidth_Bps * 8

        def pick(m: tuple[tuple[float, float], ...]) -> float:
            ordered = sorted(m)
            v = ordered[0][1]
            for speed, val in ordered:
                if speed <= bps * (1 + 1e-9):
                    v = val
            return float(v)

        return pick(self.KMIN_MAP) * KB, pick(self.KMAX_MAP) * KB, pick(self.PMAX_MAP)


def _parse_ns3(key: str, args: list[str], typ: object) -> object:
    if key.endswith("_MAP"):
        n = int(args[0])
        nums = args[1:1 + 2 * n]
        if len(nums) != 2 * n:
            raise ValueError(f"{n} pairs announced, {len(nums) // 2} given")
        return tuple((float(nums[2 * i]), float(nums[2 * i + 1])) for i in range(n))
    raw = args[0]
    if raw.endswith("Mb/s"):
        return float(raw[:-4])
    if raw.endswith("Gb/s"):
        return float(raw[:-4]) * 1000
    if typ in (bool, "bool"):
        return bool(int(raw))
    if typ in (int, "int"):
        return int(float(raw))
    return float(raw)


class QueueNetwork(FabricModel):
    """Fluid per-link queue model with ECN, PFC and DCQCN (see the module docstring).

    Same interface as :class:`~labrig.hw.fabric.flows.FlowNetwork`: ``transfer``,
    ``set_link_up``, ``link_up``, ``cancel``, ``rate_of``, ``remaining_bytes``,
    ``active_flows``, ``snapshot``, ``capacity_Bps``, ``link_load_Bps``, ``stats`` and
    ``observers`` (called after every step).

    Parameters
    ----------
    platform : Platform
    topology : Topology
    config : QueueConfig, optional

    Attributes
    ----------
    stats : dict
        Flow counts as FlowNetwork, plus ``steps``, ``jumps`` (fast-forwards), ``marks``
        (marked packets), ``cnps``, ``rate_decreases``, ``pauses`` (PFC pause onsets),
        ``dropped_bytes``.
    max_queue_bytes : ndarray
        Largest standing queue seen per link (bytes), for inspection and tests.

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> from labrig.hw.fabric.presets import dgx_like
    >>> plat = Platform(seed=0)
    >>> net = QueueNetwork(plat, dgx_like(n_servers=2))
    >>> f = net.transfer("s0.gpu0", "s1.gpu0", 1_000_000, lambda t: None)
    >>> plat.run_until_idle() > 0, f.state.value
    (True, 'done')
    """

    STAT_KEYS = (*FabricModel.STAT_KEYS, "steps", "jumps", "marks", "cnps", "rate_decreases",
                 "pauses", "dropped_bytes")

    def __init__(self, platform: Platform, topology: Topology,
                 config: QueueConfig | None = None) -> None:
        super().__init__(platform, topology)
        if config is not None and not isinstance(config, QueueConfig):
            raise UsageError(f"QueueNetwork config={config!r}: must be a QueueConfig")
        self.config = cfg = config or QueueConfig()
        nl = len(topology.links)
        kinds = {n: node.kind for n, node in topology.nodes.items()}
        names = topology.link_names
        src_of = [topology.links[n].src for n in names]
        dst_of = [topology.links[n].dst for n in names]
        self._switches = sorted(n for n, k in kinds.items() if k is NodeKind.SWITCH)
        sw_index = {n: i for i, n in enumerate(self._switches)}
        # egress queue of link l sits at src_of[l]; bytes queued there came in on the previous
        # hop, whose destination is that node
        self._egress_sw = np.array([sw_index.get(s, -1) for s in src_of], np.int64)
        self._ingress_sw = np.array([sw_index.get(d, -1) for d in dst_of], np.int64)
        thr = np.array([cfg.ecn_thresholds(bw) for bw in topology.bandwidth_Bps]).reshape(nl, 3)
        self._kmin, self._kmax, self._pmax = thr[:, 0], thr[:, 1], thr[:, 2]
        self._buffer = cfg.BUFFER_SIZE * MB
        self._paused = np.zeros(nl, dtype=bool)
        self.max_queue_bytes = np.zeros(nl)
        self._dt = cfg.dt_ns
        self._g = cfg.EWMA_GAIN
        # per active flow (arrival order): state arrays, queue matrix Q[f, hop]
        self._flows: list[Flow] = []
        self._hops = np.zeros((0, 1), np.int64)       # link index per hop, -1 padded
        self._nh = np.zeros(0, np.int64)              # hops per flow
        self._q = np.zeros((0, 1))                    # bytes of the flow queued at each hop
        self._rem = np.zeros(0)                       # bytes not yet injected
        self._line = np.zeros(0)                      # line rate: path bottleneck, bytes/ns
        self._rc = np.zeros(0)                        # DCQCN current rate RC, bytes/ns
        self._rt = np.zeros(0)                        # target rate RT
        self._alpha = np.zeros(0)
        self._stage = np.zeros(0, np.int64)           # rate increase stage
        self._t_inc = np.zeros(0, np.int64)           # next RP_TIMER expiry
        self._t_dec = np.zeros(0, np.int64)           # next rate-decrease check
        self._t_alpha = np.zeros(0, np.int64)         # next alpha update
        self._cnp_seen = np.zeros(0, bool)            # CNP arrived since the last decrease
        self._alpha_cnp = np.zeros(0, bool)           # CNP arrived since the last alpha update
        self._marks = np.zeros(0)                     # marked packets not yet answered
        self._last_cnp = np.zeros(0, np.int64)        # NP: when this flow's last CNP left
        self._cnp_due: list[list[int]] = []           # CNP arrival times at the RP
        self._offset = np.zeros(0, np.int64)          # see _advance
        self._step_ev: Event | None = None

    # -- public API -------------------------------------------------------------------------
    def _fail_sending(self, i: int, reason: str) -> None:
        hit = [k for k, f in enumerate(self._flows) if i in f._links]
        if hit:
            failed = [self._flows[k] for k in hit]
            self._drop_rows(np.setdiff1d(np.arange(len(self._flows)), hit))
            for f in failed:
                self._fail(f, reason)

    def _cancel_active(self, flow: Flow) -> None:
        keep = [k for k, f in enumerate(self._flows) if f is not flow]
        self._drop_rows(np.asarray(keep, np.int64))

    def rate_of(self, flow: Flow) -> float:
        """Current sending rate of ``flow`` in bytes/s (0 unless it is sending)."""
        for k, f in enumerate(self._flows):
            if f is flow:
                return float(self._send_rate()[k] * NS_PER_S)
        return 0.0

    def remaining_bytes(self, flow: Flow) -> float:
        """Bytes of ``flow`` not yet delivered to its last hop."""
        for k, f in enumerate(self._flows):
            if f is flow:
                return float(self._rem[k] + self._q[k].sum())
        return 0.0

    def active_flows(self) -> tuple[Flow, ...]:
        """Flows sending right now, in arrival order."""
        return tuple(self._flows)

    def snapshot(self) -> list[tuple[Flow, float]]:
        """``(flow, sending rate in bytes/s)`` for every active flow."""
        rate = self._send_rate()
        return [(f, float(r * NS_PER_S)) for f, r in zip(self._flows, rate)]

    def queue_bytes(self) -> dict[str, float]:
        """Standing queue per link with one, bytes."""
        q = self._link_queues()
        names = self.topology.link_names
        return {names[i]: float(q[i]) for i in np.flatnonzero(q > 0)}

    def paused_links(self) -> tuple[str, ...]:
        """Links a PFC pause holds right now."""
        names = self.topology.link_names
        return tuple(names[i] for i in np.flatnonzero(self._paused))

    # -- the model --------------------------------------------------------------------------
    def _send_rate(self) -> np.ndarray:
        return self._rc if self.config.CC_MODE == 1 else self._line

    def _admit(self, f: Flow) -> None:
        now = self.plat.now_ns
        width = max(self._hops.shape[1], len(f._links))
        if width > self._hops.shape[1]:
            pad = width - self._hops.shape[1]
            self._hops = np.pad(self._hops, ((0, 0), (0, pad)), constant_values=-1)
            self._q = np.pad(self._q, ((0, 0), (0, pad)))
        row = np.full(width, -1, np.int64)
        row[:len(f._links)] = f._links
        line = float(self._bw[f._links].min())
        cfg = self.config
        self._flows.append(f)
        self._hops = np.vstack([self._hops, row[None, :]])
        self._q = np.vstack([self._q, np.zeros((1, width))])
        self._nh = np.append(self._nh, len(f._links))
        self._rem = np.append(self._rem, float(f.nbytes))
        self._line = np.append(self._line, line)
        self._rc = np.append(self._rc, line)
        self._rt = np.append(self._rt, line)
        self._alpha = np.append(self._alpha, 1.0)       # DCQCN paper: α starts at 1
        self._stage = np.append(self._stage, 0)
        self._t_inc = np.append(self._t_inc, now + int(cfg.RP_TIMER * US))
        self._t_dec = np.append(self._t_dec, now + int(cfg.RATE_DECREASE_INTERVAL * US))
        self._t_alpha = np.append(self._t_alpha, now + int(cfg.ALPHA_RESUME_INTERVAL * US))
        self._cnp_seen = np.append(self._cnp_seen, False)
        self._alpha_cnp = np.append(self._alpha_cnp, False)
        self._marks = np.append(self._marks, 0.0)
        self._last_cnp = np.append(self._last_cnp, -(1 << 62))
        self._cnp_due.append([])
        if self._step_ev is None:
            self._step_ev = self.plat.schedule(0, self._step)

    def _drop_rows(self, keep: np.ndarray) -> None:
        keep = np.asarray(keep, np.int64)
        for name in ("_hops", "_q", "_nh", "_rem", "_line", "_rc", "_rt", "_alpha", "_stage",
                     "_t_inc", "_t_dec", "_t_alpha", "_cnp_seen", "_alpha_cnp", "_marks",
                     "_last_cnp"):
            setattr(self, name, getattr(self, name)[keep])
        self._flows = [self._flows[k] for k in keep.tolist()]
        self._cnp_due = [self._cnp_due[k] for k in keep.tolist()]
        if not self._flows:
            self._hops = np.zeros((0, 1), np.int64)
            self._q = np.zeros((0, 1))
            self._paused[:] = False
            if self._step_ev is not None:
                self._step_ev.cancel()
                self._step_ev = None

    def _link_queues(self) -> np.ndarray:
        valid = self._hops >= 0
        return np.bincount(self._hops[valid], weights=self._q[valid], minlength=len(self._bw))

    def _step(self) -> None:
        """Advance the fluid state by one step (or jump over a quiet stretch)."""
        self._step_ev = None
        now = self.plat.now_ns
        if not self._flows:
            return
        dt = self._dt
        k = self._quiet_steps()
        if k > 1:                       # leaves every flow at least a step to go
            self._jump(k)
            self.stats["jumps"] += 1
            self._reschedule(k * dt)
            return
        self.stats["steps"] += 1
        self._cc_timers(now)
        self._advance(dt, now)
        self._finish_done()
        for fn in self.observers:
            fn(self)
        self._reschedule(dt)

    def _reschedule(self, delay: int) -> None:
        if self._flows and self._step_ev is None:
            self._step_ev = self.plat.schedule(delay, self._step)

    def _quiet_steps(self) -> int:
        """Whole steps until something can change, if nothing is queued, paused or pending
        and every sender is at line rate; else 0."""
        if ((self._q > 1e-6).any() or self._paused.any() or any(self._cnp_due)
                or (self._marks >= 1).any()):
            return 0
        rate = self._send_rate()
        if self.config.CC_MODE == 1 and (rate < self._line).any():
            return 0
        # flows sharing a link would queue: only jump when no link is oversubscribed
        valid = self._hops >= 0
        load = np.bincount(self._hops[valid], weights=np.repeat(rate, self._nh),
                           minlength=len(self._bw))
        if (load > self._bw * (1 + 1e-12)).any():
            return 0
        steps_left = np.floor(self._rem / (rate * self._dt))
        return int(max(steps_left.min() - 1, 0))

    def _jump(self, k: int) -> None:
        """k quiet steps at once: senders at line rate, nothing queues, α decays."""
        self._rem -= self._send_rate() * (k * self._dt)
        if self.config.CC_MODE == 1:
            per = max(int(self.config.ALPHA_RESUME_INTERVAL * US) // self._dt, 1)
            self._alpha *= (1 - self._g) ** (k / per)
            t_end = self.plat.now_ns + k * self._dt
            self._t_alpha = np.maximum(self._t_alpha, t_end)
            self._t_dec = np.maximum(self._t_dec, t_end)
            self._t_inc = np.maximum(self._t_inc, t_end)

    def _cc_timers(self, now: int) -> None:
        """DCQCN reaction point: CNP arrivals, α updates, rate decreases and increases."""
        cfg = self.config
        if cfg.CC_MODE != 1:
            return
        for k, due in enumerate(self._cnp_due):
            if due and due[0] <= now:
                while due and due[0] <= now:
                    due.pop(0)
                self._cnp_seen[k] = self._alpha_cnp[k] = True
        g = self._g
        a_due = self._t_alpha <= now
        if a_due.any():
            self._alpha[a_due] = (1 - g) * self._alpha[a_due] + g * self._alpha_cnp[a_due]
            self._alpha_cnp[a_due] = False
            self._t_alpha[a_due] += int(cfg.ALPHA_RESUME_INTERVAL * US)
        d_due = self._t_dec <= now
        if d_due.any():
            dec = d_due & self._cnp_seen
            if dec.any():
                clamp = dec & (cfg.CLAMP_TARGET_RATE | (self._stage != 0))
                self._rt[clamp] = self._rc[clamp]
                self._rc[dec] = np.maximum(self._rc[dec] * (1 - self._alpha[dec] / 2),
                                           cfg.MIN_RATE * MBPS)
                self._stage[dec] = 0
                self._cnp_seen[dec] = False
                self._t_inc[dec] = now + int(cfg.RP_TIMER * US)
                self.stats["rate_decreases"] += int(dec.sum())
            self._t_dec[d_due] += int(cfg.RATE_DECREASE_INTERVAL * US)
        i_due = self._t_inc <= now
        if i_due.any():
            self._stage[i_due] += 1
            st = self._stage
            fr = cfg.FAST_RECOVERY_TIMES
            ai = i_due & (st == fr)
            hai = i_due & (st > fr)
            self._rt[ai] += cfg.RATE_AI * MBPS
            self._rt[hai] += cfg.RATE_HAI * MBPS
            np.minimum(self._rt, self._line, out=self._rt)
            self._rc[i_due] = (self._rc[i_due] + self._rt[i_due]) / 2
            self._t_inc[i_due] += int(cfg.RP_TIMER * US)

    def _advance(self, dt: int, now: int) -> None:
        """One step: inject, then sweep the hops in order -- each link serves its queue
        within what is left of its ``bandwidth · dt``, lossless hops only into room
        downstream, switches drop beyond their buffer without PFC -- then ECN and PFC on the
        standing queues.  Sets ``self._offset`` (ns into the step a flow's last byte left)."""
        cfg = self.config
        width = self._q.shape[1]
        nl = len(self._bw)
        rate = self._send_rate()
        inj = np.minimum(np.minimum(rate * dt, self._rem),
                         np.maximum(rate * dt * SOURCE_QUEUE_STEPS - self._q[:, 0], 0.0))
        self._rem -= inj
        self._q[:, 0] += inj
        valid = self._hops >= 0
        hops = np.where(valid, self._hops, 0)
        cap = self._bw * dt * (self._up & ~self._paused)
        served_all = np.zeros_like(self._q)
        lossless = self._egress_sw < 0
        for h in range(width):
            v = valid[:, h]
            col = hops[:, h]
            req = self._q[:, h] * v
            demand = np.bincount(col, weights=req, minlength=nl)
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(demand > cap, cap / demand, 1.0)
            served = req * frac[col]
            if h + 1 < width:
                nv = valid[:, h + 1]
                ncol = hops[:, h + 1]
                into = served * nv
                # credit flow control: only as much as fits in a lossless queue downstream
                held = np.bincount(ncol, weights=self._q[:, h + 1] * nv, minlength=nl)
                room = np.where(lossless, np.maximum(self._bw * dt * CREDIT_STEPS - held, 0.0),
                                np.inf)
                want = np.bincount(ncol, weights=into, minlength=nl)
                with np.errstate(divide="ignore", invalid="ignore"):
                    fit = np.where(want > room, room / want, 1.0)
                served = np.where(nv, served * fit[ncol], served)
            cap -= np.bincount(col, weights=served, minlength=nl)
            np.maximum(cap, 0.0, out=cap)
            self._q[:, h] -= served
            served_all[:, h] = served
            if h + 1 < width:
                arrive = served * valid[:, h + 1]
                if not cfg.ENABLE_PFC and self._switches:
                    arrive = self._drop_overflow(arrive, hops, valid, h + 1)
                self._q[:, h + 1] += arrive
        # when in the step each flow's bytes left their slowest hop (for landing times)
        with np.errstate(divide="ignore", invalid="ignore"):
            busy = np.where(valid, served_all / (self._bw[hops] * dt), 0.0)
        self._offset = np.ceil(np.minimum(busy.max(1), 1.0) * dt).astype(np.int64)
        standing = np.bincount(hops[valid], weights=self._q[valid], minlength=nl)
        np.maximum(self.max_queue_bytes, standing, out=self.max_queue_bytes)
        if cfg.ENABLE_QCN:      # ECN at switch egress queues, by expected value
            span = np.maximum(self._kmax - self._kmin, 1.0)
            p = np.where(standing > self._kmax, 1.0,
                         np.where(standing > self._kmin,
                                  self._pmax * (standing - self._kmin) / span, 0.0))
            p[~(self._egress_sw >= 0)] = 0.0
            self._marks += (served_all * p[hops] * valid).sum(1) / cfg.PACKET_PAYLOAD_SIZE
        if cfg.ENABLE_PFC and self._switches:
            self._pfc(hops, valid)
        if cfg.CC_MODE == 1:
            self._notify(now)

    def _drop_overflow(self, arrive: np.ndarray, hops: np.ndarray, valid: np.ndarray,
                       h: int) -> np.ndarray:
        """Without PFC: bytes ``arrive`` at hop ``h`` beyond a full switch buffer are dropped
        and go back to their senders (go-back-N); returns what is kept."""
        held = self._switch_bytes(self._q, hops, valid)
        sw = np.where(valid[:, h], self._egress_sw[hops[:, h]], -1)
        ok = sw >= 0
        incoming = np.bincount(sw[ok], weights=arrive[ok], minlength=len(self._switches))
        room = np.maximum(self._buffer - held, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.where(incoming > room, room / incoming, 1.0)
        kept = np.where(ok, arrive * keep[np.maximum(sw, 0)], arrive)
        dropped = arrive - kept
        if dropped.any():
            self._rem += dropped
            self.stats["dropped_bytes"] += int(round(float(dropped.sum())))
        return kept

    def _switch_bytes(self, q: np.ndarray, hops: np.ndarray, valid: np.ndarray) -> np.ndarray:
        sw = self._egress_sw[hops]
        ok = valid & (sw >= 0)
        return np.bincount(sw[ok], weights=q[ok], minlength=len(self._switches))

    def _pfc(self, hops: np.ndarray, valid: np.ndarray) -> None:
        cfg = self.config
        if self._q.shape[1] < 2:
            return
        # bytes at hop h (h >= 1) sit at a node reached over hop h-1's link
        in_link = hops[:, :-1]
        here = self._q[:, 1:]
        ok = valid[:, 1:] & (self._ingress_sw[in_link] >= 0)
        ingress = np.bincount(in_link[ok], weights=here[ok], minlength=len(self._bw))
        if cfg.USE_DYNAMIC_PFC_THRESHOLD:
            used = self._switch_bytes(self._q, hops, valid)
            free = np.maximum(self._buffer - used, 0.0)
            sw = self._ingress_sw
            xoff = np.where(sw >= 0, free[np.maximum(sw, 0)] / (1 << cfg.PFC_A_SHIFT), np.inf)
        else:
            xoff = np.where(self._ingress_sw >= 0, float(cfg.PFC_XOFF), np.inf)
        pause = ~self._paused & (ingress > xoff)
        resume = self._paused & (ingress < xoff - cfg.PFC_RESUME_OFFSET)
        if pause.any():
            self.stats["pauses"] += int(pause.sum())
        self._paused = (self._paused | pause) & ~resume

    def _notify(self, now: int) -> None:
        """Notification point: a CNP for flows with a marked arrival, at most one per
        CNP_INTERVAL, reaching the sender one path latency later."""
        want = self._marks >= 1.0
        if not want.any():
            return
        gap = int(self.config.CNP_INTERVAL * US)
        send = want & (now - self._last_cnp >= gap)
        for k in np.flatnonzero(send).tolist():
            self._cnp_due[k].append(now + self._flows[k].latency_ns)
            self._last_cnp[k] = now
        self.stats["cnps"] += int(send.sum())
        self.stats["marks"] += int(np.floor(self._marks[want]).sum())
        self._marks[want] = 0.0      # answered, or folded into the CNP already sent

    def _finish_done(self) -> None:
        """After a step: flows with every byte delivered land; their last byte left its last
        queue ``offset`` ns into the step and arrives one path latency later."""
        done = (self._rem <= 1e-6) & (self._q.sum(1) <= 1e-6)
        if not done.any():
            return
        idx = np.flatnonzero(done)
        flows = [self._flows[k] for k in idx.tolist()]
        offset = self._offset[idx]
        self._drop_rows(np.flatnonzero(~done))
        now = self.plat.now_ns
        for f, off in zip(flows, offset.tolist()):
            self.stats["departures"] += 1
            self._land(f, now, int(off) + f.latency_ns)

    def __repr__(self) -> str:
        return (f"QueueNetwork({self.topology!r}, active={len(self._flows)}, "
                f"landing={len(self._landing)}, cc={self.config.CC_MODE}, "
                f"pfc={self.config.ENABLE_PFC})")
