"""Pydantic models of the OpenAI chat-completions format that ``vmed serve`` speaks.

Only what the server supports is modelled; unknown request fields are ignored (as OpenAI-compatible
servers commonly do), while fields with wrong types or out-of-range values are rejected with 400.
Types are strict, as in the OpenAI API: ``"stream": "yes"``, ``"max_tokens": "5"`` or ``true`` are refused
(an integer is accepted where a number is expected). Every string must be valid Unicode: a lone
surrogate (``"\\ud800"`` in the JSON) is refused, naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "ImageURL",
    "TextPart",
    "ImagePart",
    "ChatMessage",
    "StreamOptions",
    "ChatCompletionRequest",
    "Usage",
    "ResponseMessage",
    "Choice",
    "ChatCompletion",
    "ModelCard",
    "ModelList",
]


SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
"""``seed`` is a signed 64-bit integer, as in OpenAI's API and torch's generator."""


def _valid_unicode(text: str) -> str:
    """Refuse strings that cannot be encoded as UTF-8 (lone surrogates from ``\\ud800`` escapes in the JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"the text holds an unpaired surrogate (U+{ord(text[e.start]):04X}) at character {e.start}, which is not valid "
            "Unicode; send well-formed UTF-8 (a surrogate pair must be complete)"
        ) from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A string that is valid Unicode (encodable as UTF-8)."""


class _Strict(BaseModel):
    """Strict types (no "5" for 5, no true for 1); unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class ImageURL(_Strict):
    url: Text = Field(description="A data URL (data:image/png;base64,... or data:application/dicom;base64,...) or an allowed http(s) URL.")
    detail: Text | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ChatMessage(_Strict):
    """One message; ``content`` is a string or a list of text / image_url parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions``. Ranges follow OpenAI's: temperature 0-2, top_p in (0, 1], max_tokens >= 1,
    seed a signed 64-bit integer."""

    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = Field(default=None, description="Up to 4 stop strings, as in OpenAI's API.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "vmed"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
