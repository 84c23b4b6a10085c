"""The demo report's yes/no side accuracy per lesion layout, read from the evaluation's row scores."""

import json
from pathlib import Path

import numpy as np

from vmed.data.phantom import generate_phantoms
from vmed.data.schema import read_jsonl
from vmed.demo import side_yes_no_by_layout


def test_side_accuracy_is_split_by_the_images_layout(tmp_path: Path) -> None:
    paths = generate_phantoms(tmp_path / "ph", 120, seed=3, size=32)
    records = read_jsonl(paths["test"]) + read_jsonl(paths["train"])
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    rng = np.random.default_rng(0)
    rows, expected = [], {}
    for r in records:
        layout = r.meta["layout"] or "none"
        for i, t in enumerate(r.turns):
            score = float(rng.integers(2))
            rows.append({"id": r.id, "turn": i, "answer_type": t.answer_type, "question_type": t.question_type,
                         "closed_accuracy_strict": score} if t.answer_type == "closed" else
                        {"id": r.id, "turn": i, "answer_type": t.answer_type, "question_type": t.question_type})
            if t.question.startswith("Is there a lesion on the "):
                expected.setdefault(layout, []).append(score)
        rows.append({"id": r.id, "turn": len(r.turns), "answer_type": "summary", "question_type": "SUMMARY"})
    scores = tmp_path / "row_scores.jsonl"
    scores.write_text("".join(json.dumps(x) + "\n" for x in rows), encoding="utf-8")

    got = side_yes_no_by_layout(test, scores)

    assert set(got) == {"none", "left", "right", "both"}  # the yes/no side question is asked of every layout
    for layout, values in expected.items():
        assert got[layout]["questions"] == len(values)
        assert got[layout]["accuracy"] == round(sum(values) / len(values), 4)
