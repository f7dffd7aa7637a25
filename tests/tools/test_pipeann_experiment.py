"""``labrig reproduce pipeann`` end to end at a tiny scale: schema, rows, options, data folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from labrig.runtime.vecdata import clustered_vectors, write_bin
from labrig.tools.cli import main

TINY = ["--set", "n=3000", "--set", "nq=20", "--set", "L=10,40"]


def _run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_quick_json_has_three_systems_and_the_headlines(capsys, tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "reproduce", "pipeann", "--quick", "--json", *TINY,
                        "--out", str(tmp_path))
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["devices"]["ssd"].startswith("emu:nvme")
    systems = {(r["system"], r["L"]) for r in obj["rows"]}
    assert systems == {(s, L) for s in ("in-memory", "diskann", "pipeann") for L in (10, 40)}
    for r in obj["rows"]:
        assert 0.0 <= r["recall@10"] <= 1.0 and r["mean_us"] > 0 and r["p99_us"] > 0
    metrics = {h["metric"] for h in obj["headline"]}
    assert "pipeann_over_diskann_latency" in metrics
    assert (tmp_path / "pipeann.json").is_file()


def test_runs_on_a_real_file_in_wall_time(capsys, tmp_path: Path) -> None:
    dev = f"file:{tmp_path / 'ssd.img'}?size=64M"
    rc, out, err = _run(capsys, "reproduce", "pipeann", "--quick", "--json", *TINY,
                        "--device", f"ssd={dev}", "--out", str(tmp_path))
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["devices"]["ssd"] == dev
    assert any("wall time" in n for n in obj["notes"])


def test_data_folder_in_the_shared_layout(capsys, tmp_path: Path) -> None:
    base, queries = clustered_vectors(2000, 24, n_queries=15, dtype=np.int8, seed=2)
    write_bin(tmp_path / "base.i8bin", base)
    write_bin(tmp_path / "queries.i8bin", queries)
    rc, out, err = _run(capsys, "reproduce", "pipeann", "--quick", "--json", "--data",
                        str(tmp_path), "--set", "L=10,20", "--out", str(tmp_path / "o"))
    assert rc == 0, err
    assert json.loads(out)["rows"]


@pytest.mark.parametrize("opt, words", [("L=5", "L must be"), ("L=a,b", "comma list"),
                                        ("bogus=1", "bogus"), ("n=10", "too small")])
def test_bad_options_exit_2_naming_them(capsys, tmp_path: Path, opt: str, words: str) -> None:
    rc, _, err = _run(capsys, "reproduce", "pipeann", "--quick", "--set", opt,
                      "--out", str(tmp_path))
    assert rc == 2
    assert words in err


def test_latency_at_the_recall_bar_is_interpolated_between_sweep_points() -> None:
    from labrig.tools.experiments.pipeann import _at_bar

    rows = [{"system": "s", "L": 10, "recall@10": 0.8, "mean_us": 100.0},
            {"system": "s", "L": 20, "recall@10": 0.95, "mean_us": 250.0},
            {"system": "t", "L": 10, "recall@10": 0.93, "mean_us": 40.0},
            {"system": "u", "L": 10, "recall@10": 0.5, "mean_us": 1.0}]
    lat, where = _at_bar(rows, "s", "mean_us")
    assert lat == pytest.approx(200.0) and "L=10 and L=20" in where
    lat, where = _at_bar(rows, "t", "mean_us")
    assert lat == 40.0 and "smallest L" in where
    assert _at_bar(rows, "u", "mean_us") is None


def test_notes_say_how_in_memory_latency_is_obtained(capsys, tmp_path: Path) -> None:
    rc, out, err = _run(capsys, "reproduce", "pipeann", "--quick", "--json", *TINY,
                        "--out", str(tmp_path))
    assert rc == 0, err
    notes = " ".join(json.loads(out)["notes"])
    assert "in-memory latency" in notes and "modelled" in notes


@pytest.mark.slow
def test_diskannpy_peer_answers_like_labrig_on_its_own_index(capsys, tmp_path: Path) -> None:
    """diskannpy builds and searches; labrig's beam search over diskannpy's own _disk.index
    and PQ files returns the same top-10 lists (same index, same algorithm)."""
    from labrig.errors import BackendUnavailable
    from labrig.tools.experiments._diskannpy_peer import peer_python

    try:
        peer_python(create=False)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    rc, out, err = _run(capsys, "reproduce", "pipeann", "--quick", "--json", "--set", "n=3000",
                        "--set", "nq=20", "--set", "L=20,40", "--set", "peer=diskannpy",
                        "--out", str(tmp_path))
    assert rc == 0, err
    rows = json.loads(out)["rows"]
    assert {r["L"] for r in rows if r["system"] == "diskannpy"} == {20, 40}
    same = [r["same_ids_as_diskannpy"] for r in rows if r["system"] == "diskann@diskannpy-index"]
    assert len(same) == 2 and min(same) >= 0.9
