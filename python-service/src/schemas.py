"""Request bodies of the HTTP APIs, as pydantic models: they validate each body and they
are the schemas of /api/openapi.json, so the document cannot drift from what is enforced."""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffuse_kit import InvalidRequestError, TextRequest
from diffuse_kit.infotext import png_info
from diffuse_kit.requests import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    ChatMessage,
)

_STRICT = ConfigDict(extra="forbid")
_LENIENT = ConfigDict(extra="ignore")  # A1111/OpenAI clients send many fields we do not implement


class NativeImageBody(BaseModel):
    """POST /api/images and /api/jobs: ImageRequest's fields by their Python names."""

    model_config = _STRICT
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, description="default: the server's model")
    steps: int = Field(default=20, ge=1, le=150)
    guidance_scale: float = Field(default=7.0, ge=0, le=50, allow_inf_nan=False)
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    sampler: str | None = None
    batch_size: int = Field(default=1, ge=1, le=8)
    init_image: str | None = Field(default=None, description="base64 PNG/JPEG (a data: URI is fine)")
    strength: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    stream: bool = Field(default=True, description="NDJSON progress lines, or one JSON object")


class OpenAIImageBody(BaseModel):
    """POST /v1/images/generations."""

    model_config = _LENIENT
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = None
    n: int = Field(default=1, ge=1, le=10)
    size: str | None = Field(default=None, pattern=r"^\d+x\d+$", description='"WxH"; default: the model\'s size')
    response_format: Literal["b64_json", "url"] = "b64_json"


class NativeTextBody(TextRequest):
    """POST /api/text: TextRequest's fields, with `prompt` as a shorthand for one user message."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE_CHARS)
    model: str | None = Field(default=None, description="default: the server's text model")
    stream: bool = Field(default=True, description="NDJSON token lines, or one JSON object")

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> NativeTextBody:
        if (self.messages is None) == (self.prompt is None):
            raise InvalidRequestError("messages: send either messages or prompt", "messages")
        return self

    def request_fields(self) -> dict[str, Any]:
        fields = self.model_dump(exclude={"prompt", "stream"}, exclude_none=True)
        if self.prompt is not None:
            fields["messages"] = [{"role": "user", "content": self.prompt}]
        return fields


class SuggestBody(BaseModel):
    """POST /api/suggest: a text model writes an image prompt about `seed_text`."""

    model_config = _STRICT
    seed_text: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, description="default: the server's text model")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class ContentPart(BaseModel):
    model_config = _LENIENT
    type: Literal["text"]
    text: str = Field(max_length=MAX_MESSAGE_CHARS)


class OpenAIMessage(BaseModel):
    model_config = _LENIENT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = Field(default=None)

    def as_chat_message(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class OpenAIChatBody(BaseModel):
    """POST /v1/chat/completions (text parts only; tools, images and n > 1 are not served)."""

    model_config = _LENIENT
    model: str | None = None
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=1.0, ge=0, le=2, allow_inf_nan=False)  # OpenAI's defaults
    top_p: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = None
    n: Literal[1] = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    def request_fields(self) -> dict[str, Any]:
        fields = {
            "model": self.model,
            "messages": [message.as_chat_message() for message in self.messages],
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
        }
        if (limit := self.max_completion_tokens or self.max_tokens) is not None:
            fields["max_new_tokens"] = limit
        return fields


class A1111Txt2ImgBody(BaseModel):
    """POST /sdapi/v1/txt2img: A1111's field names; unknown fields (hires fix, scripts, ...) ignored."""

    model_config = _LENIENT
    prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED)
    sampler_name: str | None = None
    sampler_index: str | None = None
    batch_size: int = Field(default=1, ge=1, le=8)
    n_iter: int = Field(default=1, ge=1, le=16)
    steps: int = Field(default=20, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0, le=50, allow_inf_nan=False)
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    override_settings: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True


class A1111Img2ImgBody(A1111Txt2ImgBody):
    init_images: list[str] = Field(min_length=1, max_length=1)
    denoising_strength: float = Field(default=0.75, gt=0, le=1, allow_inf_nan=False)


class PngInfoBody(BaseModel):
    model_config = _LENIENT
    image: str = Field(min_length=1)


_DATA_URI = re.compile(r"^data:image/[\w.+-]+;base64,")


def decode_image(data: str, field: str) -> Image.Image:
    """A base64 image (raw or data: URI) as an RGB PIL image; a clear error naming `field`."""
    try:
        raw = base64.b64decode(_DATA_URI.sub("", data.strip()), validate=True)
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise InvalidRequestError(f"{field}: not a base64-encoded PNG or JPEG image", field) from None
    if image.width * image.height > 2048 * 2048:
        raise InvalidRequestError(f"{field}: image larger than 2048x2048", field)
    return image


def encode_png(image: Image.Image, infotext: str | None = None) -> str:
    """Base64 PNG, with the A1111 `parameters` chunk when infotext is given."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=png_info(infotext) if infotext else None)
    return base64.b64encode(buffer.getvalue()).decode()


def data_uri(image: Image.Image, infotext: str | None = None) -> str:
    return "data:image/png;base64," + encode_png(image, infotext)


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size is None:
        return None, None
    width, height = (int(part) for part in size.split("x"))
    return width, height
