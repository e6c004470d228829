"""diffuse_kit: run image (diffusers) and text (transformers) models locally.

>>> import diffuse_kit
>>> result = diffuse_kit.generate("a red circle on a white background", seed=1)
>>> result.save("output")
>>> diffuse_kit.chat("Write an image prompt about: a blue square", seed=1)
"""

import diffuse_kit._logging  # noqa: F401  (first: it filters a notice raised at import)
from diffuse_kit.errors import DiffuseKitError, InvalidRequestError, ModelNotFoundError
from diffuse_kit.generation import Result, generate, run
from diffuse_kit.models import LoadedModel, load
from diffuse_kit.progress import ProgressEvent
from diffuse_kit.requests import ImageRequest, TextRequest
from diffuse_kit.samplers import SAMPLERS
from diffuse_kit.text import ChatResult, ChatStream, chat, load_text, suggest_prompt

__all__ = [
    "SAMPLERS",
    "ChatResult",
    "ChatStream",
    "DiffuseKitError",
    "ImageRequest",
    "InvalidRequestError",
    "LoadedModel",
    "ModelNotFoundError",
    "ProgressEvent",
    "Result",
    "TextRequest",
    "chat",
    "generate",
    "load",
    "load_text",
    "run",
    "suggest_prompt",
]
