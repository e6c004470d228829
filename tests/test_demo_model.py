"""The embedded demo model draws what its prompt asks for, measured on its pixels."""

from collections import Counter

import numpy as np
import pytest

import diffuse_kit
from diffuse_kit.demo import world
from diffuse_kit.samplers import SAMPLERS

COLOURS = list(world.PALETTE)
SCENES = [
    world.Scene(COLOURS[i % 8], world.SHAPES[i % 3], COLOURS[(3 * i + 1 + i // 8) % 8])
    for i in range(12)
    if COLOURS[i % 8] != COLOURS[(3 * i + 1 + i // 8) % 8]
]
SEEDS = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def measured() -> list[tuple[world.Scene, world.Measured]]:
    rows = []
    for scene in SCENES:
        result = diffuse_kit.generate(scene.prompt, seed=SEEDS[0], batch_size=len(SEEDS))
        assert result.images[0].size == (world.NATIVE_SIZE, world.NATIVE_SIZE)
        rows += [(scene, world.measure(image)) for image in result.images]
    return rows


def share(rows, right) -> float:
    return sum(right(scene, m) for scene, m in rows) / len(rows)


def test_scenes_cover_the_world():
    assert {s.colour for s in SCENES} == set(COLOURS) and {s.shape for s in SCENES} == set(world.SHAPES)
    assert len(SCENES) * len(SEEDS) >= 30


@pytest.mark.slow
def test_background_colour_follows_the_prompt(measured):
    assert share(measured, lambda s, m: m.background == s.background) >= 0.85


@pytest.mark.slow
def test_shape_colour_follows_the_prompt(measured):
    assert share(measured, lambda s, m: m.colour == s.colour) >= 0.85


@pytest.mark.slow
def test_shape_follows_the_prompt(measured):
    wrong = Counter((s.shape, m.shape) for s, m in measured if m.shape != s.shape)
    assert share(measured, lambda s, m: m.shape == s.shape) >= 0.70, wrong


@pytest.mark.slow
def test_size_word_changes_the_size(measured):
    small = diffuse_kit.generate("a small blue square on a white background", seed=1, batch_size=8)
    large = diffuse_kit.generate("a large blue square on a white background", seed=1, batch_size=8)

    def area(result):
        return np.mean([(world.classify_pixels(image) == COLOURS.index("blue")).mean() for image in result.images])

    assert area(large) > 1.5 * area(small)


# Known bug, left open: diffusers' LMS (order 4) diverges on the demo model at 20 steps, in
# bf16 and fp32 alike (black backgrounds); LMS Karras is fine. Strict, so a fix shows up.
LMS_DIVERGES = pytest.mark.xfail(strict=True, reason="LMS diverges on the demo model at 20 steps")


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [pytest.param(s, marks=LMS_DIVERGES) if s == "LMS" else s for s in SAMPLERS])
def test_every_sampler_draws_the_prompt(sampler):
    scene = world.Scene("yellow", "square", "blue")
    images = diffuse_kit.generate(scene.prompt, seed=1, batch_size=3, sampler=sampler).images
    assert [world.measure(image).background for image in images].count("blue") >= 2


def test_world_measures_its_own_drawings():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = world.random_scene(rng)
        measured = world.measure(world.draw(scene, rng))
        assert (measured.background, measured.colour, measured.shape) == (scene.background, scene.colour, scene.shape)


def test_prompt_grammar():
    assert world.parse_prompt("a small red circle on a white background") == world.Scene(
        "red", "circle", "white", "small"
    )
    assert world.parse_prompt("A Blue square on a black background.") == world.Scene("blue", "square", "black")
    assert world.parse_prompt("a red circle on a red background") is None  # invisible
    assert world.parse_prompt("a red hexagon on a white background") is None
