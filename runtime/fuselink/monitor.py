"""NIC idleness monitor shared by the GPUs of one server (FuseLink ``src/monitor.h/.cpp``,
research notes fabric.md 1.3 d / 1.6).

Per NIC and direction (tx, rx) it keeps the last time the NIC's *owner* (the GPU bound to it)
was active, the last time anyone was, and who has borrowed it.  A NIC is idle when nobody was
active on it for ``timeout_ns`` (FuseLink's ``MONITOR_TIMEOUT_US = 160``) and nobody has
borrowed it.  An owner marking its NIC active after it was lent out *reclaims* it: the
borrower sees :meth:`reclaimed` and stops putting new chunks on it.  FuseLink keeps this table
in POSIX shared memory served by a daemon; here it is one in-process object per server.
"""

from __future__ import annotations

from labrig.errors import ConfigError, UsageError

__all__ = ["DIRECTIONS", "MONITOR_TIMEOUT_NS", "NicMonitor"]

#: FuseLink ``MONITOR_TIMEOUT_US = 160``: a NIC unused this long is idle.
MONITOR_TIMEOUT_NS = 160_000
DIRECTIONS = ("tx", "rx")
_NEVER = -(1 << 62)


class NicMonitor:
    """Idle/busy/borrowed state of ``n_nics`` NICs of one server."""

    def __init__(self, n_nics: int, timeout_ns: int = MONITOR_TIMEOUT_NS) -> None:
        if isinstance(n_nics, bool) or not isinstance(n_nics, int) or n_nics < 1:
            raise ConfigError("NicMonitor", "n_nics", n_nics, "must be an int >= 1")
        if isinstance(timeout_ns, bool) or not isinstance(timeout_ns, int) or timeout_ns < 0:
            raise ConfigError("NicMonitor", "timeout_ns", timeout_ns, "must be an int >= 0")
        self.n_nics = n_nics
        self.timeout_ns = timeout_ns
        self._active = {d: [_NEVER] * n_nics for d in DIRECTIONS}
        self._borrower: dict[str, list[object | None]] = {d: [None] * n_nics for d in DIRECTIONS}
        # order of owner marks vs lendings (a counter: both can happen at one virtual ns)
        self._seq = 0
        self._owner_seq = {d: [0] * n_nics for d in DIRECTIONS}
        self._lent_seq = {d: [0] * n_nics for d in DIRECTIONS}

    def _check(self, direction: str, nic: int) -> None:
        if direction not in DIRECTIONS:
            raise UsageError(f"NicMonitor direction={direction!r}: must be one of {DIRECTIONS}")
        if isinstance(nic, bool) or not isinstance(nic, int) or not 0 <= nic < self.n_nics:
            raise UsageError(f"NicMonitor nic={nic!r}: must be in 0..{self.n_nics - 1}")

    def mark_active(self, direction: str, nic: int, now_ns: int, *, owner: bool) -> None:
        """Record activity (FuseLink ``markNicTxAsActive`` / ``markNicRxAsActive``)."""
        self._check(direction, nic)
        self._active[direction][nic] = now_ns
        if owner:
            self._seq += 1
            self._owner_seq[direction][nic] = self._seq

    def is_idle(self, direction: str, nic: int, now_ns: int) -> bool:
        self._check(direction, nic)
        return (self._borrower[direction][nic] is None
                and now_ns - self._active[direction][nic] >= self.timeout_ns)

    def idle_nics(self, direction: str, now_ns: int) -> list[int]:
        """NICs idle now, in index order (FuseLink ``getIdleNicTx/Rx`` scans them)."""
        return [k for k in range(self.n_nics) if self.is_idle(direction, k, now_ns)]

    def borrow(self, direction: str, nic: int, who: object, now_ns: int) -> None:
        """Mark ``nic`` BORROWED by ``who`` so no other borrower takes it."""
        self._check(direction, nic)
        if self._borrower[direction][nic] is not None:
            raise UsageError(f"NicMonitor: {direction} nic{nic} is already borrowed")
        self._borrower[direction][nic] = who
        self._seq += 1
        self._lent_seq[direction][nic] = self._seq
        self._active[direction][nic] = now_ns

    def release(self, direction: str, nic: int, who: object, now_ns: int) -> None:
        """Give a borrowed NIC back (idle again after the timeout)."""
        self._check(direction, nic)
        if self._borrower[direction][nic] is who:
            self._borrower[direction][nic] = None
            self._active[direction][nic] = now_ns

    def borrower(self, direction: str, nic: int) -> object | None:
        self._check(direction, nic)
        return self._borrower[direction][nic]

    def reclaimed(self, direction: str, nic: int) -> bool:
        """Whether the owner was active on a lent NIC after it was lent."""
        self._check(direction, nic)
        return (self._borrower[direction][nic] is not None
                and self._owner_seq[direction][nic] > self._lent_seq[direction][nic])
