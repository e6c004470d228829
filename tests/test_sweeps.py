import numpy as np
import pytest
from PIL import Image

from diffuse_kit import InvalidRequestError, infotext
from diffuse_kit.sweeps import parse_values, sweep


def test_grid_has_a_cell_per_combination_and_labels(tiny_sd, tmp_path):
    cells = []
    result = sweep("a red cat", model=tiny_sd, steps=2, seed=3, x=("guidance_scale", [1.0, 7.0, 12.0]),
                   y=("prompt_sr", ["red", "blue"]), on_cell=lambda r, c, _: cells.append((r, c)))  # fmt: skip
    assert cells == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    prompts = [[r.request.prompt for r in row] for row in result.results]
    assert prompts == [["a red cat"] * 3, ["a blue cat"] * 3]
    assert {r.seeds[0] for row in result.results for r in row} == {3}  # only the swept field changes
    grid = np.asarray(result.grid)
    width, height = result.grid.size
    assert width > 3 * 64 and height > 2 * 64  # cells plus room for the labels
    label_band = grid[: height - 2 * 64, width - 3 * 64 :]
    assert (label_band < 128).any()  # dark label text drawn above the columns
    path = result.save(tmp_path)
    assert path.name == "00001-grid.png"
    parsed = infotext.parse(infotext.read_png(Image.open(path)))
    assert (parsed["X Type"], parsed["X Values"]) == ("guidance_scale", "1.0, 7.0, 12.0")
    assert (parsed["Y Type"], parsed["Y Values"], parsed["Seed"]) == ("prompt_sr", "red, blue", 3)


def test_one_axis_sweep_without_seed_reuses_the_first_seed(tiny_sd):
    result = sweep("a cat", model=tiny_sd, steps=1, x=("steps", [1, 2]))
    (row,) = result.results
    assert row[0].seeds == row[1].seeds


def test_prompt_sr_must_find_its_first_value(tiny_sd):
    with pytest.raises(InvalidRequestError, match="prompt_sr"):
        sweep("a cat", model=tiny_sd, steps=1, x=("prompt_sr", ["dog", "bird"]))


def test_bad_axis_and_values_are_named():
    with pytest.raises(InvalidRequestError, match="axis"):
        sweep("a cat", x=("colour", [1]))
    with pytest.raises(InvalidRequestError, match="steps"):
        parse_values("steps", "10, many")
    assert parse_values("guidance_scale", "3, 7.5") == [3.0, 7.5]
    assert parse_values("sampler", "Euler a, DDIM") == ["Euler a", "DDIM"]
