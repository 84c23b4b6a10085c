"""The Llama-3 dialogue template and label masking: the one place that knows the chat format.

A dialogue (system prompt, then user/assistant turns about one image) renders as::

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{<image>*N}\\n{question}<|eot_id|>      (image only in turn 1)
    <|start_header_id|>assistant<|end_header_id|>\\n\\n{answer}<|eot_id|>
    ... further user/assistant turns ...

(without the line breaks shown here). Training ids are built segment by segment: special tokens
are looked up as ids, every text piece is tokenized on its own, and the pieces are concatenated.
Labels are ``IGNORE_INDEX`` everywhere except the assistant answers and their ``<|eot_id|>``.
The concatenation is then checked against tokenizing the whole rendered string; any
disagreement (the "tokenization mismatch" bug that silently dropped samples in several LLaVA
forks) raises ``TemplateError`` naming the turn, instead of training on shifted labels.

Questions and answers are stripped of surrounding whitespace (the Llama-3 chat template ``trim``s
message contents), so ``render_text`` equals ``tokenizer.apply_chat_template`` for the same
messages with the chat template in ``LLAMA3_CHAT_TEMPLATE``. That template inserts
``DEFAULT_SYSTEM_PROMPT`` when the conversation has no system message, so plain transformers, vLLM and
SGLang render the prompt training used; vmed itself always passes its system prompt explicitly.

Text supplied by users and datasets (questions, answers, summaries, system prompts) is text: it is
tokenized with special tokens split (``split_special_tokens=True``), so ``"<|eot_id|>"`` or ``"<image>"``
typed in a question become the characters' ordinary tokens, never a turn marker or an image slot.
Only the template itself places control tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vmed.constants import DEFAULT_SYSTEM_PROMPT, IGNORE_INDEX, IMAGE_TOKEN
from vmed.errors import UserInputError

__all__ = [
    "BOS",
    "EOT",
    "END_OF_TEXT",
    "START_HEADER",
    "END_HEADER",
    "END_TOKENS",
    "LLAMA3_SPECIAL_TOKENS",
    "LLAMA3_CHAT_TEMPLATE",
    "EncodedDialogue",
    "TemplateError",
    "DialogueTooLong",
    "encode_dialogue",
    "encode_prompt",
    "encode_continuation",
    "encode_text",
    "render_text",
    "to_messages",
]

BOS = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
LLAMA3_SPECIAL_TOKENS = (BOS, START_HEADER, END_HEADER, EOT, END_OF_TEXT)
"""The Llama-3 control tokens the template places (a tokenizer must hold each as one special token)."""
END_TOKENS = (EOT, END_OF_TEXT)
"""Tokens that end generation: the end of an assistant turn, and the end of the text."""

LLAMA3_CHAT_TEMPLATE = (
    "{%- set default_system = " + json.dumps(DEFAULT_SYSTEM_PROMPT) + " -%}"
    "{{- '<|begin_of_text|>' -}}"
    "{%- if not messages or messages[0]['role'] != 'system' -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' + default_system + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] | trim -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<image>\n' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] | trim -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"
)
"""Jinja chat template of the Llama-3 format (set on every vmed tokenizer and processor).

Message content may be a string or a list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}``
items; an image item renders as one ``<image>`` followed by a newline (the processor then expands
it to the model's image-token count). Without a system message first, the template inserts
``DEFAULT_SYSTEM_PROMPT`` (the one training used), so every engine renders the same tokens."""


class TemplateError(UserInputError):
    """The tokenizer does not reproduce the template's segment-by-segment ids (a tokenization mismatch)."""


class DialogueTooLong(UserInputError):
    """Not even the system prompt, image and first turn fit in ``max_length``."""


@dataclass
class EncodedDialogue:
    """One dialogue as model inputs (all lists have the same length L).

    ``labels[i]`` is ``input_ids[i]`` for assistant answer tokens and their ``<|eot_id|>``, else
    ``IGNORE_INDEX``. ``num_turns`` turns were kept; ``dropped_turns`` trailing turns did not fit.
    """

    input_ids: list[int]
    labels: list[int]
    attention_mask: list[int]
    num_turns: int
    dropped_turns: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


class _Encoder:
    """Looks up the special-token ids of ``tokenizer`` once and tokenizes text pieces."""

    def __init__(self, tokenizer: Any, image_token: str = IMAGE_TOKEN) -> None:
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.ids: dict[str, int] = {}
        for tok in (BOS, START_HEADER, END_HEADER, EOT, image_token):
            tid = tokenizer.convert_tokens_to_ids(tok)
            if tid is None or tid == getattr(tokenizer, "unk_token_id", None) or not isinstance(tid, int):
                raise TemplateError(
                    f"the tokenizer has no token {tok!r}; build the model with vmed.model.build_model "
                    "(it adds the Llama-3 special tokens and the image token)"
                )
            self.ids[tok] = tid
        self.specials = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]

    def text(self, text: str) -> list[int]:
        """Ids of a plain text piece (special-token strings in it are split into ordinary tokens)."""
        return encode_text(self.tokenizer, text)

    def has_special(self, text: str) -> bool:
        """Whether ``text`` contains the string of one of the tokenizer's special tokens."""
        return any(tok in text for tok in self.specials)

    def rendered(self, text: str) -> list[int]:
        """Ids of a whole rendered dialogue as the tokenizer gives them (special-token strings are tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def split_tail(self, prefix: str, tail: str, where: str) -> tuple[list[int], list[int]]:
        """Ids of ``prefix`` and ``tail`` such that their concatenation tokenizes ``prefix + tail``.

        ``tail`` is tokenized on its own; ``prefix`` gets the remaining leading ids of the joined
        text. Raises ``TemplateError`` when ``tail``'s own ids are not the end of the joined ids
        (a token would straddle the boundary and the labels could not be placed exactly).
        """
        joined = self.text(prefix + tail)
        tail_ids = self.text(tail)
        n = len(joined) - len(tail_ids)
        if n < 0 or joined[n:] != tail_ids or self.text(prefix) and not joined[:n]:
            raise TemplateError(
                f"tokenization mismatch in {where}: tokenizing {prefix + tail!r} gives {joined} but the answer "
                f"{tail!r} alone gives {tail_ids}; this tokenizer cannot split the header from the answer "
                "at a token boundary (use a Llama-3-style byte-level BPE tokenizer)"
            )
        return joined[:n], tail_ids

    def header(self, role: str) -> list[int]:
        return [self.ids[START_HEADER], *self.text(role), self.ids[END_HEADER]]

    def system(self, system: str | None) -> list[int]:
        ids = [self.ids[BOS]]
        if system is not None:
            ids += self.header("system") + self.text("\n\n" + system.strip()) + [self.ids[EOT]]
        return ids

    def user(self, question: str, num_image_tokens: int) -> list[int]:
        ids = self.header("user")
        if num_image_tokens:
            ids += self.text("\n\n") + [self.ids[self.image_token]] * num_image_tokens + self.text("\n" + question.strip())
        else:
            ids += self.text("\n\n" + question.strip())
        return ids + [self.ids[EOT]]

    def assistant(self, answer: str, where: str) -> tuple[list[int], list[int]]:
        """Ids and labels of one assistant reply (header unlabelled; answer and ``<|eot_id|>`` labelled)."""
        head_text, answer_ids = self.split_tail("\n\n", answer.strip(), where)
        head = self.header("assistant") + head_text
        answer_ids = answer_ids + [self.ids[EOT]]
        return head + answer_ids, [IGNORE_INDEX] * len(head) + answer_ids


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Ids of user- or dataset-supplied ``text``: no BOS, and special-token strings in it (``<|eot_id|>``,
    ``<image>``, ...) tokenized as ordinary text, so they can never forge a turn or an image slot."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _check_turns(turns: Sequence[tuple[str, str]]) -> None:
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, (tuple, list)) or len(turn) != 2:
            raise UserInputError(f"turn {i}: expected a (question, answer) pair, got {turn!r}")
        if not str(turn[0]).strip():
            raise UserInputError(f"turn {i}: the question is empty")


def encode_dialogue(
    tokenizer: Any,
    turns: Sequence[tuple[str, str]],
    *,
    num_image_tokens: int,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    max_length: int | None = None,
    image_token: str = IMAGE_TOKEN,
) -> EncodedDialogue:
    """Encode a dialogue for training: ids, labels (answers + their ``<|eot_id|>`` only) and mask.

    ``turns`` are (question, answer) pairs; the image (``num_image_tokens`` copies of
    ``image_token``, then ``"\\n"``) opens the first user turn; ``num_image_tokens=0`` means no
    image. With ``max_length``, whole trailing turns are dropped until the rest fits (an answer is
    never cut); ``DialogueTooLong`` is raised if not even the first turn fits. The result is
    checked against tokenizing ``render_text`` of the kept turns; ``TemplateError`` on mismatch.
    """
    if not turns:
        raise UserInputError("a dialogue needs at least one (question, answer) turn")
    _check_turns(turns)
    enc = _Encoder(tokenizer, image_token)
    input_ids = enc.system(system)
    labels = [IGNORE_INDEX] * len(input_ids)
    kept = 0
    for i, (question, answer) in enumerate(turns):
        where = f"turn {i + 1} (question {question!r})"
        user_ids = enc.user(question, num_image_tokens if i == 0 else 0)
        reply_ids, reply_labels = enc.assistant(answer, where)
        turn_ids = user_ids + reply_ids
        if max_length is not None and len(input_ids) + len(turn_ids) > max_length:
            if i == 0:
                raise DialogueTooLong(
                    f"the system prompt, {num_image_tokens} image tokens and the first turn need "
                    f"{len(input_ids) + len(turn_ids)} tokens but max_length is {max_length}; "
                    "raise max_length or shorten the first turn"
                )
            break
        input_ids += turn_ids
        labels += [IGNORE_INDEX] * len(user_ids) + reply_labels
        kept += 1
    expected = _reference_ids(enc, _render_parts(turns[:kept], num_image_tokens, system, False, image_token))
    if expected != input_ids:
        at = next((j for j, (a, b) in enumerate(zip(expected, input_ids)) if a != b), min(len(expected), len(input_ids)))
        turn_no = _turn_at(enc, input_ids, at, system is not None)
        raise TemplateError(
            f"tokenization mismatch in {turn_no}: the segment-by-segment ids differ from tokenizing the "
            f"rendered dialogue at position {at} (template ids {input_ids[at:at + 8]}..., "
            f"tokenizer ids {expected[at:at + 8]}...); the labels would be shifted, so this sample is refused"
        )
    return EncodedDialogue(input_ids, labels, [1] * len(input_ids), kept, len(turns) - kept)


def _reference_ids(enc: _Encoder, parts: list[tuple[str, bool]]) -> list[int]:
    """The ids the segment-by-segment encoding must equal, from the rendered dialogue ``parts``.

    Normally: the tokenizer on the whole rendered string (the check against the "tokenization
    mismatch" bug). When user or dataset text holds a special-token string, the whole string would
    turn that into a control token, so the string is cut at the template's own control tokens
    instead and each text run between them is tokenized as text: that is what the tokenizer does to
    a whole string (added tokens split it first), except that only the template's markers are special.
    """
    if not any(enc.has_special(text) for text, control in parts if not control):
        return enc.rendered("".join(text for text, _ in parts))
    ids: list[int] = []
    run = ""
    for text, control in parts:
        if control:
            ids += enc.text(run) + [enc.ids[text]]
            run = ""
        else:
            run += text
    return ids + enc.text(run)


def _turn_at(enc: _Encoder, ids: list[int], position: int, has_system: bool) -> str:
    """Human name of the part of the dialogue that contains ``position``."""
    headers = sum(1 for t in ids[: position + 1] if t == enc.ids[START_HEADER]) - int(has_system)
    return "the system prompt" if headers <= 0 else f"turn {(headers + 1) // 2}"


def encode_prompt(
    tokenizer: Any,
    history: Sequence[tuple[str, str]],
    question: str,
    *,
    num_image_tokens: int,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    image_token: str = IMAGE_TOKEN,
) -> list[int]:
    """Ids of a generation prompt: system, earlier (question, answer) turns, ``question`` and the
    assistant header (``...<|start_header_id|>assistant<|end_header_id|>\\n\\n``).

    The image tokens open the first user turn (the first of ``history``, else ``question``).
    """
    _check_turns([*history, (question, "")])
    enc = _Encoder(tokenizer, image_token)
    ids = enc.system(system)
    for i, (q, a) in enumerate(history):
        ids += enc.user(q, num_image_tokens if i == 0 else 0)
        ids += enc.assistant(a, f"history turn {i + 1}")[0]
    ids += enc.user(question, 0 if history else num_image_tokens)
    return ids + enc.header("assistant") + enc.text("\n\n")


def encode_continuation(tokenizer: Any, prev_answer_closed: bool, question: str) -> list[int]:
    """Ids to append to a cached sequence that ends with a generated answer (KV-cache reuse).

    ``<|eot_id|>`` first unless the answer already ended with it (``prev_answer_closed``), then
    the user turn with ``question`` and the assistant header. ``encode_prompt(history + [(q, a)],
    q2)`` equals ``encode_prompt(history, q) + ids(a) + encode_continuation(tok, False, q2)``.
    """
    enc = _Encoder(tokenizer)
    ids = [] if prev_answer_closed else [enc.ids[EOT]]
    return ids + enc.user(question, 0) + enc.header("assistant") + enc.text("\n\n")


def to_messages(
    turns: Sequence[tuple[str, str]],
    *,
    num_image_tokens: int,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    image_token: str = IMAGE_TOKEN,
) -> list[dict[str, str]]:
    """The dialogue as chat messages (``[{"role": ..., "content": ...}]``) with the image tokens inlined."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    for i, (question, answer) in enumerate(turns):
        image = image_token * num_image_tokens + "\n" if i == 0 and num_image_tokens else ""
        messages.append({"role": "user", "content": image + question.strip()})
        messages.append({"role": "assistant", "content": answer})
    return messages


def _render_parts(
    turns: Sequence[tuple[str, str]], num_image_tokens: int, system: str | None, add_generation_prompt: bool, image_token: str
) -> list[tuple[str, bool]]:
    """The rendered dialogue as (piece, is_control_token) pairs; the pieces joined are ``render_text``."""
    def header(role: str) -> list[tuple[str, bool]]:
        return [(START_HEADER, True), (role, False), (END_HEADER, True), ("\n\n", False)]

    parts = [(BOS, True)]
    if system is not None:
        parts += [*header("system"), (system.strip(), False), (EOT, True)]
    for i, (question, answer) in enumerate(turns):
        parts += header("user")
        if i == 0 and num_image_tokens:
            parts += [(image_token, True)] * num_image_tokens + [("\n", False)]
        parts += [(question.strip(), False), (EOT, True), *header("assistant")]
        if not (add_generation_prompt and i == len(turns) - 1):
            parts += [(answer.strip(), False), (EOT, True)]
    return parts


def render_text(
    turns: Sequence[tuple[str, str]],
    *,
    num_image_tokens: int,
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    add_generation_prompt: bool = False,
    image_token: str = IMAGE_TOKEN,
) -> str:
    """The dialogue as one string, equal to ``tokenizer.apply_chat_template(to_messages(...), tokenize=False)``
    (for ``system=None`` the chat template inserts ``DEFAULT_SYSTEM_PROMPT``, this string has no system turn).

    With ``add_generation_prompt`` the last turn's answer is left out and the string ends with
    the assistant header (a prompt for its answer).
    """
    parts = _render_parts(turns, num_image_tokens, system, add_generation_prompt, image_token)
    return "".join(text for text, _ in parts)
