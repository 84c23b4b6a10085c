"""The evaluation runner: rows per turn + summary, gold vs model history, single-mode batching, skipped
records, resuming after an interruption, and (with the tiny model) identical files on a rerun."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vmed.errors import UserInputError
from vmed.evaluation.predictions import read_predictions
from vmed.evaluation.runner import run_eval
from vmed.inference import GenResult


class FakeEngine:
    """Answers depend on the question and on what the context holds, so tests can see the history used."""

    def __init__(self):
        self.calls = []

    def dialogue(self, image, questions, params, gold_answers=None):
        assert image is None or (image.mode == "RGB")
        self.calls.append(("dialogue", list(questions), gold_answers))
        out, prev = [], "-"
        for i, q in enumerate(questions):
            text = f"ans{i} {q.split()[0].lower()} after[{prev}]"
            out.append(GenResult(text, 10, 3, "stop"))
            prev = gold_answers[i] if gold_answers is not None else text
        return out

    def generate_batch(self, items, params, batch_size):
        self.calls.append(("batch", [(hist, q) for _, hist, q in items], batch_size))
        return [GenResult(f"yes {q.split()[0].lower()}", 10, 2, "stop") for _, _, q in items]


def _dataset(tmp_path: Path, n: int = 4, broken: bool = True) -> Path:
    (tmp_path / "images").mkdir()
    records = []
    for i in range(n):
        Image.new("L", (32, 32), color=20 * i).save(tmp_path / "images" / f"im{i}.png")
        records.append({
            "id": f"r{i}", "source": "test", "split": "test", "image": f"images/im{i}.png",
            "turns": [
                {"question": "Is there a mass?", "answer": "yes", "answer_type": "closed", "question_type": "PRES"},
                {"question": "Where is it?", "answer": "left lung", "answer_type": "open", "question_type": "POS",
                 "alternatives": ["left"]},
            ][: 1 + i % 2],
            "summary": None if i == 2 else f"summary {i}",
        })  # fmt: skip
    if broken:
        records.append({"id": "bad", "image": "images/missing.png", "turns": [{"question": "Q?", "answer": "no", "answer_type": "closed"}], "summary": "s"})
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_dialogue_mode_rows_summary_and_skips(tmp_path):
    data = _dataset(tmp_path)
    eng = FakeEngine()
    res = run_eval(eng, data, tmp_path / "out", progress=False, summary_prompt="Describe the image.")
    rows = read_predictions(res.predictions)
    # turns: 1 + 2 + 1 + 2 = 6, summaries: 3 (r2 has none); "bad" is skipped
    assert len(rows) == 9 and res.dialogues_done == 4 and res.dialogues_without_summary == 1
    assert [s["id"] for s in res.skipped] == ["bad"] and "missing.png" in res.skipped[0]["reason"]
    r1 = [r for r in rows if r.id == "r1"]
    assert [(r.turn, r.answer_type) for r in r1] == [(0, "closed"), (1, "open"), (2, "summary")]
    assert r1[2].question == "Describe the image." and r1[2].reference == "summary 1"
    assert r1[1].alternatives == ["left"] and r1[1].question_type == "POS"
    # the summary is asked in the same dialogue, after the turns, with the model's own answers as context
    assert eng.calls[1] == ("dialogue", ["Is there a mass?", "Where is it?", "Describe the image."], None)
    assert "after[ans0 is" in r1[1].prediction
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert info["status"] == "complete" and info["skipped"][0]["id"] == "bad"


def test_gold_history_puts_references_in_context(tmp_path):
    data = _dataset(tmp_path, broken=False)
    eng = FakeEngine()
    res = run_eval(eng, data, tmp_path / "out", history="gold", progress=False)
    r1 = [r for r in read_predictions(res.predictions) if r.id == "r1"]
    assert eng.calls[1][2] == ["yes", "left lung", "summary 1"]
    assert r1[1].prediction.endswith("after[yes]") and r1[2].prediction.endswith("after[left lung]")


def test_single_mode_asks_every_question_alone_in_batches(tmp_path):
    data = _dataset(tmp_path, broken=False)
    eng = FakeEngine()
    res = run_eval(eng, data, tmp_path / "out", mode="single", batch_size=3, progress=False)
    rows = read_predictions(res.predictions)
    assert len(rows) == 9
    asked = [q for call in eng.calls for q in call[1]]
    assert all(hist == [] for hist, _ in asked) and len(asked) == 9
    assert all(len(call[1]) >= 3 for call in eng.calls[:-1]) and all(call[2] == 3 for call in eng.calls)
    assert [r.prediction for r in rows if r.id == "r1"] == ["yes is", "yes where", "yes describe"]


def test_resume_keeps_complete_dialogues_and_drops_partial_ones(tmp_path):
    data = _dataset(tmp_path, broken=False)
    full = run_eval(FakeEngine(), data, tmp_path / "full", progress=False)
    expected = full.predictions.read_bytes()

    out = tmp_path / "resumed"
    run_eval(FakeEngine(), data, out, limit=2, progress=False)
    pred = out / "predictions.jsonl"
    lines = pred.read_text().splitlines(keepends=True)
    r3_first = json.dumps({"id": "r3", "turn": 0, "question": "q", "reference": "yes", "prediction": "x",
                           "answer_type": "closed", "question_type": None})  # fmt: skip
    pred.write_text("".join(lines) + r3_first + "\n" + '{"id": "r3", "tu')  # r3 unfinished (1 of 3 rows), a cut line
    (out / "run_info.json").write_text(json.dumps({**json.loads((out / "run_info.json").read_text()), "status": "running"}))
    eng = FakeEngine()
    res = run_eval(eng, data, out, progress=False)
    assert res.dialogues_resumed == 2 and res.dialogues_done == 2
    assert [c[1][0] for c in eng.calls] == ["Is there a mass?"] * 2  # only r2 and r3 were asked
    assert pred.read_bytes() == expected


def test_resume_refuses_other_settings(tmp_path):
    data = _dataset(tmp_path, broken=False)
    run_eval(FakeEngine(), data, tmp_path / "out", limit=1, progress=False)
    with pytest.raises(UserInputError, match="different settings.*history"):
        run_eval(FakeEngine(), data, tmp_path / "out", history="gold", progress=False)


def test_bad_arguments_are_user_errors(tmp_path):
    data = _dataset(tmp_path, broken=False)
    with pytest.raises(UserInputError, match="mode"):
        run_eval(FakeEngine(), data, tmp_path / "o", mode="batch", progress=False)
    with pytest.raises(UserInputError, match="dialogue mode only"):
        run_eval(FakeEngine(), data, tmp_path / "o", mode="single", history="gold", progress=False)
    with pytest.raises(UserInputError, match="not found"):
        run_eval(FakeEngine(), tmp_path / "nope.jsonl", tmp_path / "o", progress=False)


def test_tiny_model_cli_run_twice_gives_identical_files(tmp_path):
    """``vmed eval run`` on phantoms with the tiny random model; a second run gives byte-identical files
    (run_info.json differs only in its timestamps)."""
    from vmed.cli import main
    from vmed.data.phantom import generate_phantoms
    from vmed.model import build_preset, save_model

    model_dir = tmp_path / "tiny"
    save_model(*build_preset("tiny"), model_dir)
    data = generate_phantoms(tmp_path / "ph", 12, seed=0)["train"]
    out = tmp_path / "eval"
    args = ["eval", "run", "--model", str(model_dir), "--data", str(data), "--output", str(out),
            "--limit", "2", "--max-new-tokens", "3", "--no-meteor", "--bootstrap-resamples", "200"]  # fmt: skip
    assert main(args) == 0
    names = ["predictions.jsonl", "metrics.json", "row_scores.jsonl", "report.md", "turn_accuracy.png", "question_type.png"]
    first = {n: (out / n).read_bytes() for n in names}
    info1 = json.loads((out / "run_info.json").read_text())
    shutil.rmtree(out)
    assert main(args) == 0
    for n in names:
        assert (out / n).read_bytes() == first[n], n
    info2 = json.loads((out / "run_info.json").read_text())
    strip = lambda d: {k: v for k, v in d.items() if k not in ("started_at", "finished_at")}  # noqa: E731
    assert strip(info1) == strip(info2) and info1["model"]["sha256"] == info2["model"]["sha256"]
    rows = read_predictions(out / "predictions.jsonl")
    assert sum(r.answer_type == "summary" for r in rows) == 2 and len({r.id for r in rows}) == 2
    report = (out / "report.md").read_text()
    assert str(model_dir) in report and info1["data"]["sha256"] in report and "vmed eval run" in report
