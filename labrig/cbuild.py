"""Build a small C module with cffi (API mode) on first use and cache it per user.

The project's C lives next to the Python that uses it, as a ``cdef``/source pair (STYLE.md:
C only for the few loops that need it, or where the kernel ABI is needed).  This module
compiles such a pair once into ``$XDG_CACHE_HOME/labrig/<area>`` (default
``~/.cache/labrig/<area>``), under a file lock so concurrent processes (pytest-xdist, several
CLI runs) don't race, and keyed by a hash of the sources and the Python version so an edit
rebuilds.  Failures are reported as :class:`BackendUnavailable` carrying the compiler's reason,
so callers can fall back or skip with that reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from labrig.errors import BackendUnavailable

__all__ = ["build_module", "cache_dir"]

_loaded: dict[str, ModuleType] = {}


def cache_dir(area: str) -> Path:
    """Per-user build directory of the C modules of ``area``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "labrig" / area


def build_module(area: str, prefix: str, cdef: str, source: str, *,
                 backend: str | None = None,
                 extra_compile_args: Sequence[str] = ("-O2",),
                 libraries: Sequence[str] = ()) -> ModuleType:
    """Compile (once) and import the cffi module ``prefix_<hash>``; return it (``.ffi``, ``.lib``).

    Parameters
    ----------
    area : str
        Cache sub-directory (``"cxl"``, ``"uring"``, ``"ann"``, ...).
    prefix : str
        Module name prefix, a C identifier.
    cdef, source : str
        The declarations cffi exposes and the C source implementing them.
    backend : str, optional
        Name used in the :class:`BackendUnavailable` raised on failure (default: ``area``).
    extra_compile_args, libraries : sequence of str
        Passed to the compiler and linker.

    Raises
    ------
    BackendUnavailable
        cffi or a C compiler missing, or the build failed (the reason says which).
    """
    who = backend or area
    args = tuple(extra_compile_args)
    tag = hashlib.sha256((cdef + source + repr(args) + repr(tuple(libraries))
                          + sys.version).encode()).hexdigest()[:12]
    name = f"{prefix}_{tag}"
    if name in _loaded:
        return _loaded[name]
    try:
        import cffi
    except ImportError:
        raise BackendUnavailable(who, "cffi is not installed") from None
    out = cache_dir(area)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(out.glob(f"{name}*.so"))
        if not found:
            ffi = cffi.FFI()
            ffi.cdef(cdef)
            ffi.set_source(name, source, extra_compile_args=list(args),
                           libraries=list(libraries))
            try:
                path = ffi.compile(tmpdir=str(out), verbose=False)
            except Exception as exc:  # distutils/setuptools raise several types here
                raise BackendUnavailable(who, f"cannot compile the C helper: {exc}") from exc
            found = [Path(path)]
    spec = importlib.util.spec_from_file_location(name, found[0])
    if spec is None or spec.loader is None:
        raise BackendUnavailable(who, f"cannot load {found[0]}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    _loaded[name] = mod
    return mod
