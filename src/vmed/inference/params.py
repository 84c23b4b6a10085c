"""Generation parameters, results and the engine's typed errors.

``GenParams`` is what every front end (chat, HTTP API, web UI, evaluation) passes to the engine;
``GenResult`` is what it gets back. Temperature 0 means greedy decoding; a positive temperature
samples with ``top_p`` from a generator seeded with ``seed``, so the same request with the same
seed gives the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vmed.errors import UserInputError

__all__ = ["GenParams", "GenResult", "ContextLengthExceeded", "FINISH_REASONS"]

FINISH_REASONS = ("stop", "length")
"""``stop``: the model ended its answer (end-of-turn token) or a stop string appeared;
``length``: ``max_new_tokens`` were generated first."""


class ContextLengthExceeded(UserInputError):
    """The prompt plus ``max_new_tokens`` do not fit in the model's context (the HTTP API answers 400)."""

    def __init__(self, prompt_tokens: int, max_new_tokens: int, context_length: int, where: str = "") -> None:
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length
        super().__init__(
            f"{where + ': ' if where else ''}the prompt has {prompt_tokens} tokens and max_new_tokens is {max_new_tokens}: "
            f"{prompt_tokens + max_new_tokens} > the model's context length of {context_length} tokens; "
            "shorten the conversation (or reset it) or lower max_new_tokens"
        )


@dataclass
class GenParams:
    """How to generate one answer.

    ``max_new_tokens`` caps the answer length (>= 1). ``temperature`` 0 is greedy; > 0 samples.
    ``top_p`` in (0, 1] is nucleus sampling (only used when sampling). ``seed`` seeds the sampler.
    ``stop``: the answer is cut before the first stop string that appears (finish reason ``stop``).
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = [s for s in self.stop if s]
        self.validate()

    def validate(self) -> None:
        """Raise ``UserInputError`` naming the field when a value is out of range."""
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UserInputError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not _finite(self.temperature) or self.temperature < 0:
            raise UserInputError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise UserInputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserInputError(f"seed must be an integer, got {self.seed!r}")
        if not all(isinstance(s, str) for s in self.stop):
            raise UserInputError(f"stop must be a list of strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class GenResult:
    """One generated answer.

    ``prompt_tokens`` counts the whole context the answer was conditioned on (image tokens
    included); ``cached_tokens`` of those came from a reused KV cache rather than being encoded
    again. ``completion_tokens`` counts the generated tokens (the end-of-turn token included).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
