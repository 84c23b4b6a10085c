"""Builders of tiny datasets in the exact official layouts, quirks included, for the converter tests.

Each ``build_*`` writes into a folder and returns it. Images are 32 px PNG/JPEG files whose pixels
depend on a seed, so two images with different seeds have different content hashes.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, seed: int, size: int = 32) -> Path:
    """A small RGB image (JPEG or PNG by suffix) whose content depends on ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else Image.fromarray(arr).save(path)
    return path


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    import io

    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _rad(qid, image, question, answer, atype, qtype, phrase, organ="HEAD"):
    return {"qid": qid, "image_name": image, "image_organ": organ, "answer": answer, "answer_type": atype,
            "question_type": qtype, "question": question, "phrase_type": phrase}


def build_vqa_rad_mevf(root: Path) -> Path:
    """MEVF form: trainset.json, testset.json, images/.

    train: img1 (6 rows: 1 exact duplicate, 1 frame, an int answer, "CLOSED " with a trailing space,
    mixed-case yes), img2 (2 rows, one is a frame), img3 (missing file), img5 (corrupt file);
    test: img1 (leaked, 1 row), img4 (1 row), img2 only via a frame row in train (so it leaks only
    with --include-frames).
    """
    for i in (1, 2, 4):
        make_image(root / "images" / f"synpic{i}.jpg", seed=i)
    (root / "images" / "synpic5.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    train = [
        _rad(1, "synpic1.jpg", "Is there a mass in the liver?", "Yes", "CLOSED", "PRES", "freeform", "ABD"),
        _rad(2, "synpic1.jpg", "How many masses are there?", 2, "OPEN", "COUNT", "freeform", "ABD"),
        _rad(3, "synpic1.jpg", "Is the spleen enlarged?", "no", "CLOSED ", "SIZE", "para", "ABD"),
        _rad(4, "synpic1.jpg", "What imaging modality was used?", "MRI", "OPEN", "MODALITY", "freeform", "ABD"),
        _rad(5, "synpic1.jpg", "Is there a mass in the liver?", "Yes", "CLOSED", "PRES", "para", "ABD"),
        _rad(6, "synpic1.jpg", "Is/Are there a mass in the liver?", "yes", "CLOSED", "PRES", "frame", "ABD"),
        _rad(7, "synpic2.jpg", "What plane is this?", "Axial", "OPEN", "PLANE", "freeform"),
        _rad(8, "synpic2.jpg", "Is/Are the ventricles enlarged?", "No", "CLOSED", "SIZE", "frame"),
        _rad(9, "synpic3.jpg", "Is this normal?", "yes", "CLOSED", "ABN", "freeform"),
        _rad(10, "synpic5.jpg", "Is this normal?", "no", "CLOSED", "ABN", "freeform"),
        _rad(14, "synpic6.jpg", "Is this a CT?", "Yes", "CLOSED", "MODALITY", "frame"),
    ]
    test = [
        _rad(11, "synpic1.jpg", "Is the liver normal?", "No", "CLOSED", "ABN", "test_freeform", "ABD"),
        _rad(12, "synpic4.jpg", "What organ is shown?", "Brain", "OPEN", "ORGAN", "freeform"),
        _rad(13, "synpic4.jpg", "Is there bleeding?", "yes", "CLOSED", "PRES, POS", "para"),
    ]
    # synpic6 appears only in a train frame row and in test: leaks only with --include-frames
    test.append(_rad(15, "synpic6.jpg", "Is this a CT?", "yes", "CLOSED", "MODALITY", "freeform"))
    make_image(root / "images" / "synpic6.jpg", seed=6)
    (root / "trainset.json").write_text(json.dumps(train))
    (root / "testset.json").write_text(json.dumps(test))
    return root


def build_vqa_rad_official(root: Path) -> Path:
    """Official OSF form: one JSON with phrase_type deciding the split, images in 'VQA_RAD Image Folder'."""
    make_image(root / "VQA_RAD Image Folder" / "synpic1.jpg", seed=1)
    make_image(root / "VQA_RAD Image Folder" / "synpic2.jpg", seed=2)
    base = {"qid_linked_id": "", "image_case_url": "", "evaluation": "given", "question_rephrase": "NULL",
            "question_relation": "NULL", "question_frame": "NULL"}
    rows = [
        {**base, **_rad("0115ab", "synpic1.jpg", "Is the heart enlarged?", "Yes", "CLOSED ", "SIZE", "freeform", "CHEST")},
        {**base, **_rad("0115ac", "synpic1.jpg", "What plane?", "PA", "OPEN", "PLANE", "para", "CHEST")},
        {**base, **_rad("0116aa", "synpic2.jpg", "Is the heart enlarged?", "no", "CLOSED", "SIZE", "test_freeform", "CHEST")},
        {**base, **_rad("0116ab", "synpic2.jpg", "How many ribs?", 12, "OPEN", "COUNT", "test_para", "CHEST")},
    ]
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(rows, indent=1))
    return root


def build_slake(root: Path) -> Path:
    """Slake1.0: train/validate/test.json + imgs/xmlabN/source.jpg; en + zh rows, empty answer, varied key order."""
    for n in (1, 2, 3):
        make_image(root / "imgs" / f"xmlab{n}" / "source.jpg", seed=10 + n)

    def row(qid, img, q, a, lang, ctype, atype="OPEN", reorder=False):
        r = {"img_id": img, "img_name": f"xmlab{img}/source.jpg", "question": q, "answer": a, "q_lang": lang,
             "location": "Abdomen", "modality": "CT", "answer_type": atype, "base_type": "vqa", "content_type": ctype,
             "triple": ["vhead", "_", "_"], "qid": qid}
        return dict(reversed(list(r.items()))) if reorder else r

    train = [
        row(0, 1, "Does the picture contain liver?", "Yes", "en", "Organ", "CLOSED"),
        row(1, 1, "What modality is used to take this image?", "CT", "en", "Modality"),
        row(2, 1, "Does the picture contain kidney?", "", "en", "Organ", "CLOSED", reorder=True),
        row(3, 1, "这张图片的成像方式是什么?", "CT", "zh", "Modality"),
        row(4, 1, "Does the picture contain spleen?", "yes", "en", "Organ", "CLOSED"),
        row(5, 1, "Does the picture contain spleen?", "yes", "en", "Organ", "CLOSED"),
        row(6, 2, "Which part of the body does this image belong to?", "Abdomen", "en", "Position"),
    ]
    validate = [row(7, 3, "Is this image normal?", "No", "en", "Abnormality", "CLOSED"),
                row(8, 3, "图片正常吗?", "否", "zh", "Abnormality", "CLOSED")]
    test = [row(9, 2, "What modality is used to take this image?", "CT", "en", "Modality")]
    for name, rows in (("train", train), ("validate", validate), ("test", test)):
        (root / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False))
    return root


def build_pathvqa(root: Path) -> Path:
    """qas/{train,val,test}/{split}_qa.pkl (lists of dicts) + images/{split}/{image}.jpg."""
    data = {
        "train": [{"image": "train_0001", "question": "Does this image show necrosis?", "answer": "Yes"},
                  {"image": "train_0001", "question": "What is present?", "answer": "granuloma"},
                  {"image": "train_0002", "question": "Is the nucleus enlarged?", "answer": "no"}],
        "val": [{"image": "val_0001", "question": "What does this show?", "answer": "fibrosis"}],
        "test": [{"image": "test_0001", "question": "Is this malignant?", "answer": "yes"}],
    }
    for split, rows in data.items():
        (root / "qas" / split).mkdir(parents=True, exist_ok=True)
        (root / "qas" / split / f"{split}_qa.pkl").write_bytes(pickle.dumps(rows))
        for r in rows:
            make_image(root / "images" / split / f"{r['image']}.jpg", seed=sum(map(ord, r["image"])))
    return root


def build_vqa_med_2019(root: Path) -> Path:
    """The three ImageCLEF folders: by-category train/val files, the test file with '#' alternatives."""
    tr = root / "ImageClef-2019-VQA-Med-Training"
    va = root / "ImageClef-2019-VQA-Med-Validation"
    te = root / "VQAMed2019Test"
    for folder, img_dir, ids in ((tr, "Train_images", ["synpic100", "synpic101"]), (va, "Val_images", ["synpic200"]),
                                 (te, "VQAMed2019_Test_Images", ["synpic300"])):
        for i, name in enumerate(ids):
            make_image(folder / img_dir / f"{name}.jpg", seed=300 + i + len(str(folder)))
    cats = tr / "QAPairsByCategory"
    cats.mkdir(parents=True)
    (cats / "C1_Modality_train.txt").write_text("synpic100|what modality is shown?|ct w/contrast (iv)\n")
    (cats / "C2_Plane_train.txt").write_text("synpic100|what plane is this?|axial\nsynpic101|which plane is this image in?|sagittal\n")
    (cats / "C3_Organ_train.txt").write_text("synpic100|what organ system is shown?|gastrointestinal\n")
    (cats / "C4_Abnormality_train.txt").write_text("synpic101|is this image abnormal?|yes\nsynpic100|what is abnormal?|appendicitis\n")
    (tr / "All_QA_Pairs_train.txt").write_text("synpic100|what plane is this?|axial\n")
    vcats = va / "QAPairsByCategory"
    vcats.mkdir(parents=True)
    (vcats / "C2_Plane_val.txt").write_text("synpic200|what plane is this?|coronal\n")
    (te / "VQAMed2019_Test_Questions_w_Ref_Answers.txt").write_text(
        "synpic300|modality|what modality is this?|mr - flair#mr flair\n"
        "synpic300|abnormality|what is the abnormality?|meningioma#meningiomas\n"
    )
    return root


def build_hf_parquet(root: Path) -> Path:
    """data/{train,test}-00000-of-00001.parquet with image{bytes,path}, question, answer; one image in both splits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    a, b, c = image_bytes(1), image_bytes(2), image_bytes(3, "JPEG")

    def table(rows):
        return pa.table({
            "image": pa.array([{"bytes": r[0], "path": r[1]} for r in rows],
                              type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "question": [r[2] for r in rows],
            "answer": [r[3] for r in rows],
        })

    pq.write_table(table([(a, None, "is there a mass?", "yes"), (a, None, "where is the mass?", "left lung"),
                          (b, "x.jpg", "is this normal?", "No"), (a, None, "is there a mass?", "yes")]),
                   root / "data" / "train-00000-of-00001.parquet")
    pq.write_table(table([(c, None, "what organ?", "brain"), (a, None, "is the heart big?", "no")]),
                   root / "data" / "test-00000-of-00001.parquet")
    return root


def llava_record(rid: str, image: str | None, pairs: list[tuple[str, str]], image_first: bool = True) -> dict:
    conv = []
    for i, (q, a) in enumerate(pairs):
        if i == 0 and image:
            q = f"<image>\n{q}" if image_first else f"{q}\n<image>"
        conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    rec = {"id": rid, "conversations": conv}
    if image:
        rec["image"] = image
    return rec


def build_roco(root: Path) -> Path:
    """ROCO: data/{train,validation}/radiology/{captions.txt, images/}; one caption whose image is missing."""
    for split, ids in (("train", ["ROCO_00001", "ROCO_00002"]), ("validation", ["ROCO_00003"])):
        d = root / "data" / split / "radiology"
        lines = []
        for i, rid in enumerate(ids):
            make_image(d / "images" / f"{rid}.jpg", seed=500 + i + len(split))
            lines.append(f"{rid}\t Computed tomography of the chest showing a {split} nodule {i}.")
        lines.append("ROCO_09999\t An image that was never downloaded.")
        (d / "captions.txt").write_text("\n".join(lines) + "\n")
    return root
