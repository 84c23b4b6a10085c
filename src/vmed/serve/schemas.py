"""Pydantic models of the OpenAI chat-completions format that ``vmed serve`` speaks.

Only what the server supports is modelled; unknown request fields are ignored (as OpenAI-compatible
servers commonly do), while fields with wrong types or out-of-range values are rejected with 400.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

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


class ImageURL(BaseModel):
    url: str = Field(description="A data URL (data:image/png;base64,... or data:application/dicom;base64,...) or an allowed http(s) URL.")
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Union[TextPart, ImagePart]


class ChatMessage(BaseModel):
    """One message; ``content`` is a string or a list of text / image_url parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Ranges follow OpenAI's: temperature 0-2, top_p in (0, 1], max_tokens >= 1."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
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
