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


def test_bad_line_names_file_and_line(tmp_path):
    root = build_vqa_med_2019(tmp_path / "vqamed")
    f = root / "ImageClef-2019-VQA-Med-Training" / "QAPairsByCategory" / "C2_Plane_train.txt"
    f.write_text("synpic100|what plane is this?|axial\nsynpic101 which plane\n")
    with pytest.raises(DataFormatError, match=r"C2_Plane_train\.txt, row 2: expected 3 fields"):
        convert("vqa-med-2019", root, tmp_path / "out", progress=False)
