"""The turn-order rule for per-image dialogues, shared by conversion and anything that re-orders turns.

A conversation about an image starts with an overview and then goes to findings:

1. overview: ``MODALITY``, ``PLANE``, ``ORGAN`` (in that order);
2. findings: ``PRES``, ``ABN``, ``POS``, ``SIZE``, ``COUNT``, ``ATTRIB``, ``COLOR``, ``OTHER``;
3. within one category, turns keep the dataset's order: by qid (numerically when qids are
   numbers), then by the order the rows were read.

Dataset labels are mapped to these categories by an exact table (VQA-RAD codes, SLAKE
``content_type``, VQA-Med categories); a combined label (``"PRES, POS"``) counts as its first part;
an unknown or missing label counts as ``OTHER``.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["CATEGORY_ORDER", "OVERVIEW", "canonical_category", "order_key", "order_turns"]

OVERVIEW = ("MODALITY", "PLANE", "ORGAN")
FINDINGS = ("PRES", "ABN", "POS", "SIZE", "COUNT", "ATTRIB", "COLOR", "OTHER")
CATEGORY_ORDER = OVERVIEW + FINDINGS

_LABELS = {
    # VQA-RAD codes (after typo fixes) map to themselves.
    **{c.lower(): c for c in CATEGORY_ORDER},
    # SLAKE content_type
    "organ": "ORGAN",
    "modality": "MODALITY",
    "plane": "PLANE",
    "position": "POS",
    "abnormality": "ABN",
    "size": "SIZE",
    "quantity": "COUNT",
    "color": "COLOR",
    "shape": "ATTRIB",
    "kg": "OTHER",
    # VQA-Med 2019 categories (C1..C4)
    "organ system": "ORGAN",
}


def canonical_category(question_type: str | None) -> str:
    """The ordering category of a dataset's question-type label (see the module docstring)."""
    if not question_type:
        return "OTHER"
    first = question_type.split(",")[0].strip().lower()
    return _LABELS.get(first, "OTHER")


def _qid_key(qid: str | None) -> tuple[int, int, str]:
    if qid is None:
        return (1, 0, "")
    try:
        return (0, int(qid), "")
    except ValueError:
        return (0, 0, qid)


def order_key(question_type: str | None, qid: str | None, index: int) -> tuple:
    """Sort key of one turn: category rank, then qid, then the read order ``index``."""
    return (CATEGORY_ORDER.index(canonical_category(question_type)), _qid_key(qid), index)


def order_turns(items: Sequence, qtype=lambda t: t.question_type, qid=lambda t: t.qid) -> list:
    """Return ``items`` (turn-like objects) in conversation order; stable and deterministic."""
    keyed = [(order_key(qtype(t), qid(t), i), t) for i, t in enumerate(items)]
    keyed.sort(key=lambda kt: kt[0])
    return [t for _, t in keyed]
