"""The one inference engine behind chat, the HTTP API, the web UI and evaluation.

An ``Engine`` wraps a loaded LLaVA model and its processor (loaded once) and answers questions
about an image (or none) with the Llama-3 chat template of ``vmed.data.template``:

- ``generate`` / ``stream``: one answer given a text history (stateless; what the API uses);
- ``generate_batch``: many independent prompts, left-padded batches, identical to batch size 1;
- ``dialogue``: the turns of one dialogue in order, reusing the KV cache, so the image and the
  earlier turns are encoded once (``session`` gives the same as an interactive object);
- ``dialogue_naive``: the same outputs, re-encoding the image and the whole history each turn
  (the baseline of benchmark P1).

A lock serialises generation, so one engine may be shared by threads (the API runs generation in
a thread pool). A transformers 5 detail: ``generate`` encodes ``pixel_values`` whenever the key is
passed, so a continuation on a cached prefix omits the key entirely.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from vmed.constants import DEFAULT_SYSTEM_PROMPT
from vmed.data.template import END_TOKENS, EOT, encode_prompt
from vmed.errors import UserInputError
from vmed.inference.loading import load_checkpoint
from vmed.inference.params import GenParams, GenResult, fit_max_new_tokens
from vmed.inference.session import ChatSession
from vmed.inference.streaming import FinishedRow, GenerationStream, StopOnStrings, TokenQueue, finish_row
from vmed.model.build import num_image_tokens

if TYPE_CHECKING:
    from PIL.Image import Image
    from transformers import LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerBase

# lazy: transformers' generation classes are imported inside the functions that use them, so importing this module stays light
__all__ = ["Engine", "Item"]

Item = tuple["Image | None", Sequence[tuple[str, str]], str]
"""One independent question for ``generate_batch``: (image or None, history of (question, answer), question)."""

def _cache_kwarg() -> str:
    """``generate``'s name for a KV cache: ``cache`` from transformers 5.24, ``past_key_values`` before."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


_CACHE_KWARG = _cache_kwarg()


def _returned_cache(out: Any) -> Any:
    """The KV cache of a ``generate`` output (``cache`` or, before transformers 5.24, ``past_key_values``)."""
    for name in ("cache", "past_key_values"):
        value = out.get(name) if hasattr(out, "get") else None
        if value is not None:
            return value
    return None


class Engine:
    """A loaded model ready to answer. Build with ``Engine.from_pretrained(path)`` or ``Engine(model, processor)``.

    Attributes: ``model`` (``LlavaForConditionalGeneration``), ``processor`` (``LlavaProcessor``),
    ``tokenizer``, ``num_image_tokens`` (tokens one image occupies in the prompt) and
    ``context_length`` (the language model's maximum positions).
    """

    model: "LlavaForConditionalGeneration"
    processor: "LlavaProcessor"
    tokenizer: "PreTrainedTokenizerBase"
    num_image_tokens: int
    context_length: int
    eos_ids: set[int]
    pad_id: int

    def __init__(self, model: "LlavaForConditionalGeneration", processor: "LlavaProcessor") -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.num_image_tokens = int(num_image_tokens(model))
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self.eos_ids = self._end_token_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, *, device: "str | torch.device | None" = None, dtype: "str | torch.dtype | None" = None
    ) -> "Engine":
        """Load a plain model dir, an exported dir or a training run dir with a LoRA adapter (see ``vmed.inference.loading``)."""
        model, processor = load_checkpoint(path, device=device, dtype=dtype)
        return cls(model, processor)

    def _end_token_ids(self) -> set[int]:
        ids: set[int] = set()
        unk = self.tokenizer.unk_token_id
        for tok in END_TOKENS:
            tid = self.tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid != unk:
                ids.add(tid)
        for extra in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            for tid in extra if isinstance(extra, (list, tuple)) else [extra]:
                if isinstance(tid, int):
                    ids.add(tid)
        if not ids:
            raise UserInputError(f"the tokenizer has no end-of-turn token ({EOT}) or eos token; rebuild the model with vmed.model")
        return ids

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- inputs -----------------------------------------------------------------------------

    def pixel_values(self, images: Sequence["Image"]) -> torch.Tensor:
        """Preprocess PIL images (already loaded by ``vmed.imaging.load_image``): (n, 3, H, W) on the model's device."""
        from PIL.Image import Image

        for im in images:
            if not isinstance(im, Image):
                raise UserInputError(
                    f"image must be a PIL image (load files with vmed.imaging.load_image), got {type(im).__name__}"
                )
        pv = self.processor.image_processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        return pv.to(device=self.device, dtype=self.model.dtype)

    def prompt_ids(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, *, system: str | None = DEFAULT_SYSTEM_PROMPT
    ) -> list[int]:
        """Token ids of the generation prompt (image tokens included when ``image`` is given)."""
        n = self.num_image_tokens if image is not None else 0
        ids = encode_prompt(self.tokenizer, list(history), question, num_image_tokens=n, system=system)
        self.check_image_slots(ids, n)
        return ids

    def check_image_slots(self, ids: Sequence[int], expected: int) -> None:
        """Refuse a prompt whose image-token count is not ``expected`` (the image's tokens, or 0 without one).

        The template encodes user text with special tokens as plain text, so ``<image>`` typed by a user
        never becomes a slot; this guard makes the engine refuse, with a clear message, any prompt in
        which it would (the model would fail with "Image features and image tokens do not match").
        """
        found = list(ids).count(self.model.config.image_token_id)
        if found != expected:
            raise UserInputError(
                f"the prompt has {found} image-token slots for {expected} image tokens: the text contains the image "
                "placeholder <image>; remove it from the messages (send the image as an image part)"
            )

    def check_context(self, prompt_tokens: int, params: GenParams, where: str = "") -> None:
        """Raise ``ContextLengthExceeded`` when the prompt plus ``max_new_tokens`` exceed the context."""
        fit_max_new_tokens(prompt_tokens, self.context_length, params.max_new_tokens, where=where)

    # ---- one answer -------------------------------------------------------------------------

    def generate(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, params: GenParams | None = None,
        *, system: str | None = DEFAULT_SYSTEM_PROMPT, cancel: threading.Event | None = None,
    ) -> GenResult:
        """Answer ``question`` about ``image`` (None: text only) after the (question, answer) ``history``.

        Setting ``cancel`` (from another thread) stops the generation after the current step; the
        result then holds the answer so far (the HTTP API sets it when the client goes away).
        """
        params = params or GenParams()
        ids = self.prompt_ids(image, history, question, system=system)
        self.check_context(len(ids), params)
        pv = self.pixel_values([image]) if image is not None else None
        row = self.run([ids], pv, params, cancel=cancel)[0][0]
        return GenResult(row.text, len(ids), len(row.ids), row.finish_reason)

    def stream(
        self, image: "Image | None", history: Sequence[tuple[str, str]], question: str, params: GenParams | None = None,
        *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> GenerationStream:
        """Like ``generate``, but returns an iterator of text pieces; its ``result`` is the GenResult at the end.

        Input errors (``ContextLengthExceeded``, a bad image) are raised here, before any generation starts.
        """
        params = params or GenParams()
        ids = self.prompt_ids(image, history, question, system=system)
        self.check_context(len(ids), params)
        pv = self.pixel_values([image]) if image is not None else None

        def run(streamer: TokenQueue, cancel: threading.Event) -> GenResult:
            row = self.run([ids], pv, params, streamer=streamer, cancel=cancel)[0][0]
            return GenResult(row.text, len(ids), len(row.ids), row.finish_reason)

        return GenerationStream(run, self.tokenizer, params.stop)

    # ---- many independent answers -----------------------------------------------------------

    def generate_batch(
        self, items: Sequence[Item], params: GenParams | None = None, batch_size: int = 8,
        *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> list[GenResult]:
        """Answer independent (image, history, question) items in left-padded batches; results in input order.

        Items are grouped by prompt length to limit padding. With greedy decoding the answers are
        the same as ``generate`` one by one. With sampling, the seed applies per batch.
        """
        params = params or GenParams()
        if batch_size < 1:
            raise UserInputError(f"batch_size must be >= 1, got {batch_size}")
        prompts = []
        for i, (image, history, question) in enumerate(items):
            ids = self.prompt_ids(image, history, question, system=system)
            self.check_context(len(ids), params, where=f"item {i}")
            prompts.append(ids)
        order = sorted(range(len(items)), key=lambda i: -len(prompts[i]))
        results: list[GenResult | None] = [None] * len(items)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            images = [items[i][0] for i in chunk if items[i][0] is not None]
            pv = self.pixel_values(images) if images else None
            rows, _ = self.run([prompts[i] for i in chunk], pv, params)
            for i, row in zip(chunk, rows):
                results[i] = GenResult(row.text, len(prompts[i]), len(row.ids), row.finish_reason)
        return [r for r in results if r is not None]

    # ---- dialogues --------------------------------------------------------------------------

    def session(self, image: "Image | None" = None, *, system: str | None = DEFAULT_SYSTEM_PROMPT, use_cache: bool = True) -> "ChatSession":
        """A multi-turn conversation about ``image`` that keeps its KV cache between turns (``use_cache=False``: re-encode each turn)."""
        return ChatSession(self, image, system=system, use_cache=use_cache)

    def dialogue(
        self, image: "Image | None", questions: Sequence[str], params: GenParams | None = None,
        gold_answers: Sequence[str] | None = None, *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> list[GenResult]:
        """Ask ``questions`` in order about one image, reusing the KV cache: the image and earlier turns are encoded once.

        With ``gold_answers`` (one per question), each reference answer replaces the model's own in
        the context of the following turns (the model's answers are still returned).
        """
        return self._dialogue(image, questions, params, gold_answers, system=system, use_cache=True)

    def dialogue_naive(
        self, image: "Image | None", questions: Sequence[str], params: GenParams | None = None,
        gold_answers: Sequence[str] | None = None, *, system: str | None = DEFAULT_SYSTEM_PROMPT,
    ) -> list[GenResult]:
        """``dialogue`` without reuse: the image and the whole history are encoded again at every turn (same outputs)."""
        return self._dialogue(image, questions, params, gold_answers, system=system, use_cache=False)

    def _dialogue(
        self, image: "Image | None", questions: Sequence[str], params: GenParams | None,
        gold_answers: Sequence[str] | None, *, system: str | None, use_cache: bool,
    ) -> list[GenResult]:
        if gold_answers is not None and len(gold_answers) != len(questions):
            raise UserInputError(f"gold_answers has {len(gold_answers)} answers for {len(questions)} questions; give one per question")
        session = self.session(image, system=system, use_cache=use_cache)
        results = []
        for i, question in enumerate(questions):
            results.append(session.ask(question, params))
            if gold_answers is not None:
                session.replace_last_answer(gold_answers[i])
        return results

    # ---- the one call into transformers -----------------------------------------------------

    def run(
        self, prompts: list[list[int]], pixel_values: torch.Tensor | None, params: GenParams, *,
        cache: Any = None, streamer: TokenQueue | None = None, cancel: threading.Event | None = None,
    ) -> tuple[list[FinishedRow], Any]:
        """Generate for a batch of prompt ids (left-padded here); return the finished rows and the KV cache.

        ``pixel_values``: (n_images, 3, H, W) for the prompts' image tokens, in order; None when the
        prompts have no image tokens or when ``cache`` already holds them. ``cache`` (batch size 1
        only) covers a prefix of ``prompts[0]``; only the rest is encoded. The returned cache covers
        the prompt and all generated tokens but the last.
        """
        from transformers import GenerationConfig
        from transformers.generation.stopping_criteria import StoppingCriteriaList

        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        sampling = not params.greedy
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sampling,
            num_beams=1,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            # never emit the image placeholder: an answer fed back as history would then hold one image slot too many
            suppress_tokens=[self.model.config.image_token_id],
            **({"temperature": params.temperature, "top_p": params.top_p, "top_k": 0} if sampling else {}),
        )
        stop = StopOnStrings(self.tokenizer, params.stop, width, cancel)
        criteria = StoppingCriteriaList([stop] if params.stop or cancel is not None else [])
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if pixel_values is not None:
            kwargs["pixel_values"] = pixel_values
        if cache is not None:
            kwargs[_CACHE_KWARG] = cache
        with self._lock, torch.inference_mode(), self._seeded(params):
            out = self.model.generate(
                **kwargs, generation_config=config, stopping_criteria=criteria, streamer=streamer,
            )
        generated = out.sequences[:, width:].tolist()
        rows = [
            finish_row(self.tokenizer, g, self.eos_ids, params.stop, params.max_new_tokens, stop.stopped_at.get(i))
            for i, g in enumerate(generated)
        ]
        return rows, _returned_cache(out)

    @contextlib.contextmanager
    def _seeded(self, params: GenParams) -> Iterator[None]:
        """Seed the sampler from ``params.seed`` without disturbing the caller's random state (no-op when greedy)."""
        if params.greedy:
            yield
            return
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(params.seed)
            yield
