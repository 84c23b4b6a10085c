"""vmed.inference.Engine on the tiny random model: generate, stream, batches, parameters, limits, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from vmed.errors import UserInputError
from vmed.inference import ContextLengthExceeded, Engine, GenParams


@pytest.fixture(scope="module")
def engine() -> Engine:
    from vmed.model import build_preset

    model, processor = build_preset("tiny", seed=0)
    return Engine(model, processor)


def noise_image(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype("uint8"))


def ascii_stop(text: str) -> str:
    """A two-letter ASCII piece from the middle of ``text`` (never the first characters)."""
    spots = [i for i in range(1, len(text) - 1) if text[i : i + 2].isascii() and text[i : i + 2].isalnum()]
    assert spots, f"no ASCII letters in {text!r}"
    return text[spots[len(spots) // 2] : spots[len(spots) // 2] + 2]


def bias_hook(engine: Engine, token_id: int, after_calls: int = 0):
    """Make the model prefer ``token_id`` once lm_head has run ``after_calls`` times."""
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1
        if calls[0] > after_calls:
            output = output.clone()
            output[..., token_id] += 1e4
        return output

    return engine.model.lm_head.register_forward_hook(hook)


def eot_bias_hook(engine: Engine, after_calls: int):
    """Make the model emit <|eot_id|> once lm_head has run ``after_calls`` times."""
    return bias_hook(engine, engine.tokenizer.convert_tokens_to_ids("<|eot_id|>"), after_calls)


def test_engine_attributes(engine):
    image_id = engine.model.config.image_token_id
    assert engine.prompt_ids(noise_image(0), [], "Q?").count(image_id) == engine.num_image_tokens > 0
    assert engine.prompt_ids(None, [], "Q?").count(image_id) == 0
    assert engine.context_length == engine.model.config.text_config.max_position_embeddings
    assert engine.tokenizer is engine.processor.tokenizer


def test_generate_counts_and_length_finish(engine):
    image = noise_image(0)
    r = engine.generate(image, [], "What is shown?", GenParams(max_new_tokens=7))
    assert r.prompt_tokens == len(engine.prompt_ids(image, [], "What is shown?"))
    text_only = engine.generate(None, [], "What is shown?", GenParams(max_new_tokens=7))
    assert text_only.prompt_tokens == len(engine.prompt_ids(None, [], "What is shown?")) < r.prompt_tokens
    if r.finish_reason == "length":
        assert r.completion_tokens == 7
    assert r.completion_tokens <= 7 and r.total_tokens == r.prompt_tokens + r.completion_tokens


def test_greedy_is_deterministic_and_image_matters(engine):
    p = GenParams(max_new_tokens=10)
    a = engine.generate(noise_image(1), [], "Describe the image.", p)
    b = engine.generate(noise_image(1), [], "Describe the image.", p)
    assert a == b
    others = {engine.generate(noise_image(s), [], "Describe the image.", p).text for s in (2, 3, 4)}
    assert others != {a.text}, "the answer ignores the image"


def test_end_of_turn_token_gives_stop(engine):
    image = noise_image(0)
    first3 = engine.generate(image, [], "Q?", GenParams(max_new_tokens=3))
    handle = eot_bias_hook(engine, after_calls=3)
    try:
        r = engine.generate(image, [], "Q?", GenParams(max_new_tokens=20))
    finally:
        handle.remove()
    assert r.finish_reason == "stop"
    assert r.completion_tokens == 4  # three answer tokens + <|eot_id|>
    assert r.text == first3.text
    handle = eot_bias_hook(engine, after_calls=0)
    try:
        empty = engine.generate(image, [], "Q?", GenParams(max_new_tokens=20))
    finally:
        handle.remove()
    assert (empty.text, empty.completion_tokens, empty.finish_reason) == ("", 1, "stop")


def test_the_image_token_is_never_generated(engine):
    """Even when the model prefers <image>, it is not emitted (as history it would be read as an image slot)."""
    image_id = engine.model.config.image_token_id
    handle = bias_hook(engine, image_id)
    try:
        r = engine.generate(noise_image(0), [], "Q?", GenParams(max_new_tokens=5))
        history = [("Q?", r.text)]
        follow = engine.generate(noise_image(0), history, "And?", GenParams(max_new_tokens=3))
    finally:
        handle.remove()
    assert r.completion_tokens == 5 and r.text.strip() and "<image>" not in r.text  # real tokens, not 5 placeholders
    assert engine.prompt_ids(noise_image(0), history, "And?").count(image_id) == engine.num_image_tokens
    assert follow.completion_tokens >= 1


def test_stop_string_truncates_and_stops_early(engine):
    image = noise_image(5)
    full = engine.generate(image, [], "Findings?", GenParams(max_new_tokens=24))
    stop = ascii_stop(full.text)
    r = engine.generate(image, [], "Findings?", GenParams(max_new_tokens=24, stop=[stop]))
    assert r.text == full.text[: full.text.find(stop)]
    assert stop not in r.text
    assert r.finish_reason == "stop"
    assert r.completion_tokens < full.completion_tokens


def test_stream_pieces_equal_generate(engine):
    image = noise_image(6)
    p = GenParams(max_new_tokens=16)
    stream = engine.stream(image, [("First?", "yes")], "Second?", p)
    pieces = list(stream)
    assert len(pieces) > 1
    expected = engine.generate(image, [("First?", "yes")], "Second?", p)
    assert "".join(pieces) == expected.text
    assert stream.result == expected


def test_stream_with_stop_string_never_shows_it(engine):
    image = noise_image(5)
    full = engine.generate(image, [], "Findings?", GenParams(max_new_tokens=24))
    stop = ascii_stop(full.text)
    stream = engine.stream(image, [], "Findings?", GenParams(max_new_tokens=24, stop=[stop]))
    pieces = list(stream)
    assert "".join(pieces) == full.text[: full.text.find(stop)] == stream.result.text
    assert stream.result.finish_reason == "stop"


def test_stream_close_cancels_generation(engine):
    stream = engine.stream(noise_image(7), [], "Long answer please.", GenParams(max_new_tokens=1500))
    next(stream)
    stream.close()
    assert stream.result.completion_tokens < 1500
    # the engine is free again
    assert engine.generate(None, [], "Hi?", GenParams(max_new_tokens=2)).completion_tokens <= 2


def test_result_before_stream_end_is_an_error(engine):
    stream = engine.stream(None, [], "Hi?", GenParams(max_new_tokens=3))
    with pytest.raises(RuntimeError):
        _ = stream.result
    assert stream.text() == stream.result.text


def test_seeded_sampling(engine):
    image = noise_image(8)
    before = torch.random.get_rng_state()
    a = engine.generate(image, [], "Q?", GenParams(max_new_tokens=16, temperature=1.0, seed=7))
    assert torch.equal(before, torch.random.get_rng_state()), "sampling must not disturb the global RNG"
    b = engine.generate(image, [], "Q?", GenParams(max_new_tokens=16, temperature=1.0, seed=7))
    c = engine.generate(image, [], "Q?", GenParams(max_new_tokens=16, temperature=1.0, seed=8))
    assert a == b
    assert a.text != c.text


def test_batch_equals_one_by_one(engine):
    items = [
        (noise_image(10), [], "What is shown?"),
        (None, [], "Text only question?"),
        (noise_image(11), [("Is it a CT?", "yes")], "Which organ?"),
        (noise_image(12), [], "A much longer question about the left lower lobe of the lung?"),
        (None, [("a", "b"), ("c", "d")], "e?"),
        (noise_image(13), [], "Any effusion?"),
        (noise_image(10), [], "What is shown?"),
    ]
    p = GenParams(max_new_tokens=10)
    batched = engine.generate_batch(items, p, batch_size=3)
    single = [engine.generate(*item, p) for item in items]
    assert batched == single
    assert batched[0] == batched[6]


def test_context_length_exceeded(engine):
    p = GenParams(max_new_tokens=engine.context_length)
    with pytest.raises(ContextLengthExceeded) as info:
        engine.generate(None, [], "Q?", p)
    n = len(engine.prompt_ids(None, [], "Q?"))
    assert isinstance(info.value, UserInputError)
    assert str(n) in str(info.value) and str(engine.context_length) in str(info.value)
    assert (info.value.prompt_tokens, info.value.max_new_tokens) == (n, engine.context_length)
    with pytest.raises(ContextLengthExceeded):
        engine.stream(None, [], "Q?", p)
    with pytest.raises(ContextLengthExceeded, match="item 1"):
        engine.generate_batch([(None, [], "Q?"), (None, [("x" * 9000, "y")], "Q?")], GenParams(max_new_tokens=8))
    fits = GenParams(max_new_tokens=engine.context_length - n)
    assert engine.check_context(n, fits) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_new_tokens": 0}, {"max_new_tokens": 2.5}, {"temperature": -0.1}, {"temperature": float("nan")},
     {"top_p": 0.0}, {"top_p": 1.5}, {"seed": "x"}, {"stop": [3]}, {"seed": 2**63}, {"seed": -(2**63) - 1},
     {"temperature": float("inf")}, {"seed": True}],
)
def test_bad_params_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        GenParams(**kwargs)


def test_tiny_temperatures_decode_greedily_and_extreme_seeds_sample(engine):
    """temperature 1e-300 would overflow the logits to inf (sampling then fails); it decodes greedily like 0."""
    greedy = engine.generate(noise_image(3), [], "Q?", GenParams(max_new_tokens=6))
    assert GenParams(temperature=1e-300).greedy and not GenParams(temperature=1e-4).greedy
    assert engine.generate(noise_image(3), [], "Q?", GenParams(max_new_tokens=6, temperature=1e-300, seed=1)) == greedy
    for seed in (-(2**63), 2**63 - 1):
        r = engine.generate(noise_image(3), [], "Q?", GenParams(max_new_tokens=4, temperature=0.8, seed=seed))
        assert r.completion_tokens >= 1


def test_fit_max_new_tokens_is_the_one_context_rule():
    from vmed.inference.params import fit_max_new_tokens

    assert fit_max_new_tokens(100, 128, None, default=256) == 28  # clamped to the room left
    assert fit_max_new_tokens(100, 128, 28) == 28
    with pytest.raises(ContextLengthExceeded, match="max_tokens is 29: 129 > .* 128 tokens"):
        fit_max_new_tokens(100, 128, 29, name="max_tokens")
    with pytest.raises(ContextLengthExceeded, match="fills the model's context of 128") as info:
        fit_max_new_tokens(128, 128, None)
    assert info.value.max_new_tokens is None


def test_image_placeholder_in_text_never_becomes_a_second_image_slot(engine):
    from vmed.errors import UserInputError

    image_id = engine.model.config.image_token_id
    with pytest.raises(UserInputError, match="<image>"):
        engine.check_image_slots([1, 2] + [image_id] * (engine.num_image_tokens + 1), engine.num_image_tokens)
    engine.check_image_slots([1, 2] + [image_id] * engine.num_image_tokens, engine.num_image_tokens)
    for image, question in ((noise_image(1), "<image> What is it?"), (None, "What is <image>?")):
        try:
            ids = engine.prompt_ids(image, [], question)
        except UserInputError as e:  # the template still makes <image> a slot: refused with a clear message
            assert "<image>" in str(e)
        else:  # the template encodes it as text: exactly the image's own slots
            assert ids.count(image_id) == (engine.num_image_tokens if image is not None else 0)


def test_engine_satisfies_the_protocol_the_server_is_typed_against(engine):
    from vmed.inference.protocol import AnswerEngine

    assert isinstance(engine, AnswerEngine)


def test_stop_accepts_a_single_string():
    assert GenParams(stop="###").stop == ["###"]


def test_non_pil_image_is_refused(engine):
    with pytest.raises(UserInputError, match="PIL"):
        engine.generate(np.zeros((64, 64, 3)), [], "Q?", GenParams(max_new_tokens=2))


def test_threads_share_one_engine(engine):
    p = GenParams(max_new_tokens=8)
    questions = [f"Question {i}?" for i in range(4)]
    expected = [engine.generate(noise_image(20), [], q, p) for q in questions]
    got: dict[int, object] = {}

    def worker(i: int) -> None:
        got[i] = engine.generate(noise_image(20), [], questions[i], p)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == expected


def test_stop_helpers():
    from vmed.inference.streaming import _held_back, find_stop

    assert find_stop("abcXYdefde", ["de", "XY"]) == 3
    assert find_stop("abc", ["zz"]) is None
    assert _held_back("hello wor", ["world"]) == 3  # "wor" may become "world"
    assert _held_back("hello w", ["world", "wx"]) == 1
    assert _held_back("abc\ufffd", []) == 1  # half a UTF-8 character waits for its other bytes
    assert _held_back("abc", ["zz"]) == 0


def test_finish_row_cuts_at_end_of_turn(engine):
    from vmed.inference.streaming import finish_row

    tok = engine.tokenizer
    hello = tok("hello there", add_special_tokens=False)["input_ids"]
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    row = finish_row(tok, hello + [eot, 7, 7], engine.eos_ids, [], max_new_tokens=20)
    assert (row.text, row.ids, row.closed, row.finish_reason) == ("hello there", hello + [eot], True, "stop")
    row = finish_row(tok, hello, engine.eos_ids, [], max_new_tokens=len(hello))
    assert (row.text, row.closed, row.finish_reason) == ("hello there", False, "length")
    row = finish_row(tok, hello, engine.eos_ids, ["the"], max_new_tokens=len(hello))
    assert (row.text, row.cut_by_stop_string, row.finish_reason) == ("hello ", True, "stop")
