"""Padding fraction of training batches on the real VQA-RAD dialogues: length-grouped vs random batches, side by side.

Run:  .venv/bin/python benchmarks/padding.py [--data /work/shared/data/vqa-rad] [--batch 16] [--image-tokens 576]

The VQA-RAD training questions are turned into per-image dialogues with ``vmed data convert --format vqa-rad``
(when that command fails, the benchmark groups ``trainset.json`` rows by image itself and says so). Every dialogue is
encoded by ``vmed.data.template.encode_dialogue`` with the tiny preset's offline tokenizer (the Llama-3 tokenizer
needs a download; the tiny BPE splits English into somewhat more pieces, so text lengths are a bit longer than with
Llama-3) and ``--image-tokens`` image tokens (576: CLIP-L/336, the paper recipe). Batches are formed the way
training forms them (``vmed.data.collate``): shuffled, or by the training sampler ``LengthGroupedSampler``
(transformers' length grouping in mega-batches of 50 batches, seeded per epoch).
Padding fraction = padding slots / all slots of the padded batches, averaged over 5 shuffles.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch

from vmed.constants import DEFAULT_SYSTEM_PROMPT
from vmed.data.collate import LengthGroupedSampler, padding_fraction, random_batches
from vmed.data.template import encode_dialogue


def dialogues_via_convert(data: Path, work: Path) -> list[list[tuple[str, str]]] | None:
    """Turns of every training dialogue from ``vmed data convert``, or None when the command fails."""
    out = work / "converted"
    cmd = [sys.executable, "-m", "vmed", "data", "convert", "--format", "vqa-rad", "--input", str(data), "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not (out / "train.jsonl").is_file():
        print(f"(vmed data convert failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})")
        return None
    from vmed.data.schema import read_jsonl

    return [[(t.question, t.answer) for t in d.turns] for d in read_jsonl(out / "train.jsonl")]


def dialogues_by_image(data: Path) -> list[list[tuple[str, str]]]:
    """Fallback: ``trainset.json`` rows grouped by image, in file order."""
    rows = json.loads((data / "trainset.json").read_text())
    groups: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
    for r in rows:
        groups.setdefault(r["image_name"], []).append((str(r["question"]), str(r["answer"])))
    return list(groups.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="padding fraction: length-grouped vs random batches on VQA-RAD")
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/vqa-rad"))
    p.add_argument("--batch", type=int, default=16, help="sequences per batch (the recipe's per-device batch)")
    p.add_argument("--image-tokens", type=int, default=576)
    p.add_argument("--max-length", type=int, default=2048)
    args = p.parse_args(argv)
    if not (args.data / "trainset.json").is_file():
        print(f"VQA-RAD not found at {args.data} (expected trainset.json there)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        dialogues = dialogues_via_convert(args.data, Path(tmp))
    source = "vmed data convert --format vqa-rad (train split)"
    if dialogues is None:
        dialogues = dialogues_by_image(args.data)
        source = "trainset.json rows grouped by image (fallback)"
    from vmed.model.tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    lengths = [
        len(encode_dialogue(tokenizer, turns, num_image_tokens=args.image_tokens, system=DEFAULT_SYSTEM_PROMPT,
                            max_length=args.max_length).input_ids)
        for turns in dialogues
    ]
    grouped, rand = [], []
    for seed in range(5):
        grouped.append(padding_fraction(lengths, LengthGroupedSampler(lengths, args.batch, seed=seed).batches()))
        rand.append(padding_fraction(lengths, random_batches(len(lengths), args.batch, torch.Generator().manual_seed(seed))))
    g, r = sum(grouped) / 5, sum(rand) / 5
    turns = [len(t) for t in dialogues]
    print(f"data: {source}: {len(dialogues)} dialogues, {sum(turns)} turns (1-{max(turns)} per image)")
    print(f"sequence length (tokens, {args.image_tokens} image tokens included): min {min(lengths)}, "
          f"mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}; batch {args.batch}")
    print(f"padding fraction, random batches:         {r:.3f}")
    print(f"padding fraction, length-grouped batches: {g:.3f}  (target <= 0.10; {r / max(g, 1e-9):.1f}x less padding)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
