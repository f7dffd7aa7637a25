"""Result objects every experiment and bench returns, and their JSON form (DESIGN.md,
"Experiments and reports")::

    {"name": ..., "quick": true, "seed": 0, "devices": {...},
     "headline": [{"metric", "measured", "unit", "paper", "better", ...}], "rows": [...]}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExperimentResult", "Headline", "RunContext", "format_table", "jsonable"]


@dataclass
class Headline:
    """One of the paper's headline comparisons, as measured here.

    ``paper`` is the paper's (or datasheet's) figure as text, with its source in ``source``;
    ``better`` says which direction is good (``"lower"`` / ``"higher"``) for a reader.
    """

    metric: str
    measured: float
    unit: str
    paper: str
    better: str = "lower"
    source: str = ""
    note: str = ""


@dataclass
class ExperimentResult:
    """What an experiment or bench produced: headline comparisons, full rows, plot files."""

    name: str
    quick: bool
    seed: int
    devices: dict[str, str] = field(default_factory=dict)
    headline: list[Headline] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(indent=2) + "\n")
        return path


@dataclass
class RunContext:
    """What the CLI hands an experiment or bench.

    Attributes
    ----------
    quick : bool
        Run the ~1-minute version.
    seed : int
        Root seed for platforms and workloads.
    out_dir : Path
        Where JSON and PNG files go.
    data : Path or None
        ``--data`` folder or file for experiments that take a data set.
    devices : dict
        Role -> device string, e.g. ``{"ssd": "emu:nvme"}`` (``--device role=string``).
    progress : bool
        Whether to draw progress bars (off for ``--json`` to a pipe and in tests).
    options : dict
        Experiment-specific ``--set key=value`` options, as strings.
    """

    quick: bool = True
    seed: int = 0
    out_dir: Path = Path("labrig-results")
    data: Path | None = None
    devices: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    options: dict[str, str] = field(default_factory=dict)


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats into strict-JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a >= 1e5:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Plain-text table of dict rows (union of keys, in first-seen order)."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])
