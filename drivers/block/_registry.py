"""Device-string registry: ``open_block_device("emu:nvme?capacity=1G")``.

One backend module per scheme, registered by name (SPDK ``SPDK_NVME_TRANSPORT_REGISTER``);
each says whether it can run here (``available()`` returns ``None`` or the reason), which
``labrig devices`` prints and tests skip with.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from labrig.errors import BackendUnavailable, UsageError

from labrig.drivers.block._interface import BlockDevice

__all__ = ["BackendInfo", "DeviceString", "available_backends", "open_block_device",
           "parse_device_string", "parse_size", "register_backend"]

_SIZE_SUFFIX = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
                "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


def parse_size(text: str, what: str = "size") -> int:
    """``"4096"``, ``"64K"``, ``"1G"``, ``"1TiB"`` -> bytes (binary units).

    Raises
    ------
    UsageError
        Unparseable or negative.
    """
    s = str(text).strip().lower()
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = s[len(num):]
    if suffix not in _SIZE_SUFFIX or not num:
        raise UsageError(f"{what}={text!r}: expected a number with an optional K/M/G/T suffix")
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"{what}={text!r}: not a number") from None
    if value < 0:
        raise UsageError(f"{what}={text!r}: must not be negative")
    return int(value * _SIZE_SUFFIX[suffix])


@dataclass(frozen=True)
class DeviceString:
    """A parsed device string: ``scheme:target?key=value&...``.

    ``/dev/...`` paths have scheme ``dev`` and target the path.
    """

    scheme: str
    target: str
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""


def parse_device_string(text: str) -> DeviceString:
    """Split a device string; raises :class:`UsageError` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"device string {text!r}: empty")
    raw = text.strip()
    body, _, query = raw.partition("?")
    if body.startswith("/dev/"):
        scheme, target = "dev", body
    else:
        scheme, sep, target = body.partition(":")
        if not sep or not scheme:
            raise UsageError(f"device string {text!r}: expected SCHEME:TARGET (e.g. emu:nvme, "
                             "file:/tmp/x) or a /dev/ path")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise UsageError(f"device string {text!r}: malformed options {query!r}") from None
    return DeviceString(scheme.lower(), target, options, raw)


@dataclass(frozen=True)
class BackendInfo:
    """A registered block backend."""

    scheme: str
    summary: str
    opener: Callable[[DeviceString], BlockDevice]
    available: Callable[[], str | None]


_BACKENDS: dict[str, BackendInfo] = {}
#: Modules that register block backends when imported (kept lazy: a real backend's imports
#: must not slow down or break the emulated path).
BACKEND_MODULES = ["labrig.drivers.nvme.emu", "labrig.drivers.filedev"]


def register_backend(scheme: str, summary: str, opener: Callable[[DeviceString], BlockDevice],
                     available: Callable[[], str | None] = lambda: None) -> None:
    """Register ``opener`` for device strings ``scheme:...``; duplicates are an error."""
    if scheme in _BACKENDS and _BACKENDS[scheme].opener is not opener:
        raise ValueError(f"block backend {scheme!r} registered twice")
    _BACKENDS[scheme] = BackendInfo(scheme, summary, opener, available)


def _load_backends() -> None:
    for mod in BACKEND_MODULES:
        importlib.import_module(mod)


def available_backends() -> list[BackendInfo]:
    """Every registered backend (available or not; call ``info.available()`` for the reason)."""
    _load_backends()
    return sorted(_BACKENDS.values(), key=lambda b: b.scheme)


def open_block_device(uri: str) -> BlockDevice:
    """Open a block device by device string.

    Raises
    ------
    UsageError
        Malformed string or unknown scheme.
    BackendUnavailable
        The backend exists but cannot run here (the reason says why).
    """
    ds = parse_device_string(uri)
    _load_backends()
    info = _BACKENDS.get(ds.scheme)
    if info is None:
        known = ", ".join(sorted(_BACKENDS)) or "none"
        raise UsageError(f"device string {uri!r}: unknown scheme {ds.scheme!r} (known: {known})")
    reason = info.available()
    if reason is not None:
        raise BackendUnavailable(ds.scheme, reason)
    return info.opener(ds)
