"""The guard on generated summaries: a summary that contradicts the dialogue or adds a finding is not kept.

``check_summary(text, turns)`` returns None for a summary the dialogue supports, else the reason:

- ``polarity_flip``: a closed answer's fact (``summary_template.read_turn``: "Is there a pleural effusion?" no) appears in
  the summary, whole or by its head noun ("There is a pleural effusion", "Effusion is present"), with the opposite
  polarity and nowhere with the right one;
- ``unsupported``: a content word of the summary (four letters or more) that no question or answer contains (prefix
  match on five letters) and that is not a stock word of a note ("shows", "demonstrates", "patient", ...). A finding the
  dialogue does not contain is such a word; so is a random model's garbage.

``LlmSummarizer`` replaces a rejected summary by the template summary and counts the reason in report.json.
"""

from __future__ import annotations

import re
from typing import Sequence

from vmed.data.schema import Turn
from vmed.data.summary_template import read_turn
from vmed.data.summary_words import stems

__all__ = ["check_summary"]

# Words a faithful note may use that the dialogue need not contain.
_NOTE_WORDS = {
    "image", "images", "shows", "show", "showing", "demonstrates", "demonstrate", "reveals", "reveal", "depicts", "seen",
    "visible", "present", "noted", "note", "there", "evidence", "finding", "findings", "include", "includes", "including",
    "patient", "study", "scan", "examination", "exam", "appears", "appear", "identified", "observed", "with", "without",
    "also", "both", "which", "that", "this", "these", "those", "their", "other", "from", "into", "within", "region", "area",
    "located", "abnormality", "abnormalities", "normal", "abnormal", "confirmed", "answers", "image's", "view", "taken",
    "using", "shown", "well", "each", "have", "been", "being", "does", "were", "some", "over", "more", "most",
}


def _dialogue_stems(turns: Sequence[Turn]) -> set[str]:
    return {w[:5] for t in turns for w in re.findall(r"[a-z0-9]+", f"{t.question} {t.answer}".lower().replace("x-ray", "xray"))}


def _head(text: str) -> frozenset:
    """The stem of a noun phrase's last content word ("pleural effusion" -> {"effus"}); empty if none."""
    for w in reversed(re.findall(r"[a-z0-9]+", text.lower())):
        s = stems(w)[0]
        if s:
            return s
    return frozenset()


def _flip(text: str, turns: Sequence[Turn]) -> bool:
    # statements: split at punctuation, "but", and before "no"/"without" ("an enlarged heart and no pleural effusion")
    parts = [stems(p) for p in re.split(r"(?<=[.;,:])\s+|\s+but\s+|\s+(?=(?:no|without)\b)", text, flags=re.I) if p.strip()]
    for t in turns:
        if t.answer.strip().lower() not in ("yes", "no"):
            continue
        for f in read_turn(t)[0]:
            key, negative = stems(f"no {f.text}" if f.kind == "absent" or (f.kind == "organ" and f.negative) else f.text)
            negative = negative or (f.kind == "clause" and f.negative)
            if not key:
                continue
            head = _head(f.text)  # "Effusion is present" speaks of "no pleural effusion" too
            holding = [n for s, n in parts if key <= s or (head and head <= s)]
            if holding and negative not in holding:
                return True
    return False


def check_summary(text: str, turns: Sequence[Turn]) -> str | None:
    """None if ``text`` is supported by ``turns``, else ``'polarity_flip'`` or ``'unsupported'`` (module docstring)."""
    known = _dialogue_stems(turns)
    words = [w.lower().strip("'-") for w in re.findall(r"[A-Za-z][A-Za-z'-]+", text.replace("X-ray", "xray").replace("x-ray", "xray"))]
    content = [w for w in words if len(w) >= 4 and w not in _NOTE_WORDS]
    if any(w[:5] not in known for w in content) or not any(w[:5] in known for w in words):
        return "unsupported"  # a word the dialogue lacks, or nothing the dialogue says
    return "polarity_flip" if _flip(text, turns) else None
