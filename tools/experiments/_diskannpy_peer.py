"""diskannpy (DiskANN's own Python package) as a peer of the ``pipeann`` experiment.

diskannpy 0.7.0 pins ``numpy==1.25`` and does not run with numpy 2, so it never enters the
core's environment: on request (``--set peer=diskannpy``) the experiment creates a virtual
environment of its own (numpy 1.26.4, then diskannpy 0.7.0 without its pin, which works with
1.26), writes the data set in DiskANN's ``.bin`` formats, and runs a small script there in a
subprocess that builds a disk index with the same R/L, loads it with
``StaticDiskIndex(num_threads=2)`` (with one thread it hangs while loading) and times every
query at each L with beam width W, one query at a time, in wall time.  Only files and one JSON
line cross the boundary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import numpy as np

from labrig.errors import BackendUnavailable
from labrig.runtime.vecdata import write_bin

__all__ = ["INDEX_PREFIX", "PEER_NUMPY", "PEER_PACKAGE", "peer_python", "run_diskannpy"]

PEER_PACKAGE = "diskannpy==0.7.0"
PEER_NUMPY = "numpy==1.26.4"
#: StaticDiskIndex(num_threads=1) hangs while loading (issue 4); 2 is the smallest that works.
LOAD_THREADS = 2

#: diskannpy's default ``index_prefix``: files ``ann_disk.index``, ``ann_pq_pivots.bin`` ...
INDEX_PREFIX = "ann"

_MARK = "LABRIG_RESULT "
_SCRIPT = r"""
import json, sys, time
import numpy as np
import diskannpy as dap
cfg = json.loads(sys.argv[1])
t0 = time.perf_counter()
dap.build_disk_index(data=cfg["base"], distance_metric="l2", index_directory=cfg["dir"],
                     complexity=cfg["L_build"], graph_degree=cfg["R"],
                     search_memory_maximum=cfg["search_gb"], build_memory_maximum=cfg["build_gb"],
                     num_threads=cfg["threads"], vector_dtype=np.dtype(cfg["dtype"]).type)
build_s = time.perf_counter() - t0
ix = dap.StaticDiskIndex(cfg["dir"], num_threads=cfg["load_threads"], num_nodes_to_cache=0,
                         distance_metric="l2", vector_dtype=np.dtype(cfg["dtype"]).type)
q = np.fromfile(cfg["queries"], dtype=np.uint8)
nq, d = np.frombuffer(q[:8].tobytes(), dtype=np.int32)
q = q[8:].view(np.dtype(cfg["dtype"])).reshape(nq, d)
gt = np.load(cfg["gt"])
rows = []
for L in cfg["Ls"]:
    lat, found = [], []
    for i in range(len(q)):
        t = time.perf_counter_ns()
        r = ix.search(q[i], k_neighbors=10, complexity=L, beam_width=cfg["W"])
        lat.append(time.perf_counter_ns() - t)
        found.append(np.asarray(r.identifiers)[:10])
    hit = np.mean([len(set(f.tolist()) & set(g.tolist())) / 10 for f, g in zip(found, gt)])
    rows.append({"L": L, "recall": float(hit), "lat_ns": lat,
                 "ids": [f.astype(np.int64).tolist() for f in found]})
print("LABRIG_RESULT " + json.dumps({"build_s": build_s, "rows": rows}))
"""


def _env_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "labrig" / "diskannpy-venv"


def peer_python(create: bool) -> Path:
    """The peer environment's interpreter, created (needs network or a local index) if asked.

    Raises
    ------
    BackendUnavailable
        The environment does not exist and ``create`` is false, or creating it failed.
    """
    env = _env_dir()
    py = env / "bin" / "python"
    if py.exists() and _has_diskannpy(py):
        return py
    if not create:
        raise BackendUnavailable("diskannpy", f"no peer environment at {env}; run with "
                                 "--set peer=diskannpy to create it")
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    for args in ([PEER_NUMPY], ["--no-deps", PEER_PACKAGE]):
        out = subprocess.run([str(py), "-m", "pip", "install", "-q", *args],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise BackendUnavailable("diskannpy", f"pip install {' '.join(args)} failed: "
                                     f"{out.stderr.strip()[-300:]}")
    if not _has_diskannpy(py):
        raise BackendUnavailable("diskannpy", f"{PEER_PACKAGE} installed but does not import")
    return py


def _has_diskannpy(py: Path) -> bool:
    out = subprocess.run([str(py), "-c", "import diskannpy"], capture_output=True, check=False)
    return out.returncode == 0


def run_diskannpy(py: Path, workdir: Path, base: np.ndarray, queries: np.ndarray,
                  gt: np.ndarray, *, R: int, L_build: int, Ls: tuple[int, ...], W: int,
                  pq_bytes: int, threads: int = 2, timeout_s: float = 3600) -> dict[str, Any]:
    """Build and search with diskannpy in its own environment; rows of recall and latency."""
    workdir.mkdir(parents=True, exist_ok=True)
    suffix = {np.uint8: "u8bin", np.int8: "i8bin", np.float32: "fbin"}[base.dtype.type]
    bpath, qpath, gpath = (workdir / f"base.{suffix}", workdir / f"queries.{suffix}",
                           workdir / "gt.npy")
    write_bin(bpath, base)
    write_bin(qpath, queries)
    np.save(gpath, gt[:, :10])
    idx = workdir / "index"
    shutil.rmtree(idx, ignore_errors=True)      # DiskANN reuses stale PQ files otherwise
    idx.mkdir()
    # DiskANN sizes PQ from the search-memory budget: floor(budget / npts) bytes per vector;
    # give it exactly pq_bytes per vector (+ half a byte against rounding down).
    search_gb = (pq_bytes + 0.5) * len(base) / 2**30
    gb = base.nbytes / 2**30
    cfg = {"base": str(bpath), "queries": str(qpath), "gt": str(gpath), "dir": str(idx),
           "dtype": base.dtype.name, "R": R, "L_build": L_build, "Ls": list(Ls), "W": W,
           "threads": threads, "load_threads": max(LOAD_THREADS, threads),
           "search_gb": search_gb, "build_gb": max(1.0, gb * 4)}
    out = subprocess.run([str(py), "-c", _SCRIPT, json.dumps(cfg)], capture_output=True,
                         text=True, timeout=timeout_s, check=False)
    if out.returncode != 0:
        raise BackendUnavailable("diskannpy", f"peer run failed: {out.stderr.strip()[-400:]}")
    for line in reversed(out.stdout.splitlines()):       # diskannpy logs on stdout too
        if line.startswith(_MARK):
            res = json.loads(line[len(_MARK):])
            res["index_prefix"] = str(idx / INDEX_PREFIX)     # its DiskANN files, for reuse
            return res
    raise BackendUnavailable("diskannpy", f"peer printed no result: {out.stdout[-300:]}")


if __name__ == "__main__":            # pragma: no cover - manual: create the environment
    print(peer_python(create=True), file=sys.stderr)
