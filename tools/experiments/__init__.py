"""The experiment registry behind ``labrig reproduce``.

An experiment module defines ``run(ctx: RunContext) -> ExperimentResult`` and registers it
with :func:`experiment`; its module name goes into :data:`EXPERIMENT_MODULES` (imported lazily,
so one experiment's heavy imports never slow the others).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labrig.errors import UsageError
from labrig.tools.results import ExperimentResult, RunContext

__all__ = ["EXPERIMENT_MODULES", "Experiment", "check_options", "experiment", "get_experiment",
           "list_experiments"]

#: Modules that register experiments when imported, in the order ``--list`` shows them.
EXPERIMENT_MODULES = [
    "labrig.tools.experiments.nvme_fidelity",
    "labrig.tools.experiments.waferllm_gemm",
    "labrig.tools.experiments.cxl_fidelity",
    "labrig.tools.experiments.quake",
    "labrig.tools.experiments.pipeann",
    "labrig.tools.experiments.fuselink",
]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``name`` for the CLI, what it reproduces, and its runner."""

    name: str
    title: str
    paper: str
    run: Callable[[RunContext], ExperimentResult]
    roles: tuple[str, ...] = ()       # device roles it accepts via --device ROLE=STRING
    takes_data: bool = False          # accepts --data PATH


_REGISTRY: dict[str, Experiment] = {}


def experiment(name: str, *, title: str, paper: str, roles: tuple[str, ...] = (),
               takes_data: bool = False
               ) -> Callable[[Callable[[RunContext], ExperimentResult]],
                             Callable[[RunContext], ExperimentResult]]:
    """Decorator registering ``run(ctx) -> ExperimentResult`` under ``name``."""

    def deco(fn: Callable[[RunContext], ExperimentResult]
             ) -> Callable[[RunContext], ExperimentResult]:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ValueError(f"experiment {name!r} registered twice")
        _REGISTRY[name] = Experiment(name, title, paper, fn, roles, takes_data)
        return fn

    return deco


def check_options(ctx: RunContext, name: str, known: Sequence[str]) -> None:
    """UsageError naming the first ``--set`` key that experiment ``name`` does not take."""
    unknown = sorted(set(ctx.options) - set(known))
    if unknown:
        raise UsageError(f"--set {unknown[0]}: not an option of {name} "
                         f"(known: {', '.join(known)})")


def _load() -> None:
    for mod in EXPERIMENT_MODULES:
        importlib.import_module(mod)


def list_experiments() -> list[Experiment]:
    """Every registered experiment in :data:`EXPERIMENT_MODULES` order."""
    _load()
    order = {m.rsplit(".", 1)[-1].replace("_", "-"): i for i, m in enumerate(EXPERIMENT_MODULES)}
    return sorted(_REGISTRY.values(), key=lambda e: (order.get(e.name, 99), e.name))


def get_experiment(name: str) -> Experiment:
    """Look up by name; ``KeyError`` lists the known names."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no experiment {name!r} (known: {known})") from None
