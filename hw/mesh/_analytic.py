"""Analytic fabric: whole messages instead of wavelets (the fast timing mode).

Every message (one posted send on a colour) whose endpoints allow it is resolved at once, and
all the messages that become ready at the same cycle — in an SPMD kernel, one step of every PE
— are resolved together with numpy, no Python loop over messages:

* Route trees come from the router tables (``tx`` bits), walked breadth-first for all new
  sources at once and cached as flat arrays (link id, depth in hops, parent entry).
* Latency: the head of a message reaches a link at depth ``d`` of its tree at
  ``start + ramp + d·α``; the first wavelet lands at a destination ``hops·α`` after the ramp.
* Bandwidth and contention: every physical link (and each PE's RAMP in both directions)
  carries one wavelet per cycle shared by all colours (SDK "computing-with-cerebras").  The
  uses of a link are served first come first served by head time, after the link's earlier
  traffic: a grouped max-plus scan over (link, head)-sorted uses, one numpy pass per batch.
  A message's delay is the maximum over the links on its path (a pipelined stream runs at
  the pace of its slowest link), and a destination completes ``words - 1`` cycles after its
  first wavelet plus that delay.  These are the hops·α + words/bandwidth + contention terms
  of Luczynski et al.'s wafer-scale model (HPDC'24; shared/research/wafer.md §4-§5).
* Software relays: a relay's output starts β after its input's first wavelet (WaferLLM §3.1
  "β per routing stage") and ends no earlier than its input's last.
* Back-pressure: a message longer than the router queues on its path (queue_depth × routers)
  waits for its receivers to be posted, less what the queues hold; a shorter one leaves at
  once and waits in the queues.  A receiver posted after the arrival takes one wavelet per
  cycle from its post.

Limits: a receive must match one message of the same length; data-task colours need the
cycle-level mode.  The result is deterministic (no dependence on dict or hash order).
"""

from __future__ import annotations

import heapq

import numpy as np
from numpy.typing import NDArray

from labrig.hw.mesh._config import DIRECTIONS, RAMP, MeshConfig
from labrig.hw.mesh._cycle import FabricSink
from labrig.hw.mesh._ops import NEVER, RELAY, STORE, FabricOps, ProgramFault

__all__ = ["AnalyticFabric"]

_RAMP_LATENCY = 1            # cycles from the CE into its router (as the cycle-level mode)
_PORT_INDEX = {bit: i for i, (bit, *_rest) in enumerate(DIRECTIONS)}
_RAMP_OUT, _RAMP_IN, _PORTS = 4, 5, 6
_SEND_DONE, _RECV_DONE = 0, 1
Ints = NDArray[np.int64]
# Occupancy above which a reserved interval counts as full (a use waits for its end).
SHARE_RHO_MAX = 0.9


def _segments(offsets: Ints, lengths: Ints) -> tuple[Ints, Ints]:
    """Flat indices of the ranges ``[offsets[i], offsets[i] + lengths[i])`` and, for each, the
    range it belongs to."""
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths
    return offsets[owner] + (np.arange(len(owner), dtype=np.int64) - first[owner]), owner


def _fcfs_delays(link_start: Ints, link_free: Ints, links: Ints, head: Ints,
                 words: Ints, link_words: Ints | None = None) -> Ints:
    """Per link use: cycles its tail is held back on the link.

    Each link keeps one reserved interval ``[link_start, link_free)`` from earlier batches (a
    message that crosses many routers reserves its far links ahead of time, so a later batch
    may use a link *before* that interval: a use that ends by ``link_start`` ignores it).  The
    new uses of a link are served first come first served by head time (ties in use order):
    use i ends at ``T_i = n_i + max(T_{i-1}, h_i)``, i.e.
    ``T_i = S_i + max(busy_i, max_{j<=i}(h_j - S_{j-1}))`` with S the running word count — a
    max-plus scan done with cumsum and a grouped ``maximum.accumulate``.  The reserved interval
    becomes the hull of the old one and the new traffic.
    """
    if not len(links):
        return np.zeros(0, np.int64)
    order = np.lexsort((head, links))
    ls, hs, ns = links[order], head[order], words[order]
    new_group = np.empty(len(ls), bool)
    new_group[0] = True
    np.not_equal(ls[1:], ls[:-1], out=new_group[1:])
    gid = np.cumsum(new_group) - 1
    cs = np.cumsum(ns)
    base = (cs - ns)[new_group]
    s_incl = cs - base[gid]
    v = hs - (s_incl - ns)
    span = int(v.max() - v.min()) + 1
    run = np.maximum.accumulate(v + gid * span) - gid * span
    before = hs + ns <= link_start[ls]            # fits in the gap before the reservation
    busy = np.where(before, np.iinfo(np.int64).min // 4, link_free[ls])
    if link_words is not None:
        # A use that starts inside the reserved interval shares it with the traffic already
        # there instead of waiting for its end: the interval is a hull, and where it is
        # sparsely used (one long-haul wavelet per step, e.g. Cannon's wrap-around) the
        # cycle-level router interleaves the new wavelets into its idle cycles.  With the
        # interval's occupancy rho, the use loses ceil(n * rho / (1 - rho)) cycles to it.
        span_l = np.maximum(link_free[ls] - link_start[ls], 1)
        rho = np.minimum(link_words[ls] / span_l, SHARE_RHO_MAX)
        inside = ~before & (hs < link_free[ls])
        lost = np.ceil(ns * rho / (1.0 - rho)).astype(np.int64)
        busy = np.where(inside, np.minimum(busy, hs + lost), busy)
    t_end = s_incl + np.maximum(busy, run)
    first_start = (t_end - ns)[new_group]
    last = np.empty(len(ls), bool)
    last[-1] = True
    last[:-1] = new_group[1:]
    lg = ls[last]
    fresh = link_free[lg] <= link_start[lg]       # nothing reserved yet
    link_start[lg] = np.where(fresh, first_start, np.minimum(link_start[lg], first_start))
    link_free[lg] = np.maximum(link_free[lg], np.maximum.reduceat(t_end, np.nonzero(
        new_group)[0]))
    if link_words is not None:
        np.add.at(link_words, ls, ns)
    delay = np.empty(len(ls), np.int64)
    delay[order] = t_end - hs - ns
    return delay


class _Trees:
    """Route trees of (colour, source PE), computed on first use and stored flat.

    Entry fields: ``link`` (physical link id), ``depth`` (routers passed before this link),
    ``parent`` (index of the parent entry inside the same tree, -1 at the source router),
    ``dest`` (the link is a destination's RAMP out), ``y``/``x`` (the PE the link leads to).
    """

    def __init__(self, tx: NDArray[np.uint8]) -> None:
        self.tx = tx
        k, h, w = tx.shape
        self.w, self.h = w, h
        self.off = np.full((k, h, w), -1, np.int64)
        self.len = np.zeros((k, h, w), np.int64)
        self.ndest = np.zeros((k, h, w), np.int64)
        self.link = np.zeros(0, np.int64)
        self.depth = np.zeros(0, np.int64)
        self.parent = np.zeros(0, np.int64)
        self.dest = np.zeros(0, bool)
        self.y = np.zeros(0, np.int64)
        self.x = np.zeros(0, np.int64)

    def ensure(self, ks: Ints, ys: Ints, xs: Ints) -> None:
        """Compute the trees of the given sources that are not cached yet (all at once)."""
        new = self.off[ks, ys, xs] < 0
        if not new.any():
            return
        ks, ys, xs = ks[new], ys[new], xs[new]
        w, h = self.w, self.h
        parts: list[tuple[Ints, ...]] = []
        # frontier: (source index, y, x, depth, global parent entry index)
        src = np.arange(len(ks), dtype=np.int64)
        fy, fx = ys.copy(), xs.copy()
        fpar = np.full(len(ks), -1, np.int64)
        depth, count = 0, 0
        while len(src):
            if depth > h * w:
                i = int(src[0])
                raise ProgramFault(f"colour index {int(ks[i])}: routing loop in the tree from "
                                   f"PE(x={int(xs[i])}, y={int(ys[i])})")
            bits = self.tx[ks[src], fy, fx].astype(np.int64)
            base = (fy * w + fx) * _PORTS
            sel = (bits & RAMP) != 0
            n = int(sel.sum())
            if n:
                parts.append((src[sel], base[sel] + _RAMP_OUT, np.full(n, depth), fpar[sel],
                              np.ones(n, np.int64), fy[sel], fx[sel]))
                count += n
            nsrc, ny_, nx_, npar = [], [], [], []
            for bit, dy, dx, _entry in DIRECTIONS:
                ty, tx_ = fy + dy, fx + dx
                sel = ((bits & bit) != 0) & (ty >= 0) & (ty < h) & (tx_ >= 0) & (tx_ < w)
                n = int(sel.sum())
                if not n:
                    continue
                ids = np.arange(count, count + n, dtype=np.int64)
                parts.append((src[sel], base[sel] + _PORT_INDEX[bit], np.full(n, depth),
                              fpar[sel], np.zeros(n, np.int64), ty[sel], tx_[sel]))
                count += n
                nsrc.append(src[sel])
                ny_.append(ty[sel])
                nx_.append(tx_[sel])
                npar.append(ids)
            if not nsrc:
                break
            src, fy, fx, fpar = (np.concatenate(v) for v in (nsrc, ny_, nx_, npar))
            depth += 1
        e_src, e_link, e_depth, e_par, e_dest, e_y, e_x = (
            np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64)
            for i in range(7))
        # group entries by source, keeping generation (breadth-first) order inside a tree
        order = np.argsort(e_src, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        lens = np.bincount(e_src, minlength=len(ks)).astype(np.int64)
        first = np.cumsum(lens) - lens
        par = e_par[order]
        rel = np.where(par >= 0, rank[np.maximum(par, 0)] - first[e_src[order]], -1)
        start = len(self.link)
        self.off[ks, ys, xs] = start + first
        self.len[ks, ys, xs] = lens
        self.ndest[ks, ys, xs] = np.bincount(e_src, weights=e_dest, minlength=len(ks)
                                             ).astype(np.int64)
        self.link = np.concatenate([self.link, e_link[order]])
        self.depth = np.concatenate([self.depth, e_depth[order]])
        self.parent = np.concatenate([self.parent, rel])
        self.dest = np.concatenate([self.dest, e_dest[order].astype(bool)])
        self.y = np.concatenate([self.y, e_y[order]])
        self.x = np.concatenate([self.x, e_x[order]])


class _Pending:
    """Messages that reached (or will reach) a receiver that has not claimed them yet, in
    arrival-resolution order; their words live in per-batch data arrays."""

    FIELDS = ("k", "y", "x", "first", "last", "batch", "row", "n", "sx", "sy")

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, np.zeros(0, np.int64))
        self.data: dict[int, NDArray[np.float32]] = {}
        self.left: dict[int, int] = {}
        self.next_batch = 0

    def __len__(self) -> int:
        return len(self.k)

    def add(self, data: NDArray[np.float32], **cols: Ints) -> None:
        b = self.next_batch
        self.next_batch += 1
        self.data[b] = data
        n = len(cols["k"])
        self.left[b] = n
        cols["batch"] = np.full(n, b, np.int64)
        for f in self.FIELDS:
            setattr(self, f, np.concatenate([getattr(self, f), cols[f]]))

    def take(self, idx: Ints) -> tuple[dict[str, Ints], dict[int, NDArray[np.float32]]]:
        """Remove entries ``idx``; return their columns and the data arrays they refer to."""
        out = {f: getattr(self, f)[idx] for f in self.FIELDS}
        datas = {int(b): self.data[int(b)] for b in np.unique(out["batch"]).tolist()}
        keep = np.ones(len(self.k), bool)
        keep[idx] = False
        for f in self.FIELDS:
            setattr(self, f, getattr(self, f)[keep])
        for b, c in zip(*np.unique(out["batch"], return_counts=True)):
            self.left[int(b)] -= int(c)
            if not self.left[int(b)]:
                del self.left[int(b)], self.data[int(b)]
        return out, datas


class AnalyticFabric:
    """Message-level timing over the same op state as :class:`CycleFabric`."""

    def __init__(self, cfg: MeshConfig, ops: FabricOps, rx: NDArray[np.uint8],
                 tx: NDArray[np.uint8], sink: FabricSink) -> None:
        self.cfg, self.ops, self.sink, self.tx = cfg, ops, sink, tx
        k, h, w = tx.shape
        self.width = w
        self.link_free = np.zeros(h * w * _PORTS, np.int64)
        self.link_start = np.zeros(h * w * _PORTS, np.int64)
        self.link_words = np.zeros(h * w * _PORTS, np.int64)   # words inside the reservation
        self.resolved = np.zeros((k, h, w), bool)
        self.claimed = np.zeros((k, h, w), bool)
        self.min_end = np.zeros((k, h, w), np.int64)
        self.pend_cnt = np.zeros((k, h, w), np.int64)
        self.trees = _Trees(tx)
        self.pending = _Pending()
        self._times: list[int] = []
        self._events: dict[int, list[tuple[int, Ints, Ints, Ints]]] = {}
        self.wavelets_moved = 0
        self.messages = 0
        self._seen_posts = -1        # ops.posts at the last resolution
        self._dirty = True           # fabric state changed since the last resolution
        self._next_start = NEVER     # earliest start of a message held back until it starts
        self._deliver_sig: tuple[int, int, int] = (-1, -1, -1)
        self._popped = 0             # completion batches delivered (claims released)
        if (ops.dt_task >= 0).any():
            raise ProgramFault("data tasks need MeshConfig(timing='cycle')")

    # -- events ------------------------------------------------------------------------------
    def _event(self, times: Ints, kind: int, ks: Ints, ys: Ints, xs: Ints) -> None:
        """Schedule completions ``kind`` at ``times`` (one per (k, y, x))."""
        if not len(times):
            return
        uniq, inv = np.unique(times, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        for j, t in enumerate(uniq.tolist()):
            sel = order[bounds[j]:bounds[j + 1]]
            if t not in self._events:
                self._events[t] = []
                heapq.heappush(self._times, t)
            self._events[t].append((kind, ks[sel], ys[sel], xs[sel]))

    def step(self, now: int) -> int:
        """Resolve every message whose endpoints allow it; deliver completions due."""
        n = self._deliver(now)
        # Resolution depends on op state (posts, claims, relay inputs) and on reaching the
        # start of a deferred message; it is skipped while neither changed.
        if self._dirty or self.ops.posts != self._seen_posts or now >= self._next_start:
            self._dirty = False
            self._seen_posts = self.ops.posts
            n += self._resolve(now)
        n += self._deliver(now)
        while self._times and self._times[0] <= now:
            self._dirty = True
            self._popped += 1
            t = heapq.heappop(self._times)
            for kind, ks, ys, xs in self._events.pop(t):
                if kind == _SEND_DONE:
                    self.resolved[ks, ys, xs] = False
                    self.sink.send_done(ks, ys, xs)
                else:
                    self.claimed[ks, ys, xs] = False
                    self.sink.recv_done(ks, ys, xs)
                n += len(ks)
        return n

    # -- resolution --------------------------------------------------------------------------
    def _resolve(self, now: int) -> int:
        o = self.ops
        if not o.n_sends:
            return 0
        self._next_start = NEVER
        cand = (o.s_len > 0) & (o.s_avail == o.s_len) & ~self.resolved & (o.s_start < NEVER)
        if not cand.any():
            return 0
        # A message is resolved when it starts, so links are reserved in start order (a relay
        # output starts β after its input; resolving it early would hold the link against
        # traffic that uses it first).
        eff = np.maximum(o.s_start, self.min_end - o.s_len)
        later = cand & (eff > now)
        if later.any():
            self._next_start = int(eff[later].min())
            cand &= ~later
            if not cand.any():
                return 0
        ks, ys, xs = np.nonzero(cand)
        tr = self.trees
        tr.ensure(ks, ys, xs)
        has = tr.ndest[ks, ys, xs] > 0          # a tree reaching no CE never resolves
        ks, ys, xs = ks[has], ys[has], xs[has]
        if not len(ks):
            return 0
        n = o.s_len[ks, ys, xs]
        t0 = np.maximum(o.s_start[ks, ys, xs], now)
        off, ln = tr.off[ks, ys, xs], tr.len[ks, ys, xs]
        ent, msg = _segments(off, ln)
        dest = tr.dest[ent]
        dk, dy, dx = ks[msg[dest]], tr.y[ent[dest]], tr.x[ent[dest]]
        dmsg = msg[dest]
        # Wavelets buffered in the routers on the path (one queue per router per colour) let
        # a short message leave before its receiver is ready; a longer one waits for it.
        cap = self.cfg.queue_depth * (ln - tr.ndest[ks, ys, xs] + 1)
        long_ = n > cap
        if long_.any():
            rk = o.r_kind[dk, dy, dx]
            ready = (((rk == STORE) | (rk == RELAY)) & ~self.claimed[dk, dy, dx]
                     & (self.pend_cnt[dk, dy, dx] == 0))
            # one long message per receiver per batch: the first in (colour, y, x) order
            rid = (dk * self.tx.shape[1] + dy) * self.width + dx
            firsts = np.zeros(len(rid), bool)
            firsts[np.unique(rid, return_index=True)[1]] = True
            bad = np.bincount(dmsg, weights=~(ready & firsts), minlength=len(ks)) > 0
            ok = ~long_ | ~bad
            post_need = np.full(len(ks), np.iinfo(np.int64).min, np.int64)
            np.maximum.at(post_need, dmsg, o.r_post[dk, dy, dx])
            t0 = np.where(long_, np.maximum(t0, post_need - cap), t0)
            if not ok.all():
                return self._resolve_subset(now, ks[ok], ys[ok], xs[ok], n[ok], t0[ok])
        return self._transfer(ks, ys, xs, n, t0, ent, msg)

    def _resolve_subset(self, now: int, ks: Ints, ys: Ints, xs: Ints, n: Ints,
                        t0: Ints) -> int:
        if not len(ks):
            return 0
        ent, msg = _segments(self.trees.off[ks, ys, xs], self.trees.len[ks, ys, xs])
        return self._transfer(ks, ys, xs, n, t0, ent, msg)

    def _transfer(self, ks: Ints, ys: Ints, xs: Ints, n: Ints, t0: Ints, ent: Ints,
                  msg: Ints) -> int:
        """Time a batch of messages at once and record their arrivals."""
        o, tr, lf = self.ops, self.trees, self.link_free
        m = len(ks)
        alpha = self.cfg.alpha_cycles
        start = np.maximum(t0, self.min_end[ks, ys, xs] - n)
        # link uses: one RAMP-in per message (index 0..m-1), then every tree entry
        ramp_in = (ys * self.width + xs) * _PORTS + _RAMP_IN
        links = np.concatenate([ramp_in, tr.link[ent]])
        owner = np.concatenate([np.arange(m, dtype=np.int64), msg])
        depth = tr.depth[ent]
        head = np.concatenate([start, start[msg] + _RAMP_LATENCY + depth * alpha])
        words = n[owner]
        delay = _fcfs_delays(self.link_start, lf, links, head, words, self.link_words)
        wait = delay
        # path maxima, level by level (parents are one level up; the root is the RAMP-in)
        ne = len(ent)
        pdelay, pwait = delay[m:].copy(), wait[m:].copy()
        rel = tr.parent[ent]
        first_of_msg = np.cumsum(np.bincount(msg, minlength=m)) - np.bincount(msg, minlength=m)
        parent = np.where(rel >= 0, first_of_msg[msg] + rel, -1)
        root = parent < 0
        pdelay[root] = np.maximum(pdelay[root], delay[msg[root]])
        pwait[root] = np.maximum(pwait[root], wait[msg[root]])
        if ne and depth.max() > 0:
            small = np.int16 if depth.max() < np.iinfo(np.int16).max else np.int32
            order = np.argsort(depth.astype(small), kind="stable")   # radix sort
            bounds = np.searchsorted(depth[order], np.arange(int(depth.max()) + 2))
            for d in range(1, int(depth.max()) + 1):
                lvl = order[bounds[d]:bounds[d + 1]]
                par = parent[lvl]
                pdelay[lvl] = np.maximum(pdelay[lvl], pdelay[par])
                pwait[lvl] = np.maximum(pwait[lvl], pwait[par])
        self.resolved[ks, ys, xs] = True
        # the send completes in the cycle its last wavelet leaves the CE (as the cycle mode)
        self._event(start + n - 1 + delay[:m], _SEND_DONE, ks, ys, xs)
        self.wavelets_moved += int((n[msg]).sum())
        self.messages += m
        dest = tr.dest[ent]
        if dest.any():
            de = np.nonzero(dest)[0]
            dm = msg[de]
            h_d = head[m + de]
            first = h_d + pwait[de]
            last = h_d + n[dm] - 1 + np.maximum(pdelay[de], pwait[de])
            nmax = int(n.max())
            data = o.s_data[ks, ys, xs, :nmax].copy()
            dk, dy, dx = ks[dm], tr.y[ent[de]], tr.x[ent[de]]
            self.pending.add(data, k=dk, y=dy, x=dx, first=first, last=last, row=dm,
                             n=n[dm], sx=xs[dm], sy=ys[dm])
            np.add.at(self.pend_cnt, (dk, dy, dx), 1)
        return m

    # -- delivery ----------------------------------------------------------------------------
    def _deliver(self, now: int) -> int:
        """Hand arrived (or arriving) messages to receivers that are posted."""
        p = self.pending
        if not len(p):
            return 0
        # nothing to do until a receive is posted, a claim is released or a message arrives
        sig = (self.ops.posts, self._popped, len(p))
        if sig == self._deliver_sig:
            return 0
        self._deliver_sig = sig
        o = self.ops
        rk = o.r_kind[p.k, p.y, p.x]
        elig = ((rk == STORE) | (rk == RELAY)) & ~self.claimed[p.k, p.y, p.x]
        if not elig.any():
            return 0
        idx = np.nonzero(elig)[0]
        rid = (p.k[idx] * self.tx.shape[1] + p.y[idx]) * self.width + p.x[idx]
        idx = idx[np.unique(rid, return_index=True)[1]]      # oldest message per receiver
        c, datas = p.take(np.sort(idx))
        k, y, x, n = c["k"], c["y"], c["x"], c["n"]
        np.subtract.at(self.pend_cnt, (k, y, x), 1)
        bad = o.r_len[k, y, x] != n
        if bad.any():
            i = int(np.argmax(bad))
            raise ProgramFault(
                f"analytic mode: PE(x={c['sx'][i]}, y={c['sy'][i]}) sends {n[i]} wavelets on "
                f"colour {o.colors[k[i]]} but PE(x={x[i]}, y={y[i]}) receives "
                f"{o.r_len[k[i], y[i], x[i]]}")
        post = np.maximum(o.r_post[k, y, x], now)
        # the receive completes in the cycle its last wavelet is taken (as the cycle mode)
        done = np.maximum(c["last"], post + n - 1)
        self.claimed[k, y, x] = True
        relay = o.r_kind[k, y, x] == RELAY
        for b in np.unique(c["batch"]).tolist():
            data = datas[b]
            sel_b = c["batch"] == b
            for ln in np.unique(n[sel_b]).tolist():
                sel = sel_b & (n == ln)
                vals = data[c["row"][sel], :ln]
                o.r_data[k[sel], y[sel], x[sel], :ln] = vals
                rs = relay[sel]
                if rs.any():
                    kr, yr, xr = k[sel][rs], y[sel][rs], x[sel][rs]
                    ko = o.r_out[kr, yr, xr]
                    o.s_data[ko, yr, xr, :ln] = vals[rs] + o.r_add[kr, yr, xr, :ln]
        if relay.any():
            kr, yr, xr = k[relay], y[relay], x[relay]
            ko = o.r_out[kr, yr, xr]
            o.s_avail[ko, yr, xr] = n[relay]
            o.s_start[ko, yr, xr] = (np.maximum(c["first"][relay], post[relay])
                                     + self.cfg.beta_cycles)
            # output wavelet i leaves at least a cycle after input wavelet i was taken
            self.min_end[ko, yr, xr] = done[relay] + 2
        o.r_pos[k, y, x] = n
        self._event(done, _RECV_DONE, k, y, x)
        self._dirty = True
        return len(k)

    # -- scheduling --------------------------------------------------------------------------
    def busy(self) -> bool:
        """Messages in flight or waiting for their start."""
        return bool(self._times) or len(self.pending) > 0 or self._next_start < NEVER

    def next_time(self, now: int) -> int | None:
        """Time of the next completion or deferred message start."""
        times = [t for t in (self._times[0] if self._times else None, self._next_start)
                 if t is not None and now < t < NEVER]
        return min(times) if times else None
