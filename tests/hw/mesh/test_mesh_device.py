"""The mesh model through its driver: config checks, SRAM and colour limits, route checks,
stall reports, contention, back-pressure, multicast and data tasks."""

from __future__ import annotations

import numpy as np
import pytest

from labrig.drivers.mesh import MeshRuntime, MeshStallError
from labrig.errors import ConfigError, UsageError
from labrig.hw import Platform
from labrig.hw.mesh import MeshConfig, MeshDevice, SramOverflow


def runtime(w: int, h: int, **kw: object) -> MeshRuntime:
    cfg = MeshConfig(w, h, **kw)  # type: ignore[arg-type]
    return MeshRuntime(MeshDevice(Platform(seed=0), cfg))


def line_program(rt: MeshRuntime, words: int, recv_delay: int = 0):  # type: ignore[no-untyped-def]
    """PE 0 sends ``words`` east to the last PE of a 1-row mesh (pass-through in between)."""
    p = rt.new_program("line")
    px = np.indices((rt.height, rt.width))[1]
    last = rt.width - 1
    p.route(1, "RAMP", "E", px == 0)
    p.route(1, "W", "E", (px > 0) & (px < last))
    p.route(1, "W", "RAMP", px == last)
    p.buffer("a", (words,))
    p.buffer("b", (words,))
    p.buffer("t", (2,))

    def main(ctx):  # type: ignore[no-untyped-def]
        ctx.send(1, "a", where=ctx.px == 0, then="sent")
        ctx.charge(recv_delay, where=ctx.px == last)
        ctx.activate("post", where=ctx.px == last)

    def post(ctx):  # type: ignore[no-untyped-def]
        ctx.recv(1, "b", where=ctx.mask, then="got")

    def sent(ctx):  # type: ignore[no-untyped-def]
        ctx.buf("t")[ctx.mask, 0] = ctx.now

    def got(ctx):  # type: ignore[no-untyped-def]
        ctx.buf("t")[ctx.mask, 1] = ctx.now

    for name, fn in (("main", main), ("post", post), ("sent", sent), ("got", got)):
        p.task(name, fn)
    p.export("main", "main")
    rt.load(p)
    return p


@pytest.mark.parametrize("field,value", [("width", 0), ("height", -1), ("sram_bytes", 0),
                                         ("alpha_cycles", 0), ("colors", 16),
                                         ("timing", "exact"), ("queue_depth", 0)])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    kw: dict[str, object] = {"width": 2, "height": 2, field: value}
    with pytest.raises(ConfigError, match=f"MeshConfig.{field}"):
        MeshConfig(**kw)  # type: ignore[arg-type]


def test_sram_overflow_names_pe_buffer_and_sizes() -> None:
    rt = runtime(3, 2, sram_bytes=1024)
    p = rt.new_program("big")
    p.buffer("small", (100,))
    where = np.zeros((2, 3), bool)
    where[1, 2] = True
    p.buffer("huge", (200,), where=where)
    with pytest.raises(SramOverflow, match=r"PE\(x=2, y=1\).*'huge' needs 800 B, 400 B "
                                           r"already in use, capacity 1024 B"):
        rt.load(p)


def test_color_limit_names_pes() -> None:
    rt = runtime(3, 1)
    p = rt.new_program("greedy")
    px = np.indices((1, 3))[1]
    p.route(21, "RAMP", "E", px == 1)
    with pytest.raises(UsageError, match=r"out of colours: colour 21 \(reserved for memcpy.*"
                                         r"PE\(x=1, y=0\)"):
        rt.load(p)


def test_conflicting_routes_name_pes() -> None:
    rt = runtime(3, 1)
    p = rt.new_program("clash")
    p.route(2, "RAMP", "E", np.array([[True, True, False]]))
    p.route(2, "W", "RAMP", np.array([[False, True, True]]))
    with pytest.raises(UsageError, match=r"conflicting routes for colour 2 at PE\(x=1, y=0\)"):
        rt.load(p)


def test_route_off_the_mesh_is_rejected() -> None:
    rt = runtime(2, 1)
    p = rt.new_program("edge")
    p.route(0, "RAMP", "W", np.array([[True, False]]))
    with pytest.raises(UsageError, match="off the mesh"):
        rt.load(p)


def test_deadlock_names_stuck_pes_and_colors() -> None:
    rt = runtime(2, 1, stall_cycles=50)
    p = rt.new_program("lonely")
    p.route(3, "W", "RAMP", np.array([[False, True]]))
    p.route(3, "RAMP", "E", np.array([[True, False]]))
    p.buffer("b", (4,))
    p.task("main", lambda ctx: ctx.recv(3, "b", where=ctx.px == 1))
    p.export("main", "main")
    rt.load(p)
    with pytest.raises(MeshStallError, match=r"PE\(x=1, y=0\): receive 0/4 on colour 3"):
        rt.launch("main")


@pytest.mark.parametrize("timing", ["cycle", "analytic"])
def test_transfer_latency_is_hops_plus_words(timing: str) -> None:
    rt = runtime(6, 1, timing=timing)
    line_program(rt, 40)
    rt.memcpy_h2d("a", np.arange(240, dtype=np.float32))
    rt.launch("main")
    t = rt.memcpy_d2h("t")
    assert np.array_equal(rt.memcpy_d2h("b")[0, 5], np.arange(0, 40))
    hops, words = 5, 40
    assert hops + words <= t[0, 5, 1] <= hops + words + 6


def test_back_pressure_holds_the_sender() -> None:
    rt = runtime(3, 1, queue_depth=2)
    line_program(rt, 64, recv_delay=500)
    rt.launch("main")
    t = rt.memcpy_d2h("t")
    # the routers hold at most depth x routers wavelets, so the send ends after the receive
    # is posted at ~500
    assert t[0, 0, 0] > 500
    assert t[0, 2, 1] >= 500 + 64


def test_link_contention_serialises_colors() -> None:
    """Two colours crossing the same link take twice as long as one."""
    def run(both: bool) -> int:
        rt = runtime(3, 1)
        p = rt.new_program("contend")
        px = np.indices((1, 3))[1]
        p.route(1, "RAMP", "E", px == 0)
        p.route(1, "W", "E", px == 1)
        p.route(1, "W", "RAMP", px == 2)
        p.route(2, "RAMP", "E", px == 1)
        p.route(2, "W", "RAMP", px == 2)
        p.buffer("a", (50,))
        p.buffer("b1", (50,))
        p.buffer("b2", (50,))

        def main(ctx):  # type: ignore[no-untyped-def]
            ctx.send(1, "a", where=ctx.px == 0)
            ctx.recv(1, "b1", where=ctx.px == 2)
            if both:
                ctx.send(2, "a", where=ctx.px == 1)
                ctx.recv(2, "b2", where=ctx.px == 2)

        p.task("main", main)
        p.export("main", "main")
        rt.load(p)
        return rt.launch("main").run_cycles

    one, two = run(False), run(True)
    assert two >= 2 * 50 > one


def test_multicast_reaches_every_tap() -> None:
    rt = runtime(4, 1)
    p = rt.new_program("bcast")
    px = np.indices((1, 4))[1]
    p.route(5, "RAMP", "E", px == 0)
    p.route(5, "W", ["RAMP", "E"], (px > 0) & (px < 3))
    p.route(5, "W", "RAMP", px == 3)
    p.buffer("a", (3,))

    def main(ctx):  # type: ignore[no-untyped-def]
        ctx.send(5, "a", where=ctx.px == 0)
        ctx.recv(5, "a", where=ctx.px > 0)

    p.task("main", main)
    p.export("main", "main")
    rt.load(p)
    rt.memcpy_h2d("a", np.array([7, 8, 9], np.float32), w=1)
    rt.launch("main")
    assert np.array_equal(rt.memcpy_d2h("a")[0], np.tile([7, 8, 9], (4, 1)))


def test_data_task_runs_once_per_wavelet() -> None:
    rt = runtime(2, 1)
    p = rt.new_program("dt")
    p.route(4, "RAMP", "E", np.array([[True, False]]))
    p.route(4, "W", "RAMP", np.array([[False, True]]))
    p.buffer("a", (5,))
    p.buffer("sum", (2,))

    def main(ctx):  # type: ignore[no-untyped-def]
        ctx.send(4, "a", where=ctx.px == 0)

    def on_wavelet(ctx):  # type: ignore[no-untyped-def]
        s = ctx.buf("sum")
        s[ctx.mask, 0] += ctx.wavelet(4)
        s[ctx.mask, 1] += 1

    p.task("main", main)
    p.data_task(4, "on_wavelet", on_wavelet)
    p.export("main", "main")
    rt.load(p)
    rt.memcpy_h2d("a", np.arange(1, 6, dtype=np.float32), w=1)
    rt.launch("main")
    assert rt.memcpy_d2h("sum")[0, 1].tolist() == [15.0, 5.0]


def test_memcpy_checks_shapes() -> None:
    rt = runtime(2, 2)
    line = rt.new_program("m")
    line.buffer("a", (3,))
    line.task("t", lambda ctx: None)
    line.export("t", "t")
    rt.load(line)
    with pytest.raises(UsageError, match="11 elements given"):
        rt.memcpy_h2d("a", np.zeros(11))
    with pytest.raises(UsageError, match="outside"):
        rt.memcpy_d2h("a", x0=1, w=2)
    with pytest.raises(UsageError, match="not exported"):
        rt.launch("main")


def test_platform_clock_advances_with_cycles() -> None:
    plat = Platform(seed=0)
    rt = MeshRuntime(MeshDevice(plat, MeshConfig(6, 1)))
    line_program(rt, 85)
    cycles = rt.launch("main").cycles
    assert rt.clock() == pytest.approx(cycles / 0.85, abs=2)
