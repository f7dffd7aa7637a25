"""The one QD-sweep implementation behind ``labrig bench nvme`` and ``nvme-fidelity``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.tools.bench.nvme import measure, parse_qd_list, seeded_uri
from labrig.tools.cli import compare

from _fakeblk import CHANNELS, READ_NS, WRITE_NS


@given(st.lists(st.integers(1, 65535), min_size=1, max_size=12))
def test_parse_qd_list_keeps_order_and_drops_duplicates(qds: list[int]) -> None:
    assert parse_qd_list(",".join(map(str, qds))) == tuple(dict.fromkeys(qds))


@pytest.mark.parametrize("text", ["", "1,,2", "x", "0", "65536", "-4", "1.5"])
def test_parse_qd_list_rejects_naming_the_value(text: str) -> None:
    with pytest.raises(UsageError, match="--qd"):
        parse_qd_list(text)


@pytest.mark.parametrize(("uri", "expected"), [
    ("emu:nvme", "emu:nvme?seed=7"),
    ("emu:nvme?capacity=1G", "emu:nvme?capacity=1G&seed=7"),
    ("emu:nvme?seed=3", "emu:nvme?seed=3"),
    ("file:/tmp/x", "file:/tmp/x"),
])
def test_seeded_uri(uri: str, expected: str) -> None:
    assert seeded_uri(uri, 7) == expected


@pytest.mark.parametrize(("headline", "ratio", "verdict"), [
    ({"measured": 100.0, "paper": "92", "better": "closer"}, 100 / 92, "ok (+9%)"),
    ({"measured": 46.0, "paper": "92 us", "better": "closer"}, 0.5, "off (-50%)"),
    ({"measured": 0.41, "paper": "0.35", "better": "lower"}, 0.41 / 0.35, "misses"),
    ({"measured": 2.0, "paper": "1.5x", "better": "higher"}, 2.0 / 1.5, "meets"),
    ({"measured": 9.0, "paper": "840,000 IOPS", "better": "higher"}, 9.0 / 840_000, "misses"),
    ({"measured": 0.9, "paper": "> 0.7", "better": "higher"}, 0.9 / 0.7, "meets"),
    ({"measured": 0.9, "paper": "< 0.5 (at 720x720)", "better": "lower"}, 0.9 / 0.5, "misses"),
    ({"measured": 0.094, "paper": "≤ 0.02 (target)", "better": "lower"}, 4.7, "misses"),
    ({"measured": 4.4, "paper": "4-8x", "better": "higher"}, None, "in range"),
    ({"measured": 0.07, "paper": "1.5–38 (lower latency)", "better": "higher"}, None,
     "below range"),
    ({"measured": 1.2, "paper": "2-3x (faster at scale)", "better": "higher"}, None,
     "below range"),
    ({"measured": 4.5, "paper": "(P-1)/2 = 15.5", "better": "higher"}, None, ""),
    ({"measured": 9.0, "paper": "", "better": "higher"}, None, ""),
])
def test_compare(headline: dict, ratio: float | None, verdict: str) -> None:
    got_ratio, got_verdict = compare(headline)
    assert got_verdict == verdict
    assert got_ratio == (None if ratio is None else pytest.approx(ratio))


def test_sweep_matches_known_device(fakeblk: str) -> None:
    m = measure(fakeblk, qds=(1, CHANNELS), ios=400, progress=False)
    reads, writes = m.of("randread"), m.of("randwrite")
    assert [p.qd for p in reads] == [1, CHANNELS]
    assert reads[0].mean_us == READ_NS / 1e3 == reads[0].p99_us
    assert reads[0].iops == pytest.approx(1e9 / READ_NS)
    assert writes[0].mean_us == WRITE_NS / 1e3
    # deeper queue: more IOPS (channels overlap), never less latency than one command
    assert reads[1].iops > reads[0].iops
    assert reads[1].p50_us >= READ_NS / 1e3
    assert m.emulator_cmds_per_wall_s > 0
    assert m.working_set_bytes == 32 << 20


def test_sweep_rejects_bad_arguments(fakeblk: str) -> None:
    with pytest.raises(UsageError, match="randscan"):
        measure(fakeblk, workloads=("randscan",), progress=False)
    with pytest.raises(UsageError, match="ios=0"):
        measure(fakeblk, ios=0, progress=False)


def test_emulated_sweep_is_deterministic() -> None:
    def virtual(seed: int) -> list[tuple]:
        m = measure("emu:nvme?capacity=64M", workloads=("randread",), qds=(1, 8), ios=100,
                    working_set_bytes=4 << 20, seed=seed, progress=False)
        return [(p.qd, p.iops, p.mean_us, p.p99_us) for p in m.points]

    first = virtual(0)
    assert first == virtual(0)
    assert all(iops > 0 and mean > 0 for _, iops, mean, _ in first)
