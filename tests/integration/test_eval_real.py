"""End to end on real data: the VQA-RAD test split (../shared/data/vqa-rad, converted with
`vmed data convert --format vqa-rad`) evaluated with the tiny random model: `vmed eval run` then
`vmed eval score` write predictions, metrics.json, report.md and plots, and a rerun gives identical files.

Skips only when the shared data is absent (``real_data``); a converter failure fails the test. Set
VMED_SHARED_DATA to point elsewhere. Offline: the tiny model is built from config.
"""

import json
import shutil
from pathlib import Path

import pytest
from conftest import real_data

from vmed.evaluation.predictions import read_predictions

pytestmark = [pytest.mark.integration, pytest.mark.real_data]
OUTPUTS = ["predictions.jsonl", "metrics.json", "row_scores.jsonl", "report.md", "turn_accuracy.png", "question_type.png"]


@pytest.fixture(scope="module")
def vqa_rad_test(tmp_path_factory) -> Path:
    vqa_rad = real_data("vqa-rad", "testset.json")
    from vmed.cli import main

    out = tmp_path_factory.mktemp("vqarad")
    code = main(["data", "convert", "--format", "vqa-rad", "--input", str(vqa_rad), "--output", str(out)])
    assert code == 0, f"`vmed data convert --format vqa-rad` failed (exit {code})"
    assert (out / "test.jsonl").is_file()
    return out / "test.jsonl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from vmed.model import build_preset, save_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(*build_preset("tiny"), path)
    return path


def test_vqa_rad_run_and_score_twice_identical(vqa_rad_test, tiny_model, tmp_path):
    from vmed.cli import main

    out = tmp_path / "eval"
    run = ["eval", "run", "--model", str(tiny_model), "--data", str(vqa_rad_test), "--output", str(out),
           "--limit", "6", "--max-new-tokens", "6", "--no-meteor", "--bootstrap-resamples", "200"]  # fmt: skip
    assert main(run) == 0
    first = {n: (out / n).read_bytes() for n in OUTPUTS}
    shutil.rmtree(out)
    assert main(run) == 0
    for n in OUTPUTS:
        assert (out / n).read_bytes() == first[n], f"{n} differs between two identical runs"

    rows = read_predictions(out / "predictions.jsonl")
    assert {"closed", "open", "summary"} <= {r.answer_type for r in rows}
    assert {r.question_type for r in rows} & {"PRES", "MODALITY", "POS", "ABN", "PLANE", "ORGAN"}
    assert len({r.id for r in rows}) == 6 and all(r.id.startswith("vqa-rad/") for r in rows)

    # `vmed eval score` alone, into another folder, gives the same metrics as the run's own scoring
    assert main(["eval", "score", str(out / "predictions.jsonl"), "--output", str(tmp_path / "rescored"),
                 "--no-meteor", "--bootstrap-resamples", "200"]) == 0  # fmt: skip
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert a["metrics"] == b["metrics"] and a["by_turn"] == b["by_turn"]
    info = json.loads((out / "run_info.json").read_text())
    assert info["data"]["sha256"] in (out / "report.md").read_text()


def test_vqa_rad_single_mode(vqa_rad_test, tiny_model, tmp_path):
    from vmed.cli import main

    out = tmp_path / "single"
    assert main(["eval", "run", "--model", str(tiny_model), "--data", str(vqa_rad_test), "--output", str(out), "--mode", "single",
                 "--batch-size", "4", "--limit", "4", "--max-new-tokens", "4", "--no-meteor", "--bootstrap-resamples", "200"]) == 0  # fmt: skip
    rows = read_predictions(out / "predictions.jsonl")
    assert all(r.extra["mode"] == "single" for r in rows) and len({r.id for r in rows}) == 4
