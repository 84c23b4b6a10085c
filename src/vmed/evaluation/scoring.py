"""Score a predictions file: every metric overall, per answer type, per question type and per turn index,
each with a seeded 95% cluster-bootstrap interval.

:data:`METRICS` is the registry (:mod:`vmed.evaluation.registry`: key, rows it applies to, text rule, how it is computed and
aggregated). :func:`row_statistics` turns rows into per-row sufficient statistics once; :func:`aggregate`
turns any subset of rows into values and intervals; :func:`score_rows` builds the whole metrics document
that ``vmed eval score`` writes as metrics.json.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vmed.evaluation.metrics import captions, coco
from vmed.evaluation.metrics.bootstrap import BootstrapConfig, bootstrap_ci, mean_aggregate, paired_bootstrap_diff
from vmed.evaluation.predictions import PredictionRow
from vmed.evaluation.registry import METRICS, RULE_SET_TABLE, RULE_SETS, SPECS, TEXT_RULES, Aggregation, Inputs, MetricSpec

__all__ = [
    "MetricSpec",
    "METRICS",
    "ScoreOptions",
    "RowStatistics",
    "row_statistics",
    "aggregate",
    "score_rows",
    "dialogue_scores",
    "row_primary_score",
    "context_effect",
    "metric_aggregator",
    "metric_point",
]


@dataclass
class ScoreOptions:
    """What to compute beyond the always-on metrics, and how to bootstrap."""

    meteor: bool = True
    """Run METEOR (starts a Java process, several seconds); skipped with a note when Java is missing."""
    bertscore_model: str | None = None
    """A local encoder directory for summary_bertscore_f1; None skips it."""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)


@dataclass
class RowStatistics:
    """Per-row sufficient statistics of every computed metric.

    ``stats[key]`` is ``(row_indices [n], values [n, k])``; ``clusters[i]`` is row i's dialogue id.
    ``corpus_values`` holds metrics with no per-row decomposition; ``notes`` says what was skipped and why.
    """

    rows: list[PredictionRow]
    clusters: np.ndarray
    stats: dict[str, tuple[np.ndarray, np.ndarray]]
    corpus_values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row_values(self, i: int) -> dict[str, float]:
        """Row i's value of every mean metric that applies to it (for row_scores.jsonl)."""
        out = {}
        for key, (idx, vals) in self.stats.items():
            if SPECS[key].aggregation is Aggregation.MEAN:
                pos = np.searchsorted(idx, i)
                if pos < len(idx) and idx[pos] == i:
                    out[key] = float(vals[pos, 0])
        return out


def row_statistics(rows: Sequence[PredictionRow], options: ScoreOptions = ScoreOptions()) -> RowStatistics:
    """Compute every metric's per-row statistics once (text processing happens only here)."""
    bert = captions.bertscore_setup(options.bertscore_model) if options.bertscore_model else None
    inp = Inputs(rows, options.meteor, bert)
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    corpus_values: dict[str, float] = {}
    for spec in METRICS:
        idx = inp.by_type[spec.applies_to]
        if len(idx) == 0:
            continue
        out = spec.compute(inp, idx)
        if out is None:
            continue
        if spec.aggregation is Aggregation.CORPUS:
            corpus_values[spec.key] = float(out)
        elif spec.aggregation is Aggregation.MEAN:
            v = np.asarray(out, dtype=np.float64).reshape(-1, 1)
            stats[spec.key] = (idx, np.hstack([v, np.ones_like(v)]))
        else:
            stats[spec.key] = (idx, np.asarray(out, dtype=np.float64))
    return RowStatistics(inp.rows, np.array([r.id for r in inp.rows], dtype=object), stats, corpus_values, inp.notes)


def metric_aggregator(spec: MetricSpec) -> Callable[[np.ndarray], np.ndarray]:
    """Summed statistics [B, k] -> values [B] for ``spec`` (the bootstrap's aggregate)."""
    if spec.aggregation is Aggregation.SACREBLEU:
        return lambda sums: captions.bleu_from_stats_batch(sums, spec.n)
    if spec.aggregation is Aggregation.COCO_BLEU:
        return lambda sums: coco.coco_bleu_from_stats_batch(sums, spec.n)
    return mean_aggregate


def metric_point(spec: MetricSpec, values: np.ndarray) -> float:
    """The value of ``spec`` over rows with statistics ``values`` [n, k]."""
    if spec.aggregation is Aggregation.SACREBLEU:
        return captions.bleu_from_stats(values.sum(0), spec.n)
    return float(metric_aggregator(spec)(values.sum(0, keepdims=True))[0])


def aggregate(rs: RowStatistics, mask: np.ndarray | None, cfg: BootstrapConfig, *, with_ci: bool = True) -> dict[str, dict]:
    """Every metric over the rows where ``mask`` is True (all rows if None): value, 95% interval, n rows."""
    out: dict[str, dict] = {}
    for spec in METRICS:
        if spec.key in rs.corpus_values and mask is None:
            n_rows = sum(r.answer_type in spec.applies_to for r in rs.rows)
            out[spec.key] = {"value": rs.corpus_values[spec.key], "ci95": None, "n": n_rows,
                             "ci_note": "corpus-only score: no interval"}  # fmt: skip
            continue
        if spec.key not in rs.stats:
            continue
        idx, vals = rs.stats[spec.key]
        if mask is not None:
            keep = mask[idx]
            idx, vals = idx[keep], vals[keep]
        if len(idx) == 0:
            continue
        ci = bootstrap_ci(vals, rs.clusters[idx].astype(str), metric_aggregator(spec), cfg) if with_ci else None
        out[spec.key] = {"value": metric_point(spec, vals), "ci95": None if ci is None else list(ci), "n": int(len(idx))}
    return out


def row_primary_score(row: PredictionRow, values: dict[str, float]) -> float | None:
    """The one number used to rank rows and dialogues: closed_accuracy_strict, open_token_f1 or the
    summary's ROUGE-L F1."""
    key = {"closed": "closed_accuracy_strict", "open": "open_token_f1", "summary": "summary_rouge_l_f1_sentence_mean"}
    return values.get(key[row.answer_type])


def dialogue_scores(rs: RowStatistics) -> list[dict]:
    """Per dialogue: mean primary score of its rows, worst first (ties by id), with the rows' values."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rs.rows):
        groups.setdefault(r.id, []).append(i)
    out = []
    for did, idxs in groups.items():
        scores = [row_primary_score(rs.rows[i], rs.row_values(i)) for i in idxs]
        scores = [s for s in scores if s is not None]
        out.append({"id": did, "score": float(np.mean(scores)) if scores else float("nan"), "rows": idxs})
    out.sort(key=lambda d: (math.inf if math.isnan(d["score"]) else d["score"], d["id"]))
    return out


CONTEXT_KEYS = ("closed_accuracy_strict", "closed_accuracy_llava_med", "open_recall_llava_med", "open_token_f1")


def context_effect(rs: RowStatistics, cfg: BootstrapConfig) -> dict[str, dict]:
    """Later turns (index >= 1) minus turn 0, per metric, as a paired difference over dialogues: both
    sides are computed on the same bootstrap draw of dialogues."""
    out: dict[str, dict] = {}
    for key in CONTEXT_KEYS:
        if key not in rs.stats:
            continue
        idx, vals = rs.stats[key]
        turns = np.array([rs.rows[i].turn for i in idx])
        first, later = (turns == 0)[:, None], (turns > 0)[:, None]
        if not first.any() or not later.any():
            continue
        d = paired_bootstrap_diff(vals * first, vals * later, rs.clusters[idx].astype(str), mean_aggregate, cfg)
        out[key] = {
            "diff": d.diff,
            "ci95": None if d.ci is None else list(d.ci),
            "excludes_zero": d.excludes_zero,
            "n_turn0": int(first.sum()),
            "n_later": int(later.sum()),
        }
    return out


def _group_masks(rows: Sequence[PredictionRow]) -> dict[str, dict[str, np.ndarray]]:
    """Boolean row masks per answer type, per question type and per turn index (question rows only)."""
    out: dict[str, dict[str, np.ndarray]] = {"by_answer_type": {}, "by_question_type": {}, "by_turn": {}}
    for at in ("closed", "open", "summary"):
        m = np.array([r.answer_type == at for r in rows], dtype=bool)
        if m.any():
            out["by_answer_type"][at] = m
    for qt in sorted({r.question_type or "(none)" for r in rows}):
        out["by_question_type"][qt] = np.array([(r.question_type or "(none)") == qt for r in rows], dtype=bool)
    for t in sorted({r.turn for r in rows if r.answer_type != "summary"}):
        out["by_turn"][str(t)] = np.array([r.turn == t and r.answer_type != "summary" for r in rows], dtype=bool)
    return out


def score_rows(rows: Sequence[PredictionRow], options: ScoreOptions = ScoreOptions()) -> tuple[dict, RowStatistics]:
    """The metrics document (metrics.json content, without file provenance) and the row statistics."""
    rs = row_statistics(rows, options)
    cfg = options.bootstrap
    doc: dict = {
        "counts": {
            "rows": len(rs.rows),
            "dialogues": len({r.id for r in rs.rows}),
            "by_answer_type": {at: sum(r.answer_type == at for r in rs.rows) for at in ("closed", "open", "summary")},
        },
        "bootstrap": cfg.to_dict(),
        "options": {
            "meteor": options.meteor,
            "bertscore_model": os.fspath(options.bertscore_model) if options.bertscore_model else None,
            "bertscore": captions.bertscore_setup(options.bertscore_model).describe() if options.bertscore_model else None,
        },
        "notes": rs.notes,
        "definitions": {m.key: m.description for m in METRICS},
        "text_rules": {m.key: m.text_rule for m in METRICS},
        "text_rule_definitions": TEXT_RULES,
        "rule_sets": {"columns": list(RULE_SETS), "rows": [{"quantity": q, "keys": keys} for q, keys in RULE_SET_TABLE]},
        "headline": [m.key for m in METRICS if m.headline],
        "metrics": aggregate(rs, None, cfg),
    }
    for group_name, masks in _group_masks(rs.rows).items():
        doc[group_name] = {name: aggregate(rs, m, cfg) for name, m in masks.items()}
    doc["context_effect"] = context_effect(rs, cfg)
    worst = dialogue_scores(rs)[:5]
    doc["worst_dialogues"] = [
        {"id": d["id"], "score": d["score"], "rows": [dict(rs.rows[i].to_dict(), scores=rs.row_values(i)) for i in d["rows"]]}
        for d in worst
    ]
    return doc, rs
