"""ImageCLEF VQA-Med 2019: category files, test file with '#' alternatives, image folders."""

from __future__ import annotations

import pytest
from _fixtures_data import build_vqa_med_2019

from vmed.data.build import convert
from vmed.data.converters import DataFormatError
from vmed.data.schema import read_jsonl


def test_categories_order_and_alternatives(tmp_path):
    root = build_vqa_med_2019(tmp_path / "vqamed")
    rep = convert("vqa-med-2019", root, tmp_path / "out", progress=False)
    # By-category files are preferred over All_QA_Pairs (not read twice).
    assert {s: v["rows_read"] for s, v in rep.splits.items()} == {"train": 6, "validation": 1, "test": 2}
    train = {d.meta["image_key"]: d for d in read_jsonl(tmp_path / "out" / "train.jsonl")}
    d = train["synpic100.jpg"]
    assert [t.question_type for t in d.turns] == ["Modality", "Plane", "Organ", "Abnormality"]
    assert d.image.endswith("Train_images/synpic100.jpg")
    assert train["synpic101.jpg"].turns[1].answer_type == "closed"
    test = read_jsonl(tmp_path / "out" / "test.jsonl")[0]
    assert [(t.answer, t.alternatives) for t in test.turns] == [
        ("mr - flair", ["mr flair"]),
        ("meningioma", ["meningiomas"]),
    ]
    assert test.image.endswith("VQAMed2019_Test_Images/synpic300.jpg")


def test_bad_lines_are_skipped_and_named(tmp_path):
    root = build_vqa_med_2019(tmp_path / "vqamed")
    f = root / "ImageClef-2019-VQA-Med-Training" / "QAPairsByCategory" / "C2_Plane_train.txt"
    f.write_bytes(b"synpic100|what plane is this?|axial\nsynpic101 which plane\nsynpic101|which plane?|sagittal \xe9\n")
    rep = convert("vqa-med-2019", root, tmp_path / "out", progress=False)
    train = rep.splits["train"]
    assert train["skipped"] == {"bad_row": 1, "not_utf8": 1} and train["rows_kept"] == 5
    assert train["skipped_examples"]["bad_row"] == [f"{f}, line 2: expected 3 fields 'imageid|question|answer', found 1"]
    assert train["skipped_examples"]["not_utf8"] == [f"{f}, line 3: not UTF-8 text (byte 32 of the line)"]
    f.write_text("synpic101 which plane\n")
    with pytest.raises(DataFormatError, match=r"C2_Plane_train\.txt, line 1: expected 3 fields.*Not one line of"):
        convert("vqa-med-2019", root, tmp_path / "out2", progress=False)
