"""Speed and memory, side by side: the original tutorial's plain-diffusers fp32 code ("plain")
against diffuse_kit's defaults ("kit"), on SD 1.5- and SDXL-architecture pipelines built from
their real configs with random weights (speed does not depend on the values; nothing to
download). Each measurement runs in a fresh process, alternating A B A B, because these
machines are noisy and peak RSS is per process.

    python -m diffuse_kit bench [--arch sd15|sdxl|tiny] [--size 256] [--rounds 2] [--quick]

s/step comes from the difference of two step counts in one process (load, prompt encoding
and VAE decode cancel out); load time and peak RSS (VmHWM) are per process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PROMPT = "a red circle on a white background"
DEFAULT_WORK = Path("build/bench")


@dataclass(frozen=True)
class Arch:
    """A pipeline architecture to measure, and how the tutorial ran it."""

    size: int  # image side for the full benchmark
    quick_size: int
    guidance: float  # 0: no CFG (SDXL-Turbo style, one UNet call per step)
    steps: tuple[int, int]  # the two step counts whose difference gives s/step
    variants: tuple[str, ...]  # what is compared: "plain", "kit" (defaults), "kit-low" (low-memory mode)
    build: Callable[[Path], None]


# -- building the pipelines from their real configs ---------------------------------------


def _clip_l():
    from transformers import CLIPTextConfig, CLIPTextModel

    # openai/clip-vit-large-patch14's text tower: SD 1.5's encoder and SDXL's first one.
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    ))  # fmt: skip


def _vae(sample_size: int, scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        sample_size=sample_size, scaling_factor=scaling_factor,
    )  # fmt: skip


def _tokenizer(folder: Path):
    from diffuse_kit.demo.tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(PROMPT.split(), folder)  # a tiny vocabulary: ids stay within the encoders'


def _save(folder: Path, pipeline_class: Any, components: dict[str, Callable[[], Any]]) -> None:
    """Build one component at a time, save it, free it: SDXL's fp32 weights never all sit in RAM."""
    import diffusers

    index: dict[str, Any] = {"_class_name": pipeline_class.__name__, "_diffusers_version": diffusers.__version__}
    for name, make in components.items():
        torch.manual_seed(0)
        component = make()
        component.save_pretrained(folder / name)
        library = "diffusers" if type(component).__module__.startswith("diffusers") else "transformers"
        index[name] = [library, type(component).__name__]
        del component
    for name in ("safety_checker", "feature_extractor", "image_encoder"):
        if name in pipeline_class._optional_components:
            index[name] = [None, None]
    index |= {"requires_safety_checker": False} if "safety_checker" in index else {}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def build_sd15(folder: Path) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    _save(folder, StableDiffusionPipeline, {
        "unet": lambda: UNet2DConditionModel(
            sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768, attention_head_dim=8,
        ),
        "text_encoder": _clip_l,
        "vae": lambda: _vae(512, 0.18215),
        "tokenizer": lambda: _tokenizer(folder / "tokenizer"),
        # runwayml/stable-diffusion-v1-5's scheduler, which the tutorial's code used.
        "scheduler": lambda: PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
        ),
    })  # fmt: skip


def build_sdxl(folder: Path) -> None:
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    _save(folder, StableDiffusionXLPipeline, {
        "unet": lambda: UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        ),
        "text_encoder": _clip_l,
        # laion/CLIP-ViT-bigG-14's text tower.
        "text_encoder_2": lambda: CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
            num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
        )),
        "vae": lambda: _vae(1024, 0.13025),
        "tokenizer": lambda: _tokenizer(folder / "tokenizer"),
        "tokenizer_2": lambda: _tokenizer(folder / "tokenizer_2"),
        # stabilityai/sdxl-turbo's scheduler.
        "scheduler": lambda: EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            steps_offset=1, timestep_spacing="trailing",
        ),
    })  # fmt: skip


def build_tiny(folder: Path) -> None:
    from diffuse_kit.testing import tiny_pipeline_folder

    tiny_pipeline_folder(folder, kind="sd")


ARCHS = {
    "sd15": Arch(256, 128, 7.5, (2, 6), ("plain", "kit"), build_sd15),
    # SDXL-Turbo's way: no CFG, few steps. The target is the low-memory mode's peak RSS (8 GB, a
    # Raspberry Pi 5), where the tutorial's fp32 code needed swap.
    "sdxl": Arch(512, 256, 0.0, (1, 3), ("kit-low",), build_sdxl),
    "tiny": Arch(64, 64, 7.5, (2, 6), ("plain", "kit"), build_tiny),
}


def ensure_folder(arch: str, work: Path) -> Path:
    folder = work / arch
    if not (folder / "model_index.json").is_file():
        print(f"building the {arch} pipeline with random weights in {folder} (once)...", file=sys.stderr)
        ARCHS[arch].build(folder)
    return folder


# -- one measurement (a fresh process) ----------------------------------------------------


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # not Linux: close enough


def _plain(folder: Path, size: int, guidance: float) -> tuple[float, Callable[[int], None]]:
    """The tutorial's code: diffusers' defaults, fp32, on the CPU."""
    from diffusers import AutoPipelineForText2Image

    started = time.perf_counter()
    pipe = AutoPipelineForText2Image.from_pretrained(folder)
    pipe.to("cpu")
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started

    def run(steps: int) -> None:
        generator = torch.Generator("cpu").manual_seed(1)
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size, generator=generator)

    return load_s, run


def _kit(folder: Path, size: int, guidance: float, **load_options: Any) -> tuple[float, Callable[[int], None]]:
    import diffuse_kit

    started = time.perf_counter()
    diffuse_kit.load(str(folder), **load_options)
    load_s = time.perf_counter() - started

    def run(steps: int) -> None:
        diffuse_kit.generate(PROMPT, model=str(folder), steps=steps, guidance_scale=guidance, width=size,
                             height=size, seed=1)  # fmt: skip

    return load_s, run


def measure(variant: str, arch: str, folder: Path, size: int) -> dict[str, Any]:
    """Load, then time the two step counts; this process's figures as a dict."""
    spec = ARCHS[arch]
    if variant == "plain":
        load_s, run = _plain(folder, size, spec.guidance)
    else:
        load_s, run = _kit(folder, size, spec.guidance, low_memory=variant == "kit-low")
    times = []
    for steps in spec.steps:
        started = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - started)
    step_s = (times[1] - times[0]) / (spec.steps[1] - spec.steps[0])
    return {"variant": variant, "arch": arch, "size": size, "load_s": load_s, "step_s": step_s,
            "peak_rss_gb": peak_rss_gb(), "threads": torch.get_num_threads()}  # fmt: skip


def _spawn(variant: str, arch: str, folder: Path, size: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "diffuse_kit", "bench", "--worker", variant, "--arch", arch,
               "--folder", str(folder), "--size", str(size)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {arch} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the comparison -----------------------------------------------------------------------


def compare(arch: str, *, size: int, rounds: int, work: Path = DEFAULT_WORK) -> dict[str, dict[str, float]]:
    """Alternate the variants in fresh processes; print each run, the medians and the ratios."""
    folder = ensure_folder(arch, work)
    spec = ARCHS[arch]
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in spec.variants}
    for round_ in range(rounds):
        for variant in spec.variants:
            figures = _spawn(variant, arch, folder, size)
            runs[variant].append(figures)
            print(f"  round {round_ + 1} {variant:7s}: {figures['step_s']:.2f} s/step, load {figures['load_s']:.1f} s, "
                  f"peak RSS {figures['peak_rss_gb']:.2f} GB", flush=True)  # fmt: skip
    medians = {
        variant: {key: statistics.median(r[key] for r in results) for key in ("step_s", "load_s", "peak_rss_gb")}
        for variant, results in runs.items()
    }
    cfg = f"CFG {spec.guidance:g}" if spec.guidance > 1 else "no CFG"
    print(f"{arch} architecture, {size}x{size}, {cfg}, steps {spec.steps[0]} vs {spec.steps[1]}, "
          f"{rounds} rounds, medians:")  # fmt: skip
    for variant, figures in medians.items():
        print(f"  {variant:7s} {figures['step_s']:.2f} s/step  load {figures['load_s']:.1f} s  "
              f"peak RSS {figures['peak_rss_gb']:.2f} GB")  # fmt: skip
    if "plain" in medians:
        plain, kit = medians["plain"], medians["kit"]
        print(f"  speed-up per step {plain['step_s'] / kit['step_s']:.2f}x, "
              f"peak RSS {kit['peak_rss_gb'] / plain['peak_rss_gb']:.2f}x of plain")  # fmt: skip
    return medians
