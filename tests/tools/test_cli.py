"""``labrig`` command line, called in-process: output contract, files, exit codes."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labrig import __version__
from labrig.tools import experiments as registry
from labrig.tools.cli import main
from labrig.tools.plot import have_matplotlib

HEADLINE_KEYS = {"metric", "measured", "unit", "paper", "better"}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _check_schema(obj: dict, name: str) -> None:
    assert obj["name"] == name
    assert obj["quick"] is True
    assert isinstance(obj["seed"], int)
    assert isinstance(obj["devices"], dict)
    assert obj["headline"], "an experiment reports at least one headline"
    for h in obj["headline"]:
        assert HEADLINE_KEYS <= set(h)
        assert isinstance(h["measured"], (int, float))
        assert isinstance(h["paper"], str)
    assert obj["rows"] and all(isinstance(r, dict) for r in obj["rows"])


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "--version")
    assert rc == 0
    assert out.strip() == f"labrig {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys)
    assert rc == 2
    assert out == ""
    assert "reproduce" in err


def test_reproduce_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "reproduce", "--list")
    assert rc == 0
    assert "nvme-fidelity" in out
    rc, out, _ = _run(capsys, "reproduce", "--list", "--json")
    assert rc == 0
    names = [e["name"] for e in json.loads(out)["experiments"]]
    assert "nvme-fidelity" in names


def test_bench_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "bench", "--list")
    assert rc == 0
    assert "nvme" in out


def test_devices_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, "devices")
    assert rc == 0
    assert "emu:nvme" in out
    assert "Backends (block and CXL memory)" in out
    assert "Traceback" not in err


def test_devices_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "devices", "--json")
    assert rc == 0
    report = json.loads(out)
    assert any(k["device"] == "emu:nvme" for k in report["emulated"])
    emu = [b for b in report["backends"] if b["scheme"] == "emu"]
    assert emu and emu[0]["available"] is True and emu[0]["reason"] is None
    assert set(report["real"]) == {"nvme", "block", "devdax", "rdma"}
    for section in report["real"].values():
        assert section["checked"]


def test_reproduce_nvme_fidelity_json(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "reproduce", "nvme-fidelity", "--quick", "--json",
                        "--set", "qd=1,8", "--set", "ios=200", "--out", str(tmp_path))
    assert rc == 0, err
    obj = json.loads(out)                    # stdout holds exactly one JSON object
    _check_schema(obj, "nvme-fidelity")
    assert obj["devices"] == {"ssd": "emu:nvme?seed=0"}
    assert {h["metric"] for h in obj["headline"]} == {"qd1_read_latency_us", "peak_read_iops"}
    assert [r["qd"] for r in obj["rows"]] == [1, 8]
    assert "peak_read_iops" in err           # the human table went to stderr
    saved = json.loads((tmp_path / "nvme-fidelity.json").read_text())
    assert saved["headline"] == obj["headline"]
    if have_matplotlib():
        assert len(obj["plots"]) == 2
        assert all(Path(p).is_file() and p.endswith(".png") for p in obj["plots"])


def test_reproduce_table_goes_to_stdout(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        fakeblk: str) -> None:
    rc, out, _ = _run(capsys, "reproduce", "nvme-fidelity", "--quick", "--device",
                      f"ssd={fakeblk}", "--set", "qd=1,2", "--set", "ios=50",
                      "--out", str(tmp_path))
    assert rc == 0
    assert "qd1_read_latency_us" in out
    assert (tmp_path / "nvme-fidelity.json").is_file()


def test_bench_nvme_quick_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "bench", "nvme", "--quick", "--qd", "1,4", "--json",
                        "--set", "ios=100", "--out", str(tmp_path))
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["name"] == "nvme"
    assert [(r["workload"], r["qd"]) for r in obj["rows"]] == [
        ("randread", 1), ("randread", 4), ("randwrite", 1), ("randwrite", 4)]
    for r in obj["rows"]:
        assert r["ios"] == 100
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert r["iops"] > 0
    metrics = {h["metric"] for h in obj["headline"]}
    assert {"qd1_read_latency_us", "peak_read_iops", "qd1_write_latency_us",
            "cmds_per_wall_s_qd32"} <= metrics
    assert (tmp_path / "bench-nvme.json").is_file()


@pytest.mark.parametrize(("argv", "needle"), [
    (["reproduce", "no-such-experiment"], "no-such-experiment"),
    (["reproduce", "nvme-fidelity", "--device", "ssd"], "'ssd'"),
    (["reproduce", "nvme-fidelity", "--device", "ssd=nocolon"], "nocolon"),
    (["reproduce", "nvme-fidelity", "--device", "gpu=emu:nvme"], "gpu"),
    (["reproduce", "nvme-fidelity", "--set", "bogus=1"], "bogus"),
    (["reproduce", "nvme-fidelity", "--set", "novalue"], "novalue"),
    (["reproduce", "nvme-fidelity", "--data", "/no/such/labrig/data"], "/no/such/labrig/data"),
    (["reproduce", "--seed", "-1"], "-1"),
    (["bench", "no-such-bench"], "no-such-bench"),
    (["bench"], "KIND"),
    (["bench", "nvme", "--qd", "1,x"], "'x'"),
    (["bench", "nvme", "--qd", "0"], "'0'"),
    (["bench", "nvme", "--device", "emu:floppy"], "floppy"),
    (["bench", "nvme", "--device", "nosuch:dev"], "nosuch"),
    (["bench", "nvme", "--set", "frobnicate=3"], "frobnicate"),
    (["frobnicate"], "frobnicate"),
])
def test_user_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          argv: list[str], needle: str) -> None:
    rc, out, err = _run(capsys, *argv, *(["--out", str(tmp_path)] if len(argv) > 1 else []))
    assert rc == 2
    assert out == ""
    assert err.startswith("labrig: error: ")
    assert err.count("\n") == 1
    assert needle in err
    assert "Traceback" not in err


BROKEN_MODULE = "labrig_cli_test_broken_experiment"
RAISING_MODULE = "labrig_cli_test_raising_experiment"
NVME_MODULE = "labrig.tools.experiments.nvme_fidelity"


@pytest.fixture
def extra_experiments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """One experiment module that fails to import and one whose run raises."""
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{BROKEN_MODULE}.py").write_text("raise ImportError('missing optional thing')\n")
    (src / f"{RAISING_MODULE}.py").write_text(
        "from labrig.tools.experiments import experiment\n"
        "@experiment('raising', title='always fails', paper='none')\n"
        "def run(ctx):\n"
        "    raise RuntimeError('deliberate failure')\n")
    monkeypatch.syspath_prepend(str(src))
    importlib.import_module(NVME_MODULE)
    monkeypatch.setattr(registry, "_REGISTRY", {"nvme-fidelity":
                                                registry._REGISTRY["nvme-fidelity"]})
    monkeypatch.setattr(registry, "EXPERIMENT_MODULES", [
        NVME_MODULE, BROKEN_MODULE, RAISING_MODULE])
    yield
    sys.modules.pop(RAISING_MODULE, None)


@pytest.mark.usefixtures("extra_experiments")
def test_run_all_survives_failing_experiments(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path, fakeblk: str) -> None:
    rc, out, err = _run(capsys, "reproduce", "--quick", "--json", "--device", f"ssd={fakeblk}",
                        "--set", "qd=1", "--set", "ios=20", "--out", str(tmp_path / "out"))
    assert rc == 1
    results = {e["name"]: e for e in json.loads(out)["experiments"]}
    assert set(results) == {"nvme-fidelity", "raising",
                            BROKEN_MODULE.replace("_", "-")}
    _check_schema(results["nvme-fidelity"], "nvme-fidelity")
    assert "deliberate failure" in results["raising"]["error"]
    assert "missing optional thing" in results[BROKEN_MODULE.replace("_", "-")]["error"]
    assert "Summary" in err and "FAILED" in err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "nvme-fidelity.json").is_file()


@pytest.mark.usefixtures("extra_experiments")
def test_single_failing_experiment_exits_1(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "reproduce", "raising", "--out", str(tmp_path))
    assert rc == 1
    assert out == ""
    assert "deliberate failure" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_reproduce_nvme_fidelity_quick_default(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "reproduce", "nvme-fidelity", "--quick", "--json",
                        "--out", str(tmp_path))
    assert rc == 0, err
    obj = json.loads(out)
    _check_schema(obj, "nvme-fidelity")
    assert [r["qd"] for r in obj["rows"]] == [1, 2, 4, 8, 16, 32, 64, 128]
