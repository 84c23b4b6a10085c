"""A small closed-question accuracy for the demo when the evaluation runner is not installed.

Every closed turn of every test record is asked with the earlier turns' reference answers as history
(the same context the stage-3 training saw), answered greedily, and compared after normalisation
(lower case, surrounding spaces and a final period removed). Prompts come from
``vmed.data.template.encode_prompt``, so the format is the training format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from vmed.data.schema import Dialogue

__all__ = ["normalize_answer", "QuestionItem", "closed_items", "greedy_answers", "accuracy"]


def normalize_answer(text: str) -> str:
    """Lower case, trimmed, without a final period."""
    return text.strip().lower().rstrip(".").strip()


@dataclass
class QuestionItem:
    """One question to ask: the image, the gold history before it, the question and its reference answer."""

    image: Any  # PIL.Image.Image
    history: list[tuple[str, str]]
    question: str
    reference: str
    record_id: str
    turn: int
    question_type: str | None


def closed_items(records: Sequence[Dialogue], images: Sequence[Any]) -> list[QuestionItem]:
    """The closed turns of ``records`` (with ``images[i]`` the image of ``records[i]``) as QuestionItems."""
    items = []
    for rec, image in zip(records, images):
        for j, t in enumerate(rec.turns):
            if t.answer_type == "closed":
                history = [(u.question, u.answer) for u in rec.turns[:j]]
                items.append(QuestionItem(image, history, t.question, t.answer, rec.id, j + 1, t.question_type))
    return items


@torch.no_grad()
def greedy_answers(model: Any, processor: Any, items: Sequence[QuestionItem], *, num_image_tokens: int,
                   batch_size: int = 32, max_new_tokens: int = 8) -> list[str]:
    """Greedy answers to ``items`` (left-padded batches; an answer ends at ``<|eot_id|>``)."""
    from vmed.data.template import encode_prompt

    tok = processor.tokenizer
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    pad = tok.pad_token_id
    model.eval()
    device = next(model.parameters()).device
    answers: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        prompts = [encode_prompt(tok, it.history, it.question, num_image_tokens=num_image_tokens) for it in batch]
        longest = max(len(p) for p in prompts)
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, longest - len(p) :] = torch.tensor(p)
            mask[row, longest - len(p) :] = 1
        pixels = processor.image_processor(images=[it.image for it in batch], return_tensors="pt")["pixel_values"]
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pixel_values=pixels.to(device=device, dtype=next(model.parameters()).dtype),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eot,
            pad_token_id=pad,
        )
        for row in out[:, longest:].tolist():
            if eot in row:
                row = row[: row.index(eot)]
            answers.append(tok.decode(row, skip_special_tokens=True))
    return answers


def accuracy(items: Sequence[QuestionItem], answers: Sequence[str]) -> float:
    """Share of answers equal to their reference after ``normalize_answer``."""
    if not items:
        return 0.0
    hits = sum(normalize_answer(a) == normalize_answer(it.reference) for it, a in zip(items, answers))
    return hits / len(items)
