"""Lean loading and the low-memory mode, on the tiny SD and SDXL pipelines."""

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel

import diffuse_kit
from diffuse_kit import generation, memory, models
from diffuse_kit.models import ModelCache


def run_with(loaded, **fields):
    request = diffuse_kit.ImageRequest.create(prompt="a red cat", model=loaded.id, seed=1, steps=3, **fields)
    with patch.object(generation, "load", return_value=loaded):  # this loaded model, not the cache's
        return generation.run(request)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.float32)


def test_streamed_weights_equal_from_pretrained(tiny_sd):
    folder = Path(tiny_sd)
    streamed = memory.load_models(folder, torch.bfloat16)
    reference = {
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.bfloat16),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.bfloat16),
    }
    for name, model in reference.items():
        ours = streamed[name].state_dict()
        assert ours.keys() == model.state_dict().keys()
        for key, tensor in model.state_dict().items():
            assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), (name, key)


@pytest.mark.parametrize("kind", ["tiny_sd", "tiny_sdxl"])
def test_low_memory_mode_keeps_no_text_encoder_and_gives_the_same_pixels(kind, request):
    folder = request.getfixturevalue(kind)
    normal = ModelCache(limit=1).get(folder, dtype="fp32", low_memory=False)
    lean = ModelCache(limit=1).get(folder, dtype="fp32", low_memory=True)
    assert lean.low_memory and lean.pipeline.text_encoder is None
    assert getattr(lean.pipeline, "text_encoder_2", None) is None
    assert np.array_equal(pixels(run_with(normal)), pixels(run_with(lean)))


def test_low_memory_mode_decodes_in_tiles(tiny_sd):
    lean = ModelCache(limit=1).get(tiny_sd, dtype="fp32", low_memory=True)
    assert lean.pipeline.vae.use_tiling
    with patch.object(lean.pipeline.vae, "tiled_decode", wraps=lean.pipeline.vae.tiled_decode) as tiled:
        result = run_with(lean, width=320, height=320)  # larger than a 256-pixel tile
    assert tiled.called and result.images[0].size == (320, 320)


def test_without_native_bf16_weights_stay_bf16_and_compute_in_fp32(tiny_sd):
    with patch.object(models, "cpu_has_native_bf16", return_value=False), \
         patch.object(generation, "cpu_has_native_bf16", return_value=False):  # fmt: skip
        lean = ModelCache(limit=1).get(tiny_sd, low_memory=True)
        assert lean.dtype == torch.bfloat16
        stored = {torch.bfloat16: 0, torch.float32: 0}
        for parameter in lean.pipeline.unet.parameters():
            stored[parameter.dtype] += parameter.numel()
        assert stored[torch.bfloat16] > 0.9 * sum(stored.values())  # norms and the like stay fp32
        result = run_with(lean)
    reference = run_with(ModelCache(limit=1).get(tiny_sd, dtype="fp32", low_memory=False))
    # bf16 storage rounds the weights, fp32 compute keeps the rest: the picture barely moves.
    assert np.abs(pixels(result) - pixels(reference)).mean() < 8


def test_low_memory_turns_itself_on_when_ram_is_short(tiny_sd):
    assert not memory.wants_low_memory(Path(tiny_sd))
    with patch.object(memory, "AUTO_LOW_MEMORY_SHARE", 1e-9):
        assert memory.wants_low_memory(Path(tiny_sd))
        assert ModelCache(limit=1).get(tiny_sd, device="cpu").low_memory


def test_bench_compares_plain_and_kit_in_fresh_processes(tmp_path):
    command = [sys.executable, "-m", "diffuse_kit", "bench", "--arch", "tiny", "--rounds", "1", "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "speed-up per step" in done.stdout and "peak RSS" in done.stdout, done.stdout
    figures = memory_figures(done.stdout)
    assert figures["plain"] > 0 and figures["kit"] > 0
    worker = [sys.executable, "-m", "diffuse_kit", "bench", "--worker", "kit", "--arch", "tiny",
              "--folder", str(tmp_path / "tiny"), "--size", "64"]  # fmt: skip
    one = json.loads(subprocess.run(worker, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    # (the tiny model's steps take milliseconds: their difference is noise, so only its type is checked)
    assert one["variant"] == "kit" and isinstance(one["step_s"], float) and one["peak_rss_gb"] > 0.1


def memory_figures(output: str) -> dict[str, float]:
    """The median peak RSS per variant, read from the bench's summary lines."""
    figures = {}
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] in ("plain", "kit", "kit-low") and "RSS" in parts:
            figures[parts[0]] = float(parts[parts.index("RSS") + 1])
    return figures
