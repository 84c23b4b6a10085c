"""Builders shared by the evaluation tests (``unit/test_eval_endpoint.py``, ``benchmarks/eval_endpoint.py``).

``word_only`` makes the tiny random model answer in whole words. A chat-completions server receives the
conversation as *text*, so the endpoint backend can match the local engine token for token only when an
answer, re-tokenized, gives back the ids the model generated. The random model's byte-level fragments do
not (they decode to replacement characters); whole-word tokens do. The model still chooses its words from
the image, the question and the context, so a difference in any of them shows in the answers.
"""

from __future__ import annotations

from typing import Any

import torch


def word_only(engine: Any) -> None:
    """Restrict ``engine``'s model, in place: the first token of an answer is a word without a leading space,
    the next ones are words with one, or ``<|eot_id|>``. Hooks on the model's input and ``lm_head`` do it."""
    tok = engine.tokenizer
    nn = tok("\n\n", add_special_tokens=False)["input_ids"]
    first, later = [], [tok.convert_tokens_to_ids("<|eot_id|>")]
    for t in range(len(tok)):
        s = tok.decode([t])
        if s.isascii() and s.isalpha() and tok("\n\n" + s, add_special_tokens=False)["input_ids"] == nn + [t]:
            first.append(t)
        elif s.startswith(" ") and s[1:].isascii() and s[1:].isalpha() and tok(s, add_special_tokens=False)["input_ids"] == [t]:
            later.append(t)
    assert len(first) > 20 and len(later) > 20, (len(first), len(later))
    vocab = engine.model.get_output_embeddings().weight.shape[0]
    masks = {}
    for name, allowed in (("first", first), ("later", later)):
        m = torch.full((vocab,), float("-inf"))
        m[allowed] = 0.0
        masks[name] = m
    last: dict[str, torch.Tensor] = {}

    def remember_input(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            last["ids"] = ids[:, -1]

    def mask_logits(module, args, out):
        after_header = (last["ids"] == nn[-1]).to(out.device)
        mask = torch.where(after_header[:, None], masks["first"].to(out.device), masks["later"].to(out.device))
        return out + mask[:, None, :].to(out.dtype)

    engine.model.register_forward_pre_hook(remember_input, with_kwargs=True)
    engine.model.get_output_embeddings().register_forward_hook(mask_logits)


class StubServer:
    """A small OpenAI-compatible server on 127.0.0.1 for the endpoint backend's fault tests.

    ``/v1/models`` lists ``models``; ``/v1/chat/completions`` checks the request as the endpoint backend
    must send it (greedy, seeded, a PNG data URL in the first user message; 400 otherwise) and answers
    ``ans-<digest of the messages>`` (so the answer depends on the image, the question and the history),
    after a small delay that depends on the messages too (so concurrent dialogues finish out of order).

    Faults, counted over chat requests: the first ``fail`` requests get HTTP ``fail_status``; the first
    ``stall`` requests wait ``stall_s`` before answering; a question containing ``REJECT`` gets a 400 with
    ``reject_message``; with ``die_after`` set, the server answers that many requests, then drops the next
    connection unanswered and stops listening (``start`` again on the same port to "restart" it).
    ``api_key``: the bearer token required (401 otherwise).
    """

    def __init__(self, models=("stub-model",), fail=0, fail_status=500, stall=0, stall_s=0.0, die_after=None,
                 api_key=None, reject_message="the prompt does not fit the context (stub)"):  # fmt: skip
        import threading

        self.models, self.fail, self.fail_status = list(models), fail, fail_status
        self.stall, self.stall_s, self.die_after, self.api_key = stall, stall_s, die_after, api_key
        self.reject_message = reject_message
        self.requests = 0
        self.answered = 0
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.port = 0
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "StubServer":
        import threading
        from http.server import ThreadingHTTPServer

        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="stub-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()

    def die(self) -> None:
        import threading

        threading.Thread(target=self.stop, daemon=True).start()

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.stop()


def _check(body: dict) -> str | None:
    """Why a chat request is not what the endpoint backend must send, or None."""
    import base64
    import io

    from PIL import Image

    if body.get("temperature") != 0 or not isinstance(body.get("seed"), int) or not body.get("max_tokens"):
        return "expected temperature 0, an integer seed and max_tokens"
    first = body["messages"][0]
    if first["role"] != "user" or not isinstance(first["content"], list) or first["content"][0]["type"] != "image_url":
        return "expected the image as the first part of the first user message"
    url = first["content"][0]["image_url"]["url"]
    if not url.startswith("data:image/png;base64,"):
        return "expected a PNG data URL"
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    if image.format != "PNG" or image.mode != "RGB":
        return f"expected an RGB PNG, got {image.format} {image.mode}"
    return None


def _handler(stub: StubServer):
    import hashlib
    import json
    import time
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a stopped server refuses the next one

        def log_message(self, *args):
            pass

        def _send(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})

        def _authorized(self) -> bool:
            if stub.api_key is None or self.headers.get("Authorization") == f"Bearer {stub.api_key}":
                return True
            self._error(401, "invalid API key")
            return False

        def do_GET(self):
            if not self._authorized():
                return
            if self.path != "/v1/models":
                return self._error(404, f"no route {self.path}")
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in stub.models]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with stub.lock:
                stub.requests += 1
                n = stub.requests
                dying = stub.die_after is not None and stub.answered >= stub.die_after
                if not dying:
                    stub.bodies.append(body)
            if dying:  # drop this connection unanswered and stop listening
                stub.die()
                self.close_connection = True
                self.connection.close()
                return
            if not self._authorized():
                return
            if self.path != "/v1/chat/completions":
                return self._error(404, f"no route {self.path}")
            if n <= stub.fail:
                return self._error(stub.fail_status, f"stub failure {n}")
            if n <= stub.stall:
                stub.release.wait(stub.stall_s)
            if (why := _check(body)) is not None:
                return self._error(400, why)
            last = body["messages"][-1]["content"]
            question = last if isinstance(last, str) else last[-1]["text"]
            if "REJECT" in question:
                return self._error(400, stub.reject_message)
            digest = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
            time.sleep(int(digest[:2], 16) / 255 * 0.03)
            with stub.lock:
                stub.answered += 1
            self._send(200, {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"ans-{digest[:8]}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            })  # fmt: skip

    return Handler
