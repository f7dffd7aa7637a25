"""The fabric's graph: nodes (GPUs, NICs, CPUs, PCIe switches, NVSwitches, ToR and spine
switches) and directed links, each with a bandwidth and a latency, plus deterministic routing.

A :class:`TopologyBuilder` collects nodes and links and checks them as they enter (unknown
node, duplicate node or link, bad bandwidth or latency: each error names the offender);
:meth:`TopologyBuilder.build` freezes them into a :class:`Topology`, which never changes
afterwards, so routes can be cached.  Presets (:mod:`labrig.hw.fabric.presets`) use the builder.

Routing (:meth:`Topology.path`) is a shortest path by hop count, then by summed link latency,
then by the names of the links (lexicographically), so the same topology always gives the same
route.  Two forwarding rules keep routes physical:

- a GPU is an endpoint, never a transit node (NVLink traffic between GPUs crosses an NVSwitch;
  a GPU does not forward packets for others -- relaying through a GPU, as FuseLink does, is a
  store-and-forward the runtime models explicitly with two transfers);
- a NIC forwards only between its host side (PCIe) and its network side (cables to switches or
  other NICs), never network-to-network or host-to-host: an RDMA NIC is no router;
- a route crosses the network at most once (it cannot come back out of one server's PCIe tree
  onto the network: that would be a relay through a server, which again the caller models).

Equal-cost routes (:meth:`Topology.paths`: same hop count and summed latency as the best, same
forwarding rules) are what ECMP spreads flows over: ``path(src, dst, flow_hash=h)`` walks them
hop by hop and, at every network switch with several equal-cost next hops, takes next hop number
``mix(h, switch name) mod n`` (links ordered by name), as a RoCE switch hashes each flow's
5-tuple -- RoCEv2 carries per-flow entropy in the UDP source port (IBTA RoCEv2 annex A17.3),
and the ns-3 HPCC simulator's ``SwitchNode::GetOutDev`` hashes per flow at each switch.  ``mix``
is splitmix64 over the flow hash and the CRC-32 of the switch name, so the choice is the same in
every process (no salted ``hash()`` of strings) and each switch splits flows independently
(mixing in the switch avoids ECMP polarization, where every tier makes the same choice).

Link names are ``"<src>-><dst>"`` (e.g. ``"s0.nic2->tor0"``); node names follow the preset
convention ``"s0.gpu3"``, ``"s0.nic2"``, ``"s0.cpu"``, ``"s0.pcie1"``, ``"s0.nvsw"``,
``"tor0"``, ``"spine0"``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from labrig.errors import ConfigError, UsageError

__all__ = ["Link", "Node", "NodeKind", "Topology", "TopologyBuilder", "link_name"]


class NodeKind(StrEnum):
    """What a node is; decides whether it may forward traffic (see the module docstring)."""

    GPU = "gpu"
    NIC = "nic"
    CPU = "cpu"                      # root complex + host memory of one server
    PCIE_SWITCH = "pcie_switch"
    NVSWITCH = "nvswitch"
    SWITCH = "switch"                # network switch: ToR / leaf / spine


#: Kinds that sit on the network side of a NIC: a link touching one of these is a network link.
_NETWORK_KINDS = frozenset({NodeKind.SWITCH})
#: Route phases of :meth:`Topology.path`: before, on and after the (single) network crossing.
_BEFORE_NET, _ON_NET, _AFTER_NET = 0, 1, 2
#: Default ``limit`` of :meth:`Topology.paths` (a leaf-spine of 64 spines stays well under).
ECMP_MAX_PATHS = 256
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class _RouteDag:
    """Equal-cost routes of one (src, dst) pair as a DAG over (node, phase) states: ``nxt``
    maps each non-terminal state on a route to its (link name, next state) options sorted by
    link name; terminal states (at dst) have no entry.  ``count`` is the number of routes."""

    start: tuple[str, int]
    nxt: Mapping[tuple[str, int], tuple[tuple[str, tuple[str, int]], ...]]
    count: int


@dataclass(frozen=True)
class Node:
    """A vertex of the topology.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"s0.gpu3"``.
    kind : NodeKind
    server : int or None
        Index of the server the node belongs to; ``None`` for network switches.
    model : str
        Free-form hardware model (e.g. ``"A100-SXM4-80GB"``, ``"ConnectX-6"``) for reports.
    """

    name: str
    kind: NodeKind
    server: int | None = None
    model: str = ""


@dataclass(frozen=True)
class Link:
    """One direction of a cable or bus.

    Attributes
    ----------
    name : str
        ``"<src>-><dst>"``.
    src, dst : str
        Node names.
    bandwidth_Bps : float
        Capacity in bytes per second (one direction).
    latency_ns : int
        Time from the first bit entering at ``src`` to it leaving at ``dst`` (propagation plus
        the forwarding delay of ``dst`` if it is a switch).
    index : int
        Position in :attr:`Topology.bandwidth_Bps` / :attr:`Topology.latency_ns` arrays.
    network : bool
        True when either end is a network switch, or both ends are NICs (a back-to-back cable).
    """

    name: str
    src: str
    dst: str
    bandwidth_Bps: float
    latency_ns: int
    index: int
    network: bool


def link_name(src: str, dst: str) -> str:
    """The name of the directed link ``src -> dst``."""
    return f"{src}->{dst}"


class TopologyBuilder:
    """Collects nodes and links, validating each as it is added; :meth:`build` freezes them.

    Examples
    --------
    >>> b = TopologyBuilder()
    >>> b.add_node("h0", "nic"); b.add_node("h1", "nic"); b.add_node("tor0", "switch")
    >>> b.connect("h0", "tor0", bandwidth_Bps=25e9, latency_ns=200)
    >>> b.connect("h1", "tor0", bandwidth_Bps=25e9, latency_ns=200)
    >>> b.build().path("h0", "h1")
    ('h0->tor0', 'tor0->h1')
    """

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._links: dict[str, tuple[str, str, float, int]] = {}

    def add_node(self, name: str, kind: NodeKind | str, *, server: int | None = None,
                 model: str = "") -> None:
        """Add a node; ``kind`` is a :class:`NodeKind` or its value (``"gpu"``, ``"nic"``...).

        Raises
        ------
        UsageError
            Empty or duplicate name, name containing ``"->"``, or unknown kind.
        """
        if not isinstance(name, str) or not name or "->" in name:
            raise UsageError(f"node name {name!r}: must be a non-empty string without '->'")
        if name in self._nodes:
            raise UsageError(f"node {name!r} added twice")
        try:
            k = NodeKind(kind)
        except ValueError:
            allowed = ", ".join(k.value for k in NodeKind)
            raise UsageError(f"node {name!r}: kind {kind!r} is not one of {allowed}") from None
        self._nodes[name] = Node(name, k, server, model)

    def add_link(self, src: str, dst: str, *, bandwidth_Bps: float, latency_ns: int) -> str:
        """Add the directed link ``src -> dst`` and return its name.

        Raises
        ------
        UsageError
            An unknown node, a self-loop or a duplicate link.
        ConfigError
            ``bandwidth_Bps`` not a finite number > 0 or ``latency_ns`` not an int >= 0.
        """
        for end in (src, dst):
            if end not in self._nodes:
                raise UsageError(f"link {src}->{dst}: unknown node {end!r}")
        if src == dst:
            raise UsageError(f"link {src}->{dst}: a link must join two different nodes")
        name = link_name(src, dst)
        if name in self._links:
            raise UsageError(f"link {name!r} added twice")
        if (isinstance(bandwidth_Bps, bool) or not isinstance(bandwidth_Bps, (int, float))
                or not math.isfinite(bandwidth_Bps) or bandwidth_Bps <= 0):
            raise ConfigError(f"Link {name}", "bandwidth_Bps", bandwidth_Bps,
                              "must be a finite number > 0 (bytes/s)")
        if isinstance(latency_ns, bool) or not isinstance(latency_ns, (int, np.integer)) \
                or latency_ns < 0:
            raise ConfigError(f"Link {name}", "latency_ns", latency_ns, "must be an int >= 0")
        self._links[name] = (src, dst, float(bandwidth_Bps), int(latency_ns))
        return name

    def connect(self, a: str, b: str, *, bandwidth_Bps: float, latency_ns: int) -> None:
        """Add both directions ``a -> b`` and ``b -> a`` with the same bandwidth and latency
        (a full-duplex cable or bus)."""
        self.add_link(a, b, bandwidth_Bps=bandwidth_Bps, latency_ns=latency_ns)
        self.add_link(b, a, bandwidth_Bps=bandwidth_Bps, latency_ns=latency_ns)

    def build(self) -> Topology:
        """Freeze into a :class:`Topology` (the builder may be reused afterwards)."""
        return Topology(self._nodes.values(), self._links.values())


class Topology:
    """An immutable fabric graph with cached deterministic routes.

    Attributes
    ----------
    nodes : mapping of str -> Node
    links : mapping of str -> Link
        In insertion order; ``links[name].index`` indexes the arrays below.
    link_names : tuple of str
        Link names by index.
    bandwidth_Bps : ndarray of float64, shape (n_links,)
        Read-only capacities.
    latency_ns : ndarray of int64, shape (n_links,)
        Read-only latencies.
    """

    def __init__(self, nodes: Iterable[Node], links: Iterable[tuple[str, str, float, int]]
                 ) -> None:
        node_map = {n.name: n for n in nodes}
        link_map: dict[str, Link] = {}
        out: dict[str, list[Link]] = {n: [] for n in node_map}
        for i, (src, dst, bw, lat) in enumerate(links):
            network = (node_map[src].kind in _NETWORK_KINDS or node_map[dst].kind in _NETWORK_KINDS
                       or (node_map[src].kind is NodeKind.NIC
                           and node_map[dst].kind is NodeKind.NIC))
            ln = Link(link_name(src, dst), src, dst, bw, lat, i, network)
            link_map[ln.name] = ln
            out[src].append(ln)
        self.nodes: Mapping[str, Node] = MappingProxyType(node_map)
        self.links: Mapping[str, Link] = MappingProxyType(link_map)
        self.link_names: tuple[str, ...] = tuple(link_map)
        bw_arr = np.array([ln.bandwidth_Bps for ln in link_map.values()], dtype=np.float64)
        lat_arr = np.array([ln.latency_ns for ln in link_map.values()], dtype=np.int64)
        bw_arr.flags.writeable = False
        lat_arr.flags.writeable = False
        self.bandwidth_Bps = bw_arr
        self.latency_ns = lat_arr
        # neighbours in name order, so route search is independent of insertion order
        self._out = {n: tuple(sorted(ls, key=lambda ln: ln.dst)) for n, ls in out.items()}
        self._paths: dict[tuple[str, str], tuple[str, ...]] = {}
        self._ecmp: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {}
        self._dags: dict[tuple[str, str], _RouteDag] = {}

    # -- inspection -------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node called ``name`` (UsageError naming it if unknown)."""
        try:
            return self.nodes[name]
        except KeyError:
            raise UsageError(f"unknown node {name!r}") from None

    def link(self, name: str) -> Link:
        """The link called ``name`` (UsageError naming it if unknown)."""
        try:
            return self.links[name]
        except KeyError:
            raise UsageError(f"unknown link {name!r}") from None

    def nodes_of(self, kind: NodeKind | str, server: int | None = None) -> tuple[str, ...]:
        """Names of the nodes of ``kind`` (on ``server`` if given), in natural order
        (``s0.gpu2`` before ``s0.gpu10``)."""
        k = NodeKind(kind)
        names = [n.name for n in self.nodes.values()
                 if n.kind is k and (server is None or n.server == server)]
        return tuple(sorted(names, key=_natural_key))

    @property
    def servers(self) -> tuple[int, ...]:
        """Indices of the servers that have at least one node."""
        return tuple(sorted({n.server for n in self.nodes.values() if n.server is not None}))

    def out_links(self, node: str) -> tuple[Link, ...]:
        """Links leaving ``node``, ordered by destination name."""
        self.node(node)
        return self._out[node]

    def path_latency_ns(self, path: Sequence[str]) -> int:
        """Sum of the latencies of the links in ``path``."""
        return sum(self.link(ln).latency_ns for ln in path)

    def path_bandwidth_Bps(self, path: Sequence[str]) -> float:
        """Smallest link bandwidth along ``path`` (infinite for an empty path)."""
        return min((self.link(ln).bandwidth_Bps for ln in path), default=math.inf)

    # -- routing ----------------------------------------------------------------------------
    def path(self, src: str, dst: str, *, flow_hash: int | None = None) -> tuple[str, ...]:
        """Link names of the route from ``src`` to ``dst``; ``()`` when they are the same node.

        Fewest hops first, then least summed latency, then lexicographically smallest link
        names; GPUs never forward and NICs forward only host side <-> network side.

        With ``flow_hash`` (an int: a QP number, a UDP source port, any per-flow key; its low
        64 bits count), the route is the one an ECMP fabric gives that flow: one of
        :meth:`paths`, chosen hop by hop -- each network switch with ``n > 1`` equal-cost next
        hops takes the ``mix(flow_hash, switch) mod n``-th by link name (see the module
        docstring); other nodes (PCIe switches, NICs) take the first, as without a hash.  The
        choice is deterministic and the same in every process.

        Raises
        ------
        UsageError
            Unknown node, or no route (the message names both ends); ``flow_hash`` neither
            None nor an int.
        """
        if flow_hash is not None:
            return self._ecmp_walk(src, dst, flow_hash)
        key = (src, dst)
        hit = self._paths.get(key)
        if hit is None:
            hit = self._search(src, dst)
            self._paths[key] = hit
        return hit

    def route(self, waypoints: Sequence[str], *, flow_hash: int | None = None
              ) -> tuple[str, ...]:
        """Concatenated routes through ``waypoints`` (e.g. ``[gpu, nic, peer_nic, peer_gpu]``
        for an RDMA transfer that must use given NICs); with ``flow_hash`` each leg is its
        ECMP route (``path(a, b, flow_hash=flow_hash)``)."""
        if len(waypoints) < 2:
            raise UsageError(f"route {list(waypoints)!r}: needs at least two waypoints")
        out: list[str] = []
        for a, b in itertools.pairwise(waypoints):
            out.extend(self.path(a, b, flow_hash=flow_hash))
        return tuple(out)

    def nearest(self, node: str, kind: NodeKind | str) -> str:
        """The node of ``kind`` on ``node``'s server with the shortest route from ``node``
        (ties by name): e.g. a GPU's nearest NIC, the one behind its PCIe switch."""
        n = self.node(node)
        best: tuple[int, int, tuple[str, ...], str] | None = None
        for cand in self.nodes_of(kind, n.server):
            if cand == node:
                continue
            try:
                p = self.path(node, cand)
            except UsageError:
                continue
            score = (len(p), self.path_latency_ns(p), p, cand)
            if best is None or score < best:
                best = score
        if best is None:
            raise UsageError(f"no {NodeKind(kind).value} reachable from {node!r} on its server")
        return best[3]

    def pair_nearest(self, server: int, kind: NodeKind | str, to_kind: NodeKind | str
                     ) -> dict[str, str]:
        """Bind every ``kind`` node of ``server`` to a nearest ``to_kind`` node, spreading ties:
        in natural order each takes the closest one not yet taken (any closest one when all are
        taken).  On a DGX A100, ``pair_nearest(0, "gpu", "nic")`` maps ``s0.gpu1`` to
        ``s0.nic1`` although ``s0.nic0`` is as close -- the static GPU-NIC binding NCCL uses and
        FuseLink's baseline assumes."""
        targets = self.nodes_of(to_kind, server)
        taken: set[str] = set()
        out: dict[str, str] = {}
        for node in self.nodes_of(kind, server):
            scored = []
            for t in targets:
                try:
                    p = self.path(node, t)
                except UsageError:
                    continue
                scored.append((len(p), self.path_latency_ns(p), t in taken, p, t))
            if not scored:
                raise UsageError(f"no {NodeKind(to_kind).value} reachable from {node!r}")
            # distance first; among equally near targets prefer a free one
            best_d = min(s[:2] for s in scored)
            choice = min(s for s in scored if s[:2] == best_d)[4]
            taken.add(choice)
            out[node] = choice
        return out

    def check_path(self, src: str, dst: str, path: Sequence[str]) -> tuple[str, ...]:
        """Validate an explicit route: known links, chained end to start, from ``src`` to
        ``dst``.  Returns it as a tuple; raises UsageError naming the first problem."""
        self.node(src)
        self.node(dst)
        at = src
        for i, name in enumerate(path):
            ln = self.link(name)
            if ln.src != at:
                raise UsageError(f"path hop {i} {name!r} starts at {ln.src!r}, expected {at!r}")
            at = ln.dst
        if at != dst:
            raise UsageError(f"path from {src!r} ends at {at!r}, not at {dst!r}")
        return tuple(path)

    def _steps(self, src: str, at: str, phase: int) -> Iterable[tuple[Link, int]]:
        """The links a route may take out of ``at`` in ``phase`` (the forwarding rules of the
        module docstring), each with the phase after it."""
        kind = self.nodes[at].kind
        if at != src and kind is NodeKind.GPU:
            return                                        # GPUs do not forward
        for ln in self._out[at]:
            if ln.network:
                if phase == _AFTER_NET:
                    continue                              # no second network crossing
                nxt_phase = _ON_NET
            else:
                nxt_phase = _AFTER_NET if phase == _ON_NET else phase
            if at != src and kind is NodeKind.NIC and ln.network == (phase == _ON_NET):
                continue                                  # NIC: host side <-> network side only
            yield ln, nxt_phase

    # -- ECMP -------------------------------------------------------------------------------
    def paths(self, src: str, dst: str, *, limit: int = ECMP_MAX_PATHS
              ) -> tuple[tuple[str, ...], ...]:
        """Every equal-cost route from ``src`` to ``dst``: the fewest hops and, among those,
        the least summed latency, under the forwarding rules of :meth:`path` (GPUs do not
        forward, NICs only host side <-> network side, one network crossing).  Sorted by
        link names, so ``paths(a, b)[0] == path(a, b)``; ``((),)`` when ``src == dst``.
        These are the routes ECMP switches spread flows over (:meth:`path` with
        ``flow_hash``).  Cached per pair.

        Parameters
        ----------
        limit : int
            Most routes to list (default :data:`ECMP_MAX_PATHS`).  More routes than that is
            an error, never a silent truncation: the routes are counted first (a sum over
            the shortest-route DAG, no listing), and the message gives the count.
            ``path(..., flow_hash=)`` needs no listing and works at any count.

        Raises
        ------
        UsageError
            Unknown node, no route, ``limit`` not an int >= 1, or more routes than ``limit``.
        """
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise UsageError(f"paths limit={limit!r}: must be an int >= 1")
        dag = self._dag(src, dst)
        if dag.count > limit:
            raise UsageError(f"{dag.count} equal-cost routes from {src!r} to {dst!r}, more than "
                             f"limit={limit}: pass a larger limit, or pick one route with "
                             "path(..., flow_hash=)")
        key = (src, dst)
        hit = self._ecmp.get(key)
        if hit is None:
            out: list[tuple[str, ...]] = []
            names: list[str] = []

            def walk(state: tuple[str, int]) -> None:
                opts = dag.nxt.get(state)
                if opts is None:                          # a terminal state: at dst
                    out.append(tuple(names))
                    return
                for name, nxt in opts:                    # by link name: output is sorted
                    names.append(name)
                    walk(nxt)
                    names.pop()

            walk(dag.start)
            hit = tuple(out)
            self._ecmp[key] = hit
        return hit

    def ecmp_path(self, src: str, dst: str, flow_hash: int) -> tuple[str, ...]:
        """Same as ``path(src, dst, flow_hash=flow_hash)`` (kept for existing callers)."""
        return self.path(src, dst, flow_hash=flow_hash)

    def _ecmp_walk(self, src: str, dst: str, flow_hash: object) -> tuple[str, ...]:
        """The route an ECMP fabric gives the flow ``flow_hash``; see :meth:`path`."""
        if isinstance(flow_hash, bool) or not isinstance(flow_hash, (int, np.integer)):
            raise UsageError(f"flow_hash={flow_hash!r}: must be an int (or None)")
        h = int(flow_hash) & _MASK64
        dag = self._dag(src, dst)
        nodes = self.nodes
        state = dag.start
        out: list[str] = []
        while (opts := dag.nxt.get(state)) is not None:
            at = state[0]
            if len(opts) > 1 and nodes[at].kind is NodeKind.SWITCH:
                name, state = opts[_mix(h, at) % len(opts)]
            else:
                name, state = opts[0]                     # hosts do not hash: path()'s choice
            out.append(name)
        return tuple(out)

    def _dag(self, src: str, dst: str) -> _RouteDag:
        """The DAG of all equal-cost routes ``src -> dst`` over (node, phase) states, cached.

        A Dijkstra by (hops, latency) from ``src`` with the same forwarding rules as
        :meth:`_search` (:meth:`_steps`) settles every state no costlier than ``dst``; a link
        ``u -> v`` is on an equal-cost route when ``cost(v) == cost(u) + (1, latency)`` and
        ``v`` leads on to ``dst`` at the best cost.  Costs grow strictly along links (one hop
        each), so settling order reversed is a topological order for the route counts.
        """
        key = (src, dst)
        hit = self._dags.get(key)
        if hit is not None:
            return hit
        self.path(src, dst)                  # unknown node / no route: the same UsageError
        phase0 = _ON_NET if self.nodes[src].kind in _NETWORK_KINDS else _BEFORE_NET
        start = (src, phase0)
        cost: dict[tuple[str, int], tuple[int, int]] = {start: (0, 0)}
        heap: list[tuple[int, int, str, int]] = [(0, 0, src, phase0)]
        settled: list[tuple[str, int]] = []
        done: set[tuple[str, int]] = set()
        best: tuple[int, int] | None = None
        while heap:
            hops, lat, at, phase = heapq.heappop(heap)
            if (at, phase) in done:
                continue
            if best is not None and (hops, lat) > best:
                break
            done.add((at, phase))
            settled.append((at, phase))
            if at == dst:                    # a route ends where it first reaches dst
                best = best or (hops, lat)
                continue
            for ln, nxt_phase in self._steps(src, at, phase):
                s = (ln.dst, nxt_phase)
                c = (hops + 1, lat + ln.latency_ns)
                old = cost.get(s)
                if old is None or c < old:
                    cost[s] = c
                    heapq.heappush(heap, (*c, *s))
        count: dict[tuple[str, int], int] = {}
        nxt: dict[tuple[str, int], tuple[tuple[str, tuple[str, int]], ...]] = {}
        for u in reversed(settled):
            if u[0] == dst:
                if cost[u] == best:
                    count[u] = 1
                continue
            hops, lat = cost[u]
            opts = []
            for ln, nxt_phase in self._steps(src, u[0], u[1]):
                v = (ln.dst, nxt_phase)
                if v in count and cost[v] == (hops + 1, lat + ln.latency_ns):
                    opts.append((ln.name, v))
            if opts:
                opts.sort()
                nxt[u] = tuple(opts)
                count[u] = sum(count[v] for _, v in opts)
        dag = _RouteDag(start, MappingProxyType(nxt), count.get(start, 0))
        self._dags[key] = dag
        return dag

    def _search(self, src: str, dst: str) -> tuple[str, ...]:
        self.node(src)
        self.node(dst)
        if src == dst:
            return ()
        # Dijkstra over states (node, phase); phase 0: not yet on the network, 1: on it,
        # 2: left it -- a route crosses the network at most once (relaying through a server
        # is the caller's business).  Cost = (hops, latency, link names), compared
        # lexicographically; each component is additive along a route.
        nodes = self.nodes
        phase0 = _ON_NET if nodes[src].kind in _NETWORK_KINDS else _BEFORE_NET
        heap: list[tuple[int, int, tuple[str, ...], str, int]] = [(0, 0, (), src, phase0)]
        done: set[tuple[str, int]] = set()
        best: dict[tuple[str, int], tuple[int, int, tuple[str, ...]]] = {(src, phase0): (0, 0, ())}
        while heap:
            hops, lat, names, at, phase = heapq.heappop(heap)
            if (at, phase) in done:
                continue
            done.add((at, phase))
            if at == dst:
                return names
            for ln, nxt_phase in self._steps(src, at, phase):
                nxt = (ln.dst, nxt_phase)
                if nxt in done:
                    continue
                cost = (hops + 1, lat + ln.latency_ns, (*names, ln.name))
                old = best.get(nxt)
                if old is None or cost < old:
                    best[nxt] = cost
                    heapq.heappush(heap, (*cost, ln.dst, nxt_phase))
        raise UsageError(f"no route from {src!r} to {dst!r} (disconnected, or only through "
                         "nodes that do not forward)")

    def __repr__(self) -> str:
        return f"Topology(nodes={len(self.nodes)}, links={len(self.links)})"


def _mix(flow_hash: int, switch: str) -> int:
    """A stable 64-bit mix of a flow hash and a switch name (splitmix64 finalizer over the
    XOR with the name's CRC-32), so each switch splits flows independently."""
    z = (flow_hash ^ (zlib.crc32(switch.encode()) << 32)) & _MASK64
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _natural_key(name: str) -> tuple[object, ...]:
    """Sort key splitting digit runs, so ``gpu2`` sorts before ``gpu10``."""
    parts: list[object] = []
    num = ""
    text = ""
    for ch in name:
        if ch.isdigit():
            if text:
                parts.append(text)
                text = ""
            num += ch
        else:
            if num:
                parts.append(int(num))
                num = ""
            text += ch
    if num:
        parts.append(int(num))
    if text:
        parts.append(text)
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in parts)
