"""``AnswerEngine``: the part of ``Engine`` that the HTTP API and the web UI call, as a typing Protocol.

The server is typed against this rather than ``Engine`` itself, so that tests can drive it with a
stand-in of the same shape, and so that importing the server does not import torch. ``Engine``
satisfies it (``tests/unit/test_engine.py`` checks that with ``isinstance``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

from vmed.constants import DEFAULT_SYSTEM_PROMPT
from vmed.inference.params import GenParams, GenResult

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["AnswerEngine"]


@runtime_checkable
class AnswerEngine(Protocol):
    """Answers one question at a time: ``generate`` for the whole answer, ``stream`` piece by piece.

    ``stream`` returns an iterator of text pieces whose ``result`` (or the generator's return value)
    is the ``GenResult``; input errors are raised before the first piece.
    """

    tokenizer: Any
    context_length: int
    num_image_tokens: int

    def prompt_ids(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> list[int]: ...

    def generate(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, params: GenParams | None = None,
        *, system: str | None = DEFAULT_SYSTEM_PROMPT, cancel: threading.Event | None = None,
    ) -> GenResult: ...

    def stream(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, params: GenParams | None = None,
        *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> Iterator[str]: ...
