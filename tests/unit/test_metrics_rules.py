"""Hand-made cases with known values for every answer rule (normalisation, closed, open, MedEvalKit,
VQA-Med 2019), including the cases where the three closed-question rules disagree.

The LLaVA-Med and MedEvalKit rules were also checked against those projects' own functions on 20,000 random
pairs each, in scratch scripts outside the repository (docs/evaluation.md says how)."""

import pytest

from vmed.evaluation.metrics.closed import closed_llava_med, closed_strict
from vmed.evaluation.metrics.medevalkit import (
    closed_medevalkit,
    open_exact_match_medevalkit,
    open_medevalkit,
    prepare_response_medevalkit,
)
from vmed.evaluation.metrics.normalize import (
    expand_vqa_med_alternatives,
    normalize_llava_med,
    parse_response_medevalkit,
    tokens_vqa_med_2019,
)
from vmed.evaluation.metrics.open import (
    open_exact_match,
    open_recall_llava_med,
    open_token_f1,
    open_token_recall,
    vqa_med_2019_correct,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The T1/T2 image", "t1 t2 image"),  # "/" not next to a space -> a space; article dropped
        ("x-ray, chest", "x ray chest"),  # "-" -> space; ", " touches a space -> deleted
        ("1,000 mm, left", "1000 mm left"),  # a digit-comma-digit deletes every punctuation character
        ("Is it (left)?", "is it left"),
        ("3.5 cm.", "3.5 cm"),  # periods before a digit stay, others go
        ("None", "0"),
        ("two lesions", "2 lesions"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("An MRI of the brain", "mri of brain"),
        ("", ""),
    ],
)
def test_normalize_llava_med(text, expected):
    assert normalize_llava_med(text) == expected


def test_normalize_llava_med_removes_at_most_32_periods():
    # LLaVA-Med passes re.UNICODE (32) positionally as re.sub's count.
    assert normalize_llava_med("." * 40 + "x") == "." * 8 + "x"


def test_parse_response_medevalkit():
    assert parse_response_medevalkit("Reasoning... \\boxed{Yes}") == "yes"
    assert parse_response_medevalkit("<answer>No</answer> because") == "no"
    assert parse_response_medevalkit("The answer is: Yes.") == ": yes."
    assert parse_response_medevalkit("plain") == "plain"


# (prediction, reference, llava_med, strict, medevalkit)
CLOSED_CASES = [
    ("no", "no", 1, 1, 1),
    ("Yes, there is.", "yes", 1, 0, 1),  # long answers: only strict says no
    ("yes and no", "no", 1, 0, 0),  # both words: LLaVA-Med accepts, MedEvalKit's exactly-one rule refuses
    ("nodule present", "no", 1, 0, 1),  # substring quirk: "no" in "nodule"
    ("nodule present", "yes", 0, 0, 0),
    ("axial", "axial", 0, 1, 1),  # a choice answer: MedEvalKit's judge_close_end_vqa (exact) accepts it
    ("Axial.", "axial", 0, 1, 1),  # periods deleted before that comparison
    ("the axial plane", "axial", 0, 0, 0),
    ("none", "none", 0, 1, 1),  # LLaVA-Med maps none -> 0, losing the "no"
    ("The answer is: Yes.", "yes", 1, 0, 1),
    ("eyes closed", "yes", 1, 0, 1),  # "yes" in "eyes"
    ("No.", "yes", 0, 0, 0),
    ("Let me think. \\boxed{Yes}", "Yes ", 1, 0, 1),  # boxed answer; gold lowercased and stripped
    ("<answer>No</answer> since yes is wrong", "no", 1, 0, 1),  # the <answer> span only
]


@pytest.mark.parametrize("pred, ref, llava, strict, medevalkit", CLOSED_CASES)
def test_closed_rules(pred, ref, llava, strict, medevalkit):
    assert closed_llava_med(pred, ref) == llava
    assert closed_strict(pred, ref) == strict
    assert closed_medevalkit(pred, ref) == medevalkit


def test_closed_rules_disagree_on_the_case_set():
    triples = {(c[2], c[3], c[4]) for c in CLOSED_CASES}
    assert len(triples) >= 5  # every pair of rules disagrees somewhere


# (prediction, reference, recall_llava_med, token_recall, exact, f1)
OPEN_CASES = [
    ("The left lung.", "left lung", 1.0, 1.0, 1.0, 1.0),
    ("left left", "left lung", 2 / 3, 0.5, 0.0, 0.5),  # LLaVA-Med counts the prediction's repeats
    ("two lesions", "2", 1.0, 1.0, 0.0, 2 / 3),
    ("right kidney", "left lung", 0.0, 0.0, 0.0, 0.0),
    ("", "liver", 0.0, 0.0, 0.0, 0.0),
    ("mass in the liver", "liver mass", 1.0, 1.0, 0.0, 2 * (2 / 3) * 1 / (2 / 3 + 1)),
]


@pytest.mark.parametrize("pred, ref, recall, token_recall, exact, f1", OPEN_CASES)
def test_open_rules(pred, ref, recall, token_recall, exact, f1):
    assert open_recall_llava_med(pred, ref) == pytest.approx(recall, abs=1e-12)
    assert open_token_recall(pred, ref) == pytest.approx(token_recall, abs=1e-12)
    assert open_exact_match(pred, ref) == exact
    assert open_token_f1(pred, ref) == pytest.approx(f1, abs=1e-12)


def test_prepare_response_medevalkit():
    assert prepare_response_medevalkit("  Some Text \\boxed{ Left {x} Lung } more") == "left {x} lung"
    assert prepare_response_medevalkit("\\boxed{unclosed") == "\\boxed{unclosed"  # mathruler finds no content
    assert prepare_response_medevalkit("<answer> A </answer> and <answer>B</answer>") == "a  b"  # spans joined by a space


def test_open_medevalkit_by_hand():
    s = open_medevalkit("The left lung.", "Left lung")
    assert s.exact_match == 0.0  # its exact match keeps articles and periods
    # token sets {the, left, lung.} vs {left, lung}: only "left" is shared ("lung." keeps its period)
    assert (s.precision, s.recall) == pytest.approx((1 / 3, 1 / 2))
    assert s.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert s.bleu[0] == pytest.approx(0.5)  # tokens "the left lung ." vs "left lung": 2 of 4 match, no brevity penalty
    assert not s.would_crash
    exact = open_medevalkit("Liver", "liver")
    assert exact.exact_match == 1.0 and exact.f1 == 1.0 and exact.bleu[0] == 1.0
    assert exact.bleu[2] < 1e-50  # one word: no trigram, so nltk's unsmoothed BLEU-3 collapses even for an exact match
    # parse_response keeps the space after "answer:", so the exact match fails and BLEU sees an empty token.
    marked = open_medevalkit("Answer: liver", "liver")
    assert marked.exact_match == 0.0 and marked.f1 == 1.0 and marked.bleu[0] == pytest.approx(0.5)
    assert open_exact_match_medevalkit("Answer: liver", "liver") == 0.0
    empty = open_medevalkit("\\boxed{}", "liver")  # empty after parsing: MedEvalKit's own scorer stops here
    assert empty.would_crash and empty.f1 == 0.0 and empty.rouge_l == 0.0


def test_open_token_f1_both_empty():
    assert open_token_f1("", "the") == 1.0  # both normalise to nothing
    assert open_token_f1("", "liver") == 0.0


def test_vqa_med_2019_tokens_and_alternatives():
    assert tokens_vqa_med_2019("CT w/Contrast (IV)") == ["ct", "wcontrast", "iv"]
    ref = "ct w/contrast (iv)#ct with iv contrast"
    assert expand_vqa_med_alternatives(ref) == ["ct w/contrast iv", "ct w/contrast", "ct with iv contrast"]
    assert vqa_med_2019_correct("CT with IV contrast.", ref) == 1.0
    assert vqa_med_2019_correct("ct w/contrast", ref) == 1.0  # the optional part may be left out
    assert vqa_med_2019_correct("ct", ref) == 0.0
    assert vqa_med_2019_correct("MR.", "mri") == 0.0
    assert vqa_med_2019_correct("MR.", "mri", alternatives=["mr"]) == 1.0
    assert vqa_med_2019_correct("the liver", "liver") == 0.0  # no article removal in VQA-Med 2019
