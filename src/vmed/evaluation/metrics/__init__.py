"""Metric rules as pure functions (strings in, numbers out), each named after the rule it implements.

See ``docs/evaluation.md`` for every definition and its source. Submodules: ``normalize`` (answer
normalisation), ``closed`` (closed-question rules), ``open`` (open-question rules), ``medevalkit`` (MedEvalKit's
closed and open scoring), ``coco`` (pycocoevalcap's PTB tokenisation, BLEU and ROUGE-L), ``captions``
(sacrebleu, rouge-score, METEOR, CIDEr-D, BERTScore through the reference libraries) and ``bootstrap``
(seeded cluster bootstrap intervals and paired differences).
"""

from vmed.evaluation.metrics.closed import closed_llava_med, closed_strict
from vmed.evaluation.metrics.medevalkit import closed_medevalkit, open_exact_match_medevalkit, open_medevalkit
from vmed.evaluation.metrics.normalize import normalize_llava_med, tokens
from vmed.evaluation.metrics.open import (
    open_exact_match,
    open_recall_llava_med,
    open_token_f1,
    open_token_recall,
    vqa_med_2019_correct,
)

__all__ = [
    "normalize_llava_med",
    "tokens",
    "closed_llava_med",
    "closed_strict",
    "closed_medevalkit",
    "open_medevalkit",
    "open_exact_match_medevalkit",
    "open_recall_llava_med",
    "open_token_recall",
    "open_exact_match",
    "open_token_f1",
    "vqa_med_2019_correct",
]
