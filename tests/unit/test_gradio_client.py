"""The endpoint client behind ``vmed gradio`` (no Gradio needed): message layout, and streaming parity with
the engine against ``vmed serve`` on the tiny model; endpoint failures become readable messages."""

from __future__ import annotations

import pytest
from PIL import Image

from _serve_helpers import tiny_engine

from vmed.inference import GenParams
from vmed.serve.api import create_app, serve_in_thread
from vmed.serve.gradio_app import ChatState, EndpointChat, _data_url, _error_text, openai_messages


def test_openai_messages_put_the_image_in_the_first_user_message_only():
    msgs = openai_messages("data:image/png;base64,AAAA", [("q1", "a1"), ("q2", "a2")], "q3")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert msgs[0]["content"][1] == {"type": "text", "text": "q1"}
    assert msgs[2]["content"] == "q2" and msgs[4]["content"] == "q3" and msgs[3]["content"] == "a2"
    assert not any(m["role"] == "system" for m in msgs)  # the served template supplies the default


def test_chat_state_record_is_a_dialogue_record():
    state = ChatState(image_name="x.png", image_url="data:,", turns=[("Is there a lesion?", "yes")])
    rec = state.record()
    assert rec["image"] == "x.png" and rec["turns"] == [{"question": "Is there a lesion?", "answer": "yes"}]
    assert ChatState().record() is None


def test_streamed_answers_equal_the_engines_and_errors_are_readable(tmp_path_factory):
    engine = tiny_engine(tmp_path_factory)
    image = Image.new("RGB", (40, 30), (90, 90, 90))
    with serve_in_thread(create_app(engine, model_name="vmed-tiny")) as url:
        chat = EndpointChat(url + "/v1/", max_tokens=10)
        assert chat.model == "vmed-tiny"  # from /v1/models
        turns: list[tuple[str, str]] = []
        for question in ("What is shown?", "Is there a lesion?"):
            text = "".join(chat.stream(openai_messages(_data_url(image), turns, question), temperature=0.0, max_tokens=10))
            expected = engine.generate(image, turns, question, GenParams(max_new_tokens=10, temperature=0.0)).text
            assert text == expected
            turns.append((question, text))
        with pytest.raises(Exception) as info:
            list(chat.stream([{"role": "user", "content": ""}], temperature=0.0, max_tokens=0))
        assert "the endpoint answered 4" in _error_text(info.value)
    down = EndpointChat(url, served_model="m", timeout=2)
    with pytest.raises(Exception) as info:
        list(down.stream([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=4))
    assert "cannot reach the endpoint" in _error_text(info.value)
