"""`vmed eval score` / `compare` on predictions files: metrics.json, report.md, plots, determinism,
paired comparison, and errors that name the file and line."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from vmed.cli import main
from vmed.errors import UserInputError
from vmed.evaluation.compare import compare_dirs, format_comparison
from vmed.evaluation.metrics.bootstrap import BootstrapConfig
from vmed.evaluation.pipeline import score_file
from vmed.evaluation.predictions import PredictionRow, read_predictions
from vmed.evaluation.report import format_metric
from vmed.evaluation.scoring import ScoreOptions

FAST = ScoreOptions(meteor=False, bootstrap=BootstrapConfig(n_resamples=300))
SUMMARIES = ["axial ct of the chest with a mass in the left lung", "mri of the brain with a small lesion",
             "normal chest x ray", "ct of the abdomen showing the liver"]  # fmt: skip


def _write(path: Path, accuracy: float, seed: int = 0, n: int = 30) -> Path:
    """A predictions file whose closed answers are right with probability ``accuracy``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for d in range(n):
            for t in range(4):
                ref = ["yes", "no"][(d + t) % 2]
                pred = ref if rng.random() < accuracy else ["yes", "no"][(d + t + 1) % 2]
                f.write(PredictionRow(f"d{d:02d}", t, f"q{t}?", ref, pred, "closed", ["PRES", "POS"][t % 2]).to_json() + "\n")
            f.write(PredictionRow(f"d{d:02d}", 4, "Where?", "left lung", rng.choice(["left lung", "lung", "liver"]), "open", "POS").to_json() + "\n")
            s = SUMMARIES[d % 4]
            f.write(PredictionRow(f"d{d:02d}", 5, "Describe the image.", s, SUMMARIES[(d + rng.randint(0, 1)) % 4], "summary", "summary").to_json() + "\n")
    return path


def test_score_file_writes_everything_and_is_deterministic(tmp_path):
    pred = _write(tmp_path / "a" / "predictions.jsonl", 0.8)
    doc = score_file(pred, None, FAST, command="vmed eval score a")
    out = tmp_path / "a"
    names = ["metrics.json", "row_scores.jsonl", "report.md", "turn_accuracy.png", "question_type.png"]
    first = {n: (out / n).read_bytes() for n in names}
    score_file(pred, None, FAST, command="vmed eval score a")
    assert all((out / n).read_bytes() == first[n] for n in names)

    metrics = json.loads(first["metrics.json"])
    assert metrics == json.loads(json.dumps(doc))
    assert metrics["bootstrap"]["n_resamples"] == 300 and metrics["bootstrap"]["seed"] == 0
    assert set(metrics["by_answer_type"]) == {"closed", "open", "summary"}
    assert set(metrics["by_turn"]) == {"0", "1", "2", "3", "4"}  # summary rows are not a turn index
    assert {"PRES", "POS", "summary"} == set(metrics["by_question_type"])
    closed_rows = [r for r in read_predictions(pred) if r.answer_type == "closed"]
    assert metrics["metrics"]["closed_accuracy_strict"]["value"] == pytest.approx(
        sum(r.prediction == r.reference for r in closed_rows) / len(closed_rows)
    )
    assert metrics["metrics"]["closed_accuracy_strict"]["n"] == 120
    assert any("bertscore" in n for n in metrics["notes"]) and any("meteor" in n for n in metrics["notes"])
    assert len(metrics["worst_dialogues"]) == 5
    rows = [json.loads(line) for line in first["row_scores.jsonl"].decode().splitlines()]
    assert len(rows) == 180 and "closed_accuracy_medevalkit" in rows[0] and "summary_cider_d" in rows[5]

    for png in ("turn_accuracy.png", "question_type.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 500 and im.height > 300

    report = first["report.md"].decode()
    for needle in ("## Headline", "## By answer type", "## By question type", "## By turn index", "five worst-scoring",
                   "](turn_accuracy.png)", "](question_type.png)", metrics["predictions"]["sha256"], "vmed eval score a",
                   "later turns minus turn 0"):  # fmt: skip
        assert needle in report, needle
    worst = metrics["worst_dialogues"][0]["id"]
    assert f"`{worst}`" in report

    # Every key names its text rule, and every rule is defined.
    assert set(metrics["text_rules"]) == set(metrics["definitions"])
    assert set(metrics["text_rules"].values()) <= set(metrics["text_rule_definitions"])
    assert metrics["text_rules"]["summary_cider_d"] == "coco_ptb" and metrics["text_rules"]["closed_accuracy_strict"] == "vqa_llava_med"


def test_report_leads_with_the_rule_set_table(tmp_path):
    pred = _write(tmp_path / "a" / "predictions.jsonl", 0.7, seed=4)
    doc = score_file(pred, None, FAST)
    report = (tmp_path / "a" / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## By rule set"
    table = report.split("## By rule set")[1].split("## ")[0]
    header = next(line for line in table.splitlines() if line.startswith("| quantity"))
    assert header == "| quantity | LLaVA-Med | MedEvalKit | strict (vmed) |"
    closed_row = next(line for line in table.splitlines() if line.startswith("| closed accuracy"))
    for key in ("closed_accuracy_llava_med", "closed_accuracy_medevalkit", "closed_accuracy_strict"):
        m = doc["metrics"][key]
        assert f"{format_metric(m)} `{key}`" in closed_row and m["ci95"] is not None
    assert "not defined by this protocol" in table  # LLaVA-Med defines no token F1
    open_row = next(line for line in table.splitlines() if line.startswith("| open score"))
    assert "`open_recall_llava_med`" in open_row and "`open_exact_match_medevalkit`" in open_row and "`open_exact_match`" in open_row


def test_compare_paired_difference_finds_the_better_system(tmp_path):
    a = _write(tmp_path / "a" / "predictions.jsonl", 0.55, seed=1, n=60)
    # B: the same file with 40 wrong closed answers corrected
    rows = read_predictions(a)
    fixed = 0
    for r in rows:
        if r.answer_type == "closed" and r.prediction != r.reference and fixed < 40:
            r.prediction, fixed = r.reference, fixed + 1
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "predictions.jsonl").write_text("".join(r.to_json() + "\n" for r in rows))
    table = compare_dirs(tmp_path / "a", tmp_path / "b", FAST)
    by_key = {r.key: r for r in table}
    strict = by_key["closed_accuracy_strict"]
    assert strict.difference.paired and strict.n_shared == 240
    assert strict.difference.diff == pytest.approx(40 / 240)
    assert strict.difference.excludes_zero
    assert not by_key["open_token_f1"].difference.excludes_zero  # open answers are unchanged
    text = format_comparison(table, "a", "b")
    assert "| `closed_accuracy_strict` |" in text and "**yes**" in text and "paired on 240 shared rows" in text


def test_cli_score_and_compare(tmp_path, capsys):
    _write(tmp_path / "a" / "predictions.jsonl", 0.6, seed=2)
    _write(tmp_path / "b" / "predictions.jsonl", 0.9, seed=3)
    assert main(["eval", "score", str(tmp_path / "a" / "predictions.jsonl"), "--output", str(tmp_path / "sa"),
                 "--no-meteor", "--bootstrap-resamples", "200"]) == 0  # fmt: skip
    assert (tmp_path / "sa" / "metrics.json").is_file() and (tmp_path / "sa" / "report.md").is_file()
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--no-meteor", "--bootstrap-resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "B - A [95% CI]" in out and "closed_accuracy_llava_med" in out


def test_bad_predictions_name_file_and_line(tmp_path, capsys):
    p = tmp_path / "predictions.jsonl"
    p.write_text(json.dumps({"id": "x", "turn": 0, "question": "q", "reference": "yes", "prediction": "yes",
                             "answer_type": "yes/no", "question_type": None}) + "\n")  # fmt: skip
    with pytest.raises(UserInputError, match=r"predictions.jsonl:1: answer_type 'yes/no'"):
        read_predictions(p)
    p.write_text('{"id": "x", "turn": 0}\n{"id": "y", "tu')
    with pytest.raises(UserInputError, match="missing key"):
        read_predictions(p)
    assert main(["eval", "score", str(p), "--no-meteor"]) == 2
    assert "predictions.jsonl:1" in capsys.readouterr().err


def test_report_renders_a_run_without_model_or_data_provenance(tmp_path):
    """A run made through the Python API without ``model_path`` still gets a report (provenance shows '?')."""
    from vmed.evaluation.report import _provenance

    doc = {"predictions": {"path": "p.jsonl", "sha256": "x"}, "run": {"command": "api", "model": None, "data": None},
           "counts": {"rows": 0, "dialogues": 0, "by_answer_type": {}}, "bootstrap": {"confidence": 0.95, "n_resamples": 10, "seed": 0}}
    text = "\n".join(_provenance(doc))
    assert "- model: `?`" in text and "- run command: `api`" in text
