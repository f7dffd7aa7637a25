"""Flow-level bandwidth sharing: max-min fair rates, recomputed on every arrival and departure.

This is the fast default network model of issue #8 (shared/research/fabric.md, section 5: the
"analytical / flow-level" mode of SimAI and ASTRA-sim next to their packet-level ns-3 modes).
A transfer is a *flow* over a route of directed links.  Its life, in virtual integer ns:

1. posted at ``t0``: it joins the set of sending flows at once (batched with every other flow
   posted in the same nanosecond);
2. sending: its rate is its max-min fair share, recomputed on every arrival and departure
   only -- between two such events rates are constant, so the instant its last byte leaves
   the source is exact: ``t_tx = t + ceil(remaining / rate)``;
3. landing: it leaves the sending set at ``t_tx`` (a departure) and its last byte arrives one
   path latency later, when ``on_done(now_ns)`` runs.  The first byte therefore arrives one
   path latency after ``t0``, and an unshared flow takes ``latency + ceil(nbytes / bottleneck)``.

Rates come from progressive filling (water-filling; Bertsekas & Gallager, *Data Networks*,
section 6.5.2): all unfrozen flows rise together; the links whose remaining capacity divided by
their unfrozen flows is smallest saturate; flows crossing them freeze at that level; repeat.
The loop runs over a sparse links x flows incidence (a route that crosses a link twice counts
twice), vectorized with numpy or, where a C compiler is present, in a small C kernel that gives
the same bits (:mod:`labrig.hw.fabric._maxmin`).  Everything is ordered by arrival sequence
and computed in float64 with the same operations on every machine, so a run is deterministic.

A link taken down (:meth:`FlowNetwork.set_link_up`) fails every flow on it that is sending or
landing: ``on_fail(reason)`` runs (as an event at the current time) and the flow's bytes are
not delivered.  A flow posted over a link that is already down fails the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from labrig.errors import UsageError
from labrig.hw.fabric._maxmin import fill
from labrig.hw.fabric.topology import Topology

if TYPE_CHECKING:
    from labrig.hw._clock import Event
    from labrig.hw._platform import Platform

__all__ = ["FabricModel", "Flow", "FlowNetwork", "FlowState"]

#: Topologies with more links than this hand the max-min kernel only the links in use.
COMPACT_ABOVE_LINKS = 512

#: Bytes per second in one byte per ns (rates are kept in bytes/ns internally).
NS_PER_S = 1e9


class FlowState(StrEnum):
    """Where a flow is in its life (see the module docstring)."""

    SENDING = "sending"
    LANDING = "landing"        # last byte left the source, not yet at the destination
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Flow:
    """One transfer; returned by :meth:`FlowNetwork.transfer`.

    Attributes
    ----------
    id : int
        Arrival sequence number on its network (the deterministic order of everything).
    src, dst : str
        End nodes.
    nbytes : int
    path : tuple of str
        Link names.
    latency_ns : int
        Summed latency of the path.
    posted_ns : int
    sent_ns : int or None
        When the last byte left the source.
    done_ns : int or None
        When ``on_done`` ran (last byte arrived).
    state : FlowState
    fail_reason : str or None
    """

    __slots__ = ("_links", "_on_done", "_on_fail", "_timer", "dst", "done_ns", "fail_reason",
                 "id", "latency_ns", "nbytes", "path", "posted_ns", "sent_ns", "src", "state")

    def __init__(self, fid: int, src: str, dst: str, nbytes: int, path: tuple[str, ...],
                 links: np.ndarray, latency_ns: int, posted_ns: int,
                 on_done: Callable[[int], None], on_fail: Callable[[str], None] | None) -> None:
        self.id = fid
        self.src = src
        self.dst = dst
        self.nbytes = nbytes
        self.path = path
        self._links = links
        self.latency_ns = latency_ns
        self.posted_ns = posted_ns
        self.sent_ns: int | None = None
        self.done_ns: int | None = None
        self.state = FlowState.SENDING
        self.fail_reason: str | None = None
        self._on_done = on_done
        self._on_fail = on_fail
        self._timer: Event | None = None

    @property
    def finished(self) -> bool:
        """True once the flow is done, failed or cancelled."""
        return self.state in (FlowState.DONE, FlowState.FAILED, FlowState.CANCELLED)

    def __repr__(self) -> str:
        return (f"Flow(id={self.id}, src={self.src!r}, dst={self.dst!r}, nbytes={self.nbytes}, "
                f"state={self.state.value})")


class FabricModel(ABC):
    """What every network model of a :class:`Topology` shares: checked transfers, link state,
    delivery and failure callbacks, ``stats`` and ``observers``.  :class:`FlowNetwork` (max-min
    flows) and :class:`~labrig.hw.fabric.congestion.QueueNetwork` (per-link queues with ECN, PFC
    and DCQCN) build on it, so callers can swap one for the other."""

    STAT_KEYS: tuple[str, ...] = ("arrivals", "departures", "deliveries", "failures")

    def __init__(self, platform: Platform, topology: Topology) -> None:
        self.plat = platform
        self.topology = topology
        self._link_index = {name: ln.index for name, ln in topology.links.items()}
        self._bw = np.asarray(topology.bandwidth_Bps, dtype=np.float64) / NS_PER_S  # bytes/ns
        self._up = np.ones(len(topology.links), dtype=bool)
        self._landing: dict[int, Flow] = {}
        self._next_id = 0
        self.stats = dict.fromkeys(self.STAT_KEYS, 0)
        self.observers: list[Callable[[FabricModel], None]] = []

    def transfer(self, src: str, dst: str, nbytes: int, on_done: Callable[[int], None], *,
                 on_fail: Callable[[str], None] | None = None,
                 path: Sequence[str] | None = None, ecmp_key: int | None = None) -> Flow:
        """Move ``nbytes`` from node ``src`` to node ``dst``.

        Parameters
        ----------
        src, dst : str
            Node names.  ``src == dst`` (an empty route) delivers after 0 ns: the caller
            models any device-internal cost itself.
        nbytes : int
            Bytes to move, >= 0 (0 bytes still pays the path latency).
        on_done : callable
            ``on_done(now_ns)`` when the last byte arrives (always from an event, never inside
            this call).
        on_fail : callable, optional
            ``on_fail(reason)`` if a link on the route is down or goes down before the last
            byte arrives.  Without it a failed flow just ends in ``FlowState.FAILED``.
        path : sequence of str, optional
            Explicit route (link names, chained from ``src`` to ``dst``); default
            :meth:`Topology.path`.
        ecmp_key : int, optional
            Without ``path``: the flow's ECMP hash (e.g. its QP number, as RoCEv2 derives the
            UDP source port from it); the route is ``Topology.path(src, dst,
            flow_hash=ecmp_key)``, one of the equal-cost routes, chosen per switch.  ``None``:
            :meth:`Topology.path`'s single route.  Not an int: UsageError.

        Returns
        -------
        Flow

        Raises
        ------
        UsageError
            Unknown node or link, no route, a path that does not chain, bad ``nbytes``.
        """
        f = self._new_flow(src, dst, nbytes, on_done, on_fail, path, ecmp_key)
        down = self._down_link_of(f)
        if down is not None:
            self._fail(f, f"link {down} is down")
        elif nbytes == 0 or not len(f._links):
            self._land(f, self.plat.now_ns)
        else:
            self._admit(f)
        return f

    @abstractmethod
    def _admit(self, f: Flow) -> None:
        """Start sending a checked flow with bytes to move over a live route."""

    def _new_flow(self, src: str, dst: str, nbytes: int, on_done: Callable[[int], None],
                  on_fail: Callable[[str], None] | None, path: Sequence[str] | None,
                  ecmp_key: int | None = None) -> Flow:
        """Check a transfer's arguments and make its :class:`Flow` (see ``transfer``)."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise UsageError(f"transfer nbytes={nbytes!r}: must be an int >= 0")
        if not callable(on_done):
            raise UsageError(f"transfer on_done={on_done!r}: must be callable")
        if on_fail is not None and not callable(on_fail):
            raise UsageError(f"transfer on_fail={on_fail!r}: must be callable or None")
        topo = self.topology
        if path is not None:
            route = topo.check_path(src, dst, path)
        else:
            route = topo.path(src, dst, flow_hash=ecmp_key)
        idx = self._link_index
        links = np.fromiter((idx[ln] for ln in route), dtype=np.int64, count=len(route))
        latency = int(topo.latency_ns[links].sum()) if len(route) else 0
        f = Flow(self._next_id, src, dst, int(nbytes), route, links, latency, self.plat.now_ns,
                 on_done, on_fail)
        self._next_id += 1
        self.stats["arrivals"] += 1
        return f

    def _down_link_of(self, f: Flow) -> str | None:
        """Name of the first link of ``f``'s route that is down, if any."""
        if len(f._links) and not self._up[f._links].all():
            return next(ln for ln in f.path if not self._up[self._link_index[ln]])
        return None

    def link_up(self, link: str) -> bool:
        """Whether ``link`` is up."""
        return bool(self._up[self.topology.link(link).index])

    def capacity_Bps(self, link: str) -> float:
        """Capacity of ``link`` in bytes/s right now (0 while it is down)."""
        ln = self.topology.link(link)
        return ln.bandwidth_Bps if self._up[ln.index] else 0.0

    def set_link_up(self, link: str, up: bool) -> None:
        """Bring ``link`` up or down.  Down: every flow sending or landing over it fails
        (``on_fail`` runs as an event now) and the others carry on without it."""
        i = self.topology.link(link).index
        if bool(up) == bool(self._up[i]):
            return
        self._up[i] = bool(up)
        if up:
            return
        reason = f"link {link} went down"
        self._fail_sending(i, reason)
        self._fail_landing(i, reason)

    @abstractmethod
    def _fail_sending(self, i: int, reason: str) -> None:
        """Fail every flow not yet landing whose route crosses link index ``i``."""

    def cancel(self, flow: Flow) -> None:
        """Drop ``flow`` without calling either callback (e.g. its QP was destroyed)."""
        if flow.finished:
            return
        if flow.state is FlowState.LANDING:
            self._landing.pop(flow.id, None)
            if flow._timer is not None:
                flow._timer.cancel()
        else:
            self._cancel_active(flow)
        flow.state = FlowState.CANCELLED

    @abstractmethod
    def _cancel_active(self, flow: Flow) -> None:
        """Remove a flow that has not finished sending from the model's state."""

    @abstractmethod
    def snapshot(self) -> list[tuple[Flow, float]]:
        """``(flow, rate in bytes/s)`` for every sending flow, in arrival order."""

    def link_load_Bps(self) -> dict[str, float]:
        """Summed rate of the sending flows over each loaded link, in bytes/s."""
        load = np.zeros(len(self._bw))
        for f, r in self.snapshot():
            np.add.at(load, f._links, r)
        names = self.topology.link_names
        return {names[i]: float(load[i]) for i in np.flatnonzero(load)}

    def _land(self, f: Flow, now: int, delay_ns: int | None = None) -> None:
        """The last byte left the source: deliver it ``delay_ns`` (default: one path latency)
        later."""
        f.state = FlowState.LANDING
        f.sent_ns = now
        self._landing[f.id] = f
        f._timer = self.plat.schedule(f.latency_ns if delay_ns is None else delay_ns,
                                      self._deliver, f)

    def _deliver(self, f: Flow) -> None:
        self._landing.pop(f.id, None)
        f._timer = None
        f.state = FlowState.DONE
        f.done_ns = self.plat.now_ns
        self.stats["deliveries"] += 1
        f._on_done(f.done_ns)

    def _fail_landing(self, i: int, reason: str) -> None:
        """Fail every landing flow whose route crosses link index ``i``."""
        for fid in [fid for fid, f in self._landing.items() if i in f._links]:
            f = self._landing.pop(fid)
            if f._timer is not None:
                f._timer.cancel()
            self._fail(f, reason)

    def _fail(self, f: Flow, reason: str) -> None:
        f.state = FlowState.FAILED
        f.fail_reason = reason
        self.stats["failures"] += 1
        if f._on_fail is not None:
            self.plat.schedule(0, f._on_fail, reason)


class FlowNetwork(FabricModel):
    """Max-min fair flow model of a :class:`Topology` on a platform's virtual clock.

    Parameters
    ----------
    platform : Platform
    topology : Topology

    Attributes
    ----------
    stats : dict of str -> int
        ``arrivals``, ``departures`` (last byte sent), ``deliveries``, ``failures``,
        ``recomputes`` and ``fill_rounds`` (water-filling iterations).
    observers : list of callables
        Each is called as ``fn(network)`` right after every rate recomputation (tests check
        max-min fairness there; see :meth:`snapshot`).

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> from labrig.hw.fabric.presets import dgx_like
    >>> plat = Platform(seed=0)
    >>> net = FlowNetwork(plat, dgx_like(n_servers=2))
    >>> done = []
    >>> f = net.transfer("s0.gpu0", "s1.gpu0", 25_000_000, done.append)
    >>> plat.run_until_idle() > 0, done == [f.done_ns], f.done_ns > 1_000_000
    (True, True, True)
    """

    STAT_KEYS = (*FabricModel.STAT_KEYS, "recomputes", "fill_rounds")

    def __init__(self, platform: Platform, topology: Topology) -> None:
        super().__init__(platform, topology)
        n = len(topology.links)
        self._remap = np.zeros(n, dtype=np.int64)    # scratch: topology link -> matrix row
        # sending flows in arrival order, with parallel state arrays
        self._sending: list[Flow] = []
        self._rem = np.zeros(0, dtype=np.float64)      # bytes still to send
        self._rate = np.zeros(0, dtype=np.float64)     # bytes/ns
        self._finish = np.zeros(0, dtype=np.int64)     # ns when the last byte leaves
        self._lens = np.zeros(0, dtype=np.int64)       # route length of each sending flow
        self._rows = np.zeros(0, dtype=np.int64)       # their routes' link indices, concatenated
        self._arrivals: list[Flow] = []
        self._t_sync = platform.now_ns
        self._update_ev: Event | None = None           # batched recompute at "now"
        self._depart_ev: Event | None = None           # next departure

    # -- public API -------------------------------------------------------------------------
    def _admit(self, f: Flow) -> None:
        self._arrivals.append(f)
        if self._update_ev is None:
            self._update_ev = self.plat.schedule(0, self._on_update)

    def _fail_sending(self, i: int, reason: str) -> None:
        self._sync()
        keep = [k for k, f in enumerate(self._sending) if i not in f._links]
        if len(keep) != len(self._sending):
            failed = [f for f in self._sending if i in f._links]
            self._take(np.asarray(keep, dtype=np.int64))
            for f in failed:
                self._fail(f, reason)
        self._arrivals, arriving = [], self._arrivals
        for f in arriving:
            if i in f._links:
                self._fail(f, reason)
            else:
                self._arrivals.append(f)
        self._recompute()

    def _cancel_active(self, flow: Flow) -> None:
        if flow in self._arrivals:
            self._arrivals.remove(flow)
        else:
            self._sync()
            keep = [k for k, f in enumerate(self._sending) if f is not flow]
            self._take(np.asarray(keep, dtype=np.int64))
            self._recompute()

    def rate_of(self, flow: Flow) -> float:
        """Current rate of ``flow`` in bytes/s (0 unless it is sending)."""
        self._flush()
        for k, f in enumerate(self._sending):
            if f is flow:
                return float(self._rate[k] * NS_PER_S)
        return 0.0

    def remaining_bytes(self, flow: Flow) -> float:
        """Bytes ``flow`` still has to send at the current time."""
        self._flush()
        if flow.state is not FlowState.SENDING:
            return 0.0
        dt = self.plat.now_ns - self._t_sync
        for k, f in enumerate(self._sending):
            if f is flow:
                return max(0.0, float(self._rem[k] - self._rate[k] * dt))
        return float(flow.nbytes)

    def active_flows(self) -> tuple[Flow, ...]:
        """Flows sending right now, in arrival order."""
        self._flush()
        return tuple(self._sending)

    def snapshot(self) -> list[tuple[Flow, float]]:
        """``(flow, rate in bytes/s)`` for every sending flow, in arrival order."""
        self._flush()
        return [(f, float(r * NS_PER_S)) for f, r in zip(self._sending, self._rate)]

    # -- the model --------------------------------------------------------------------------
    def _flush(self) -> None:
        """Apply pending arrivals now (inspection calls see the state after them)."""
        if self._arrivals:
            self._recompute()

    def _on_update(self) -> None:
        self._update_ev = None
        self._recompute()

    def _on_depart(self) -> None:
        self._depart_ev = None
        self._recompute()

    def _sync(self) -> None:
        """Charge the bytes sent since the last sync at the current rates."""
        now = self.plat.now_ns
        dt = now - self._t_sync
        if dt and len(self._rem):
            self._rem -= self._rate * dt
        self._t_sync = now

    def _take(self, keep: np.ndarray) -> None:
        """Keep only the sending flows at positions ``keep`` (in order)."""
        mask = np.zeros(len(self._sending), dtype=bool)
        mask[keep] = True
        self._rows = self._rows[np.repeat(mask, self._lens)]
        self._lens = self._lens[keep]
        self._sending = [self._sending[k] for k in keep.tolist()]
        self._rem = self._rem[keep]
        self._rate = self._rate[keep]
        self._finish = self._finish[keep]

    def _recompute(self) -> None:
        """Departures due now, then arrivals, then new max-min rates and the next departure."""
        if self._update_ev is not None:
            self._update_ev.cancel()
            self._update_ev = None
        self._sync()
        now = self._t_sync
        if len(self._finish):
            due = self._finish <= now
            if due.any():
                gone = np.flatnonzero(due).tolist()
                for k in gone:
                    f = self._sending[k]
                    self.stats["departures"] += 1
                    self._land(f, now)
                self._take(np.flatnonzero(~due))
        if self._arrivals:
            new = self._arrivals
            self._arrivals = []
            self._sending.extend(new)
            self._rem = np.concatenate([self._rem, [float(f.nbytes) for f in new]])
            self._rate = np.concatenate([self._rate, np.zeros(len(new))])
            self._finish = np.concatenate([self._finish, np.zeros(len(new), dtype=np.int64)])
            self._lens = np.concatenate([self._lens, [len(f._links) for f in new]])
            self._rows = np.concatenate([self._rows, *(f._links for f in new)])
        self.stats["recomputes"] += 1
        if self._sending:
            self._rate = self._fill()
            np.maximum(self._rem, 0.0, out=self._rem)
            ticks = np.ceil(self._rem / self._rate)
            self._finish = now + np.maximum(ticks, 1.0).astype(np.int64)
            t_next = int(self._finish.min())
            ev = self._depart_ev
            if ev is None or ev.time_ns != t_next:
                if ev is not None:
                    ev.cancel()
                self._depart_ev = self.plat.schedule_at(t_next, self._on_depart)
        elif self._depart_ev is not None:
            self._depart_ev.cancel()
            self._depart_ev = None
        for fn in self.observers:
            fn(self)

    def _fill(self) -> np.ndarray:
        """Max-min fair rates (bytes/ns) of the sending flows by progressive filling.

        See :mod:`labrig.hw.fabric._maxmin` (C kernel, numpy reference, identical bits).
        """
        nf = len(self._sending)
        rows = self._rows
        cols = np.repeat(np.arange(nf), self._lens)
        if len(self._bw) <= COMPACT_ABOVE_LINKS:
            rate, rounds = fill(rows, cols, self._bw, nf)
        else:   # big topology: restrict the kernel to the links in use
            used = np.flatnonzero(np.bincount(rows, minlength=len(self._bw)))
            remap = self._remap
            remap[used] = np.arange(len(used))
            rate, rounds = fill(remap[rows], cols, self._bw[used], nf)
        self.stats["fill_rounds"] += rounds
        return rate

    def __repr__(self) -> str:
        return (f"FlowNetwork({self.topology!r}, sending={len(self._sending)}, "
                f"landing={len(self._landing)})")
