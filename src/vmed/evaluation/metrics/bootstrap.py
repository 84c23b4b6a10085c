"""Seeded cluster bootstrap for metric confidence intervals and paired differences.

Every metric is written as per-row *sufficient statistics* (shape [N, k]) plus an aggregate function that
maps summed statistics (shape [B, k]) to values (shape [B]): a mean is ``(value, 1)`` rows aggregated as
``sum / count``; corpus BLEU is the sacrebleu counts summed and turned into a score. Resampling therefore
never recomputes a metric from text, which keeps 1,000 resamples well under a second.

The resampling unit is the *cluster* (vmed uses the dialogue id): turns of one image are correlated, so
resampling rows would give intervals that are too narrow. Intervals are percentile intervals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["BootstrapConfig", "Difference", "mean_aggregate", "bootstrap_ci", "paired_bootstrap_diff", "unpaired_bootstrap_diff"]

ZERO_TOLERANCE = 1e-12
"""Interval ends closer to 0 than this count as 0 (sums of means leave ~1e-17 residues)."""

Aggregate = Callable[[np.ndarray], np.ndarray]
"""Summed statistics [B, k] -> metric values [B]."""


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are made; written to metrics.json so that a number can be reproduced."""

    n_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "method": "percentile",
            "unit": "dialogue (record id): all rows of a resampled dialogue enter together",
        }


def mean_aggregate(sums: np.ndarray) -> np.ndarray:
    """Aggregate for ``(value, 1)`` statistics: the mean (NaN where a resample holds no row)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[:, 0] / sums[:, 1]


def _cluster_sums(stats: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster summed statistics [C, k] and the sorted cluster labels [C]."""
    labels, inverse = np.unique(clusters, return_inverse=True)
    sums = np.zeros((len(labels), stats.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, stats)
    return sums, labels


def _weights(n_clusters: int, cfg: BootstrapConfig, rng: np.random.Generator) -> np.ndarray:
    """Resampling multiplicities [B, C]: how often each cluster is drawn in each resample."""
    draws = rng.integers(0, n_clusters, size=(cfg.n_resamples, n_clusters))
    flat = (draws + np.arange(cfg.n_resamples)[:, None] * n_clusters).ravel()
    return np.bincount(flat, minlength=cfg.n_resamples * n_clusters).reshape(cfg.n_resamples, n_clusters).astype(np.float64)


@functools.lru_cache(maxsize=64)
def _seeded_weights(n_clusters: int, cfg: BootstrapConfig) -> np.ndarray:
    """The weights of a fresh generator seeded with ``cfg.seed`` (cached: many groups share a size)."""
    w = _weights(n_clusters, cfg, np.random.default_rng(cfg.seed))
    w.setflags(write=False)
    return w


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_ci(
    stats: np.ndarray, clusters: np.ndarray, aggregate: Aggregate = mean_aggregate, cfg: BootstrapConfig = BootstrapConfig()
) -> tuple[float, float] | None:
    """Percentile interval of ``aggregate`` under cluster resampling; None when there are no rows.

    Args:
        stats: [N, k] per-row statistics.
        clusters: [N] cluster label of each row (any hashable numpy dtype).
    """
    stats = np.asarray(stats, dtype=np.float64)
    if stats.shape[0] == 0:
        return None
    sums, _ = _cluster_sums(stats, np.asarray(clusters))
    w = _seeded_weights(sums.shape[0], cfg)
    return _interval(aggregate(w @ sums), cfg.confidence)


@dataclass
class Difference:
    """B minus A, its interval, and whether the interval excludes 0."""

    diff: float
    ci: tuple[float, float] | None
    paired: bool
    n_a: int
    n_b: int

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (beyond float rounding, 1e-12)."""
        return self.ci is not None and (self.ci[0] > ZERO_TOLERANCE or self.ci[1] < -ZERO_TOLERANCE)


def paired_bootstrap_diff(
    stats_a: np.ndarray,
    stats_b: np.ndarray,
    clusters: np.ndarray,
    aggregate: Aggregate = mean_aggregate,
    cfg: BootstrapConfig = BootstrapConfig(),
) -> Difference:
    """Paired difference ``aggregate(B) - aggregate(A)`` on the same rows (row i of A and B is the same
    question), resampling the shared clusters with the same draws for both systems."""
    stats_a, stats_b = np.asarray(stats_a, dtype=np.float64), np.asarray(stats_b, dtype=np.float64)
    clusters = np.asarray(clusters)
    n = stats_a.shape[0]
    if n == 0:
        return Difference(float("nan"), None, True, 0, 0)
    sums_a, _ = _cluster_sums(stats_a, clusters)
    sums_b, _ = _cluster_sums(stats_b, clusters)
    point = float(aggregate(stats_b.sum(0, keepdims=True))[0] - aggregate(stats_a.sum(0, keepdims=True))[0])
    w = _seeded_weights(sums_a.shape[0], cfg)
    diffs = aggregate(w @ sums_b) - aggregate(w @ sums_a)
    return Difference(point, _interval(diffs, cfg.confidence), True, n, n)


def unpaired_bootstrap_diff(
    stats_a: np.ndarray,
    clusters_a: np.ndarray,
    stats_b: np.ndarray,
    clusters_b: np.ndarray,
    aggregate: Aggregate = mean_aggregate,
    cfg: BootstrapConfig = BootstrapConfig(),
) -> Difference:
    """Difference ``aggregate(B) - aggregate(A)`` for two independent samples (no shared questions)."""
    stats_a, stats_b = np.asarray(stats_a, dtype=np.float64), np.asarray(stats_b, dtype=np.float64)
    if stats_a.shape[0] == 0 or stats_b.shape[0] == 0:
        return Difference(float("nan"), None, False, stats_a.shape[0], stats_b.shape[0])
    rng = np.random.default_rng(cfg.seed)
    sums_a, _ = _cluster_sums(stats_a, np.asarray(clusters_a))
    sums_b, _ = _cluster_sums(stats_b, np.asarray(clusters_b))
    point = float(aggregate(stats_b.sum(0, keepdims=True))[0] - aggregate(stats_a.sum(0, keepdims=True))[0])
    diffs = aggregate(_weights(sums_b.shape[0], cfg, rng) @ sums_b) - aggregate(_weights(sums_a.shape[0], cfg, rng) @ sums_a)
    return Difference(point, _interval(diffs, cfg.confidence), False, stats_a.shape[0], stats_b.shape[0])
