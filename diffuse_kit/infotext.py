"""A1111-compatible generation parameters ("infotext"), as stored in a PNG `parameters` chunk.

a red circle on a white background
Negative prompt: blurry
Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 64x64, Model: demo
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PNG_KEY = "parameters"
_NEGATIVE = "Negative prompt:"
# One "Key: value" pair of the last line; a value is quoted JSON when it holds , : or newlines.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _quote(value: Any) -> str:
    text = _plain(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:\n"') else text


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # A1111 writes "CFG scale: 7", not 7.0
    return str(value)


def format_infotext(prompt: str, negative_prompt: str, parameters: dict[str, Any]) -> str:
    """A1111's format: the prompt, an optional negative prompt line, then `Key: value` pairs."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{_NEGATIVE} {negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in parameters.items() if value is not None))
    return "\n".join(lines)


def parse(text: str) -> dict[str, Any]:
    """Read infotext back: {"Prompt", "Negative prompt", "Steps", "Sampler", "CFG scale",
    "Seed", "Size-1", "Size-2", ...}; numbers come back as int or float, as A1111's parser does."""
    lines = text.strip().split("\n")
    parameters: dict[str, Any] = {}
    if lines and len(_PAIR.findall(lines[-1])) >= 3:
        for key, value in _PAIR.findall(lines.pop()):
            parameters[key.strip()] = _value(json.loads(value) if value.startswith('"') else value.strip())
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith(_NEGATIVE):
            in_negative, line = True, line[len(_NEGATIVE) :].strip()
        (negative if in_negative else prompt).append(line)
    result: dict[str, Any] = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    result.update(parameters)
    if isinstance(size := parameters.get("Size"), str) and (match := _SIZE.match(size)):
        result["Size-1"], result["Size-2"] = int(match[1]), int(match[2])
    return result


def _value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def png_info(text: str) -> PngInfo:
    info = PngInfo()
    info.add_text(PNG_KEY, text)
    return info


def read_png(image: Image.Image) -> str | None:
    """The infotext stored in a PNG (None when it has none)."""
    return image.info.get(PNG_KEY)
