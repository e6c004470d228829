"""Memory-lean loading and the low-memory mode.

Lean loading: a model component is built with empty (meta) weights and its safetensors are
streamed in a chunk at a time, each tensor converted to the target dtype as it arrives, so
loading an fp32 folder as bf16 never holds the fp32 copy (plain `from_pretrained` reads the
whole fp32 state dict first: 5.5 GB peak for SD 1.5 in bf16, above the 4.7 GB of fp32).

Low-memory mode (for 8 GB machines, and automatic when RAM is short): weights stored in bf16;
the text encoders are not kept loaded but loaded, used and freed for each prompt before the
UNet runs; the VAE decodes in tiles; on CPUs without native bf16 each layer computes in fp32
from its bf16 storage (diffusers' layerwise casting).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import importlib
import json
from pathlib import Path
from typing import Any

import psutil
import torch
from accelerate import init_empty_weights
from accelerate.utils import set_module_tensor_to_device
from diffusers.hooks import apply_layerwise_casting
from safetensors import safe_open

CHUNK_BYTES = 64 * 1024**2  # weights mapped at once while streaming: bounds the page cache held
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
# Low-memory mode turns itself on when the model's bf16 weights would take more than this
# share of the RAM available now (activations, the OS and the notebook need the rest).
AUTO_LOW_MEMORY_SHARE = 0.5


def weight_files(folder: Path) -> list[Path]:
    """The component's safetensors (all shards; no variants such as `*.fp16.safetensors`)."""
    return sorted(p for p in folder.glob("*.safetensors") if len(p.name.split(".")) == 2)


def load_component(
    folder: Path, class_path: tuple[str, str], dtype: torch.dtype, channels_last: bool = False
) -> Any | None:
    """The model in `folder` (a diffusers or transformers component) in `dtype`, streamed
    tensor by tensor; None when it cannot be streamed (no safetensors, or not a model class).
    `channels_last` lays convolution weights out NHWC as they arrive (converting a loaded
    model instead would hold two copies of each weight, and glibc keeps the freed ones)."""
    library, class_name = class_path
    cls = getattr(importlib.import_module(library), class_name, None)
    files = weight_files(folder)
    if cls is None or not files or not hasattr(cls, "from_config" if library == "diffusers" else "config_class"):
        return None
    with init_empty_weights():
        if library == "diffusers":
            model = cls.from_config(cls.load_config(folder))
        else:
            model = cls(cls.config_class.from_pretrained(folder))
    expected = set(model.state_dict())
    loaded = set()
    for file in files:
        loaded |= _stream(model, file, dtype, channels_last)
    if expected - loaded:
        return None  # tied or renamed weights: leave those models to from_pretrained
    model.to(dtype)  # buffers (not in the checkpoint) follow the weights' dtype
    return model.eval()


def _stream(model: torch.nn.Module, file: Path, dtype: torch.dtype, channels_last: bool) -> set[str]:
    with safe_open(file, framework="pt") as handle:
        keys = list(handle.keys())
        sizes = {key: _nbytes(handle, key) for key in keys}
    chunk: list[str] = []
    for key in keys:
        chunk.append(key)
        if sum(sizes[k] for k in chunk) >= CHUNK_BYTES or key == keys[-1]:
            # A fresh mapping per chunk: pages read through a closed mapping leave the RSS.
            with safe_open(file, framework="pt") as handle:
                for name in chunk:
                    value = handle.get_tensor(name).to(dtype)
                    if channels_last and value.dim() == 4:
                        value = value.contiguous(memory_format=torch.channels_last)
                    set_module_tensor_to_device(model, name, "cpu", value=value, dtype=dtype)
            chunk = []
    return set(keys)


def _numel(handle: Any, key: str) -> int:
    count = 1
    for dim in handle.get_slice(key).get_shape():
        count *= dim
    return count


def _nbytes(handle: Any, key: str) -> int:
    itemsize = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}.get(handle.get_slice(key).get_dtype(), 4)
    return _numel(handle, key) * itemsize


def load_models(
    folder: Path,
    dtype: torch.dtype,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """The streamable model components of a pipeline folder, by name (others: from_pretrained)."""
    index = json.loads((folder / "model_index.json").read_text())
    components = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or name in skip or spec[0] is None:
            continue
        if (only is not None and name not in only) or not (folder / name).is_dir():
            continue
        if (component := load_component(folder / name, tuple(spec), dtype, channels_last)) is not None:
            components[name] = component
    return components


def encode_prompt(pipe: Any, folder: Path, dtype: torch.dtype, prompt: str, negative_prompt: str,
                  guidance: bool, compute_fp32: bool) -> dict[str, torch.Tensor]:  # fmt: skip
    """Low-memory mode's prompt encoding: load the text encoders, encode, free them again.

    Returns the pipeline call's embedding arguments (prompt_embeds, ... and for SDXL the
    pooled ones), for one image: the pipeline repeats them for a batch."""
    encoders = load_models(folder, dtype, only=TEXT_ENCODERS)
    try:
        if compute_fp32:
            for encoder in encoders.values():
                cast_layerwise(encoder)
        with_encoders = copy.copy(pipe)
        for name, encoder in encoders.items():
            object.__setattr__(with_encoders, name, encoder)  # not setattr: that would edit the shared config
        with torch.inference_mode():
            embeds = with_encoders.encode_prompt(
                prompt=prompt, device=torch.device("cpu"), num_images_per_prompt=1,
                do_classifier_free_guidance=guidance, negative_prompt=negative_prompt or None,
            )  # fmt: skip
    finally:
        del encoders
        free()
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    return {name: tensor for name, tensor in zip(names, embeds, strict=False) if tensor is not None}


def wants_low_memory(folder: Path) -> bool:
    """True when the model's weights in bf16 would take over AUTO_LOW_MEMORY_SHARE of free RAM
    (counted from the safetensors headers; nothing is loaded)."""
    weights = 0
    for component in folder.iterdir():
        for file in weight_files(component) if component.is_dir() else []:
            with safe_open(file, framework="pt") as handle:
                weights += sum(_numel(handle, key) for key in handle.keys())  # noqa: SIM118 (safe_open is no dict)
    has_text_encoder = (folder / "text_encoder").is_dir()
    return has_text_encoder and 2 * weights > AUTO_LOW_MEMORY_SHARE * psutil.virtual_memory().available


def cast_layerwise(model: torch.nn.Module) -> None:
    """bf16 storage, fp32 compute, layer by layer (diffusers' layerwise casting), for CPUs that
    only emulate bf16. The layers it skips (norms, small projections) are made fp32 outright."""
    apply_layerwise_casting(model, storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    for module in model.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None or registry.get_hook("layerwise_casting") is None:
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                if tensor.is_floating_point():  # not position ids and other integer buffers
                    tensor.data = tensor.data.float()


def tile_vae(vae: Any, tile: int = 256) -> None:
    """Decode in `tile`-pixel tiles: the decoder's activations at 512x512 and up are its peak."""
    vae.enable_tiling()
    vae.tile_sample_min_size = tile
    vae.tile_latent_min_size = tile // 2 ** (len(vae.config.block_out_channels) - 1)


def free() -> None:
    """Collect garbage and hand freed memory back to the OS now: glibc keeps large freed
    blocks for reuse, so the next load (the text encoders of the next prompt) would stack
    on top of the last one's in the RSS."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
