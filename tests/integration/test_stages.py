"""The three stages on the tiny preset: exactly the intended parameters change, inputs are checked, outputs are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vmed.config import load_config
from vmed.errors import ConfigError

pytestmark = pytest.mark.integration

FAST = ["data.max_length=256", "optim.batch_size=4", "optim.max_steps=2", "optim.lr=1e-2",
        "runtime.logging_steps=1", "runtime.save_steps=0", "runtime.progress_bar=false", "runtime.report_to=none"]


def stage_config(tmp: Path, ph: Path, stage: int, *extra: str):
    items = [f"stage={stage}", f"output_dir={tmp / f'stage{stage}'}", f"data.train={ph / 'train.jsonl'}", *FAST]
    if stage == 1:
        items += ["model.preset=tiny", "data.records=describe", "policy.llm=frozen"]
    else:
        items += [f"init_from={tmp / f'stage{stage - 1}'}", "policy.llm=lora", "lora.r=4", "lora.alpha=8",
                  "data.records=" + ("instruction" if stage == 2 else "dialogue")]
    return load_config(None, items + list(extra))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from vmed.data.phantom import generate_phantoms
    from vmed.training.stages import run_stage

    tmp = tmp_path_factory.mktemp("stages")
    generate_phantoms(tmp / "ph", 20, seed=0)
    for stage in (1, 2, 3):
        result = run_stage(stage_config(tmp, tmp / "ph", stage, "data.validation=" + str(tmp / "ph" / "validation.jsonl")))
        assert result.completed
    return tmp


def _base_state():
    from vmed.model import build_preset

    model, _ = build_preset("tiny", seed=0)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_stage1_changes_only_the_projector(runs):
    from vmed.model.runs import load_run

    base = _base_state()
    model, _, manifest = load_run(runs / "stage1")
    assert manifest["stage"] == 1 and manifest["status"] == "complete" and manifest["adapter"] is None
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)
    projector_keys = {k for k in base if k.startswith("model.multi_modal_projector.")}
    assert changed == projector_keys


def test_stage2_changes_lora_and_projector_and_keeps_the_base_lm(runs):
    from safetensors.torch import load_file

    from vmed.model.runs import load_run

    base = _base_state()
    model, _, manifest = load_run(runs / "stage2")
    assert manifest["stage"] == 2 and manifest["adapter"] == "adapter"
    sd = model.state_dict()
    lora = {k: v for k, v in sd.items() if ".lora_" in k}
    assert lora and all(".language_model.layers." in k for k in lora)
    assert any(k.endswith("lora_B.default.weight") and v.abs().sum() > 0 for k, v in lora.items())  # B starts at 0
    for k, v in sd.items():
        if ".lora_" in k:
            continue
        plain = k.replace("base_model.model.", "", 1).replace(".base_layer", "")
        if plain.startswith("model.multi_modal_projector."):
            continue
        assert torch.equal(v, base[plain]), f"{plain} changed in stage 2"
    p1 = load_file(str(runs / "stage1" / "projector.safetensors"))
    p2 = load_file(str(runs / "stage2" / "projector.safetensors"))
    assert p1.keys() == p2.keys() and any(not torch.equal(p1[k], p2[k]) for k in p1)


def test_stage3_merges_stage2_and_trains_a_fresh_adapter(runs):
    from safetensors.torch import load_file

    manifest = json.loads((runs / "stage3" / "run_manifest.json").read_text())
    assert manifest["merged_adapters"] == ["merged_adapters/00"]
    assert manifest["parent"]["stage"] == 2
    a2 = load_file(str(runs / "stage2" / "adapter" / "adapter_model.safetensors"))
    merged = load_file(str(runs / "stage3" / "merged_adapters" / "00" / "adapter_model.safetensors"))
    assert a2.keys() == merged.keys() and all(torch.equal(a2[k], merged[k]) for k in a2)
    a3 = load_file(str(runs / "stage3" / "adapter" / "adapter_model.safetensors"))
    assert any(not torch.equal(a2[k], a3[k]) for k in a2)


def test_manifest_and_model_card(runs):
    manifest = json.loads((runs / "stage2" / "run_manifest.json").read_text())
    for key in ("config", "versions", "git_revision", "data_sha256", "base", "metrics", "parameters"):
        assert key in manifest
    assert manifest["base"]["kind"] == "preset" and manifest["base"]["preset"] == "tiny" and len(manifest["base"]["fingerprint"]) == 64
    assert {"torch", "transformers", "peft"} <= set(manifest["versions"])
    (path, digest), *_ = manifest["data_sha256"].items()
    import hashlib

    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    assert manifest["metrics"]["global_step"] == 2 and "eval_loss" in manifest["metrics"]
    assert manifest["parameters"]["lora"]["trainable"] > 0 and manifest["parameters"]["llm"]["trainable"] == 0
    card = (runs / "stage2" / "README.md").read_text()
    assert "stage 2" in card and "lora" in card and "vmed export" in card
    log = [json.loads(line) for line in (runs / "stage2" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2]


def test_stage3_continue_keeps_training_the_stage2_adapter(runs, tmp_path):
    from vmed.training.stages import run_stage

    cfg = stage_config(runs, runs / "ph", 3, "lora.previous=continue", f"output_dir={tmp_path / 'cont'}")
    run_stage(cfg)
    manifest = json.loads((tmp_path / "cont" / "run_manifest.json").read_text())
    assert manifest["merged_adapters"] == [] and manifest["adapter"] == "adapter"
    cfg_a = json.loads((tmp_path / "cont" / "adapter" / "adapter_config.json").read_text())
    assert cfg_a["r"] == 4


def test_inputs_are_checked_before_training(runs, tmp_path):
    from vmed.training.stages import run_stage

    ph = runs / "ph"
    with pytest.raises(ConfigError, match="does not exist"):
        run_stage(stage_config(tmp_path, ph, 2, f"init_from={tmp_path / 'missing'}"))
    with pytest.raises(ConfigError, match="different base model"):
        run_stage(stage_config(runs, ph, 2, "model.preset=tiny", "model.seed=1", f"output_dir={tmp_path / 'x'}"))
    with pytest.raises(ConfigError, match="starts from a stage-2 run.*stage-1 run"):
        run_stage(stage_config(runs, ph, 3, f"init_from={runs / 'stage1'}", f"output_dir={tmp_path / 'y'}"))
    with pytest.raises(ConfigError, match="needs init_from"):
        run_stage(load_config(None, ["stage=2", f"data.train={ph / 'train.jsonl'}"]))
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    with pytest.raises(ConfigError, match="no run_manifest.json"):
        run_stage(stage_config(tmp_path, ph, 2, f"init_from={not_a_run}"))
    # a run whose base weights no longer match what its manifest recorded
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(runs / "stage1", forged)
    m = json.loads((forged / "run_manifest.json").read_text())
    m["base"]["fingerprint"] = "0" * 64
    (forged / "run_manifest.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="fingerprints differ"):
        run_stage(stage_config(tmp_path, ph, 2, f"init_from={forged}", f"output_dir={tmp_path / 'z'}"))


def test_bf16_flag_runs_on_cpu(runs, tmp_path):
    from vmed.training.stages import run_stage

    result = run_stage(stage_config(tmp_path, runs / "ph", 1, "runtime.precision=bf16", "optim.max_steps=1"))
    assert result.completed and result.metrics["global_step"] == 1
    assert torch.isfinite(torch.tensor(result.metrics["train_loss"]))


def test_full_llm_policy_saves_and_reloads_the_trained_lm(runs, tmp_path):
    from vmed.model.runs import load_run
    from vmed.training.stages import run_stage

    cfg = stage_config(runs, runs / "ph", 2, "policy.llm=full", f"output_dir={tmp_path / 'full'}")
    run_stage(cfg)
    manifest = json.loads((tmp_path / "full" / "run_manifest.json").read_text())
    assert manifest["weights"] == "weights.safetensors" and manifest["adapter"] is None
    base = _base_state()
    model, _, _ = load_run(tmp_path / "full")
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, base[k])}
    assert any(k.startswith("model.language_model.layers.") for k in changed)
    assert not any(k.startswith("model.vision_tower.") for k in changed)


def test_weights_trained_in_an_earlier_stage_are_carried_to_later_runs(runs, tmp_path):
    """A vision tower trained in stage 1 and frozen in stages 2 and 3 is still in every later run (and its export)."""
    from vmed.model.runs import load_run
    from vmed.training.stages import run_stage

    ph = runs / "ph"
    run_stage(stage_config(tmp_path, ph, 1, "policy.vision=train"))
    for stage in (2, 3):
        run_stage(stage_config(tmp_path, ph, stage))
    base = _base_state()
    trained, _, _ = load_run(tmp_path / "stage1")
    vision = {k: v for k, v in trained.state_dict().items() if k.startswith("model.vision_tower.")}
    assert any(not torch.equal(v, base[k]) for k, v in vision.items())  # stage 1 really trained it
    for stage in (2, 3):
        later, _, manifest = load_run(tmp_path / f"stage{stage}", merge=True)
        assert manifest["weights"] == "weights.safetensors"
        sd = later.state_dict()
        assert all(torch.equal(sd[k], v) for k, v in vision.items()), f"stage {stage} lost the stage-1 vision tower"
