"""Synthetic phantoms: determinism, answer balance, answers and pixels that agree with the findings."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from vmed.constants import SUMMARY_PROMPT
from vmed.data.phantom import ALL_KINDS, DEFAULT_KINDS, generate_phantoms, make_phantoms, render_phantom
from vmed.data.records import describe_records, instruction_records
from vmed.data.schema import read_jsonl, resolve_image, validate_file
from vmed.errors import UserInputError

COUNT_WORDS = {0: "no", 1: "one", 2: "two", 3: "three"}


@pytest.fixture(scope="module")
def phantoms300():
    return make_phantoms(300, seed=7, size=32, question_kinds=ALL_KINDS)


def _answers_by_question(records):
    by = defaultdict(Counter)
    for r in records:
        for t in r.turns:
            by[t.question][t.answer] += 1
    return by


def _expected_answer(question: str, meta: dict) -> str:
    """An independent oracle: the answer to a phantom question, computed from the findings in meta."""
    c, layout = meta["lesion_count"], meta["layout"]
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    modality_q = {"Is this a CT scan?": "CT", "Is this an MRI?": "MRI", "Is this an X-ray?": "X-ray"}
    if question in modality_q:
        return yes(meta["modality"] == modality_q[question])
    if question == "What modality is this?":
        return meta["modality"]
    if question == "Which organ is shown?":
        return meta["organ"]
    if question == "Is there a lesion?":
        return yes(c > 0)
    if question == "How many lesions are there?":
        return str(c)
    if question.startswith("On which side"):
        sides = {les["side"] for les in meta["lesions"]}
        return sides.pop() if len(sides) == 1 else "both"
    if question.startswith("Is there a lesion on the "):
        side = question.split()[-2]
        return yes(any(les["side"] == side for les in meta["lesions"]))
    if question.startswith("How large"):
        return meta["lesions"][0]["size"]
    if question in ("Is the lesion large?", "Are the lesions large?"):
        return yes(all(les["size"] == "large" for les in meta["lesions"]))
    if "bright or dark" in question:
        return meta["lesions"][0]["brightness"]
    if question in ("Is the lesion bright?", "Are the lesions bright?"):
        return yes(all(les["brightness"] == "bright" for les in meta["lesions"]))
    raise AssertionError(f"unexpected question {question!r}")


def _components(mask: np.ndarray) -> int:
    """Number of 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
    return count


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = generate_phantoms(tmp_path / "a", 30, seed=5, size=32)
    b = generate_phantoms(tmp_path / "b", 30, seed=5, size=32)
    c = generate_phantoms(tmp_path / "c", 30, seed=6, size=32)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 33
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert a["train"].read_bytes() != c["train"].read_bytes()
    assert set(a) == {"train", "validation", "test"}


def test_files_split_and_validate(tmp_path):
    paths = generate_phantoms(tmp_path, 100, seed=1, size=32)
    sizes = {}
    for split, path in paths.items():
        assert validate_file(path) == (len(read_jsonl(path)), [])
        records = read_jsonl(path)
        sizes[split] = len(records)
        for r in records:
            assert r.split == split and r.source == "phantom" and r.summary
            assert not r.image.startswith("/")
            with Image.open(resolve_image(r, path)) as im:
                assert im.mode == "RGB" and im.size == (32, 32)
                px = np.asarray(im)
                assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    assert sizes == {"train": 80, "validation": 10, "test": 10}
    ids = [r.id for p in paths.values() for r in read_jsonl(p)]
    assert len(set(ids)) == 100


@pytest.mark.parametrize("kinds, seed", [(DEFAULT_KINDS, 0), (ALL_KINDS, 1)])
def test_answers_are_balanced_for_every_question_text(kinds, seed):
    records = [p.record for p in make_phantoms(300, seed=seed, size=32, question_kinds=kinds)]
    by = _answers_by_question(records)
    assert len(by) >= 8
    for question, counts in by.items():
        k = len(counts)
        assert k >= 2, f"{question!r} always has the answer {counts}"
        total = sum(counts.values())
        assert max(counts.values()) / total <= 1 / k + 0.05, (question, counts)


def test_closed_answers_are_balanced_within_the_test_split():
    """The demo scores closed questions on the test split: a model blind to the image, even one that knew
    each question's majority answer on that split, stays near chance."""
    phantoms = make_phantoms(1000, seed=0, size=16)
    test = [p.record for p in phantoms if p.record.split == "test"]
    assert len(test) == 100
    closed = _answers_by_question([dataclasses.replace(r, turns=[t for t in r.turns if t.answer_type == "closed"]) for r in test])
    total = sum(sum(c.values()) for c in closed.values())
    yes = sum(c["yes"] for c in closed.values())
    assert total > 100 and 0.45 <= yes / total <= 0.55
    assert sum(max(c.values()) for c in closed.values()) / total <= 0.56


def test_answers_agree_with_findings(phantoms300):
    kinds_seen = set()
    for p in phantoms300:
        for t in p.record.turns:
            assert t.answer == _expected_answer(t.question, p.record.meta), (t, p.record.meta)
            assert t.answer_type == ("closed" if t.answer in ("yes", "no") else "open")
            kinds_seen.add(t.question_type)
    assert kinds_seen == {"MODALITY", "ORGAN", "PRES", "COUNT", "POS", "SIZE", "ATTRIB"}


def test_answer_vocabulary(phantoms300):
    by = _answers_by_question([p.record for p in phantoms300])
    assert set(by["What modality is this?"]) == {"CT", "MRI", "X-ray"}
    assert set(by["How many lesions are there?"]) == {"0", "1", "2", "3"}
    assert set(by["On which side is the lesion?"]) == {"left", "right"}
    assert set(by["On which side are the lesions?"]) == {"left", "right", "both"}
    assert set(by["Is there a lesion?"]) == {"yes", "no"}


def test_default_dialogues_are_short_and_kinds_can_be_chosen():
    records = [p.record for p in make_phantoms(200, seed=2, size=32)]
    lengths = Counter(len(r.turns) for r in records)
    assert min(lengths) >= 2 and max(lengths) <= 4
    assert 2.8 <= sum(k * v for k, v in lengths.items()) / len(records) <= 4.0
    assert {t.question_type for r in records for t in r.turns} == {"MODALITY", "PRES", "COUNT", "POS"}
    only = [p.record for p in make_phantoms(60, seed=2, size=32, question_kinds=["presence", "modality"])]
    assert {t.question_type for r in only for t in r.turns} == {"PRES", "MODALITY"}
    assert all(r.turns[0].question_type == "MODALITY" for r in only)  # fixed kind order
    assert all([t.qid for t in r.turns] == [str(i + 1) for i in range(len(r.turns))] for r in only)


def test_summary_states_the_findings(phantoms300):
    for p in phantoms300:
        m, s = p.record.meta, p.record.summary
        assert s.startswith(f"{m['modality']} of the {m['region']} showing the {m['organ']}")
        assert COUNT_WORDS[m["lesion_count"]] in s.split()
        if m["lesion_count"]:
            assert m["lesion_size"] in s and m["lesion_brightness"] in s
            assert ("both sides" in s) == (m["layout"] == "both")
            if m["layout"] != "both":
                assert f"on the {m['layout']} side" in s
        else:
            assert "no lesions" in s


def test_lesion_pixels_agree_with_meta(tmp_path):
    """Every lesion in meta is a near-white or near-black disk in the PNG, on its side of the midline."""
    paths = generate_phantoms(tmp_path, 60, seed=3, size=64)
    checked = 0
    for path in paths.values():
        for r in read_jsonl(path):
            px = np.asarray(Image.open(resolve_image(r, path)).convert("L"), dtype=np.float64)
            yy, xx = np.mgrid[0:64, 0:64] + 0.5
            for les in r.meta["lesions"]:
                (cx, cy), rad = les["center_px"], les["radius_px"]
                disk = np.hypot(xx - cx, yy - cy) <= 0.8 * rad
                value = px[disk].mean()
                assert value >= 235 if les["brightness"] == "bright" else value <= 15, (r.id, les, value)
                assert (cx + rad < 32) if les["side"] == "left" else (cx - rad > 32), (r.id, les)
                assert rad >= 0.1 * 64
                checked += 1
    assert checked > 60


def test_lesions_change_only_their_side_and_can_be_counted(phantoms300):
    """Rendering the same phantom without lesions: the difference lies only in the stated halves,
    and it has exactly as many blobs as the stated lesion count."""
    for i, p in enumerate(phantoms300[:80]):
        f = p.findings
        plain = render_phantom(dataclasses.replace(f, lesions=(), layout=None), 32, np.random.default_rng([7, i]))
        diff = np.abs(p.pixels.astype(int) - plain.astype(int)) > 40
        left, right = diff[:, :16].sum(), diff[:, 16:].sum()
        layout = p.record.meta["layout"]
        if layout is None:
            assert diff.sum() == 0
        elif layout == "left":
            assert left > 20 and right == 0
        elif layout == "right":
            assert right > 20 and left == 0
        else:
            assert left > 20 and right > 20
        assert _components(diff) == f.count, (p.record.id, f.count)


def test_modality_is_visible_in_global_statistics(phantoms300):
    """A nearest-centroid classifier on 3 global statistics of 32 px images (median intensity, dark
    fraction, median horizontal gradient = texture) tells the modalities apart."""

    def features(px):
        x = px.astype(np.float64) / 255
        return np.array([np.median(x), (x < 0.1).mean(), np.median(np.abs(np.diff(x, axis=1)))])

    X = np.stack([features(p.pixels) for p in phantoms300])
    y = np.array([p.findings.modality for p in phantoms300])
    mu, sd = X[:150].mean(0), X[:150].std(0) + 1e-9
    Z = (X - mu) / sd
    centroids = {m: Z[:150][y[:150] == m].mean(0) for m in ("CT", "MRI", "X-ray")}
    pred = [min(centroids, key=lambda m: np.linalg.norm(z - centroids[m])) for z in Z[150:]]
    assert np.mean(np.array(pred) == y[150:]) >= 0.93


def test_describe_records(phantoms300):
    dialogues = [p.record for p in phantoms300[:20]]
    described = describe_records(dialogues)
    assert len(described) == 20
    for d, src in zip(described, dialogues):
        assert len(d.turns) == 1 and d.turns[0].question == SUMMARY_PROMPT
        assert d.turns[0].answer == src.summary and d.turns[0].answer_type == "open"
        assert d.turns[0].question_type == "SUMMARY"
        assert d.image == src.image and d.split == src.split and d.id != src.id
    assert describe_records([dataclasses.replace(dialogues[0], summary=None)]) == []


def test_instruction_records(phantoms300):
    dialogues = [p.record for p in phantoms300]
    a = instruction_records(dialogues, seed=0)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in instruction_records(dialogues, seed=0)]
    assert len(a) == sum(len(d.turns) + 1 for d in dialogues)
    assert len({r.id for r in a}) == len(a)
    assert all(len(r.turns) == 1 for r in a)
    originals = {t.question for d in dialogues for t in d.turns}
    reworded = [r for r in a if r.turns[0].question not in originals and r.turns[0].question_type != "SUMMARY"]
    assert len(reworded) > len(a) // 3
    # Each instruction record keeps the answer of the turn it came from (checked against the findings).
    by_id = {d.id: d for d in dialogues}
    for r in a:
        src = by_id[r.id.split("#")[0]]
        if r.turns[0].question_type == "SUMMARY":
            assert r.turns[0].answer == src.summary
        else:
            k = int(r.id.split("#inst")[1])
            assert r.turns[0].answer == src.turns[k].answer
    # Rewording keeps every wording close to balanced.
    for question, counts in _answers_by_question([r for r in a if r.turns[0].question_type != "SUMMARY"]).items():
        assert max(counts.values()) / sum(counts.values()) <= 1 / len(counts) + 0.1, (question, counts)


@pytest.mark.parametrize(
    "kwargs",
    [dict(n=0), dict(n=5, split=(0.5, 0.5, 0.5)), dict(n=5, question_kinds=["colour"]), dict(n=5, size=4)],
)
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        make_phantoms(**kwargs)
