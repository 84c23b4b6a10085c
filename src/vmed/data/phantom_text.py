"""The words of the phantoms: vocabulary, question texts, paraphrases and the summary sentence.

Kept apart from the image code in ``vmed.data.phantom`` so that the question wording (which the
answer-balance guarantees depend on) can be read in one place. Every question text here is fixed:
a question text never changes with the image, only its answer does.
"""

from __future__ import annotations

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
    Q.SIDE_ONE: ("Which side is the lesion on?", "Is the lesion on the left or the right?", "Where is the lesion, left or right?"),
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
