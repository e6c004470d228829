"""The demo world: "a {colour} {shape} on a {colour} background".

One module holds the palette, the prompt grammar, the drawing used to train the demo
model and the measuring used to check that it follows prompts, so that the training
script, the tests and the text demo agree on what a valid picture and prompt are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "orange": (245, 140, 20),
    "purple": (140, 40, 180),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SIZE_RANGE = {"small": (14, 24), "large": (30, 44)}  # side / diameter in px at 64x64
NATIVE_SIZE = 64

WORDS = ("a", "on", "background", *PALETTE, *SHAPES, *SIZES)

_PROMPT = re.compile(
    r"^a (?:(?P<size>small|large) )?(?P<colour>\w+) (?P<shape>\w+) on a (?P<background>\w+) background$"
)


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    background: str
    size: str | None = None  # None: the prompt leaves the size open

    @property
    def prompt(self) -> str:
        size = f"{self.size} " if self.size else ""
        return f"a {size}{self.colour} {self.shape} on a {self.background} background"


def parse_prompt(prompt: str) -> Scene | None:
    """The scene a prompt describes, or None when it is not a valid demo-world prompt."""
    match = _PROMPT.match(" ".join(prompt.lower().split()).rstrip("."))
    if not match:
        return None
    scene = Scene(match["colour"], match["shape"], match["background"], match["size"])
    valid = (
        scene.colour in PALETTE
        and scene.background in PALETTE
        and scene.colour != scene.background
        and scene.shape in SHAPES
    )
    return scene if valid else None


def random_scene(rng: np.random.Generator) -> Scene:
    colour, background = rng.choice(list(PALETTE), size=2, replace=False)
    return Scene(str(colour), str(rng.choice(SHAPES)), str(background), str(rng.choice(SIZES)))


def draw(scene: Scene, rng: np.random.Generator, size: int = NATIVE_SIZE) -> Image.Image:
    """Draw the scene at a random position, with its size word (or a random one)."""
    lo, hi = SIZE_RANGE[scene.size or str(rng.choice(SIZES))]
    side = int(rng.integers(lo, hi + 1)) * size // NATIVE_SIZE
    margin = 2 * size // NATIVE_SIZE
    x0 = int(rng.integers(margin, size - side - margin + 1))
    y0 = int(rng.integers(margin, size - side - margin + 1))
    box = (x0, y0, x0 + side - 1, y0 + side - 1)
    image = Image.new("RGB", (size, size), PALETTE[scene.background])
    canvas = ImageDraw.Draw(image)
    fill = PALETTE[scene.colour]
    if scene.shape == "circle":
        canvas.ellipse(box, fill=fill)
    elif scene.shape == "square":
        canvas.rectangle(box, fill=fill)
    else:
        canvas.polygon([(x0 + side / 2, y0), (x0 + side - 1, y0 + side - 1), (x0, y0 + side - 1)], fill=fill)
    return image


@dataclass(frozen=True)
class Measured:
    """What an image shows, read back by classifying its pixels against the palette."""

    background: str
    colour: str | None  # the dominant non-background colour; None when there is none
    shape: str | None
    fill_ratio: float


def classify_pixels(image: Image.Image) -> np.ndarray:
    """Index into PALETTE of the nearest palette colour, per pixel."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    palette = np.array(list(PALETTE.values()), dtype=np.float32)
    distances = ((pixels[:, :, None, :] - palette) ** 2).sum(-1)
    return distances.argmin(-1)


def measure(image: Image.Image) -> Measured:
    names = list(PALETTE)
    labels = classify_pixels(image)
    counts = np.bincount(labels.ravel(), minlength=len(names))
    background = int(counts.argmax())
    counts[background] = 0
    if counts.max() < labels.size * 0.01:
        return Measured(names[background], None, None, 0.0)
    colour = int(counts.argmax())
    mask = labels == colour
    ys, xs = np.nonzero(mask)
    # Quantiles rather than min/max, so that a few stray pixels do not stretch the box.
    (y0, y1), (x0, x1) = np.quantile(ys, [0.005, 0.995]).round(), np.quantile(xs, [0.005, 0.995]).round()
    box = (int(x0), int(y0), int(x1), int(y1))
    fill = min(1.0, len(ys) / ((box[2] - box[0] + 1) * (box[3] - box[1] + 1)))
    # The shape whose ideal outline in that box overlaps the pixels best (IoU): unlike a fill
    # ratio threshold it tolerates the soft corners and edges of generated pictures.
    overlaps = {shape: _iou(mask, _template(shape, box, mask.shape)) for shape in SHAPES}
    return Measured(names[background], names[colour], max(overlaps, key=overlaps.get), float(fill))


def _template(shape: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    image = Image.new("1", (size[1], size[0]))
    canvas = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    if shape == "circle":
        canvas.ellipse(box, fill=1)
    elif shape == "square":
        canvas.rectangle(box, fill=1)
    else:
        canvas.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=1)
    return np.asarray(image, dtype=bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
