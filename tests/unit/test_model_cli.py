"""`vmed model init` and `vmed model info`."""

from __future__ import annotations

import json

from vmed.cli import main


def test_model_init_then_info(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["model", "init", "--preset", "tiny", "--output", str(out), "--seed", "3"]) == 0
    assert "16 image tokens per image" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "vmed_model.json").is_file()

    assert main(["model", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "LlavaForConditionalGeneration" in text
    assert "16 x <image>" in text and "strategy default" in text
    assert "<|start_header_id|>" in text

    assert main(["model", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_image_tokens"] == 16
    assert info["base"]["preset"] == "tiny" and info["base"]["seed"] == 3
    assert info["parameters"]["total"] == sum(v for k, v in info["parameters"].items() if k != "total")


def test_unknown_preset_is_a_one_line_user_error(tmp_path, capsys):
    assert main(["model", "init", "--preset", "huge", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown model preset 'huge'; choose one of: tiny, small, vmed-llama3-8b, vmed-llama3-8b-instruct"
    assert not (tmp_path / "x").exists()


def test_info_on_a_missing_directory_is_a_user_error(tmp_path, capsys):
    assert main(["model", "info", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help(capsys):
    for argv in (["model", "--help"], ["model", "init", "--help"], ["model", "info", "--help"]):
        assert main(argv) == 0
        assert "Usage" in capsys.readouterr().out
