"""The CXL pod: N hosts, one multi-headed Type-3 device, cooperative host tasks on one clock.

Hosts run programs as Python generators.  A program does memory operations through its host's
handle and ``yield`` s wherever a context switch may happen (after every memory operation, to
explore the most interleavings); yielding an ``int`` also spends that many ns of local time.
:meth:`CxlPod.run` picks the next runnable host from a seeded stream (or from an explicit
``choices`` list that hypothesis can generate and shrink), so the same seed gives the same
interleaving and the same virtual times.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from labrig.errors import UsageError
from labrig.hw._platform import Platform
from labrig.hw.cxl.cache import LineCache
from labrig.hw.cxl.config import CxlPodConfig
from labrig.hw.cxl.device import CxlType3Device
from labrig.hw.cxl.port import HostPort

__all__ = ["CxlPod", "RunResult"]

Task = Iterator[object]


@dataclass
class RunResult:
    """What :meth:`CxlPod.run` did: steps taken, hosts finished or crashed, the schedule."""

    steps: int = 0
    finished: list[int] = field(default_factory=list)
    crashed: list[int] = field(default_factory=list)
    schedule: list[int] = field(default_factory=list)
    timed_out: bool = False


class CxlPod:
    """A pod of ``cfg.hosts`` hosts sharing one CXL Type-3 memory device.

    Parameters
    ----------
    plat : Platform
        The virtual clock; the device's mailbox events and the hosts' tasks share it.
    cfg : CxlPodConfig, optional

    Attributes
    ----------
    device : CxlType3Device
        Register front end (``device.bar0``) for the driver.
    media : ndarray of uint8
        Device memory indexed by DPA (inspection API for tests and plots; drivers use ports).

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> pod = CxlPod(Platform(seed=0), CxlPodConfig(hosts=2))
    >>> pod.port(1).host
    1
    """

    def __init__(self, plat: Platform, cfg: CxlPodConfig | None = None) -> None:
        self.plat = plat
        self.cfg = cfg or CxlPodConfig()
        self.media = np.zeros(self.cfg.capacity_bytes, dtype=np.uint8)
        self.device = CxlType3Device(plat, self.cfg)
        self._sched_rng = plat.rng("cxl.pod.schedule")
        self._ports = [HostPort(self, h) for h in range(self.cfg.hosts)]
        self._tasks: dict[int, Task] = {}
        self.lost_dirty_lines = 0

    def _make_cache(self, backing: np.ndarray, name: str) -> LineCache:
        return LineCache(backing, self.cfg.cache_lines, self.cfg.eviction, self.plat.rng(name))

    def port(self, host: int) -> HostPort:
        """Host ``host``'s load/store port (see :class:`HostPort`)."""
        if not 0 <= host < self.cfg.hosts:
            raise UsageError(f"host {host}: must be in 0..{self.cfg.hosts - 1}")
        return self._ports[host]

    # -- faults --------------------------------------------------------------------------------
    def crash(self, host: int) -> None:
        """Host ``host`` fails: its dirty lines and outstanding flushes are lost, its task stops,
        its port faults every access until :meth:`restart`."""
        p = self.port(host)
        self.lost_dirty_lines += p.local_cache.discard() + p.cxl_cache.discard()
        p._pending.clear()
        p.crashed = True
        task = self._tasks.pop(host, None)
        if task is not None and hasattr(task, "close"):
            try:
                task.close()
            except ValueError:  # the task crashed itself while running: it is dropped below
                pass

    def restart(self, host: int) -> None:
        """Bring a crashed host back with an empty cache (its local DRAM is kept)."""
        self.port(host).crashed = False

    # -- scheduling ------------------------------------------------------------------------------
    def run(self, tasks: Mapping[int, Task], *, choices: Sequence[int] | None = None,
            crash_at: Mapping[int, int] | None = None, max_steps: int = 1_000_000
            ) -> RunResult:
        """Run host programs to completion under a seeded interleaving.

        Parameters
        ----------
        tasks : mapping of host -> generator
            One program per host (a started or fresh generator).
        choices : sequence of int, optional
            Explicit schedule: step k runs runnable host ``choices[k] % len(runnable)`` (hosts
            sorted); after the list runs out, the pod's seeded stream picks.
        crash_at : mapping of host -> step, optional
            Crash that host just before global step ``step``.
        max_steps : int, optional
            Stop (``timed_out``) after this many steps, e.g. a spinning consumer whose
            producer crashed.

        Returns
        -------
        RunResult
        """
        for h in tasks:
            self.port(h)
            if h in self._tasks:
                raise UsageError(f"host {h} already runs a task")
        self._tasks.update(tasks)
        res = RunResult()
        crash_at = dict(crash_at or {})
        live = dict(tasks)
        try:
            while live:
                if res.steps >= max_steps:
                    res.timed_out = True
                    break
                for h, at in list(crash_at.items()):
                    if at <= res.steps and h in live:
                        self.crash(h)
                        live.pop(h)
                        res.crashed.append(h)
                        del crash_at[h]
                for h in [h for h in live if self._ports[h].crashed]:
                    live.pop(h)         # crashed by another task or from outside
                    res.crashed.append(h)
                if not live:
                    break
                hosts = sorted(live)
                k = res.steps
                if choices is not None and k < len(choices):
                    h = hosts[choices[k] % len(hosts)]
                else:
                    h = hosts[int(self._sched_rng.integers(len(hosts)))]
                res.schedule.append(h)
                res.steps += 1
                port = self._ports[h]
                try:
                    y = next(live[h])
                except StopIteration:
                    live.pop(h)
                    self._tasks.pop(h, None)
                    res.finished.append(h)
                    continue
                if port.crashed:   # the task crashed its own host
                    live.pop(h, None)
                    res.crashed.append(h)
                    continue
                if isinstance(y, int) and not isinstance(y, bool):
                    port.compute(y)
                self._advance_clock(live)
        finally:
            for h in live:
                self._tasks.pop(h, None)
        return res

    def _advance_clock(self, live: Mapping[int, Task]) -> None:
        t = min((self._ports[h].now_ns for h in live), default=self.plat.now_ns)
        if t > self.plat.now_ns:
            self.plat.run_until(t)
