import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import diffuse_kit
from diffuse_kit import infotext
from diffuse_kit.models import ModelCache


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_sd):
    first = diffuse_kit.generate("a red cat", model=tiny_sd, seed=5, steps=4)
    again = diffuse_kit.generate("a red cat", model=tiny_sd, seed=5, steps=4)
    other = diffuse_kit.generate("a red cat", model=tiny_sd, seed=6, steps=4)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    assert not np.array_equal(pixels(first.images[0]), pixels(other.images[0]))


def test_batch_uses_one_generator_per_image(tiny_sd):
    batch = diffuse_kit.generate("a cat", model=tiny_sd, seed=10, steps=3, batch_size=3, guidance_scale=1.0)
    assert batch.seeds == [10, 11, 12]
    single = diffuse_kit.generate("a cat", model=tiny_sd, seed=11, steps=3, guidance_scale=1.0)
    # Image 1 of the batch is the image of seed 11 alone (up to batched-math rounding).
    assert np.abs(pixels(batch.images[1]) - pixels(single.images[0])).max() <= 3
    assert [infotext.parse(t)["Seed"] for t in batch.infotext] == [10, 11, 12]


def test_random_seed_is_reported_and_reproduces(tiny_sd):
    result = diffuse_kit.generate("a dog", model=tiny_sd, steps=2)
    (seed,) = result.seeds
    again = diffuse_kit.generate("a dog", model=tiny_sd, steps=2, seed=seed)
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))


def test_one_progress_event_per_step_with_previews(tiny_sd):
    events = []
    result = diffuse_kit.generate("a cat", model=tiny_sd, steps=7, seed=1, on_progress=events.append, preview_every=3)
    assert [e.step for e in events] == list(range(1, 8))
    assert {e.total for e in events} == {7}
    assert [e.step for e in events if e.preview is not None] == [3, 6, 7]
    assert all(e.elapsed >= 0 and e.eta >= 0 for e in events) and events[-1].eta == 0
    assert events[2].preview.size == result.images[0].size
    assert result.timings["step_s"] > 0


def test_heun_reports_its_real_number_of_calls(tiny_sd):
    events = []
    diffuse_kit.generate("a cat", model=tiny_sd, steps=4, seed=1, sampler="Heun", on_progress=events.append)
    assert [e.step for e in events] == list(range(1, events[0].total + 1))


def test_cancel_stops_within_a_step_and_saves_nothing(tiny_sd, tmp_path):
    cancel = threading.Event()
    seen = []

    def on_progress(event):
        seen.append(event.step)
        if event.step == 3:
            cancel.set()

    result = diffuse_kit.generate("a cat", model=tiny_sd, steps=50, seed=1, on_progress=on_progress, cancel=cancel)
    assert result.cancelled
    assert seen == [1, 2, 3]
    assert result.images == [] and result.save(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_save_writes_pngs_with_parameters(tiny_sd, tmp_path):
    result = diffuse_kit.generate("a cat", model=tiny_sd, steps=3, seed=42, batch_size=2, negative_prompt="dog")
    paths = result.save(tmp_path) + result.save(tmp_path)
    assert [p.name for p in paths] == ["00001-42.png", "00002-43.png", "00003-42.png", "00004-43.png"]
    parsed = infotext.parse(infotext.read_png(Image.open(paths[1])))
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Seed"], parsed["Steps"]) == ("a cat", "dog", 43, 3)
    assert parsed["Model"] == "tiny-sd"  # a path's last part, never the whole path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_img2img_shares_the_loaded_weights(tiny_sd):
    loaded = diffuse_kit.load(tiny_sd)
    img2img = loaded.img2img()
    assert img2img.unet is loaded.pipeline.unet and img2img.vae is loaded.pipeline.vae
    assert img2img.unet.dtype == loaded.dtype
    init = Image.new("RGB", (80, 72), (200, 30, 30))
    result = diffuse_kit.generate("a cat", model=tiny_sd, init_image=init, strength=0.5, steps=4, seed=1)
    assert result.images[0].size == (80, 72)
    assert infotext.parse(result.infotext[0])["Denoising strength"] == 0.5
    assert diffuse_kit.load(tiny_sd) is loaded  # no reload on the switch


def test_sdxl_architecture_loads_by_path(tiny_sdxl):
    result = diffuse_kit.generate("a cat", model=tiny_sdxl, steps=2, seed=1, width=64, height=96)
    assert type(diffuse_kit.load(tiny_sdxl).pipeline).__name__ == "StableDiffusionXLPipeline"
    assert result.images[0].size == (64, 96)


def test_requested_sampler_leaves_the_loaded_scheduler_alone(tiny_sd):
    loaded = diffuse_kit.load(tiny_sd)
    before = loaded.pipeline.scheduler
    result = diffuse_kit.generate("a cat", model=tiny_sd, steps=2, seed=1, sampler="DDIM")
    assert loaded.pipeline.scheduler is before
    assert infotext.parse(result.infotext[0])["Sampler"] == "DDIM"


def test_cache_returns_the_same_model_and_frees_past_its_limit(tiny_sd, tiny_sdxl):
    cache = ModelCache(limit=1)
    first = cache.get(tiny_sd, device="cpu")
    assert cache.get(tiny_sd, device="cpu") is first
    cache.get(tiny_sdxl, device="cpu")
    assert [m.id for m in cache.loaded()] == [tiny_sdxl]


def test_dtype_is_overridable_and_reported(tiny_sd):
    result = diffuse_kit.run(diffuse_kit.ImageRequest.create(prompt="a cat", model=tiny_sd, steps=1, seed=1))
    assert result.dtype in ("bfloat16", "float32")
    fp32 = ModelCache(limit=1).get(tiny_sd, device="cpu", dtype="fp32")
    assert fp32.pipeline.unet.dtype.is_floating_point and str(fp32.dtype) == "torch.float32"


def test_offline_hub_id_names_the_model_and_the_fix():
    with pytest.raises(diffuse_kit.ModelNotFoundError) as caught:
        diffuse_kit.load("someone/not-cached-model")
    message = str(caught.value)
    assert "someone/not-cached-model" in message and "hf download" in message


def test_single_file_without_config_offline_says_what_it_needs(tmp_path):
    with pytest.raises(diffuse_kit.ModelNotFoundError, match="no such file"):
        diffuse_kit.load(str(tmp_path / "missing.safetensors"))
    checkpoint = tmp_path / "sd15-like.safetensors"  # an SD 1.x key, so it is read as one
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, checkpoint)
    with pytest.raises(diffuse_kit.ModelNotFoundError, match="config=") as caught:
        diffuse_kit.load(str(checkpoint))
    assert "sd15-like.safetensors" in str(caught.value)


def test_folder_without_model_index_is_refused(tmp_path):
    with pytest.raises(diffuse_kit.ModelNotFoundError, match=r"model_index\.json"):
        diffuse_kit.load(str(tmp_path))


def test_generate_uses_the_model_as_load_loaded_it(tiny_sd):
    diffuse_kit.models.CACHE.clear()
    diffuse_kit.load(tiny_sd, dtype="fp32")
    result = diffuse_kit.generate("a cat", model=tiny_sd, steps=2, seed=1)
    assert result.dtype == "float32" and len(diffuse_kit.models.CACHE.loaded()) == 1
