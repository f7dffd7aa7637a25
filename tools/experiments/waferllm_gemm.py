"""``labrig reproduce waferllm-gemm``: MeshGEMM vs Cannon vs SUMMA, MeshGEMV vs the pipeline
and ring allreduce GEMVs, on the emulated wafer mesh (WaferLLM, OSDI'25 §7.2-7.3).

Meshes up to ``CYCLE_MAX_P`` run in the cycle-level mode; larger ones in the analytic mode
(whole messages, vectorised over an SPMD step), which agrees with the cycle mode within the
bound stated in tests/runtime/waferllm/test_kernels.py on meshes up to 8×8 and is several
times faster on the shift GEMMs.  Known gap: on larger meshes its Cannon with 1×1 tiles runs
up to 2× the cycle mode's cycles (P=32), so only P=64 uses it.  ``--quick`` uses P ∈ {8, 16, 32} and tiles {1, 4}; the full run uses
P ∈ {8, 16, 32, 64} and tiles {1, 2, 4}.  The mode of every row is in its ``timing`` column.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from labrig.drivers.mesh import MeshRuntime
from labrig.hw import Platform
from labrig.hw.mesh import MeshConfig, MeshDevice
from labrig.runtime.waferllm import KernelResult, cannon_gemm, mesh_gemm, mesh_gemv, summa_gemm
from labrig.tools.experiments import experiment
from labrig.tools.plot import line_plot
from labrig.tools.progress import Progress
from labrig.tools.results import ExperimentResult, Headline, RunContext

__all__ = ["run"]

Sizes = tuple[int, ...]
Cycles2 = dict[tuple[str, int], int]
Cycles3 = dict[tuple[str, int, int], int]

QUICK_P = (8, 16, 32)
FULL_P = (8, 16, 32, 64)
QUICK_TILES = (1, 4)
CYCLE_MAX_P = 32               # larger meshes (the full run's P=64) use the analytic mode
FULL_TILES = (1, 2, 4)
GEMV_WORDS_PER_PE = 4          # K/H = N/W: small tiles, the latency-bound decode regime
VALUE_RANGE = 4                # integer-valued inputs in [-4, 4]: exact float32 sums
GEMMS = {"meshgemm": mesh_gemm, "cannon": cannon_gemm, "summa": summa_gemm}
SOURCE = "WaferLLM OSDI'25 §7.2 (Fig. 9), §7.3 (Table 6), §5.1; shared/research/wafer.md §5"


def _timing(p: int) -> str:
    return "cycle" if p <= CYCLE_MAX_P else "analytic"


def _runtime(p: int, seed: int) -> MeshRuntime:
    return MeshRuntime(MeshDevice(Platform(seed=seed), MeshConfig(p, p, timing=_timing(p))))


def _ints(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-VALUE_RANGE, VALUE_RANGE + 1, shape).astype(np.float32)


def _shift_cycles(rt: MeshRuntime, fn: Callable[..., KernelResult], a: np.ndarray,
                  b: np.ndarray) -> int:
    """Cycles of one compute-shift step: a 2-step run minus a 1-step run."""
    return int(fn(rt, a, b, steps=2).cycles - fn(rt, a, b, steps=1).cycles)


@experiment("waferllm-gemm", title="WaferLLM MeshGEMM / MeshGEMV vs SUMMA, Cannon, "
            "pipeline and ring allreduce on the emulated wafer mesh",
            paper="WaferLLM (OSDI'25)", roles=("mesh",))
def run(ctx: RunContext) -> ExperimentResult:
    """Run the sweep; see the module docstring."""
    t0 = time.monotonic()
    ps = QUICK_P if ctx.quick else FULL_P
    tiles = QUICK_TILES if ctx.quick else FULL_TILES
    rng = np.random.default_rng(ctx.seed)
    res = ExperimentResult("waferllm-gemm", ctx.quick, ctx.seed,
                           devices={"mesh": f"emu:mesh (cycle-level up to P={CYCLE_MAX_P}, "
                                    "analytic above)"})
    gemm_cycles: dict[tuple[str, int, int], int] = {}
    shift: dict[tuple[str, int], int] = {}
    gemv: dict[tuple[str, int], int] = {}
    total = len(ps) * (len(tiles) * len(GEMMS) + 2 + 3)
    with Progress(total, "waferllm-gemm", enabled=ctx.progress) as bar:
        for p in ps:
            rt = _runtime(p, ctx.seed)
            for t in tiles:
                a, b = _ints(rng, (p * t, p * t)), _ints(rng, (p * t, p * t))
                ref = a @ b
                for name, fn in GEMMS.items():
                    r = fn(rt, a, b)
                    if not np.array_equal(r.out, ref):
                        raise AssertionError(f"{name} P={p} t={t}: result differs from numpy")
                    gemm_cycles[(name, p, t)] = r.cycles
                    res.rows.append({"kind": "gemm", "system": name, "P": p, "tile": t,
                                     "timing": _timing(p),
                                     "cycles": r.cycles, "efficiency": round(r.efficiency, 4),
                                     "colors": len(r.colors), "max_hops": r.max_hops})
                    bar.update(1, f"{name} P={p} t={t}")
            a, b = _ints(rng, (p, p)), _ints(rng, (p, p))
            for name, fn in (("meshgemm", mesh_gemm), ("cannon", cannon_gemm)):
                shift[(name, p)] = _shift_cycles(rt, fn, a, b)
                bar.update(1, f"{name} shift P={p}")
            words = GEMV_WORDS_PER_PE * p
            x, bm = _ints(rng, (words,)), _ints(rng, (words, words))
            for ar in ("ktree", "pipeline", "ring"):
                r = mesh_gemv(rt, x, bm, ar)
                if not np.array_equal(r.out, x @ bm):
                    raise AssertionError(f"GEMV {ar} P={p}: result differs from numpy")
                gemv[(ar, p)] = r.cycles
                res.rows.append({"kind": "gemv", "system": f"gemv-{ar}", "P": p,
                                 "timing": _timing(p),
                                 "tile": GEMV_WORDS_PER_PE, "cycles": r.cycles,
                                 "colors": len(r.colors)})
                bar.update(1, f"gemv {ar} P={p}")
    for p in ps:
        res.rows.append({"kind": "shift", "system": "cannon/meshgemm", "P": p, "tile": 1,
                         "meshgemm_shift_cycles": shift[("meshgemm", p)],
                         "cannon_shift_cycles": shift[("cannon", p)],
                         "ratio": round(shift[("cannon", p)] / shift[("meshgemm", p)], 3),
                         "paper_ratio": (p - 1) / 2,
                         "extra_cycles": shift[("cannon", p)] - shift[("meshgemm", p)],
                         "extra_hops": p - 3, "timing": _timing(p)})
    _headlines(res, ps, tiles, gemm_cycles, shift, gemv)
    _plots(res, ctx, ps, tiles, gemm_cycles, shift, gemv)
    res.notes.append("MeshGEMM/Cannon operands are pre-skewed by the host copy (the repo "
                     "pre-skews W on the host); alignment is not in the launch cycles.")
    res.notes.append("beta_cycles=20 per software routing stage is an assumption (the paper "
                     "gives no number); SUMMA and the pipeline/ring allreduces scale with it.")
    res.notes.append(
        "Per-step Cannon/MeshGEMM: one isolated compute-shift step costs (P-1)·α vs 2·α of "
        "hops plus a P-independent ~6 cycles (CE ramp, task switches of the completion "
        "chain), so the ratio is (P-1+6)/(2+6), below the hop-only (P-1)/2; extra_cycles = "
        "Cannon - MeshGEMM per step tracks the P-3 extra hops.")
    res.notes.append(
        "Whole-GEMM Cannon/MeshGEMM stays near 1: PEs run as dataflow (each step waits only "
        "for its own inputs, as MeshInfra/WaferLLM meshgemm.csl's x_finish -> "
        "jumpcast_finish -> next_step chain), so Cannon's P-1-hop wrap delays one PE per "
        "step and a dependency chain crosses it once per ring revolution (P steps): about "
        "2(P-1)·α extra in total, not per step.  The paper's O(αN) per step assumes the "
        "step's slowest shift gates everyone.")
    res.wall_s = time.monotonic() - t0
    return res


def _headlines(res: ExperimentResult, ps: Sizes, tiles: Sizes, gemm: Cycles3, shift: Cycles2,
               gemv: Cycles2) -> None:
    big, t = ps[-1], tiles[0]
    mg = gemm[("meshgemm", big, t)]
    res.headline += [
        Headline(f"summa_over_meshgemm_cycles_P{big}_t{t}", gemm[("summa", big, t)] / mg,
                 "ratio", "2-3x (MeshGEMM faster at scale)", "higher", SOURCE),
        Headline(f"cannon_over_meshgemm_cycles_P{big}_t{t}", gemm[("cannon", big, t)] / mg,
                 "ratio", "2-3x (MeshGEMM faster at scale)", "higher", SOURCE,
                 note="our Cannon runs as dataflow: the wrap-around latency is amortised "
                      "over the ring, so only per-step critical paths show the gap"),
        Headline(f"cannon_over_meshgemm_shift_P{big}", shift[("cannon", big)]
                 / shift[("meshgemm", big)], "ratio", f"(P-1)/2 = {(big - 1) / 2}",
                 "higher", SOURCE, note="one compute-shift step, 1x1 tiles"),
        Headline(f"pipeline_gemv_over_meshgemv_P{big}", gemv[("pipeline", big)]
                 / gemv[("ktree", big)], "ratio", "4-8x", "higher", SOURCE),
        Headline(f"ring_gemv_over_meshgemv_P{big}", gemv[("ring", big)]
                 / gemv[("ktree", big)], "ratio", "> 1 (ring O[(2a+b)N])", "higher", SOURCE),
        Headline(f"meshgemm_efficiency_P{big}_t{tiles[-1]}",
                 _eff(res, "meshgemm", big, tiles[-1]), "fraction", "> 0.7", "higher", SOURCE),
        Headline(f"summa_efficiency_P{big}_t{tiles[-1]}",
                 _eff(res, "summa", big, tiles[-1]), "fraction", "< 0.5 at 720x720", "lower",
                 SOURCE),
    ]


def _eff(res: ExperimentResult, system: str, p: int, t: int) -> float:
    for row in res.rows:
        if row.get("system") == system and row.get("P") == p and row.get("tile") == t:
            return float(row["efficiency"])
    return float("nan")


def _plots(res: ExperimentResult, ctx: RunContext, ps: Sizes, tiles: Sizes, gemm: Cycles3,
           shift: Cycles2, gemv: Cycles2) -> None:
    t = tiles[0]
    series = {f"{n} (t={t})": (list(ps), [gemm[(n, p, t)] for p in ps]) for n in GEMMS}
    path = line_plot(ctx.out_dir / "waferllm_gemm_cycles.png", series,
                     title="GEMM cycles on a PxP mesh", xlabel="P", ylabel="cycles",
                     logx=True, logy=True)
    if path is not None:
        res.plots.append(str(path))
    ratios = {
        "SUMMA / MeshGEMM": (list(ps), [gemm[("summa", p, t)] / gemm[("meshgemm", p, t)]
                                        for p in ps]),
        "Cannon / MeshGEMM": (list(ps), [gemm[("cannon", p, t)] / gemm[("meshgemm", p, t)]
                                         for p in ps]),
        "Cannon / MeshGEMM per shift": (list(ps), [shift[("cannon", p)]
                                                   / shift[("meshgemm", p)] for p in ps]),
        "pipeline GEMV / MeshGEMV": (list(ps), [gemv[("pipeline", p)] / gemv[("ktree", p)]
                                                for p in ps]),
    }
    paper = {"paper (P-1)/2 per shift": (list(ps), [(p - 1) / 2 for p in ps])}
    path = line_plot(ctx.out_dir / "waferllm_gemm_ratios.png", ratios,
                     title="Speed-ups of WaferLLM kernels (measured vs paper)", xlabel="P",
                     ylabel="baseline cycles / WaferLLM cycles", logx=True, logy=True,
                     hlines={"paper 2-3x (GEMM)": 2.5, "paper 4-8x (GEMV)": 6.0},
                     points=paper)
    if path is not None:
        res.plots.append(str(path))
