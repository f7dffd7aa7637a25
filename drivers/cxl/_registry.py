"""Device strings for CXL memory and what ``labrig devices`` lists.

* ``emu:cxl`` -- the emulated pod (:mod:`.emu`);
* ``shm:NAME`` -- a shared-memory file, one process per host (:mod:`.real`);
* ``/dev/daxX.Y`` -- Linux device DAX (:mod:`.real`).
"""

from __future__ import annotations

from typing import Any

from labrig.drivers.cxl._interface import CxlMemory
from labrig.drivers.cxl.emu import open_emu
from labrig.drivers.cxl.real import list_dax_devices, open_dax, open_shm, shm_available
from labrig.errors import UsageError

__all__ = ["describe_backends", "open_cxl"]


def open_cxl(device: str, **options: Any) -> CxlMemory:
    """Open a CXL memory region by device string; ``options`` go to the backend opener
    (:func:`open_emu`, :func:`open_shm`, :func:`open_dax`)."""
    if device in ("emu", "emu:cxl"):
        return open_emu(**options)
    if device.startswith("shm:"):
        return open_shm(device[4:], **options)
    if device.startswith("/dev/dax"):
        return open_dax(device, **options)
    raise UsageError(f"CXL device {device!r}: expected emu:cxl, shm:NAME or /dev/daxX.Y")


def describe_backends() -> list[tuple[str, str | None, str]]:
    """``[(device string, reason it is unavailable or None, summary)]`` for ``labrig devices``."""
    out: list[tuple[str, str | None, str]] = [
        ("emu:cxl", None, "emulated CXL pod: per-host write-back caches, coherent window, "
                          "virtual time"),
        ("shm:NAME", shm_available(), "shared-memory file across processes, real "
                                      "clflushopt/clwb/sfence and atomics (x86-64)"),
    ]
    daxes = list_dax_devices()
    if not daxes:
        out.append(("/dev/daxX.Y", "no devdax devices in /sys/bus/dax/devices",
                    "Linux device DAX (CXL memory in devdax mode)"))
    for path, size, align in daxes:
        out.append((path, None, f"devdax, {size >> 20} MiB, align {align >> 10} KiB"))
    return out
