"""``labrig bench nvme``: 4 KiB random read/write queue-depth sweep on a block device.

The one measurement implementation: :func:`measure` opens a device string (``emu:nvme`` by
default), writes the working set once, then sweeps queue depths for random reads and random
writes, keeping exactly ``qd`` commands in flight (each completion callback resubmits).
Latency and IOPS come from ``dev.clock()`` -- virtual time on the emulator, wall time on real
hardware -- and the emulator's own speed (completed commands per wall-second at QD 32) from
``time.perf_counter`` around the full driver path.  ``labrig reproduce nvme-fidelity`` imports
:func:`measure` too.

Reads of never-written LBAs cost no NAND time on the model (as in FEMU), so the working set is
written before any read; it is kept small for ``--quick`` and named in the output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from labrig.drivers.block import (
    BlockDevice,
    BlockQPair,
    IoBuffer,
    IoRequest,
    open_block_device,
    parse_device_string,
    parse_size,
)
from labrig.errors import UsageError
from labrig.tools.bench import bench
from labrig.tools.progress import Progress
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["DEFAULT_DEVICE", "DEFAULT_QDS", "WORKLOADS", "Measurement", "SweepPoint",
           "ios_per_point", "measure", "parse_qd_list", "precondition", "published_drive",
           "run_point", "seeded_uri"]

DEFAULT_DEVICE: Final = "emu:nvme"
DEFAULT_QDS: Final = (1, 2, 4, 8, 16, 32, 64, 128)
WORKLOADS: Final = ("randread", "randwrite")
IO_BYTES: Final = 4096
SPEED_QD: Final = 32
#: Bytes written once and then read at random: small for --quick, larger for the full run.
WORKING_SET_QUICK: Final = 32 << 20
WORKING_SET_FULL: Final = 256 << 20
#: Largest single precondition write.
PRECONDITION_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class SweepPoint:
    """One (workload, queue depth) measurement.

    Latencies are in microseconds of ``dev.clock()``; ``cmds_per_wall_s`` is completed
    commands per wall-clock second through the whole driver path.
    """

    workload: str
    qd: int
    ios: int
    iops: float
    mean_us: float
    p50_us: float
    p99_us: float
    max_us: float
    wall_s: float
    cmds_per_wall_s: float

    def as_row(self) -> dict[str, Any]:
        """JSON row (one per workload and qd)."""
        return asdict(self)


@dataclass
class Measurement:
    """Everything :func:`measure` produced."""

    device: str
    block_size: int
    working_set_bytes: int
    qpair_depth: int
    points: list[SweepPoint] = field(default_factory=list)
    emulator_cmds_per_wall_s: float = 0.0
    precondition_wall_s: float = 0.0

    def of(self, workload: str) -> list[SweepPoint]:
        """Points of one workload, in queue-depth order."""
        return sorted((p for p in self.points if p.workload == workload), key=lambda p: p.qd)


def published_drive() -> Any:
    """The datasheet figures the model's defaults follow (``labrig.hw.nvme.MICRON_9200``)."""
    from labrig.hw.nvme import MICRON_9200

    return MICRON_9200


def parse_qd_list(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)`` (duplicates dropped, order kept).

    Raises
    ------
    UsageError
        An entry is not an integer in 1..65535, or the list is empty.
    """
    qds: list[int] = []
    for part in str(text).split(","):
        item = part.strip()
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--qd {text!r}: {item!r} is not an integer "
                             "(expected a comma list such as 1,2,4,32)") from None
        if not 1 <= value <= 65535:
            raise UsageError(f"--qd {text!r}: {value} is out of range 1..65535")
        if value not in qds:
            qds.append(value)
    return tuple(qds)


def seeded_uri(uri: str, seed: int) -> str:
    """Add ``seed=`` to an ``emu:`` device string that has none, so ``--seed`` reaches it."""
    ds = parse_device_string(uri)
    if ds.scheme != "emu" or "seed" in ds.options:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}seed={seed}"


def ios_per_point(qd: int, quick: bool) -> int:
    """Commands per sweep point: enough for stable p99 at that depth, fewer with ``quick``."""
    return max(4000, 32 * qd) if quick else max(100_000, 1000 * qd)


def precondition(dev: BlockDevice, qp: BlockQPair, nblocks: int, buf: IoBuffer) -> None:
    """Write blocks ``[0, nblocks)`` once (large sequential writes), then flush.

    ``buf`` must hold at least one chunk (``PRECONDITION_CHUNK`` or the device's largest
    transfer, whichever is smaller).
    """
    chunk = max(1, min(dev.max_transfer_blocks, buf.nbytes // dev.block_size))
    reqs = [qp.write(buf, lba, n) for lba, n in _chunks(nblocks, chunk)]
    qp.wait()
    for req in reqs:
        req.result()
    qp.wait(qp.flush())


def _chunks(nblocks: int, chunk: int) -> list[tuple[int, int]]:
    return [(lba, min(chunk, nblocks - lba)) for lba in range(0, nblocks, chunk)]


def run_point(dev: BlockDevice, qp: BlockQPair, workload: str, qd: int, lbas: Sequence[int],
              bufs: Sequence[IoBuffer], nblocks: int = 1) -> SweepPoint:
    """Keep ``qd`` commands of ``nblocks`` blocks in flight until ``len(lbas)`` completed.

    Parameters
    ----------
    dev, qp : BlockDevice, BlockQPair
        Device and an open queue pair (drained on entry and on return).
    workload : str
        ``"randread"`` or ``"randwrite"``.
    qd : int
        Commands kept outstanding.
    lbas : sequence of int
        Target of each command, in submission order.
    bufs : sequence of IoBuffer
        At least ``qd`` buffers of ``nblocks`` blocks (one per in-flight command).
    nblocks : int
        Blocks per command (4 KiB / block size).

    Raises
    ------
    DeviceError
        A command completed with an error status (the first one is raised).
    RuntimeError
        Commands are missing but nothing is outstanding (a backend lost them).
    """
    if workload not in WORKLOADS:
        raise UsageError(f"workload={workload!r}: must be one of {', '.join(WORKLOADS)}")
    n = len(lbas)
    submit: Callable[..., IoRequest] = qp.read if workload == "randread" else qp.write
    lat = [0] * n
    done = 0
    issued = 0
    errors: list[IoRequest] = []

    def on_done(req: IoRequest) -> None:
        nonlocal done, issued
        lat[done] = req.complete_ns - req.submit_ns
        done += 1
        if req.error is not None:
            errors.append(req)
        if issued < n:
            i = issued
            issued = i + 1
            submit(bufs[req.context], lbas[i], nblocks, callback=on_done, context=req.context)

    poll = qp.poll
    t0 = dev.clock()
    w0 = time.perf_counter()
    issued = min(qd, n)
    for slot in range(issued):
        submit(bufs[slot], lbas[slot], nblocks, callback=on_done, context=slot)
    while done < n:
        if not poll() and not qp.outstanding:
            raise RuntimeError(f"{workload} qd={qd}: {n - done} of {n} commands never "
                               f"completed and none is outstanding on {dev.uri}")
    wall = time.perf_counter() - w0
    elapsed_ns = dev.clock() - t0
    if errors:
        errors[0].result()
    arr = np.asarray(lat, dtype=np.float64) / 1e3
    return SweepPoint(workload, qd, n, n / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0,
                      float(arr.mean()), float(np.percentile(arr, 50)),
                      float(np.percentile(arr, 99)), float(arr.max()), wall,
                      n / wall if wall > 0 else 0.0)


def measure(uri: str = DEFAULT_DEVICE, *, workloads: Sequence[str] = WORKLOADS,
            qds: Sequence[int] = DEFAULT_QDS, quick: bool = True, seed: int = 0,
            ios: int | None = None, working_set_bytes: int | None = None,
            progress: bool = True, label: str = "nvme sweep") -> Measurement:
    """Write the working set, sweep ``qds`` for each workload, measure emulator speed.

    Parameters
    ----------
    uri : str
        Device string (``emu:nvme``, ``file:/path`` ...); ``emu:`` strings get ``seed``.
    workloads : sequence of str
        Subset of :data:`WORKLOADS`; reads run before writes.
    qds : sequence of int
        Queue depths, each a point.
    quick : bool
        Fewer commands per point and a smaller working set.
    seed : int
        Seeds the LBA streams (and the emulated platform).
    ios : int, optional
        Commands per point (default :func:`ios_per_point`).
    working_set_bytes : int, optional
        Bytes written once and addressed at random (default 32 MiB quick, 256 MiB full,
        capped at the device's capacity).
    progress : bool
        Draw a progress bar on a terminal.
    label : str
        Progress-bar label.

    Raises
    ------
    UsageError
        Bad workload, queue depth, working set or device string.
    BackendUnavailable
        The device's backend cannot run here.
    """
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad or not workloads:
        raise UsageError(f"workloads={','.join(workloads)!r}: each must be one of "
                         f"{', '.join(WORKLOADS)}")
    if not qds:
        raise UsageError("qds=(): give at least one queue depth")
    if ios is not None and ios < 1:
        raise UsageError(f"ios={ios}: must be at least 1")
    workloads = [w for w in WORKLOADS if w in workloads]
    uri = seeded_uri(uri, seed)
    with open_block_device(uri) as dev:
        bs = dev.block_size
        if bs > IO_BYTES or IO_BYTES % bs:
            raise UsageError(f"{uri}: block size {bs} does not divide the {IO_BYTES}-byte IO")
        ws = working_set_bytes or (WORKING_SET_QUICK if quick else WORKING_SET_FULL)
        ws_blocks = min(ws // bs, dev.num_blocks) // (IO_BYTES // bs) * (IO_BYTES // bs)
        if ws_blocks < 1:
            raise UsageError(f"working_set={ws}: must hold at least one {IO_BYTES}-byte IO")
        depth = min(max(max(qds), SPEED_QD), dev.max_queue_depth)
        qp = dev.qpair(depth)
        m = Measurement(uri, bs, ws_blocks * bs, depth)
        need_speed = "randread" in workloads and SPEED_QD not in qds
        total = 1 + len(workloads) * len(qds) + int(need_speed)
        per_io = IO_BYTES // bs
        bufs = [dev.alloc_buffer(IO_BYTES) for _ in range(max(max(qds), SPEED_QD))]
        big = dev.alloc_buffer(min(PRECONDITION_CHUNK, ws_blocks * bs))
        try:
            with Progress(total, label, enabled=progress) as bar:
                w0 = time.perf_counter()
                precondition(dev, qp, ws_blocks, big)
                m.precondition_wall_s = time.perf_counter() - w0
                bar.update(1, "precondition")
                slots = ws_blocks // per_io
                for wi, workload in enumerate(workloads):
                    for qd in qds:
                        n = ios if ios is not None else ios_per_point(qd, quick)
                        rng = np.random.default_rng([seed, wi, qd])
                        lbas = (rng.integers(0, slots, n) * per_io).tolist()
                        m.points.append(run_point(dev, qp, workload, qd, lbas, bufs, per_io))
                        bar.update(1, f"{workload} qd{qd}")
                if need_speed:
                    n = ios if ios is not None else ios_per_point(SPEED_QD, quick)
                    lbas = (np.random.default_rng([seed, 99]).integers(0, slots, n)
                            * per_io).tolist()
                    speed = run_point(dev, qp, "randread", SPEED_QD, lbas, bufs, per_io)
                    m.emulator_cmds_per_wall_s = speed.cmds_per_wall_s
                    bar.update(1, "emulator speed")
                else:
                    at = [p for p in m.points if p.qd == SPEED_QD]
                    m.emulator_cmds_per_wall_s = at[0].cmds_per_wall_s if at else 0.0
        finally:
            qp.close()
        return m


def _options(ctx: RunContext) -> dict[str, Any]:
    """Validated bench options from ``ctx.options`` (``--qd`` arrives as ``qd``)."""
    known = {"qd", "workloads", "ios", "working_set"}
    unknown = sorted(set(ctx.options) - known)
    if unknown:
        raise UsageError(f"option {unknown[0]!r} is not known to the nvme bench "
                         f"(known: {', '.join(sorted(known))})")
    out: dict[str, Any] = {"qds": DEFAULT_QDS, "workloads": WORKLOADS, "ios": None,
                           "working_set_bytes": None}
    if ctx.options.get("qd"):
        out["qds"] = parse_qd_list(ctx.options["qd"])
    if ctx.options.get("workloads"):
        out["workloads"] = tuple(w.strip() for w in ctx.options["workloads"].split(","))
    if ctx.options.get("ios"):
        try:
            out["ios"] = int(ctx.options["ios"])
        except ValueError:
            raise UsageError(f"ios={ctx.options['ios']!r}: not an integer") from None
    if ctx.options.get("working_set"):
        out["working_set_bytes"] = parse_size(ctx.options["working_set"], "working_set")
    return out


def _ratio_headline(metric: str, measured: float, unit: str, published: float, source: str,
                    note: str = "") -> Headline:
    return Headline(metric, measured, unit, f"{published:g}", "closer", source, note)


@bench("nvme", title="4 KiB random read/write QD sweep vs the published drive",
       options={"workloads": ("comma list of randread,randwrite", "randread,randwrite"),
                "ios": ("commands per queue-depth point", "by --quick"),
                "working_set": ("bytes written once then addressed (K/M/G)", "32M quick, 256M")})
def run(ctx: RunContext) -> ExperimentResult:
    """Run the sweep on ``ctx.devices['device']`` (default ``emu:nvme``) and report it."""
    opts = _options(ctx)
    uri = ctx.devices.get("device", DEFAULT_DEVICE)
    w0 = time.perf_counter()
    m = measure(uri, workloads=opts["workloads"], qds=opts["qds"], quick=ctx.quick,
                seed=ctx.seed, ios=opts["ios"], working_set_bytes=opts["working_set_bytes"],
                progress=ctx.progress, label="bench nvme")
    pub = published_drive()
    res = ExperimentResult("nvme", ctx.quick, ctx.seed, {"device": m.device},
                           rows=[p.as_row() for p in m.points])
    reads, writes = m.of("randread"), m.of("randwrite")
    if reads and reads[0].qd == 1:
        res.headline.append(_ratio_headline("qd1_read_latency_us", reads[0].mean_us, "us",
                                            pub.qd1_read_latency_us, pub.source))
    if reads:
        peak = max(reads, key=lambda p: p.iops)
        res.headline.append(_ratio_headline("peak_read_iops", peak.iops, "IOPS",
                                            pub.rand_read_iops, pub.source, f"at qd {peak.qd}"))
    if writes and writes[0].qd == 1:
        res.headline.append(_ratio_headline("qd1_write_latency_us", writes[0].mean_us, "us",
                                            pub.qd1_write_latency_us, pub.source))
    if m.emulator_cmds_per_wall_s:
        res.headline.append(Headline("cmds_per_wall_s_qd32", m.emulator_cmds_per_wall_s,
                                     "cmd/s", "", "higher", "",
                                     "wall-clock speed of driver + model (random read, QD 32)"))
    clock = "virtual" if m.device.startswith("emu:") else "wall"
    res.notes += [
        f"device {m.device}: latency and IOPS in the device clock ({clock} time)",
        f"working set: {m.working_set_bytes >> 20} MiB written once before reading "
        f"({m.precondition_wall_s:.1f} s wall); reads are uniform over it",
        f"published: {pub.name} ({pub.source})",
    ]
    if m.qpair_depth < max(opts["qds"]):
        res.notes.append(f"one queue pair of depth {m.qpair_depth}; deeper points queue "
                         "in software")
    res.wall_s = time.perf_counter() - w0
    return res
