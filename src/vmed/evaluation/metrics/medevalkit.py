"""MedEvalKit's VQA scoring (alibaba-damo-academy/MedEvalKit at 9b12e3b: ``utils/utils.py`` and the
``cal_metrics`` of ``utils/VQA_RAD``, ``utils/SLAKE``, ``utils/PATH_VQA``), written for vmed.

A response first goes through ``cal_metrics``' own step (:func:`prepare_response_medevalkit`): the last
``\\boxed{}`` content (mathruler ``extract_boxed_content``) or the ``<answer>`` spans, then lowercase and strip;
the gold answer is lowercased and stripped. Then:

* closed (:func:`closed_medevalkit`): a yes/no gold answer is scored by ``judge_judgement`` — after
  ``parse_response`` and with newlines and periods deleted, exactly one of the *substrings* "yes" and "no"
  occurs (``('yes' in r) ^ ('no' in r)``, so "not" and "nodule" hold a "no") and the gold answer is a substring;
  any other gold answer by ``judge_close_end_vqa``: the same response text equals the gold answer.
* open (:func:`open_medevalkit`, ``judge_open_end_vqa``): on ``parse_response(response)``: exact match; nltk
  ``sentence_bleu`` (no smoothing) with weights 1/n on ``text.lower().replace(".", " .").split(" ")`` tokens
  (empty tokens from double spaces kept); the ``rouge`` package's ROUGE-1/2/L F (``Rouge().get_scores``,
  sentences split at "."); and precision/recall/F1 of the *sets* of whitespace tokens.

MedEvalKit's known bugs, which vmed does not reproduce (docs/evaluation.md lists them with their effect):
``calculate_f1`` returns ``(f1, precision, recall)`` but the caller unpacks ``precision, recall, f1``, so its
"f1" is the recall (:data:`OpenScores.recall` here), its "precision" the F1 and its "recall" the precision; an
empty response (after parsing) makes ``calculate_f1`` return a bare 0 and the ``rouge`` package raise, which
stops MedEvalKit's scorer — here such a row scores 0 and is flagged (:data:`OpenScores.would_crash`); and the
open "acc" of its result JSON is divided by the number of open questions twice.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

from vmed.evaluation.metrics.normalize import between_tags, last_boxed, parse_response_medevalkit

# lazy: rouge and nltk are imported inside the functions that use them, so importing this module stays light
__all__ = [
    "prepare_response_medevalkit",
    "judge_judgement_medevalkit",
    "judge_close_end_medevalkit",
    "closed_medevalkit",
    "open_exact_match_medevalkit",
    "OpenScores",
    "open_medevalkit",
]


def prepare_response_medevalkit(response: str) -> str:
    """``cal_metrics``' first step: boxed content (when mathruler finds one) or ``<answer>`` spans, lowercased
    and stripped."""
    r = str(response)
    boxed = last_boxed(r)
    if boxed != "None":
        r = boxed
    elif "<answer>" in r:
        r = between_tags(r, "answer")
    return r.lower().strip()


def _closed_text(response: str) -> str:
    return parse_response_medevalkit(response).replace("\n", "").replace(".", "")


def judge_judgement_medevalkit(answer: str, response: str) -> bool:
    """MedEvalKit ``judge_judgement``: exactly one of the substrings "yes"/"no" and the answer a substring."""
    r = _closed_text(response)
    return (("yes" in r) != ("no" in r)) and str(answer).lower() in r


def judge_close_end_medevalkit(answer: str, response: str) -> bool:
    """MedEvalKit ``judge_close_end_vqa``: the parsed response (newlines, periods deleted) equals the answer."""
    return _closed_text(response) == str(answer).lower()


def closed_medevalkit(prediction: str, reference: str) -> float:
    """1.0 if MedEvalKit's ``cal_metrics`` counts a closed answer correct (see the module docstring)."""
    answer, response = str(reference).lower().strip(), prepare_response_medevalkit(prediction)
    if answer in ("yes", "no"):
        return float(judge_judgement_medevalkit(answer, response))
    return float(judge_close_end_medevalkit(answer, response))


def _open_texts(prediction: str, reference: str) -> tuple[str, str]:
    """(response, answer) as ``judge_open_end_vqa`` compares them."""
    return parse_response_medevalkit(prepare_response_medevalkit(prediction)), str(reference).lower().strip()


def open_exact_match_medevalkit(prediction: str, reference: str) -> float:
    """1.0 if ``judge_open_end_vqa``'s "em" holds: the parsed response equals the lowercased answer."""
    response, answer = _open_texts(prediction, reference)
    return float(response == answer)


@dataclass(frozen=True)
class OpenScores:
    """``judge_open_end_vqa``'s numbers for one open answer, each under its true name."""

    exact_match: float
    bleu: tuple[float, float, float, float]
    """Sentence BLEU-1..4 (nltk, no smoothing)."""
    rouge_1: float
    rouge_2: float
    rouge_l: float
    precision: float
    recall: float
    """Token-set recall: what MedEvalKit's output calls "f1"."""
    f1: float
    would_crash: bool
    """True when MedEvalKit's own scorer stops on this row (empty text for ``calculate_f1`` or ``rouge``)."""


def _bleu_tokens(text: str) -> list[str]:
    return text.lower().replace(".", " .").split(" ")


@functools.lru_cache(maxsize=1)
def _rouge():
    from rouge import Rouge

    return Rouge()


def _set_prf(prediction: str, reference: str) -> tuple[float, float, float] | None:
    """``calculate_f1``'s token-set precision, recall and F1; None where it returns a bare 0 (a side is empty)."""
    p, g = set(prediction.lower().split()), set(reference.lower().split())
    if not p or not g:
        return None
    common = len(p & g)
    precision, recall = common / len(p), common / len(g)
    if precision + recall == 0:
        return 0.0, 0.0, 0.0
    return precision, recall, 2 * precision * recall / (precision + recall)


def open_medevalkit(prediction: str, reference: str) -> OpenScores:
    """MedEvalKit's ``judge_open_end_vqa`` for one open answer, after ``cal_metrics``' preparation."""
    from nltk.translate.bleu_score import sentence_bleu

    response, answer = _open_texts(prediction, reference)
    ref_tokens, hyp_tokens = _bleu_tokens(answer), _bleu_tokens(response)
    with warnings.catch_warnings():  # nltk warns on every order without a match (the score is then 0)
        warnings.simplefilter("ignore")
        bleu = tuple(float(sentence_bleu([ref_tokens], hyp_tokens, weights=[1 / n] * n)) for n in (1, 2, 3, 4))
    crash = False
    try:
        r = _rouge().get_scores(response.lower(), answer.lower())[0]
        rouge = (r["rouge-1"]["f"], r["rouge-2"]["f"], r["rouge-l"]["f"])
    except ValueError:  # the rouge package refuses an empty hypothesis or reference ("Hypothesis is empty.")
        rouge, crash = (0.0, 0.0, 0.0), True
    prf = _set_prf(response, answer)
    if prf is None:
        prf, crash = (0.0, 0.0, 0.0), True
    return OpenScores(exact_match=float(response == answer), bleu=bleu, rouge_1=float(rouge[0]), rouge_2=float(rouge[1]),
                      rouge_l=float(rouge[2]), precision=prf[0], recall=prf[1], f1=prf[2], would_crash=crash)  # fmt: skip
