"""PNG plots for experiments and benches (matplotlib from the ``plot`` extra).

Without matplotlib a plot is skipped with one message naming the extra; the JSON and the
table are still produced, so the core never depends on it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Series", "have_matplotlib", "line_plot"]

Series = tuple[Sequence[float], Sequence[float]]
_warned = False


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():  # type: ignore[no-untyped-def]
    global _warned
    try:
        import matplotlib
    except ImportError:
        if not _warned:
            print("labrig: matplotlib not installed, skipping PNG plots "
                  "(pip install 'labrig[plot]')", file=sys.stderr)
            _warned = True
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def line_plot(path: Path, series: dict[str, Series], *, title: str, xlabel: str, ylabel: str,
              logx: bool = False, logy: bool = False,
              hlines: dict[str, float] | None = None,
              points: dict[str, Series] | None = None) -> Path | None:
    """Draw one line per ``series`` entry (label -> (x, y)) into ``path``; returns the path,
    or ``None`` when matplotlib is missing.  ``hlines`` draws labelled reference levels (e.g. a
    paper's figure); ``points`` draws unconnected markers (e.g. a datasheet's points)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, (x, y) in series.items():
        ax.plot(list(x), list(y), marker="o", markersize=3, label=label)
    for label, (x, y) in (points or {}).items():
        ax.plot(list(x), list(y), linestyle="none", marker="x", markersize=7, label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="gray")
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8,
                    va="bottom", color="gray")
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
