"""The endpoint backend: evaluate whatever answers ``/v1/chat/completions`` (vmed serve, vLLM, SGLang, TGI, a
hosted API) with the same protocol and files as the local engine.

Requests go through the openai SDK (v1), which already does what an evaluation client needs: a per-request
timeout, retries with exponential backoff and jitter on 408/409/429/5xx and connection errors (honouring
``Retry-After``), typed errors, and one thread-safe connection pool for the concurrent dialogues.

* The image goes in the first user message as a ``data:image/png;base64`` URL, made by vmed's loader, so
  DICOM is windowed exactly as locally and the server decodes the same pixels (PNG is lossless).
* Each later turn sends the conversation so far as text: the backend's own earlier answers, or the
  references with gold history. No system message is sent: the server's chat template applies its own
  default (vmed serve: the same default system prompt as the local engine).
* Greedy: ``temperature`` 0 and a fixed ``seed``; ``max_tokens`` is the run's ``max_new_tokens``.
* A 4xx is the request's fault (a prompt too long for the context, an image the server refuses):
  ``RequestRejected`` with the server's message, and the driver skips that dialogue. Timeouts, connection
  errors, 429 and 5xx that outlast the retries mean the server is gone or overloaded, and 401/403/404 concern
  every request (key, URL, model name): ``BackendUnavailable``, the run stops and keeps finished dialogues.
* The API key is read from the environment variable named by ``api_key_env``; only the variable's name
  is recorded, and the key never reaches a log or a file.
"""

from __future__ import annotations

import base64
import io
import os
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlsplit

from vmed.errors import UserInputError
from vmed.evaluation.backends import BackendUnavailable, EvalBackend, RequestRejected, SingleItem

if TYPE_CHECKING:
    from PIL.Image import Image

    from vmed.inference import GenParams, GenResult

# lazy: openai and the inference package (torch) are imported inside the functions that use them, so importing this module stays light
__all__ = ["EndpointBackend", "base_url", "image_data_url"]

NO_KEY = "EMPTY"
"""Sent as the bearer token when no ``--api-key-env`` is given (local servers ignore it; OPENAI_API_KEY is never picked up silently)."""


def base_url(url: str) -> str:
    """The API base for the SDK: ``http://host:port`` and ``http://host:port/`` gain ``/v1``; a URL with a path is kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserInputError(f"--endpoint {url!r}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path or '/v1'}"


def image_data_url(image: "Image") -> str:
    """The image (RGB, as vmed's loader made it) as a PNG data URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _server_message(e: Any) -> str:
    """The error message an OpenAI-style server put in its body (``{"error": {"message": ...}}``), else the SDK's."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return str(getattr(e, "message", e))


class EndpointBackend(EvalBackend):
    """Answers through an OpenAI-compatible chat-completions endpoint; see the module docstring.

    Args:
        url: the server (``http://host:port`` or its ``.../v1`` base).
        served_model: the model id to request; None: ask ``/v1/models`` (it must list exactly one).
        concurrency: dialogues in flight at once.
        api_key_env: name of the environment variable holding the API key (None: no key).
        timeout_s: per-request timeout; retries: extra attempts after a timeout, connection error, 429 or 5xx.
    """

    batches = False

    def __init__(self, url: str, served_model: str | None = None, *, concurrency: int = 1, api_key_env: str | None = None,
                 timeout_s: float = 300.0, retries: int = 3) -> None:  # fmt: skip
        if concurrency < 1:
            raise UserInputError(f"--concurrency must be >= 1, got {concurrency}")
        if not timeout_s > 0:
            raise UserInputError(f"--timeout must be > 0 seconds, got {timeout_s}")
        if retries < 0:
            raise UserInputError(f"--retries must be >= 0, got {retries}")
        try:
            import openai
        except ImportError:
            raise UserInputError("--endpoint needs the openai package: pip install 'vmed[endpoint]'") from None
        self._openai = openai
        self.url = url
        self.base_url = base_url(url)
        self.concurrency = concurrency
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key(), timeout=self.timeout_s, max_retries=retries)
        self.served_model = served_model if served_model is not None else self._discover_model()

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserInputError(f"--api-key-env {self.api_key_env}: that environment variable is not set (export it with the API key)")
        return key

    def _discover_model(self) -> str:
        """The one model ``/v1/models`` lists (several: the user must choose with --served-model)."""
        ids = [m.id for m in self._call(self._client.models.list).data]
        if len(ids) != 1:
            listed = ", ".join(ids) if ids else "none"
            raise UserInputError(f"{self.base_url}/models lists {len(ids)} models ({listed}); choose one with --served-model")
        return ids[0]

    # ---- what run_info.json records -------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {"endpoint": self.base_url, "served_model": self.served_model}

    def request_settings(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "timeout_s": self.timeout_s, "retries": self.retries,
                "api_key_env": self.api_key_env, "temperature": 0.0, "image": "PNG data URL in the first user message",
                "system_message": None}  # fmt: skip

    def versions(self) -> dict[str, str]:
        return {"openai": self._openai.__version__}

    # ---- answering ------------------------------------------------------------------------

    def dialogue(self, image: "Image | None", questions: Sequence[str], params: "GenParams",
                 gold_answers: Sequence[str] | None) -> list["GenResult"]:  # fmt: skip
        messages: list[dict[str, Any]] = []
        results = []
        url = image_data_url(image) if image is not None else None
        for i, question in enumerate(questions):
            messages.append(_user(question, url if i == 0 else None))
            result = self.ask(messages, params)
            results.append(result)
            messages.append({"role": "assistant", "content": gold_answers[i] if gold_answers is not None else result.text})
        return results

    def single(self, items: Sequence[SingleItem], params: "GenParams", batch_size: int) -> list["GenResult"]:
        urls: dict[int, str] = {}
        results = []
        for image, question in items:
            url = None if image is None else urls.setdefault(id(image), image_data_url(image))
            results.append(self.ask([_user(question, url)], params))
        return results

    def ask(self, messages: list[dict[str, Any]], params: "GenParams") -> "GenResult":
        """One chat completion (greedy, seeded) as a GenResult."""
        from vmed.inference import GenResult

        response = self._call(
            self._client.chat.completions.create, model=self.served_model, messages=messages,
            temperature=0.0, seed=params.seed, max_tokens=params.max_new_tokens,
        )  # fmt: skip
        if not response.choices:
            raise BackendUnavailable(f"{self.base_url} answered a chat completion without choices")
        choice = response.choices[0]
        usage = response.usage
        return GenResult(
            choice.message.content or "",
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            choice.finish_reason or "stop",
        )

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` with the SDK's errors turned into the driver's (see the module docstring)."""
        openai = self._openai
        tries = f"after {self.retries + 1} attempt{'s' if self.retries else ''}"
        try:
            return fn(**kwargs)
        except openai.APITimeoutError:
            raise BackendUnavailable(f"{self.base_url} gave no answer within {self.timeout_s:g} s {tries} (--timeout, --retries)") from None
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            raise BackendUnavailable(f"cannot reach {self.base_url} {tries}: {type(cause).__name__}: {cause}; is the server running?") from None
        except openai.APIStatusError as e:
            status = e.status_code
            if status in _STOP_STATUSES or status >= 500:
                hint = _STOP_STATUSES.get(status, "the server failed")
                raise BackendUnavailable(f"{self.base_url} answered HTTP {status} {tries} ({hint}): {_server_message(e)}") from None
            raise RequestRejected(f"the endpoint refused the request (HTTP {status}): {_server_message(e)}") from None


_STOP_STATUSES = {
    401: "check --api-key-env", 403: "check --api-key-env", 404: "check the URL's /v1 base and --served-model",
    408: "the server timed out", 429: "rate limited; lower --concurrency or raise --retries",
}
"""4xx answers that concern every request, not this one: they stop the run rather than skip each dialogue."""


def _user(question: str, image_url: str | None) -> dict[str, Any]:
    """A user message: the image first (when given), then the question, as the local template places them."""
    if image_url is None:
        return {"role": "user", "content": question}
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": question}]}
