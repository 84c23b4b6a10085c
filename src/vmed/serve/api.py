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
from typing import Any, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmed.errors import UserInputError
from vmed.serve.limits import (
    ApiError, BodySizeLimit, ConcurrencyLimiter, ImageFetcher, ServeLimits, image_url_bytes, load_image_bytes, parse_data_url,
)
from vmed.serve.schemas import ChatCompletion, ChatCompletionRequest, ChatMessage, Choice, ModelCard, ModelList, ResponseMessage, Usage

__all__ = ["create_app", "Conversation", "messages_to_conversation", "serve_in_thread"]

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


def _count_prompt_tokens(engine: Any, image, history: list[tuple[str, str]], question: str, system: str | None) -> int:
    """Tokens of the generation prompt (image tokens included), by the one chat template."""
    try:
        return len(engine.prompt_ids(image, history, question, **_system_kwargs(system)))
    except UserInputError as e:
        raise ApiError(400, str(e), param="messages") from None


def _context_error(e: Exception) -> ApiError:
    return ApiError(400, str(e), param="max_tokens", code="context_length_exceeded")


def _generate(engine: Any, image, history, question: str, system: str | None, params) -> Any:
    from vmed.inference.params import ContextLengthExceeded

    try:
        return engine.generate(image, history, question, params, **_system_kwargs(system))
    except ContextLengthExceeded as e:
        raise _context_error(e) from None


class _Stream:
    """``engine.stream`` pulled one piece at a time from worker threads; ``result`` is set at the end.

    ``close_soon()`` cancels the generation from a background thread (after any piece being pulled
    right now), so a client that disconnects mid-answer frees the model without blocking the event loop.
    """

    def __init__(self, engine: Any, image, history, question: str, system: str | None, params):
        self._engine = engine
        self._args = (image, history, question, params)
        self._kwargs = _system_kwargs(system)
        self._it = None
        self._lock = threading.Lock()
        self.result = None

    def first(self) -> str | None:
        """Start generating and return the first piece (errors here still become HTTP errors)."""
        from vmed.inference.params import ContextLengthExceeded

        try:
            self._it = self._engine.stream(*self._args, **self._kwargs)
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


def _final_result(it: Any, value: Any) -> Any:
    """The GenResult at the end of ``engine.stream``: the generator's return value or its ``result``."""
    result = value if value is not None else getattr(it, "result", None)
    if result is None:
        raise RuntimeError("engine.stream ended without a GenResult")
    return result


def _openai_error(status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, message, type=type, param=param, code=code).body(), status_code=status)


def _validation_param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or None


def _safe_traceback(exc: BaseException) -> str:
    """Where an unexpected error happened, without the exception's message (which may quote the input)."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames))


def _as_api_error(exc: Exception) -> ApiError:
    """Any failure while serving a request as the error to send: input errors 400, anything else a logged 500.

    Handled here rather than by an app-level ``Exception`` handler, which Starlette re-raises into
    uvicorn's log with the exception's message (and that may quote the input).
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), code="body_too_large" if exc.status_code == 413 else None)
    if isinstance(exc, UserInputError):
        return ApiError(400, str(exc))
    log.error("internal error %s at %s", type(exc).__name__, _safe_traceback(exc))
    return ApiError(500, "internal server error", type="server_error", code="internal_error")


def _web_file(name: str) -> bytes:
    return resources.files("vmed.serve").joinpath("web", name).read_bytes()


_WEB_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


def create_app(
    engine: Any,
    limits: ServeLimits | None = None,
    *,
    model_name: str = "vmed",
    fetcher: ImageFetcher | None = None,
) -> FastAPI:
    """The FastAPI app around one loaded ``vmed.inference.Engine``.

    ``fetcher`` overrides the URL policy built from ``limits`` (tests pass a fetcher with a fake
    resolver and transport). The body-size middleware wraps the whole app.
    """
    from vmed.inference.params import GenParams

    limits = limits or ServeLimits()
    fetcher = fetcher or ImageFetcher(
        allowed_hosts=tuple(h.lower() for h in limits.allowed_image_hosts),
        timeout_s=limits.fetch_timeout_s,
        max_bytes=limits.fetch_max_bytes,
        max_redirects=limits.max_redirects,
    )
    limiter = ConcurrencyLimiter(limits.max_concurrent)
    created = int(time.time())

    app = FastAPI(title="vmed", summary="OpenAI-compatible API for a vmed medical visual dialogue model", version="1")
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    app.state.limits = limits
    app.state.limiter = limiter
    app.state.engine = engine

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _schema_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _validation_param(tuple(first.get("loc", ())))
        message = f"invalid request: {param or 'body'}: {first.get('msg', 'invalid value')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return _openai_error(400, message, param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return _openai_error(exc.status_code, str(exc.detail), code=codes.get(exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error %s at %s", type(exc).__name__, _safe_traceback(exc))
        return _openai_error(500, "internal server error", type="server_error", code="internal_error")

    def _acquire() -> None:
        if not limiter.try_acquire():
            raise ApiError(
                429, f"the server is busy ({limiter.limit} requests in flight, --max-concurrent); retry shortly",
                type="rate_limit_error", code="too_many_requests",
            )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "in_flight": limiter.in_flight, "max_concurrent": limiter.limit}

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_name, created=created)])

    def _prepare(req: ChatCompletionRequest):
        """Blocking part before generation: image decoding, params, the context check."""
        conv = messages_to_conversation(req.messages, max_images=limits.max_images)
        image = None
        for k, url in enumerate(conv.image_urls):
            if k == len(conv.image_urls) - 1:
                data = image_url_bytes(url, fetcher, param="messages")
                image = load_image_bytes(data, max_pixels=limits.max_image_pixels, param="messages")
            elif url.startswith("data:"):  # earlier images are not shown to the model, but must be valid
                parse_data_url(url, param="messages")
            else:
                fetcher.check_url(url, param="messages")
        prompt_tokens = _count_prompt_tokens(engine, image, conv.history, conv.question, conv.system)
        requested = req.max_tokens or req.max_completion_tokens
        context = int(engine.context_length)
        room = context - prompt_tokens
        if requested is None:
            max_new = min(limits.default_max_tokens, room)
            if max_new < 1:
                raise ApiError(
                    400, f"the prompt has {prompt_tokens} tokens, which fills the model's context of "
                    f"{context} tokens; shorten the conversation",
                    param="messages", code="context_length_exceeded",
                )
        else:
            max_new = requested
            if requested > room:
                raise ApiError(
                    400, f"the prompt has {prompt_tokens} tokens and max_tokens is {requested}: together "
                    f"{prompt_tokens + requested}, more than the model's context of {context} tokens",
                    param="max_tokens", code="context_length_exceeded",
                )
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        params = GenParams(
            max_new_tokens=max_new,
            temperature=0.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=secrets.randbelow(2**31) if req.seed is None else req.seed,  # no seed: a fresh sample each time
            stop=stop,
        )
        return conv, image, params

    @app.post("/v1/chat/completions", response_model=ChatCompletion)
    async def chat_completions(req: ChatCompletionRequest):
        _acquire()
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        t0 = time.perf_counter()
        try:
            conv, image, params = await run_in_threadpool(_prepare, req)
            if req.stream:
                stream = _Stream(engine, image, conv.history, conv.question, conv.system, params)
                first = await run_in_threadpool(stream.first)
            else:
                result = await run_in_threadpool(_generate, engine, image, conv.history, conv.question, conv.system, params)
        except Exception as exc:
            limiter.release()
            raise _as_api_error(exc) from None
        except BaseException:
            limiter.release()
            raise
        if not req.stream:
            limiter.release()
            log.info(
                "%s done: finish=%s prompt_tokens=%d completion_tokens=%d %.0f ms", request_id, result.finish_reason,
                result.prompt_tokens, result.completion_tokens, (time.perf_counter() - t0) * 1000,
            )
            return ChatCompletion(
                id=request_id, created=int(time.time()), model=model_name,
                choices=[Choice(message=ResponseMessage(content=result.text), finish_reason=result.finish_reason)],
                usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                            total_tokens=result.prompt_tokens + result.completion_tokens),
            )
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            _sse(stream, first, request_id, int(time.time()), include_usage, t0),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _sse(stream, first, request_id: str, created_at: int, include_usage: bool, t0: float):
        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
            body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": created_at, "model": model_name,
                                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            piece = first
            while piece is not None:
                if piece:
                    yield chunk({"content": piece})
                piece = await run_in_threadpool(stream.next)
            result = stream.result
            yield chunk({}, finish=result.finish_reason)
            if include_usage:
                yield chunk({}, usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                                       "total_tokens": result.prompt_tokens + result.completion_tokens}, choices=False)
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
            limiter.release()

    @app.get("/v1/images/presets")
    async def presets() -> dict:
        from vmed.imaging import WINDOW_PRESETS

        return {"presets": {name: {"center": c, "width": w} for name, (c, w) in WINDOW_PRESETS.items()}}

    @app.post("/v1/images/render")
    async def render(request: Request, preset: str | None = None) -> dict:
        """Raw image bytes (PNG/JPEG/DICOM) in the body -> the image as the model sees it, as a PNG data URL."""
        from vmed.imaging import WINDOW_PRESETS

        if preset is not None and preset not in WINDOW_PRESETS:
            raise ApiError(400, f"unknown window preset {preset!r}; choose one of {', '.join(WINDOW_PRESETS)}", param="preset")
        _acquire()
        try:
            data = await request.body()
            if not data:
                raise ApiError(400, "empty body: send the image file's bytes", param="body", code="invalid_image")

            def _render() -> dict:
                image = load_image_bytes(data, max_pixels=limits.max_image_pixels, preset=preset, param="body")
                width, height = image.size
                image.thumbnail((RENDER_MAX_SIDE, RENDER_MAX_SIDE))
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                return {"data_url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                        "width": width, "height": height}

            return await run_in_threadpool(_render)
        except Exception as exc:
            raise _as_api_error(exc) from None
        finally:
            limiter.release()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Response:
        return Response(_web_file("index.html"), media_type=_WEB_TYPES["index.html"])

    @app.get("/web/{name}")
    async def web_asset(name: str) -> Response:
        if name not in _WEB_TYPES:
            raise ApiError(404, f"no such file: {name}", code="not_found")
        return Response(_web_file(name), media_type=_WEB_TYPES[name])

    return app


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields the base URL (``http://host:port``).

    ``port=0`` picks a free port. Used by tests, the load benchmark and notebooks.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="vmed-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
