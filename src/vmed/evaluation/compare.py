"""Compare two evaluations side by side: each metric for A and B, the difference B - A with a 95% bootstrap
interval, and whether that interval excludes 0.

The difference is *paired* when the two predictions files share questions (same ``id`` and ``turn``, same
answer type): both systems are scored on the shared rows and one bootstrap draw of dialogues is used for
both, which is far more sensitive than comparing two independent intervals. Without shared questions the
two files are resampled independently (unpaired).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmed.errors import UserInputError
from vmed.evaluation.metrics.bootstrap import Difference, paired_bootstrap_diff, unpaired_bootstrap_diff
from vmed.evaluation.pipeline import PREDICTIONS_FILE
from vmed.evaluation.predictions import read_predictions
from vmed.evaluation.report import format_metric, format_number
from vmed.evaluation.scoring import METRICS, RowStatistics, ScoreOptions, metric_aggregator, aggregate, row_statistics

__all__ = ["ComparisonRow", "compare_dirs", "compare_statistics", "format_comparison", "predictions_path"]


@dataclass
class ComparisonRow:
    """One metric of a comparison."""

    key: str
    a: dict | None
    b: dict | None
    difference: Difference | None
    n_shared: int


def predictions_path(p: str | os.PathLike) -> Path:
    path = Path(p)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    if not path.is_file():
        raise UserInputError(f"no predictions found at {path}: give an evaluation output folder or a predictions.jsonl")
    return path


def compare_statistics(ra: RowStatistics, rb: RowStatistics, options: ScoreOptions) -> list[ComparisonRow]:
    """Per metric: A and B over all their rows, and the (paired where possible) difference B - A."""
    cfg = options.bootstrap
    all_a, all_b = aggregate(ra, None, cfg), aggregate(rb, None, cfg)
    out = []
    for spec in METRICS:
        if spec.key not in ra.stats or spec.key not in rb.stats:
            if spec.key in all_a or spec.key in all_b:
                out.append(ComparisonRow(spec.key, all_a.get(spec.key), all_b.get(spec.key), None, 0))
            continue
        ia, va = ra.stats[spec.key]
        ib, vb = rb.stats[spec.key]
        pos_b = {(rb.rows[i].id, rb.rows[i].turn, rb.rows[i].answer_type): k for k, i in enumerate(ib)}
        pairs = [(k, pos_b[key]) for k, i in enumerate(ia)
                 if (key := (ra.rows[i].id, ra.rows[i].turn, ra.rows[i].answer_type)) in pos_b]  # fmt: skip
        agg = metric_aggregator(spec)
        if pairs:
            ka, kb = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            clusters = np.array([ra.rows[ia[k]].id for k in ka], dtype=str)
            diff = paired_bootstrap_diff(va[ka], vb[kb], clusters, agg, cfg)
        else:
            diff = unpaired_bootstrap_diff(va, ra.clusters[ia].astype(str), vb, rb.clusters[ib].astype(str), agg, cfg)
        out.append(ComparisonRow(spec.key, all_a.get(spec.key), all_b.get(spec.key), diff, len(pairs)))
    return out


def compare_dirs(dir_a: str | os.PathLike, dir_b: str | os.PathLike, options: ScoreOptions = ScoreOptions()) -> list[ComparisonRow]:
    """Score both predictions files (folders holding predictions.jsonl, or the files) and compare them."""
    ra = row_statistics(read_predictions(predictions_path(dir_a)), options)
    rb = row_statistics(read_predictions(predictions_path(dir_b)), options)
    return compare_statistics(ra, rb, options)


def format_comparison(rows: list[ComparisonRow], name_a: str, name_b: str) -> str:
    """A markdown table: metric | A | B | B - A [95% CI] | CI excludes 0 | pairing."""
    lines = [
        f"A = {name_a}",
        f"B = {name_b}",
        "A and B: all of each file's rows. B - A: on the rows both files answer when they share any (paired), else on all rows.",
        "",
        "| metric | A [95% CI] | B [95% CI] | B - A [95% CI] | CI excludes 0 | pairing |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.difference is None:
            diff, excl, pairing = "—", "—", "metric missing on one side"
        else:
            d = r.difference
            ci = f"[{format_number(d.ci[0], True)}, {format_number(d.ci[1], True)}]" if d.ci else "[—]"
            diff = f"{format_number(d.diff, True)} {ci}"
            excl = "**yes**" if d.excludes_zero else "no"
            pairing = f"paired on {r.n_shared} shared rows" if d.paired else f"unpaired ({d.n_a} vs {d.n_b} rows)"
        lines.append(f"| `{r.key}` | {format_metric(r.a)} | {format_metric(r.b)} | {diff} | {excl} | {pairing} |")
    return "\n".join(lines)
