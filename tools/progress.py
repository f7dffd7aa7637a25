"""A dependency-free progress bar on stderr for work that takes more than a few seconds.

Draws only when stderr is a terminal (or ``force``), so ``--json`` output and CI logs stay
clean; it still counts, so callers can read ``done``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, "qd sweep") as bar: ... bar.update(1)``."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, force: bool = False,
                 width: int = 28) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.done = 0
        self.width = width
        self._stream = sys.stderr
        self._draw = enabled and (force or self._stream.isatty())
        self._t0 = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1, status: str = "") -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self._draw and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            frac = self.done / self.total
            fill = int(frac * self.width)
            elapsed = now - self._t0
            eta = elapsed / frac - elapsed if frac > 0 else 0.0
            bar = "#" * fill + "-" * (self.width - fill)
            self._stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} "
                               f"{elapsed:5.1f}s eta {eta:4.0f}s {status[:30]:30s}")
            self._stream.flush()

    def close(self) -> None:
        if self._draw:
            self._stream.write("\n")
            self._stream.flush()
            self._draw = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
