"""A back-to-back cable between two NIC ports: the smallest real wire a NIC can sit on.

Two RDMA NICs direct-attached with one DAC/AOC cable (no switch) is a common lab setup and
what ``ib_write_lat``/``ib_write_bw`` are usually benchmarked on.  The cable offers the same
``transfer()`` contract as :class:`labrig.hw.fabric.flows.FlowNetwork`, so a NIC runs
unchanged on either:

- each direction is a FIFO serializer: a transfer starts when the previous one in that
  direction has finished serializing, takes ``ceil(nbytes / bandwidth)`` and lands
  ``latency_ns`` later (propagation: ~5 ns per metre of cable);
- unplugging (:meth:`Cable.set_link_up` with ``False``, or :meth:`unplug`) fails every transfer
  in flight and every later one with ``on_fail(reason)``, called as an event, never inside the
  caller; a transfer whose ``src == dst`` (a port talking to itself) lands after 0 ns.

Defaults: 200 Gb/s (HDR, ConnectX-6) and 15 ns (3 m of copper DAC at ~5 ns/m).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from labrig.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from labrig.hw._clock import Event
    from labrig.hw._platform import Platform

__all__ = ["Cable", "CableTransfer"]

#: 200 Gb/s HDR line rate in bytes/s (ConnectX-6 product brief)
HDR_BYTES_PER_S = 200e9 / 8
#: 3 m DAC at ~5 ns/m
DAC_3M_NS = 15


class CableTransfer:
    """Handle of one transfer on a :class:`Cable` (``done_ns`` / ``fail_reason`` once over)."""

    __slots__ = ("_event", "_on_done", "_on_fail", "done_ns", "dst", "fail_reason", "nbytes",
                 "src")

    def __init__(self, src: str, dst: str, nbytes: int, on_done: Callable[[int], None],
                 on_fail: Callable[[str], None] | None) -> None:
        self.src = src
        self.dst = dst
        self.nbytes = nbytes
        self._on_done = on_done
        self._on_fail = on_fail
        self._event: Event | None = None
        self.done_ns: int | None = None
        self.fail_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.done_ns is not None or self.fail_reason is not None


class Cable:
    """A full-duplex cable joining ports ``a`` and ``b``.

    Parameters
    ----------
    plat : Platform
    a, b : str
        Port names (a NIC's ``NicConfig.node``).
    bandwidth_Bps : float
        Line rate per direction, bytes/s.
    latency_ns : int
        Propagation delay.

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> plat = Platform()
    >>> cable = Cable(plat, "nicA", "nicB")
    >>> got = []
    >>> _ = cable.transfer("nicA", "nicB", 25_000, got.append)
    >>> plat.run_until_idle() and got
    [1015]
    """

    def __init__(self, plat: Platform, a: str = "nic0", b: str = "nic1", *,
                 bandwidth_Bps: float = HDR_BYTES_PER_S, latency_ns: int = DAC_3M_NS) -> None:
        if not isinstance(a, str) or not isinstance(b, str) or not a or not b or a == b:
            raise ConfigError("Cable", "ports", (a, b), "must be two different non-empty names")
        if isinstance(bandwidth_Bps, bool) or not isinstance(bandwidth_Bps, (int, float)) \
                or not bandwidth_Bps > 0:
            raise ConfigError("Cable", "bandwidth_Bps", bandwidth_Bps, "must be > 0")
        if isinstance(latency_ns, bool) or not isinstance(latency_ns, int) or latency_ns < 0:
            raise ConfigError("Cable", "latency_ns", latency_ns, "must be an int >= 0")
        self.plat = plat
        self.ports = (a, b)
        self._Bpns = float(bandwidth_Bps) / 1e9
        self.latency_ns = latency_ns
        self._free_ns = {(a, b): 0, (b, a): 0}
        self._inflight: dict[CableTransfer, None] = {}
        self.up = True
        self.bytes_delivered = 0

    @property
    def links(self) -> tuple[str, str]:
        """The two directed link names, ``"a->b"`` and ``"b->a"``."""
        a, b = self.ports
        return f"{a}->{b}", f"{b}->{a}"

    def transfer(self, src: str, dst: str, nbytes: int, on_done: Callable[[int], None], *,
                 on_fail: Callable[[str], None] | None = None,
                 path: Sequence[str] | None = None) -> CableTransfer:
        """Move ``nbytes`` from port ``src`` to port ``dst`` (same contract as
        :meth:`FlowNetwork.transfer`; ``path`` may only name this cable's link).

        Raises
        ------
        UsageError
            Unknown port, bad ``nbytes`` or a path that is not this cable.
        """
        if src not in self.ports or dst not in self.ports:
            raise UsageError(f"cable transfer {src!r} -> {dst!r}: ports are {self.ports}")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise UsageError(f"cable transfer nbytes={nbytes!r}: must be an int >= 0")
        if path is not None and tuple(path) not in ((), (f"{src}->{dst}",)):
            raise UsageError(f"cable transfer path={tuple(path)!r}: must be ('{src}->{dst}',)")
        t = CableTransfer(src, dst, nbytes, on_done, on_fail)
        plat = self.plat
        if src == dst:
            t._event = plat.schedule(0, self._land, t)
            self._inflight[t] = None
            return t
        if not self.up:
            plat.schedule(0, self._fail, t, f"cable {src}->{dst} is unplugged")
            return t
        key = (src, dst)
        now = plat.now_ns
        start = self._free_ns[key]
        if start < now:
            start = now
        sent = start + math.ceil(nbytes / self._Bpns)
        self._free_ns[key] = sent
        t._event = plat.schedule_at(sent + self.latency_ns, self._land, t)
        self._inflight[t] = None
        return t

    def _land(self, t: CableTransfer) -> None:
        self._inflight.pop(t, None)
        t._event = None
        t.done_ns = self.plat.now_ns
        self.bytes_delivered += t.nbytes
        t._on_done(t.done_ns)

    def _fail(self, t: CableTransfer, reason: str) -> None:
        t.fail_reason = reason
        if t._on_fail is not None:
            t._on_fail(reason)

    def set_link_up(self, link: str, up: bool) -> None:
        """Plug (``True``) or unplug (``False``) the cable; ``link`` is either direction's
        name (both directions share the one cable).

        Raises
        ------
        UsageError
            ``link`` is not one of :attr:`links`.
        """
        if link not in self.links:
            raise UsageError(f"cable link={link!r}: must be one of {self.links}")
        self.plug() if up else self.unplug()

    def unplug(self) -> None:
        """Pull the cable: transfers in flight fail (as events now), later ones fail too."""
        if not self.up:
            return
        self.up = False
        now = self.plat.now_ns
        for key in self._free_ns:
            self._free_ns[key] = now
        for t in list(self._inflight):
            if t.src == t.dst:
                continue
            del self._inflight[t]
            if t._event is not None:
                t._event.cancel()
                t._event = None
            self.plat.schedule(0, self._fail, t, f"cable {t.src}->{t.dst} was unplugged")

    def plug(self) -> None:
        """Reconnect the cable; transfers posted from now on are delivered."""
        self.up = True

    def link_up(self, link: str) -> bool:
        """Whether the cable is plugged (``link`` as in :meth:`set_link_up`)."""
        if link not in self.links:
            raise UsageError(f"cable link={link!r}: must be one of {self.links}")
        return self.up

    def __repr__(self) -> str:
        a, b = self.ports
        return (f"Cable({a!r}, {b!r}, bandwidth_Bps={self._Bpns * 1e9:g}, "
                f"latency_ns={self.latency_ns}, up={self.up})")
