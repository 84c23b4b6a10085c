"""Turning generated token ids into text: stop strings, end-of-turn handling and streaming.

Kept ours (issue 12, measured in benchmarks/stop_strings.py): generate's ``stop_strings`` re-indexes the
vocabulary for each new set of stop strings (1.3-1.7 s against our 32-37 ms per 256-token request at 128k
tokens), and ``TextIteratorStreamer`` holds any symbol (°, /, →, an invalid byte) back until the next
space, while a stop-string hold-back would still be needed on top of it.

Stop strings are detected inside ``generate`` (``StopOnStrings``, one check per step and row), so
the generated ids never depend on how fast a streaming consumer reads. A ``GenerationStream``
runs one generation in a worker thread and yields text pieces as tokens arrive; it holds back
text that could still turn out to be the start of a stop string, or half of a UTF-8 character, so
the concatenated pieces always equal the final ``GenResult.text``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Sequence

import torch
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from vmed.inference.params import GenResult

__all__ = ["StopOnStrings", "FinishedRow", "finish_row", "find_stop", "GenerationStream", "TokenQueue"]


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Text of generated ids, special tokens dropped, spacing left exactly as generated."""
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop string in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` must wait: a partial character, and before it a possible stop-string start.

    ``"... 肺\ufffd"`` with the stop string ``"肺炎"`` holds both: the partial character may become ``炎``.
    """
    complete = text.rstrip("\ufffd")
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(complete)), hold, -1):
            if s.startswith(complete[-k:]):
                hold = k
                break
    return len(text) - len(complete) + hold


class StopOnStrings(StoppingCriteria):
    """Stops each row of a batch once its generated text contains a stop string, or all rows on ``cancel``.

    ``stopped_at[row]`` is the number of generated tokens when the row's stop string appeared.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_length: int, cancel: threading.Event | None = None):
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_length = prompt_length
        self.cancel = cancel
        self.stopped_at: dict[int, int] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        """``input_ids``: (batch, prompt_length + generated). Returns (batch,) bools: stop this row."""
        batch = input_ids.shape[0]
        if self.cancel is not None and self.cancel.is_set():
            return torch.ones(batch, dtype=torch.bool, device=input_ids.device)
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, ids in enumerate(generated):
            if row not in self.stopped_at and self.stops and find_stop(decode(self.tokenizer, ids), self.stops) is not None:
                self.stopped_at[row] = len(ids)
            done[row] = row in self.stopped_at
        return done


@dataclass
class FinishedRow:
    """One row of a finished generation: the kept ids, the answer text and how it ended.

    ``ids`` are the generated ids up to and including the end-of-turn token (or up to the
    stop string); ``closed`` is True when ``ids`` ends with an end-of-turn token;
    ``cut_by_stop_string`` is True when the text was truncated at a stop string (then the ids
    may run past the text). ``generated`` are all ids the model produced for the row (padding
    included in a batch).
    """

    ids: list[int]
    text: str
    finish_reason: str
    closed: bool
    cut_by_stop_string: bool
    generated: list[int]


def finish_row(
    tokenizer: Any, generated: Sequence[int], eos_ids: set[int], stops: Sequence[str], max_new_tokens: int,
    stopped_at: int | None = None,
) -> FinishedRow:
    """Cut one row's generated ids at its end (end-of-turn token, stop string or padding) and decode it."""
    ids = list(generated if stopped_at is None else generated[:stopped_at])
    end = next((i for i, t in enumerate(ids) if t in eos_ids), None)
    closed = end is not None
    if end is not None:
        ids = ids[: end + 1]
    text = decode(tokenizer, ids)
    cut = find_stop(text, stops) if stops else None
    if cut is not None:
        text = text[:cut]
    reason = "stop" if closed or cut is not None or len(ids) < max_new_tokens else "length"
    return FinishedRow(ids, text, reason, closed and cut is None, cut is not None, list(generated))


class TokenQueue(BaseStreamer):
    """A ``generate`` streamer that forwards the generated ids (not the prompt) to a queue."""

    END = object()

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first puts the prompt
            self._prompt_seen = True
            return
        self.queue.put([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        self.queue.put(self.END)


class GenerationStream:
    """An iterator of text pieces as they are generated; once exhausted, ``result`` holds the ``GenResult``.

    ``run(streamer, cancel)`` performs the generation (in a worker thread) and returns the result.
    ``close()`` (or garbage-collecting an unfinished stream) cancels the generation and waits for
    the worker, e.g. when an HTTP client disconnects.
    """

    def __init__(self, run: Callable[[TokenQueue, threading.Event], GenResult], tokenizer: Any, stops: Sequence[str]):
        self._tokenizer = tokenizer
        self._stops = list(stops)
        self._streamer = TokenQueue()
        self._cancel = threading.Event()
        self._result: GenResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(run,), name="vmed-generate", daemon=True)
        self._thread.start()
        self._pieces = self._iterate()

    def _work(self, run: Callable[[TokenQueue, threading.Event], GenResult]) -> None:
        try:
            self._result = run(self._streamer, self._cancel)
        except BaseException as e:  # handed to the consumer thread, which re-raises it
            self._error = e
        finally:
            self._streamer.end()

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def _iterate(self) -> Generator[str, None, None]:
        ids: list[int] = []
        emitted = 0
        stopped = False
        try:
            while True:
                item = self._streamer.queue.get()
                if item is TokenQueue.END:
                    break
                if stopped:
                    continue
                ids.extend(item)
                text = decode(self._tokenizer, ids)
                cut = find_stop(text, self._stops) if self._stops else None
                safe = cut if cut is not None else len(text) - _held_back(text, self._stops)
                stopped = cut is not None
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
            self._thread.join()
            if self._error is not None:
                raise self._error
            assert self._result is not None
            final = self._result.text
            if len(final) > emitted:
                yield final[emitted:]
        finally:
            if self._thread.is_alive():
                self._cancel.set()

    @property
    def result(self) -> GenResult:
        """The finished answer (text, token counts, finish reason); available once iteration has ended."""
        if self._thread.is_alive() or (self._result is None and self._error is None):
            raise RuntimeError("the stream has not finished: iterate over it first")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def text(self) -> str:
        """Consume the stream and return the whole answer."""
        return "".join(self)

    def close(self) -> None:
        """Cancel the generation (if still running) and wait for the worker thread."""
        self._cancel.set()
        self._pieces.close()
        self._thread.join()
