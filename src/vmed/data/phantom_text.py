"""The words and questions of the phantoms: vocabulary, question kinds, balanced assignment, summaries.

Kept apart from the image code in ``vmed.data.phantom`` so that the question wording and the
answer-balance machinery can be read in one place. Every question text here is fixed: a question
text never changes with the image, only its answer does. ``plan_turns`` assigns each record's
turns so that, for every question text, the answers are equally frequent (see ``QuestionKind``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Sequence

import numpy as np

from vmed.data.schema import Turn
from vmed.errors import UserInputError

if TYPE_CHECKING:
    from vmed.data.phantom import Findings

__all__ = [
    "MODALITIES",
    "ORGANS",
    "ORGAN_REGION",
    "SIDES",
    "LAYOUTS",
    "SIZES",
    "BRIGHTNESSES",
    "COUNT_WORDS",
    "Q",
    "modality_closed_question",
    "side_closed_question",
    "summary_sentence",
    "PARAPHRASES",
    "DESCRIBE_PARAPHRASES",
    "QuestionKind",
    "QUESTION_KINDS",
    "ALL_KINDS",
    "DEFAULT_KINDS",
    "check_kinds",
    "plan_turns",
    "balanced",
    "stratified",
]

MODALITIES = ("CT", "MRI", "X-ray")
"""Answers of "What modality is this?"."""

ORGANS = ("brain", "lungs", "liver", "kidneys")
"""Answers of "Which organ is shown?"."""

ORGAN_REGION = {"brain": "head", "lungs": "chest", "liver": "abdomen", "kidneys": "abdomen"}
"""The body region each organ is drawn in (used by the summary)."""

SIDES = ("left", "right")
"""Side of the image as displayed (viewer's left/right of the vertical midline), not the patient's side."""

LAYOUTS = ("left", "right", "both")
"""Where the lesions of one image lie: all in the left half, all in the right half, or in both halves."""

SIZES = ("small", "large")
BRIGHTNESSES = ("bright", "dark")
COUNT_WORDS = {0: "no", 1: "one", 2: "two", 3: "three"}


class Q:
    """The fixed question texts (``ONE`` variants when the image has exactly one lesion, ``MANY`` for 2-3)."""

    MODALITY = "What modality is this?"
    ORGAN = "Which organ is shown?"
    PRESENCE = "Is there a lesion?"
    COUNT = "How many lesions are there?"
    SIDE_ONE = "On which side is the lesion?"
    SIDE_MANY = "On which side are the lesions?"
    SIZE_ONE = "How large is the lesion?"
    SIZE_MANY = "How large are the lesions?"
    LARGE_ONE = "Is the lesion large?"
    LARGE_MANY = "Are the lesions large?"
    BRIGHTNESS_ONE = "Is the lesion bright or dark?"
    BRIGHTNESS_MANY = "Are the lesions bright or dark?"
    BRIGHT_ONE = "Is the lesion bright?"
    BRIGHT_MANY = "Are the lesions bright?"


_MODALITY_CLOSED = {"CT": "Is this a CT scan?", "MRI": "Is this an MRI?", "X-ray": "Is this an X-ray?"}


def modality_closed_question(modality: str) -> str:
    """The yes/no question "Is this a CT scan?" / "Is this an MRI?" / "Is this an X-ray?"."""
    return _MODALITY_CLOSED[modality]


def side_closed_question(side: str) -> str:
    """The yes/no question "Is there a lesion on the left side?" (or right)."""
    return f"Is there a lesion on the {side} side?"


def summary_sentence(modality: str, organ: str, count: int, size: str | None, brightness: str | None, layout: str | None) -> str:
    """One sentence that states every finding, e.g.
    "CT of the abdomen showing the liver, with two large bright lesions on the left side."."""
    head = f"{modality} of the {ORGAN_REGION[organ]} showing the {organ}"
    if count == 0:
        return f"{head}, with no lesions."
    noun = "lesion" if count == 1 else "lesions"
    where = "on both sides" if layout == "both" else f"on the {layout} side"
    return f"{head}, with {COUNT_WORDS[count]} {size} {brightness} {noun} {where}."


PARAPHRASES: dict[str, tuple[str, ...]] = {
    Q.MODALITY: ("Which imaging modality was used?", "What kind of scan is this?", "Name the imaging modality."),
    Q.ORGAN: ("What organ does this image show?", "Which organ is visible?", "Name the organ in the image."),
    Q.PRESENCE: ("Does this image show a lesion?", "Are there any lesions?", "Is any lesion visible?"),
    Q.COUNT: ("How many lesions can you see?", "Count the lesions.", "What is the number of lesions?"),
    Q.SIDE_ONE: (
        "Which side is the lesion on?",
        "Is the lesion on the left or the right?",
        "Where is the lesion, left or right?",
    ),
    Q.SIDE_MANY: ("Which side are the lesions on?", "Are the lesions on the left, the right, or both sides?"),
    Q.SIZE_ONE: ("What size is the lesion?", "Is the lesion small or large?"),
    Q.SIZE_MANY: ("What size are the lesions?", "Are the lesions small or large?"),
    Q.LARGE_ONE: ("Is it a large lesion?",),
    Q.LARGE_MANY: ("Are they large lesions?",),
    Q.BRIGHTNESS_ONE: ("Does the lesion look bright or dark?", "Is the lesion brighter or darker than its surroundings?"),
    Q.BRIGHTNESS_MANY: ("Do the lesions look bright or dark?", "Are the lesions brighter or darker than their surroundings?"),
    Q.BRIGHT_ONE: ("Does the lesion look bright?",),
    Q.BRIGHT_MANY: ("Do the lesions look bright?",),
    "Is this a CT scan?": ("Was this image taken with CT?", "Is this a computed tomography image?"),
    "Is this an MRI?": ("Was this image taken with MRI?", "Is this a magnetic resonance image?"),
    "Is this an X-ray?": ("Was this image taken with X-ray?", "Is this a radiograph?"),
    "Is there a lesion on the left side?": ("Does the left side of the image show a lesion?", "Is any lesion on the left?"),
    "Is there a lesion on the right side?": ("Does the right side of the image show a lesion?", "Is any lesion on the right?"),
}
"""Instruction-style rewordings of each fixed question (stage 2). The answer stays the same."""

DESCRIBE_PARAPHRASES = (
    "Describe the image.",
    "Summarize the findings.",
    "What does this image show?",
    "Write a one-sentence report of this image.",
)
"""Wordings of the "describe" request whose answer is the record's summary."""


# --------------------------------------------------------------------------- balanced assignment


def balanced(rng: np.random.Generator, m: int, values: Sequence) -> list:
    """``m`` values, each of ``values`` equally often (the remainder chosen at random), in random order."""
    if m == 0:
        return []
    reps = -(-m // len(values))
    tiled = [v for _ in range(reps) for v in values]
    return [tiled[j] for j in rng.permutation(len(tiled))[:m]]


def stratified(rng: np.random.Generator, keys: Sequence[Hashable | None], values_for: Callable[[Hashable], Sequence]) -> list:
    """For each index, a value from ``values_for(key)``, balanced within each key's group (None = not applicable)."""
    out: list = [None] * len(keys)
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(i)
    for k, idx in groups.items():
        for i, v in zip(idx, balanced(rng, len(idx), values_for(k))):
            out[i] = v
    return out


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class QuestionKind:
    """One kind of question. ``forms(f)`` gives (stratum, forms) or None when the kind does not apply;
    the forms of a stratum are assigned in exact proportions within it. ``ask(f, form)`` builds the turn
    (None for the form "skip")."""

    name: str
    question_type: str
    forms: Callable[[Findings], tuple[Hashable, Sequence[str]] | None]
    ask: Callable[[Findings, str], Turn | None]


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def _ask_modality(f: Findings, form: str) -> Turn:
    if form == "open":
        return Turn(Q.MODALITY, f.modality, "open", "MODALITY")
    if form == "true":
        return Turn(modality_closed_question(f.modality), "yes", "closed", "MODALITY")
    other = [m for m in MODALITIES if m != f.modality][int(form[-1])]
    return Turn(modality_closed_question(other), "no", "closed", "MODALITY")


def _ask_side(f: Findings, form: str) -> Turn | None:
    if form == "skip":
        return None
    if form == "open":
        return Turn(Q.SIDE_ONE if f.count == 1 else Q.SIDE_MANY, f.layout, "open", "POS")
    return Turn(side_closed_question(form), _yes(f.layout in (form, "both")), "closed", "POS")


def _side_forms(f: Findings) -> tuple[Hashable, Sequence[str]]:
    """The side question's forms per stratum; see ``QUESTION_KINDS["side"]`` for the proportions."""
    if f.count == 0:
        return "none", ("left", "right", "skip", "skip")
    if f.layout == "both":
        return "both", ("open", "open", "left", "left", "left", "right", "right", "right")
    if f.count == 1:
        return (True, f.layout), ("open", "open", "left", "right")
    return (False, f.layout), ("open", "skip", "left", "right")


def _ask_size(f: Findings, form: str) -> Turn:
    one = f.count == 1
    if form == "open":
        return Turn(Q.SIZE_ONE if one else Q.SIZE_MANY, f.size, "open", "SIZE")
    return Turn(Q.LARGE_ONE if one else Q.LARGE_MANY, _yes(f.size == "large"), "closed", "SIZE")


def _ask_brightness(f: Findings, form: str) -> Turn:
    one = f.count == 1
    if form == "open":
        return Turn(Q.BRIGHTNESS_ONE if one else Q.BRIGHTNESS_MANY, f.brightness, "open", "ATTRIB")
    return Turn(Q.BRIGHT_ONE if one else Q.BRIGHT_MANY, _yes(f.brightness == "bright"), "closed", "ATTRIB")


QUESTION_KINDS: dict[str, QuestionKind] = {
    # open 1/3; closed about the true modality 1/3 ("yes"); closed about each distractor 1/6 ("no").
    "modality": QuestionKind(
        "modality", "MODALITY", lambda f: (f.modality, ("open", "open", "true", "true", "d0", "d1")), _ask_modality
    ),
    "organ": QuestionKind(
        "organ", "ORGAN", lambda f: (f.organ, ("open",)), lambda f, _: Turn(Q.ORGAN, f.organ, "open", "ORGAN")
    ),
    # asked on every lesion-free image and on 1/3 of the others (= 1/4 of all images each): yes/no 50/50.
    "presence": QuestionKind(
        "presence",
        "PRES",
        lambda f: (f.count == 0, ("ask",) if f.count == 0 else ("ask", "skip", "skip")),
        lambda f, form: None if form == "skip" else Turn(Q.PRESENCE, _yes(f.count > 0), "closed", "PRES"),
    ),
    "count": QuestionKind(
        "count", "COUNT", lambda f: (f.count, ("ask",)), lambda f, _: Turn(Q.COUNT, str(f.count), "open", "COUNT")
    ),
    # "Is there a lesion on the left side?" means what it says: yes when a lesion lies in that half (one-sided or both).
    # It is asked of every image, so its presence says nothing about the layout. Per stratum (share of all images):
    # lesion-free (1/4): "left?" 1/4, "right?" 1/4 (both "no"), none 1/2; one lesion (1/8 left, 1/8 right): open 1/2,
    # "left?" 1/4, "right?" 1/4; 2-3 lesions on one side (1/6 each side): open 1/4, "left?" 1/4, "right?" 1/4, none
    # 1/4; on both sides (1/6): open 1/4, "left?" 3/8, "right?" 3/8 (both "yes"). Every text is then 50/50 yes/no and
    # the open 2-3-lesion form is left/right/both 1/3 each. The old design asked yes/no only of one-sided images,
    # which made the answer an exclusive-or of the word and the image side (docs/training.md, "The demo").
    "side": QuestionKind(
        "side",
        "POS",
        _side_forms,
        _ask_side,
    ),
    "size": QuestionKind(
        "size", "SIZE", lambda f: None if f.count == 0 else ((f.count == 1, f.size), ("open", "closed")), _ask_size
    ),
    "brightness": QuestionKind(
        "brightness",
        "ATTRIB",
        lambda f: None if f.count == 0 else ((f.count == 1, f.brightness), ("open", "closed")),
        _ask_brightness,
    ),
}
"""The question kinds, in the order they are asked within a dialogue."""

ALL_KINDS = tuple(QUESTION_KINDS)
DEFAULT_KINDS = ("modality", "presence", "count", "side")
"""The default keeps dialogues short: 2-4 turns (mean about 3)."""


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in QUESTION_KINDS]
    if unknown or not kinds:
        what = f"unknown question kinds {unknown}" if unknown else "no question kinds given"
        raise UserInputError(f"{what}; choose from {', '.join(ALL_KINDS)}")
    return tuple(k for k in ALL_KINDS if k in kinds)


def plan_turns(findings: Sequence[Findings], rng: np.random.Generator, kinds: Sequence[str] = DEFAULT_KINDS) -> list[list[Turn]]:
    """The turns of every record, balanced per question text (see the module docstring)."""
    kinds = check_kinds(kinds)
    turns: list[list[Turn]] = [[] for _ in findings]
    for name in kinds:
        kind = QUESTION_KINDS[name]
        strata = [kind.forms(f) for f in findings]
        forms_of = {s[0]: s[1] for s in strata if s is not None}
        chosen = stratified(rng, [None if s is None else s[0] for s in strata], lambda k: forms_of[k])
        for i, form in enumerate(chosen):
            if form is not None:
                t = kind.ask(findings[i], form)
                if t is not None:
                    turns[i].append(t)
    for ts in turns:
        for j, t in enumerate(ts, start=1):
            t.qid = str(j)
    return turns
