"""DiskANN disk layout through BlockDevice: round trip, DiskANN bytes, bad and truncated indexes."""

from dataclasses import replace

import numpy as np
import pytest

from labrig.drivers.block import open_block_device
from labrig.runtime.diskann import build_vamana
from labrig.runtime.diskann.layout import (
    SECTOR_LEN,
    IndexFormatError,
    copy_disk_index,
    export_disk_index,
    import_disk_index,
    open_disk_index,
    write_disk_index,
)
from labrig.runtime.vecdata import clustered_vectors
from labrig.errors import UsageError


def _read_all(dev, layout):
    qp = dev.qpair()
    buf = dev.alloc_buffer(layout.node_blocks * dev.block_size)
    vecs, nbrs = [], []
    for i in range(layout.npts):
        req = qp.read(buf, layout.lba_of(i), layout.node_blocks)
        qp.wait(req)
        req.result()
        v, e = layout.parse_node(buf.view, i)
        vecs.append(v.copy())
        nbrs.append(e.copy())
    qp.close()
    buf.free()
    return np.array(vecs), nbrs


@pytest.fixture(scope="module")
def small():
    x, _ = clustered_vectors(300, 24, seed=4)
    return x, build_vamana(x, R=12, L=24)


@pytest.mark.parametrize("uri", ["emu:nvme?capacity=8M&lba=512", "emu:nvme?capacity=8M&lba=4096",
                                 "file"])
def test_round_trip_gives_back_graph_and_vectors(small, uri, tmp_path):
    x, g = small
    if uri == "file":
        uri = f"file:{tmp_path / 'idx'}?size=8M"
    with open_block_device(uri) as dev:
        written = write_disk_index(dev, x, g, start_lba=8)
        layout = open_disk_index(dev, np.uint8, start_lba=8)
        assert layout == written
        vecs, nbrs = _read_all(dev, layout)
    np.testing.assert_array_equal(vecs, x)
    for i in range(len(x)):
        np.testing.assert_array_equal(nbrs[i], g.edges(i))


def test_nodes_larger_than_a_sector_span_several(tmp_path):
    x, _ = clustered_vectors(40, 1100, dtype=np.float32, seed=0)
    g = build_vamana(x, R=8, L=16)
    with open_block_device("emu:nvme?capacity=4M&lba=512") as dev:
        layout = write_disk_index(dev, x, g)
        assert layout.nnodes_per_sector == 0 and layout.sectors_per_node == 2
        vecs, nbrs = _read_all(dev, open_disk_index(dev, np.float32))
    np.testing.assert_array_equal(vecs, x)
    assert all(np.array_equal(nbrs[i], g.edges(i)) for i in range(len(x)))


def _diskann_bytes(x, g):
    """The _disk.index bytes as DiskANN create_disk_layout writes them, built independently."""
    R, d = g.R, x.shape[1]
    node_len = (R + 1) * 4 + d
    per = SECTOR_LEN // node_len
    n_sectors = -(-len(x) // per)
    out = bytearray((1 + n_sectors) * SECTOR_LEN)
    meta = [len(x), d, g.medoid, node_len, per, 0, 0, 0, len(out)]
    out[0:8] = np.array([9, 1], "<u4").tobytes()
    out[8:8 + 72] = np.array(meta, "<u8").tobytes()
    for i in range(len(x)):
        off = (1 + i // per) * SECTOR_LEN + (i % per) * node_len
        e = g.edges(i)
        rec = x[i].tobytes() + np.array([len(e)], "<u4").tobytes() + e.astype("<u4").tobytes()
        out[off:off + len(rec)] = rec
    return bytes(out)


def test_a_file_device_holds_exactly_diskanns_index_file(small, tmp_path):
    x, g = small
    path = tmp_path / "sift_disk.index"
    with open_block_device(f"file:{path}?size=1M") as dev:
        layout = write_disk_index(dev, x, g)
    want = _diskann_bytes(x, g)
    assert layout.file_size == len(want)
    assert path.read_bytes()[:len(want)] == want


def _corrupt(dev, offset, value, dtype):
    qp = dev.qpair()
    buf = dev.alloc_buffer(SECTOR_LEN)
    bps = SECTOR_LEN // dev.block_size
    qp.wait(qp.read(buf, 0, bps))
    buf.view[offset:offset + np.dtype(dtype).itemsize] = np.array([value], dtype).view(np.uint8)
    qp.wait(qp.write(buf, 0, bps))
    qp.close()
    buf.free()


@pytest.mark.parametrize("offset, value, dtype, words", [
    (4, 7, "<u4", "not a DiskANN disk index"),
    (8, 0, "<u8", "npts=0"),
    (8 + 8 * 3, 99, "<u8", "max_node_len"),
    (8 + 8 * 4, 3, "<u8", "nnodes_per_sector"),
    (8 + 8 * 2, 10**6, "<u8", "medoid"),
    (8, 10**7, "<u8", "file_size field"),
    (8 + 8 * 8, 4096 * 3 + 1, "<u8", "file_size field"),
])
def test_corrupt_metadata_is_a_clear_error(small, offset, value, dtype, words):
    x, g = small
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as dev:
        write_disk_index(dev, x, g)
        _corrupt(dev, offset, value, dtype)
        with pytest.raises(IndexFormatError, match=words):
            open_disk_index(dev, np.uint8)


def test_wrong_dtype_and_too_small_device_are_named(small, tmp_path):
    x, g = small
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as dev:
        write_disk_index(dev, x, g)
        with pytest.raises(IndexFormatError, match="wrong dtype"):
            open_disk_index(dev, np.float32)
    with open_block_device("emu:nvme?capacity=16K&lba=4096") as dev:
        with pytest.raises(UsageError, match="needs"):
            write_disk_index(dev, x, g)


def test_truncated_index_file_is_a_clear_error(small, tmp_path):
    x, g = small
    path = tmp_path / "idx"
    with open_block_device(f"file:{path}?size=1M") as dev:
        layout = write_disk_index(dev, x, g)
    with open(path, "r+b") as f:
        f.truncate(layout.file_size - 2 * SECTOR_LEN)
    with open_block_device(f"file:{path}") as dev:
        with pytest.raises(IndexFormatError, match="truncated"):
            open_disk_index(dev, np.uint8)


def test_corrupt_neighbour_list_is_caught_when_parsed(small):
    x, g = small
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as dev:
        layout = write_disk_index(dev, x, g)
    buf = np.zeros(SECTOR_LEN, np.uint8)
    vlen = layout.ndims
    buf[vlen:vlen + 4] = np.array([layout.R + 1], "<u4").view(np.uint8)
    with pytest.raises(IndexFormatError, match="more than R"):
        layout.parse_node(buf, 0)


def test_export_writes_exactly_diskanns_file_and_import_reads_it_back(small, tmp_path):
    x, g = small
    path = tmp_path / "ann_disk.index"
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as dev:
        layout = write_disk_index(dev, x, g, start_lba=3)
        export_disk_index(dev, path, np.uint8, start_lba=3)
        with pytest.raises(UsageError, match="exists"):
            export_disk_index(dev, path, np.uint8, start_lba=3)
    assert path.read_bytes() == _diskann_bytes(x, g)
    with open_block_device("emu:nvme?capacity=8M&lba=512") as dev:
        back = import_disk_index(path, dev, np.uint8, start_lba=16)
        assert (back.npts, back.ndims, back.R, back.medoid) == (layout.npts, layout.ndims,
                                                                layout.R, layout.medoid)
        vecs, nbrs = _read_all(dev, back)
    np.testing.assert_array_equal(vecs, x)
    assert all(np.array_equal(nbrs[i], g.edges(i)) for i in range(len(x)))
    # The exported file is itself a file: device holding the index.
    with open_block_device(f"file:{path}?ro=1") as dev:
        assert open_disk_index(dev, np.uint8) == replace(back, start_lba=0, block_size=4096)


def test_reorder_metadata_fields_are_accepted_and_copied(small):
    """DiskANN with append_reorder_data writes more u64 fields; file_size is always last."""
    x, g = small
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as src, \
            open_block_device("emu:nvme?capacity=8M&lba=512") as dst:
        layout = write_disk_index(src, x, g)
        extra = layout.file_size + SECTOR_LEN          # one sector of "reorder data"
        _corrupt(src, 0, 12, "<u4")                    # nr: 9 -> 12 fields
        _corrupt(src, 8 + 8 * 11, extra, "<u8")        # file_size moves to field 12
        assert open_disk_index(src, np.uint8) == layout
        copied = copy_disk_index(src, dst, np.uint8)
        assert copied.npts == layout.npts and dst.num_blocks * 512 >= extra


def test_import_rejects_files_that_are_not_whole_sectors(tmp_path):
    bad = tmp_path / "bad_disk.index"
    bad.write_bytes(b"\0" * (SECTOR_LEN + 100))
    with open_block_device("emu:nvme?capacity=1M&lba=4096") as dev:
        with pytest.raises(IndexFormatError, match="bad_disk.index.*whole number"):
            import_disk_index(bad, dev, np.uint8)
        bad.write_bytes(b"\0" * SECTOR_LEN)
        with pytest.raises(IndexFormatError, match="not a DiskANN disk index"):
            import_disk_index(bad, dev, np.uint8)
        with pytest.raises(UsageError, match="no such"):
            import_disk_index(tmp_path / "missing", dev, np.uint8)


def test_destination_too_small_for_a_copy_is_named(small):
    x, g = small
    with open_block_device("emu:nvme?capacity=8M&lba=4096") as src, \
            open_block_device("emu:nvme?capacity=16K&lba=4096") as dst:
        write_disk_index(src, x, g)
        with pytest.raises(UsageError, match="needs"):
            copy_disk_index(src, dst, np.uint8)
