"""Cluster bootstrap: seeded and reproducible, intervals behave like intervals, paired differences find a
real difference that unpaired intervals miss, and resampling is by dialogue."""

import numpy as np
import pytest

from vmed.evaluation.metrics.bootstrap import (
    BootstrapConfig,
    bootstrap_ci,
    mean_aggregate,
    paired_bootstrap_diff,
    unpaired_bootstrap_diff,
)


def _mean_stats(values):
    v = np.asarray(values, dtype=float).reshape(-1, 1)
    return np.hstack([v, np.ones_like(v)])


def test_same_seed_same_interval_other_seed_other_interval():
    rng = np.random.default_rng(0)
    stats = _mean_stats(rng.integers(0, 2, 200))
    clusters = np.arange(200).astype(str)
    a = bootstrap_ci(stats, clusters, cfg=BootstrapConfig(seed=3))
    b = bootstrap_ci(stats, clusters, cfg=BootstrapConfig(seed=3))
    c = bootstrap_ci(stats, clusters, cfg=BootstrapConfig(seed=4))
    assert a == b
    assert a != c


def test_interval_contains_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 2, 50)
    big = np.tile(small, 16)
    lo_s, hi_s = bootstrap_ci(_mean_stats(small), np.arange(50).astype(str))
    lo_b, hi_b = bootstrap_ci(_mean_stats(big), np.arange(800).astype(str))
    assert lo_s <= small.mean() <= hi_s
    assert (hi_b - lo_b) < (hi_s - lo_s) / 2.5  # about 1/sqrt(16) as wide
    # binomial sd of the mean, times 2 x 1.96: the percentile interval is close to the normal one
    sd = np.sqrt(small.mean() * (1 - small.mean()) / 50)
    assert (hi_s - lo_s) == pytest.approx(2 * 1.96 * sd, rel=0.25)


def test_constant_values_give_a_zero_width_interval():
    assert bootstrap_ci(_mean_stats([1.0] * 30), np.arange(30).astype(str)) == (1.0, 1.0)


def test_empty_gives_none():
    assert bootstrap_ci(np.zeros((0, 2)), np.array([], dtype=str)) is None


def test_clusters_widen_the_interval_of_correlated_rows():
    # 20 dialogues x 10 identical turns: 20 independent units, not 200.
    rng = np.random.default_rng(2)
    per_dialogue = rng.integers(0, 2, 20)
    values = np.repeat(per_dialogue, 10)
    by_dialogue = np.repeat(np.arange(20), 10).astype(str)
    by_row = np.arange(200).astype(str)
    lo_c, hi_c = bootstrap_ci(_mean_stats(values), by_dialogue)
    lo_r, hi_r = bootstrap_ci(_mean_stats(values), by_row)
    assert (hi_c - lo_c) > 2 * (hi_r - lo_r)


def test_paired_difference_detects_what_unpaired_misses():
    # B is right on 8 more of 400 questions than A, question difficulty varies a lot.
    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.5).astype(float)
    b = a.copy()
    wrong_in_a = np.flatnonzero(a == 0)[:8]
    b[wrong_in_a] = 1.0
    clusters = np.arange(400).astype(str)
    paired = paired_bootstrap_diff(_mean_stats(a), _mean_stats(b), clusters)
    unpaired = unpaired_bootstrap_diff(_mean_stats(a), clusters, _mean_stats(b), clusters)
    assert paired.diff == pytest.approx(8 / 400)
    assert paired.paired and paired.excludes_zero
    assert not unpaired.paired and not unpaired.excludes_zero


def test_paired_identical_systems_interval_is_zero():
    stats = _mean_stats(np.random.default_rng(4).integers(0, 2, 100))
    d = paired_bootstrap_diff(stats, stats, np.arange(100).astype(str), mean_aggregate)
    assert d.diff == 0.0 and d.ci == (0.0, 0.0) and not d.excludes_zero
