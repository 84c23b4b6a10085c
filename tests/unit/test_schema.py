"""The dialogue record: JSONL round trip, atomic writes, errors that name file:line, validation."""

from __future__ import annotations

import json

import pytest

from vmed.data.schema import (
    Dialogue,
    JsonlWriter,
    RecordError,
    Turn,
    iter_jsonl,
    read_jsonl,
    resolve_image,
    validate_file,
    write_jsonl,
)


def _record(i: int = 0, **kw) -> Dialogue:
    base = dict(
        id=f"test/{i}",
        image=f"images/{i}.png",
        turns=[
            Turn("Is there a lesion?", "yes", "closed", "PRES", "1"),
            Turn("What modality is this?", "CT", "open", "MODALITY", "2", alternatives=["computed tomography"]),
        ],
        source="test",
        split="validation",
        summary="CT of the chest with one lesion.",
        meta={"organ": "CHEST", "nested": {"a": [1, 2]}, "unicode": "Lunge – rechts"},
    )
    base.update(kw)
    return Dialogue(**base)


def test_round_trip_keeps_every_field(tmp_path):
    records = [_record(0), _record(1, summary=None, meta={}), _record(2, image=None)]
    path = tmp_path / "d.jsonl"
    assert write_jsonl(path, records) == 3
    assert read_jsonl(path) == records
    # None-valued turn fields are left out of the JSON, and come back as None.
    first_turn = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["turns"][0]
    assert "alternatives" not in first_turn
    assert read_jsonl(path)[0].turns[0].alternatives is None


def test_round_trip_of_plain_dicts_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [_record(0).to_dict()])
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + _record(1).to_json() + "\n", encoding="utf-8")
    assert [r.id for r in iter_jsonl(path)] == ["test/0", "test/1"]


def test_writer_exception_leaves_no_file(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlWriter(path) as w:
            w.write(_record(0))
            raise RuntimeError("crash in the middle of writing")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no .tmp left behind either


def test_writer_exception_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [_record(0)])
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with JsonlWriter(path) as w:
            w.write(_record(1))
            w.write(_record(2))
            raise RuntimeError("crash")
    assert path.read_bytes() == before


def test_writer_output_appears_only_on_close(tmp_path):
    path = tmp_path / "out.jsonl"
    w = JsonlWriter(path)
    w.write(_record(0))
    assert not path.exists()
    w.close()
    assert [r.id for r in read_jsonl(path)] == ["test/0"]


def test_invalid_json_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(_record(0).to_json() + "\n" + _record(1).to_json() + "\n{not json\n", encoding="utf-8")
    with pytest.raises(RecordError) as e:
        read_jsonl(path)
    assert f"{path}:3" in str(e.value)


def test_missing_field_error_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    broken = _record(1).to_dict()
    del broken["turns"]
    path.write_text(_record(0).to_json() + "\n" + json.dumps(broken) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as e:
        read_jsonl(path)
    assert f"{path}:2" in str(e.value) and "'turns'" in str(e.value)


def test_unknown_turn_key_error_points_to_meta(tmp_path):
    path = tmp_path / "bad.jsonl"
    d = _record(0).to_dict()
    d["turns"][1]["confidence"] = 0.9
    path.write_text(json.dumps(d) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as e:
        read_jsonl(path)
    msg = str(e.value)
    assert f"{path}:1" in msg and "turns[1]" in msg and "confidence" in msg and "meta" in msg


def test_resolve_image_relative_to_the_jsonl_folder(tmp_path):
    jsonl = tmp_path / "sub" / "d.jsonl"
    assert resolve_image(_record(3), jsonl) == (tmp_path / "sub" / "images" / "3.png").resolve()
    absolute = tmp_path / "elsewhere.png"
    assert resolve_image(_record(3, image=str(absolute)), jsonl) == absolute
    assert resolve_image(_record(3, image=None), jsonl) is None


def test_validate_clean_file(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"x")
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [_record(i) for i in range(3)])
    assert validate_file(path) == (3, [])


def test_validate_finds_every_fault_with_its_line(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(10):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"x")
    rows = [_record(i).to_dict() for i in range(8)]
    del rows[1]["image"]  # line 2: missing field
    rows[2]["turns"][0]["answer_type"] = "yes/no"  # line 3: bad answer_type
    rows[3]["image"] = "images/missing.png"  # line 4: image file not found
    rows[4]["turns"][1]["answer"] = "  "  # line 5: empty answer
    rows[5]["id"] = rows[0]["id"]  # line 6: duplicate of line 1
    lines = [json.dumps(r) for r in rows]
    lines[6] = lines[6][:-5]  # line 7: truncated JSON
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    n, problems = validate_file(path)
    assert n == 8
    found = {(p.line, p.field) for p in problems}
    assert found == {
        (2, "image"),
        (3, "turns[0].answer_type"),
        (4, "image"),
        (5, "turns[1].answer"),
        (6, "id"),
        (7, "<json>"),
    }
    by_line = {p.line: p for p in problems}
    assert "line 1" in by_line[6].message and "missing.png" in by_line[4].message
    # Without the image check the missing file is no longer a problem, the rest still are.
    _, without = validate_file(path, check_images=False)
    assert {(p.line, p.field) for p in without} == found - {(4, "image")}


# Edge cases of vmed.data.schema found in review: null answers/ids, unknown turn keys, non-object meta.


def _one_line(tmp_path, obj):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    return path


def test_validate_rejects_null_answer(tmp_path):
    path = _one_line(tmp_path, {"id": "a", "image": None, "turns": [{"question": "q", "answer": None}]})
    assert validate_file(path)[1]


def test_validate_rejects_null_id(tmp_path):
    path = _one_line(tmp_path, {"id": None, "image": None, "turns": [{"question": "q", "answer": "a"}]})
    assert validate_file(path)[1]


def test_validate_agrees_with_reader_on_unknown_turn_keys(tmp_path):
    path = _one_line(tmp_path, {"id": "a", "image": None, "turns": [{"question": "q", "answer": "a", "foo": 1}]})
    assert validate_file(path)[1]


def test_reader_reports_bad_meta_as_record_error(tmp_path):
    path = _one_line(tmp_path, {"id": "a", "image": None, "turns": [{"question": "q", "answer": "a"}], "meta": [1]})
    with pytest.raises(RecordError):
        read_jsonl(path)
