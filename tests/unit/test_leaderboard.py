"""``vmed eval compare RUN_A RUN_B …``: the leaderboard of any number of runs (columns from metrics.json,
whatever rule sets and keys it holds), paired differences against the first run, and refusing runs made
on different data."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from vmed.cli import main
from vmed.errors import UserInputError
from vmed.evaluation.leaderboard import build_leaderboard, columns_of, format_markdown, write_leaderboard
from vmed.evaluation.metrics.bootstrap import BootstrapConfig
from vmed.evaluation.pipeline import score_file
from vmed.evaluation.predictions import PredictionRow
from vmed.evaluation.scoring import ScoreOptions

FAST = ScoreOptions(meteor=False, bootstrap=BootstrapConfig(n_resamples=200))


def _run(folder: Path, wrong_every: int, data_sha: str = "aaa", n: int = 40, run_info: bool = True) -> Path:
    """A scored run folder whose closed answers are wrong on every ``wrong_every``-th dialogue (0: never)."""
    folder.mkdir(parents=True)
    rows = []
    for d in range(n):
        for t in range(3):
            ref = ["yes", "no"][(d + t) % 2]
            wrong = bool(wrong_every) and d % wrong_every == 0 and t == 0
            rows.append(PredictionRow(f"d{d:02d}", t, f"q{t}?", ref, ["yes", "no"][(d + t + wrong) % 2], "closed", "PRES"))
        rows.append(PredictionRow(f"d{d:02d}", 3, "Where?", "left lung", "left lung" if d % 3 else "lung", "open", "POS"))
        rows.append(PredictionRow(f"d{d:02d}", 4, "Describe the image.", "ct of the chest", "ct of the chest" if d % 2 else "mri", "summary", "summary"))
    (folder / "predictions.jsonl").write_text("".join(r.to_json() + "\n" for r in rows))
    if run_info:
        info = {"mode": "dialogue", "history": "model", "model": {"path": f"models/{folder.name}", "sha256": "f" * 64, "files": 3},
                "data": {"path": "test.jsonl", "sha256": data_sha, "images_sha256": "img"}}  # fmt: skip
        (folder / "run_info.json").write_text(json.dumps(info))
    score_file(folder, None, FAST)
    return folder


def test_leaderboard_of_three_runs_with_paired_differences(tmp_path):
    runs = [_run(tmp_path / "base", 3), _run(tmp_path / "better", 0), _run(tmp_path / "same", 3, run_info=False)]
    board = build_leaderboard(runs, FAST)
    assert [r.name for r in board.runs] == ["base", "better", "same"]
    strict = board.differences[0]["closed_accuracy_strict"].difference
    # base: dialogues 0, 3, 6, ... (14 of 40) have one wrong closed answer each; better has none
    assert strict.paired and strict.diff == pytest.approx(14 / 120) and strict.excludes_zero
    assert board.differences[1]["closed_accuracy_strict"].difference.diff == 0
    assert any("no data hash for 'same'" in n for n in board.notes)

    paths = write_leaderboard(board, tmp_path / "lb")
    md = paths[0].read_text()
    doc = json.loads((runs[0] / "metrics.json").read_text())
    for key in doc["headline"]:  # every headline metric of metrics.json with a value is a column
        assert (f"`{key}`" in md) == (doc["metrics"].get(key) is not None), key
    assert "summary_bertscore_f1" not in md  # no --bertscore-model: no value in any run
    assert "| better |" in md and "## Paired differences against `base`" in md and "**+0.1" in md
    table = list(csv.DictReader(paths[1].open()))
    cell = next(r for r in table if r["model"] == "better" and r["key"] == "closed_accuracy_strict")
    assert float(cell["value"]) == pytest.approx(1.0) and cell["diff_excludes_zero"] == "True" and cell["n_shared"] == "120"
    with Image.open(paths[2]) as im:
        assert im.format == "PNG" and im.width > 400


def test_columns_follow_the_rule_sets_in_metrics_json():
    doc = {"rule_sets": {"columns": ["llava_med", "medevalkit"],
                         "rows": [{"quantity": "closed accuracy", "keys": {"llava_med": "c_l", "medevalkit": "c_m"}},
                                  {"quantity": "open", "keys": {"llava_med": None, "medevalkit": "o_m"}}]},
           "headline": ["c_l", "summary_x"]}  # fmt: skip
    cols = columns_of([doc])
    assert [(c.key, c.label) for c in cols] == [("c_l", "closed accuracy [llava_med]"), ("c_m", "closed accuracy [medevalkit]"),
                                                ("o_m", "open [medevalkit]"), ("summary_x", "summary_x")]  # fmt: skip


def test_refuses_runs_on_different_data_and_names_them(tmp_path, capsys):
    a, b = _run(tmp_path / "a", 3), _run(tmp_path / "b", 0, data_sha="bbb")
    with pytest.raises(UserInputError, match=r"runs 'a' and 'b' were evaluated on different data \(sha256 differ"):
        build_leaderboard([a, b], FAST)
    assert main(["eval", "compare", str(a), str(b), "--no-meteor", "--bootstrap-resamples", "100"]) == 2
    assert "'a' and 'b'" in capsys.readouterr().err


def test_cli_writes_the_three_files(tmp_path, capsys):
    a, b, c = _run(tmp_path / "a", 3), _run(tmp_path / "b", 0), _run(tmp_path / "c", 2)
    assert main(["eval", "compare", str(a), str(b), str(c), "--output", str(tmp_path / "lb"), "--no-meteor",
                 "--bootstrap-resamples", "100"]) == 0  # fmt: skip
    assert {p.name for p in (tmp_path / "lb").iterdir()} == {"leaderboard.md", "leaderboard.csv", "leaderboard.png"}
    out = capsys.readouterr().out
    assert "# Leaderboard" in out and "| c |" in out
    assert format_markdown(build_leaderboard([a, b], FAST)).count("\n| b |") == 3  # values, differences, runs
