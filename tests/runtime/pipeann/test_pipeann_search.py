"""PipeANN pipe search from an emulated SSD and a real file: recall, pipelining, width, stats."""

import numpy as np
import pytest

from labrig.drivers.block import open_block_device
from labrig.errors import ConfigError
from labrig.runtime.diskann import build_vamana
from labrig.runtime.diskann.beam_search import BeamSearchParams, beam_search
from labrig.runtime.diskann.disk_index import DiskIndex
from labrig.runtime.diskann.layout import open_disk_index, write_disk_index
from labrig.runtime.diskann.pq import train_pq
from labrig.runtime.pipeann import PipeSearchParams, build_entry_graph, pipe_search
from labrig.runtime.pipeann.pipe_search import INITIAL_WIDTH
from labrig.runtime.vecdata import brute_force_knn, clustered_vectors, recall_at_k

N, D, NQ, K = 10_000, 32, 40, 10


@pytest.fixture(scope="module")
def data():
    x, q = clustered_vectors(N, D, n_queries=NQ, seed=11)
    g = build_vamana(x, R=32, L=64)
    xf = x.astype(np.float32)
    pq = train_pq(xf, n_chunks=16, iters=8)
    _, gt = brute_force_knn(x, q, K)
    return x, q, g, pq, pq.encode(xf), gt, build_entry_graph(x)


def _index(dev, data, write=True, pq=None):
    x, _, g, pq0, codes, _, _ = data
    layout = write_disk_index(dev, x, g) if write else open_disk_index(dev, np.uint8)
    return DiskIndex(dev, layout, pq or pq0, codes)


def _pipe(ix, data, L=100, **kw):
    return pipe_search(ix, data[1], K, entry=data[6], params=PipeSearchParams(L=L, **kw))


def test_recall_at_L100_on_10k_is_at_least_095(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        res = _pipe(_index(dev, data), data)
    assert recall_at_k(res.ids, data[5], K) >= 0.95
    assert ((res.ids >= 0) & (res.ids < N)).all()
    assert (np.diff(res.dists, axis=1) >= 0).all()
    xf, qf = data[0].astype(np.float32), data[1].astype(np.float32)
    for i in range(NQ):
        np.testing.assert_allclose(res.dists[i], ((xf[res.ids[i]] - qf[i]) ** 2).sum(1),
                                   rtol=1e-5)
    ios, hops, wasted = (res.column(c) for c in ("ios", "hops", "wasted"))
    assert (res.column("latency_ns") > 0).all()
    # A wasted read landed for a node already out of the pool: it was never expanded.
    assert (wasted >= 0).all() and (wasted <= ios - hops).all()


def test_width_starts_at_4_grows_to_at_most_W_and_overlaps_reads(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        ix = _index(dev, data)
        pipe = _pipe(ix, data, L=60, W=16)
        beam = beam_search(ix, data[1], K, params=BeamSearchParams(L=60, W=8))
    widths = pipe.column("max_width")
    assert widths.min() >= INITIAL_WIDTH and widths.max() <= 16 and widths.max() > INITIAL_WIDTH
    # Overlapping compute with reads: lower latency than strict alternation at equal L.
    assert pipe.column("latency_ns").mean() < beam.column("latency_ns").mean()


def test_a_cap_below_the_initial_width_is_respected(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        res = _pipe(_index(dev, data), data, L=40, W=2)
    assert (res.column("max_width") == 2).all()
    assert recall_at_k(res.ids, data[5], K) >= 0.8


def test_static_width_uses_W_from_the_start(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        res = _pipe(_index(dev, data), data, L=40, W=6, dynamic_width=False)
    assert (res.column("max_width") == 6).all()


class _Spy:
    """Counts node reads submitted and records that count each time a query's PQ table is
    built (OVERLAP_INIT: PipeANN's first reads go out before the table)."""

    def __init__(self, ix):
        self.ix, self.pq, self.reads, self.reads_at_table = ix, ix.pq, 0, []
        self.read_node = ix.read_node
        ix.read_node = self._read_node
        ix.pq = self

    def __getattr__(self, name):
        return getattr(self.pq, name)

    def _read_node(self, *args, **kw):
        self.reads += 1
        return self.read_node(*args, **kw)

    def table(self, q):
        self.reads_at_table.append(self.reads)
        return self.pq.table(q)


def test_first_reads_go_out_before_the_pq_table_is_built(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        ix = _index(dev, data)
        spy = _Spy(ix)
        for i in range(3):
            spy.reads = 0
            pipe_search(ix, data[1][i:i + 1], K, entry=data[6], params=PipeSearchParams(L=40))
            spy.reads = 0
            beam_search(ix, data[1][i:i + 1], K, params=BeamSearchParams(L=40))
    # PipeANN issues its initial width of reads first; DiskANN builds the table, then reads.
    assert spy.reads_at_table == [INITIAL_WIDTH, 0] * 3


def test_static_W1_pipe_is_identical_on_emulated_ssd_and_real_file(data, tmp_path):
    """With one read in flight the order of work cannot depend on completion timing."""
    with open_block_device("emu:nvme?capacity=32M&lba=512") as dev:
        a = _pipe(_index(dev, data), data, L=40, W=1, dynamic_width=False)
    with open_block_device(f"file:{tmp_path / 'idx'}?size=32M") as dev:
        _index(dev, data)
    with open_block_device(f"file:{tmp_path / 'idx'}") as dev:      # reopened: read back
        b = _pipe(_index(dev, data, write=False), data, L=40, W=1, dynamic_width=False)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.dists, b.dists)
    np.testing.assert_array_equal(a.column("ios"), b.column("ios"))


def test_pipelined_results_agree_across_backends(data, tmp_path):
    """Dynamic width: arrival order may differ in wall time, the answers barely do."""
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        a = _pipe(_index(dev, data), data, L=40)
    with open_block_device(f"file:{tmp_path / 'idx'}?size=32M") as dev:
        b = _pipe(_index(dev, data), data, L=40)
    assert recall_at_k(b.ids, a.ids, K) >= 0.9


def test_without_entry_graph_starts_at_the_medoid(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        res = pipe_search(_index(dev, data), data[1][:5], K, params=PipeSearchParams(L=50))
    assert ((res.ids >= 0) & (res.ids < N)).all()
    assert recall_at_k(res.ids, data[5][:5], K) >= 0.8


def test_bad_search_parameters_are_named(data):
    with open_block_device("emu:nvme?capacity=32M&lba=4096") as dev:
        ix = _index(dev, data)
        with pytest.raises(ConfigError, match="L"):
            pipe_search(ix, data[1], K, params=PipeSearchParams(L=5))
        with pytest.raises(ConfigError, match="W"):
            pipe_search(ix, data[1], K, params=PipeSearchParams(W=0))
        with pytest.raises(ConfigError, match="mem_L"):
            pipe_search(ix, data[1], K, params=PipeSearchParams(mem_L=0))
        with pytest.raises(TypeError, match="PipeSearchParams"):
            pipe_search(ix, data[1], K, params=BeamSearchParams())
