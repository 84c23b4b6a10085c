"""Every shipped recipe runs: each config under ``configs/`` is launched as a user would (``vmed train --config X``),
chained stage 1 -> 2 -> 3, and each stage-3 run is exported and evaluated.

The test works in a fresh folder laid out as the configs expect (``data/<name>/{train,validation,test}.jsonl``
beside ``runs/``), so every path a config names is used exactly as written. Only two dotted overrides are given:
``model.preset=tiny`` in stage 1 (the 8B base cannot be downloaded here) and ``optim.max_steps`` (a handful of
steps). A config that names a file the converters do not write, a key the config schema does not know, or a run
its chain does not produce fails here.

Data: ``data/vqa-rad`` is real VQA-RAD converted with ``vmed data convert --format vqa-rad`` when
``../shared/data/vqa-rad`` is present; every other dataset folder holds phantoms (``vmed data phantom``), which have
the same record layout and summaries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vmed.cli import main
from vmed.config import load_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
VQA_RAD = Path(os.environ.get("VMED_SHARED_DATA", REPO.parent / "shared" / "data")) / "vqa-rad"
STEPS = "optim.max_steps=2"


def _recipes() -> dict[str, list[Path]]:
    """Each recipe folder's stage chain: stage 1, stage 2, then every stage-3 config (all of them start from stage 2)."""
    chains = {}
    for folder in sorted(p for p in CONFIGS.iterdir() if p.is_dir() and list(p.glob("stage*.yaml"))):
        stages = {int(load_config(p).stage): [] for p in folder.glob("stage*.yaml")}
        for p in sorted(folder.glob("stage*.yaml")):
            stages[load_config(p).stage].append(p)
        assert sorted(stages) == [1, 2, 3] and len(stages[1]) == len(stages[2]) == 1, f"{folder}: expected stage1, stage2 and stage3 configs"
        chains[folder.name] = stages[1] + stages[2] + stages[3]
    return chains


def _data_dirs(chain: list[Path]) -> set[Path]:
    """The data folders a chain's configs read (relative, as written in the YAML)."""
    dirs = set()
    for path in chain:
        cfg = load_config(path)
        for p in (cfg.data.train, cfg.data.validation):
            if p:
                dirs.add(Path(p).parent)
    return dirs


def _convert(folder: Path) -> str:
    """Fill ``folder`` (a config's data folder) as a user would: real VQA-RAD where present, else phantoms."""
    if folder.name == "vqa-rad" and VQA_RAD.is_dir():
        assert main(["data", "convert", "--format", "vqa-rad", "--input", str(VQA_RAD), "--output", str(folder)]) == 0
        # the converter carves validation.jsonl from train (by image, seeded); no test-side carving, so a missing split fails
        assert (folder / "validation.jsonl").is_file(), "vmed data convert --format vqa-rad wrote no validation.jsonl"
        return "real VQA-RAD"
    assert main(["data", "phantom", "--output", str(folder), "--n", "40", "--seed", "0", "--size", "32"]) == 0
    return "phantoms"


@pytest.mark.parametrize("recipe", sorted(_recipes()))
def test_every_shipped_config_runs_as_written(recipe, tmp_path, monkeypatch, capsys):
    chain = _recipes()[recipe]
    monkeypatch.chdir(tmp_path)  # the configs' relative paths (data/..., runs/...) resolve here, as in a checkout
    sources = {str(d): _convert(d) for d in sorted(_data_dirs(chain))}
    capsys.readouterr()
    for path in chain:
        cfg = load_config(path)
        overrides = [STEPS] + (["model.preset=tiny"] if cfg.stage == 1 else [])
        code = main(["train", "--config", str(path), *overrides])
        out = capsys.readouterr()
        assert code == 0, f"vmed train --config {path.relative_to(REPO)} {' '.join(overrides)} failed:\n{out.err[-3000:]}"
        manifest = json.loads((Path(cfg.output_dir) / "run_manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["stage"] == cfg.stage
        if cfg.data.records == "dialogue" and cfg.data.summary_turn == "last":
            assert "ending with the summary turn" in out.out and " 0 ending with the summary turn" not in out.out
        if cfg.stage != 3:
            continue
        model = tmp_path / "exported" / path.stem
        assert main(["export", "--run", cfg.output_dir, "--output", str(model), "--merge"]) == 0
        test = Path(cfg.data.train).parent / "test.jsonl"
        evaluation = tmp_path / "eval" / path.stem
        assert main(["eval", "run", "--model", str(model), "--data", str(test), "--output", str(evaluation),
                     "--limit", "2", "--max-new-tokens", "4", "--no-meteor", "--bootstrap-resamples", "100"]) == 0  # fmt: skip
        metrics = json.loads((evaluation / "metrics.json").read_text())
        assert metrics["counts"]["dialogues"] == 2 and metrics["counts"]["by_answer_type"]["summary"] == 2, sources
        capsys.readouterr()
