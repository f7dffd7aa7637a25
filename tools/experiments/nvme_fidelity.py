"""``labrig reproduce nvme-fidelity``: the emulated SSD against its published datasheet.

Sweeps random 4 KiB reads over queue depths on the ``ssd`` device (``emu:nvme`` by default)
with the same measurement as ``labrig bench nvme`` (:func:`labrig.tools.bench.nvme.measure`),
and compares QD 1 read latency and saturation IOPS with the drive the model's defaults follow
(``labrig.hw.nvme.MICRON_9200``).  Plots latency against IOPS and IOPS against queue depth,
with the published points marked.

Options (``--set key=value``): ``qd`` (comma list), ``ios`` (commands per point),
``working_set`` (bytes written once and then read, with K/M/G suffix).
"""

from __future__ import annotations

import time

from labrig.errors import UsageError
from labrig.tools.bench.nvme import (
    DEFAULT_DEVICE,
    DEFAULT_QDS,
    measure,
    parse_qd_list,
    published_drive,
)
from labrig.tools.experiments import check_options, experiment
from labrig.tools.plot import line_plot
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["run"]

NAME = "nvme-fidelity"
_OPTIONS = ("qd", "ios", "working_set")


def _options(ctx: RunContext) -> tuple[tuple[int, ...], int | None, int | None]:
    from labrig.drivers.block import parse_size

    check_options(ctx, NAME, _OPTIONS)
    qds = parse_qd_list(ctx.options["qd"]) if ctx.options.get("qd") else DEFAULT_QDS
    ios = None
    if ctx.options.get("ios"):
        text = ctx.options["ios"]
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"--set ios={text!r}: must be a positive integer")
        ios = int(text)
    ws = parse_size(ctx.options["working_set"], "working_set") \
        if ctx.options.get("working_set") else None
    return qds, ios, ws


@experiment(NAME, title="Emulated NVMe SSD vs its datasheet: QD1 latency and peak random-read "
                        "IOPS", paper="Micron 9200 datasheet (the model's timing defaults)",
            roles=("ssd",))
def run(ctx: RunContext) -> ExperimentResult:
    """Random 4 KiB read QD sweep on ``ctx.devices['ssd']`` compared with the datasheet."""
    qds, ios, ws = _options(ctx)
    uri = ctx.devices.get("ssd", DEFAULT_DEVICE)
    w0 = time.perf_counter()
    m = measure(uri, workloads=("randread",), qds=qds, quick=ctx.quick, seed=ctx.seed, ios=ios,
                working_set_bytes=ws, progress=ctx.progress, label=NAME)
    pub = published_drive()
    points = m.of("randread")
    res = ExperimentResult(NAME, ctx.quick, ctx.seed, {"ssd": m.device},
                           rows=[{"system": "labrig emu" if m.device.startswith("emu:")
                                  else m.device, **p.as_row()} for p in points])
    qd1 = [p for p in points if p.qd == 1]
    if qd1:
        res.headline.append(Headline("qd1_read_latency_us", qd1[0].mean_us, "us",
                                     f"{pub.qd1_read_latency_us:g}", "closer", pub.source))
    peak = max(points, key=lambda p: p.iops)
    res.headline.append(Headline("peak_read_iops", peak.iops, "IOPS",
                                 f"{pub.rand_read_iops:g}", "closer", pub.source,
                                 f"at qd {peak.qd} (max qd swept {max(qds)})"))
    res.notes += [
        f"device {m.device}; latencies in the device clock "
        f"({'virtual' if m.device.startswith('emu:') else 'wall'} time)",
        f"working set {m.working_set_bytes >> 20} MiB written once, then read at random",
        f"emulator speed: {m.emulator_cmds_per_wall_s:,.0f} commands per wall-second at QD 32",
    ]
    iops = [p.iops for p in points]
    qd1_pub = (1e6 / pub.qd1_read_latency_us, pub.qd1_read_latency_us)
    lat_ymax = max(max(p.p99_us for p in points), pub.qd1_read_latency_us) * 1.1
    plots = [
        line_plot(ctx.out_dir / f"{NAME}-latency-vs-iops.png",
                  {"mean latency": (iops, [p.mean_us for p in points]),
                   "p99 latency": (iops, [p.p99_us for p in points]),
                   f"{pub.name} peak IOPS": ([pub.rand_read_iops] * 2, [0.0, lat_ymax])},
                  points={f"{pub.name} QD1": ([qd1_pub[0]], [qd1_pub[1]])},
                  title=f"4 KiB random read: {m.device} vs {pub.name}",
                  xlabel="IOPS", ylabel="latency (µs)"),
        line_plot(ctx.out_dir / f"{NAME}-iops-vs-qd.png",
                  {"measured": ([p.qd for p in points], iops)},
                  points={f"{pub.name} QD1 (1/latency)": ([1], [qd1_pub[0]])},
                  hlines={f"{pub.name} peak {pub.rand_read_iops:,} IOPS":
                          float(pub.rand_read_iops)},
                  title=f"4 KiB random read IOPS vs queue depth ({m.device})",
                  xlabel="queue depth", ylabel="IOPS", logx=True),
    ]
    res.plots = [str(p) for p in plots if p is not None]
    res.wall_s = time.perf_counter() - w0
    return res
