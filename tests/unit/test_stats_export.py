"""``vmed data stats`` and ``vmed data export`` (LLaVA JSON, OpenAI messages), with the round trip through convert."""

from __future__ import annotations

import json

import pytest
from _fixtures_data import build_vqa_rad_mevf

from vmed.cli import main
from vmed.data.build import convert
from vmed.data.converters.reading import iter_json_array
from vmed.data.export import export
from vmed.data.schema import read_jsonl, resolve_image
from vmed.data.stats import compute_stats, format_stats
from vmed.errors import UserInputError


@pytest.fixture()
def converted(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    out = tmp_path / "out"
    convert("vqa-rad", root, out, progress=False)
    return out


def test_stats_counts_and_leaks(converted):
    s = compute_stats(converted)
    train, test = s["splits"]["train"], s["splits"]["test"]
    assert (train["records"], train["images"], train["turns"]) == (2, 2, 5)
    assert train["turns_per_dialogue"] == {1: 1, 4: 1}
    assert (train["closed"], train["open"]) == (2, 3)
    assert sorted(train["top_answers"]) == [("2", 1), ("axial", 1), ("mri", 1), ("no", 1), ("yes", 1)]
    assert train["question_types"] == {"MODALITY": 1, "PRES": 1, "SIZE": 1, "COUNT": 1, "PLANE": 1}
    assert train["summary_words"]["count"] == 2 and train["records_without_summary"] == 0
    assert test["records"] == 3
    assert s["leaks"]["images"] == 1 and s["leaks"]["by_content"] == 1
    text = format_stats(s)
    assert "LEAK: 1 images" in text and "[train] 2 records" in text
    one = compute_stats(converted / "test.jsonl")
    assert list(one["splits"]) == ["test"] and one["leaks"]["images"] == 0


def test_stats_cli_json_and_errors(converted, tmp_path, capsys):
    assert main(["data", "stats", str(converted), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["splits"]["train"]["turns"] == 5
    assert main(["data", "stats", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_export_llava_and_round_trip(converted, tmp_path):
    src = converted / "train.jsonl"
    out = tmp_path / "exp" / "train_llava.json"
    assert export(src, "llava", out) == 2
    data = json.loads(out.read_text())
    first = data[0]["conversations"]
    assert first[0]["from"] == "human" and first[0]["value"].startswith("<image>\n")
    assert all("<image>" not in c["value"] for c in first[1:])
    assert (out.parent / data[0]["image"]).resolve() == resolve_image(read_jsonl(src)[0], src).resolve()
    assert list(iter_json_array(out)) == data
    back = tmp_path / "back"
    convert("llava", out, back, progress=False)
    original = {d.id: d for d in read_jsonl(src)}
    again = {d.id: d for d in read_jsonl(back / "train.jsonl")}
    assert set(again) == set(original)
    for rid, d in original.items():
        assert [(t.question, t.answer, t.answer_type) for t in again[rid].turns] == [
            (t.question, t.answer, t.answer_type) for t in d.turns]
        assert again[rid].summary == d.summary
        assert resolve_image(again[rid], back / "train.jsonl").resolve() == resolve_image(d, src).resolve()


def test_export_messages(converted, tmp_path):
    out = tmp_path / "m.jsonl"
    assert main(["data", "export", str(converted / "test.jsonl"), "--to", "messages", "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    records = read_jsonl(converted / "test.jsonl")
    assert len(rows) == len(records) == 3
    for row, d in zip(rows, records):
        msgs = row["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * len(d.turns)
        assert msgs[0]["content"] == "<image>" + d.turns[0].question
        assert [m["content"] for m in msgs[1::2]] == [t.answer for t in d.turns]
        assert len(row["images"]) == 1 and (out.parent / row["images"][0]).is_file()


def test_export_errors(converted, tmp_path):
    with pytest.raises(UserInputError, match="--to 'csv'"):
        export(converted / "train.jsonl", "csv", tmp_path / "x")
    with pytest.raises(UserInputError, match="no such file"):
        export(converted / "nope.jsonl", "llava", tmp_path / "x")
