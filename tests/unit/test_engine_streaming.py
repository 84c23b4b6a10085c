"""Streaming on the tiny model with a forced answer: multi-byte characters are never split, and a stop
string made of several byte tokens is found and never shown (issue 12's conditions for keeping ours)."""

from __future__ import annotations

import pytest

from vmed.inference import Engine, GenParams


@pytest.fixture(scope="module")
def engine() -> Engine:
    from vmed.model import build_preset

    model, processor = build_preset("tiny", seed=0)
    return Engine(model, processor)


def force_answer(engine: Engine, text: str):
    """Make the model answer ``text`` token by token, then <|eot_id|> (a forward hook on lm_head)."""
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"] + [engine.tokenizer.convert_tokens_to_ids("<|eot_id|>")]
    calls = [0]

    def hook(module, inputs, output):
        target = ids[min(calls[0], len(ids) - 1)]
        calls[0] += 1
        output = output.clone()
        output[..., target] += 1e4
        return output

    return engine.model.lm_head.register_forward_hook(hook), ids


TEXT = "肺の陰影→38.5°C, 肺炎?"


def test_multibyte_answer_streams_in_whole_characters(engine):
    handle, ids = force_answer(engine, TEXT)
    try:
        assert len(ids) > len(TEXT) + 1  # some characters are several byte tokens
        stream = engine.stream(None, [], "Findings?", GenParams(max_new_tokens=len(ids) + 5))
        pieces = list(stream)
    finally:
        handle.remove()
    assert "".join(pieces) == TEXT == stream.result.text
    assert len(pieces) > 5  # it streams, character by character, not at the end
    assert all("\ufffd" not in p for p in pieces)


@pytest.mark.parametrize("stop", ["肺炎", "°C", "→"])
def test_multibyte_stop_string_across_byte_tokens_is_cut_and_never_shown(engine, stop):
    handle, ids = force_answer(engine, TEXT)
    try:
        assert len(engine.tokenizer(stop, add_special_tokens=False)["input_ids"]) > 1  # the stop string spans tokens
        params = GenParams(max_new_tokens=len(ids) + 5, stop=[stop])
        result = engine.generate(None, [], "Findings?", params)
    finally:
        handle.remove()
    handle, _ = force_answer(engine, TEXT)  # the forced answer starts again from its first token
    try:
        stream = engine.stream(None, [], "Findings?", params)
        pieces = list(stream)
    finally:
        handle.remove()
    expected = TEXT[: TEXT.find(stop)]
    assert result.text == expected and result.finish_reason == "stop"
    assert result.completion_tokens < len(ids)  # generation stopped at the stop string
    assert "".join(pieces) == expected == stream.result.text
    assert all(stop not in "".join(pieces[: i + 1]) for i in range(len(pieces)))
