"""Config validation: every field checked where it enters, messages name value and range."""

from __future__ import annotations

import pytest

from labrig.errors import ConfigError
from labrig.hw.nvme import MICRON_9200, NamespaceConfig, NandTiming, NvmeConfig, PublishedDrive


def test_defaults_are_valid_and_reprs_eval() -> None:
    cfg = NvmeConfig()
    assert eval(repr(cfg)) == cfg
    assert cfg.namespaces[0].capacity_bytes == 1 << 40
    assert eval(repr(NandTiming())) == NandTiming()


def test_bad_values_raise_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"NvmeConfig.max_io_queues=0: must be in 1..65535"):
        NvmeConfig(max_io_queues=0)
    with pytest.raises(ConfigError, match="lba_bytes"):
        NamespaceConfig(lba_bytes=1000)
    with pytest.raises(ConfigError, match="capacity_bytes"):
        NamespaceConfig(capacity_bytes=4097)
    with pytest.raises(ConfigError, match="namespaces"):
        NvmeConfig(namespaces=())
    with pytest.raises(ConfigError, match="max_queue_entries"):
        NvmeConfig(max_queue_entries=1)
    with pytest.raises(ConfigError, match="read_ns"):
        NandTiming(read_ns=-1)


def test_published_drive_record() -> None:
    assert isinstance(MICRON_9200, PublishedDrive)
    assert MICRON_9200.qd1_read_latency_us == 92.0
    assert MICRON_9200.rand_read_iops == 840_000
    assert MICRON_9200.qd1_write_latency_us == 21.0
