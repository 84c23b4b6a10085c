"""``vmed.data.records``: the one record -> turns function, the summary turn in training sequences (labels,
truncation), and prompt parity between a training sequence and the evaluation's final prompt."""

from __future__ import annotations

import json

import pytest

from vmed.constants import IGNORE_INDEX, SUMMARY_PROMPT
from vmed.data.collate import encode_record
from vmed.data.records import record_turns
from vmed.data.schema import Dialogue, Turn
from vmed.model.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def _record(n_turns: int = 3, summary: str | None = "CT of the chest showing the lungs, with one small bright lesion.") -> Dialogue:
    turns = [Turn(f"Question number {i} about the lesion?", f"answer {i}", "open", "X", str(i + 1)) for i in range(n_turns)]
    return Dialogue("r/1", "images/a.png", turns, "test", "train", summary, {})


def _label_runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, end) of every run of labelled positions."""
    runs, start = [], None
    for i, lab in enumerate(labels + [IGNORE_INDEX]):
        if lab != IGNORE_INDEX and start is None:
            start = i
        elif lab == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_record_turns_end_with_the_evaluation_summary_prompt():
    rec = _record(2)
    assert record_turns(rec) == [(t.question, t.answer) for t in rec.turns] + [(SUMMARY_PROMPT, rec.summary)]
    assert record_turns(rec, "none") == [(t.question, t.answer) for t in rec.turns]
    assert record_turns(_record(2, summary=None)) == [(t.question, t.answer) for t in rec.turns]
    assert record_turns(rec, "last", "Summarize.")[-1] == ("Summarize.", rec.summary)
    with pytest.raises(ValueError, match="summary_turn"):
        record_turns(rec, "first")


def test_summary_tokens_carry_loss_like_any_answer(tok):
    rec = _record(2)
    enc, ends = encode_record(tok, rec, num_image_tokens=4, max_length=None)
    assert ends and enc.num_turns == 3 and enc.dropped_turns == 0
    runs = _label_runs(enc.labels)
    assert len(runs) == 3  # two answers and the summary, each with its <|eot_id|>
    answers = [tok.decode(enc.input_ids[a:b], skip_special_tokens=True).strip() for a, b in runs]
    assert answers == ["answer 0", "answer 1", rec.summary]
    plain, ends_plain = encode_record(tok, rec, num_image_tokens=4, max_length=None, summary_turn="none")
    assert not ends_plain and plain.input_ids == enc.input_ids[: len(plain)]


def test_a_long_dialogue_loses_its_latest_question_turns_before_the_summary(tok):
    rec = _record(6)
    full, _ = encode_record(tok, rec, num_image_tokens=4, max_length=None)
    two_questions = record_turns(rec)[:2] + record_turns(rec)[-1:]
    from vmed.data.template import encode_dialogue

    want = encode_dialogue(tok, two_questions, num_image_tokens=4)
    enc, ends = encode_record(tok, rec, num_image_tokens=4, max_length=len(want) + 3)
    assert len(enc) < len(full) and ends
    assert enc.input_ids == want.input_ids and enc.labels == want.labels  # whole turns only, summary last
    assert enc.num_turns == 3 and enc.dropped_turns == 4


def test_a_summary_that_fits_nowhere_leaves_the_question_turns(tok):
    rec = _record(2, summary=" ".join(["word"] * 200))
    from vmed.data.template import encode_dialogue

    questions = encode_dialogue(tok, record_turns(rec, "none"), num_image_tokens=4)
    enc, ends = encode_record(tok, rec, num_image_tokens=4, max_length=len(questions) + 2)
    assert not ends and enc.input_ids == questions.input_ids and enc.dropped_turns == 1


def test_training_sequence_and_the_evaluation_final_prompt_agree_token_for_token(tmp_path):
    """The stage-3 training sequence of a record, up to its summary answer, is exactly the prompt the evaluation
    runner (dialogue mode, reference history) gives the model for the summary turn: same system prompt, same
    template, the summary question in the same place."""
    from vmed.data.collate import DialogueDataset
    from vmed.data.phantom import generate_phantoms
    from vmed.data.schema import read_jsonl, write_jsonl
    from vmed.evaluation.runner import run_eval
    from vmed.inference import Engine
    from vmed.model import build_preset, num_image_tokens, save_model

    save_model(*build_preset("tiny"), tmp_path / "tiny")
    engine = Engine.from_pretrained(tmp_path / "tiny")
    train = generate_phantoms(tmp_path / "ph", 10, seed=0)["train"]
    rec = max(read_jsonl(train), key=lambda r: len(r.turns))
    assert len(rec.turns) >= 3 and rec.summary
    one = tmp_path / "ph" / "one.jsonl"
    write_jsonl(one, [rec])

    prompts = []
    run = engine.run

    def recording_run(batch, *args, **kwargs):
        prompts.append(list(batch[0]))
        return run(batch, *args, **kwargs)

    engine.run = recording_run
    run_eval(engine, one, tmp_path / "eval", history="gold", max_new_tokens=2, progress=False)
    assert len(prompts) == len(rec.turns) + 1
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert rows[-1]["question"] == SUMMARY_PROMPT and rows[-1]["reference"] == rec.summary

    ds = DialogueDataset([rec], one, engine.processor, num_image_tokens=num_image_tokens(engine.model.config), max_length=None)
    item = ds[0]
    ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
    start, end = _label_runs(labels)[-1]
    assert end == len(ids) and ds.summary_turns == 1
    assert ids[:start] == prompts[-1]  # token for token up to the summary answer
    assert engine.tokenizer.decode(ids[start:], skip_special_tokens=True).strip() == rec.summary
    # and every earlier question's prompt is a prefix of the same sequence, at the start of its answer
    for (a, _), prompt in zip(_label_runs(labels)[:-1], prompts[:-1]):
        assert ids[:a] == prompt
