"""What the model sees of a dialogue record, and the stage-1/2 record builders for any dataset.

``record_turns`` is the one owner of "record -> turns": the record's VQA turns in order, then (with
``summary_turn="last"``, the default) the summary turn, the evaluation's ``SUMMARY_PROMPT`` answered by the
record's summary. Training (``vmed.data.collate.DialogueDataset``), the evaluation runner (its questions)
and the demo's sample dialogue all take their turns from it, so the summary question sits in the same
place, with the same wording, in every one of them.

``describe_records`` (stage 1) and ``instruction_records`` (stage 2) turn dialogue records of any
dataset into single-turn records; the rewordings they use for phantom questions come from
``vmed.data.phantom_text``, and questions it does not know are kept as they are.
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

import numpy as np

from vmed.constants import SUMMARY_PROMPT
from vmed.data import phantom_text as T
from vmed.data.schema import Dialogue, Turn

__all__ = ["SUMMARY_TURNS", "SummaryTurn", "record_turns", "describe_records", "instruction_records"]

SummaryTurn = Literal["last", "none"]
SUMMARY_TURNS: tuple[SummaryTurn, ...] = ("last", "none")
"""``last``: the summary turn ends the dialogue (records without a summary keep their turns); ``none``: VQA turns only."""


def record_turns(
    rec: Dialogue, summary_turn: SummaryTurn = "last", summary_prompt: str = SUMMARY_PROMPT
) -> list[tuple[str, str]]:
    """The (question, answer) turns the model sees for ``rec``: its turns in order, then the summary turn.

    The summary turn, ``(summary_prompt, rec.summary)``, is added when ``summary_turn == "last"`` and the
    record has a summary. The evaluation asks exactly these questions (and scores the last answer against
    the summary); training encodes exactly these turns.
    """
    if summary_turn not in SUMMARY_TURNS:
        raise ValueError(f"summary_turn must be one of {list(SUMMARY_TURNS)}, got {summary_turn!r}")
    turns = [(t.question, t.answer) for t in rec.turns]
    if summary_turn == "last" and rec.summary:
        turns.append((summary_prompt, rec.summary))
    return turns


def describe_records(dialogues: Iterable[Dialogue]) -> list[Dialogue]:
    """Stage-1 records: one turn "Describe the image." -> the summary (open, question_type "SUMMARY").

    Records without a summary are skipped. Ids get a ``#describe`` suffix; image paths are kept as
    they are, so write the result beside the source JSONL (or use absolute image paths).
    """
    return [
        Dialogue(f"{d.id}#describe", d.image, [Turn(SUMMARY_PROMPT, d.summary, "open", "SUMMARY", "1")],
                 d.source, d.split, d.summary, dict(d.meta))
        for d in dialogues
        if d.summary
    ]


def instruction_records(dialogues: Iterable[Dialogue], seed: int = 0) -> list[Dialogue]:
    """Stage-2 records: single-turn, instruction-style variants of every turn plus one "describe" variant.

    Each known question is reworded (``phantom_text.PARAPHRASES``; unknown questions are kept), cycling
    through the wordings separately for every (question, answer) pair so that each wording keeps the
    original answer balance. Deterministic for a seed. Ids get ``#inst<k>`` suffixes. The describe
    wordings include the evaluation's ``SUMMARY_PROMPT`` itself.
    """
    rng = np.random.default_rng(seed)
    cursor: dict[tuple[str, str], int] = {}

    def reword(question: str, answer: str, options: Sequence[str]) -> str:
        key = (question, answer)
        if key not in cursor:
            cursor[key] = int(rng.integers(len(options)))
        cursor[key] += 1
        return options[cursor[key] % len(options)]

    out = []
    for d in dialogues:
        k = 0
        for t in d.turns:
            options = (t.question,) + T.PARAPHRASES.get(t.question, ())
            q = reword(t.question, t.answer, options)
            turn = Turn(q, t.answer, t.answer_type, t.question_type, "1", t.alternatives)
            out.append(Dialogue(f"{d.id}#inst{k}", d.image, [turn], d.source, d.split, d.summary, dict(d.meta)))
            k += 1
        if d.summary:
            q = reword(SUMMARY_PROMPT, "", T.DESCRIBE_PARAPHRASES)
            turn = Turn(q, d.summary, "open", "SUMMARY", "1")
            out.append(Dialogue(f"{d.id}#inst{k}", d.image, [turn], d.source, d.split, d.summary, dict(d.meta)))
    return out
