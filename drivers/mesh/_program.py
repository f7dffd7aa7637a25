"""Program builder: what a CSL ``layout.csl`` + ``pe_program.csl`` pair declares.

A :class:`Program` collects per-PE-group routes (``@set_color_config``), SRAM buffers, tasks,
data-task bindings and exported launch entry points.  :func:`check_program` does the
compile/load-time checks a demanding SDK user expects: colours inside the program range,
one route per colour per PE, routes that lead somewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError
from labrig.hw.mesh import (
    EAST,
    HOST_COLORS,
    NORTH,
    RAMP,
    SOUTH,
    USER_COLORS,
    WEST,
    MeshImage,
    PeContext,
    RouteTable,
    TaskSpec,
    direction_names,
)

__all__ = ["Port", "Program", "check_program", "ports"]

Mask = NDArray[np.bool_]
TaskFn = Callable[[PeContext], None]


class Port:
    """Router port bits for ``rx``/``tx`` sets (``Port.E | Port.RAMP``)."""

    N, S, E, W, RAMP = NORTH, SOUTH, EAST, WEST, RAMP


_BY_NAME = {"N": NORTH, "S": SOUTH, "E": EAST, "W": WEST, "RAMP": RAMP,
            "NORTH": NORTH, "SOUTH": SOUTH, "EAST": EAST, "WEST": WEST}


def ports(spec: int | str | Iterable[str]) -> int:
    """Bit mask from an int, ``"E|RAMP"`` or ``["E", "RAMP"]``."""
    if isinstance(spec, (int, np.integer)):
        if not 0 <= int(spec) < 32:
            raise UsageError(f"port mask {spec!r}: must be in 0..31")
        return int(spec)
    names = spec.split("|") if isinstance(spec, str) else list(spec)
    bits = 0
    for name in names:
        try:
            bits |= _BY_NAME[name.strip().upper()]
        except KeyError:
            raise UsageError(f"unknown router port {name!r} (N, S, E, W, RAMP)") from None
    return bits


class Program:
    """A mesh program image under construction.

    Parameters
    ----------
    name : str
        For messages.
    width, height : int
        Mesh the program is built for.
    """

    def __init__(self, name: str, width: int, height: int) -> None:
        self.name, self.width, self.height = name, width, height
        self.routes: list[tuple[int, int, int, Mask]] = []
        self.buffers: list[tuple[str, tuple[int, ...], Mask]] = []
        self.tasks: list[TaskSpec] = []
        self.data_tasks: dict[int, str] = {}
        self.exports: dict[str, str] = {}

    def _mask(self, where: Mask | None) -> Mask:
        if where is None:
            return np.ones((self.height, self.width), bool)
        m = np.asarray(where, bool)
        if m.shape != (self.height, self.width):
            raise UsageError(f"{self.name}: mask shape {m.shape} != mesh "
                             f"(height, width)={(self.height, self.width)}")
        return m

    def route(self, color: int, rx: int | str | Iterable[str], tx: int | str | Iterable[str],
              where: Mask | None = None) -> None:
        """``@set_color_config(color, rx, tx)`` on the PEs in ``where`` (all by default)."""
        m = self._mask(where)
        if m.any():
            self.routes.append((int(color), ports(rx), ports(tx), m))

    def buffer(self, name: str, shape: tuple[int, ...], where: Mask | None = None) -> None:
        """A float32 SRAM buffer of per-PE ``shape``."""
        self.buffers.append((name, tuple(int(s) for s in shape), self._mask(where)))

    def task(self, name: str, fn: TaskFn) -> None:
        """A local task (``@bind_local_task``)."""
        if any(t.name == name for t in self.tasks):
            raise UsageError(f"{self.name}: task {name!r} defined twice")
        self.tasks.append(TaskSpec(name, fn))

    def data_task(self, color: int, name: str, fn: TaskFn) -> None:
        """A data task triggered by each wavelet on ``color`` (``@bind_data_task``)."""
        self.task(name, fn)
        self.data_tasks[int(color)] = name

    def export(self, entry: str, task: str) -> None:
        """Host-callable entry: ``launch(entry)`` activates ``task`` (SdkRuntime ``launch``)."""
        self.exports[entry] = task

    def image(self) -> MeshImage:
        """The device image (after :func:`check_program`)."""
        return MeshImage(self.routes, self.buffers, self.tasks, self.data_tasks)

    def colors(self) -> list[int]:
        """Distinct colours the program routes or binds."""
        return sorted({c for c, *_ in self.routes} | set(self.data_tasks))


def _pes(mask: Mask, limit: int = 6) -> str:
    pts = [f"PE(x={x}, y={y})" for y, x in np.argwhere(mask)[:limit].tolist()]
    more = int(mask.sum()) - len(pts)
    return ", ".join(pts) + (f" and {more} more" if more > 0 else "")


def check_program(prog: Program, width: int, height: int) -> None:
    """Load-time checks.

    Raises
    ------
    UsageError
        The program was built for another mesh; a colour is outside 0..20 (the routable
        program colours; 21-23 belong to memcpy); two routes for one colour on one PE
        disagree; a route leaves the mesh or enters a router that does not accept it; a task
        name is unknown.
    """
    if (prog.width, prog.height) != (width, height):
        raise UsageError(f"program {prog.name!r} is built for {prog.width}x{prog.height}, "
                         f"the mesh is {width}x{height}")
    for color, _rx, _tx, where in prog.routes:
        if color not in USER_COLORS:
            kind = "reserved for memcpy" if color in HOST_COLORS else "not routable"
            raise UsageError(
                f"program {prog.name!r} is out of colours: colour {color} ({kind}; programs "
                f"have {USER_COLORS[0]}..{USER_COLORS[-1]}) requested at {_pes(where)}")
    table = RouteTable(max(USER_COLORS) + 1, height, width)
    seen = np.zeros((max(USER_COLORS) + 1, height, width), bool)
    for color, rx, tx, where in prog.routes:
        clash = where & seen[color] & ((table.rx[color] != rx) | (table.tx[color] != tx))
        if clash.any():
            y, x = (int(v) for v in np.argwhere(clash)[0])
            raise UsageError(
                f"program {prog.name!r}: conflicting routes for colour {color} at "
                f"{_pes(clash)}: rx={direction_names(int(table.rx[color, y, x]))} "
                f"tx={direction_names(int(table.tx[color, y, x]))} vs "
                f"rx={direction_names(rx)} tx={direction_names(tx)}")
        table.set(color, rx, tx, where)
        seen[color] |= where
    problems = table.dangling()
    if problems:
        raise UsageError(f"program {prog.name!r}: " + "; ".join(problems[:6]))
    names = {t.name for t in prog.tasks}
    for entry, task in prog.exports.items():
        if task not in names:
            raise UsageError(f"program {prog.name!r}: export {entry!r} names unknown task "
                             f"{task!r}")
