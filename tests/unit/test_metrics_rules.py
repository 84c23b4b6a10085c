"""Hand-made cases with known values for every answer rule (normalisation, closed, open, VQA-Med 2019),
including the cases where the three closed-question rules disagree."""

import pytest

from vmed.evaluation.metrics.closed import closed_llava_med, closed_strict, closed_xor
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


# (prediction, reference, llava_med, strict, xor)
CLOSED_CASES = [
    ("no", "no", 1, 1, 1),
    ("Yes, there is.", "yes", 1, 0, 1),  # long answers: only strict says no
    ("yes and no", "no", 1, 0, 0),  # both words: LLaVA-Med accepts, the xor rule refuses
    ("nodule present", "no", 1, 0, 1),  # substring quirk: "no" in "nodule"
    ("nodule present", "yes", 0, 0, 0),
    ("axial", "axial", 0, 1, 0),  # a correct choice answer: only strict accepts
    ("none", "none", 0, 1, 1),  # LLaVA-Med maps none -> 0, losing the "no"
    ("The answer is: Yes.", "yes", 1, 0, 1),
    ("eyes closed", "yes", 1, 0, 1),  # "yes" in "eyes"
    ("No.", "yes", 0, 0, 0),
]


@pytest.mark.parametrize("pred, ref, llava, strict, xor", CLOSED_CASES)
def test_closed_rules(pred, ref, llava, strict, xor):
    assert closed_llava_med(pred, ref) == llava
    assert closed_strict(pred, ref) == strict
    assert closed_xor(pred, ref) == xor


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
