"""The captioning convention of report-generation papers: pycocoevalcap's tokenisation, BLEU and ROUGE-L.

``COCOEvalCap`` first passes every caption through :func:`ptb_tokenize` (pycocoevalcap ``PTBTokenizer``:
Stanford CoreNLP 3.4.1 ``PTBTokenizer -preserveLines -lowerCase``, then the punctuation tokens of its
``PUNCTUATIONS`` list dropped; articles, numbers and every word kept), then scores the tokenised strings with
``Bleu``, ``Meteor``, ``Rouge`` and ``Cider``. The same happens here, so a vmed value equals the value
pycocoevalcap gives for the same raw sentences. Quirk of that convention, kept: parentheses become the tokens
``-lrb-`` / ``-rrb-`` (the list names them in upper case, after the tokenizer lowercased them).

* :func:`coco_bleu_stats` / :func:`coco_bleu_from_stats_batch` — pycocoevalcap ``Bleu(4)``: per-pair sufficient
  statistics from its own ``cook_refs`` / ``cook_test``, and its ``compute_score`` arithmetic (the ``tiny`` /
  ``small`` constants, "closest" reference length, brevity penalty) on summed statistics, vectorised so that
  bootstrap resamples never re-tokenise. Applied to one row it is pycocoevalcap's per-sentence BLEU.
* :func:`coco_rouge_l` — pycocoevalcap ``Rouge``: ROUGE-L with beta = 1.2, per caption; the corpus value is the mean.

The PTB tokenizer needs ``java`` on PATH; one Java process tokenises a whole predictions file.
"""

from __future__ import annotations

import shutil
from typing import Sequence

import numpy as np

# lazy: pycocoevalcap are imported inside the functions that use them, so importing this module stays light
__all__ = ["java_available", "ptb_tokenize", "COCO_BLEU_STATS_WIDTH", "coco_bleu_stats", "coco_bleu_from_stats_batch", "coco_rouge_l"]

COCO_BLEU_STATS_WIDTH = 10
"""Columns of :func:`coco_bleu_stats`: correct n-grams for n = 1..4, guessed n-grams for n = 1..4, test length,
reference length."""

# Characters that Java's line reader or Python's str.splitlines treat as a line break. PTBTokenizer runs with
# -preserveLines (one caption per line), so any of them inside a caption would shift every later caption onto
# the wrong row; they become spaces first (pycocoevalcap itself only replaces "\n").
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def java_available() -> bool:
    """True if a ``java`` executable is on PATH (the PTB tokenizer and METEOR need it)."""
    return shutil.which("java") is not None


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's PTB tokenisation of each text (lowercased, punctuation tokens dropped, tokens joined
    by single spaces), in one Java process. Raises RuntimeError if Java is missing."""
    if not texts:
        return []
    if not java_available():
        raise RuntimeError("PTB tokenisation needs Java: no 'java' executable on PATH (install a JRE, e.g. apt-get install default-jre)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {i: [{"caption": str(t).translate(_LINE_BREAKS)}] for i, t in enumerate(texts)}
    out = PTBTokenizer().tokenize(captions)
    if len(out) != len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(out)} lines for {len(texts)} texts")
    return [out[i][0] for i in range(len(texts))]


def coco_bleu_stats(hypothesis: str, reference: str) -> list[float]:
    """pycocoevalcap's BLEU statistics of one tokenised pair (one reference), from its ``cook_refs`` /
    ``cook_test`` with the "closest" reference length that ``Bleu.compute_score`` uses."""
    from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

    c = cook_test(hypothesis, cook_refs([reference], n=4), eff="closest", n=4)
    return [*c["correct"], *c["guess"], c["testlen"], c["reflen"]]


def coco_bleu_from_stats_batch(stats: np.ndarray, n: int = 4) -> np.ndarray:
    """BLEU-n from summed :func:`coco_bleu_stats` rows ([B, 10] -> [B]) by ``BleuScorer.compute_score``'s
    arithmetic: prod_k (correct_k + 1e-15) / (guess_k + 1e-9), to the power 1/n, times exp(1 - ref/test) when
    the test is shorter (lengths with the same constants)."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, COCO_BLEU_STATS_WIDTH)
    tiny, small = 1e-15, 1e-9
    ratio_terms = (stats[:, :n] + tiny) / (stats[:, 4 : 4 + n] + small)
    bleu = np.prod(ratio_terms, axis=1) ** (1.0 / n)
    ratio = (stats[:, 8] + tiny) / (stats[:, 9] + small)
    with np.errstate(divide="ignore", over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return bleu * penalty


def coco_rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """pycocoevalcap ``Rouge`` (ROUGE-L, beta = 1.2) of each tokenised pair."""
    from pycocoevalcap.rouge.rouge import Rouge

    if not hypotheses:
        return []
    scorer = Rouge()
    return [float(scorer.calc_score([h], [r])) for h, r in zip(hypotheses, references)]
