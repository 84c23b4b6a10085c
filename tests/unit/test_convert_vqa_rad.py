"""VQA-RAD conversion (MEVF and official OSF layouts): counts, quirks, order, leaks, image-disjoint."""

from __future__ import annotations

import json

import pytest
from _fixtures_data import build_vqa_rad_mevf, build_vqa_rad_official

from vmed.data.build import convert
from vmed.data.converters import ConvertOptions, DataFormatError
from vmed.data.schema import read_jsonl, resolve_image, validate_file
from vmed.errors import UserInputError


@pytest.fixture()
def mevf(tmp_path):
    return build_vqa_rad_mevf(tmp_path / "vqa-rad")


def _by_image(records):
    return {d.meta["image_key"]: d for d in records}


def test_mevf_counts_and_skip_reasons(mevf, tmp_path):
    out = tmp_path / "out"
    rep = convert("vqa-rad", mevf, out, progress=False)
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["train"]["rows_read"] == 11
    assert report["splits"]["test"]["rows_read"] == 4
    assert report["splits"]["train"]["skipped"] == {"duplicate": 1, "frame_row": 3, "image_missing": 1, "image_unreadable": 1}
    assert report["splits"]["train"]["rows_kept"] == 5
    assert report["splits"]["test"]["rows_kept"] == 4
    for s in report["splits"].values():  # nothing lost silently
        assert s["rows_read"] == s["rows_kept"] + sum(s["skipped"].values())
    assert rep.files.keys() == {"train", "test"}
    assert not (out / "validation.jsonl").exists()


def test_mevf_normalisation_and_turn_order(mevf, tmp_path):
    convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    train = _by_image(read_jsonl(tmp_path / "out" / "train.jsonl"))
    img1 = train["synpic1.jpg"]
    assert [t.qid for t in img1.turns] == ["4", "1", "3", "2"]  # MODALITY, PRES, SIZE, COUNT
    by_qid = {t.qid: t for t in img1.turns}
    assert by_qid["2"].answer == "2" and by_qid["2"].answer_type == "open"  # int answer -> string
    assert by_qid["3"].answer_type == "closed"  # "CLOSED " with trailing space
    assert by_qid["1"].answer == "Yes"  # case kept
    assert img1.meta["organ"] == "ABD"
    assert img1.id == "vqa-rad/synpic1" and img1.source == "vqa-rad" and img1.split == "train"
    assert img1.summary and img1.summary.endswith(".")
    test = _by_image(read_jsonl(tmp_path / "out" / "test.jsonl"))
    assert test["synpic4.jpg"].turns[0].question_type == "ORGAN"
    assert test["synpic4.jpg"].turns[1].question_type == "PRES, POS"


def test_images_are_relative_to_output_dir_and_validate(mevf, tmp_path):
    out = tmp_path / "deep" / "out"
    convert("vqa-rad", mevf, out, progress=False)
    for split in ("train", "test"):
        records = read_jsonl(out / f"{split}.jsonl")
        for d in records:
            assert not d.image.startswith("/")
            assert resolve_image(d, out / f"{split}.jsonl").resolve() == (mevf / "images" / d.meta["image_key"]).resolve()
        n, problems = validate_file(out / f"{split}.jsonl")
        assert n == len(records) and problems == []


def test_copy_images(mevf, tmp_path):
    out = tmp_path / "out"
    convert("vqa-rad", mevf, out, copy_images=True, progress=False)
    d = _by_image(read_jsonl(out / "train.jsonl"))["synpic1.jpg"]
    assert d.image == "images/synpic1.jpg"
    assert (out / "images" / "synpic1.jpg").read_bytes() == (mevf / "images" / "synpic1.jpg").read_bytes()


def test_leaks_reported_with_and_without_frames(mevf, tmp_path):
    rep = convert("vqa-rad", mevf, tmp_path / "a", progress=False)
    assert rep.leaks["images"] == 1 and rep.leaks["names"] == ["synpic1.jpg"]
    assert rep.leaks["by_content"] == 1
    assert any("more than one split" in w for w in rep.warnings)
    rep = convert("vqa-rad", mevf, tmp_path / "b", options=ConvertOptions(include_frames=True), progress=False)
    assert rep.leaks["names"] == ["synpic1.jpg", "synpic6.jpg"]
    assert rep.splits["train"]["skipped"].get("frame_row") is None
    train = _by_image(read_jsonl(tmp_path / "b" / "train.jsonl"))
    assert len(train["synpic1.jpg"].turns) == 5  # the frame row is a different question


def test_leak_by_content_under_another_name(mevf, tmp_path):
    (mevf / "images" / "copy_of_4.jpg").write_bytes((mevf / "images" / "synpic4.jpg").read_bytes())
    rows = json.loads((mevf / "trainset.json").read_text())
    rows.append({**rows[0], "qid": 99, "image_name": "copy_of_4.jpg"})
    (mevf / "trainset.json").write_text(json.dumps(rows))
    rep = convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    assert rep.leaks["by_name"] == 1 and rep.leaks["by_content"] == 2
    assert ["copy_of_4.jpg", "synpic4.jpg"] in rep.leaks["content_groups"]
    assert rep.leaks["images"] == 2


def test_image_disjoint_moves_leaked_images_to_test(mevf, tmp_path):
    out = tmp_path / "out"
    rep = convert("vqa-rad", mevf, out, split_policy="image-disjoint", progress=False)
    assert rep.moved["images"] == 1 and rep.moved["rows"] == 4
    assert rep.moved["list"] == [{"image": "synpic1.jpg", "from": "train", "to": "test", "rows": 4}]
    train = _by_image(read_jsonl(out / "train.jsonl"))
    test = _by_image(read_jsonl(out / "test.jsonl"))
    assert set(train) == {"synpic2.jpg"}
    assert set(test) == {"synpic1.jpg", "synpic4.jpg", "synpic6.jpg"}
    assert [t.qid for t in test["synpic1.jpg"].turns] == ["4", "1", "11", "3", "2"]
    assert not rep.warnings
    again = convert("vqa-rad", mevf, tmp_path / "again", split_policy="image-disjoint", progress=False)
    assert (out / "test.jsonl").read_text() == (tmp_path / "again" / "test.jsonl").read_text()  # deterministic
    assert again.moved == rep.moved


def test_allow_missing_images_keeps_and_flags(mevf, tmp_path):
    rep = convert("vqa-rad", mevf, tmp_path / "out", allow_missing_images=True, progress=False)
    assert rep.missing_images_kept["count"] == 2
    train = _by_image(read_jsonl(tmp_path / "out" / "train.jsonl"))
    assert train["synpic3.jpg"].meta["image_problem"] == "image_missing"
    assert train["synpic5.jpg"].meta["image_problem"] == "image_unreadable"
    assert "image_missing" not in rep.splits["train"]["skipped"]


def test_official_layout_split_from_phrase_type(tmp_path):
    root = build_vqa_rad_official(tmp_path / "osf")
    rep = convert("vqa-rad", root, tmp_path / "out", progress=False)
    assert rep.splits["train"]["rows_read"] == 2 and rep.splits["test"]["rows_read"] == 2
    test = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert [t.answer for t in test[0].turns] == ["no", "12"]
    assert rep.leaks["images"] == 0


def test_bad_row_is_skipped_and_named_the_rest_is_kept(mevf, tmp_path):
    good = convert("vqa-rad", mevf, tmp_path / "good", progress=False)
    rows = json.loads((mevf / "trainset.json").read_text())
    del rows[3]["question"]  # qid 4, the MODALITY question of synpic1
    rows.insert(0, ["not", "an", "object"])
    (mevf / "trainset.json").write_text(json.dumps(rows))
    rep = convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    train = rep.splits["train"]
    assert train["skipped"]["bad_row"] == 2 and train["rows_read"] == 12
    assert train["rows_kept"] == good.splits["train"]["rows_kept"] - 1
    assert train["rows_read"] == train["rows_kept"] + sum(train["skipped"].values())
    assert train["skipped_examples"]["bad_row"] == [
        f"{mevf / 'trainset.json'}, row 0: expected an object with image_name, question, answer",
        f"{mevf / 'trainset.json'}, row 4: missing field 'question' (VQA-RAD rows have image_name, question, answer, ...)"]
    img1 = _by_image(read_jsonl(tmp_path / "out" / "train.jsonl"))["synpic1.jpg"]
    assert [t.qid for t in img1.turns] == ["1", "3", "2"]
    assert (tmp_path / "out" / "test.jsonl").read_text() == (tmp_path / "good" / "test.jsonl").read_text()


def test_input_level_faults_are_one_error(mevf, tmp_path):
    (mevf / "trainset.json").write_text(json.dumps([{"image": "x.jpg"}, 7]))
    with pytest.raises(DataFormatError, match=r"trainset\.json, row 0: missing field 'image_name'.*Not one row of"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    (mevf / "trainset.json").write_text("[{not json")
    with pytest.raises(DataFormatError, match=r"trainset\.json: not valid JSON"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    (mevf / "trainset.json").write_text('{"rows": []}')
    with pytest.raises(DataFormatError, match=r"trainset\.json: expected a list of question rows, got dict"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    (mevf / "trainset.json").write_bytes('[{"image_name": "é"}]'.encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"trainset\.json: not UTF-8 text"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    (mevf / "trainset.json").write_text("[]".encode("utf-16").decode("latin-1"), encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"trainset\.json: UTF-16 text"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)


def test_deeply_nested_row_costs_only_itself(mevf, tmp_path):
    rows = json.loads((mevf / "trainset.json").read_text())
    text = json.dumps(rows)
    deep = "[" * 100_000 + "]" * 100_000
    (mevf / "trainset.json").write_text(text[:-1] + ", " + deep + ', {"a": "]}"}]')
    rep = convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    assert rep.splits["train"]["skipped"]["bad_row"] == 2
    assert rep.splits["train"]["skipped_examples"]["bad_row"][0].endswith("row 11: JSON nested too deeply to parse")
    assert rep.splits["train"]["rows_kept"] == 5


def test_output_that_is_a_file_is_refused(mevf, tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(UserInputError, match=r"--output .*out: is a file; give a folder"):
        convert("vqa-rad", mevf, tmp_path / "out", progress=False)
    with pytest.raises(UserInputError, match=r"out is a file, so the folder cannot be made there"):
        convert("vqa-rad", mevf, tmp_path / "out" / "sub", progress=False)
    assert (tmp_path / "out").read_text() == "x"
