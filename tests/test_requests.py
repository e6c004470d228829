import math

import pytest

import diffuse_kit
from diffuse_kit import ImageRequest, InvalidRequestError
from diffuse_kit.requests import MAX_PROMPT_CHARS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", ""),
        ("prompt", "   "),
        ("prompt", "x" * (MAX_PROMPT_CHARS + 1)),
        ("steps", 0),
        ("steps", 151),
        ("steps", "many"),
        ("width", 65),
        ("width", 56),
        ("height", 2056),
        ("guidance_scale", math.nan),
        ("guidance_scale", math.inf),
        ("guidance_scale", -1),
        ("batch_size", 0),
        ("batch_size", 9),
        ("seed", -1),
        ("seed", 2**32),
        ("sampler", "Euler z"),
        ("strength", 0.5),  # without init_image
        ("model", ""),
    ],
)
def test_bad_field_is_named(field, value):
    fields = {"prompt": "a red circle on a white background", field: value}
    with pytest.raises(InvalidRequestError) as caught:
        ImageRequest.create(**fields)
    assert isinstance(caught.value, ValueError)
    assert caught.value.param == field
    assert str(caught.value).startswith(f"{field}:")


def test_unknown_field_is_refused():
    with pytest.raises(InvalidRequestError) as caught:
        ImageRequest.create(prompt="a cat", stpes=20)
    assert caught.value.param == "stpes"


def test_defaults_and_canonical_sampler():
    request = ImageRequest.create(prompt="a cat", sampler="euler A")
    assert (request.steps, request.guidance_scale, request.batch_size, request.seed) == (20, 7.0, 1, None)
    assert request.sampler == "Euler a"
    assert request.width is None  # the model's native size


def test_generate_validates_before_loading():
    with pytest.raises(InvalidRequestError, match="steps"):
        diffuse_kit.generate("a cat", model="no/such-model", steps=0)


def test_unknown_model_is_named():
    with pytest.raises(diffuse_kit.ModelNotFoundError, match="nonsense-model") as caught:
        diffuse_kit.load("nonsense-model")
    assert caught.value.param == "model"
    assert isinstance(caught.value, ValueError)
