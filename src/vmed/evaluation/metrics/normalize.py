"""Answer normalisation rules, each named after the evaluation code it reproduces.

* :func:`normalize_llava_med` — LLaVA-Med's ``normalize_word`` (``llava/eval/eval_metrics/glossary.py`` at
  microsoft/LLaVA-Med commit b9a98a7, the code behind ``llava/eval/run_eval.py``), itself the VQA-v2
  answer processing: punctuation handling, periods not followed by a digit removed, lowercase, number
  words to digits, articles (a, an, the) dropped, contractions restored, commas removed. This is the
  normalisation vmed uses everywhere a rule does not name another one.
* :func:`parse_response_medevalkit` — MedEvalKit's ``parse_response`` (alibaba-damo-academy/MedEvalKit
  ``utils/utils.py``): lowercase, take a ``\\boxed{}`` or ``<answer>`` span, keep the text after the last
  "answer:"-style marker.
* :func:`tokens_vqa_med_2019` — the ImageCLEF VQA-Med 2019 preprocessing (lowercase, delete every
  ``string.punctuation`` character, split into words), as described in the task overview and the
  evaluator of the following year (abachaa/VQA-Med-2020 ``Evaluator-VQA-Med-2020.py``).

The code here is written for vmed; it reproduces the behaviour of those sources, quirks included, and
each quirk is stated where it is kept.
"""

from __future__ import annotations

import itertools
import re
import string

__all__ = [
    "normalize_llava_med",
    "tokens",
    "parse_response_medevalkit",
    "last_boxed",
    "between_tags",
    "tokens_vqa_med_2019",
    "expand_vqa_med_alternatives",
]

# Characters that LLaVA-Med/VQA processing deletes or turns into a space. The apostrophe and the colon
# are deliberately absent (so "don't" and "t2:" survive), as in the source.
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")

# The source writes "(?!<=\d)(\.)(?!\d)": the first group is a look-*ahead* typo for a look-behind and
# can never fail in front of a ".", so the rule is "a period not followed by a digit".
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The source passes re.UNICODE (== 32) positionally as ``count``: at most 32 periods are removed per call.
_PERIOD_COUNT = int(re.UNICODE)
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# Canonical English contractions of the VQA table. Every spelling with some of the apostrophes left out
# maps back to the canonical one ("dont" -> "don't", "couldnt've" -> "couldn't've"). The literal table
# in the source has a few entries that this reconstruction does not reproduce because they cannot
# matter: capitalised keys ("Im") never match lowercased words, and "somebody'd" -> "somebodyd" is a
# reversed entry.
_CANONICAL_CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't "
    "haven't he'd he'd've he's how'd how'll how's i'd've i'm i've isn't it'd it'd've it'll let's ma'am "
    "mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't shan't she'd've she's "
    "should've shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've "
    "someone'll someone's something'd something'd've something'll that's there'd there'd've there're "
    "there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're "
    "what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're "
    "why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've"
).split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for canonical in _CANONICAL_CONTRACTIONS:
        parts = canonical.split("'")
        gaps = len(parts) - 1
        for keep in itertools.product((True, False), repeat=gaps):
            if all(keep):
                continue
            word = parts[0]
            for k, part in zip(keep, parts[1:]):
                word += ("'" if k else "") + part
            table.setdefault(word, canonical)
    return table


_CONTRACTIONS = _contraction_table()


def normalize_llava_med(text: str) -> str:
    """LLaVA-Med's ``normalize_word`` applied to ``text`` (see the module docstring for the source).

    Steps, in the source's order:
      1. each punctuation character is deleted if it touches a space anywhere in the input (``"x, y"``) or
         if the input holds a digit-comma-digit (``"1,000"``); otherwise it becomes a space (``"t1/t2"`` ->
         ``"t1 t2"``);
      2. periods not followed by a digit are removed (at most 32, as in the source);
      3. lowercase, split on whitespace, number words to digits (``"none"`` -> ``"0"``), drop a/an/the,
         restore contractions;
      4. join with single spaces and delete any remaining comma.
    """
    text = str(text)
    out = text
    digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in _PUNCTUATION:
        if digit_comma or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_PERIOD_COUNT)
    words = []
    for w in out.lower().split():
        w = _NUMBER_WORDS.get(w, w)
        if w in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words).replace(",", "")


def tokens(text: str) -> list[str]:
    """The whitespace tokens of ``normalize_llava_med(text)`` (the token rule of every vmed metric)."""
    return normalize_llava_med(text).split()


_ANSWER_MARKERS = (
    "**answer**:", "**answer**", "*answer*:", "**answer:**", "answer is", "answer:", "答案:", "final answer",
    "final answer is",
)  # fmt: skip


def last_boxed(text: str) -> str:
    """The content of the last ``\\boxed{...}`` (braces balanced), or ``"None"`` as mathruler returns."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return "None"
    content = text[start + len("\\boxed{") :]
    depth = 0
    for i, ch in enumerate(content):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return content[:i].strip()
    return "None"


def between_tags(text: str, tag: str) -> str:
    """All ``<tag>...</tag>`` spans joined by spaces; the whole text when there is none."""
    spans = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S)
    joined = " ".join(spans).strip()
    return joined if joined else text


def parse_response_medevalkit(response: str) -> str:
    """MedEvalKit's ``parse_response``: lowercase, take the boxed or ``<answer>`` span, then the text after the
    last answer marker ("answer:", "answer is", ...), each marker applied in the source's order."""
    r = str(response).lower()
    if "boxed" in r:
        r = last_boxed(r)
    elif "<answer>" in r:
        r = between_tags(r, "answer")
    for marker in _ANSWER_MARKERS:
        if marker in r:
            r = r.split(marker)[-1]
    return r


_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)


def tokens_vqa_med_2019(text: str) -> list[str]:
    """VQA-Med 2019 preprocessing: lowercase, delete ``string.punctuation``, split into words."""
    return str(text).lower().translate(_DELETE_PUNCTUATION).split()


def expand_vqa_med_alternatives(reference: str, alternatives: list[str] | None = None) -> list[str]:
    """Every accepted answer of a VQA-Med 2019 reference.

    ``#`` separates alternative answers and ``(...)`` marks an optional part (VQA-Med 2019 test-set README,
    abachaa/VQA-Med-2019 ``VQAMed2019Test/README-VQA-Med-2019-TestSet.txt``); each optional part gives a
    variant with it and one without. ``alternatives`` (the record's extra accepted answers) are added.
    """
    answers = [a for a in str(reference).split("#")] + [str(a) for a in (alternatives or [])]
    out: list[str] = []
    for a in answers:
        for variant in (re.sub(r"\(([^()]*)\)", r"\1", a), re.sub(r"\([^()]*\)", " ", a)):
            v = " ".join(variant.split())
            if v and v not in out:
                out.append(v)
    return out
