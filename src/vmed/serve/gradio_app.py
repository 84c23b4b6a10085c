"""``vmed gradio``: a Gradio multimodal chat for any OpenAI-compatible endpoint (vmed serve, vLLM, SGLang, TGI).

It never loads a model. The image is read by ``vmed.imaging.load_image`` (so DICOM is windowed exactly as
vmed windows it for training and evaluation) and sent as a PNG data URL in the first user message; every
turn sends the whole conversation to ``ENDPOINT/v1/chat/completions`` with the openai SDK and streams the
answer. No system message is sent: the served model's chat template supplies its default, as it did
in training. Needs the optional extra: ``pip install 'vmed[gradio]'``.

Features: image upload (PNG/JPEG/BMP/TIFF/DICOM) with a window preset, streaming, stop, retry, undo,
example images, and a transcript download in the dialogue-record format (one JSON line per image).
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# lazy: gradio and openai (the optional extra vmed[gradio]) are imported inside the functions that use them, so importing this module needs neither

__all__ = ["EndpointChat", "ChatState", "build_demo", "launch", "launch_options", "openai_messages"]

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a closed network

NO_PRESET = "file's window"


def openai_messages(image_url: str | None, turns: list[tuple[str, str]], question: str) -> list[dict[str, Any]]:
    """OpenAI chat messages for a dialogue about one image: the image rides in the first user message.

    ``turns`` are the earlier (question, answer) pairs; ``question`` is the new one.
    """
    messages: list[dict[str, Any]] = []
    for i, (q, a) in enumerate([*turns, (question, None)]):
        if i == 0 and image_url is not None:
            content: Any = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": q}]
        else:
            content = q
        messages.append({"role": "user", "content": content})
        if a is not None:
            messages.append({"role": "assistant", "content": a})
    return messages


@dataclass
class ChatState:
    """One browser session: the current image and the dialogues so far (one per image)."""

    image_name: str | None = None
    image_url: str | None = None
    turns: list[tuple[str, str]] = field(default_factory=list)
    finished: list[dict[str, Any]] = field(default_factory=list)
    transcript_path: Path | None = None

    def close_dialogue(self) -> None:
        """Keep the current dialogue (if it has turns) for the transcript and start an empty one."""
        if (rec := self.record()) is not None:
            self.finished.append(rec)
        self.turns = []

    def record(self) -> dict[str, Any] | None:
        if not self.turns:
            return None
        return {
            "id": f"gradio/{len(self.finished)}",
            "source": "gradio",
            "split": None,
            "image": self.image_name,
            "turns": [{"question": q, "answer": a} for q, a in self.turns],
            "summary": None,
            "meta": {},
        }


class EndpointChat:
    """The endpoint client: resolves the served model id once, then streams chat completions."""

    def __init__(self, endpoint: str, *, served_model: str | None = None, api_key: str | None = None,
                 timeout: float = 120.0, max_tokens: int = 256) -> None:
        from openai import OpenAI

        base = endpoint.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.client = OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=1)
        self._model = served_model
        self.max_tokens = max_tokens

    @property
    def model(self) -> str:
        if self._model is None:
            models = self.client.models.list().data
            if not models:
                raise RuntimeError(f"{self.base_url}/models lists no model; pass --served-model")
            self._model = models[0].id
        return self._model

    def stream(self, messages: list[dict[str, Any]], *, temperature: float, max_tokens: int) -> Iterator[str]:
        """Yield the answer's text pieces as the endpoint streams them."""
        response = self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True, temperature=temperature, max_tokens=max_tokens, seed=0
        )
        try:
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            response.close()  # a stopped turn closes the stream, so the server stops generating


def _data_url(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _error_text(exc: Exception) -> str:
    """What the endpoint said (an OpenAI-style error body) or a one-line description of the failure."""
    from openai import APIConnectionError, APIStatusError, APITimeoutError

    if isinstance(exc, APIStatusError):
        try:
            message = exc.response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.response.text[:300]
        return f"the endpoint answered {exc.status_code}: {message}"
    if isinstance(exc, APITimeoutError):
        return "the endpoint did not answer in time"
    if isinstance(exc, APIConnectionError):
        return "cannot reach the endpoint; is it running?"
    return str(exc)


def example_files(folder: Path) -> list[Path]:
    """Example images made offline: a synthetic chest phantom (PNG) and pydicom's bundled CT slice."""
    from pydicom.data import get_testdata_file

    from vmed.data.phantom import generate_phantoms

    folder.mkdir(parents=True, exist_ok=True)
    made = sorted((folder / "images").glob("*.png")) if (folder / "images").exists() else []
    if not made:
        generate_phantoms(folder, n=4, seed=0)
        made = sorted((folder / "images").glob("*.png"))
    examples = made[:2]
    ct = get_testdata_file("CT_small.dcm")
    if ct:
        examples.append(Path(ct))
    return examples


class _Handlers:
    """The page's event handlers: each takes the session's ``ChatState`` and returns the new component values."""

    def __init__(self, chat: EndpointChat) -> None:
        import gradio as gr
        from openai import OpenAIError

        self.gr, self.chat, self.endpoint_errors = gr, chat, (OpenAIError, RuntimeError)

    def load(self, file: str | None, preset: str, state: ChatState):
        """A new image (or a new window for it) starts a new dialogue."""
        from vmed.imaging import ImageError, load_image

        if file is None:
            return self.gr.update(), state, []
        try:
            image = load_image(file, preset=None if preset == NO_PRESET else preset, name=Path(file).name)
        except ImageError as e:
            raise self.gr.Error(str(e)) from None
        state.close_dialogue()
        state.image_name, state.image_url = Path(file).name, _data_url(image)
        return image, state, []

    def ask(self, question: str, history: list, state: ChatState, temperature: float, max_tokens: int):
        question = (question or "").strip()
        if not question:
            raise self.gr.Error("type a question first")
        if state.image_url is None:
            raise self.gr.Error("upload an image first (PNG, JPEG, BMP, TIFF or DICOM)")
        yield from self._answer(question, history, state, temperature, max_tokens, clear_box=True)

    def _answer(self, question: str, history: list, state: ChatState, temperature: float, max_tokens: int, clear_box: bool):
        """Stream one answer into the chat; yields (question box, chat, state)."""
        messages = openai_messages(state.image_url, state.turns, question)
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        box = "" if clear_box else self.gr.update()
        yield box, history, state
        text, failed = "", False
        try:
            for piece in self.chat.stream(messages, temperature=float(temperature), max_tokens=int(max_tokens)):
                text += piece
                history[-1] = {"role": "assistant", "content": text}
                yield box, history, state
        except self.endpoint_errors as e:  # the endpoint's failure is shown in the chat; the session goes on
            failed = True
            history[-1] = {"role": "assistant", "content": f"⚠ {_error_text(e)}"}
            yield question, history, state  # the question goes back into the box, to send again
        finally:
            if not failed:  # also when Stop closed the stream: the partial answer is the turn's answer
                state.turns.append((question, text))
        if not text and not failed:
            history[-1] = {"role": "assistant", "content": "(empty answer)"}
            yield box, history, state

    def retry(self, history: list, state: ChatState, temperature: float, max_tokens: int):
        if not state.turns:
            yield self.gr.update(), history, state
            return
        question, _ = state.turns.pop()
        yield from self._answer(question, history[:-2], state, temperature, max_tokens, clear_box=False)

    def undo(self, history: list, state: ChatState):
        if not state.turns:
            return self.gr.update(), history, state
        question, _ = state.turns.pop()
        return question, history[:-2], state

    def reset(self, state: ChatState):
        state.close_dialogue()
        return [], state

    def transcript(self, state: ChatState) -> str | None:
        """Rewrite the session's transcript file (one dialogue record per image); None while it is empty."""
        records = [*state.finished, *([r] if (r := state.record()) else [])]
        if not records:
            return None
        if state.transcript_path is None:
            state.transcript_path = Path(tempfile.mkdtemp(prefix="vmed-gradio-")) / "transcript.jsonl"
        state.transcript_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return str(state.transcript_path)


def build_demo(chat: EndpointChat, *, examples_dir: Path | None = None, title: str = "vmed chat") -> Any:
    """The Gradio Blocks app around ``chat`` (an :class:`EndpointChat`): the layout and its event wiring."""
    import gradio as gr

    from vmed.imaging import WINDOW_PRESETS

    on = _Handlers(chat)
    with gr.Blocks(title=title) as demo:
        state = gr.State(ChatState())
        gr.Markdown(f"## {title}\nEndpoint `{chat.base_url}`. Images are windowed by vmed before they are sent.")
        with gr.Row():
            with gr.Column(scale=1):
                file = gr.File(label="Image (PNG, JPEG, BMP, TIFF, DICOM)", type="filepath", elem_id="vmed-file")
                preset = gr.Dropdown([NO_PRESET, *WINDOW_PRESETS], value=NO_PRESET, label="DICOM window", elem_id="vmed-preset")
                preview = gr.Image(label="What the model sees", interactive=False, type="pil", elem_id="vmed-preview")
                temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                max_tokens = gr.Slider(1, 1024, value=chat.max_tokens, step=1, label="Max new tokens", elem_id="vmed-max-tokens")
                if examples_dir is not None:
                    gr.Examples([[str(p)] for p in example_files(examples_dir)], inputs=[file], label="Example images")
            with gr.Column(scale=2):
                # Plain text, not Markdown: a model's answer is shown exactly as it was generated.
                chatbot = gr.Chatbot(label="Dialogue", height=460, elem_id="vmed-chat", render_markdown=False)
                question = gr.Textbox(label="Question", placeholder="Ask about the image, e.g. Is there a lesion?",
                                      elem_id="vmed-question", submit_btn=True)
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="vmed-stop")
                    clear = gr.Button("New dialogue", elem_id="vmed-reset")
                    download = gr.DownloadButton("Download transcript", elem_id="vmed-download")
        # After every change of the dialogue the transcript file is rewritten, so one click downloads it.
        events = [
            file.change(on.load, [file, preset, state], [preview, state, chatbot]),
            preset.change(on.load, [file, preset, state], [preview, state, chatbot]),
            asking := question.submit(on.ask, [question, chatbot, state, temperature, max_tokens], [question, chatbot, state]),
            retrying := chatbot.retry(on.retry, [chatbot, state, temperature, max_tokens], [question, chatbot, state]),
            chatbot.undo(on.undo, [chatbot, state], [question, chatbot, state]),
            clear.click(on.reset, [state], [chatbot, state]),
            chatbot.clear(on.reset, [state], [chatbot, state]),
        ]
        for event in events:
            event.then(on.transcript, [state], [download])
        stop.click(None, None, None, cancels=[asking, retrying]).then(on.transcript, [state], [download])
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: no server-side rendering (needs Node), system fonts only
    (nothing fetched from a font CDN), errors shown in the page, no MCP server."""
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    return {"ssr_mode": False, "show_error": True, "theme": theme, "mcp_server": False, "quiet": True}


def launch(endpoint: str, *, served_model: str | None, api_key: str | None, host: str, port: int,
           max_tokens: int, timeout: float, examples_dir: Path) -> None:
    """Build the app for ``endpoint`` and serve it (blocking) on host:port."""
    chat = EndpointChat(endpoint, served_model=served_model, api_key=api_key, timeout=timeout, max_tokens=max_tokens)
    demo = build_demo(chat, examples_dir=examples_dir)
    demo.queue(default_concurrency_limit=4).launch(server_name=host, server_port=port, **launch_options())
