"""What answers the evaluation's questions: the interface the runner's protocol driver talks to, and the
local backend (a loaded :class:`vmed.inference.Engine`). The HTTP backend is in
:mod:`vmed.evaluation.endpoint`.

The driver (``runner.py``) decides *what* is asked (the record's turns, then the summary prompt; the
context policy, model or gold history) and writes the rows; a backend only answers:

* ``dialogue``: one image's questions in order, each with the conversation so far as context (the
  backend's own answers, or ``gold_answers`` in their place);
* ``single``: independent (image, question) items, each asked on its own.

Errors a backend raises tell the driver what to do: a ``UserInputError`` (the request's own fault,
``RequestRejected`` included) skips that dialogue with its message; ``BackendUnavailable`` stops the run,
keeping every finished dialogue, so that running again resumes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vmed.errors import UserInputError, VmedError
from vmed._io import sha256_file

if TYPE_CHECKING:
    from PIL.Image import Image

    from vmed.inference import GenParams, GenResult
    from vmed.inference.engine import Engine

# lazy: torch and transformers (versions only) are imported inside the functions that use them, so importing this module stays light
__all__ = ["EvalBackend", "LocalBackend", "RequestRejected", "BackendUnavailable", "SingleItem", "hash_model_dir"]

SingleItem = tuple["Image | None", str]
"""One independent question: (image or None, question)."""


class RequestRejected(UserInputError):
    """The backend refused one request as malformed or too large (HTTP 4xx other than 429): that dialogue is skipped."""


class BackendUnavailable(VmedError):
    """The backend stopped answering (connection lost, timeouts or 5xx/429 after every retry): the run stops."""


def hash_model_dir(path: str | os.PathLike) -> dict[str, Any]:
    """sha256 over a model folder: each file's relative path and content hash, in sorted order."""
    root = Path(path)
    if root.is_file():
        return {"path": str(root), "sha256": sha256_file(root), "files": 1}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return {"path": str(root), "sha256": h.hexdigest(), "files": len(files)}


class EvalBackend:
    """Base class of the runner's backends (see the module docstring).

    ``concurrency``: how many dialogues the driver keeps in flight (turns within one stay sequential).
    ``batches``: whether ``single`` benefits from many items at once (the driver then groups dialogues
    into ``batch_size``-question chunks; otherwise it sends one dialogue's questions per call).
    """

    concurrency: int = 1
    batches: bool = False

    def identity(self) -> dict[str, Any] | None:
        """What is evaluated (``run_info.json``'s ``model``): resuming into a folder requires it to be equal."""
        raise NotImplementedError

    def request_settings(self) -> dict[str, Any] | None:
        """How it is asked (recorded, free to change on resume); None when there is nothing to record."""
        return None

    def versions(self) -> dict[str, str]:
        """Library versions that shape the answers (recorded in ``run_info.json``)."""
        return {}

    def dialogue(
        self, image: "Image | None", questions: Sequence[str], params: "GenParams", gold_answers: Sequence[str] | None,
    ) -> list["GenResult"]:
        raise NotImplementedError

    def single(self, items: Sequence[SingleItem], params: "GenParams", batch_size: int) -> list["GenResult"]:
        raise NotImplementedError


class LocalBackend(EvalBackend):
    """A loaded engine in this process: ``dialogue`` reuses the KV cache; ``single`` runs left-padded batches.

    ``model_path`` is recorded (with the sha256 over its files) as what was evaluated.
    """

    batches = True

    def __init__(self, engine: "Engine", model_path: str | os.PathLike | None = None) -> None:
        self.engine = engine
        self.model_path = model_path

    def identity(self) -> dict[str, Any] | None:
        return hash_model_dir(self.model_path) if self.model_path is not None else None

    def versions(self) -> dict[str, str]:
        import torch
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__}

    def dialogue(self, image, questions, params, gold_answers):
        return self.engine.dialogue(image, list(questions), params, gold_answers=gold_answers)

    def single(self, items, params, batch_size):
        return self.engine.generate_batch([(image, [], question) for image, question in items], params, batch_size)
