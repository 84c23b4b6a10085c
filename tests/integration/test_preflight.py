"""A truncated PNG in the training data: the pre-flight check skips its record and the run completes (the manifest
says which image and why); an image that breaks after the check fails the run with a ``failed`` manifest naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmed.config import load_config

pytestmark = pytest.mark.integration


def _config(tmp: Path, jsonl: Path, name: str, *extra: str):
    return load_config(None, [
        "stage=1", "model.preset=tiny", f"output_dir={tmp / name}", f"data.train={jsonl}", "data.records=describe",
        "data.max_length=256", "optim.batch_size=4", "optim.epochs=1", "runtime.logging_steps=1", "runtime.save_steps=0",
        "runtime.progress_bar=false", "runtime.report_to=none", *extra,
    ])


@pytest.fixture
def broken(tmp_path):
    """Phantoms whose first training image is cut in half, as an interrupted copy leaves it."""
    from vmed.data.phantom import generate_phantoms
    from vmed.data.schema import read_jsonl, resolve_image

    jsonl = generate_phantoms(tmp_path / "ph", 12, seed=0)["train"]
    records = read_jsonl(jsonl)
    bad = resolve_image(records[0], jsonl)
    bad.write_bytes(bad.read_bytes()[:200])
    return tmp_path, jsonl, bad, len(records)


def test_a_truncated_png_is_skipped_before_training_and_the_run_completes(broken, capsys):
    from vmed.training.stages import run_stage

    tmp, jsonl, bad, n = broken
    result = run_stage(_config(tmp, jsonl, "run", "data.max_bad_images=1"))
    assert result.completed
    manifest = json.loads((tmp / "run" / "run_manifest.json").read_text())
    assert manifest["status"] == "complete"
    (report,) = manifest["preflight"]
    assert report["bad_images"] == 1 and report["records_skipped"] == 1 and report["images_checked"] == n
    assert report["examples"][0]["image"] == str(bad) and report["examples"][0]["reason"].startswith("CorruptImage")
    assert manifest["metrics"]["train_sequences"] == n - 1
    assert "1 unreadable: skipped 1 records" in capsys.readouterr().out


def test_the_default_threshold_refuses_a_small_set_with_a_bad_image(broken):
    from vmed.errors import ConfigError
    from vmed.training.stages import run_stage

    tmp, jsonl, bad, _ = broken
    with pytest.raises(ConfigError, match=r"data.train .*1 of \d+ images cannot be read.*data.max_bad_images"):
        run_stage(_config(tmp, jsonl, "refused"))
    assert not (tmp / "refused" / "run_manifest.json").exists()  # refused before the run started


def test_an_image_that_breaks_during_training_marks_the_manifest_failed(broken, monkeypatch):
    from vmed.imaging import CorruptImage
    from vmed.training import preflight
    from vmed.training.stages import run_stage

    tmp, jsonl, bad, _ = broken
    monkeypatch.setattr(preflight, "_check", lambda path: None)  # as if the file broke after the check
    with pytest.raises(CorruptImage):
        run_stage(_config(tmp, jsonl, "failed"))
    manifest = json.loads((tmp / "failed" / "run_manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("CorruptImage: ") and str(bad) in manifest["error"]
    assert isinstance(manifest["failed_at_step"], int)
