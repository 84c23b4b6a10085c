"""hf-parquet: rows grouped by the sha256 of the image bytes; images written out; leaks by content."""

from __future__ import annotations

import hashlib

from _fixtures_data import build_hf_parquet, image_bytes

from vmed.data.build import convert
from vmed.data.schema import read_jsonl, resolve_image


def test_groups_by_image_hash_and_writes_images(tmp_path):
    root = build_hf_parquet(tmp_path / "vqa-rad-hf")
    out = tmp_path / "out"
    rep = convert("hf-parquet", root, out, progress=False)
    assert rep.splits["train"]["rows_read"] == 4 and rep.splits["train"]["skipped"] == {"duplicate": 1}
    train = {d.meta["image_key"]: d for d in read_jsonl(out / "train.jsonl")}
    key_a = hashlib.sha256(image_bytes(1)).hexdigest()[:16] + ".png"
    assert set(train) == {key_a, hashlib.sha256(image_bytes(2)).hexdigest()[:16] + ".png"}
    assert len(train[key_a].turns) == 2
    path = resolve_image(train[key_a], out / "train.jsonl")
    assert path == (out / "images" / key_a).resolve() and path.read_bytes() == image_bytes(1)
    test = {d.meta["image_key"]: d for d in read_jsonl(out / "test.jsonl")}
    assert any(k.endswith(".jpg") for k in test)
    assert rep.leaks["names"] == [key_a] and rep.leaks["by_content"] == 1
    rep = convert("hf-parquet", root, tmp_path / "dj", split_policy="image-disjoint", progress=False)
    assert rep.moved["list"] == [{"image": key_a, "from": "train", "to": "test", "rows": 2}]
