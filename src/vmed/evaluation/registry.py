"""The metric registry: every key of metrics.json, the rows it scores, its text rule, how it is computed and how
it aggregates; the rule sets that the report's leading table compares.

Each :class:`MetricSpec` carries its own ``compute`` (rows -> per-row values or statistics) and its
``aggregation`` (with ``n`` for BLEU), so nothing is parsed from a key. Expensive text processing shared by
several keys (one PTB tokenisation for all rows, MedEvalKit's open scores, pycocoevalcap BLEU statistics) runs
once per scoring through :class:`Inputs`' cached properties.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from vmed.evaluation import metrics as rules
from vmed.evaluation.metrics import captions, coco
from vmed.evaluation.metrics.medevalkit import OpenScores, open_medevalkit
from vmed.evaluation.predictions import PredictionRow

__all__ = ["Aggregation", "MetricSpec", "METRICS", "SPECS", "TEXT_RULES", "RULE_SETS", "RULE_SET_TABLE", "Inputs", "ANSWER_GROUPS"]

CLOSED, OPEN, QUESTIONS, SUMMARY = ("closed",), ("open",), ("closed", "open"), ("summary",)
ANSWER_GROUPS = (CLOSED, OPEN, QUESTIONS, SUMMARY)


class Aggregation(enum.Enum):
    """How a metric's per-row statistics become one value."""

    MEAN = "mean"
    """Rows hold (value, 1); the value is their mean."""
    SACREBLEU = "sacrebleu"
    """Rows hold sacrebleu BLEU counts; corpus BLEU-n from their sums (``MetricSpec.n``)."""
    COCO_BLEU = "coco_bleu"
    """Rows hold pycocoevalcap BLEU counts; its corpus BLEU-n from their sums (``MetricSpec.n``)."""
    CORPUS = "corpus"
    """A library's corpus value with no per-row decomposition: no interval, overall only."""


TEXT_RULES: dict[str, str] = {
    "vqa_llava_med": "LLaVA-Med normalize_word (VQA answer processing): lowercase, punctuation rules, number words "
                     "to digits, articles a/an/the dropped, contractions restored",
    "vqa_med_2019": "VQA-Med 2019: lowercase, string.punctuation deleted, split on whitespace",
    "medevalkit": "MedEvalKit cal_metrics + parse_response: boxed/<answer> span, lowercase, strip, text after the "
                  "last 'answer:'-style marker",
    "coco_ptb": "pycocoevalcap PTBTokenizer on raw text: lowercase, PTB tokens, punctuation tokens dropped; "
                "articles, numbers and all words kept",
    "sacrebleu_13a": "raw text, sacrebleu's default BLEU(): tokenizer 13a, case kept",
    "rouge_score": "raw text, rouge-score's own tokenizer (lowercase, runs of [a-z0-9])",
    "bert_score": "raw text, the encoder's own tokenizer (bert-score)",
}  # fmt: skip


class Inputs:
    """The rows being scored, with the shared text processing done at most once (cached properties).

    ``notes`` collects what was skipped and why.
    """

    def __init__(self, rows: Sequence[PredictionRow], meteor: bool, bertscore: captions.BertScoreSetup | None):
        self.rows = list(rows)
        self.meteor_enabled = meteor
        self.bertscore = bertscore
        self.notes: list[str] = []
        self._coco_bleu: dict[tuple[int, ...], np.ndarray | None] = {}
        self.by_type = {at: np.array([i for i, r in enumerate(self.rows) if r.answer_type in at], dtype=np.int64)
                        for at in ANSWER_GROUPS}  # fmt: skip

    @functools.cached_property
    def ptb(self) -> dict[int, tuple[str, str]] | None:
        """Row index -> (prediction, reference) PTB-tokenised, for open and summary rows; None without Java."""
        idx = [i for i, r in enumerate(self.rows) if r.answer_type in ("open", "summary")]
        if not idx:
            return {}
        if not coco.java_available():
            self.notes.append("open_bleu_*, summary_bleu_*, summary_rouge_l_coco, summary_meteor_*, summary_cider_d: skipped: "
                              "pycocoevalcap's PTB tokenizer (and METEOR) need Java and no 'java' is on PATH.")  # fmt: skip
            return None
        texts = [self.rows[i].prediction for i in idx] + [self.rows[i].reference for i in idx]
        tok = coco.ptb_tokenize(texts)
        return {i: (tok[k], tok[len(idx) + k]) for k, i in enumerate(idx)}

    def tokenised(self, idx: np.ndarray) -> tuple[list[str], list[str]] | None:
        if self.ptb is None:
            return None
        return [self.ptb[i][0] for i in idx], [self.ptb[i][1] for i in idx]

    def coco_bleu_stats(self, idx: np.ndarray) -> np.ndarray | None:
        """pycocoevalcap BLEU statistics [n, 10] of the rows ``idx`` (computed once per row set)."""
        key = tuple(int(i) for i in idx)
        if key not in self._coco_bleu:
            tok = self.tokenised(idx)
            self._coco_bleu[key] = None if tok is None else np.array(
                [coco.coco_bleu_stats(h, r) for h, r in zip(*tok)], dtype=np.float64
            ).reshape(-1, coco.COCO_BLEU_STATS_WIDTH)
        return self._coco_bleu[key]

    @functools.cached_property
    def medevalkit_open(self) -> list[OpenScores]:
        """MedEvalKit's open scores of every open row (in ``by_type[OPEN]`` order)."""
        scores = [open_medevalkit(self.rows[i].prediction, self.rows[i].reference) for i in self.by_type[OPEN]]
        crashes = sum(s.would_crash for s in scores)
        if crashes:
            self.notes.append(f"open_*_medevalkit: {crashes} open answer(s) are empty after MedEvalKit's parsing, which stops "
                              "MedEvalKit's own scorer (calculate_f1 / rouge); they score 0 here.")  # fmt: skip
        return scores

    @functools.cached_property
    def meteor(self) -> captions.CorpusScore | None:
        idx = self.by_type[SUMMARY]
        if not self.meteor_enabled:
            self.notes.append("summary_meteor_*: not computed (--no-meteor).")
            return None
        tok = self.tokenised(idx)
        return None if tok is None else captions.meteor(*tok)

    @functools.cached_property
    def summary_sacrebleu_stats(self) -> np.ndarray:
        rows = [captions.bleu_stats(self.rows[i].prediction, self.rows[i].reference, captions.SACREBLEU_DEFAULT_TOKENIZE)
                for i in self.by_type[SUMMARY]]  # fmt: skip
        return np.array(rows, dtype=np.float64).reshape(-1, captions.BLEU_STATS_WIDTH)


Compute = Callable[[Inputs, np.ndarray], "np.ndarray | float | None"]
"""(inputs, row indices it applies to) -> per-row values [n] or statistics [n, k], a corpus float, or None
(skipped; the reason is in ``inputs.notes``)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its key (naming the rule), the answer types it scores, its text rule, and how it is
    computed and aggregated."""

    key: str
    applies_to: tuple[str, ...]
    text_rule: str
    """A key of :data:`TEXT_RULES`: how the text is processed before the metric sees it."""
    compute: Compute
    description: str
    aggregation: Aggregation = Aggregation.MEAN
    n: int | None = None
    """The BLEU order, for the BLEU aggregations."""
    headline: bool = False


def _per_row(fn: Callable[[PredictionRow], float]) -> Compute:
    return lambda inp, idx: np.array([fn(inp.rows[i]) for i in idx], dtype=np.float64)


def _pair(fn: Callable[[str, str], float]) -> Compute:
    return _per_row(lambda r: fn(r.prediction, r.reference))


def _medevalkit_open(field: Callable[[OpenScores], float]) -> Compute:
    return lambda inp, idx: np.array([field(s) for s in inp.medevalkit_open], dtype=np.float64)


def _coco_bleu_sentence(n: int) -> Compute:
    def compute(inp: Inputs, idx: np.ndarray) -> np.ndarray | None:
        stats = inp.coco_bleu_stats(idx)
        return None if stats is None else coco.coco_bleu_from_stats_batch(stats, n)

    return compute


def _tokenised(fn: Callable[[list[str], list[str]], Sequence[float]]) -> Compute:
    def compute(inp: Inputs, idx: np.ndarray) -> np.ndarray | None:
        tok = inp.tokenised(idx)
        return None if tok is None else np.asarray(fn(*tok), dtype=np.float64)

    return compute


def _cider(inp: Inputs, idx: np.ndarray) -> np.ndarray | None:
    tok = inp.tokenised(idx)
    if tok is None:
        return None
    if len(idx) < 2:
        inp.notes.append("summary_cider_d: fewer than 2 summaries, so every n-gram has idf 0 and CIDEr-D is 0.")
    return np.asarray(captions.cider_d(*tok).per_item, dtype=np.float64)


def _meteor_sentence(inp: Inputs, idx: np.ndarray) -> np.ndarray | None:
    m = inp.meteor
    return None if m is None else np.asarray(m.per_item, dtype=np.float64)


def _meteor_corpus(inp: Inputs, idx: np.ndarray) -> float | None:
    m = inp.meteor
    return None if m is None else m.corpus


def _bertscore(inp: Inputs, idx: np.ndarray) -> np.ndarray | None:
    if inp.bertscore is None:
        inp.notes.append("summary_bertscore_f1: not computed (give --bertscore-model DIR, a local encoder).")
        return None
    hyps, refs = [inp.rows[i].prediction for i in idx], [inp.rows[i].reference for i in idx]
    return np.asarray(captions.bertscore_f1(hyps, refs, inp.bertscore), dtype=np.float64)


def _question_accuracy_medevalkit(r: PredictionRow) -> float:
    if r.answer_type == "closed":
        return rules.closed_medevalkit(r.prediction, r.reference)
    return rules.open_exact_match_medevalkit(r.prediction, r.reference)


def _open_bleu_specs() -> list[MetricSpec]:
    out = []
    for n in range(1, 5):
        out.append(MetricSpec(f"open_bleu_{n}_corpus", OPEN, "coco_ptb", lambda inp, idx: inp.coco_bleu_stats(idx),
                              f"corpus BLEU-{n} of open answers (pycocoevalcap Bleu on PTB tokens)", Aggregation.COCO_BLEU, n))
        out.append(MetricSpec(f"open_bleu_{n}_sentence_mean", OPEN, "coco_ptb", _coco_bleu_sentence(n),
                              f"mean per-answer BLEU-{n} (pycocoevalcap Bleu's per-sentence scores)"))
    for n in range(1, 5):
        out.append(MetricSpec(f"open_bleu_{n}_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s, n=n: s.bleu[n - 1]),
                              f"MedEvalKit: mean nltk sentence_bleu, weights 1/{n} x {n}, no smoothing, its tokenize()"))
    return out  # fmt: skip


def _summary_bleu_specs() -> list[MetricSpec]:
    out = []
    for n in range(1, 5):
        out.append(MetricSpec(f"summary_bleu_{n}_corpus", SUMMARY, "coco_ptb", lambda inp, idx: inp.coco_bleu_stats(idx),
                              f"corpus BLEU-{n} of summaries (pycocoevalcap Bleu on PTB tokens, as COCOEvalCap)",
                              Aggregation.COCO_BLEU, n, headline=n == 4))
        out.append(MetricSpec(f"summary_bleu_{n}_sentence_mean", SUMMARY, "coco_ptb", _coco_bleu_sentence(n),
                              f"mean per-summary BLEU-{n} (pycocoevalcap Bleu's per-sentence scores)"))
    return out  # fmt: skip


METRICS: list[MetricSpec] = [
    MetricSpec("closed_accuracy_llava_med", CLOSED, "vqa_llava_med", _pair(rules.closed_llava_med),
               "LLaVA-Med run_eval.py: 'yes' or 'no' substring in the prediction and the reference a substring of it",
               headline=True),
    MetricSpec("closed_accuracy_strict", CLOSED, "vqa_llava_med", _pair(rules.closed_strict),
               "normalised prediction == normalised reference", headline=True),
    MetricSpec("closed_accuracy_medevalkit", CLOSED, "medevalkit", _pair(rules.closed_medevalkit),
               "MedEvalKit: yes/no reference: exactly one of the substrings 'yes'/'no' and the reference a substring "
               "(judge_judgement); other references: equal after deleting periods and newlines (judge_close_end_vqa)",
               headline=True),
    MetricSpec("open_recall_llava_med", OPEN, "vqa_llava_med", _pair(rules.open_recall_llava_med),
               "LLaVA-Med calculate_f1score recall (what papers report as 'open')", headline=True),
    MetricSpec("open_token_recall", OPEN, "vqa_llava_med", _pair(rules.open_token_recall),
               "fraction of reference tokens in the prediction (clipped counts)"),
    MetricSpec("open_exact_match", OPEN, "vqa_llava_med", _pair(rules.open_exact_match),
               "normalised prediction == normalised reference", headline=True),
    MetricSpec("open_token_f1", OPEN, "vqa_llava_med", _pair(rules.open_token_f1),
               "SQuAD-style token F1 on normalised tokens", headline=True),
    MetricSpec("open_exact_match_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.exact_match),
               "MedEvalKit judge_open_end_vqa 'em': parsed response == lowercased reference", headline=True),
    MetricSpec("open_f1_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.f1),
               "MedEvalKit calculate_f1: F1 of the token *sets* (MedEvalKit's output labels this value 'precision')",
               headline=True),
    MetricSpec("open_precision_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.precision),
               "MedEvalKit calculate_f1: token-set precision (its output labels this value 'recall')"),
    MetricSpec("open_recall_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.recall),
               "MedEvalKit calculate_f1: token-set recall (its output labels this value 'f1')"),
    MetricSpec("open_rouge_1_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.rouge_1),
               "MedEvalKit: rouge package ROUGE-1 F"),
    MetricSpec("open_rouge_2_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.rouge_2),
               "MedEvalKit: rouge package ROUGE-2 F"),
    MetricSpec("open_rouge_l_medevalkit", OPEN, "medevalkit", _medevalkit_open(lambda s: s.rouge_l),
               "MedEvalKit: rouge package ROUGE-L F (summary-level LCS, sentences split at '.')"),
    *_open_bleu_specs(),
    MetricSpec("vqa_med_2019_accuracy", QUESTIONS, "vqa_med_2019",
               _per_row(lambda r: rules.vqa_med_2019_correct(r.prediction, r.reference, r.alternatives)),
               "VQA-Med 2019 strict accuracy; '#' alternatives, '(...)' optional parts and row alternatives accepted",
               headline=True),
    MetricSpec("question_accuracy_strict", QUESTIONS, "vqa_llava_med", _pair(rules.closed_strict),
               "every question: normalised prediction == normalised reference", headline=True),
    MetricSpec("question_accuracy_medevalkit", QUESTIONS, "medevalkit", _per_row(_question_accuracy_medevalkit),
               "MedEvalKit 'total metrics' acc: closed rows by its closed rule, open rows by its 'em'", headline=True),
    *_summary_bleu_specs(),
    MetricSpec("summary_sacrebleu_4_corpus", SUMMARY, "sacrebleu_13a", lambda inp, idx: inp.summary_sacrebleu_stats,
               "sacrebleu's own corpus BLEU (defaults: 4-gram, 13a, case kept, 'exp' smoothing) on raw summaries, "
               "in [0, 1]", Aggregation.SACREBLEU, 4, headline=True),
    MetricSpec("summary_rouge_l_coco", SUMMARY, "coco_ptb", _tokenised(coco.coco_rouge_l),
               "mean ROUGE-L (pycocoevalcap Rouge, beta 1.2, on PTB tokens)", headline=True),
    MetricSpec("summary_rouge_l_f1_sentence_mean", SUMMARY, "rouge_score",
               _pair(captions.rouge_l_f1), "mean ROUGE-L F1 (rouge-score RougeScorer(['rougeL']), beta 1, raw text)"),
    MetricSpec("summary_meteor_corpus", SUMMARY, "coco_ptb", _meteor_corpus,
               "METEOR 1.5 corpus score (pycocoevalcap; needs Java)", Aggregation.CORPUS),
    MetricSpec("summary_meteor_sentence_mean", SUMMARY, "coco_ptb", _meteor_sentence,
               "mean per-summary METEOR 1.5 (pycocoevalcap)", headline=True),
    MetricSpec("summary_cider_d", SUMMARY, "coco_ptb", _cider,
               "CIDEr-D (pycocoevalcap Cider on PTB tokens; document frequencies from all summaries of the file)",
               headline=True),
    MetricSpec("summary_bertscore_f1", SUMMARY, "bert_score", _bertscore,
               "BERTScore F1 (bert-score package, local encoder, last layer, no idf, no baseline rescaling); "
               "only with --bertscore-model", headline=True),
]  # fmt: skip
SPECS = {m.key: m for m in METRICS}

RULE_SETS = ("llava_med", "medevalkit", "strict")
"""The answer-scoring protocols the report's leading table compares."""

RULE_SET_TABLE: list[tuple[str, dict[str, str | None]]] = [
    ("closed accuracy", {"llava_med": "closed_accuracy_llava_med", "medevalkit": "closed_accuracy_medevalkit",
                         "strict": "closed_accuracy_strict"}),
    ("open score (the protocol's open number)", {"llava_med": "open_recall_llava_med",
                                                 "medevalkit": "open_exact_match_medevalkit", "strict": "open_exact_match"}),
    ("open token F1", {"llava_med": None, "medevalkit": "open_f1_medevalkit", "strict": "open_token_f1"}),
    ("all-question accuracy", {"llava_med": None, "medevalkit": "question_accuracy_medevalkit",
                               "strict": "question_accuracy_strict"}),
]  # fmt: skip
"""(quantity, rule set -> key or None where the protocol defines no such number)."""
