"""Score a predictions file: every metric overall, per answer type, per question type and per turn index,
each with a seeded 95% cluster-bootstrap interval.

:data:`METRICS` is the registry (an explicit list: key, which rows it applies to, how it aggregates, what
it means). :func:`row_statistics` turns rows into per-row sufficient statistics once; :func:`aggregate`
turns any subset of rows into values and intervals; :func:`score_rows` builds the whole metrics document
that ``vmed eval score`` writes as metrics.json.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vmed.evaluation import metrics as rules
from vmed.evaluation.metrics import captions
from vmed.evaluation.metrics.bootstrap import BootstrapConfig, bootstrap_ci, mean_aggregate, paired_bootstrap_diff
from vmed.evaluation.predictions import PredictionRow

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
]

CLOSED, OPEN, QUESTIONS, SUMMARY = ("closed",), ("open",), ("closed", "open"), ("summary",)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its key (naming the rule), the answer types it scores, and how rows aggregate.

    ``kind`` is ``"mean"`` (per-row values, averaged), ``"bleu<n>"`` (corpus BLEU-n from summed sacrebleu
    statistics) or ``"corpus"`` (a library's corpus value with no per-row decomposition: no interval).
    """

    key: str
    applies_to: tuple[str, ...]
    kind: str
    description: str
    headline: bool = False


def _bleu_specs(prefix: str, applies_to: tuple[str, ...], what: str, headline_n: int | None) -> list[MetricSpec]:
    out = []
    for n in range(1, 5):
        out.append(MetricSpec(f"{prefix}_bleu_{n}_corpus", applies_to, f"bleu{n}",
                              f"corpus BLEU-{n} of {what} (sacrebleu, normalised tokens, 'exp' smoothing)",
                              headline=n == headline_n))  # fmt: skip
        out.append(MetricSpec(f"{prefix}_bleu_{n}_sentence_mean", applies_to, "mean",
                              f"mean sentence BLEU-{n} of {what} (sacrebleu, 'exp' smoothing, effective order)"))  # fmt: skip
    return out


METRICS: list[MetricSpec] = [
    MetricSpec("closed_accuracy_llava_med", CLOSED, "mean",
               "LLaVA-Med run_eval.py: 'yes' or 'no' substring in the prediction and the reference a substring of it",
               headline=True),
    MetricSpec("closed_accuracy_strict", CLOSED, "mean", "normalised prediction == normalised reference", headline=True),
    MetricSpec("closed_accuracy_xor", CLOSED, "mean",
               "MedEvalKit judge_judgement: exactly one of 'yes'/'no' present and the reference a substring", headline=True),
    MetricSpec("open_recall_llava_med", OPEN, "mean",
               "LLaVA-Med calculate_f1score recall (what papers report as 'open')", headline=True),
    MetricSpec("open_token_recall", OPEN, "mean", "fraction of reference tokens in the prediction (clipped counts)"),
    MetricSpec("open_exact_match", OPEN, "mean", "normalised prediction == normalised reference", headline=True),
    MetricSpec("open_token_f1", OPEN, "mean", "SQuAD-style token F1 on normalised tokens", headline=True),
    *_bleu_specs("open", OPEN, "open answers", headline_n=1),
    MetricSpec("vqa_med_2019_accuracy", QUESTIONS, "mean",
               "VQA-Med 2019 strict accuracy; '#' alternatives, '(...)' optional parts and row alternatives accepted",
               headline=True),
    *_bleu_specs("summary", SUMMARY, "summaries", headline_n=4),
    MetricSpec("summary_rouge_l_f1_sentence_mean", SUMMARY, "mean", "mean ROUGE-L F1 (rouge-score)", headline=True),
    MetricSpec("summary_meteor_corpus", SUMMARY, "corpus", "METEOR 1.5 corpus score (pycocoevalcap; needs Java)"),
    MetricSpec("summary_meteor_sentence_mean", SUMMARY, "mean", "mean per-summary METEOR 1.5 (pycocoevalcap)", headline=True),
    MetricSpec("summary_cider_d", SUMMARY, "mean",
               "CIDEr-D (pycocoevalcap; document frequencies from all summaries of the file)", headline=True),
    MetricSpec("summary_bertscore_f1", SUMMARY, "mean",
               "BERTScore F1 from a local encoder (no idf, no rescaling); only with --bertscore-model", headline=True),
]  # fmt: skip
_SPECS = {m.key: m for m in METRICS}

_ROW_RULES: dict[str, Callable[[PredictionRow], float]] = {
    "closed_accuracy_llava_med": lambda r: rules.closed_llava_med(r.prediction, r.reference),
    "closed_accuracy_strict": lambda r: rules.closed_strict(r.prediction, r.reference),
    "closed_accuracy_xor": lambda r: rules.closed_xor(r.prediction, r.reference),
    "open_recall_llava_med": lambda r: rules.open_recall_llava_med(r.prediction, r.reference),
    "open_token_recall": lambda r: rules.open_token_recall(r.prediction, r.reference),
    "open_exact_match": lambda r: rules.open_exact_match(r.prediction, r.reference),
    "open_token_f1": lambda r: rules.open_token_f1(r.prediction, r.reference),
    "vqa_med_2019_accuracy": lambda r: rules.vqa_med_2019_correct(r.prediction, r.reference, r.alternatives),
    "summary_rouge_l_f1_sentence_mean": lambda r: captions.rouge_l_f1(
        rules.normalize_llava_med(r.prediction), rules.normalize_llava_med(r.reference)
    ),
}


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
            if _SPECS[key].kind == "mean":
                pos = np.searchsorted(idx, i)
                if pos < len(idx) and idx[pos] == i:
                    out[key] = float(vals[pos, 0])
        return out


def row_statistics(rows: Sequence[PredictionRow], options: ScoreOptions = ScoreOptions()) -> RowStatistics:
    """Compute every metric's per-row statistics once (text processing happens only here)."""
    rows = list(rows)
    by_type = {at: np.array([i for i, r in enumerate(rows) if r.answer_type in at], dtype=np.int64)
               for at in (CLOSED, OPEN, QUESTIONS, SUMMARY)}  # fmt: skip
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    corpus_values: dict[str, float] = {}

    def put_mean(key: str, idx: np.ndarray, values: Sequence[float]) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        stats[key] = (idx, np.hstack([v, np.ones_like(v)]))

    for key, rule in _ROW_RULES.items():
        idx = by_type[_SPECS[key].applies_to]
        put_mean(key, idx, [rule(rows[i]) for i in idx])

    for prefix, at in (("open", OPEN), ("summary", SUMMARY)):
        idx = by_type[at]
        hyps = [rules.normalize_llava_med(rows[i].prediction) for i in idx]
        refs = [rules.normalize_llava_med(rows[i].reference) for i in idx]
        bleu = np.array([captions.bleu_stats(h, r) for h, r in zip(hyps, refs)], dtype=np.float64).reshape(
            -1, captions.BLEU_STATS_WIDTH
        )
        for n in range(1, 5):
            stats[f"{prefix}_bleu_{n}_corpus"] = (idx, bleu)
            put_mean(f"{prefix}_bleu_{n}_sentence_mean", idx, [captions.sentence_bleu(h, r, n) for h, r in zip(hyps, refs)])

    idx = by_type[SUMMARY]
    hyps = [rules.normalize_llava_med(rows[i].prediction) for i in idx]
    refs = [rules.normalize_llava_med(rows[i].reference) for i in idx]
    if len(idx):
        put_mean("summary_cider_d", idx, captions.cider_d(hyps, refs).per_item)
        if len(idx) < 2:
            notes.append("summary_cider_d: fewer than 2 summaries, so every n-gram has idf 0 and CIDEr-D is 0.")
        if not options.meteor:
            notes.append("summary_meteor_*: not computed (--no-meteor).")
        elif not captions.java_available():
            notes.append("summary_meteor_*: skipped: METEOR needs Java and no 'java' is on PATH.")
        else:
            m = captions.meteor(hyps, refs)
            corpus_values["summary_meteor_corpus"] = m.corpus
            put_mean("summary_meteor_sentence_mean", idx, m.per_item)
        if options.bertscore_model:
            put_mean("summary_bertscore_f1", idx, captions.bertscore_f1(hyps, refs, options.bertscore_model))
        else:
            notes.append("summary_bertscore_f1: not computed (give --bertscore-model DIR, a local encoder).")
    return RowStatistics(rows, np.array([r.id for r in rows], dtype=object), stats, corpus_values, notes)


def metric_aggregator(spec: MetricSpec) -> Callable[[np.ndarray], np.ndarray]:
    if spec.kind.startswith("bleu"):
        n = int(spec.kind[4:])
        return lambda sums: captions.bleu_from_stats_batch(sums, n)
    return mean_aggregate


def _point(spec: MetricSpec, values: np.ndarray) -> float:
    if spec.kind.startswith("bleu"):
        return captions.bleu_from_stats(values.sum(0), int(spec.kind[4:]))
    return float(values[:, 0].sum() / values[:, 1].sum())


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
        out[spec.key] = {"value": _point(spec, vals), "ci95": None if ci is None else list(ci), "n": int(len(idx))}
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
    n = len(rows)
    out: dict[str, dict[str, np.ndarray]] = {"by_answer_type": {}, "by_question_type": {}, "by_turn": {}}
    for at in ("closed", "open", "summary"):
        m = np.array([r.answer_type == at for r in rows], dtype=bool)
        if m.any():
            out["by_answer_type"][at] = m
    for qt in sorted({r.question_type or "(none)" for r in rows}):
        out["by_question_type"][qt] = np.array([(r.question_type or "(none)") == qt for r in rows], dtype=bool)
    for t in sorted({r.turn for r in rows if r.answer_type != "summary"}):
        out["by_turn"][str(t)] = np.array([r.turn == t and r.answer_type != "summary" for r in rows], dtype=bool)
    for groups in out.values():
        for k, m in list(groups.items()):
            if m.shape != (n,):
                groups.pop(k)
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
        "options": {"meteor": options.meteor, "bertscore_model": os.fspath(options.bertscore_model) if options.bertscore_model else None},
        "notes": rs.notes,
        "definitions": {m.key: m.description for m in METRICS},
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
