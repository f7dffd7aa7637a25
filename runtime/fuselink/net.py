"""A NCCL-net-plugin-shaped point-to-point transport over verbs, with FuseLink's relay policy
and the nearest-NIC baseline (issue #8; research notes fabric.md 1.3, 4.2).

API (NCCL ``ncclNet_t`` v7/v8, fabric.md 4.2): :meth:`FuseLinkNet.listen` /
:meth:`~FuseLinkNet.connect` / :meth:`~FuseLinkNet.accept` build a send comm and a recv comm
between two GPUs; :meth:`~FuseLinkNet.reg_mr` registers a GPU buffer on *every* NIC of its
server (FuseLink registers each buffer copy on every NIC, ``flmr->mr[gpu][nic]``);
:meth:`~FuseLinkNet.isend` / :meth:`~FuseLinkNet.irecv` post requests matched in order per
comm; :meth:`~FuseLinkNet.test` drives progress and says whether a request is done.

Data path.  A message is cut into ``chunk_bytes`` chunks (``NCCL_P2P_NET_CHUNKSIZE``, 512 KiB
in FuseLink's scripts).  A *lane* is a (tx NIC, rx NIC) pair with an RC QP and ``slots``
pipeline slots; chunks are handed out round-robin to lanes with a free slot, so a lane that
frees slots faster carries more, and each lane keeps one RDMA WRITE on the wire at a time.

- ``baseline``: one lane, the source GPU's nearest NIC to the destination GPU's nearest NIC
  (NCCL's static binding, ``Topology.pair_nearest``); each chunk is one RDMA WRITE from the
  source buffer straight into the destination buffer (GPUDirect RDMA).
- ``fuselink``: the *receiver chooses the NICs* when it matches a send (the clear-to-send
  step, ``ncclIbIrecv``/``fuselink_offset``): its own primary NIC plus every NIC idle on its
  side (:class:`~labrig.runtime.fuselink.monitor.NicMonitor`) that the *sender reports free*
  (its idle tx NICs, the mask FuseLink carries in the write-with-immediate).  Borrowed NICs are
  marked BORROWED on both sides.  A chunk for lane ``k`` is first copied over NVLink into a
  staging slot on the GPU bound to NIC ``k`` (the relay GPU, drivers.gpu), RDMA-written from
  there into a staging slot on the receiver's relay GPU, and copied over NVLink into the
  destination buffer.  When the relay GPU is the source/destination GPU itself the copy is
  skipped.  If a lent NIC's owner becomes active again the lane stops taking chunks
  (reclaim).  FuseLink itself remaps buffers with CUDA VMM so NCCL's own kernel does the
  NVLink hop (zero extra copy); an explicit copy into staging costs the same NVLink transfer.

Clear-to-send.  As NCCL's IB transport does, the receiver tells the sender where to write with
an RDMA WRITE of a small record (sequence number and the chosen NIC pairs) into the sender's
host memory over the primary lane's QP, in the reverse direction; the sender polls that memory
and starts the message when the record has landed.  Its network latency is therefore charged
to every message, for both policies.

Simplifications (said here, not hidden): the sender's free-NIC report rides in-process (in
FuseLink it is carried by earlier write-with-immediate data, so it costs no message); a
chunk counts as landed at the sender's RDMA WRITE completion (RC acknowledges after placement)
instead of a receiver-side write-with-immediate completion; NIC choice is per message, not
every 8 requests.
"""

from __future__ import annotations

import itertools
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from labrig.drivers.gpu import GpuDevice
from labrig.drivers.verbs import (
    CQ,
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_WRITE,
    MR,
    PD,
    QP,
    SGE,
    Context,
    QPCap,
    QPInitAttr,
    SendWR,
    connect_qps,
)
from labrig.errors import ConfigError, DeviceError, UsageError
from labrig.runtime.fuselink.monitor import MONITOR_TIMEOUT_NS, NicMonitor

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_SLOTS", "POLICIES", "FuseLinkNet", "ListenComm",
           "MrHandle", "RecvComm", "Request", "SendComm", "ServerDevices"]

POLICIES = ("fuselink", "baseline")
#: NCCL_P2P_NET_CHUNKSIZE=524288 in FuseLink's experiments/bw_test/run_bw_test.sbatch.
DEFAULT_CHUNK_BYTES = 512 << 10
#: Chunks in flight per lane (NCCL pipelines NCCL_STEPS=8 per channel; 4 keeps NICs busy here).
DEFAULT_SLOTS = 4
_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE
_CQ_DEPTH = 4096
#: RDMA WRITEs outstanding per lane.  One at a time keeps a lane's chunks landing one after
#: another (a pipeline), rather than all slots sharing the wire and landing together, which
#: would then stall every slot behind the same burst of NVLink copies on the receiver.
WRITES_IN_FLIGHT = 1
#: Clear-to-send record: u64 sequence number, u64 bitmask of the NICs chosen (NCCL's CTS FIFO
#: entry is a small fixed-size struct written by RDMA WRITE, ``ncclIbSendFifo``).
_CTS = struct.Struct("<QQ")
#: Virtual ns test()/wait() may spend without any progress before declaring the transfer stuck.
STALL_NS = 1_000_000_000


@dataclass
class ServerDevices:
    """What one server hands the transport: its GPUs, its NICs (verbs contexts) and the
    static GPU -> nearest-NIC binding (``gpu_nic[i]`` = index of GPU ``i``'s NIC)."""

    gpus: list[GpuDevice]
    nics: list[Context]
    gpu_nic: list[int]

    def __post_init__(self) -> None:
        if not self.gpus or not self.nics:
            raise ConfigError("ServerDevices", "gpus/nics", (len(self.gpus), len(self.nics)),
                              "need at least one GPU and one NIC")
        if len(self.gpu_nic) != len(self.gpus) or any(
                not isinstance(k, int) or not 0 <= k < len(self.nics) for k in self.gpu_nic):
            raise ConfigError("ServerDevices", "gpu_nic", self.gpu_nic,
                              f"one NIC index in 0..{len(self.nics) - 1} per GPU")

    def owner(self, nic: int) -> int | None:
        """The GPU bound to ``nic`` (its relay GPU), or None."""
        for i, k in enumerate(self.gpu_nic):
            if k == nic:
                return i
        return None


@dataclass
class _Server:
    dev: ServerDevices
    monitor: NicMonitor
    pds: list[PD]
    cqs: list[CQ]


@dataclass
class MrHandle:
    """A buffer registered on every NIC of its server (``mrs[k]`` on NIC ``k``)."""

    server: int
    gpu: int
    buf: Any
    mrs: list[MR]


@dataclass
class _Lane:
    tx_nic: int
    rx_nic: int
    qp_tx: QP
    qp_rx: QP
    tx_server: int = 0
    rx_server: int = 0
    tx_relay: int | None = None          # GPU index holding tx staging (None: send from src)
    rx_relay: int | None = None
    tx_stage: list[Any] = field(default_factory=list)    # (buffer, MR) per slot, or None
    rx_stage: list[Any] = field(default_factory=list)
    ready: deque[tuple[Any, int, int, int]] = field(default_factory=deque)  # chunks to write
    writing: int = 0                                     # RDMA WRITEs outstanding
    cts_tx: MR | None = None             # sender's CTS slot (host memory), written by rx
    cts_rx: MR | None = None             # receiver's CTS record source
    cts_seq: int = 0


@dataclass
class Request:
    """An isend or irecv.  ``done`` once every chunk landed in the destination buffer;
    ``nics`` lists the (tx, rx) NIC pairs the message used."""

    kind: str
    comm: Any
    mh: MrHandle
    nbytes: int
    posted_ns: int
    done: bool = False
    done_ns: int | None = None
    error: str | None = None
    nics: list[tuple[int, int]] = field(default_factory=list)
    peer: Request | None = None


class _Comm:
    def __init__(self, net: FuseLinkNet, server: int, gpu: int) -> None:
        self.net, self.server, self.gpu = net, server, gpu
        self.peer: _Comm | None = None
        self.queue: deque[Request] = deque()
        self.lanes: dict[tuple[int, int], _Lane] = {}     # send comm: its lanes by NIC pair
        self.active: _Message | None = None               # one message at a time per comm


class SendComm(_Comm):
    """Sending end of a connection (``ncclNet_t.connect``)."""


class RecvComm(_Comm):
    """Receiving end of a connection (``ncclNet_t.accept``)."""


@dataclass
class ListenComm:
    """Handle from :meth:`FuseLinkNet.listen` (``ncclNet_t.listen``'s handle + listen comm)."""

    server: int
    gpu: int
    pending: deque[SendComm] = field(default_factory=deque)


class _Message:
    """A matched isend/irecv pair being moved chunk by chunk over its lanes."""

    def __init__(self, send: Request, recv: Request, lanes: list[_Lane], chunk: int) -> None:
        self.send, self.recv, self.lanes = send, recv, lanes
        self.chunk = chunk
        self.n_chunks = -(-send.nbytes // chunk)
        self.next_chunk = 0
        self.landed = 0
        self.free_slots = {i: list(range(len(ln.tx_stage))) for i, ln in enumerate(lanes)}
        self.stopped: set[int] = set()
        self.cts_seq = 0                 # the CTS record the sender waits for
        self.started = False             # the sender has seen it


class FuseLinkNet:
    """The transport between GPUs of several servers.

    Parameters
    ----------
    servers : list of ServerDevices
    policy : {"fuselink", "baseline"}
    chunk_bytes : int
    slots : int
        Pipeline slots per lane (each a ``chunk_bytes`` staging buffer on each relay GPU).
    idle_timeout_ns : int
        NIC idle timeout of the monitor.

    Typical use (NCCL net order)::

        net = FuseLinkNet([s0, s1])
        lc = net.listen(1, 0); sc = net.connect(0, 0, lc); rc = net.accept(lc)
        src = net.reg_mr(sc, buf0); dst = net.reg_mr(rc, buf1)
        rs = net.isend(sc, src, n); rr = net.irecv(rc, dst, n)
        net.wait(rr)
    """

    def __init__(self, servers: list[ServerDevices], policy: str = "fuselink", *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, slots: int = DEFAULT_SLOTS,
                 idle_timeout_ns: int = MONITOR_TIMEOUT_NS) -> None:
        if policy not in POLICIES:
            raise ConfigError("FuseLinkNet", "policy", policy, f"one of {POLICIES}")
        for name, v in (("chunk_bytes", chunk_bytes), ("slots", slots)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError("FuseLinkNet", name, v, "must be an int >= 1")
        if not servers:
            raise ConfigError("FuseLinkNet", "servers", servers, "need at least one server")
        self.policy, self.chunk, self.slots = policy, chunk_bytes, slots
        self._servers = []
        for s in servers:
            pds = [PD(c) for c in s.nics]
            cqs = [CQ(c, _CQ_DEPTH) for c in s.nics]
            self._servers.append(_Server(s, NicMonitor(len(s.nics), idle_timeout_ns), pds, cqs))
        self._clock = servers[0].gpus[0]
        self._wr = itertools.count(1)
        self._inflight: dict[int, tuple[_Message, _Lane, int, int]] = {}
        self._ctrl: dict[int, tuple[_Message, _Lane]] = {}   # CTS writes not yet completed
        self._copies: dict[tuple[int, int, int], tuple[_Message, _Lane, int, int, str]] = {}
        self._messages: list[_Message] = []
        self._comms: list[SendComm] = []

    # -- helpers ----------------------------------------------------------------------------
    def monitor(self, server: int) -> NicMonitor:
        return self._srv(server).monitor

    def _srv(self, server: int) -> _Server:
        if isinstance(server, bool) or not isinstance(server, int) or \
                not 0 <= server < len(self._servers):
            raise UsageError(f"server={server!r}: must be in 0..{len(self._servers) - 1}")
        return self._servers[server]

    def _gpu_index(self, server: int, gpu: int) -> int:
        n = len(self._srv(server).dev.gpus)
        if isinstance(gpu, bool) or not isinstance(gpu, int) or not 0 <= gpu < n:
            raise UsageError(f"gpu={gpu!r}: server {server} has GPUs 0..{n - 1}")
        return gpu

    def now(self) -> int:
        return self._clock.clock()

    # -- connection setup (ncclNet listen / connect / accept) --------------------------------
    def listen(self, server: int, gpu: int) -> ListenComm:
        """A listen handle for GPU ``gpu`` of ``server`` (``ncclNet_t.listen``)."""
        return ListenComm(server, self._gpu_index(server, gpu))

    def connect(self, server: int, gpu: int, handle: ListenComm) -> SendComm:
        """Connect GPU ``gpu`` of ``server`` to a listener (``ncclNet_t.connect``)."""
        if not isinstance(handle, ListenComm):
            raise UsageError(f"connect handle={handle!r}: not from listen()")
        if server == handle.server:
            raise UsageError("connect: both ends on one server; intra-server traffic uses "
                             "NVLink, not the network")
        sc = SendComm(self, server, self._gpu_index(server, gpu))
        handle.pending.append(sc)
        self._comms.append(sc)
        return sc

    def accept(self, handle: ListenComm) -> RecvComm:
        """Accept the oldest pending connect (``ncclNet_t.accept``)."""
        if not isinstance(handle, ListenComm) or not handle.pending:
            raise UsageError("accept: no pending connect on this listen handle")
        sc = handle.pending.popleft()
        rc = RecvComm(self, handle.server, handle.gpu)
        sc.peer, rc.peer = rc, sc
        # QPs on every lane up front (FuseLink PushTxSendComm/PushRxRecvComm at first connect),
        # so setup time is not charged to the first message.
        tx, rx = self._srv(sc.server), self._srv(rc.server)
        primary = (tx.dev.gpu_nic[sc.gpu], rx.dev.gpu_nic[rc.gpu])
        self._lane(sc, rc, *primary)
        if self.policy == "fuselink":
            for k in range(min(len(tx.dev.nics), len(rx.dev.nics))):
                if k not in primary:
                    self._lane(sc, rc, k, k)
        return rc

    def reg_mr(self, comm: _Comm, buf: Any) -> MrHandle:
        """Register ``buf`` (device memory of the comm's GPU) on every NIC of its server."""
        if not isinstance(comm, _Comm):
            raise UsageError(f"reg_mr comm={comm!r}: not a send or recv comm")
        nbytes = getattr(buf, "nbytes", None)
        if not isinstance(nbytes, int) or nbytes < 1:
            raise UsageError(f"reg_mr buf={buf!r}: needs a device buffer with nbytes >= 1")
        srv = self._srv(comm.server)
        return MrHandle(comm.server, comm.gpu, buf,
                        [MR(pd, nbytes, _ACCESS, buffer=buf) for pd in srv.pds])

    # -- requests ---------------------------------------------------------------------------
    def isend(self, comm: SendComm, mh: MrHandle, nbytes: int) -> Request:
        """Post a send of ``nbytes`` from the start of ``mh``'s buffer."""
        return self._post("send", comm, SendComm, mh, nbytes, "tx")

    def irecv(self, comm: RecvComm, mh: MrHandle, nbytes: int) -> Request:
        """Post a receive of up to ``nbytes`` into ``mh``'s buffer."""
        return self._post("recv", comm, RecvComm, mh, nbytes, "rx")

    def _post(self, kind: str, comm: _Comm, cls: type, mh: MrHandle, nbytes: int,
              direction: str) -> Request:
        if not isinstance(comm, cls) or comm.peer is None:
            raise UsageError(f"i{kind}: comm={comm!r} is not a connected {cls.__name__}")
        if not isinstance(mh, MrHandle) or mh.server != comm.server:
            raise UsageError(f"i{kind}: memory handle not registered on server {comm.server}")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or \
                not 1 <= nbytes <= mh.buf.nbytes:
            raise UsageError(f"i{kind} nbytes={nbytes!r}: must be in 1..{mh.buf.nbytes}")
        srv = self._srv(comm.server)
        # the owner's activity on its own NIC (FuseLink markNic{Tx,Rx}AsActive)
        srv.monitor.mark_active(direction, srv.dev.gpu_nic[comm.gpu], self.now(), owner=True)
        req = Request(kind, comm, mh, nbytes, self.now())
        comm.queue.append(req)
        return req

    # -- progress ---------------------------------------------------------------------------
    def test(self, req: Request) -> tuple[bool, int]:
        """``ncclNet_t.test``: drive progress once; ``(done, nbytes)``.

        Raises
        ------
        DeviceError
            The request failed (an RDMA or copy error, or a receive shorter than the send).
        """
        if not isinstance(req, Request):
            raise UsageError(f"test req={req!r}: not a Request")
        if not req.done and req.error is None:
            self.progress()
        if req.error is not None:
            raise DeviceError(req.error, f"fuselink {req.kind}")
        return req.done, req.nbytes if req.done else 0

    def wait(self, *reqs: Request, stall_ns: int = STALL_NS) -> None:
        """Call :meth:`test` until every request is done (DeviceError when nothing is left
        that could finish them, or after ``stall_ns`` of virtual time)."""
        start = self.now()
        while not all(r.done for r in reqs):
            for r in reqs:
                self.test(r)
            if all(r.done for r in reqs):
                return
            unmatched = any(sc.queue and sc.peer is not None and sc.peer.queue
                            for sc in self._comms)
            stuck = not (self._inflight or self._copies or self._ctrl or unmatched
                         or any(not m.started for m in self._messages))
            if stuck or self.now() - start > stall_ns:
                raise DeviceError("stalled", f"fuselink: requests still open at t={self.now()} "
                                  "(a send without a matching receive?)")

    def progress(self) -> None:
        """One pass: match posted requests (receiver picks NICs), put chunks on free lane
        slots, reap RDMA WRITE completions and GPU copy completions."""
        for sc in self._comms:
            rc = sc.peer
            if sc.active is None and sc.queue and rc is not None and rc.queue:
                self._start(sc, sc.queue.popleft(), rc.queue.popleft())
        for m in list(self._messages):
            if not m.started:
                self._check_cts(m)
            if m.started:
                self._pump(m)
        # Copies are reaped without advancing time; each empty CQ poll advances the emulator
        # one event (verbs poll-mode), so time moves only from the CQ polls, or from one GPU
        # poll when no RDMA WRITE is outstanding.
        gpus = sorted({(s, g) for s, g, _t in self._copies})
        for s, g in gpus:
            for c in self._servers[s].dev.gpus[g].poll(64, advance=False):
                self._on_copy(s, g, c)
        cqs = sorted({(ln.tx_server, ln.tx_nic) for _m, ln, _s, _c in self._inflight.values()}
                     | {(ln.rx_server, ln.rx_nic) for _m, ln in self._ctrl.values()})
        for s, k in cqs:
            _n, wcs = self._servers[s].cqs[k].poll(64)
            for wc in wcs:
                self._on_wc(wc)
        if not cqs and self._copies:
            s, g, _t = next(iter(self._copies))
            for c in self._servers[s].dev.gpus[g].poll(64):
                self._on_copy(s, g, c)

    # -- the receiver's NIC choice (clear-to-send) ------------------------------------------
    def _choose(self, send: Request, recv: Request) -> list[tuple[int, int]]:
        tx, rx = self._srv(send.comm.server), self._srv(recv.comm.server)
        tx_p, rx_p = tx.dev.gpu_nic[send.comm.gpu], rx.dev.gpu_nic[recv.comm.gpu]
        pairs = [(tx_p, rx_p)]
        if self.policy == "baseline":
            return pairs
        now = self.now()
        n_chunks = -(-send.nbytes // self.chunk)
        tx_free = set(tx.monitor.idle_nics("tx", now))        # the sender's report
        for k in rx.monitor.idle_nics("rx", now):             # receiver picks among its idle
            if len(pairs) >= n_chunks:
                break
            if k in tx_free and k != tx_p and k != rx_p and k < len(tx.dev.nics):
                pairs.append((k, k))                          # same rail on both sides
        return pairs

    def _start(self, sc: SendComm, send: Request, recv: Request) -> None:
        if send.nbytes > recv.nbytes:
            msg = (f"send of {send.nbytes} bytes into a receive of {recv.nbytes}")
            send.error = recv.error = msg
            return
        recv.nbytes = send.nbytes
        pairs = self._choose(send, recv)
        lanes = [send.comm.lanes[p] for p in pairs]
        m = _Message(send, recv, lanes, self.chunk)
        now = self.now()
        for ln in lanes[1:]:
            self._srv(ln.tx_server).monitor.borrow("tx", ln.tx_nic, m, now)
            self._srv(ln.rx_server).monitor.borrow("rx", ln.rx_nic, m, now)
        send.nics = recv.nics = pairs
        send.peer, recv.peer = recv, send
        self._messages.append(m)
        sc.active = m
        self._send_cts(m, pairs)

    def _lane(self, sc: SendComm, rc: RecvComm, tx_nic: int, rx_nic: int) -> _Lane:
        """The comm's lane on (tx_nic, rx_nic): an RC QP pair plus, where the NIC's relay GPU
        is not the endpoint GPU, staging slots on the relay GPUs registered on that NIC."""
        ln = sc.lanes.get((tx_nic, rx_nic))
        if ln is not None:
            return ln
        tx, rx = self._srv(sc.server), self._srv(rc.server)
        qp_tx = self._qp(tx, tx_nic)
        qp_rx = self._qp(rx, rx_nic)
        connect_qps(qp_tx, qp_rx)
        ln = _Lane(tx_nic, rx_nic, qp_tx, qp_rx, tx_server=sc.server,
                   rx_server=rc.server)
        if self.policy == "fuselink":
            ln.tx_relay = self._relay(tx, tx_nic, sc.gpu)
            ln.rx_relay = self._relay(rx, rx_nic, rc.gpu)
        ln.tx_stage = self._stage(tx, tx_nic, ln.tx_relay)
        ln.rx_stage = self._stage(rx, rx_nic, ln.rx_relay)
        ln.cts_tx = MR(tx.pds[tx_nic], _CTS.size, _ACCESS)
        ln.cts_rx = MR(rx.pds[rx_nic], _CTS.size, _ACCESS)
        sc.lanes[(tx_nic, rx_nic)] = ln
        return ln

    # -- clear-to-send ----------------------------------------------------------------------
    def _send_cts(self, m: _Message, pairs: list[tuple[int, int]]) -> None:
        """The receiver writes the CTS record into the sender's slot over the primary lane."""
        ln = m.lanes[0]
        assert ln.cts_rx is not None and ln.cts_tx is not None
        ln.cts_seq += 1
        m.cts_seq = ln.cts_seq
        mask = sum(1 << k for k, _ in pairs)
        ln.cts_rx.write(_CTS.pack(m.cts_seq, mask))
        wr_id = next(self._wr)
        wr = SendWR(wr_id=wr_id, opcode=IBV_WR_RDMA_WRITE, num_sge=1,
                    sg=[SGE(ln.cts_rx.buf, _CTS.size, ln.cts_rx.lkey)])
        wr.set_wr_rdma(ln.cts_tx.rkey, ln.cts_tx.buf)
        ln.qp_rx.post_send(wr)
        self._ctrl[wr_id] = (m, ln)

    def _check_cts(self, m: _Message) -> None:
        """The sender polls its CTS slot (host memory), as NCCL's sender polls its FIFO."""
        ln = m.lanes[0]
        assert ln.cts_tx is not None
        seq, _mask = _CTS.unpack(ln.cts_tx.read(_CTS.size))
        if seq == m.cts_seq:
            m.started = True

    @staticmethod
    def _relay(srv: _Server, nic: int, endpoint_gpu: int) -> int | None:
        owner = srv.dev.owner(nic)
        return None if owner is None or owner == endpoint_gpu else owner

    def _stage(self, srv: _Server, nic: int, relay: int | None) -> list[Any]:
        if relay is None:
            return [None] * self.slots
        out = []
        for _ in range(self.slots):
            buf = srv.dev.gpus[relay].alloc(self.chunk)
            out.append((buf, MR(srv.pds[nic], self.chunk, _ACCESS, buffer=buf)))
        return out

    def _qp(self, srv: _Server, nic: int) -> QP:
        cap = QPCap(max_send_wr=4 * self.slots, max_recv_wr=1)
        cq = srv.cqs[nic]
        return QP(srv.pds[nic], QPInitAttr(scq=cq, rcq=cq, cap=cap))

    # -- the chunk pipeline -----------------------------------------------------------------
    def _pump(self, m: _Message) -> None:
        """Hand out the next chunks round-robin, one per lane with a free slot per round, so
        a message smaller than lanes x slots chunks still spreads over every lane."""
        usable = []
        for li, ln in enumerate(m.lanes):
            if li and li not in m.stopped and (
                    self._srv(ln.tx_server).monitor.reclaimed("tx", ln.tx_nic)
                    or self._srv(ln.rx_server).monitor.reclaimed("rx", ln.rx_nic)):
                m.stopped.add(li)                      # the owner took its NIC back
            if li not in m.stopped:
                usable.append(li)
        progressed = True
        while progressed and m.next_chunk < m.n_chunks:
            progressed = False
            for li in usable:
                free = m.free_slots[li]
                if not free or m.next_chunk >= m.n_chunks:
                    continue
                slot = free.pop()
                c = m.next_chunk
                m.next_chunk += 1
                progressed = True
                self._stage_tx(m, li, m.lanes[li], slot, c)

    def _span(self, m: _Message, c: int) -> tuple[int, int]:
        off = c * m.chunk
        return off, min(m.chunk, m.send.nbytes - off)

    def _stage_tx(self, m: _Message, li: int, ln: _Lane, slot: int, c: int) -> None:
        off, n = self._span(m, c)
        if ln.tx_relay is None:
            self._write(m, li, ln, slot, c)
            return
        src_gpu = self._srv(ln.tx_server).dev.gpus[m.send.comm.gpu]
        tag = src_gpu.copy_async(ln.tx_stage[slot][0].addr, m.send.mh.buf.addr + off, n)
        self._copies[(ln.tx_server, m.send.comm.gpu, tag)] = (m, ln, slot, c, "tx")

    def _write(self, m: _Message, li: int, ln: _Lane, slot: int, c: int) -> None:
        ln.ready.append((m, li, slot, c))
        self._kick(ln)

    def _kick(self, ln: _Lane) -> None:
        while ln.ready and ln.writing < WRITES_IN_FLIGHT:
            ln.writing += 1
            self._post_write(*ln.ready.popleft(), ln=ln)

    def _post_write(self, m: _Message, li: int, slot: int, c: int, *, ln: _Lane) -> None:
        off, n = self._span(m, c)
        tx = self._srv(ln.tx_server)
        if ln.tx_relay is None:
            src_mr, src_addr = m.send.mh.mrs[ln.tx_nic], m.send.mh.buf.addr + off
        else:
            src_mr = ln.tx_stage[slot][1]
            src_addr = src_mr.buf
        if ln.rx_relay is None:
            dst_mr, dst_addr = m.recv.mh.mrs[ln.rx_nic], m.recv.mh.buf.addr + off
        else:
            dst_mr = ln.rx_stage[slot][1]
            dst_addr = dst_mr.buf
        wr_id = next(self._wr)
        wr = SendWR(wr_id=wr_id, opcode=IBV_WR_RDMA_WRITE, num_sge=1,
                    sg=[SGE(src_addr, n, src_mr.lkey)])
        wr.set_wr_rdma(dst_mr.rkey, dst_addr)
        now = self.now()
        tx.monitor.mark_active("tx", ln.tx_nic, now, owner=li == 0)
        self._srv(ln.rx_server).monitor.mark_active("rx", ln.rx_nic, now, owner=li == 0)
        ln.qp_tx.post_send(wr)
        self._inflight[wr_id] = (m, ln, slot, c)

    def _on_wc(self, wc: Any) -> None:
        ctrl = self._ctrl.pop(wc.wr_id, None)
        if ctrl is not None:
            if wc.status != IBV_WC_SUCCESS:
                self._fail(ctrl[0], f"clear-to-send on nic{ctrl[1].rx_nic}->nic{ctrl[1].tx_nic}"
                                    f" failed (wc status {wc.status})")
            return
        entry = self._inflight.pop(wc.wr_id, None)
        if entry is None:
            return
        m, ln, slot, c = entry
        ln.writing -= 1
        self._kick(ln)
        if wc.status != IBV_WC_SUCCESS:
            self._fail(m, f"RDMA WRITE on nic{ln.tx_nic}->nic{ln.rx_nic} failed "
                          f"(wc status {wc.status})")
            return
        if ln.rx_relay is None:
            self._landed(m, ln, slot)
            return
        off, n = self._span(m, c)
        relay = self._srv(ln.rx_server).dev.gpus[ln.rx_relay]
        tag = relay.copy_async(m.recv.mh.buf.addr + off, ln.rx_stage[slot][0].addr, n)
        self._copies[(ln.rx_server, ln.rx_relay, tag)] = (m, ln, slot, c, "rx")

    def _on_copy(self, server: int, gpu: int, comp: Any) -> None:
        entry = self._copies.pop((server, gpu, comp.tag), None)
        if entry is None:
            return
        m, ln, slot, c, stage = entry
        if not comp.ok:
            self._fail(m, f"NVLink copy on {stage} relay failed: {comp.reason}")
            return
        if stage == "tx":
            self._write(m, m.lanes.index(ln), ln, slot, c)
        else:
            self._landed(m, ln, slot)

    def _landed(self, m: _Message, ln: _Lane, slot: int) -> None:
        m.landed += 1
        m.free_slots[m.lanes.index(ln)].append(slot)
        if m.landed == m.n_chunks:
            self._finish(m)
        else:
            self._pump(m)

    def _finish(self, m: _Message) -> None:
        now = self.now()
        for r in (m.send, m.recv):
            r.done, r.done_ns = True, now
        self._release(m)

    def _fail(self, m: _Message, reason: str) -> None:
        for r in (m.send, m.recv):
            r.error = reason
        for ln in m.lanes:
            ln.ready.clear()
            ln.writing = 0
        self._release(m)
        for d in (self._inflight, self._copies, self._ctrl):
            for key in [k for k, v in d.items() if v[0] is m]:
                del d[key]

    def _release(self, m: _Message) -> None:
        now = self.now()
        for ln in m.lanes[1:]:
            self._srv(ln.tx_server).monitor.release("tx", ln.tx_nic, m, now)
            self._srv(ln.rx_server).monitor.release("rx", ln.rx_nic, m, now)
        if m in self._messages:
            self._messages.remove(m)
        m.send.comm.active = None
