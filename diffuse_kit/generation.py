"""Run one image request: seeds, the diffusers call with progress and cancel, the Result."""

from __future__ import annotations

import copy
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import DiffusionPipeline
from PIL import Image

from diffuse_kit import memory
from diffuse_kit.infotext import format_infotext, png_info
from diffuse_kit.models import LoadedModel, cpu_has_native_bf16, load
from diffuse_kit.progress import ProgressEvent
from diffuse_kit.requests import MAX_SEED, ImageRequest
from diffuse_kit.samplers import make_scheduler, sampler_name

DEFAULT_PREVIEW_EVERY = 5
DEFAULT_STRENGTH = 0.75  # A1111's default denoising strength


class CancelToken(Protocol):
    """Anything with `is_set()`, such as a `threading.Event`."""

    def is_set(self) -> bool: ...


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class Result:
    """The images of one request, with their seeds and A1111 infotext (one per image)."""

    images: list[Image.Image]
    seeds: list[int]
    infotext: list[str]
    request: ImageRequest
    device: str
    dtype: str
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False

    def save(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write each image as `NNNNN-SEED.png` with its `parameters` chunk; nothing when cancelled.

        Each file is written to a temporary name and linked into place, so a reader never sees
        half a PNG and an existing file is never overwritten.
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        rows = zip(self.images, self.infotext, self.seeds, strict=True)
        return [save_png(image, text, folder, str(seed)) for image, text, seed in rows]


_NUMBERED = re.compile(r"^(\d{5,})-")


def save_png(image: Image.Image, text: str, folder: Path, suffix: str) -> Path:
    """Write `folder/NNNNN-{suffix}.png` with the next free number, atomically (see Result.save)."""
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as stream:
            image.save(stream, format="PNG", pnginfo=png_info(text))
            stream.flush()
            os.fsync(stream.fileno())
        number = 1 + max((int(m[1]) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))), default=0)
        while True:
            path = folder / f"{number:05d}-{suffix}.png"
            try:
                os.link(temporary, path)  # fails rather than overwrite a file saved meanwhile
                return path
            except FileExistsError:
                number += 1
    finally:
        os.unlink(temporary)


class _Cancelled(Exception):
    """Raised inside the step callback to stop the pipeline before its VAE decode."""


class _StepReporter:
    """The `callback_on_step_end` of one generation: cancel, timing, events, previews."""

    def __init__(
        self,
        loaded: LoadedModel,
        size: tuple[int, int],
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
        preview_every: int,
    ) -> None:
        self.loaded, self.size = loaded, size
        self.on_progress, self.cancel, self.preview_every = on_progress, cancel, preview_every
        self.start = time.perf_counter()
        self.step_times: list[float] = []

    def __call__(self, pipe: DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        now = time.perf_counter()
        self.step_times.append(now)
        if self.cancel is not None and self.cancel.is_set():
            raise _Cancelled
        if self.on_progress is not None:
            done, total = index + 1, pipe.num_timesteps
            elapsed = now - self.start
            wants_preview = self.preview_every > 0 and (done % self.preview_every == 0 or done == total)
            preview = self.loaded.previewer()(tensors["latents"], self.size) if wants_preview else None
            self.on_progress(ProgressEvent(done, total, elapsed, elapsed / done * (total - done), preview))
        return tensors


def generate(
    prompt: str,
    *,
    model: str = "demo",
    negative_prompt: str = "",
    steps: int = 20,
    guidance_scale: float = 7.0,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    sampler: str | None = None,
    batch_size: int = 1,
    init_image: Image.Image | None = None,
    strength: float | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = DEFAULT_PREVIEW_EVERY,
) -> Result:
    """Generate images for a prompt (text-to-image, or image-to-image with `init_image`).

    `width`/`height` default to the model's native size (the init image's for img2img);
    `seed` None picks one at random (always reported in the Result); `sampler` None keeps
    the model's own scheduler. `on_progress` gets a ProgressEvent per step with a preview every
    `preview_every` steps; setting `cancel` (e.g. a threading.Event) stops within a step.
    """
    request = ImageRequest.create(
        prompt=prompt, model=model, negative_prompt=negative_prompt, steps=steps,
        guidance_scale=guidance_scale, width=width, height=height, seed=seed, sampler=sampler,
        batch_size=batch_size, init_image=init_image, strength=strength,
    )  # fmt: skip
    return run(request, on_progress=on_progress, cancel=cancel, preview_every=preview_every)


def run(
    request: ImageRequest,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = DEFAULT_PREVIEW_EVERY,
) -> Result:
    """Run a validated request; the recipe every face shares."""
    started = time.perf_counter()
    loaded = load(request.model)
    loaded_at = time.perf_counter()
    seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
    seeds = [seed + i for i in range(request.batch_size)]
    width, height = _output_size(request, loaded)
    pipe = _pipeline_for(request, loaded, seed)
    reporter = _StepReporter(loaded, (width, height), on_progress, cancel, preview_every)
    inputs = _call_inputs(request, width, height, seeds, strength=request.strength or DEFAULT_STRENGTH)
    if loaded.low_memory:
        inputs = _with_embeddings(inputs, loaded, pipe)
    images: list[Image.Image] = []
    cancelled = cancel is not None and cancel.is_set()
    if not cancelled:
        try:
            images = pipe(**inputs, callback_on_step_end=reporter, output_type="pil").images
        except _Cancelled:
            cancelled = True
    parameters = _parameters(request, loaded, pipe, width, height)
    if cancelled:  # nothing partial: no images, so nothing can be saved
        seeds = []
    return Result(
        images=images,
        seeds=seeds,
        infotext=[format_infotext(request.prompt, request.negative_prompt, parameters | {"Seed": s}) for s in seeds],
        request=request,
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        timings=_timings(started, loaded_at, time.perf_counter(), reporter.step_times),
        cancelled=cancelled,
    )


def _output_size(request: ImageRequest, loaded: LoadedModel) -> tuple[int, int]:
    if request.init_image is not None:
        default = (request.init_image.width // 8 * 8, request.init_image.height // 8 * 8)
    else:
        default = loaded.native_size
    return request.width or default[0], request.height or default[1]


def _pipeline_for(request: ImageRequest, loaded: LoadedModel, seed: int) -> DiffusionPipeline:
    """A shallow copy of the loaded pipeline (same weights) with this request's own scheduler."""
    pipe = copy.copy(loaded.img2img() if request.is_img2img else loaded.pipeline)
    if request.sampler is not None:
        pipe.scheduler = make_scheduler(request.sampler, pipe.scheduler, seed)
    else:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    return pipe


def _call_inputs(request: ImageRequest, width: int, height: int, seeds: list[int], strength: float) -> dict[str, Any]:
    # One CPU generator per image: the same seed gives the same noise on every device.
    inputs: dict[str, Any] = dict(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        num_images_per_prompt=request.batch_size,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
    )
    if request.init_image is not None:
        image = request.init_image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        return inputs | {"image": image, "strength": strength}
    return inputs | {"width": width, "height": height}


def _with_embeddings(inputs: dict[str, Any], loaded: LoadedModel, pipe: DiffusionPipeline) -> dict[str, Any]:
    """Low-memory mode: the prompts as embeddings, encoded by text encoders loaded just for it."""
    prompt, negative = inputs.pop("prompt"), inputs.pop("negative_prompt")
    compute_fp32 = loaded.dtype == torch.bfloat16 and not cpu_has_native_bf16()
    embeds = memory.encode_prompt(pipe, loaded.folder, loaded.dtype, prompt, negative or "",
                                  guidance=inputs["guidance_scale"] > 1, compute_fp32=compute_fp32)  # fmt: skip
    return inputs | embeds


def _parameters(
    request: ImageRequest, loaded: LoadedModel, pipe: DiffusionPipeline, width: int, height: int
) -> dict[str, Any]:
    return {
        "Steps": request.steps,
        "Sampler": request.sampler or sampler_name(pipe.scheduler),
        "CFG scale": request.guidance_scale,
        "Seed": None,  # filled per image
        "Size": f"{width}x{height}",
        "Model": loaded.name,
        "Denoising strength": (request.strength or DEFAULT_STRENGTH) if request.is_img2img else None,
        "Device": str(loaded.device),
        "Dtype": str(loaded.dtype).removeprefix("torch."),
    }


def _timings(started: float, loaded_at: float, finished: float, step_times: list[float]) -> dict[str, float]:
    timings = {"load_s": loaded_at - started, "total_s": finished - started}
    if len(step_times) > 1:
        timings["step_s"] = (step_times[-1] - step_times[0]) / (len(step_times) - 1)
    return timings
