"""Random dialogues through the template summarizer (seeded, bounded): odd questions, empty answers, list answers,
numbers, special tokens, unicode, very long answers, repeated questions. For every dialogue the summarizer must not
raise, must give the same text for the same input, must use only words of the dialogue (plus the template's fixed
words, the same check as ``test_summaries``), must not say a statement twice (word for word, or with the same content
stems and polarity, ``summary_words.stems``), and must leave no raw question fragment (``summary_audit.summary_issues``).

The audit checker's ``repeated`` flag is not asserted here: random answers contradict each other ("the left
hemidiaphragm is normal; the left hemidiaphragm is enlarged") and the checker flags two different statements about one
subject; the real-data figures in docs/data-formats.md say how often it fires and what it found."""

from __future__ import annotations

import random
import re

from test_summaries import _extra_words

from vmed.data.schema import Dialogue, Turn
from vmed.data.summaries import TemplateSummarizer, template_summary
from vmed.data.summary_audit import summary_issues
from vmed.data.summary_note import plan
from vmed.data.summary_words import stems

SUBJECTS = ["the liver", "the heart", "the left kidney", "the right lung", "the mass", "the lesion", "the spleen",
            "the lungs", "it", "this", "the gallbladder", "the left hemidiaphragm", "the aorta", "the bowel"]
FINDINGS = ["pneumothorax", "pleural effusion", "fracture", "mass", "free air", "cardiomegaly", "nodule", "edema"]
ORGANS = ["liver", "spleen", "kidney", "heart", "lung", "brain", "bladder", "colon", "brian"]
ODD_ANSWERS = ["", " ", "yes", "No", "Left Lung, Right", "Right lower lobe", "Top", "3.4 cm", "2", "0", "-3", "one",
               "<image>", "<|eot_id|>", "<|start_header_id|>", "ünïcödé", "肝脏", "Liver, Left", "none", "not sure",
               "Air?", "CT", "MRI", "X-ray", "Axial", "T2", "Rectum, Small Bowel", "yes/no", "N/A", "mass effect",
               " ".join(["very"] * 150) + " long answer", "a" * 400, "Yes.", "NO", "left; right", "(s)", "?"]


def _question(rng: random.Random) -> tuple[str, str]:
    s, f, o = rng.choice(SUBJECTS), rng.choice(FINDINGS), rng.choice(ORGANS)
    yn = rng.choice(["yes", "no", "Yes", "No"])
    shapes = [
        (f"Is there {rng.choice(['a ', 'an ', 'any ', ''])}{f}?", yn),
        (f"Is {s} enlarged?", yn), (f"Is {s} larger than normal?", yn), (f"Is {s} normal?", yn), (f"Is {s} abnormal?", yn),
        (f"Where is {s}?", rng.choice(ODD_ANSWERS)), (f"Where is the {f} located?", rng.choice(ODD_ANSWERS)),
        ("What modality is this?", rng.choice(["CT", "MRI", "X-ray", "", "ultrasound", "<image>"])),
        ("Which plane is this image in?", rng.choice(["Axial", "Coronal", "Sagittal", "", "PA"])),
        ("What is it?", rng.choice(ODD_ANSWERS)), ("What?", rng.choice(ODD_ANSWERS)), ("", rng.choice(ODD_ANSWERS)),
        (f"How many {o}s are there?", rng.choice(["2", "0", "1", "one", "-3", "10000000000", ""])),
        (f"Does the picture contain {o}?", yn), (f"Is the {o} visible?", yn),
        ("What is abnormal?", rng.choice(FINDINGS + ["none", "", "Left Lung, Right"])),
        (f"Which organ is {rng.choice(['abnormal', 'enlarged'])}?", rng.choice(ORGANS + ["Left Lung, Right", ""])),
        (f"Is this a {rng.choice(['CT', 'MRI', 'T2 weighted image', 'coronal view'])}?", yn),
        ("Is this image normal or abnormal?", rng.choice(["Normal", "Abnormal", "maybe"])),
        (f"Is there a {f} in {s}? <image>", yn), (f"Is there {f} 肿块?", yn),
        (f"Is {s} {rng.choice(['distended', 'flat', 'thickened'])}?", yn),
        (f"What does {s} represent?", rng.choice(ODD_ANSWERS)),
        ("Describe the image.", rng.choice(ODD_ANSWERS)), ("Is/Are there " + f + "?", yn),
        (rng.choice(ODD_ANSWERS) + "?", rng.choice(ODD_ANSWERS)),
    ]
    return rng.choice(shapes)


def _dialogues(n: int, seed: int) -> list[Dialogue]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        turns = [Turn(*_question(rng)) for _ in range(rng.randint(1, 10))]
        if rng.random() < 0.3:  # a repeated question, the same or the other answer
            t = rng.choice(turns)
            turns.insert(rng.randrange(len(turns) + 1), Turn(t.question, rng.choice([t.answer, "yes", "no"])))
        out.append(Dialogue(id=f"fuzz{i}", image=None, turns=turns))
    return out


def _statements(text: str) -> list[str]:
    return [s.strip(" .").lower() for s in re.split(r"(?<=[.;])\s+", text) if s.strip(" .")]


def test_random_dialogues_summaries_hold_their_properties():
    dialogues = _dialogues(400, seed=0)
    summarizer = TemplateSummarizer()
    written = 0
    for d in dialogues:
        text = summarizer.summarize(d)  # never raises
        assert text == template_summary(d.turns) == plan(list(d.turns)).text, d.turns  # deterministic
        if not text:
            continue
        written += 1
        d.summary = text
        assert not _extra_words(d), (d.turns, text, _extra_words(d))  # faithful: only the dialogue's words
        parts = _statements(text)
        assert len(parts) == len(set(parts)), (d.turns, text)  # no statement said twice word for word
        signatures = [stems(p) for p in parts]  # nor twice in other words (synonyms folded, same polarity)
        assert all(a != b for i, a in enumerate(signatures) for b in signatures[i + 1:]), (d.turns, text)
        assert "fragment" not in summary_issues(text), (d.turns, text)  # no raw question fragment (the audit's checker)
        assert len(text.split()) <= 60 and text.endswith("."), text
        assert "<|" not in text and "<image>" not in text, text  # a chat-template token never reaches a note
    stats = summarizer.stats()
    assert stats["template"] == len(dialogues) and stats["empty"] == len(dialogues) - written
    assert written > len(dialogues) // 2  # most random dialogues still give a summary
    assert stats["facts_in_dialogue"] == sum(len(d.turns) for d in dialogues)
