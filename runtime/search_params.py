"""Per-index search parameters, after faiss ``SearchParameters`` (STYLE.md section 5).

Every ANN index takes ``search(queries, k, *, params=None)``; ``params`` is an instance of the
index's own frozen subclass of :class:`SearchParams`, and call-level values override the
index's defaults.  Passing another index's parameters is a ``TypeError`` naming both types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

__all__ = ["SearchParams", "check_params"]


@dataclass(frozen=True)
class SearchParams:
    """Base of every index's search parameters; ``as_row()`` feeds ``--json`` rows."""

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


P = TypeVar("P", bound=SearchParams)


def check_params(params: SearchParams | None, expected: type[P], default: P) -> P:
    """Return ``params`` (or ``default`` when ``None``) after checking its type.

    Raises
    ------
    TypeError
        ``params`` is not an ``expected`` instance, e.g. "QuakeIndex params have incorrect
        type: expected DiskAnnParams, got QuakeParams" style messages.
    """
    if params is None:
        return default
    if not isinstance(params, expected):
        raise TypeError(f"search params have incorrect type: expected {expected.__name__}, "
                        f"got {type(params).__name__}")
    return params
