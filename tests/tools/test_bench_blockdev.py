"""``labrig bench blockdev``: rows on emulated and file devices, fio comparison, bad options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labrig.tools.cli import main


def _run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("device", ["emu:nvme?capacity=64M", "file"])
def test_rows_for_every_workload_and_queue_depth(capsys, tmp_path: Path, device: str) -> None:
    if device == "file":
        device = f"file:{tmp_path / 'b.img'}?size=16M"
    rc, out, err = _run(capsys, "bench", "blockdev", device, "--quick", "--json", "--qd", "1,4",
                        "--set", "seconds=0.05", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    obj = json.loads(out)
    got = {(r["workload"], r["qd"]) for r in obj["rows"]}
    assert got == {(w, q) for w in ("randread-4k", "randwrite-4k", "seqread-128k",
                                    "seqwrite-128k") for q in (1, 4)}
    for r in obj["rows"]:
        assert r["errors"] == 0 and r["ios"] > 0 and r["iops"] > 0
        assert r["p50_us"] <= r["p99_us"] <= r["p999_us"]
    assert obj["headline"][0]["metric"] == "randread_4k_peak_iops"


def test_vs_fio_needs_a_file_device(capsys, tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "bench", "blockdev", "emu:nvme", "--vs-fio", "--quick",
                      "--out", str(tmp_path))
    assert rc == 2 and "needs a file" in err


def test_vs_fio_says_how_to_install_fio_when_missing(capsys, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    rc, _, err = _run(capsys, "bench", "blockdev", f"file:{tmp_path / 'x'}?size=4M",
                      "--vs-fio", "--quick", "--out", str(tmp_path))
    assert rc == 2 and "apt-get install fio" in err


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)")
def test_vs_fio_reports_ratios(capsys, tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "bench", "blockdev", f"file:{tmp_path / 'f.img'}?size=16M",
                        "--vs-fio", "--quick", "--json", "--qd", "32", "--set",
                        "workloads=randread-4k", "--set", "seconds=1", "--out", str(tmp_path))
    assert rc == 0, err
    row = json.loads(out)["rows"][0]
    assert row["fio_iops"] > 0 and row["ours_over_fio_iops"] > 0


@pytest.mark.parametrize("argv, words", [
    (["--set", "workloads=nope"], "known workloads"),
    (["--set", "seconds=abc"], "not a number"),
    (["--set", "seconds=0"], "must be in"),
])
def test_bad_options_exit_2(capsys, tmp_path: Path, argv, words) -> None:
    rc, _, err = _run(capsys, "bench", "blockdev", "emu:nvme", "--quick", *argv,
                      "--out", str(tmp_path))
    assert rc == 2 and words in err


def test_vs_fio_is_rejected_by_other_benches(capsys, tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "bench", "nvme", "--vs-fio", "--quick", "--out", str(tmp_path))
    assert rc == 2 and "--vs-fio" in err
