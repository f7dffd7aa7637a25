"""``labrig devices`` discovery on fake sysfs trees: found, absent, unreadable."""

from __future__ import annotations

from pathlib import Path

from labrig.tools.devices import (
    EMULATED_KINDS,
    device_report,
    discover_block,
    discover_dax,
    discover_nvme,
    discover_rdma,
    format_device_report,
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _fake_machine(root: Path) -> tuple[Path, Path]:
    sys_root, dev_root = root / "sys", root / "dev"
    ctrl = sys_root / "class" / "nvme" / "nvme0"
    _write(ctrl / "model", "Micron_9200_MTFDHAL3T2TCU")
    _write(ctrl / "serial", "S123")
    _write(ctrl / "firmware_rev", "1.0")
    _write(ctrl / "transport", "pcie")
    for name, sectors, lba in (("nvme0n1", 2048, 4096), ("nvme0n2", 4096, 512)):
        _write(sys_root / "block" / name / "size", str(sectors))
        _write(sys_root / "block" / name / "queue" / "logical_block_size", str(lba))
    _write(sys_root / "block" / "sda" / "size", "100")            # not NVMe: ignored
    _write(dev_root / "ng0n1", "")                                # only ns 1 has /dev/ng
    _write(sys_root / "bus" / "dax" / "devices" / "dax0.0" / "size", str(1 << 30))
    _write(sys_root / "bus" / "dax" / "devices" / "dax0.0" / "align", "2097152")
    _write(dev_root / "dax0.0", "")
    port = sys_root / "class" / "infiniband" / "rxe0" / "ports" / "1"
    _write(port / "state", "4: ACTIVE")
    _write(port / "link_layer", "Ethernet")
    return sys_root, dev_root


def test_nvme_found(tmp_path: Path) -> None:
    sys_root, dev_root = _fake_machine(tmp_path)
    nvme = discover_nvme(sys_root, dev_root)
    assert [c["model"] for c in nvme["controllers"]] == ["Micron_9200_MTFDHAL3T2TCU"]
    ns1, ns2 = nvme["namespaces"]
    assert (ns1["name"], ns1["controller"], ns1["nsid"]) == ("nvme0n1", "nvme0", 1)
    assert ns1["size_bytes"] == 2048 * 512
    assert ns1["lba_bytes"] == 4096
    assert ns1["generic_device"] == str(dev_root / "ng0n1")
    assert ns2["lba_bytes"] == 512
    assert ns2["generic_device"] is None
    assert "not a character device" in ns1["passthrough"]      # the fake node is a file
    assert "no /dev/ng node" in ns2["passthrough"]


def test_other_block_devices_found_and_virtual_ones_skipped(tmp_path: Path) -> None:
    sys_root, dev_root = _fake_machine(tmp_path)
    _write(sys_root / "block" / "sda" / "device" / "model", "QEMU HARDDISK")
    _write(sys_root / "block" / "sda" / "queue" / "rotational", "1")
    _write(sys_root / "block" / "loop0" / "size", "2048")
    _write(dev_root / "sda", "")
    (sda,) = discover_block(sys_root, dev_root)["devices"]
    assert sda == {"name": "sda", "model": "QEMU HARDDISK", "size_bytes": 100 * 512,
                   "lba_bytes": None, "rotational": True, "read_only": False,
                   "device": str(dev_root / "sda")}


def test_dax_and_rdma_found(tmp_path: Path) -> None:
    sys_root, dev_root = _fake_machine(tmp_path)
    (dax,) = discover_dax(sys_root, dev_root)["devices"]
    assert dax == {"name": "dax0.0", "size_bytes": 1 << 30, "align_bytes": 2097152,
                   "device": str(dev_root / "dax0.0")}
    (rdma,) = discover_rdma(sys_root)["devices"]
    assert rdma["device"] == "rdma:rxe0"
    assert rdma["ports"] == [{"port": "1", "state": "4: ACTIVE", "link_layer": "Ethernet"}]


def test_report_tables_name_what_was_found(tmp_path: Path) -> None:
    sys_root, dev_root = _fake_machine(tmp_path)
    text = format_device_report(device_report(sys_root, dev_root))
    for needle in ("nvme0n1", "Micron_9200", "dax0.0", "rdma:rxe0", "emu:nvme"):
        assert needle in text
    assert "none found" not in text


def test_absent_sysfs_reports_none_found_with_path(tmp_path: Path) -> None:
    report = device_report(tmp_path / "nosys", tmp_path / "nodev")
    assert report["real"]["nvme"]["namespaces"] == []
    text = format_device_report(report)
    assert text.count("none found") == 4
    assert str(tmp_path / "nosys" / "class" / "infiniband") in text
    assert [k["kind"] for k in report["emulated"]] == [k.kind for k in EMULATED_KINDS]


def test_unreadable_attributes_become_unknown(tmp_path: Path) -> None:
    sys_root, dev_root = _fake_machine(tmp_path)
    size = sys_root / "block" / "nvme0n1" / "size"
    size.unlink()
    size.mkdir()                                  # reading a directory raises OSError
    _write(sys_root / "block" / "nvme0n2" / "queue" / "logical_block_size", "garbage")
    ns1, ns2 = discover_nvme(sys_root, dev_root)["namespaces"]
    assert ns1["size_bytes"] is None
    assert ns2["lba_bytes"] is None
    assert "nvme0n1" in format_device_report(device_report(sys_root, dev_root))
