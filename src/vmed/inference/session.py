"""A multi-turn conversation about one image whose KV cache is kept between turns.

The session keeps the token ids of the conversation so far (``transcript``) and the KV cache of
the last generation. A new question appends only its own tokens (``encode_continuation``); the
cache is reused for the longest prefix it shares with the new prompt, so the image and the
earlier turns are encoded once. When the context changes under the cache (an answer cut at a
stop string and re-tokenized, a gold answer replacing the model's), the cache is cropped to the
shared prefix; if that prefix would not cover the whole image, the session starts afresh.

With ``use_cache=False`` every turn re-encodes the image and the whole transcript (the same
token ids, so the same greedy outputs): the naive baseline.

A session is not thread-safe; use one per conversation (the engine's lock still serialises
generation across sessions).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from vmed.constants import DEFAULT_SYSTEM_PROMPT
from vmed.data.template import encode_continuation, encode_text
from vmed.errors import UserInputError
from vmed.inference.params import GenParams, GenResult
from vmed.inference.streaming import GenerationStream, TokenQueue

if TYPE_CHECKING:
    from PIL.Image import Image

    from vmed.inference.engine import Engine

__all__ = ["ChatSession"]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class ChatSession:
    """Ask questions one after another about ``image`` (None: text only); see the module docstring.

    ``turns`` holds the (question, answer) pairs so far as they are in the context.
    """

    def __init__(
        self, engine: "Engine", image: "Image | None" = None, *, system: str | None = DEFAULT_SYSTEM_PROMPT, use_cache: bool = True,
    ) -> None:
        self.engine = engine
        self.image = image
        self.system = system
        self.use_cache = use_cache
        self.turns: list[tuple[str, str]] = []
        self._pixel_values = engine.pixel_values([image]) if image is not None else None
        self._transcript: list[int] = []
        self._closed = True
        self._last_prompt: list[int] = []
        self._cache: Any = None
        self._cache_ids: list[int] = []

    @property
    def transcript(self) -> list[int]:
        """Token ids of the conversation so far (system, image, questions, answers)."""
        return list(self._transcript)

    @property
    def cached_tokens(self) -> int:
        """How many tokens the kept KV cache covers."""
        return len(self._cache_ids) if self._cache is not None else 0

    def reset(self) -> None:
        """Forget the conversation (the image and system prompt stay)."""
        self.turns.clear()
        self._transcript, self._last_prompt, self._closed = [], [], True
        self._drop_cache()

    def _drop_cache(self) -> None:
        self._cache, self._cache_ids = None, []

    def _prompt(self, question: str, params: GenParams) -> list[int]:
        if not question.strip():
            raise UserInputError("the question is empty")
        if self.turns:
            continuation = encode_continuation(self.engine.tokenizer, self._closed, question)
            self.engine.check_image_slots(continuation, 0)
            ids = self._transcript + continuation
        else:
            ids = self.engine.prompt_ids(self.image, [], question, system=self.system)
        self.engine.check_context(len(ids), params)
        return ids

    def _reuse(self, prompt: list[int]) -> int:
        """Crop the cache to the prefix it shares with ``prompt`` (leaving >= 1 token to encode); return its length."""
        if not self.use_cache or self._cache is None:
            return 0
        n = min(_common_prefix(self._cache_ids, prompt), len(prompt) - 1)
        image_id = self.engine.model.config.image_token_id
        image_end = max((i + 1 for i, t in enumerate(prompt) if t == image_id), default=0)
        if n < image_end or n == 0:
            self._drop_cache()
            return 0
        if n < len(self._cache_ids):
            self._cache.crop(n - len(self._cache_ids))
            self._cache_ids = self._cache_ids[:n]
        return n

    def _answer(self, question: str, prompt: list[int], params: GenParams,
                streamer: TokenQueue | None = None, cancel: threading.Event | None = None) -> GenResult:
        reused = self._reuse(prompt)
        pv = self._pixel_values if reused == 0 else None
        try:
            rows, cache = self.engine.run([prompt], pv, params, cache=self._cache if reused else None, streamer=streamer, cancel=cancel)
        except BaseException:  # generate may have grown the cache part-way: it no longer matches its ids
            self._drop_cache()
            raise
        row = rows[0]
        if self.use_cache:
            self._cache, self._cache_ids = cache, (prompt + row.generated)[: cache.get_seq_length()]
        result = GenResult(row.text, len(prompt), len(row.ids), row.finish_reason, cached_tokens=reused)
        if cancel is not None and cancel.is_set():  # an abandoned answer stays out of the conversation
            return result
        if row.cut_by_stop_string:  # the context holds the answer as shown, re-tokenized
            answer_ids, closed = self._text_ids(row.text), False
        else:
            answer_ids, closed = row.ids, row.closed
        self._last_prompt = prompt
        self._transcript, self._closed = prompt + answer_ids, closed
        self.turns.append((question, row.text))
        return result

    def _text_ids(self, text: str) -> list[int]:
        return encode_text(self.engine.tokenizer, text.strip())  # special-token strings in an answer stay text

    def ask(self, question: str, params: GenParams | None = None) -> GenResult:
        """Answer the next question; the question and the answer join the context."""
        params = params or GenParams()
        return self._answer(question, self._prompt(question, params), params)

    def ask_stream(self, question: str, params: GenParams | None = None) -> GenerationStream:
        """Like ``ask``, streaming text pieces; the turn joins the context when the stream finishes
        (not when it is closed early).

        Input errors (an empty question, ``ContextLengthExceeded``) are raised here, before generation starts.
        """
        params = params or GenParams()
        prompt = self._prompt(question, params)

        def run(streamer: TokenQueue, cancel: threading.Event) -> GenResult:
            return self._answer(question, prompt, params, streamer, cancel)

        return GenerationStream(run, self.engine.tokenizer, params.stop)

    def replace_last_answer(self, answer: str) -> None:
        """Put ``answer`` (e.g. the reference answer) in the context instead of the model's last answer."""
        if not self.turns:
            raise UserInputError("there is no answer to replace yet: ask a question first")
        self._transcript, self._closed = self._last_prompt + self._text_ids(answer), False
        self.turns[-1] = (self.turns[-1][0], answer)
