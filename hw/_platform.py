"""The platform every emulated device is attached to: one virtual clock, host memory, RNGs.

See DESIGN.md, "The device contract" for the public surface.  A device receives the platform
in its constructor, schedules its work on ``plat.events`` and reaches host memory through
``plat.memory``; a driver sees only the device's BAR, DMA buffers and interrupts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from labrig.hw._clock import Event, EventQueue
from labrig.hw._memory import HostMemory

__all__ = ["Platform"]


class Platform:
    """Virtual clock, event queue, DMA-able host memory and seeded RNG streams.

    Parameters
    ----------
    seed : int, optional
        Root of every random stream on the platform.  Same seed, same config, same workload ->
        same virtual-time results on any machine.

    Examples
    --------
    >>> plat = Platform(seed=0)
    >>> buf = plat.memory.alloc(4096)
    >>> _ = plat.events.schedule(100, lambda: None)
    >>> plat.run_until_idle(); plat.now_ns
    100
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.events = EventQueue()
        self.memory = HostMemory()
        self._rng_names: set[str] = set()

    # -- time -------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """Current virtual time, integer nanoseconds."""
        return self.events.now_ns

    def schedule(self, delay_ns: int, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` after ``delay_ns`` virtual nanoseconds."""
        return self.events.schedule(delay_ns, fn, *args)

    def schedule_at(self, time_ns: int, fn: Callable[..., Any], *args: Any) -> Event:
        """Run ``fn(*args)`` at virtual time ``time_ns``."""
        return self.events.schedule_at(time_ns, fn, *args)

    def run_for(self, ns: int) -> None:
        """Advance virtual time by ``ns``, running the events that fall due."""
        self.events.run_for(ns)

    def run_until(self, t_ns: int) -> None:
        """Advance virtual time to ``t_ns``, running the events that fall due."""
        self.events.run_until(t_ns)

    def run_until_idle(self, max_events: int | None = None) -> int:
        """Run events until none is pending; returns the number run."""
        return self.events.run_until_idle(max_events)

    def step(self) -> bool:
        """Run the events due at the next pending time (what a poll-mode driver does while it
        waits); False when nothing is pending."""
        return self.events.step()

    # -- randomness -------------------------------------------------------------------------
    def rng(self, name: str) -> np.random.Generator:
        """An independent random stream for ``name`` (e.g. a device instance), derived from
        the platform seed, so adding a device does not perturb the others' streams.

        Each name may be taken once; a second request would silently share a stream.
        """
        if name in self._rng_names:
            raise ValueError(f"rng stream {name!r} already taken on this platform")
        self._rng_names.add(name)
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest, "little")])

    def __repr__(self) -> str:
        return f"Platform(seed={self.seed})"
