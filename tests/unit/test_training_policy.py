"""Stage policies, LoRA targets, precision refusals, the collator/sampler and checkpoint bookkeeping (no training)."""

from __future__ import annotations

import pytest
import torch

from vmed.config import LoraConfigSpec, PolicyConfig, load_config
from vmed.constants import IGNORE_INDEX
from vmed.data.collate import (
    DialogueCollator,
    LengthGroupedSampler,
    padding_fraction,
    random_batches,
)
from vmed.errors import ConfigError
from vmed.training.checkpoint import COMPLETE_MARKER, latest_complete_checkpoint, remove_incomplete_checkpoints
from vmed.training.policy import apply_policy, count_parameters, format_policy, part_of


@pytest.fixture(scope="module")
def tiny():
    from vmed.model import build_preset

    return build_preset("tiny", seed=0)


def _trainable_parts(model) -> set[str]:
    return {part_of(n) for n, p in model.named_parameters() if p.requires_grad}


def test_stage1_policy_trains_only_the_projector(tiny):
    model, _ = tiny
    model = apply_policy(model, PolicyConfig(vision="frozen", projector="train", llm="frozen"), LoraConfigSpec())
    assert _trainable_parts(model) == {"projector"}
    counts = count_parameters(model)
    assert counts["projector"].trainable == counts["projector"].total > 0
    assert counts["llm"].trainable == 0 and counts["vision"].trainable == 0
    text = format_policy(PolicyConfig(), counts)
    assert "projector train" in text and f"{counts['projector'].trainable:,}" in text


def test_lora_policy_targets_only_the_language_model():
    from vmed.model import build_preset

    model, _ = build_preset("tiny", seed=0)
    peft_model = apply_policy(model, PolicyConfig(llm="lora"), LoraConfigSpec(r=4, alpha=8))
    lora_modules = {n.split(".lora_")[0] for n, _ in peft_model.named_parameters() if ".lora_" in n}
    assert lora_modules and all(".language_model.layers." in n for n in lora_modules)
    kinds = {n.rsplit(".", 1)[1] for n in lora_modules}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert _trainable_parts(peft_model) == {"lora", "projector"}
    counts = count_parameters(peft_model)
    assert counts["lora"].trainable > 0 and counts["llm"].trainable == 0


def test_lora_targets_outside_the_lm_or_matching_nothing_are_refused():
    from vmed.model import build_preset

    model, _ = build_preset("tiny", seed=0)
    with pytest.raises(ConfigError, match="outside the language model"):
        apply_policy(model, PolicyConfig(llm="lora"), LoraConfigSpec(target_modules=r".*\.q_proj"))
    with pytest.raises(ConfigError, match="matches no module"):
        apply_policy(model, PolicyConfig(llm="lora"), LoraConfigSpec(target_modules=r"nothing\.here"))


def test_full_llm_policy(tiny):
    model, _ = tiny
    apply_policy(model, PolicyConfig(vision="frozen", projector="frozen", llm="full"), LoraConfigSpec())
    assert _trainable_parts(model) == {"llm"}


def test_qlora_refuses_cpu_with_a_clear_message(monkeypatch):
    from vmed.training.trainer import check_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(None, ["runtime.quantization=4bit", "policy.llm=lora"])
    with pytest.raises(ConfigError, match="QLoRA.*CUDA GPU"):
        check_precision(cfg)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        check_precision(load_config(None, ["runtime.precision=fp16"]))
    check_precision(load_config(None, ["runtime.precision=bf16"]))  # bf16 is allowed on CPU


def test_qlora_without_bitsandbytes_is_refused(monkeypatch):
    import importlib.util

    from vmed.training.trainer import check_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install bitsandbytes"):
        check_precision(load_config(None, ["runtime.quantization=4bit", "policy.llm=lora"]))


def test_qlora_config_is_nf4_with_the_vision_tower_projector_and_lm_head_kept():
    from transformers import BitsAndBytesConfig

    from vmed.model import build_preset
    from vmed.training.quantize import qlora_config

    cfg = qlora_config()
    assert isinstance(cfg, BitsAndBytesConfig)
    assert cfg.load_in_4bit and not cfg.load_in_8bit and cfg.quantization_method() == "nf4"
    assert cfg.bnb_4bit_use_double_quant and cfg.bnb_4bit_compute_dtype == torch.bfloat16
    # what transformers would quantize: the Linear layers whose names contain none of the skip names
    model, _ = build_preset("tiny", seed=0)
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    quantized = [n for n in linear if not any(s in n for s in cfg.llm_int8_skip_modules)]
    assert quantized and all(n.startswith("model.language_model.layers.") for n in quantized)
    assert any("vision_tower" in n for n in linear) and any("multi_modal_projector" in n for n in linear)


def test_collator_pads_right_and_masks_labels():
    items = [
        {"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([-100, 2, 3]), "attention_mask": torch.ones(3, dtype=torch.long),
         "pixel_values": torch.zeros(3, 4, 4)},
        {"input_ids": torch.tensor([4]), "labels": torch.tensor([4]), "attention_mask": torch.ones(1, dtype=torch.long)},
    ]
    batch = DialogueCollator(pad_token_id=9)(items)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["pixel_values"].shape == (1, 3, 4, 4)


def test_length_grouping_reduces_padding_and_sampler_is_deterministic_per_epoch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 400, (500,), generator=g).tolist()
    s = LengthGroupedSampler(lengths, 8, seed=3)
    grouped = padding_fraction(lengths, s.batches())
    rand = padding_fraction(lengths, random_batches(len(lengths), 8, torch.Generator().manual_seed(1)))
    assert grouped < 0.1 < rand
    first = list(s)
    assert sorted(first) == list(range(500))
    assert list(s) == first  # same epoch, same order (what a resumed run sees)
    assert list(LengthGroupedSampler(lengths, 8, seed=3)) == first  # a fresh sampler (a resumed process) too
    s.set_epoch(1)
    assert list(s) != first
    assert list(LengthGroupedSampler(lengths, 8, seed=4)) != first
    # every consecutive group of batch_size indices is one length-grouped batch; the longest sequence is in the first
    batches = [first[i : i + 8] for i in range(0, 500, 8)]
    assert padding_fraction(lengths, batches) == pytest.approx(grouped, abs=1e-12)
    assert max(lengths) in [lengths[i] for i in batches[0]]
    assert len(batches[-1]) == 500 % 8  # the one short batch is last


def test_sampler_is_transformers_length_grouping_with_shuffled_batches():
    from transformers.trainer_pt_utils import LengthGroupedSampler as HFSampler, get_length_grouped_indices

    lengths = torch.randint(20, 400, (403,), generator=torch.Generator().manual_seed(5)).tolist()
    s = LengthGroupedSampler(lengths, 8, seed=2)
    assert isinstance(s, HFSampler)
    hf = get_length_grouped_indices(lengths, 8, mega_batch_mult=50, generator=torch.Generator().manual_seed(2 * 1_000_003))
    hf_batches = [hf[i : i + 8] for i in range(0, len(hf), 8)]
    ours = s.batches()
    assert ours[0] == hf_batches[0] and ours[-1] == hf_batches[-1]
    assert sorted(map(tuple, ours)) == sorted(map(tuple, hf_batches))  # the same batches ...
    assert ours != hf_batches  # ... in another order (transformers' runs longest to shortest within a mega-batch)


def test_incomplete_checkpoints_are_ignored_and_removed(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainable.safetensors").write_bytes(b"x")
        if complete:
            (d / COMPLETE_MARKER).write_text("{}")
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    removed = remove_incomplete_checkpoints(tmp_path)
    assert removed == [tmp_path / "checkpoint-6"] and not (tmp_path / "checkpoint-6").exists()
    assert latest_complete_checkpoint(tmp_path / "nothing") is None
