"""``labrig bench blockdev DEVICE``: random 4 KiB and sequential 128 KiB I/O over queue depths,
on any block device string, optionally beside fio on the same file.

Every point keeps ``qd`` requests in flight through one queue pair (callbacks resubmit), for a
fixed time on the device's clock (virtual on ``emu:``, wall on real devices) or a fixed count of
I/Os, whichever ends first, and reports IOPS, bandwidth and latency percentiles (submit to reap,
``dev.clock()``).  With ``--vs-fio`` each point of a ``file:`` device is run again by fio
(``ioengine=io_uring``, ``direct=1``, same file, size, block size, queue depth and duration) in
the same invocation, and our/fio ratios are printed — the issue 3 target is >= 0.9 of fio's IOPS
at QD32 4 KiB random read.  fio comes from the distribution: ``apt-get install fio``.

Writes destroy data: write workloads run on emulated devices and regular files only, unless
``--set write=1`` is given for a block device node.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import numpy as np

from labrig.drivers.block import BlockDevice, open_block_device
from labrig.errors import UsageError
from labrig.tools.bench import bench
from labrig.tools.plot import line_plot
from labrig.tools.progress import Progress
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["Workload", "run", "run_point"]

NAME = "blockdev"
FIO_INSTALL = "apt-get install fio   (Debian/Ubuntu; dnf install fio on Fedora)"
FIO_TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Workload:
    """One access pattern: ``fio``'s ``rw`` name, transfer size, random or sequential."""

    name: str
    rw: str
    io_bytes: int
    write: bool
    random: bool


WORKLOADS = (Workload("randread-4k", "randread", 4096, False, True),
             Workload("randwrite-4k", "randwrite", 4096, True, True),
             Workload("seqread-128k", "read", 128 << 10, False, False),
             Workload("seqwrite-128k", "write", 128 << 10, True, False))
QUICK_QDS = (1, 8, 32, 128)
FULL_QDS = (1, 2, 4, 8, 16, 32, 64, 128)
#: per point: seconds of device clock, and an I/O cap that keeps emulated points short in wall
QUICK_SECONDS, FULL_SECONDS = 1.0, 5.0
QUICK_MAX_IOS, FULL_MAX_IOS = 20_000, 200_000
REAL_MAX_IOS = 10**12
#: completions reaped per poll before refilling the queue (measured: 4 reaches ~0.9-0.97 of
#: fio at QD32 where reaping everything ready reached ~0.7)
REAP_BATCH = 4
#: LBAs are drawn this many at a time
ORDER_CHUNK = 65_536
DEFAULT_DEVICE = "emu:nvme?capacity=1G&lba=4096"


def run_point(dev: BlockDevice, wl: Workload, qd: int, seconds: float, max_ios: int,
              seed: int) -> dict[str, Any]:
    """Keep ``qd`` I/Os of ``wl`` in flight; return IOPS, MB/s and latency percentiles."""
    nblk = wl.io_bytes // dev.block_size
    if nblk < 1 or nblk > dev.max_transfer_blocks:
        raise UsageError(f"{dev.uri}: {wl.io_bytes}-byte I/O does not fit block size "
                         f"{dev.block_size} and max transfer {dev.max_transfer_blocks} blocks")
    slots = dev.num_blocks // nblk
    if slots < 1:
        raise UsageError(f"{dev.uri}: too small for {wl.io_bytes}-byte I/O")
    qp = dev.qpair(min(qd, dev.max_queue_depth))
    buf = dev.alloc_buffer(qd * wl.io_bytes)
    if wl.write:
        buf.view[:] = np.random.default_rng(seed).integers(0, 256, buf.nbytes, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    chunk = min(max_ios, ORDER_CHUNK)

    def targets() -> Iterator[int]:
        """Block-slot numbers in order, generated a chunk at a time (runs may be long)."""
        start = 0
        while True:
            part = (rng.integers(0, slots, chunk) if wl.random
                    else (np.arange(start, start + chunk) % slots))
            start += chunk
            yield from part.tolist()

    order = targets()
    lat: list[int] = []
    free: list[int] = list(range(qd))
    errors = [0]

    def done(req: Any) -> None:
        if req.error is not None:
            errors[0] += 1
        lat.append(req.latency_ns)
        free.append(req.context)

    issued = 0
    submit = qp.write if wl.write else qp.read
    t0 = dev.clock()
    deadline = t0 + int(seconds * 1e9)
    try:
        while True:
            if free and issued < max_ios and dev.clock() < deadline:
                with qp.batch():
                    while free and issued < max_ios:
                        slot = free.pop()
                        submit(buf, next(order) * nblk, nblk, buf_offset=slot * wl.io_bytes,
                               callback=done, context=slot)
                        issued += 1
            if len(lat) >= issued and (issued >= max_ios or dev.clock() >= deadline):
                break
            # reap a few, then refill: resubmitting after every small batch keeps the queue
            # full (reaping all 32 first left slots idle while Python ran 32 callbacks)
            qp.poll(REAP_BATCH)
        elapsed = max(1, dev.clock() - t0)
    finally:
        qp.wait()
        qp.close()
        buf.free()
    arr = np.array(lat, dtype=np.float64) / 1e3
    n = len(arr)
    return {"workload": wl.name, "qd": qd, "ios": n, "iops": n / (elapsed / 1e9),
            "mb_per_s": n * wl.io_bytes / (elapsed / 1e9) / 1e6,
            "p50_us": float(np.percentile(arr, 50)), "p99_us": float(np.percentile(arr, 99)),
            "p999_us": float(np.percentile(arr, 99.9)), "errors": errors[0]}


def fio_point(path: str, size: int, wl: Workload, qd: int, seconds: float) -> dict[str, Any]:
    """Run fio once on ``path`` with the same parameters; IOPS, MB/s and latency percentiles."""
    cmd = ["fio", "--name=labrig", f"--filename={path}", "--ioengine=io_uring", "--direct=1",
           f"--rw={wl.rw}", f"--bs={wl.io_bytes}", f"--iodepth={qd}", f"--size={size}",
           f"--runtime={seconds}", "--time_based", "--numjobs=1", "--norandommap",
           "--randrepeat=0", "--output-format=json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise UsageError(f"fio failed ({out.returncode}): {out.stderr.strip()[:300]}")
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]
    side = job["write" if wl.write else "read"]
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {"workload": wl.name, "qd": qd, "iops": float(side["iops"]),
            "mb_per_s": float(side["bw_bytes"]) / 1e6,
            "p50_us": pct.get("50.000000", 0) / 1e3, "p99_us": pct.get("99.000000", 0) / 1e3}


def _writes_allowed(dev: BlockDevice, ctx: RunContext) -> bool:
    if ctx.options.get("write") == "1":
        return True
    path = getattr(dev, "path", None)
    if path is None:
        return True                               # emulated
    return not stat.S_ISBLK(os.stat(path).st_mode)


@bench(NAME, title="block device: 4 KiB random / 128 KiB sequential over queue depths "
                   "(optionally beside fio)",
       options={"workloads": ("comma list of " + ",".join(w.name for w in WORKLOADS), "all"),
                "seconds": ("device-clock seconds per point", "1 (quick) / 5"),
                "write": ("1: allow write workloads on a block device node", "0"),
                "vs_fio": ("1: also run fio on the same file (same as --vs-fio)", "0")})
def run(ctx: RunContext) -> ExperimentResult:
    """Sweep workloads x queue depths on ``ctx.devices['device']``."""
    w0 = time.perf_counter()
    uri = ctx.devices.get("device", DEFAULT_DEVICE)
    names = ctx.options.get("workloads", "all")
    chosen = WORKLOADS if names == "all" else tuple(
        w for w in WORKLOADS if w.name in names.split(","))
    unknown = set(names.split(",")) - {w.name for w in WORKLOADS} if names != "all" else set()
    if unknown or not chosen:
        raise UsageError(f"--set workloads={names!r}: known workloads are "
                         f"{', '.join(w.name for w in WORKLOADS)}")
    qds = tuple(int(q) for q in ctx.options["qd"].split(",")) if ctx.options.get("qd") else (
        QUICK_QDS if ctx.quick else FULL_QDS)
    try:
        seconds = float(ctx.options.get("seconds", QUICK_SECONDS if ctx.quick else FULL_SECONDS))
    except ValueError:
        raise UsageError(f"--set seconds={ctx.options['seconds']!r}: not a number") from None
    if not 0 < seconds <= 600:
        raise UsageError(f"--set seconds={seconds}: must be in (0, 600]")
    # the I/O cap only keeps emulated points short in wall time; real devices run the full
    # duration, as fio does
    max_ios = (QUICK_MAX_IOS if ctx.quick else FULL_MAX_IOS) if uri.startswith("emu:") \
        else REAL_MAX_IOS
    vs_fio = ctx.options.get("vs_fio") == "1"
    res = ExperimentResult(NAME, ctx.quick, ctx.seed, {"device": uri})
    with open_block_device(uri) as dev:
        path = getattr(dev, "path", None)
        if vs_fio:
            if path is None:
                raise UsageError(f"--vs-fio needs a file: or /dev device, not {uri}")
            if shutil.which("fio") is None:
                raise UsageError(f"--vs-fio: fio is not installed; install it with: {FIO_INSTALL}")
        if not _writes_allowed(dev, ctx):
            chosen = tuple(w for w in chosen if not w.write)
            res.notes.append("write workloads skipped on a block device node (--set write=1 "
                             "to allow them; they destroy its data)")
        engine = getattr(dev, "engine", "emulated")
        res.notes.append(f"engine: {engine}; clock: "
                         f"{'virtual' if uri.startswith('emu:') else 'wall'}; "
                         + (f"{seconds:g} s or {max_ios:,} I/Os per point" if uri.startswith("emu:")
                        else f"{seconds:g} s per point"))
        with Progress(len(chosen) * len(qds) * (2 if vs_fio else 1), NAME,
                      enabled=ctx.progress) as bar:
            for wl in chosen:
                for qd in qds:
                    row = run_point(dev, wl, qd, seconds, max_ios, ctx.seed)
                    bar.update(1, f"{wl.name} qd{qd}")
                    if vs_fio:
                        assert path is not None
                        f = fio_point(path, dev.num_blocks * dev.block_size, wl, qd, seconds)
                        row["fio_iops"] = f["iops"]
                        row["ours_over_fio_iops"] = row["iops"] / f["iops"] if f["iops"] else 0.0
                        row["fio_p99_us"] = f["p99_us"]
                        bar.update(1, f"fio {wl.name} qd{qd}")
                    res.rows.append(row)
    _headlines(res, vs_fio)
    _plot(ctx, res)
    if vs_fio is False and path is not None:
        res.notes.append("add --vs-fio to run fio on the same file and print our/fio ratios")
    res.wall_s = time.perf_counter() - w0
    return res


def _headlines(res: ExperimentResult, vs_fio: bool) -> None:
    rr = [r for r in res.rows if r["workload"] == "randread-4k"]
    if not rr:
        return
    best = max(rr, key=lambda r: r["iops"])
    res.headline.append(Headline("randread_4k_peak_iops", best["iops"], "IOPS", "-", "higher",
                                 "", f"at QD{best['qd']}"))
    if vs_fio:
        at32 = [r for r in rr if r["qd"] == 32] or [best]
        res.headline.append(Headline(
            "ours_over_fio_iops_qd32_randread_4k", at32[0]["ours_over_fio_iops"], "ratio",
            f">= {FIO_TARGET_RATIO}", "higher", "issue #3 target",
            f"ours {at32[0]['iops']:,.0f} vs fio {at32[0]['fio_iops']:,.0f} IOPS"))


def _plot(ctx: RunContext, res: ExperimentResult) -> None:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in res.rows:
        x, y = series.setdefault(r["workload"], ([], []))
        x.append(r["qd"])
        y.append(r["iops"])
        if "fio_iops" in r:
            fx, fy = series.setdefault(f"fio {r['workload']}", ([], []))
            fx.append(r["qd"])
            fy.append(r["fio_iops"])
    if not series:
        return
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    png = line_plot(ctx.out_dir / "bench-blockdev.png", series, title="IOPS vs queue depth",
                    xlabel="queue depth", ylabel="IOPS", logx=True, logy=True)
    if png is not None:
        res.plots.append(str(png))
