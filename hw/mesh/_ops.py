"""Asynchronous fabric operations of every PE's CE, as structure-of-arrays over colours × PEs.

One send and one receive microthread per colour per PE (the WSE-2 rule "a fabric DSD's queue
ID is the microthread ID", shared/research/wafer.md §3).  Kinds of receive:

* ``STORE`` — an async ``@mov32`` from a fabric input DSD into a memory buffer (optionally
  accumulating, as ``@fadds`` with a fabric source); completion activates/unblocks a task.
* ``RELAY`` — a fabric-to-fabric op (``@fadds``/``@mov32`` from a fabric input to a fabric
  output, with an optional memory addend): the software relay that costs β (WaferLLM §3.1).
* ``DATA_TASK`` — wavelets on the colour trigger a data task, one wavelet per run.

Both timing modes (cycle-level and analytic) share this state; they differ in how wavelets
move between ``send`` and ``receive`` sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["DATA_TASK", "NO_RECV", "RELAY", "STORE", "FabricOps", "ProgramFault", "Target"]

NO_RECV, STORE, RELAY, DATA_TASK = 0, 1, 2, 3
NO_TASK = -1
NEVER = np.iinfo(np.int64).max // 4


class ProgramFault(Exception):
    """A program did something the CE cannot do (e.g. a second op on a busy queue); the
    device stops and reports it as a fault instead of raising into the driver."""


@dataclass(frozen=True)
class Target:
    """Where a completed STORE receive lands: buffer name and whether it accumulates."""

    buffer: str
    add: bool


@dataclass
class FabricOps:
    """Per-(colour, PE) state of posted send, receive and relay operations.

    ``colors`` lists the colours in use; every array's first axis is the index into it.
    """

    colors: list[int]
    height: int
    width: int
    targets: list[Target] = field(default_factory=list)

    def __post_init__(self) -> None:
        k, h, w = len(self.colors), self.height, self.width
        self.index = np.full(64, -1, dtype=np.int64)
        for i, c in enumerate(self.colors):
            self.index[c] = i
        shape = (k, h, w)
        self.s_len = np.zeros(shape, np.int64)
        self.s_pos = np.zeros(shape, np.int64)
        self.s_avail = np.zeros(shape, np.int64)
        self.s_start = np.full(shape, NEVER, np.int64)
        self.s_then = np.full(shape, NO_TASK, np.int64)
        self.s_data = np.zeros((*shape, 1), np.float32)
        self.r_kind = np.zeros(shape, np.int8)
        self.r_len = np.zeros(shape, np.int64)
        self.r_pos = np.zeros(shape, np.int64)
        self.r_then = np.full(shape, NO_TASK, np.int64)
        self.r_target = np.zeros(shape, np.int64)
        self.r_out = np.zeros(shape, np.int64)
        self.r_post = np.zeros(shape, np.int64)
        self.r_data = np.zeros((*shape, 1), np.float32)
        self.r_add = np.zeros((*shape, 1), np.float32)
        self.dt_task = np.full(k, NO_TASK, np.int64)
        self.dt_val = np.zeros(shape, np.float32)
        self.dt_pending = np.zeros(shape, bool)
        self.n_sends = 0
        self.n_recvs = 0
        self.posts = 0       # ops ever posted: lets a fabric skip work when nothing changed

    # -- helpers -----------------------------------------------------------------------------
    def k(self, color: int) -> int:
        """Compact index of ``color``; a colour without routes has none."""
        i = int(self.index[color]) if 0 <= color < len(self.index) else -1
        if i < 0:
            raise ProgramFault(f"colour {color} has no route in the loaded program")
        return i

    def _fit(self, name: str, length: int) -> None:
        arr = getattr(self, name)
        if arr.shape[-1] < length:
            grown = np.zeros((*arr.shape[:-1], max(length, 2 * arr.shape[-1])), np.float32)
            grown[..., : arr.shape[-1]] = arr
            setattr(self, name, grown)

    def target_id(self, target: Target) -> int:
        """Index of ``target`` in the target table (added on first use)."""
        try:
            return self.targets.index(target)
        except ValueError:
            self.targets.append(target)
            return len(self.targets) - 1

    def _busy(self, what: str, k: int, busy: NDArray[np.bool_], ys: NDArray[np.int64],
              xs: NDArray[np.int64]) -> None:
        if busy.any():
            i = int(np.argmax(busy))
            raise ProgramFault(f"{what} posted on colour {self.colors[k]} at PE(x={xs[i]}, "
                               f"y={ys[i]}) while the previous one is still active")

    # -- posting -----------------------------------------------------------------------------
    def post_send(self, k: int, ys: NDArray[np.int64], xs: NDArray[np.int64],
                  data: NDArray[np.float32], then: int, now: int) -> None:
        """Start sending ``data[i]`` (one row per PE) on colour index ``k``."""
        self._busy("send", k, self.s_len[k, ys, xs] > 0, ys, xs)
        length = data.shape[1]
        self._fit("s_data", length)
        self.s_data[k, ys, xs, :length] = data
        self.s_len[k, ys, xs] = length
        self.s_pos[k, ys, xs] = 0
        self.s_avail[k, ys, xs] = length
        self.s_start[k, ys, xs] = now
        self.s_then[k, ys, xs] = then
        self.n_sends += len(ys)
        self.posts += 1

    def post_recv(self, k: int, ys: NDArray[np.int64], xs: NDArray[np.int64], length: int,
                  target: int, then: int, now: int) -> None:
        """Start receiving ``length`` wavelets on colour index ``k`` into ``targets[target]``."""
        self._busy("receive", k, self.r_kind[k, ys, xs] != NO_RECV, ys, xs)
        self._fit("r_data", length)
        self.r_kind[k, ys, xs] = STORE
        self.r_len[k, ys, xs] = length
        self.r_pos[k, ys, xs] = 0
        self.r_target[k, ys, xs] = target
        self.r_then[k, ys, xs] = then
        self.r_post[k, ys, xs] = now
        self.n_recvs += len(ys)
        self.posts += 1

    def post_relay(self, k_in: int, k_out: int, ys: NDArray[np.int64], xs: NDArray[np.int64],
                   length: int, addend: NDArray[np.float32] | None, then: int,
                   now: int, target: int = -1) -> None:
        """Forward ``length`` wavelets from colour index ``k_in`` to ``k_out``, adding
        ``addend[i]`` element-wise (and keeping the incoming words in ``targets[target]``
        when ``target >= 0``); ``then`` fires when the last one has been sent."""
        self._busy("relay input", k_in, self.r_kind[k_in, ys, xs] != NO_RECV, ys, xs)
        self._busy("relay output", k_out, self.s_len[k_out, ys, xs] > 0, ys, xs)
        self._fit("r_add", length)
        self._fit("r_data", length)
        self._fit("s_data", length)
        self.r_kind[k_in, ys, xs] = RELAY
        self.r_target[k_in, ys, xs] = target
        self.r_len[k_in, ys, xs] = length
        self.r_pos[k_in, ys, xs] = 0
        self.r_out[k_in, ys, xs] = k_out
        self.r_then[k_in, ys, xs] = NO_TASK
        self.r_post[k_in, ys, xs] = now
        self.r_add[k_in, ys, xs, :length] = 0.0 if addend is None else addend
        self.s_len[k_out, ys, xs] = length
        self.s_pos[k_out, ys, xs] = 0
        self.s_avail[k_out, ys, xs] = 0
        self.s_start[k_out, ys, xs] = NEVER
        self.s_then[k_out, ys, xs] = then
        self.n_sends += len(ys)
        self.n_recvs += len(ys)
        self.posts += 1

    def bind_data_task(self, k: int, task: int) -> None:
        """Wavelets arriving on colour index ``k`` trigger ``task`` (one wavelet per run)."""
        self.dt_task[k] = task
        self.r_kind[k] = DATA_TASK

    # -- state -------------------------------------------------------------------------------
    def pending(self) -> bool:
        """True while any send or receive/relay op is unfinished."""
        return self.n_sends > 0 or self.n_recvs > 0

    def stuck(self, limit: int = 8) -> list[tuple[int, int, list[str]]]:
        """Up to ``limit`` PEs with unfinished ops: ``(x, y, ["send 3/16 on colour 5"...])``."""
        out: dict[tuple[int, int], list[str]] = {}
        for k, c in enumerate(self.colors):
            for y, x in np.argwhere(self.s_len[k] > 0).tolist():
                out.setdefault((x, y), []).append(
                    f"send {self.s_pos[k, y, x]}/{self.s_len[k, y, x]} on colour {c}")
            for y, x in np.argwhere((self.r_kind[k] == STORE) | (self.r_kind[k] == RELAY)
                                    ).tolist():
                kind = "relay-in" if self.r_kind[k, y, x] == RELAY else "receive"
                out.setdefault((x, y), []).append(
                    f"{kind} {self.r_pos[k, y, x]}/{self.r_len[k, y, x]} on colour {c}")
        items = sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0]))[:limit]
        return [(x, y, what) for (x, y), what in items]
