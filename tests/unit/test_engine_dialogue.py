"""Multi-turn dialogues: KV-cache reuse (dialogue) against full re-encoding (dialogue_naive), gold answers, sessions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vmed.errors import UserInputError
from vmed.inference import ContextLengthExceeded, Engine, GenParams

QUESTIONS = [
    "What modality is this?", "Is there an effusion?", "Which side?", "Is the heart enlarged?",
    "Any nodules?", "Where is the lesion?", "Is it benign?", "Describe the image.",
]
GOLD = ["x-ray", "yes", "left", "no", "two nodules", "right upper lobe", "probably", "a chest film"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    from vmed.model import build_preset

    model, processor = build_preset("tiny", seed=0)
    return Engine(model, processor)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(3).rand(64, 64, 3) * 255).astype("uint8"))


class VisionCalls:
    """Counts forward calls of the vision tower while active."""

    def __init__(self, engine: Engine):
        self.tower = engine.model.model.vision_tower
        self.count = 0

    def __enter__(self) -> "VisionCalls":
        self.handle = self.tower.register_forward_hook(lambda *args: setattr(self, "count", self.count + 1))
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def texts(results) -> list[str]:
    return [r.text for r in results]


def test_dialogue_reuses_cache_and_matches_naive(engine, image):
    p = GenParams(max_new_tokens=12)
    with VisionCalls(engine) as cached_calls:
        cached = engine.dialogue(image, QUESTIONS, p)
    with VisionCalls(engine) as naive_calls:
        naive = engine.dialogue_naive(image, QUESTIONS, p)
    assert texts(cached) == texts(naive)
    assert [r.prompt_tokens for r in cached] == [r.prompt_tokens for r in naive]
    assert [r.completion_tokens for r in cached] == [r.completion_tokens for r in naive]
    assert (cached_calls.count, naive_calls.count) == (1, len(QUESTIONS))
    assert cached[0].cached_tokens == 0 and all(r.cached_tokens == 0 for r in naive)
    for earlier, later in zip(cached, cached[1:]):  # each turn re-encodes only its own new tokens
        assert later.cached_tokens == earlier.prompt_tokens + earlier.completion_tokens - 1
        assert later.cached_tokens > engine.num_image_tokens


def test_first_turn_equals_generate(engine, image):
    p = GenParams(max_new_tokens=12)
    assert engine.dialogue(image, QUESTIONS[:1], p)[0] == engine.generate(image, [], QUESTIONS[0], p)


def test_gold_answers_give_the_stateless_prompt(engine, image):
    p = GenParams(max_new_tokens=10)
    with VisionCalls(engine) as calls:
        cached = engine.dialogue(image, QUESTIONS, p, gold_answers=GOLD)
    naive = engine.dialogue_naive(image, QUESTIONS, p, gold_answers=GOLD)
    assert texts(cached) == texts(naive)
    assert calls.count == 1
    for k in (1, 4, 7):  # the cached context equals the template's prompt with the gold history
        stateless = engine.generate(image, list(zip(QUESTIONS[:k], GOLD[:k])), QUESTIONS[k], p)
        assert cached[k].text == stateless.text and cached[k].prompt_tokens == stateless.prompt_tokens
    assert texts(cached) != texts(engine.dialogue(image, QUESTIONS, p))


def test_gold_answers_must_match_questions(engine, image):
    with pytest.raises(UserInputError, match="gold_answers"):
        engine.dialogue(image, QUESTIONS, GenParams(max_new_tokens=2), gold_answers=GOLD[:3])


def test_stop_strings_in_dialogue_crop_the_cache(engine, image):
    plain = engine.dialogue(image, QUESTIONS[:4], GenParams(max_new_tokens=16))
    text = plain[1].text
    spots = [i for i in range(1, len(text) - 1) if text[i : i + 2].isascii() and text[i : i + 2].isalnum()]
    stop = text[spots[0] : spots[0] + 2]
    p = GenParams(max_new_tokens=16, stop=[stop])
    with VisionCalls(engine) as calls:
        cached = engine.dialogue(image, QUESTIONS[:4], p)
    naive = engine.dialogue_naive(image, QUESTIONS[:4], p)
    assert texts(cached) == texts(naive)
    assert any(r.finish_reason == "stop" and r.completion_tokens < 16 for r in cached)
    assert calls.count == 1


def test_text_only_dialogue(engine):
    p = GenParams(max_new_tokens=8)
    assert texts(engine.dialogue(None, QUESTIONS[:4], p)) == texts(engine.dialogue_naive(None, QUESTIONS[:4], p))


def test_session_stream_reset_and_context(engine, image):
    p = GenParams(max_new_tokens=10)
    session = engine.session(image)
    first = session.ask("What modality is this?", p)
    stream = session.ask_stream("Is there an effusion?", p)
    pieces = list(stream)
    assert "".join(pieces) == stream.result.text
    assert session.turns == [("What modality is this?", first.text), ("Is there an effusion?", stream.result.text)]
    expected = engine.dialogue(image, ["What modality is this?", "Is there an effusion?"], p)
    assert [first.text, stream.result.text] == texts(expected)
    session.reset()
    assert session.turns == [] and session.cached_tokens == 0
    assert session.ask("What modality is this?", p).text == first.text


def test_closed_stream_stays_out_of_the_conversation(engine, image):
    session = engine.session(image)
    session.ask("Q1?", GenParams(max_new_tokens=4))
    before = session.transcript
    stream = session.ask_stream("Q2?", GenParams(max_new_tokens=1000))
    next(stream)
    stream.close()
    assert session.transcript == before and len(session.turns) == 1
    again = session.ask("Q2?", GenParams(max_new_tokens=6))
    assert again.cached_tokens > engine.num_image_tokens  # the cache was cropped back, not dropped
    fresh = engine.session(image)
    fresh.ask("Q1?", GenParams(max_new_tokens=4))
    expected = fresh.ask("Q2?", GenParams(max_new_tokens=6))
    assert (again.text, again.prompt_tokens, again.completion_tokens) == (expected.text, expected.prompt_tokens, expected.completion_tokens)


def test_session_context_limit(engine):
    session = engine.session(None)
    n = len(engine.prompt_ids(None, [], "Q?"))
    session.ask("Q?", GenParams(max_new_tokens=2))
    with pytest.raises(ContextLengthExceeded):
        session.ask("Another?", GenParams(max_new_tokens=engine.context_length - n))
    assert len(session.turns) == 1
    with pytest.raises(UserInputError, match="empty"):
        session.ask("   ", GenParams(max_new_tokens=2))


def test_failed_generation_drops_the_cache(engine, image, monkeypatch):
    p = GenParams(max_new_tokens=4)
    session = engine.session(image)
    session.ask("Q1?", p)
    assert session.cached_tokens > 0

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    with monkeypatch.context() as m:
        m.setattr(engine.model, "generate", broken)
        with pytest.raises(RuntimeError):
            session.ask("Q2?", p)
    assert session.cached_tokens == 0 and len(session.turns) == 1
    assert session.ask("Q2?", p).text == engine.dialogue(image, ["Q1?", "Q2?"], p)[1].text
