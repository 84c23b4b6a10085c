"""PathVQA conversion and its restricted unpickler (nothing but plain builtins is loaded)."""

from __future__ import annotations

import os
import pickle

import pytest
from _fixtures_data import build_pathvqa

from vmed.data.build import convert
from vmed.data.converters.pathvqa import UnsafePickleError, safe_load_pickle
from vmed.data.schema import read_jsonl


def test_converts_official_layout(tmp_path):
    root = build_pathvqa(tmp_path / "pvqa")
    rep = convert("pathvqa", root, tmp_path / "out", progress=False)
    assert {s: v["rows_read"] for s, v in rep.splits.items()} == {"train": 3, "validation": 1, "test": 1}
    train = {d.meta["image_key"]: d for d in read_jsonl(tmp_path / "out" / "train.jsonl")}
    d = train["train/train_0001.jpg"]
    assert [(t.answer, t.answer_type) for t in d.turns] == [("Yes", "closed"), ("granuloma", "open")]
    assert read_jsonl(tmp_path / "out" / "validation.jsonl")[0].image.endswith("images/val/val_0001.jpg")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    root = build_pathvqa(tmp_path / "pvqa")
    marker = tmp_path / "pwned"
    evil = [{"image": "train_0001", "question": "q?", "answer": _Evil(marker)}]
    (root / "qas" / "train" / "train_qa.pkl").write_bytes(pickle.dumps(evil))
    with pytest.raises(UnsafePickleError, match=r"train_qa\.pkl: refused to load: the pickle asks for (posix|os|nt)\.system"):
        convert("pathvqa", root, tmp_path / "out", progress=False)
    assert not marker.exists()
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_safe_loader_allows_plain_builtins_only(tmp_path):
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps([{"a": "b", "n": 1, "f": 1.5, "t": True, "z": None}], protocol=0))
    assert safe_load_pickle(ok) == [{"a": "b", "n": 1, "f": 1.5, "t": True, "z": None}]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps([{1, 2}]))  # a set is not plain list/dict data
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(bad)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(Exception, match="not a readable pickle"):
        safe_load_pickle(junk)
