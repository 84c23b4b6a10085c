"""Conversion of the real data in ../shared/data: VQA-RAD (MEVF form, with images) and SLAKE (annotations only).

The expected numbers were counted from the raw JSON files (see docs/data-formats.md):
VQA-RAD train 3,064 rows (1,267 frame), test 451; 203 test images also in train (202 outside the
frame rows). SLAKE train 9,835 rows (4,919 English; qid 1622 has an empty answer), validation 2,099.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmed.data.build import convert
from vmed.data.converters import ConvertOptions
from vmed.data.schema import read_jsonl, validate_file
from vmed.data.stats import compute_stats

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
VQA_RAD = SHARED / "vqa-rad"
SLAKE = SHARED / "slake"


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (this test converts the shared copy of VQA-RAD/SLAKE next to the repository)")


@pytest.fixture(scope="module")
def vqa_rad(tmp_path_factory):
    _need(VQA_RAD)
    base = tmp_path_factory.mktemp("vqa-rad")
    runs = {}
    for name, frames, policy in (("keep", False, "keep"), ("frames", True, "keep"), ("disjoint", False, "image-disjoint"),
                                 ("disjoint_frames", True, "image-disjoint")):
        out = base / name
        rep = convert("vqa-rad", VQA_RAD, out, split_policy=policy, options=ConvertOptions(include_frames=frames),
                      validation_fraction=0, progress=False)  # the official train/test split, as counted
        runs[name] = (rep, out)
    return runs


def test_vqa_rad_rows_read_and_frames(vqa_rad):
    rep, out = vqa_rad["keep"]
    assert rep.splits["train"]["rows_read"] == 3064 and rep.splits["test"]["rows_read"] == 451
    assert rep.splits["train"]["skipped"] == {"duplicate": 3, "frame_row": 1267}
    assert rep.splits["train"]["rows_kept"] == 1794 and rep.splits["test"]["rows_kept"] == 451
    assert (rep.splits["train"]["records"], rep.splits["test"]["records"]) == (313, 203)
    rep_f, _ = vqa_rad["frames"]
    assert rep_f.splits["train"]["skipped"] == {"duplicate": 466}
    assert rep_f.splits["train"]["rows_kept"] == 2598 and rep_f.splits["train"]["records"] == 314
    for split in ("train", "test"):
        n, problems = validate_file(out / f"{split}.jsonl")
        assert problems == [] and n == rep.splits[split]["records"]


def test_vqa_rad_leaks(vqa_rad):
    rep, _ = vqa_rad["keep"]
    assert (rep.leaks["images"], rep.leaks["by_name"], rep.leaks["by_content"]) == (202, 202, 202)
    assert rep.warnings
    rep_f, _ = vqa_rad["frames"]
    assert (rep_f.leaks["images"], rep_f.leaks["by_name"], rep_f.leaks["by_content"]) == (203, 203, 203)


def test_vqa_rad_image_disjoint(vqa_rad):
    rep, out = vqa_rad["disjoint"]
    assert rep.moved["images"] == 202 and rep.moved["rows"] == 1060 and rep.moved["by_direction"] == {"train->test": 1060}
    assert rep.splits["train"]["rows_kept"] == 734 and rep.splits["train"]["records"] == 111
    assert rep.splits["test"]["rows_kept"] == 1510 and rep.splits["test"]["records"] == 203
    assert rep.splits["test"]["skipped"] == {"duplicate": 1}
    assert compute_stats(out)["leaks"]["images"] == 0
    test_qids = {t.qid for d in read_jsonl(out / "test.jsonl") for t in d.turns}
    keep_test_qids = {t.qid for d in read_jsonl(vqa_rad["keep"][1] / "test.jsonl") for t in d.turns}
    assert keep_test_qids <= test_qids  # every official test question stays in test
    rep_f, out_f = vqa_rad["disjoint_frames"]
    assert rep_f.moved["images"] == 203 and rep_f.moved["rows"] == 1610
    assert compute_stats(out_f)["leaks"]["images"] == 0


def test_vqa_rad_summaries_use_only_dialogue_words(vqa_rad):
    glue = {"of", "the", "image", "there", "is", "are", "was", "were", "no", "not", "in", "on", "weighted", "counted",
            "with", "contrast", "has", "does", "do", "mri", "diffusion", "map", "without", "findings", "include", "pa", "ap", "had", "saw", "lay", "took", "went", "none", "nothing", "something",
            "seen", "or", "and", "a", "visible", "abnormality"}
    _, out = vqa_rad["keep"]
    records = read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl")
    assert sum(not d.summary for d in records) <= len(records) // 20  # empty only where no statement could be built
    for d in (d for d in records if d.summary):
        text = " ".join(f"{t.question} {t.answer}" for t in d.turns)
        source = {w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"(?i)cxr", "cxr chest x ray", re.sub(r"(?i)xray", "x ray", text)))}  # CXR = chest X-ray
        words = {w.lower() for w in re.findall(r"[A-Za-z]+", d.summary)}
        extra = {w for w in words - source - glue if not any(w.startswith(s) for s in source)}
        assert not extra, (d.id, d.summary, extra)
        assert 1 <= len(d.summary.split()) <= 60 and d.summary.endswith(".")


def test_vqa_rad_validation_carved_from_train_by_image(tmp_path):
    _need(VQA_RAD)
    rep = convert("vqa-rad", VQA_RAD, tmp_path / "carve", progress=False)  # default: 0.1 of the train-only images
    v = rep.validation
    assert (v["candidates"], v["images"], v["fraction"], v["seed"]) == (111, 11, 0.1, 0)  # 313 train images, 202 also in test
    assert rep.splits["validation"]["records"] == 11 and rep.splits["validation"]["rows_kept"] == v["rows"]
    assert rep.splits["train"]["records"] == 302
    assert rep.splits["train"]["rows_kept"] + v["rows"] == 1794  # no row lost, none duplicated
    train = read_jsonl(tmp_path / "carve" / "train.jsonl")
    val = read_jsonl(tmp_path / "carve" / "validation.jsonl")
    assert sorted(d.meta["image_key"] for d in val) == v["list"]
    assert not {d.meta["image_key"] for d in val} & {d.meta["image_key"] for d in train}
    assert compute_stats(tmp_path / "carve")["leaks"]["split_pairs"] == {"train/test": 202}  # none with validation
    again = convert("vqa-rad", VQA_RAD, tmp_path / "again", progress=False)
    assert (tmp_path / "again" / "validation.jsonl").read_text() == (tmp_path / "carve" / "validation.jsonl").read_text()
    other = convert("vqa-rad", VQA_RAD, tmp_path / "seed1", seed=1, progress=False)
    assert other.validation["images"] == 11 and other.validation["list"] != v["list"]
    dj = convert("vqa-rad", VQA_RAD, tmp_path / "dj", split_policy="image-disjoint", progress=False)
    assert dj.validation["candidates"] == 111 and dj.splits["train"]["records"] == 100
    assert compute_stats(tmp_path / "dj")["leaks"]["images"] == 0


def test_slake_annotations_without_images(tmp_path):
    _need(SLAKE)
    rep = convert("slake", SLAKE, tmp_path / "out", allow_missing_images=True, progress=False)
    train, val = rep.splits["train"], rep.splits["validation"]
    assert train["rows_read"] == 9835 and val["rows_read"] == 2099
    assert train["skipped"] == {"duplicate": 7, "empty_answer": 1, "other_language": 4916}
    assert val["skipped"] == {"other_language": 1046}
    assert (train["rows_kept"], val["rows_kept"]) == (4911, 1053)
    assert (train["records"], val["records"]) == (450, 96)
    assert rep.missing_images_kept["count"] == 546
    records = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert "1622" not in {t.qid for d in records for t in d.turns}
    assert train["skipped_examples"]["empty_answer"] == [f"{SLAKE / 'train.json'}, row 1622 (qid 1622)"]
    assert all(d.meta["lang"] == "en" for d in records)
    strict = convert("slake", SLAKE, tmp_path / "strict", progress=False)
    assert strict.splits["train"]["skipped"]["image_missing"] == 4918 and strict.splits["train"]["rows_kept"] == 0
