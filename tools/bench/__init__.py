"""The bench registry behind ``labrig bench KIND``: same shape as the experiment registry
(``run(ctx) -> ExperimentResult``), for device and emulator measurements rather than papers."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from labrig.tools.results import ExperimentResult, RunContext

__all__ = ["BENCH_MODULES", "Bench", "bench", "get_bench", "list_benches"]

#: Modules that register benches when imported.
BENCH_MODULES = [
    "labrig.tools.bench.nvme",
    "labrig.tools.bench.cxl",
    "labrig.tools.bench.fabric",
    "labrig.tools.bench.blockdev",
]


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    run: Callable[[RunContext], ExperimentResult]
    #: extra CLI options: name -> (help, default) ; values arrive in ctx.options as strings
    options: dict[str, tuple[str, str]] = field(default_factory=dict)


_REGISTRY: dict[str, Bench] = {}


def bench(name: str, *, title: str, options: dict[str, tuple[str, str]] | None = None
          ) -> Callable[[Callable[[RunContext], ExperimentResult]],
                        Callable[[RunContext], ExperimentResult]]:
    """Decorator registering ``run(ctx) -> ExperimentResult`` as ``labrig bench NAME``."""

    def deco(fn: Callable[[RunContext], ExperimentResult]
             ) -> Callable[[RunContext], ExperimentResult]:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ValueError(f"bench {name!r} registered twice")
        _REGISTRY[name] = Bench(name, title, fn, dict(options or {}))
        return fn

    return deco


def _load() -> None:
    for mod in BENCH_MODULES:
        importlib.import_module(mod)


def list_benches() -> list[Bench]:
    _load()
    return sorted(_REGISTRY.values(), key=lambda b: b.name)


def get_bench(name: str) -> Bench:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no bench {name!r} (known: {known})") from None
