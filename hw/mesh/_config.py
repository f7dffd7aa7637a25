"""Mesh configuration: geometry, SRAM, router and timing parameters with their sources.

Sources (shared/research/wafer.md): WaferLLM OSDI'25 §3.1 (PLMR model, α/β), §7 (48 KB SRAM per
core, 32-bit wavelets, one per link per cycle, one MAC per cycle); Cerebras SDK "task-ids"
(24 routable colors on WSE-2) and the debug-library colour map (memcpy reserves 21-23);
csl-examples ``benchmarks/bandwidth-test/run.py`` (850 MHz clock, 1 cycle per hop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from labrig.errors import ConfigError

__all__ = [
    "DIRECTIONS",
    "EAST",
    "HOST_COLORS",
    "MeshConfig",
    "NORTH",
    "RAMP",
    "SOUTH",
    "TIMING_MODES",
    "USER_COLORS",
    "WEST",
    "direction_names",
]

#: Route bits: one per router port (SDK ``@set_color_config`` rx/tx sets).
NORTH: Final = 1
SOUTH: Final = 2
EAST: Final = 4
WEST: Final = 8
RAMP: Final = 16
#: The four fabric ports with their (dy, dx) step and the port the wavelet enters by.
DIRECTIONS: Final = ((NORTH, -1, 0, SOUTH), (SOUTH, 1, 0, NORTH),
                     (EAST, 0, 1, WEST), (WEST, 0, -1, EAST))
_NAMES: Final = {NORTH: "N", SOUTH: "S", EAST: "E", WEST: "W", RAMP: "RAMP"}

WSE2_COLORS: Final = 24              # SDK task-ids: IDs 0..23 are routable on WSE-2/3
WSE2_HOST_COLORS: Final = 3          # memcpy infrastructure colours 21, 22, 23
USER_COLORS: Final = range(0, WSE2_COLORS - WSE2_HOST_COLORS)
HOST_COLORS: Final = range(WSE2_COLORS - WSE2_HOST_COLORS, WSE2_COLORS)
WSE2_SRAM_BYTES: Final = 48 * 1024   # WaferLLM §7 setup: 48 KB per core
WSE2_CLOCK_HZ: Final = 850_000_000   # csl-examples bandwidth-test: "850MHz --> 1 cycle"
TIMING_MODES: Final = ("cycle", "analytic")


def direction_names(mask: int) -> str:
    """``"E|RAMP"`` for a route bit mask (``"-"`` when empty)."""
    names = [n for b, n in _NAMES.items() if mask & b]
    return "|".join(names) if names else "-"


@dataclass(frozen=True)
class MeshConfig:
    """Geometry and timing of a wafer-scale mesh (a Cerebras WSE-2-like fabric).

    Parameters
    ----------
    width, height : int
        PEs along x (east) and y (south).
    sram_bytes : int, optional
        SRAM per PE; default 48 KB (WaferLLM §7, WSE-2).
    alpha_cycles : int, optional
        Cycles per router hop for a pre-configured route (α, WaferLLM §3.1 "L"); default 1 as
        the SDK examples' ``time_ref - (px + py)`` propagation correction.
    beta_cycles : int, optional
        Extra cycles when a PE relays a message in software (β, WaferLLM §3.1; the paper only
        says α < β).  Default 20 is our assumption: a task switch plus a DSD set-up on the CE.
    colors : int, optional
        Routable colours per router; 24 on WSE-2 (SDK task-ids).  The last three are reserved
        for host copies (memcpy), the rest are for programs.
    queue_depth : int, optional
        Wavelets buffered per colour per router input queue before back-pressure (our
        assumption: a few entries, as the SDK's small per-colour buffers).
    mac_cycles : int, optional
        CE cycles per multiply-accumulate element (WaferLLM §7: one MAC per cycle).
    elem_cycles : int, optional
        CE cycles per element of an add/copy vector op.
    task_cycles : int, optional
        Cycles to switch to a task (non-preemptive scheduler; our assumption).
    stall_cycles : int, optional
        No progress for this many cycles is reported as a stall naming PEs and colours.
    clock_hz : int, optional
        Converts cycles to virtual ns; 850 MHz as csl-examples (the paper says up to 1.1 GHz).
    timing : {"cycle", "analytic"}, optional
        ``"cycle"`` steps every wavelet on every link each cycle; ``"analytic"`` resolves whole
        messages as hops·α + words/bandwidth + per-link reservations (Luczynski HPDC'24 terms).
    """

    width: int
    height: int
    sram_bytes: int = WSE2_SRAM_BYTES
    alpha_cycles: int = 1
    beta_cycles: int = 20
    colors: int = WSE2_COLORS
    queue_depth: int = 4
    mac_cycles: int = 1
    elem_cycles: int = 1
    task_cycles: int = 1
    stall_cycles: int = 10_000
    clock_hz: int = WSE2_CLOCK_HZ
    timing: str = "cycle"

    def __post_init__(self) -> None:
        owner = "MeshConfig"
        for name, lo in (("width", 1), ("height", 1), ("sram_bytes", 4), ("alpha_cycles", 1),
                         ("beta_cycles", 0), ("queue_depth", 1), ("mac_cycles", 0),
                         ("elem_cycles", 0), ("task_cycles", 0), ("stall_cycles", 1),
                         ("clock_hz", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(owner, name, value, f"must be an integer >= {lo}")
        if self.width * self.height > 1 << 20:
            raise ConfigError(owner, "width*height", self.width * self.height,
                              "must be at most 1048576 PEs")
        if self.colors != WSE2_COLORS:
            raise ConfigError(owner, "colors", self.colors,
                              f"must be {WSE2_COLORS} (WSE-2 routable colours)")
        if self.timing not in TIMING_MODES:
            raise ConfigError(owner, "timing", self.timing, f"must be one of {TIMING_MODES}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the leading axes of every per-PE array."""
        return (self.height, self.width)

    @property
    def cycle_ns(self) -> float:
        """Length of one cycle in ns."""
        return 1e9 / self.clock_hz
