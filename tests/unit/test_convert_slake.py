"""SLAKE conversion: languages, empty answer, key order, metadata, variants per language."""

from __future__ import annotations

import pytest
from _fixtures_data import build_slake

from vmed.data.build import convert
from vmed.data.converters import ConvertOptions
from vmed.data.schema import read_jsonl
from vmed.errors import UserInputError


@pytest.fixture()
def slake(tmp_path):
    return build_slake(tmp_path / "Slake1.0")


def test_english_by_default(slake, tmp_path):
    rep = convert("slake", slake, tmp_path / "out", progress=False)
    assert rep.splits["train"]["rows_read"] == 7
    assert rep.splits["train"]["skipped"] == {"duplicate": 1, "empty_answer": 1, "other_language": 1}
    assert rep.splits["validation"]["skipped"] == {"other_language": 1}
    assert rep.splits["train"]["skipped_examples"] == {"empty_answer": [f"{slake / 'train.json'}, row 2 (qid 2)"],
                                                       "duplicate": [f"{slake / 'train.json'}, row 5 (qid 5)"]}
    assert set(rep.files) == {"train", "validation", "test"}
    train = {d.id: d for d in read_jsonl(tmp_path / "out" / "train.jsonl")}
    x1 = train["slake/xmlab1"]
    assert [t.qid for t in x1.turns] == ["1", "0", "4"]  # Modality before Organ; qid 2 (empty answer) skipped
    assert x1.turns[0].question_type == "Modality"
    assert x1.meta == {"image_key": "xmlab1/source.jpg", "location": "Abdomen", "modality": "CT", "lang": "en"}
    assert x1.image.endswith("imgs/xmlab1/source.jpg")
    assert x1.turns[2].answer == "yes" and x1.turns[1].answer == "Yes"


def test_chinese_and_all(slake, tmp_path):
    rep = convert("slake", slake, tmp_path / "zh", options=ConvertOptions(lang="zh"), progress=False)
    zh = read_jsonl(tmp_path / "zh" / "train.jsonl")
    assert [d.id for d in zh] == ["slake/xmlab1"] and zh[0].turns[0].answer == "CT"
    assert rep.splits["train"]["skipped"]["other_language"] == 6
    convert("slake", slake, tmp_path / "all", options=ConvertOptions(lang="all"), progress=False)
    ids = sorted(d.id for d in read_jsonl(tmp_path / "all" / "train.jsonl"))
    assert ids == ["slake/xmlab1-en", "slake/xmlab1-zh", "slake/xmlab2-en"]  # one dialogue per language
    with pytest.raises(UserInputError, match="--lang 'fr'"):
        convert("slake", slake, tmp_path / "fr", options=ConvertOptions(lang="fr"), progress=False)


def test_leak_between_train_and_test(slake, tmp_path):
    rep = convert("slake", slake, tmp_path / "out", progress=False)
    assert rep.leaks["names"] == ["xmlab2/source.jpg"] and rep.leaks["split_pairs"] == {"train/test": 1}
    rep = convert("slake", slake, tmp_path / "dj", split_policy="image-disjoint", progress=False)
    assert rep.moved["list"] == [{"image": "xmlab2/source.jpg", "from": "train", "to": "test", "rows": 1}]
    assert [d.id for d in read_jsonl(tmp_path / "dj" / "train.jsonl")] == ["slake/xmlab1"]


def test_missing_images_without_flag_are_skipped(slake, tmp_path):
    for p in (slake / "imgs").rglob("*.jpg"):
        p.unlink()
    rep = convert("slake", slake, tmp_path / "out", progress=False)
    assert rep.splits["train"]["rows_kept"] == 0
    assert rep.splits["train"]["skipped"] == {"empty_answer": 1, "image_missing": 5, "other_language": 1}
    rep = convert("slake", slake, tmp_path / "keep", allow_missing_images=True, progress=False)
    assert rep.splits["train"]["rows_kept"] == 4 and rep.missing_images_kept["count"] == 3
