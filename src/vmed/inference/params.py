"""Generation parameters, results and the engine's typed errors.

``GenParams`` is what every front end (chat, HTTP API, web UI, evaluation) passes to the engine;
``GenResult`` is what it gets back. Temperature 0 means greedy decoding; a positive temperature
samples with ``top_p`` from a generator seeded with ``seed``, so the same request with the same
seed gives the same output. Temperatures below ``GREEDY_BELOW`` decode greedily too (dividing the
logits by 1e-300 would overflow them to inf); ``fit_max_new_tokens`` is the one place that decides
whether a prompt and an answer fit the model's context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vmed.errors import UserInputError

__all__ = ["GenParams", "GenResult", "ContextLengthExceeded", "FINISH_REASONS", "GREEDY_BELOW", "SEED_RANGE", "fit_max_new_tokens"]

FINISH_REASONS = ("stop", "length")
"""``stop``: the model ended its answer (end-of-turn token) or a stop string appeared;
``length``: ``max_new_tokens`` were generated first."""


GREEDY_BELOW = 1e-5
"""Temperatures under this decode greedily (vLLM's sampling epsilon); lower ones would overflow the logits."""

SEED_RANGE = (-(2**63), 2**63 - 1)
"""Seeds are signed 64-bit integers (what ``torch.manual_seed`` and OpenAI's ``seed`` take)."""


class ContextLengthExceeded(UserInputError):
    """The prompt plus the answer do not fit in the model's context (the HTTP API answers 400).

    ``max_new_tokens`` is None when the prompt alone leaves no room for an answer; ``name`` is what
    the caller calls the answer-length limit (``max_new_tokens``, or ``max_tokens`` in the HTTP API).
    """

    def __init__(
        self, prompt_tokens: int, max_new_tokens: int | None, context_length: int, where: str = "", *, name: str = "max_new_tokens",
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length
        prefix = f"{where}: " if where else ""
        if max_new_tokens is None:
            message = (f"{prefix}the prompt has {prompt_tokens} tokens, which fills the model's context of {context_length} tokens; "
                       "shorten the conversation (or reset it)")
        else:
            message = (f"{prefix}the prompt has {prompt_tokens} tokens and {name} is {max_new_tokens}: "
                       f"{prompt_tokens + max_new_tokens} > the model's context length of {context_length} tokens; "
                       f"shorten the conversation (or reset it) or lower {name}")
        super().__init__(message)


def fit_max_new_tokens(
    prompt_tokens: int, context_length: int, requested: int | None, *, default: int = 128, where: str = "", name: str = "max_new_tokens",
) -> int:
    """How many tokens the answer may take: ``requested`` when the prompt and it fit in the context;
    ``None``: ``default`` clamped to the room left. Raises ``ContextLengthExceeded`` otherwise."""
    room = context_length - prompt_tokens
    if requested is None:
        if room < 1:
            raise ContextLengthExceeded(prompt_tokens, None, context_length, where, name=name)
        return min(default, room)
    if requested > room:
        raise ContextLengthExceeded(prompt_tokens, requested, context_length, where, name=name)
    return requested


@dataclass
class GenParams:
    """How to generate one answer.

    ``max_new_tokens`` caps the answer length (>= 1). ``temperature`` 0 (or under ``GREEDY_BELOW``) is greedy; above, samples.
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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise UserInputError(f"seed must be a signed 64-bit integer ({SEED_RANGE[0]} to {SEED_RANGE[1]}), got {self.seed!r}")
        if not all(isinstance(s, str) for s in self.stop):
            raise UserInputError(f"stop must be a list of strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        """Greedy decoding: temperature 0, or below ``GREEDY_BELOW``."""
        return self.temperature < GREEDY_BELOW


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
