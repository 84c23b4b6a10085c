"""Training dataset and collator: dialogue records -> padded batches for ``LlavaForConditionalGeneration``.

Every record is encoded once, up front, by ``encode_record``: the turns ``vmed.data.records.record_turns``
gives (the VQA turns, then by default the summary turn) in one sequence through
``vmed.data.template.encode_dialogue`` (labels on assistant tokens only), so sequence lengths are known before training: the
length-grouped sampler uses them and the padding fraction can be reported. The sampler is transformers'
``LengthGroupedSampler`` plus a per-epoch seed and a batch shuffle (its docstring says why each was needed). Images are loaded
lazily through ``vmed.imaging.load_image`` and the processor's image processor (and kept in memory
when the whole set of pixel tensors is small).

Batch layout (B sequences, longest L, ``n_img`` of them with an image)::

    input_ids       LongTensor [B, L]   right-padded with the tokenizer's pad id
    attention_mask  LongTensor [B, L]   1 for real tokens, 0 for padding
    labels          LongTensor [B, L]   IGNORE_INDEX on padding and non-assistant tokens
    pixel_values    FloatTensor [n_img, 3, H, W]   (absent when no sequence of the batch has an image)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Dataset
from transformers.trainer_pt_utils import LengthGroupedSampler as _HFLengthGroupedSampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from vmed.constants import DEFAULT_SYSTEM_PROMPT, IGNORE_INDEX
from vmed.data.records import SummaryTurn, record_turns
from vmed.data.schema import Dialogue, resolve_image
from vmed.data.template import encode_dialogue
from vmed.imaging import load_image

__all__ = [
    "encode_record",
    "DialogueDataset",
    "DialogueCollator",
    "LengthGroupedSampler",
    "random_batches",
    "padding_fraction",
]

_PIXEL_CACHE_BYTES = 256 * 2**20
"""Decoded pixel tensors are kept in memory when all of them together need less than this."""


def encode_record(
    tokenizer: Any,
    rec: Dialogue,
    *,
    num_image_tokens: int,
    max_length: int | None,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    summary_turn: SummaryTurn = "last",
) -> tuple[Any, bool]:
    """``rec`` as one training sequence: (its ``vmed.data.template.EncodedDialogue``, whether it ends with the summary turn).

    The turns are ``record_turns(rec, summary_turn)``. When they do not fit in ``max_length``, whole turns
    go: with a summary turn, the question turns just before it go first (latest first) so that the
    sequence still ends with the summary; the summary itself goes only when not even it fits after the
    system prompt and the image. Without one, trailing turns go. An answer is never cut.
    """
    turns = record_turns(rec, summary_turn)
    enc = encode_dialogue(tokenizer, turns, num_image_tokens=num_image_tokens, system=system, max_length=max_length)
    with_summary = summary_turn == "last" and bool(rec.summary)
    if not enc.dropped_turns or not with_summary:
        return enc, with_summary
    questions, summary = turns[:-1], turns[-1]
    for keep in range(min(enc.num_turns, len(questions)), -1, -1):
        kept = encode_dialogue(tokenizer, [*questions[:keep], summary], num_image_tokens=num_image_tokens, system=system)
        if max_length is None or len(kept) <= max_length:
            kept.dropped_turns = len(turns) - (keep + 1)
            return kept, True
    return enc, False


class DialogueDataset(Dataset):
    """Encoded dialogues plus their images.

    Args:
        records: dialogue records; ``image`` paths are resolved against ``jsonl_path``'s folder.
        jsonl_path: the file the records came from (for image paths and error messages).
        processor: a ``LlavaProcessor`` (its tokenizer and image processor are used).
        num_image_tokens: image tokens per image (``vmed.model.num_image_tokens(model)``).
        max_length: longest sequence; turns that do not fit are dropped (see ``encode_record``) and counted.
        system: the system prompt of every sequence.
        summary_turn: ``last`` (each sequence of a record with a summary ends with the summary turn) or ``none``.

    ``dropped_turns`` counts the turns left out by ``max_length``; ``summary_turns`` the sequences that end
    with a summary turn.
    """

    def __init__(
        self,
        records: Sequence[Dialogue],
        jsonl_path: str | os.PathLike,
        processor: Any,
        *,
        num_image_tokens: int,
        max_length: int | None,
        system: str | None = DEFAULT_SYSTEM_PROMPT,
        summary_turn: SummaryTurn = "last",
    ) -> None:
        self.processor = processor
        self.jsonl_path = Path(jsonl_path)
        self.items: list[tuple[Any, Path | None]] = []
        self.dropped_turns = 0
        self.summary_turns = 0
        for rec in records:
            image = resolve_image(rec, self.jsonl_path)
            enc, ends_with_summary = encode_record(
                processor.tokenizer,
                rec,
                num_image_tokens=num_image_tokens if image is not None else 0,
                max_length=max_length,
                system=system,
                summary_turn=summary_turn,
            )
            self.dropped_turns += enc.dropped_turns
            self.summary_turns += int(ends_with_summary)
            self.items.append((enc, image))
        self.lengths = [len(enc.input_ids) for enc, _ in self.items]
        self._pixels: dict[Path, torch.Tensor] = {}
        self._cache_ok: bool | None = None

    def __len__(self) -> int:
        return len(self.items)

    def pixel_values(self, path: Path) -> torch.Tensor:
        """The image at ``path`` as the model sees it: FloatTensor [3, H, W]."""
        cached = self._pixels.get(path)
        if cached is not None:
            return cached

        image = load_image(path)
        pixels = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
        if self._cache_ok is None:
            n_images = len({p for _, p in self.items if p is not None})
            self._cache_ok = pixels.numel() * pixels.element_size() * n_images <= _PIXEL_CACHE_BYTES
        if self._cache_ok:
            self._pixels[path] = pixels
        return pixels

    def __getitem__(self, i: int) -> dict[str, Any]:
        enc, image = self.items[i]
        item: dict[str, Any] = {
            "input_ids": torch.tensor(enc.input_ids, dtype=torch.long),
            "labels": torch.tensor(enc.labels, dtype=torch.long),
            "attention_mask": torch.tensor(enc.attention_mask, dtype=torch.long),
        }
        if image is not None:
            item["pixel_values"] = self.pixel_values(image)
        return item


@dataclass
class DialogueCollator:
    """Right-pads a list of dataset items into one batch (see the module docstring for shapes)."""

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        batch_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        batch_labels = torch.full((len(items), longest), IGNORE_INDEX, dtype=torch.long)
        batch_mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            batch_ids[row, :n] = it["input_ids"]
            batch_labels[row, :n] = it["labels"]
            batch_mask[row, :n] = it["attention_mask"]
        batch = {"input_ids": batch_ids, "attention_mask": batch_mask, "labels": batch_labels}
        pixels = [it["pixel_values"] for it in items if "pixel_values" in it]
        if pixels:
            batch["pixel_values"] = torch.stack(pixels)
        return batch


def random_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Plain shuffled batches (the baseline for the padding fraction)."""
    order = torch.randperm(n, generator=generator).tolist()
    return [order[j : j + batch_size] for j in range(0, n, batch_size)]


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the token slots in padded batches that are padding: 1 - real tokens / (B * longest) summed."""
    real = sum(lengths[i] for b in batches for i in b)
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 0.0 if slots == 0 else 1.0 - real / slots


class LengthGroupedSampler(_HFLengthGroupedSampler):
    """transformers' ``LengthGroupedSampler`` over known lengths, with a seed per epoch and whole batches shuffled.

    The grouping is transformers' ``get_length_grouped_indices`` (shuffle, sort mega-batches of 50 batches by length,
    the longest sequence in the first batch). Two things are added, each measured: the order is drawn from
    ``seed + epoch`` (transformers' sampler draws from a generator that no checkpoint saves, so a resumed epoch got
    another order), and the full batches after the first come in random order with a short one last (transformers
    yields each mega-batch longest to shortest). ``mega_batch_mult`` is fixed at 50: transformers' default of
    ``n / (4 * batch)`` gave 0.070 padding on VQA-RAD at batch 16 against 0.017 (``benchmarks/padding.py``).
    The Trainer (or accelerate, per process) cuts the index stream into ``batch_size`` pieces: exactly these batches.
    """

    MEGA_BATCH_MULT = 50

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        super().__init__(batch_size, lengths=list(lengths))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in training order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=self.MEGA_BATCH_MULT, generator=g)
        cut = [order[j : j + self.batch_size] for j in range(0, len(order), self.batch_size)]
        full = [b for b in cut if len(b) == self.batch_size]
        short = [b for b in cut if len(b) < self.batch_size]
        if len(full) > 1:  # the first batch holds the longest sequence (an early out-of-memory); the rest shuffled
            full = full[:1] + [full[1 + k] for k in torch.randperm(len(full) - 1, generator=g).tolist()]
        return full + short

    def __iter__(self) -> Iterator[int]:
        for b in self.batches():
            yield from b
