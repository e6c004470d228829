"""Validated requests: the one place that holds limits and defaults for every face."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diffuse_kit.errors import InvalidRequestError
from diffuse_kit.samplers import SAMPLERS, canonical_sampler

MAX_PROMPT_CHARS = 4000
MAX_SEED = 2**32 - 1  # A1111's range, so that its seeds mean the same here
MAX_BATCH = 8
MAX_MESSAGE_CHARS = 20000
MAX_MESSAGES = 200
MAX_NEW_TOKENS = 4096

M = TypeVar("M", bound=BaseModel)
Dimension = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


class ImageRequest(BaseModel):
    """One text-to-image or image-to-image request. `width`/`height` None: the model's size."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    model: str = Field(default="demo", min_length=1, max_length=1000)
    steps: int = Field(default=20, ge=1, le=150)
    guidance_scale: float = Field(default=7.0, ge=0.0, le=50.0, allow_inf_nan=False)
    width: Dimension | None = None
    height: Dimension | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    sampler: str | None = Field(default=None, description=f"One of: {', '.join(SAMPLERS)}")
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH)
    init_image: Image.Image | None = Field(default=None, exclude=True)
    strength: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must not be blank")
        return prompt

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, sampler: str | None) -> str | None:
        return None if sampler is None else canonical_sampler(sampler)

    @model_validator(mode="after")
    def _strength_needs_image(self) -> ImageRequest:
        if self.strength is not None and self.init_image is None:
            raise InvalidRequestError("strength: needs init_image (it is the img2img denoising strength)", "strength")
        return self

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    @classmethod
    def create(cls, **fields: Any) -> ImageRequest:
        """Validate `fields`, raising InvalidRequestError that names the first bad field."""
        return validate(cls, fields)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class TextRequest(BaseModel):
    """One chat request to a causal LM. `temperature` 0 is greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str = Field(default="demo-text", min_length=1, max_length=1000)
    adapter: str | None = Field(default=None, min_length=1, max_length=1000, description="a PEFT adapter")
    max_new_tokens: int = Field(default=256, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=4)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, stop: Any) -> Any:
        if stop is None:
            return []
        return [stop] if isinstance(stop, str) else stop


def validate(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _as_request_error(exc) from None


def _as_request_error(exc: ValidationError) -> InvalidRequestError:
    error = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in error["loc"]) or None
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidRequestError):
        return cause
    message = str(cause) if cause is not None else error["msg"]
    return InvalidRequestError(f"{param}: {message}" if param else message, param)
