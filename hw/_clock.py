"""Virtual time: an integer-nanosecond clock and a deterministic event queue.

Every emulated device lives on one :class:`Platform` clock (DESIGN.md, "Time").  Events are
ordered by ``(time_ns, sequence)``: two events due at the same nanosecond run in the order they
were scheduled, so a run depends only on the seed, the config and the workload, never on the
machine.  This is the discrete-event core FEMU and NVMeVirt use for their "compute the
completion time, then hold" timing (shared/research/nvme_pipeann.md, section 3).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["Event", "EventQueue"]


class Event:
    """A scheduled callback; :meth:`cancel` keeps it from running."""

    __slots__ = ("args", "fn", "seq", "time_ns")

    def __init__(self, time_ns: int, seq: int, fn: Callable[..., Any] | None,
                 args: tuple[Any, ...]) -> None:
        self.time_ns = time_ns
        self.seq = seq
        self.fn = fn
        self.args = args

    @property
    def cancelled(self) -> bool:
        return self.fn is None

    def cancel(self) -> None:
        """Drop the event; cancelling twice, or after it ran, does nothing."""
        self.fn = None
        self.args = ()

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", "cancelled")
        return f"Event(time_ns={self.time_ns}, seq={self.seq}, fn={name})"


class EventQueue:
    """Integer-ns clock plus a heap of :class:`Event` s.

    The clock only moves forward, and only while events run (``run_*``) or when a caller
    advances it explicitly with :meth:`advance_to`.
    """

    def __init__(self) -> None:
        self._now = 0
        self._seq = 0
        # heap entries are (time_ns, seq, event) tuples: tuple comparison runs in C, which
        # profiling showed matters (a Python __lt__ was the top cost of the NVMe fast path)
        self._heap: list[tuple[int, int, Event]] = []
        self.events_run = 0

    @property
    def now_ns(self) -> int:
        """Current virtual time in nanoseconds."""
        return self._now

    # -- scheduling -------------------------------------------------------------------------
    def schedule_at(self, time_ns: int, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` at absolute virtual time ``time_ns`` (clamped to now)."""
        if time_ns < self._now:
            time_ns = self._now
        self._seq += 1
        t = int(time_ns)
        ev = Event(t, self._seq, fn, args)
        heapq.heappush(self._heap, (t, self._seq, ev))
        return ev

    def schedule(self, delay_ns: int, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` ``delay_ns`` nanoseconds from now (negative delays mean now)."""
        return self.schedule_at(self._now + max(0, int(delay_ns)), fn, *args)

    @property
    def next_event_ns(self) -> int | None:
        """Time of the earliest pending event, or ``None`` when idle."""
        heap = self._heap
        while heap and heap[0][2].fn is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    @property
    def pending(self) -> int:
        """Number of live events still queued."""
        return sum(1 for _, _, ev in self._heap if ev.fn is not None)

    # -- running ----------------------------------------------------------------------------
    def _run_one(self) -> None:
        ev = heapq.heappop(self._heap)[2]
        fn = ev.fn
        if fn is None:
            return
        self._now = ev.time_ns
        ev.fn = None
        self.events_run += 1
        fn(*ev.args)

    def step(self) -> bool:
        """Run every event due at the earliest pending time; return False when idle."""
        t = self.next_event_ns
        if t is None:
            return False
        heap = self._heap
        while heap and heap[0][0] == t:
            self._run_one()
        return True

    def run_until(self, time_ns: int) -> None:
        """Run all events due at or before ``time_ns``, then set the clock to ``time_ns``."""
        heap = self._heap
        while heap and heap[0][0] <= time_ns:
            self._run_one()
        if time_ns > self._now:
            self._now = int(time_ns)

    def run_for(self, ns: int) -> None:
        """Advance the clock by ``ns`` nanoseconds, running the events that fall due."""
        self.run_until(self._now + max(0, int(ns)))

    def run_until_idle(self, max_events: int | None = None) -> int:
        """Run events until none is left (or ``max_events`` ran); return how many ran."""
        ran = 0
        heap = self._heap
        while heap and (max_events is None or ran < max_events):
            before = self.events_run
            self._run_one()
            ran += self.events_run - before
        return ran

    def advance_to(self, time_ns: int) -> None:
        """Move the clock forward without running events (a host busy in software)."""
        if time_ns > self._now:
            self.run_until(time_ns)
