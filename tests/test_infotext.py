from PIL import Image

from diffuse_kit import infotext

A1111_EXAMPLE = """girl with an artist's beret, determined, blue eyes
Negative prompt: ugly, fat, obese
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"""


def test_parses_a1111_example():
    parsed = infotext.parse(A1111_EXAMPLE)
    assert parsed["Prompt"] == "girl with an artist's beret, determined, blue eyes"
    assert parsed["Negative prompt"] == "ugly, fat, obese"
    assert parsed["Steps"] == 20
    assert parsed["Sampler"] == "Euler a"
    assert parsed["CFG scale"] == 7
    assert parsed["Seed"] == 965400086
    assert (parsed["Size-1"], parsed["Size-2"]) == (512, 512)
    assert parsed["Model hash"] == "45dee52b"


def test_round_trip_with_awkward_values():
    parameters = {"Steps": 9, "Sampler": "DPM++ 2M", "CFG scale": 7.5, "Seed": 7, "Size": "64x96", "Model": "a, b: c"}
    text = infotext.format_infotext("a cat,\nsecond line", "blurry, dark", parameters)
    parsed = infotext.parse(text)
    assert parsed["Prompt"] == "a cat,\nsecond line"
    assert parsed["Negative prompt"] == "blurry, dark"
    assert {k: parsed[k] for k in parameters} == parameters


def test_format_matches_a1111_layout():
    text = infotext.format_infotext(
        "a red circle on a white background",
        "blurry",
        {"Steps": 20, "Sampler": "DPM++ 2M", "CFG scale": 7.0, "Seed": 1, "Size": "64x64", "Model": "demo"},
    )
    assert text == (
        "a red circle on a white background\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 64x64, Model: demo"
    )


def test_no_negative_line_when_empty():
    text = infotext.format_infotext("a cat", "", {"Steps": 1, "Seed": 2, "Size": "64x64"})
    assert "Negative prompt" not in text
    assert infotext.parse(text)["Negative prompt"] == ""


def test_png_chunk_round_trip(tmp_path):
    text = infotext.format_infotext("a cat", "", {"Steps": 3, "Seed": 4, "Size": "8x8"})
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png", pnginfo=infotext.png_info(text))
    assert infotext.read_png(Image.open(tmp_path / "x.png")) == text
