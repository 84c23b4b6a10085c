"""Done-when check of the foundation: the tiny model trains one step on a phantom batch, answers,
and its saved directory reloads in plain transformers (no vmed imports) with the same logits."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from vmed.constants import IGNORE_INDEX
from vmed.data.phantom import generate_phantoms
from vmed.data.schema import read_jsonl, resolve_image
from vmed.data.template import encode_dialogue, encode_prompt
from vmed.imaging import load_image
from vmed.model import build_preset, num_image_tokens, save_model

pytestmark = pytest.mark.integration

PLAIN_LOGITS = textwrap.dedent(
    """
    import sys
    class _NoVmed:
        def find_spec(self, name, path=None, target=None):
            if name == "vmed" or name.startswith("vmed."):
                raise ImportError("vmed must not be imported here")
    sys.meta_path.insert(0, _NoVmed())
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(sys.argv[1]).eval()
    AutoProcessor.from_pretrained(sys.argv[1])
    with torch.no_grad():
        torch.save(model(**torch.load(sys.argv[2])).logits, sys.argv[3])
    """
)


def _pad(encoded, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded dialogues into [B, L] tensors."""
    length = max(len(e) for e in encoded)
    rows = [(e.input_ids, e.labels, e.attention_mask, length - len(e)) for e in encoded]
    return {
        "input_ids": torch.tensor([ids + [pad_id] * n for ids, _, _, n in rows]),
        "labels": torch.tensor([labels + [IGNORE_INDEX] * n for _, labels, _, n in rows]),
        "attention_mask": torch.tensor([mask + [0] * n for _, _, mask, n in rows]),
    }


def test_tiny_model_trains_one_step_answers_and_reloads_in_plain_transformers(tmp_path):
    model, processor = build_preset("tiny", seed=0)
    tokenizer = processor.tokenizer
    n_img = num_image_tokens(model)

    paths = generate_phantoms(tmp_path / "phantoms", n=10, seed=0)
    records = read_jsonl(paths["train"])[:2]
    images = [load_image(resolve_image(r, paths["train"])) for r in records]
    encoded = [encode_dialogue(tokenizer, [(t.question, t.answer) for t in r.turns], num_image_tokens=n_img) for r in records]
    batch = _pad(encoded, tokenizer.pad_token_id)
    batch["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    assert batch["pixel_values"].shape == (2, 3, 64, 64)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 2 * n_img

    # stage-1 policy: vision tower and LM frozen, projector trained
    projector = model.model.multi_modal_projector
    for p in model.parameters():
        p.requires_grad_(False)
    for p in projector.parameters():
        p.requires_grad_(True)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-2)

    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    trainable = {f"model.multi_modal_projector.{k}" for k, _ in projector.named_parameters()}
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    optimizer.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        assert changed == (name in trainable), name

    # it answers a question about an image
    model.eval()
    prompt = encode_prompt(tokenizer, [], records[0].turns[0].question, num_image_tokens=n_img)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            pixel_values=batch["pixel_values"][:1],
            max_new_tokens=8,
            do_sample=False,
        )
    answer = out[0, len(prompt) :].tolist()
    assert len(answer) >= 1 and isinstance(tokenizer.decode(answer, skip_special_tokens=True), str)

    # saved, then reloaded without vmed: same logits on the same batch
    out_dir = save_model(model, processor, tmp_path / "model")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.save(inputs, tmp_path / "inputs.pt")
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_LOGITS, str(out_dir), str(tmp_path / "inputs.pt"), str(tmp_path / "logits.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5, rtol=0)
