"""Streamed formats: the incremental JSON array reader, LLaVA conversations, ROCO and alignment captions."""

from __future__ import annotations

import json

import pytest
from _fixtures_data import build_roco, llava_record, make_image

from vmed.constants import SUMMARY_PROMPT
from vmed.data.build import convert
from vmed.data.converters import ConvertOptions, DataFormatError
from vmed.data.converters.reading import iter_json_array
from vmed.data.schema import read_jsonl


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_iter_json_array_matches_json_load(tmp_path, chunk):
    items = [1234567, -1.5e-3, "a ] tricky, \"string\" [", {"k": [1, 2, {"x": "é 中"}]}, [], {}, None, True, 42]
    p = tmp_path / "a.json"
    p.write_text(" \n[ " + " ,\n ".join(json.dumps(x, ensure_ascii=False) for x in items) + " ]\n", encoding="utf-8")
    assert list(iter_json_array(p, chunk_size=chunk)) == items
    p.write_text("[]")
    assert list(iter_json_array(p, chunk_size=chunk)) == []


@pytest.mark.parametrize(
    "text, message",
    [('{"a": 1}', "expected a JSON array"), ('[{"a": 1}, {"b": ', "element 1 is not valid JSON"),
     ('[{"a": 1} {"b": 2}]', "expected ',' or ']' after element 0"), ('[{"a": 1},', "not closed|element 1")],
)
def test_iter_json_array_errors(tmp_path, text, message):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        list(iter_json_array(p, chunk_size=4))


def _llava_dir(tmp_path):
    d = tmp_path / "llava"
    make_image(d / "imgs" / "a.png", seed=1)
    make_image(d / "imgs" / "b.png", seed=2)
    recs = [
        llava_record("r1", "imgs/a.png", [("What is shown?", "A chest CT."), ("Any nodule?", "Yes")]),
        llava_record("r2", "imgs/b.png", [("Describe it.", "An MRI of the knee."), ("Describe it.", "An MRI of the knee.")],
                     image_first=False),
        llava_record("r3", "imgs/missing.png", [("q", "a")]),
    ]
    (d / "instruct.json").write_text(json.dumps(recs))
    return d


def test_llava_conversations(tmp_path):
    d = _llava_dir(tmp_path)
    rep = convert("llava", d / "instruct.json", tmp_path / "out", progress=False)
    recs = {r.id: r for r in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert list(recs) == ["r1", "r2"]
    assert [(t.question, t.answer, t.answer_type) for t in recs["r1"].turns] == [
        ("What is shown?", "A chest CT.", "open"), ("Any nodule?", "Yes", "closed")]
    assert recs["r2"].turns[0].question == "Describe it."  # <image> at the end of the turn is removed too
    assert rep.splits["train"] == {"rows_read": 3, "rows_kept": 2, "records": 2, "images": 2,
                                   "skipped": {"image_missing": 1}, "turns_dropped": {"duplicate": 1},
                                   "skipped_examples": {"image_missing": [f"{d / 'instruct.json'}, element 2"]}}
    assert recs["r1"].image.endswith("llava/imgs/a.png")
    rep = convert("llava", d / "instruct.json", tmp_path / "val", options=ConvertOptions(split="validation"),
                  allow_missing_images=True, progress=False)
    assert [r.id for r in read_jsonl(tmp_path / "val" / "validation.jsonl")] == ["r1", "r2", "r3"]
    assert rep.missing_images_kept["count"] == 1


def test_llava_bad_records_are_skipped_and_named(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([llava_record("ok", None, [("q", "a")]),
                             {"id": "bad", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
                             {"id": "multi", "image": ["a.png", "b.png"], "conversations": []}, "text"]))
    rep = convert("llava", p, tmp_path / "out", allow_missing_images=True, progress=False)
    assert [r.id for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["ok"]
    train = rep.splits["train"]
    assert train["rows_read"] == 4 and train["rows_kept"] == 1 and train["skipped"] == {"bad_record": 3}
    assert train["skipped_examples"]["bad_record"] == [
        f"{p}, element 1: conversations[0] must be from 'human' and [1] from 'gpt' (found 'gpt', 'human')",
        f"{p}, element 2: field 'image' holds a list; expected one path",
        f"{p}, element 3: expected an object with id, image, conversations"]
    p.write_text(json.dumps([{"id": "bad", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}]))
    with pytest.raises(DataFormatError, match=r"x\.json, element 0: conversations\[0\] must be from 'human'"):
        convert("llava", p, tmp_path / "out2", allow_missing_images=True, progress=False)
    assert not (tmp_path / "out2" / "train.jsonl").exists()  # no half-written output


def test_llava_jsonl_bad_lines_cost_only_themselves(tmp_path):
    good = [json.dumps(llava_record(f"r{i}", None, [("What is shown?", f"answer {i}")])).encode() for i in range(3)]
    lines = [good[0], b'{"id": "cut", "conversations": [', '{"id": "é"}'.encode("latin-1"), good[1],
             b"[" * 50_000 + b"]" * 50_000, good[2]]
    p = tmp_path / "train.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    rep = convert("llava", p, tmp_path / "out", allow_missing_images=True, progress=False)
    assert [r.id for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["r0", "r1", "r2"]
    train = rep.splits["train"]
    assert train["skipped"] == {"bad_json": 2, "not_utf8": 1} and train["rows_read"] == 6
    ex = train["skipped_examples"]
    assert ex["bad_json"] == [f"{p}, line 2: not valid JSON (Expecting value at column 33)",
                              f"{p}, line 5: JSON nested too deeply to parse"]
    assert ex["not_utf8"] == [f"{p}, line 3: not UTF-8 text (byte 8 of the line)"]
    p.write_bytes("\n".join(['{"id": "é"}'] * 3).encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"line 1: not UTF-8 text.*Not one record of"):
        convert("llava", p, tmp_path / "out2", progress=False)


def test_roco_captions(tmp_path):
    root = build_roco(tmp_path / "roco")
    rep = convert("roco", root, tmp_path / "out", progress=False)
    assert {s: (v["rows_read"], v["rows_kept"], v["skipped"]) for s, v in rep.splits.items()} == {
        "train": (3, 2, {"image_missing": 1}), "validation": (2, 1, {"image_missing": 1})}
    r = read_jsonl(tmp_path / "out" / "train.jsonl")[0]
    assert r.id == "roco/ROCO_00001" and r.meta == {"subset": "radiology"}
    assert [(t.question, t.answer) for t in r.turns] == [(SUMMARY_PROMPT, "Computed tomography of the chest showing a train nodule 0.")]
    assert r.summary == r.turns[0].answer
    assert rep.leaks["images"] == 0


def test_roco_leak_by_name_and_image_disjoint(tmp_path):
    root = build_roco(tmp_path / "roco")
    val = root / "data" / "validation" / "radiology"
    (val / "captions.txt").write_text((val / "captions.txt").read_text() + "ROCO_00001\t Same figure again.\n")
    make_image(val / "images" / "ROCO_00001.jpg", seed=1)
    rep = convert("roco", root, tmp_path / "keep", progress=False)
    assert rep.leaks["names"] == ["ROCO_00001.jpg"] and rep.warnings
    rep = convert("roco", root, tmp_path / "dj", split_policy="image-disjoint", progress=False)
    assert rep.moved["images"] == 1 and rep.moved["by_direction"] == {"train->validation": 1}
    assert "roco/ROCO_00001" not in {r.id for r in read_jsonl(tmp_path / "dj" / "train.jsonl")}


def test_alignment_json_becomes_describe_records(tmp_path):
    d = tmp_path / "align"
    make_image(d / "images" / "f1.jpg", seed=3)
    (d / "llava_med_alignment_500k.json").write_text(json.dumps([
        llava_record("PMC1_f1", "f1.jpg", [("Describe the image concisely.", "Axial CT showing a mass.")])]))
    convert("roco", d / "llava_med_alignment_500k.json", tmp_path / "out", options=ConvertOptions(image_root=d / "images"),
            progress=False)
    r = read_jsonl(tmp_path / "out" / "train.jsonl")[0]
    assert r.turns[0].question == SUMMARY_PROMPT and r.summary == "Axial CT showing a mass."
    assert r.source == "roco"


def test_record_json_keeps_its_shape_and_lone_surrogates_round_trip(tmp_path):
    from vmed.data.schema import Dialogue, Turn, write_jsonl

    d = Dialogue(id="x", image="a.png", turns=[Turn("q", "a", "open", "PRES", "7", ["b"]), Turn("q2", "yes", "closed")],
                 source="llava", split="test", summary=None, meta={"k": 1})
    assert d.to_dict() == {"id": "x", "source": "llava", "split": "test", "image": "a.png",
                           "turns": [{"question": "q", "answer": "a", "answer_type": "open", "question_type": "PRES",
                                      "qid": "7", "alternatives": ["b"]},
                                     {"question": "q2", "answer": "yes", "answer_type": "closed"}],
                           "summary": None, "meta": {"k": 1}}
    d.turns[0].question = "x \ud800"
    write_jsonl(tmp_path / "s.jsonl", [d])
    assert read_jsonl(tmp_path / "s.jsonl")[0].turns[0].question == "x \ud800"
