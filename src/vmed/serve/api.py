"""The OpenAI-compatible HTTP API (FastAPI) and the web UI's routes.

``create_app(engine, limits)`` builds the app; ``vmed serve`` runs it with uvicorn. Routes:

- ``POST /v1/chat/completions``: OpenAI chat format (text and image_url parts, ``stream`` as SSE ending
  with ``data: [DONE]``, ``usage``). Messages become the engine's ``(image, history, question)``: the
  image is the last image in the user messages, system/developer messages become the system prompt,
  earlier user/assistant pairs the history, the last user message the question.
- ``GET /v1/models``, ``GET /health``.
- ``POST /v1/images/render`` (raw image bytes -> windowed PNG data URL) and ``GET /v1/images/presets``:
  the web UI shows DICOM as the model sees it, rendered here by ``vmed.imaging.load_image``.
- ``GET /``: the web UI (``vmed/serve/web``).

Every refusal is an OpenAI-style JSON error ``{"error": {"message", "type", "param", "code"}}``; schema
errors are 400 too (not FastAPI's default 422). Generation and image decoding run in worker threads, so
the event loop (and ``/health``) stays responsive. Logs carry ids, status codes, token counts and
timings, never prompts, images or DICOM tags.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import secrets
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmed.errors import UserInputError
from vmed.inference.params import ContextLengthExceeded, GenParams, GenResult, fit_max_new_tokens
from vmed.inference.protocol import AnswerEngine
from vmed.serve.limits import (
    ApiError, BodySizeLimit, ConcurrencyLimiter, ImageFetcher, ServeLimits, image_url_bytes, is_data_url, load_image_bytes,
    parse_data_url,
)
from vmed.serve.schemas import ChatCompletion, ChatCompletionRequest, ChatMessage, Choice, ModelCard, ModelList, ResponseMessage, Usage
from vmed.serve.server import serve_in_thread

if TYPE_CHECKING:
    from PIL.Image import Image

# lazy: vmed.imaging (numpy, PIL, pydicom: about 0.8 s) is imported only by the routes that need its window presets

__all__ = ["create_app", "Conversation", "Prepared", "messages_to_conversation", "prepare_request", "serve_in_thread"]

log = logging.getLogger("vmed.serve")

RENDER_MAX_SIDE = 1024
"""The web UI's rendered image is scaled down to this longest side (the model's input is far smaller)."""


@dataclass
class Conversation:
    """OpenAI messages in the engine's terms. ``image_urls`` are all image URLs in order (the last one is used)."""

    system: str | None
    history: list[tuple[str, str]]
    question: str
    image_urls: list[str]


def _parts(message: ChatMessage) -> tuple[str, list[str]]:
    if message.content is None:
        return "", []
    if isinstance(message.content, str):
        return message.content, []
    texts = [p.text for p in message.content if p.type == "text"]
    images = [p.image_url.url for p in message.content if p.type == "image_url"]
    return "\n".join(texts), images


def messages_to_conversation(messages: list[ChatMessage], *, max_images: int) -> Conversation:
    """Turn OpenAI messages into (system, history, question, image URLs); ``ApiError`` 400 if they cannot be.

    Consecutive user messages are joined; the conversation must end with a user message. Images are
    accepted in user messages only.
    """
    system_parts: list[str] = []
    turns: list[list[str]] = []  # [question, answer]
    pending_user: list[str] | None = None
    image_urls: list[str] = []
    for i, message in enumerate(messages):
        text, images = _parts(message)
        if images and message.role != "user":
            raise ApiError(400, f"images are accepted in user messages only (messages[{i}] is {message.role!r})", param=f"messages.{i}.content")
        image_urls.extend(images)
        if message.role in ("system", "developer"):
            system_parts.append(text)
        elif message.role == "user":
            pending_user = [text] if pending_user is None else pending_user + [text]
        else:
            if pending_user is None:
                raise ApiError(400, f"messages[{i}] is an assistant message that answers no user message", param=f"messages.{i}")
            turns.append(["\n".join(pending_user), text])
            pending_user = None
    if pending_user is None:
        raise ApiError(400, "the last message must be a user message (the question to answer)", param="messages")
    if len(image_urls) > max_images:
        raise ApiError(
            400, f"the request has {len(image_urls)} images; this server accepts at most {max_images} (--max-images)",
            param="messages", code="too_many_images",
        )
    system = "\n".join(system_parts) if system_parts else None
    return Conversation(system, [(q, a) for q, a in turns], "\n".join(pending_user), image_urls)


def _system_kwargs(system: str | None) -> dict:
    """The engine uses its default system prompt unless the request sent one."""
    return {} if system is None else {"system": system}


# ---- request preparation: messages -> image, prompt size, generation parameters ----------------------


@dataclass
class Prepared:
    """A request ready for the engine: the conversation, the decoded image (or None) and the parameters."""

    conv: Conversation
    image: "Image | None"
    params: GenParams


def _load_image(conv: Conversation, fetcher: ImageFetcher, limits: ServeLimits) -> "Image | None":
    """Decode the last image URL (the one the model sees); earlier ones are only checked to be valid."""
    image = None
    for k, url in enumerate(conv.image_urls):
        if k == len(conv.image_urls) - 1:
            data = image_url_bytes(url, fetcher, param="messages")
            image = load_image_bytes(data, max_pixels=limits.max_image_pixels, param="messages")
        elif is_data_url(url):
            parse_data_url(url, param="messages")
        else:
            fetcher.check_url(url, param="messages")
    return image


def _gen_params(req: ChatCompletionRequest, prompt_tokens: int, context_length: int, limits: ServeLimits) -> GenParams:
    """The request's sampling fields as ``GenParams``; the answer length comes from ``fit_max_new_tokens``."""
    try:
        max_new = fit_max_new_tokens(
            prompt_tokens, context_length, req.max_tokens or req.max_completion_tokens, default=limits.default_max_tokens, name="max_tokens",
        )
    except ContextLengthExceeded as e:
        raise _context_error(e) from None
    return GenParams(
        max_new_tokens=max_new,
        temperature=0.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=secrets.randbelow(2**31) if req.seed is None else req.seed,  # no seed: a fresh sample each time
        stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or []),
    )


def prepare_request(engine: AnswerEngine, limits: ServeLimits, fetcher: ImageFetcher, req: ChatCompletionRequest) -> Prepared:
    """Everything before generation (blocking: run it in a worker thread). Input errors are ``ApiError`` 400."""
    conv = messages_to_conversation(req.messages, max_images=limits.max_images)
    image = _load_image(conv, fetcher, limits)
    try:
        prompt_tokens = len(engine.prompt_ids(image, conv.history, conv.question, **_system_kwargs(conv.system)))
    except UserInputError as e:
        raise ApiError(400, str(e), param="messages") from None
    return Prepared(conv, image, _gen_params(req, prompt_tokens, int(engine.context_length), limits))


def _context_error(e: ContextLengthExceeded) -> ApiError:
    # the prompt alone fills the context: the messages are at fault, whatever max_tokens says
    param = "messages" if e.max_new_tokens is None or e.prompt_tokens >= e.context_length else "max_tokens"
    return ApiError(400, str(e), param=param, code="context_length_exceeded")


def _generate(engine: AnswerEngine, prep: Prepared, cancel: threading.Event) -> GenResult:
    conv = prep.conv
    try:
        return engine.generate(prep.image, conv.history, conv.question, prep.params, cancel=cancel, **_system_kwargs(conv.system))
    except ContextLengthExceeded as e:
        raise _context_error(e) from None


class _Stream:
    """``engine.stream`` pulled one piece at a time from worker threads; ``result`` is set at the end.

    ``close_soon()`` cancels the generation from a background thread (after any piece being pulled
    right now), so a client that disconnects mid-answer frees the model without blocking the event loop.
    """

    def __init__(self, engine: AnswerEngine, prep: Prepared):
        self._engine = engine
        self._prep = prep
        self._it: Any = None
        self._lock = threading.Lock()
        self.result: GenResult | None = None

    def first(self) -> str | None:
        """Start generating and return the first piece (errors here still become HTTP errors)."""
        conv = self._prep.conv
        try:
            self._it = self._engine.stream(self._prep.image, conv.history, conv.question, self._prep.params, **_system_kwargs(conv.system))
        except ContextLengthExceeded as e:
            raise _context_error(e) from None
        return self.next()

    def next(self) -> str | None:
        """The next text piece, or None when the answer is complete (then ``result`` is the GenResult)."""
        with self._lock:
            try:
                return next(self._it)
            except StopIteration as stop:
                self.result = _final_result(self._it, stop.value)
                return None

    def _close(self) -> None:
        with self._lock:
            close = getattr(self._it, "close", None)
            if close is not None:
                close()

    def close_soon(self) -> None:
        threading.Thread(target=self._close, name="vmed-stream-close", daemon=True).start()


def _final_result(it: Any, value: Any) -> GenResult:
    """The GenResult at the end of ``engine.stream``: the generator's return value or its ``result``."""
    result = value if value is not None else getattr(it, "result", None)
    if result is None:
        raise RuntimeError("engine.stream ended without a GenResult")
    return result


# ---- errors ------------------------------------------------------------------------------------------


def _openai_error(status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, message, type=type, param=param, code=code).body(), status_code=status)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def _validation_param(loc: tuple) -> str | None:
    """A pydantic error location as the request field's dotted path, without pydantic's type tags."""
    parts = [str(p) for p in loc if p != "body" and "[" not in str(p) and str(p) not in _TYPE_TAGS]
    return ".".join(parts) or None


def _safe_traceback(exc: BaseException) -> str:
    """Where an unexpected error happened, without the exception's message (which may quote the input)."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "body_too_large"}


_BODY_PARSE_DETAIL = "There was an error parsing the body"
"""FastAPI's 400 for a body it could not decode at all (not UTF-8, say), before any field is read."""


def _http_api_error(exc: StarletteHTTPException) -> ApiError:
    if exc.status_code == 400 and exc.detail == _BODY_PARSE_DETAIL:
        return ApiError(400, "the body is not valid JSON (it does not decode as UTF-8 text); send one JSON object",
                        param="body", code="invalid_json")
    return ApiError(exc.status_code, str(exc.detail), code=_HTTP_CODES.get(exc.status_code))


def _as_api_error(exc: Exception) -> ApiError:
    """Any failure while serving a request as the error to send: input errors 4xx, anything else a logged 500.

    Handled here rather than by an app-level ``Exception`` handler, which Starlette re-raises into
    uvicorn's log with the exception's message (and that may quote the input).
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        return _http_api_error(exc)
    if isinstance(exc, ContextLengthExceeded):
        return _context_error(exc)
    if isinstance(exc, UserInputError):
        return ApiError(400, str(exc))
    log.error("internal error %s at %s", type(exc).__name__, _safe_traceback(exc))
    return ApiError(500, "internal server error", type="server_error", code="internal_error")


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as an OpenAI-style body: ApiError as is, schema errors 400 naming the field, HTTP errors by status."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _schema_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # A union field (content: str | list of parts) reports one error per branch: name the most specific one.
        first = max(errors, key=lambda e: (e.get("type") == "value_error", len(e.get("loc", ())))) if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # the location is a character offset, not a field
            ctx = first.get("ctx")
            reason = ctx.get("error", "decode error") if isinstance(ctx, dict) else "decode error"
            at = first["loc"][-1] if len(first.get("loc", ())) > 1 else "?"
            return _openai_error(400, f"the body is not valid JSON (at character {at}: {reason}); "
                                 "send one JSON object", param="body", code="invalid_json")
        param = _validation_param(tuple(first.get("loc", ())))
        message = f"invalid request: {param or 'body'}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return _openai_error(400, message, param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = _http_api_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error %s at %s", type(exc).__name__, _safe_traceback(exc))
        return _openai_error(500, "internal server error", type="server_error", code="internal_error")


# ---- the routes ---------------------------------------------------------------------------------------


def _web_file(name: str) -> bytes:
    return resources.files("vmed.serve").joinpath("web", name).read_bytes()


_WEB_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

DISCONNECT_POLL_S = 0.25
"""How often a non-streaming request checks whether its client is still there."""


class _ClientGone(Exception):
    """The client of a non-streaming request disconnected; its generation was cancelled."""


async def _until_disconnect(request: Request, work: Callable[[threading.Event], Any]) -> Any:
    """Run ``work(cancel)`` in a worker thread; if the client disconnects first, set ``cancel``, wait, raise ``_ClientGone``."""
    cancel = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(work, cancel))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            cancel.set()
            with contextlib.suppress(Exception):
                await task  # the generation stops after its current step; the slot is freed after it
            raise _ClientGone


class _Routes:
    """The routes of one app: the engine, the limits, the URL policy and the concurrency slots they share.

    Every route that takes a slot has its whole body read (and size- and time-checked by
    ``BodySizeLimit``) before it asks for one, so a slow upload never holds a slot.
    """

    def __init__(self, engine: AnswerEngine, limits: ServeLimits, fetcher: ImageFetcher, model_name: str):
        self.engine = engine
        self.limits = limits
        self.fetcher = fetcher
        self.model_name = model_name
        self.limiter = ConcurrencyLimiter(limits.max_concurrent)
        self.created = int(time.time())

    def acquire(self) -> None:
        if not self.limiter.try_acquire():
            raise ApiError(
                429, f"the server is busy ({self.limiter.limit} requests in flight, --max-concurrent); retry shortly",
                type="rate_limit_error", code="too_many_requests",
            )

    async def health(self) -> dict:
        return {"status": "ok", "model": self.model_name, "in_flight": self.limiter.in_flight, "max_concurrent": self.limiter.limit}

    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.model_name, created=self.created)])

    async def chat_completions(self, req: ChatCompletionRequest, request: Request) -> Any:
        """The body is parsed (and checked) by FastAPI before this runs; only then is a slot taken."""
        self.acquire()
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        t0 = time.perf_counter()
        try:
            prep = await run_in_threadpool(prepare_request, self.engine, self.limits, self.fetcher, req)
            if req.stream:
                stream = _Stream(self.engine, prep)
                first = await run_in_threadpool(stream.first)
            else:
                result = await _until_disconnect(request, lambda cancel: _generate(self.engine, prep, cancel))
        except _ClientGone:
            self.limiter.release()
            log.info("%s cancelled: the client went away after %.0f ms", request_id, (time.perf_counter() - t0) * 1000)
            return Response(status_code=499)  # nobody reads it; 499 "client closed request" in the access log
        except Exception as exc:
            self.limiter.release()
            raise _as_api_error(exc) from None
        except BaseException:
            self.limiter.release()
            raise
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                self._sse(stream, first, request_id, include_usage, t0),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        self.limiter.release()
        log.info(
            "%s done: finish=%s prompt_tokens=%d completion_tokens=%d %.0f ms", request_id, result.finish_reason,
            result.prompt_tokens, result.completion_tokens, (time.perf_counter() - t0) * 1000,
        )
        return ChatCompletion(
            id=request_id, created=int(time.time()), model=self.model_name,
            choices=[Choice(message=ResponseMessage(content=result.text), finish_reason=result.finish_reason)],
            usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                        total_tokens=result.prompt_tokens + result.completion_tokens),
        )

    def _chunk(self, request_id: str, created_at: int, delta: dict, finish: str | None = None, usage: dict | None = None,
               choices: bool = True) -> str:
        body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": created_at, "model": self.model_name,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []}
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    async def _sse(self, stream: _Stream, first: str | None, request_id: str, include_usage: bool, t0: float) -> AsyncIterator[str]:
        """The SSE events of one streamed answer; the slot is released (and the generation cancelled) when it ends."""
        created_at = int(time.time())
        try:
            yield self._chunk(request_id, created_at, {"role": "assistant", "content": ""})
            piece = first
            while piece is not None:
                if piece:
                    yield self._chunk(request_id, created_at, {"content": piece})
                piece = await run_in_threadpool(stream.next)
            result = stream.result
            assert result is not None
            yield self._chunk(request_id, created_at, {}, finish=result.finish_reason)
            if include_usage:
                usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                         "total_tokens": result.prompt_tokens + result.completion_tokens}
                yield self._chunk(request_id, created_at, {}, usage=usage, choices=False)
            yield "data: [DONE]\n\n"
            log.info(
                "%s streamed: finish=%s prompt_tokens=%d completion_tokens=%d %.0f ms", request_id, result.finish_reason,
                result.prompt_tokens, result.completion_tokens, (time.perf_counter() - t0) * 1000,
            )
        except Exception as exc:
            log.error("%s stream failed: %s at %s", request_id, type(exc).__name__, _safe_traceback(exc))
            yield f"data: {json.dumps(ApiError(500, 'internal server error', type='server_error', code='internal_error').body())}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            stream.close_soon()
            self.limiter.release()

    async def presets(self) -> dict:
        from vmed.imaging import WINDOW_PRESETS

        return {"presets": {name: {"center": c, "width": w} for name, (c, w) in WINDOW_PRESETS.items()}}

    async def render(self, request: Request, preset: str | None = None) -> dict:
        """Raw image bytes (PNG/JPEG/DICOM) in the body -> the image as the model sees it, as a PNG data URL.

        The body is read first (``BodySizeLimit`` bounds its size and time), then a slot is taken for decoding.
        """
        from vmed.imaging import WINDOW_PRESETS

        try:
            data = await request.body()
        except Exception as exc:
            raise _as_api_error(exc) from None
        if preset is not None and preset not in WINDOW_PRESETS:
            raise ApiError(400, f"unknown window preset {preset[:40]!r}; choose one of {', '.join(WINDOW_PRESETS)}", param="preset")
        if not data:
            raise ApiError(400, "empty body: send the image file's bytes", param="body", code="invalid_image")
        self.acquire()
        try:
            return await run_in_threadpool(self._render, data, preset)
        except Exception as exc:
            raise _as_api_error(exc) from None
        finally:
            self.limiter.release()

    def _render(self, data: bytes, preset: str | None) -> dict:
        image = load_image_bytes(data, max_pixels=self.limits.max_image_pixels, preset=preset, param="body")
        width, height = image.size
        image.thumbnail((RENDER_MAX_SIDE, RENDER_MAX_SIDE))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return {"data_url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), "width": width, "height": height}

    async def index(self) -> Response:
        return Response(_web_file("index.html"), media_type=_WEB_TYPES["index.html"])

    async def web_asset(self, name: str) -> Response:
        if name not in _WEB_TYPES:
            raise ApiError(404, f"no such file: {name[:80]}", code="not_found")
        return Response(_web_file(name), media_type=_WEB_TYPES[name])


def create_app(
    engine: AnswerEngine,
    limits: ServeLimits | None = None,
    *,
    model_name: str = "vmed",
    fetcher: ImageFetcher | None = None,
) -> FastAPI:
    """The FastAPI app around one loaded ``vmed.inference.Engine``.

    ``fetcher`` overrides the URL policy built from ``limits`` (tests pass a fetcher with a fake
    resolver and transport). The body-size and body-time middleware wraps the whole app; the
    connection-level timeouts are set where the app is run (``vmed.serve.server``).
    """
    limits = limits or ServeLimits()
    routes = _Routes(engine, limits, fetcher or ImageFetcher.from_limits(limits), model_name)

    app = FastAPI(title="vmed", summary="OpenAI-compatible API for a vmed medical visual dialogue model", version="1")
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.state.limits = limits
    app.state.limiter = routes.limiter
    app.state.engine = engine
    _install_error_handlers(app)

    app.add_api_route("/health", routes.health, methods=["GET"])
    app.add_api_route("/v1/models", routes.models, methods=["GET"], response_model=ModelList)
    app.add_api_route("/v1/chat/completions", routes.chat_completions, methods=["POST"], response_model=ChatCompletion)
    app.add_api_route("/v1/images/presets", routes.presets, methods=["GET"])
    app.add_api_route("/v1/images/render", routes.render, methods=["POST"])
    app.add_api_route("/", routes.index, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/web/{name}", routes.web_asset, methods=["GET"])
    return app
