"""Parameter sweeps: an X/Y grid of generations, like A1111's "X/Y plot" script.

    grid = sweep("a red circle on a white background",
                 x=("guidance_scale", [3, 7, 12]), y=("steps", [10, 20]), seed=1)
    grid.save("output")   # one labelled grid PNG with the parameters of the sweep

An axis is a request field (`steps`, `guidance_scale`, `seed`, `sampler`, `width`, ...) or
`"prompt_sr"`: A1111's Prompt S/R, whose first value is searched in the prompt and replaced by
each value in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from diffuse_kit.errors import InvalidRequestError
from diffuse_kit.generation import Result, generate, save_png
from diffuse_kit.infotext import format_infotext, parse
from diffuse_kit.requests import ImageRequest

PROMPT_SR = "prompt_sr"
AXES = (PROMPT_SR, "steps", "guidance_scale", "seed", "sampler", "width", "height", "negative_prompt", "strength")
Axis = tuple[str, Sequence[Any]]


@dataclass
class SweepResult:
    grid: Image.Image
    results: list[list[Result]]  # [row (y)][column (x)]
    x: Axis
    y: Axis | None
    infotext: str

    def save(self, directory: str | Path) -> Path:
        """Write the grid as a numbered PNG carrying the sweep's parameters."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        return save_png(self.grid, self.infotext, folder, "grid")


def _apply(axis: str, value: Any, fields: dict[str, Any], search: str) -> dict[str, Any]:
    if axis == PROMPT_SR:
        if search not in fields["prompt"]:
            raise InvalidRequestError(f"prompt_sr: {search!r} is not in the prompt", PROMPT_SR)
        return fields | {"prompt": fields["prompt"].replace(search, str(value))}
    return fields | {axis: value}


def _check_axis(axis: Axis) -> None:
    name, values = axis
    if name not in AXES:
        raise InvalidRequestError(f"axis: unknown sweep axis {name!r}; known: {', '.join(AXES)}", "axis")
    if not values:
        raise InvalidRequestError(f"{name}: a sweep axis needs at least one value", name)


def sweep(
    prompt: str,
    *,
    x: Axis,
    y: Axis | None = None,
    on_cell: Callable[[int, int, Result], None] | None = None,
    **fields: Any,
) -> SweepResult:
    """Generate every (x, y) combination with the other `fields` fixed; label a grid of them.

    A `seed` given in `fields` is kept for every cell (so only the swept parameter changes);
    without one, one random seed is drawn for the first cell and reused.
    """
    for axis in (x, y) if y else (x,):
        _check_axis(axis)
    base = {"prompt": prompt, **fields}
    ImageRequest.create(**{k: v for k, v in base.items() if k not in ("cancel", "on_progress")})
    rows: list[list[Result]] = []
    for row, y_value in enumerate(y[1] if y else [None]):
        cells = []
        for column, x_value in enumerate(x[1]):
            cell_fields = _apply(x[0], x_value, base, str(x[1][0]))
            if y:
                cell_fields = _apply(y[0], y_value, cell_fields, str(y[1][0]))
            result = generate(**cell_fields)
            base.setdefault("seed", result.seeds[0] if result.seeds else None)
            if on_cell is not None:
                on_cell(row, column, result)
            cells.append(result)
        rows.append(cells)
    return SweepResult(_grid(rows, x, y), rows, x, y, _grid_infotext(rows[0][0], x, y))


def _grid_infotext(first: Result, x: Axis, y: Axis | None) -> str:
    """The first cell's parameters plus the axes, under A1111's X/Y plot key names."""
    parsed = parse(first.infotext[0]) if first.infotext else {"Prompt": first.request.prompt, "Negative prompt": ""}
    parameters = {k: v for k, v in parsed.items() if k not in ("Prompt", "Negative prompt", "Size-1", "Size-2")}
    for name, axis in (("X", x), ("Y", y)):
        if axis:
            parameters |= {f"{name} Type": axis[0], f"{name} Values": ", ".join(str(v) for v in axis[1])}
    return format_infotext(parsed["Prompt"], parsed["Negative prompt"], parameters)


_NUMBERS: dict[str, type] = {"steps": int, "seed": int, "width": int, "height": int, "guidance_scale": float,
                              "strength": float}  # fmt: skip


def parse_values(axis: str, text: str) -> list[Any]:
    """Comma-separated values for an axis, as typed in a UI: "3, 7, 12" -> [3.0, 7.0, 12.0]."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    convert = _NUMBERS.get(axis, str)
    try:
        return [convert(value) for value in values]
    except ValueError:
        raise InvalidRequestError(f"{axis}: values must be {convert.__name__}s, got {text!r}", axis) from None


def _label(axis: str, value: Any) -> str:
    return str(value) if axis == PROMPT_SR else f"{axis}: {value}"


def _grid(rows: list[list[Result]], x: Axis, y: Axis | None) -> Image.Image:
    """The first image of each cell, with the X values above the columns and Y values left."""
    cell_w, cell_h = next((r.images[0].size for row in rows for r in row if r.images), (64, 64))
    font = ImageFont.load_default(size=max(10, min(cell_h // 5, 18)))
    pad = 6
    left = max(int(font.getlength(_label(y[0], v))) for v in y[1]) + 2 * pad if y else 0
    top = int(font.size) + 2 * pad
    grid = Image.new("RGB", (left + cell_w * len(x[1]), top + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for column, value in enumerate(x[1]):
        draw.text((left + column * cell_w + cell_w / 2, top / 2), _label(x[0], value), "black", font, anchor="mm")
    for row_index, row in enumerate(rows):
        if left:
            y_mid = top + row_index * cell_h + cell_h / 2
            draw.text((left - pad, y_mid), _label(y[0], y[1][row_index]), "black", font, anchor="rm")
        for column, result in enumerate(row):
            if result.images:
                image = result.images[0].resize((cell_w, cell_h))
                grid.paste(image, (left + column * cell_w, top + row_index * cell_h))
    return grid
