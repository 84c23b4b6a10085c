"""``vmed data convert`` on the command line: the printed summary, the leak warning, exit codes; the turn-order rule."""

from __future__ import annotations

import json

from _fixtures_data import build_vqa_rad_mevf

from vmed.cli import main
from vmed.data.converters.ordering import canonical_category, order_turns
from vmed.data.schema import Turn


def test_convert_prints_summary_and_warns_about_leaks(tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    out = tmp_path / "out"
    assert main(["data", "convert", "--format", "vqa-rad", "--input", str(root), "--output", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert "train: 11 rows read, 5 kept as turns in 2 records (2 images); skipped: duplicate 1, frame_row 3, image_missing 1, image_unreadable 1" in captured.out
    assert "leaks: 1 images appear in more than one split" in captured.out
    assert "warning: 1 images appear in more than one split (train/test 1)" in captured.err
    assert "--split-policy image-disjoint" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["warnings"] and report["options"]["split_policy"] == "keep"
    assert main(["data", "convert", "-f", "vqa-rad", "-i", str(root), "-o", str(tmp_path / "dj"), "-q",
                 "--split-policy", "image-disjoint"]) == 0
    captured = capsys.readouterr()
    assert "image-disjoint: moved 1 images (4 rows)" in captured.out and "warning" not in captured.err


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    cases = [
        (["-f", "vqa-med", "-i", str(root)], "--format 'vqa-med' is not known"),
        (["-f", "vqa-rad", "-i", str(root), "--split-policy", "random"], "--split-policy 'random'"),
        (["-f", "vqa-rad", "-i", str(tmp_path / "missing")], "no such file or folder"),
        (["-f", "slake", "-i", str(root)], "not a SLAKE folder"),
        (["-f", "vqa-rad", "-i", str(root), "--llm-url", "http://x"], "need --summarizer llm"),
    ]
    for args, message in cases:
        assert main(["data", "convert", *args, "-o", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    (root / "testset.json").write_text(json.dumps([{"image_name": "synpic1.jpg", "question": "q"}]))
    assert main(["data", "convert", "-f", "vqa-rad", "-i", str(root), "-o", str(tmp_path / "o")]) == 2
    assert "testset.json, row 0: missing field 'answer'" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    assert main(["data", "--help"]) == 0
    text = capsys.readouterr().out
    for cmd in ("convert", "stats", "export"):
        assert cmd in text


def test_turn_order_rule():
    assert [canonical_category(x) for x in ("MODALITY", "Organ", "PRES, POS", "Quantity", "kg", None, "weird")] == [
        "MODALITY", "ORGAN", "PRES", "COUNT", "OTHER", "OTHER", "OTHER"]
    turns = [Turn("q", "a", question_type=qt, qid=qid) for qt, qid in
             [("OTHER", "1"), ("PRES", "10"), ("PRES", "9"), ("PLANE", "50"), ("MODALITY", "60"), ("ABN", None), ("ABN", "3")]]
    assert [(t.question_type, t.qid) for t in order_turns(turns)] == [
        ("MODALITY", "60"), ("PLANE", "50"), ("PRES", "9"), ("PRES", "10"), ("ABN", "3"), ("ABN", None), ("OTHER", "1")]
