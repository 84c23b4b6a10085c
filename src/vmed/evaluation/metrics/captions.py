"""Text-generation metrics through the reference libraries: sacrebleu BLEU, rouge-score ROUGE-L, METEOR,
CIDEr-D, BERTScore.

Each function says which text it expects: METEOR and CIDEr-D take captions already tokenised by
:func:`vmed.evaluation.metrics.coco.ptb_tokenize` (as ``COCOEvalCap`` feeds them); sacrebleu, rouge-score and
bert-score take raw text and tokenise it themselves.

* BLEU — sacrebleu ``BLEU(max_ngram_order=n, tokenize=...)``. :func:`bleu_stats` gives one row's
  sufficient statistics; :func:`bleu_from_stats` turns summed statistics into corpus BLEU exactly as
  ``BLEU.corpus_score`` does (smoothing "exp", which only acts when an n-gram order has no match). Scores
  are in [0, 1].
  ``tokenize="13a"`` with case kept is sacrebleu's default (:data:`SACREBLEU_DEFAULT_TOKENIZE`).
* ROUGE-L — rouge-score ``RougeScorer(["rougeL"])`` F-measure (beta = 1) on raw text (its own tokenizer:
  lowercase, runs of ``[a-z0-9]``), per sentence.
* METEOR — pycocoevalcap ``Meteor`` (METEOR 1.5 jar, ``-l en -norm``); needs ``java`` on PATH.
* CIDEr-D — pycocoevalcap ``Cider``: this *is* CIDEr-D (Vedantam et al. 2015): tf-idf n-gram vectors
  (n = 1..4) with document frequencies from the references of the whole set, hypothesis counts clipped to
  the reference's, a Gaussian length penalty with sigma = 6, scaled by 10. Its corpus value is the mean of
  the per-item values, which depend on the whole set through the document frequencies.
* BERTScore — :func:`bertscore_f1`: the ``bert-score`` package's ``BERTScorer`` on a *local* encoder
  directory (never the hub), with the package defaults (no idf weighting) and no baseline rescaling.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vmed.evaluation.metrics.coco import java_available

# lazy: sacrebleu, rouge_score, pycocoevalcap and bert_score are imported inside the functions that use them, so importing this module stays light
__all__ = [
    "BLEU_STATS_WIDTH",
    "bleu_stats",
    "bleu_from_stats",
    "bleu_from_stats_batch",
    "rouge_l_f1",
    "meteor",
    "cider_d",
    "SACREBLEU_DEFAULT_TOKENIZE",
    "BertScoreSetup",
    "bertscore_setup",
    "bertscore_f1",
    "CorpusScore",
]


@dataclass
class CorpusScore:
    """A corpus-level value and the per-item values it came from (same order as the input)."""

    corpus: float
    per_item: list[float]


SACREBLEU_DEFAULT_TOKENIZE = "13a"
"""sacrebleu's default tokenizer (``BLEU()`` with no arguments: 13a, case kept)."""


@functools.lru_cache(maxsize=None)
def _bleu(tokenize: str):
    """A sacrebleu BLEU-4 for sentence statistics (effective order only silences its warning; counts ignore it)."""
    from sacrebleu.metrics.bleu import BLEU

    return BLEU(max_ngram_order=4, tokenize=tokenize, effective_order=True)


BLEU_STATS_WIDTH = 10
"""Columns of :func:`bleu_stats`: matches for n = 1..4, totals for n = 1..4, hypothesis length, reference length."""


def bleu_stats(hypothesis: str, reference: str, tokenize: str = "none") -> list[int]:
    """BLEU sufficient statistics of one pair (sacrebleu, order 4; lower orders read their columns)."""
    s = _bleu(tokenize).sentence_score(hypothesis, [reference])
    return [*s.counts, *s.totals, s.sys_len, s.ref_len]


def bleu_from_stats(stats: Sequence[float], n: int = 4) -> float:
    """Corpus BLEU-n in [0, 1] from summed :func:`bleu_stats` rows, by sacrebleu's own ``compute_bleu``
    with the defaults of ``corpus_score`` (smoothing "exp")."""
    from sacrebleu.metrics.bleu import BLEU

    st = [int(round(x)) for x in stats]
    score = BLEU.compute_bleu(
        correct=st[:n], total=st[4 : 4 + n], sys_len=st[8], ref_len=st[9], smooth_method="exp", max_ngram_order=n
    )
    return score.score / 100.0


def bleu_from_stats_batch(stats: np.ndarray, n: int = 4) -> np.ndarray:
    """:func:`bleu_from_stats` for many summed rows at once ([B, 10] -> [B]), for bootstrap resamples.

    The same arithmetic as sacrebleu ``BLEU.compute_bleu`` (brevity penalty; "exp" smoothing: the k-th order
    with no match gets precision 1 / (2^k * total); orders after one with no n-grams at all count as 0;
    no match at any order gives 0), vectorised; tests check it against sacrebleu.
    """
    stats = np.asarray(stats, dtype=np.float64)
    correct, total = stats[:, :n], stats[:, 4 : 4 + n]
    sys_len, ref_len = stats[:, 8], stats[:, 9]
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / np.maximum(sys_len, 1e-300)), 0.0), 1.0)
        smooth = np.ones(len(stats))
        stopped = np.zeros(len(stats), dtype=bool)
        log_sum = np.zeros(len(stats))
        for k in range(n):
            c, t = correct[:, k], total[:, k]
            stopped |= t == 0
            no_match = (c == 0) & ~stopped
            smooth = np.where(no_match, smooth * 2, smooth)
            p = np.where(stopped, 0.0, np.where(c == 0, 100.0 / (smooth * t), 100.0 * c / t))
            log_sum += np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -9999999999.0)
        score = bp * np.exp(log_sum / n)
    return np.where(correct.sum(1) == 0, 0.0, score) / 100.0


def rouge_l_f1(hypothesis: str, reference: str) -> float:
    """rouge-score ROUGE-L F-measure of one pair."""
    return float(_rouge_l().score(reference, hypothesis)["rougeL"].fmeasure)


@functools.lru_cache(maxsize=1)
def _rouge_l():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _coco_inputs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[dict, dict]:
    """The ``gts`` / ``res`` dicts of pycocoevalcap scorers (empty captions are passed on as COCOEvalCap does)."""
    return {i: [r] for i, r in enumerate(references)}, {i: [h] for i, h in enumerate(hypotheses)}


def meteor(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusScore:
    """pycocoevalcap METEOR 1.5 of PTB-tokenised captions: the jar's corpus score and its per-segment scores.
    Raises if Java is missing."""
    if not java_available():
        raise RuntimeError("METEOR needs Java: no 'java' executable on PATH (install a JRE, e.g. apt-get install default-jre)")
    from pycocoevalcap.meteor.meteor import Meteor

    if not hypotheses:
        return CorpusScore(float("nan"), [])
    gts, res = _coco_inputs(hypotheses, references)
    scorer = Meteor()
    try:
        corpus, per_item = scorer.compute_score(gts, res)
    finally:
        _close_meteor(scorer)
    return CorpusScore(float(corpus), [float(x) for x in per_item])


def _close_meteor(scorer) -> None:
    """Stop the METEOR jar now instead of at garbage collection (pycocoevalcap stops it in ``__del__``,
    which stays harmless afterwards: closing a closed pipe and killing a reaped process are no-ops)."""
    proc = scorer.meteor_p
    with scorer.lock:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def cider_d(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusScore:
    """pycocoevalcap CIDEr-D of PTB-tokenised captions over the set (one reference per item). Needs at least 2 items to be non-zero
    (with one item every n-gram has idf log(1/1) = 0)."""
    from pycocoevalcap.cider.cider import Cider

    if not hypotheses:
        return CorpusScore(float("nan"), [])
    gts, res = _coco_inputs(hypotheses, references)
    corpus, per_item = Cider().compute_score(gts, res)
    return CorpusScore(float(corpus), [float(x) for x in np.asarray(per_item).tolist()])




@dataclass(frozen=True)
class BertScoreSetup:
    """How :func:`bertscore_f1` ran (written into metrics.json so that the number can be reproduced)."""

    model: str
    num_layers: int
    idf: bool = False
    rescale_with_baseline: bool = False

    def describe(self) -> str:
        return (f"bert-score BERTScorer(model_type={self.model!r}, num_layers={self.num_layers}, idf={self.idf}, "
                f"rescale_with_baseline={self.rescale_with_baseline})")  # fmt: skip


def bertscore_setup(model_path: str | os.PathLike) -> BertScoreSetup:
    """The setup for a local encoder directory: its last layer (bert-score's tuned layer table only knows hub
    names), the package's default of no idf, and no rescaling (bert-score ships no baseline for a local model)."""
    path = os.fspath(model_path)
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"BERTScore model directory has no config.json: {path} (give a local encoder folder)")
    with open(config, encoding="utf-8") as f:
        layers = json.load(f).get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{config}: no integer num_hidden_layers; BERTScore needs an encoder config")
    return BertScoreSetup(path, layers)


def bertscore_f1(hypotheses: Sequence[str], references: Sequence[str], setup: BertScoreSetup, *, batch_size: int = 32) -> list[float]:
    """BERTScore F1 of each raw pair by ``bert_score.BERTScorer`` (greedy cosine matching of contextual token
    embeddings, special tokens excluded).

    A pair with an empty side gets 0.0 here, which is the value bert-score itself assigns ("Empty candidate
    sentence detected; setting raw BERTscores to 0"): its encoder of empty strings calls a tokenizer method
    that transformers 5 removed, so empty sides never reach it.
    """
    from bert_score import BERTScorer

    scores = [0.0] * len(hypotheses)
    keep = [i for i, (h, r) in enumerate(zip(hypotheses, references)) if h.strip() and r.strip()]
    if not keep:
        return scores
    scorer = BERTScorer(model_type=setup.model, num_layers=setup.num_layers, idf=setup.idf, batch_size=batch_size,
                        rescale_with_baseline=setup.rescale_with_baseline)  # fmt: skip
    _, _, f1 = scorer.score([hypotheses[i] for i in keep], [references[i] for i in keep], batch_size=batch_size)
    for i, v in zip(keep, f1.tolist()):
        scores[i] = float(v)
    return scores
