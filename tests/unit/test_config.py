"""Typed configs: YAML + dotted overrides, unknown keys and wrong types fail with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmed.config import LM_LORA_TARGETS, TrainConfig, describe_keys, load_config
from vmed.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("# vmed train --config s.yaml\nstage: 2\ninit_from: runs/s1\noptim:\n  lr: 1e-3\n  batch_size: 4\n")
    cfg = load_config(f, ["optim.lr=5e-4", "lora.r=16", "data.group_by_length=false", "runtime.precision=bf16"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.stage == 2 and cfg.init_from == "runs/s1"
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.batch_size == 4
    assert cfg.lora.r == 16 and cfg.lora.target_modules == LM_LORA_TARGETS
    assert cfg.data.group_by_length is False
    assert cfg.runtime.precision == "bf16"


def test_int_is_accepted_for_float_and_null_for_optional():
    cfg = load_config(None, ["optim.lr=1", "optim.projector_lr=null", "data.validation=null"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.projector_lr is None


def test_unknown_key_names_it_and_lists_valid_ones(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("optim:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "optim.learning_rate" in msg and "optim.lr" in msg and "optim.batch_size" in msg


def test_unknown_override_and_bad_values():
    with pytest.raises(ConfigError, match="unknown config key 'lora.rank'.*lora.r"):
        load_config(None, ["lora.rank=8"])
    with pytest.raises(ConfigError, match="'runtime.precision'.*'bf16'"):
        load_config(None, ["runtime.precision=bf17"])
    with pytest.raises(ConfigError, match="'optim.batch_size'.*expected int"):
        load_config(None, ["optim.batch_size=two"])
    with pytest.raises(ConfigError, match="'stage'"):
        load_config(None, ["stage=4"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["stage.x=1"])


def test_string_fields_keep_text():
    cfg = load_config(None, ["output_dir=2024"])
    assert cfg.output_dir == "2024"


def test_describe_keys_covers_every_leaf_with_help():
    rows = describe_keys()
    keys = {r[0] for r in rows}
    assert {"stage", "optim.lr", "lora.target_modules", "runtime.resume", "data.records"} <= keys
    assert all(r[3] for r in rows), [r[0] for r in rows if not r[3]]


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("stage*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_stage_configs_load_and_start_with_their_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "vmed train --config " + str(path.relative_to(REPO)) in first
    cfg = load_config(path)
    assert cfg.stage in (1, 2, 3)
    assert (cfg.init_from is None) == (cfg.stage == 1)
