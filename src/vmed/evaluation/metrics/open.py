"""Open-question rules: LLaVA-Med recall, exact match, token F1/recall, VQA-Med 2019 accuracy.

* :func:`open_recall_llava_med` — the "open" number of LLaVA-Med and most medical-VQA papers: the recall
  of ``calculate_f1score`` in LLaVA-Med ``llava/eval/eval_metrics/evaluate_metrics.py`` (microsoft/LLaVA-Med
  b9a98a7), after ``run_eval.py`` lowercased and normalised both strings (``calculate_f1score`` normalises
  them a second time). Words are counted: ``tp`` adds the *prediction's* count of each word that also
  occurs in the reference, ``fn`` the reference's count of each word missing from the prediction, and
  recall = tp / (tp + fn); 0 when either side is empty or nothing matches. Quirk kept: repeating a
  reference word in the prediction raises the score ("left left" vs "left lung" gives 2/3, not 1/2).
* :func:`open_token_recall` — the clean version of that idea: the fraction of reference tokens present in
  the prediction, with counts clipped (SQuAD-style), on normalised tokens.
* :func:`open_exact_match` — normalised prediction == normalised reference.
* :func:`open_token_f1` — SQuAD-style token F1 (clipped multiset overlap) on normalised tokens; when
  either side has no tokens, 1.0 if both are empty else 0.0.
* :func:`vqa_med_2019_correct` — VQA-Med 2019 strict accuracy: the prediction's preprocessed word list
  equals that of any accepted answer (``#`` alternatives, ``(...)`` optional parts, and the row's
  ``alternatives``).
"""

from __future__ import annotations

from collections import Counter

from vmed.evaluation.metrics.normalize import (
    expand_vqa_med_alternatives,
    normalize_llava_med,
    tokens,
    tokens_vqa_med_2019,
)

__all__ = [
    "open_recall_llava_med",
    "open_token_recall",
    "open_exact_match",
    "open_token_f1",
    "vqa_med_2019_correct",
]


def open_recall_llava_med(prediction: str, reference: str) -> float:
    """LLaVA-Med's open-question recall (see the module docstring for the exact counting rule)."""
    pred = normalize_llava_med(normalize_llava_med(str(prediction).lower())).split()
    ref = normalize_llava_med(normalize_llava_med(str(reference).lower())).split()
    if not pred or not ref:
        return 0.0
    pc, rc = Counter(pred), Counter(ref)
    tp = sum(n for w, n in pc.items() if w in rc)
    fn = sum(n for w, n in rc.items() if w not in pc)
    return tp / (tp + fn) if tp else 0.0


def _overlap(prediction: str, reference: str) -> tuple[int, int, int]:
    """(clipped common token count, prediction token count, reference token count)."""
    p, r = tokens(prediction), tokens(reference)
    common = sum((Counter(p) & Counter(r)).values())
    return common, len(p), len(r)


def open_token_recall(prediction: str, reference: str) -> float:
    """Fraction of the reference's normalised tokens present in the prediction (clipped counts)."""
    common, _, n_ref = _overlap(prediction, reference)
    return common / n_ref if n_ref else 0.0


def open_exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal."""
    return 1.0 if normalize_llava_med(prediction) == normalize_llava_med(reference) else 0.0


def open_token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 on normalised tokens."""
    common, n_pred, n_ref = _overlap(prediction, reference)
    if n_pred == 0 or n_ref == 0:
        return 1.0 if n_pred == n_ref else 0.0
    if common == 0:
        return 0.0
    precision, recall = common / n_pred, common / n_ref
    return 2 * precision * recall / (precision + recall)


def vqa_med_2019_correct(prediction: str, reference: str, alternatives: list[str] | None = None) -> float:
    """1.0 if the prediction matches any accepted VQA-Med 2019 answer after the task's preprocessing."""
    pred = tokens_vqa_med_2019(prediction)
    return 1.0 if any(pred == tokens_vqa_med_2019(a) for a in expand_vqa_med_alternatives(reference, alternatives)) else 0.0
