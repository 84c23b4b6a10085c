"""The README.md of an export states what the directory really holds: system prompt, image preprocessing, base."""

from __future__ import annotations

from vmed.constants import DEFAULT_SYSTEM_PROMPT


def _manifest():
    return {"stage": 3, "base": {"kind": "preset", "preset": "tiny", "seed": 0}, "config": {"lora": {"r": 8}}}


def test_card_of_a_base_plus_adapter_export_names_its_base_prompt_and_padding(tmp_path):
    from vmed.model import build_preset
    from vmed.training.export import write_export_card

    _, processor = build_preset("tiny")
    export = {"from_run": "/runs/s3", "merged": False, "layout": "base+adapter", "base": "base", "adapter": "adapter"}
    text = write_export_card(tmp_path, _manifest(), export, processor).read_text()
    assert f"`base_model_name_or_path` is `{tmp_path.resolve() / 'base'}`" in text
    assert DEFAULT_SYSTEM_PROMPT in text and "inserts the system prompt" in text
    assert "padded to a square" in text and "resized to 64 px" in text
    assert f"--enable-lora --lora-modules vmed={tmp_path.resolve() / 'adapter'} --max-lora-rank 8" in text
    assert f'PeftModel.from_pretrained(model, "{tmp_path.resolve() / "adapter"}")' in text


def test_card_of_a_merged_centre_crop_export_says_so(tmp_path):
    from vmed.model import build_preset
    from vmed.training.export import write_export_card

    _, processor = build_preset("tiny", pad_to_square=False)
    processor.chat_template = "{{ messages[0]['content'] }}"  # an old template without the default system prompt
    text = write_export_card(tmp_path, _manifest(), {"from_run": "/runs/s3", "merged": True}, processor).read_text()
    assert "centre 64 px square cropped" in text and "padded" not in text
    assert "adds no system prompt" in text and DEFAULT_SYSTEM_PROMPT in text
    assert f"vllm serve {tmp_path.resolve()} --chat-template" in text and "--enable-lora" not in text
    assert "every LoRA adapter merged in" in text
