"""Backend-neutral GPU interface (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["CopyCompletion", "GpuDevice"]


@dataclass(frozen=True)
class CopyCompletion:
    """One finished :meth:`GpuDevice.copy_async`.

    Attributes
    ----------
    tag : int
        The value ``copy_async`` returned.
    ok : bool
        False when the copy failed; the destination is then unchanged.
    done_ns : int
        Device clock when it finished (or failed).
    reason : str
        Why it failed ("" on success).
    """

    tag: int
    ok: bool
    done_ns: int
    reason: str = ""


@runtime_checkable
class GpuDevice(Protocol):
    """One GPU as a runtime sees it.

    ``name`` identifies it (``"s0.gpu3"`` on the emulator).  ``alloc`` returns device memory
    with ``addr`` (a bus address NICs can DMA to, GPUDirect RDMA), ``nbytes`` and ``view``
    (uint8 array); it can be registered as a verbs ``MR(..., buffer=buf)``.
    ``copy_async(dst_addr, src_addr, nbytes)`` starts a copy (memcpy argument order) and
    returns a tag; ``poll(max)`` reaps finished copies of this GPU, and when none is ready
    lets the device run to its next event, like a verbs CQ poll (``advance=False``: reap only); ``idle()`` is true when
    nothing pending could ever finish; ``clock()`` is virtual ns on the emulator, monotonic
    wall ns on real hardware (DESIGN.md "Time").
    """

    name: str

    def alloc(self, nbytes: int) -> Any: ...

    def free(self, buf: Any) -> None: ...

    def copy_async(self, dst_addr: int, src_addr: int, nbytes: int) -> int: ...

    def poll(self, max_entries: int = 16, *, advance: bool = True) -> list[CopyCompletion]: ...

    def idle(self) -> bool: ...

    def clock(self) -> int: ...
