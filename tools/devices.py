"""What ``labrig devices`` reports: emulated device kinds, block backends, real hardware here.

Three parts, each a plain JSON-able dict so ``labrig devices --json`` is one object:

- :data:`EMULATED_KINDS` -- the device kinds labrig can emulate, with the device string that
  opens each.  A device family appends its own :class:`EmulatedKind` when it lands.
- the block backends registered with :func:`labrig.drivers.block.available_backends`, each with
  whether it can run here and, if not, why.
- real devices found in sysfs: NVMe controllers and namespaces (``/sys/class/nvme``,
  ``/sys/block``) with whether passthrough is usable, other block devices (virtio, SCSI),
  devdax devices (``/sys/bus/dax/devices``), RDMA devices
  (``/sys/class/infiniband``).  A missing or unreadable sysfs is reported as "none found" with
  the path checked; discovery never raises.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labrig.tools.results import format_table

__all__ = ["EMULATED_KINDS", "EmulatedKind", "device_report", "discover_block", "discover_dax",
           "discover_nvme", "discover_rdma", "format_device_report"]


@dataclass(frozen=True)
class EmulatedKind:
    """One kind of hardware labrig emulates.

    Attributes
    ----------
    kind : str
        Short name (``nvme``, ``cxl`` ...).
    device : str
        Device string that opens it (``emu:nvme``).
    summary : str
        One line: what the model is and what its timing follows.
    """

    kind: str
    device: str
    summary: str


#: Emulated device kinds, in the order ``labrig devices`` lists them.  Families append theirs.
EMULATED_KINDS: list[EmulatedKind] = [
    EmulatedKind("nvme", "emu:nvme",
                 "NVMe SSD: NVMe registers and queues, Micron 9200 timing "
                 "(?capacity=1G&lba=4096&seed=N)"),
    EmulatedKind("cxl", "emu:cxl",
                 "CXL pod: multi-headed Type-3 memory device (HDM decoders, mailbox), per-host "
                 "write-back caches, coherent window; ~2.2x local DRAM latency"),
    EmulatedKind("mesh", "labrig.hw.mesh.MeshDevice",
                 "wafer-scale PE mesh (WSE-2-like): 48 KB SRAM per PE, 24-colour routers, "
                 "cycle-level or analytic timing; host API in labrig.drivers.mesh"),
]

_NVME_NS = re.compile(r"^nvme(\d+)n(\d+)$")


def _read(path: Path) -> str | None:
    """Stripped text of a sysfs attribute, or ``None`` when absent or unreadable."""
    try:
        return path.read_text(errors="replace").strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _listdir(path: Path) -> list[str] | None:
    """Sorted entries of ``path``, or ``None`` when it is absent or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def discover_nvme(sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> dict[str, Any]:
    """NVMe controllers and namespaces visible in sysfs.

    Parameters
    ----------
    sys_root, dev_root : Path
        Where sysfs and devtmpfs are mounted (tests point these at fake trees).

    Returns
    -------
    dict
        ``checked`` (paths looked at), ``controllers`` (name, model, serial, firmware,
        transport) and ``namespaces`` (name, controller, nsid, size_bytes, lba_bytes, block
        device path, generic char device path or ``None`` when ``/dev/ngXnY`` is absent).
    """
    class_dir = sys_root / "class" / "nvme"
    block_dir = sys_root / "block"
    controllers = []
    for name in _listdir(class_dir) or []:
        base = class_dir / name
        controllers.append({
            "name": name,
            "model": _read(base / "model"),
            "serial": _read(base / "serial"),
            "firmware": _read(base / "firmware_rev"),
            "transport": _read(base / "transport"),
        })
    namespaces = []
    for name in _listdir(block_dir) or []:
        m = _NVME_NS.match(name)
        if m is None:
            continue
        ctrl, nsid = int(m.group(1)), int(m.group(2))
        base = block_dir / name
        sectors = _read_int(base / "size")
        generic = dev_root / f"ng{ctrl}n{nsid}"
        namespaces.append({
            "name": name,
            "controller": f"nvme{ctrl}",
            "nsid": nsid,
            "size_bytes": None if sectors is None else sectors * 512,   # sysfs counts 512 B
            "lba_bytes": _read_int(base / "queue" / "logical_block_size"),
            "block_device": str(dev_root / name),
            "generic_device": str(generic) if _exists(generic) else None,
            "passthrough": _passthrough(generic) if _exists(generic)
            else "no /dev/ng node (needs Linux >= 5.13)",
        })
    return {"checked": [str(class_dir), str(block_dir)], "controllers": controllers,
            "namespaces": namespaces}


def _passthrough(node: Path) -> str:
    """"usable" or why NVMe passthrough cannot be used on ``node``."""
    try:
        from labrig.drivers.nvmept import passthru_unavailable_reason

        reason = passthru_unavailable_reason(str(node))
    except Exception as exc:      # discovery never raises
        reason = f"{type(exc).__name__}: {exc}"
    return "usable" if reason is None else reason


#: Block devices that are not storage a user would benchmark.
_VIRTUAL_BLOCK = re.compile(r"^(loop|ram|zram|dm-|md|sr|nbd)\d*")


def discover_block(sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> dict[str, Any]:
    """Block devices other than NVMe namespaces (``/sys/block``: virtio, SCSI/SATA ...).

    Each with model, size, logical block size, whether it is rotational and read-only, and its
    ``/dev`` node — usable as ``/dev/NAME`` or ``file:/dev/NAME`` device strings.
    """
    block_dir = sys_root / "block"
    devices = []
    for name in sorted(_listdir(block_dir) or []):
        if _NVME_NS.match(name) or _VIRTUAL_BLOCK.match(name):
            continue
        base = block_dir / name
        sectors = _read_int(base / "size")
        if not sectors:
            continue
        devices.append({
            "name": name,
            "model": _read(base / "device" / "model") or _read(base / "device" / "vendor"),
            "size_bytes": sectors * 512,
            "lba_bytes": _read_int(base / "queue" / "logical_block_size"),
            "rotational": _read_int(base / "queue" / "rotational") == 1,
            "read_only": _read_int(base / "ro") == 1,
            "device": str(dev_root / name) if _exists(dev_root / name) else None,
        })
    return {"checked": [str(block_dir)], "devices": devices}


def discover_dax(sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> dict[str, Any]:
    """Linux devdax devices (``/sys/bus/dax/devices/daxX.Y``) with size and alignment."""
    base = sys_root / "bus" / "dax" / "devices"
    found = []
    for name in _listdir(base) or []:
        if not name.startswith("dax"):
            continue
        node = dev_root / name
        found.append({
            "name": name,
            "size_bytes": _read_int(base / name / "size"),
            "align_bytes": _read_int(base / name / "align"),
            "device": str(node) if _exists(node) else None,
        })
    return {"checked": [str(base)], "devices": found}


def discover_rdma(sys_root: Path = Path("/sys")) -> dict[str, Any]:
    """RDMA devices (``/sys/class/infiniband``) with each port's state and link layer."""
    base = sys_root / "class" / "infiniband"
    found = []
    for name in _listdir(base) or []:
        ports = []
        for port in _listdir(base / name / "ports") or []:
            pdir = base / name / "ports" / port
            ports.append({"port": port, "state": _read(pdir / "state"),
                          "link_layer": _read(pdir / "link_layer")})
        found.append({"name": name, "node_type": _read(base / name / "node_type"),
                      "device": f"rdma:{name}", "ports": ports})
    return {"checked": [str(base)], "devices": found}


def _backends() -> list[dict[str, Any]]:
    """Registered block backends with availability; a failing check becomes its reason."""
    try:
        from labrig.drivers.block import available_backends

        infos = available_backends()
    except Exception as exc:   # a broken backend module must not take `labrig devices` down
        return [{"scheme": "?", "summary": "block backend registry failed to load",
                 "available": False, "reason": f"{type(exc).__name__}: {exc}"}]
    out = []
    for info in infos:
        try:
            reason = info.available()
        except Exception as exc:
            reason = f"availability check failed: {type(exc).__name__}: {exc}"
        out.append({"scheme": info.scheme, "summary": info.summary,
                    "available": reason is None, "reason": reason})
    out.extend(_cxl_backends())
    out.extend(_verbs_backends())
    return out


def _verbs_backends() -> list[dict[str, Any]]:
    """RDMA verbs backends (the NIC model, pyverbs/rdma-core) with availability."""
    try:
        from labrig.drivers.verbs import available_backends

        avail = available_backends()
    except Exception as exc:   # never let one family take `labrig devices` down
        return [{"scheme": "verbs", "summary": "verbs backend registry failed to load",
                 "available": False, "reason": f"{type(exc).__name__}: {exc}"}]
    summaries = {"emu": "RDMA verbs: the fabric's NIC model through its registers and rings",
                 "pyverbs": "RDMA verbs: rdma-core through pyverbs (RDMA NICs, Soft-RoCE)"}
    return [{"scheme": f"verbs:{name}", "summary": summaries.get(name, name),
             "available": reason is None, "reason": reason} for name, reason in avail.items()]


def _cxl_backends() -> list[dict[str, Any]]:
    """CXL memory backends (``emu:cxl``, ``shm:NAME``, ``/dev/daxX.Y``) with availability."""
    try:
        from labrig.drivers.cxl import describe_backends

        rows = describe_backends()
    except Exception as exc:   # never let one family take `labrig devices` down
        return [{"scheme": "cxl", "summary": "CXL backend registry failed to load",
                 "available": False, "reason": f"{type(exc).__name__}: {exc}"}]
    return [{"scheme": name, "summary": f"CXL memory: {summary}", "available": reason is None,
             "reason": reason} for name, reason, summary in rows]


def device_report(sys_root: Path = Path("/sys"), dev_root: Path = Path("/dev")) -> dict[str, Any]:
    """Everything ``labrig devices`` shows, as one JSON-able dict.

    Keys: ``emulated`` (list of kind/device/summary), ``backends`` (scheme, summary, available,
    reason), ``real`` (``nvme``, ``devdax``, ``rdma``: each with ``checked`` paths).
    """
    return {
        "emulated": [asdict(k) for k in EMULATED_KINDS],
        "backends": _backends(),
        "real": {"nvme": discover_nvme(sys_root, dev_root),
                 "block": discover_block(sys_root, dev_root),
                 "devdax": discover_dax(sys_root, dev_root),
                 "rdma": discover_rdma(sys_root)},
    }


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _none_found(section: dict[str, Any]) -> str:
    return f"  none found (checked {', '.join(section['checked'])})"


def format_device_report(report: dict[str, Any]) -> str:
    """Human-readable tables of :func:`device_report`'s result."""
    lines = ["Emulated devices", format_table(report["emulated"], ["kind", "device", "summary"]),
             "", "Backends (block and CXL memory)"]
    rows = [{"scheme": b["scheme"], "available": "yes" if b["available"] else "no",
             "summary": b["summary"], "reason": b["reason"] or ""} for b in report["backends"]]
    lines += [format_table(rows, ["scheme", "available", "summary", "reason"]), ""]
    real = report["real"]
    nvme = real["nvme"]
    lines.append("NVMe on this machine")
    if not nvme["controllers"] and not nvme["namespaces"]:
        lines.append(_none_found(nvme))
    else:
        models = {c["name"]: c["model"] or "?" for c in nvme["controllers"]}
        rows = [{"namespace": ns["name"], "model": models.get(ns["controller"], "?"),
                 "size": _size(ns["size_bytes"]), "lba": ns["lba_bytes"] or "?",
                 "block device": ns["block_device"],
                 "passthrough": (f"{ns['generic_device']} ({ns['passthrough']})"
                                 if ns["generic_device"] else ns["passthrough"])}
                for ns in nvme["namespaces"]]
        if rows:
            lines.append(format_table(rows))
        else:
            lines.append(format_table([{"controller": c["name"], "model": c["model"] or "?",
                                        "namespaces": "none"} for c in nvme["controllers"]]))
    block = real["block"]
    lines += ["", "Other block devices on this machine"]
    if not block["devices"]:
        lines.append(_none_found(block))
    else:
        lines.append(format_table([{"name": d["name"], "model": d["model"] or "?",
                                    "size": _size(d["size_bytes"]), "lba": d["lba_bytes"] or "?",
                                    "rotational": "yes" if d["rotational"] else "no",
                                    "ro": "yes" if d["read_only"] else "no",
                                    "device string": d["device"] or "no /dev node"}
                                   for d in block["devices"]]))
    for title, key in (("devdax on this machine", "devdax"), ("RDMA on this machine", "rdma")):
        section = real[key]
        lines += ["", title]
        if not section["devices"]:
            lines.append(_none_found(section))
        elif key == "devdax":
            lines.append(format_table([{"name": d["name"], "size": _size(d["size_bytes"]),
                                        "align": d["align_bytes"] or "?",
                                        "device": d["device"] or "no /dev node"}
                                       for d in section["devices"]]))
        else:
            lines.append(format_table([{"name": d["name"], "device": d["device"],
                                        "ports": ", ".join(f"{p['port']}:{p['state'] or '?'}"
                                                           f"/{p['link_layer'] or '?'}"
                                                           for p in d["ports"]) or "none"}
                                       for d in section["devices"]]))
    return "\n".join(lines)
