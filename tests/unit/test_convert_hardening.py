"""Conversions never lose valid rows: unsafe image paths, summarizer faults, malformed DICOMs, the validation carve."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest
from _fixtures_data import build_pathvqa, build_vqa_rad_mevf, llava_record, make_image

from vmed.data.build import convert
from vmed.data.schema import read_jsonl
from vmed.data.summaries import TemplateSummarizer
from vmed.errors import UserInputError


def _rows(root):
    return json.loads((root / "trainset.json").read_text())


def _add_train_images(root, names, seed0=100):
    rows = _rows(root)
    for i, name in enumerate(names):
        make_image(root / "images" / name, seed=seed0 + i)
        rows.append({"qid": 1000 + i, "image_name": name, "image_organ": "CHEST", "answer": "yes", "answer_type": "CLOSED",
                     "question_type": "PRES", "question": f"Is there a finding {i}?", "phrase_type": "freeform"})
    (root / "trainset.json").write_text(json.dumps(rows))


def _dicom_bytes(slope: bytes = b"1.25") -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = "1.25", "-7.5"
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue().replace(b"1.25", slope, 1)


def test_copy_images_never_writes_outside_the_output_folder(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "data" / "vqa-rad")
    outside = make_image(tmp_path / "data" / "x" / "evil.jpg", seed=77)
    absolute = make_image(tmp_path / "abs" / "evil2.jpg", seed=78)
    make_image(root / "images" / "sub" / "ok.jpg", seed=79)
    out = tmp_path / "run" / "out"
    (out / "images").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "images" / "sub")  # a symlink that leads out of OUTPUT/images
    rows = _rows(root)
    base = {"image_organ": "CHEST", "answer": "yes", "answer_type": "CLOSED", "question_type": "PRES",
            "question": "Is it?", "phrase_type": "freeform"}
    rows += [{**base, "qid": 90, "image_name": "../../x/evil.jpg"}, {**base, "qid": 91, "image_name": str(absolute)},
             {**base, "qid": 92, "image_name": "sub/ok.jpg"}]
    (root / "trainset.json").write_text(json.dumps(rows))
    before = {p for p in tmp_path.rglob("*")}
    rep = convert("vqa-rad", root, out, copy_images=True, progress=False)
    train = rep.splits["train"]
    assert train["skipped"]["image_path_unsafe"] == 3
    assert all("would be copied outside the output folder" in w for w in train["skipped_examples"]["image_path_unsafe"])
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p.resolve().is_relative_to(out.resolve()) for p in created), created
    assert not list((tmp_path / "elsewhere").iterdir())
    assert outside.exists() and (out / "images" / "synpic1.jpg").is_file()
    kept = {d.meta["image_key"] for d in read_jsonl(out / "train.jsonl")}
    assert kept == {"synpic1.jpg", "synpic2.jpg"}
    # without --copy-images the same names are only referred to, nothing is written, nothing skipped for it
    rep = convert("vqa-rad", root, tmp_path / "refer", progress=False)
    assert "image_path_unsafe" not in rep.splits["train"]["skipped"]


def test_streamed_copy_skips_unsafe_names(tmp_path):
    d = tmp_path / "llava"
    make_image(d / "a.png", seed=1)
    make_image(tmp_path / "evil.png", seed=2)
    (d / "train.json").write_text(json.dumps([llava_record("ok", "a.png", [("q", "a")]),
                                              llava_record("evil", "../evil.png", [("q", "a")]),
                                              llava_record("abs", str(tmp_path / "evil.png"), [("q", "a")])]))
    rep = convert("llava", d / "train.json", tmp_path / "out", copy_images=True, progress=False)
    assert rep.splits["train"]["skipped"] == {"image_path_unsafe": 2}
    assert [r.image for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == ["images/a.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "images").rglob("*")) == ["a.png"]


class _Flaky(TemplateSummarizer):
    """The template summarizer, with a bug on one record."""

    def summarize(self, dialogue):
        if dialogue.id == "vqa-rad/synpic2":
            raise IndexError("list index out of range")
        return super().summarize(dialogue)


def test_a_summarizer_that_raises_on_one_record_costs_only_its_summary(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    rep = convert("vqa-rad", root, tmp_path / "out", summarizer=_Flaky(), progress=False)
    records = {d.id: d for d in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert set(records) == {"vqa-rad/synpic1", "vqa-rad/synpic2"}
    assert records["vqa-rad/synpic2"].summary is None and records["vqa-rad/synpic1"].summary
    assert rep.summary_errors == {"count": 1, "examples": ["vqa-rad/synpic2: IndexError: list index out of range"]}
    assert any("the summarizer failed on 1 records" in w for w in rep.warnings)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["summary_errors"]["count"] == 1

    class Refusing(TemplateSummarizer):
        def summarize(self, dialogue):
            raise UserInputError("--llm-url http://127.0.0.1:9: cannot connect")

    with pytest.raises(UserInputError, match="cannot connect"):  # its own user-facing errors still stop the run
        convert("vqa-rad", root, tmp_path / "out2", summarizer=Refusing(), progress=False)


def test_a_malformed_dicom_image_is_skipped_and_counted(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    (root / "images" / "synpic2.jpg").write_bytes(_dicom_bytes(b"abcd"))  # RescaleSlope that is not a number
    rep = convert("vqa-rad", root, tmp_path / "out", progress=False)
    assert rep.splits["train"]["skipped"]["image_unreadable"] == 2  # synpic5 and synpic2 (1 non-frame row each)
    assert {d.meta["image_key"] for d in read_jsonl(tmp_path / "out" / "train.jsonl")} == {"synpic1.jpg"}
    assert len(read_jsonl(tmp_path / "out" / "test.jsonl")) == 3


def test_validation_carved_by_image_seeded_and_recorded(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    _add_train_images(root, [f"synpic{20 + i}.jpg" for i in range(9)])
    (root / "images" / "copy_of_20.jpg").write_bytes((root / "images" / "synpic20.jpg").read_bytes())
    _add_train_images(root, ["copy_of_20.jpg"], seed0=20)  # same content as synpic20: one image under two names
    (root / "images" / "copy_of_20.jpg").write_bytes((root / "images" / "synpic20.jpg").read_bytes())
    keep = convert("vqa-rad", root, tmp_path / "none", validation_fraction=0, progress=False)
    assert keep.validation == {} and not (tmp_path / "none" / "validation.jsonl").exists()
    runs = {}
    for seed in range(6):
        rep = convert("vqa-rad", root, tmp_path / f"s{seed}", validation_fraction=0.3, seed=seed, progress=False)
        v = rep.validation
        assert (v["candidates"], v["fraction"], v["seed"], v["from"]) == (10, 0.3, seed, "train")  # synpic1 is also in test
        train = {d.meta["image_key"] for d in read_jsonl(tmp_path / f"s{seed}" / "train.jsonl")}
        val = {d.meta["image_key"] for d in read_jsonl(tmp_path / f"s{seed}" / "validation.jsonl")}
        assert val == set(v["list"]) and not val & train and "synpic1.jpg" in train
        assert ("synpic20.jpg" in val) == ("copy_of_20.jpg" in val)  # the same picture stays on one side
        assert rep.splits["train"]["rows_kept"] + rep.splits["validation"]["rows_kept"] == keep.splits["train"]["rows_kept"]
        assert rep.splits["validation"]["rows_kept"] == v["rows"]
        runs[seed] = v["list"]
    assert len(set(map(tuple, runs.values()))) > 1
    again = convert("vqa-rad", root, tmp_path / "again", validation_fraction=0.3, seed=0, progress=False)
    assert again.validation == convert("vqa-rad", root, tmp_path / "again2", validation_fraction=0.3, seed=0,
                                       progress=False).validation


def test_pathvqa_keeps_its_official_val_and_carves_only_without_one(tmp_path):
    root = build_pathvqa(tmp_path / "pvqa")
    rep = convert("pathvqa", root, tmp_path / "out", progress=False)
    assert rep.validation == {} and rep.splits["validation"]["rows_read"] == 1
    rows = [{"image": f"train_{i:04d}", "question": "Is this necrosis?", "answer": "yes"} for i in range(10)]
    (root / "qas" / "train" / "train_qa.pkl").write_bytes(pickle.dumps(rows))
    for r in rows:
        make_image(root / "images" / "train" / f"{r['image']}.jpg", seed=int(r["image"][-4:]) + 40)
    (root / "qas" / "val" / "val_qa.pkl").unlink()
    rep = convert("pathvqa", root, tmp_path / "carved", progress=False)
    assert rep.validation["images"] == 1 and rep.splits["validation"]["records"] == 1
    assert rep.splits["train"]["records"] == 9


def test_slake_never_carves(tmp_path):
    from _fixtures_data import build_slake

    root = build_slake(tmp_path / "slake")
    (root / "validate.json").unlink()
    rep = convert("slake", root, tmp_path / "out", validation_fraction=0.5, progress=False)
    assert rep.validation == {} and "validation" not in rep.files
