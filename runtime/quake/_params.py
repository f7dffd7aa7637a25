"""Configuration and search parameters of the Quake index."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Final

from labrig.errors import ConfigError, UsageError
from labrig.runtime.quake._betainc import CAP_FORMS
from labrig.runtime.search_params import SearchParams

__all__ = ["QuakeConfig", "QuakeParams"]

DEFAULT_RECALL_TARGET: Final = 0.9      # §7: every experiment targets 90 % recall
UPPER_LEVEL_RECALL: Final = 0.99        # §5: fixed target for levels above 0
SINGLE_QUERY_PARALLEL: Final = ("auto", "always", "never")


@dataclass(frozen=True)
class QuakeParams(SearchParams):
    """Per-call search parameters: exactly one of ``nprobe`` or ``recall_target`` (or neither).

    ``nprobe`` scans that many nearest partitions; ``recall_target`` runs APS (§5).  Neither
    means the index's ``QuakeConfig.recall_target``.
    """

    nprobe: int | None = None
    recall_target: float | None = None

    def __post_init__(self) -> None:
        if self.nprobe is not None and self.recall_target is not None:
            raise UsageError("QuakeParams: give nprobe or recall_target, not both")
        if self.nprobe is not None and (not isinstance(self.nprobe, int) or self.nprobe < 1):
            raise ConfigError("QuakeParams", "nprobe", self.nprobe, "must be an int >= 1")
        if self.recall_target is not None and not 0.0 < self.recall_target <= 1.0:
            raise ConfigError("QuakeParams", "recall_target", self.recall_target,
                              "must be in (0, 1]")


@dataclass(frozen=True)
class QuakeConfig:
    """Index configuration; defaults from OSDI'25 §4-§7 and the public code's ``common.h``.

    Attributes
    ----------
    nlist : int or None
        Level-0 partitions at build; None → round(sqrt(n)) (the usual IVF rule).
    levels : int
        Partition levels built (§3): 1 is the single level the final paper evaluates (§7.2);
        each further level partitions the centroids below into round(sqrt(N)) partitions.
    kmeans_iters : int
        Lloyd rounds at build.
    window_size : int
        W, queries in the access-frequency window (code default 1000).
    alpha : float
        Traffic fraction a split child keeps (code default 0.9).
    tau_s : float
        τ in seconds: an action must lower the cost by more than this (final paper: 250 ns).
    min_partition_size : int
        Partitions at or below this size are never split (code default 32).
    refinement_radius : int
        Neighbouring partitions refined after a split, and merge receivers considered (r;
        the public code's default 25; the final paper evaluates r = 50).
    refinement_iters : int
        k-means rounds of local refinement (final paper: 1).
    maintenance_every : int
        Run maintenance after this many operations (queries + inserts + deletes); 0 = only
        when the user calls ``maintenance()``.
    recall_target : float
        Default APS recall target τ_R.
    upper_recall_target : float
        APS target at levels above 0 (§5: fixed at 0.99).
    candidate_fraction : float
        f_M, the fraction of centroids considered by APS (final paper: 1-10 %).
    min_candidates : int
        Lower bound on the APS candidate count (small indexes).
    cap_form : str
        Cap-volume formula of APS: "geometry" (textbook, default) or "public-code" (the
        public code's sqrt variant, which scans more).
    cap_dim : int or None
        Dimension fed to the cap model; None → the vector dimension d (the paper).
    calibrate_cap_dim : bool
        Fit the cap dimension at build time on a sample of the data (labrig extension,
        see ``_calibrate``); overrides ``cap_dim``.
    recompute_threshold : float
        τ_ρ: recompute probabilities when the k-th radius moved by more than this (1 %).
    n_workers : int
        Scan threads; partition p is scanned by worker ``p % n_workers`` (§6).
    single_query_parallel : str
        One query's APS on every worker at once (§6): ``"auto"`` measures both ways and uses
        the faster, ``"always"``, or ``"never"``.  Parallel scanning makes which partitions a
        query scans depend on thread timing (results can differ between runs at the margin);
        ``"never"`` keeps search, and so maintenance, deterministic for a given seed.
    seed : int
        Seeds k-means and the λ profile.
    """

    nlist: int | None = None
    levels: int = 1
    kmeans_iters: int = 10
    window_size: int = 1000
    alpha: float = 0.9
    tau_s: float = 250e-9
    min_partition_size: int = 32
    refinement_radius: int = 25
    refinement_iters: int = 1
    maintenance_every: int = 0
    recall_target: float = DEFAULT_RECALL_TARGET
    upper_recall_target: float = UPPER_LEVEL_RECALL
    candidate_fraction: float = 0.1
    min_candidates: int = 16
    cap_form: str = "geometry"
    cap_dim: int | None = None
    calibrate_cap_dim: bool = False
    recompute_threshold: float = 0.01
    n_workers: int = min(os.cpu_count() or 1, 4)
    single_query_parallel: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("levels", "kmeans_iters", "window_size", "min_partition_size",
                    "refinement_radius",
                    "refinement_iters", "min_candidates", "n_workers")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in positive and (not isinstance(v, int) or v < 1):
                raise ConfigError("QuakeConfig", f.name, v, "must be an int >= 1")
        if self.cap_dim is not None and (not isinstance(self.cap_dim, int) or self.cap_dim < 1):
            raise ConfigError("QuakeConfig", "cap_dim", self.cap_dim, "must be None or an int >= 1")
        if self.nlist is not None and self.nlist < 1:
            raise ConfigError("QuakeConfig", "nlist", self.nlist, "must be None or >= 1")
        if self.maintenance_every < 0:
            raise ConfigError("QuakeConfig", "maintenance_every", self.maintenance_every,
                              "must be >= 0 (0 = manual)")
        for name in ("alpha", "recall_target", "upper_recall_target", "candidate_fraction"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError("QuakeConfig", name, v, "must be in (0, 1]")
        if self.single_query_parallel not in SINGLE_QUERY_PARALLEL:
            raise ConfigError("QuakeConfig", "single_query_parallel", self.single_query_parallel,
                              f"must be one of {SINGLE_QUERY_PARALLEL}")
        if self.cap_form not in CAP_FORMS:
            raise ConfigError("QuakeConfig", "cap_form", self.cap_form,
                              f"must be one of {CAP_FORMS}")
        if self.tau_s < 0 or self.recompute_threshold < 0:
            raise ConfigError("QuakeConfig", "tau_s/recompute_threshold",
                              (self.tau_s, self.recompute_threshold), "must be >= 0")
