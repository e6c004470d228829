"""The demo model, measured: seconds per 20-step image (bf16 vs fp32, side by side) and how
well it follows prompts. Not a test: timings on shared machines are noisy, so the two precisions
alternate in one process (A B A B ...) and the medians are compared.

    HF_HUB_OFFLINE=1 venv/bin/python benchmarks/bench_demo.py [--rounds 7] [--scenes 48]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest.mock import patch

import numpy as np

import diffuse_kit
from diffuse_kit import generation
from diffuse_kit.demo import world
from diffuse_kit.models import ModelCache


def seconds_per_image(loaded: diffuse_kit.LoadedModel, **options) -> float:
    request = diffuse_kit.ImageRequest.create(prompt="a red circle on a white background", seed=1, steps=20)
    with patch.object(generation, "load", return_value=loaded):  # this precision, not the cache's default
        started = time.perf_counter()
        generation.run(request, **options)
        return time.perf_counter() - started


def speed(rounds: int) -> None:
    models = {dtype: ModelCache(limit=1).get("demo", device="cpu", dtype=dtype) for dtype in ("bf16", "fp32")}
    times: dict[str, list[float]] = {name: [] for name in ("bf16", "fp32", "bf16+previews")}
    for model in models.values():
        seconds_per_image(model)  # warm-up
    for _ in range(rounds):
        times["bf16"].append(seconds_per_image(models["bf16"]))
        times["fp32"].append(seconds_per_image(models["fp32"]))
        times["bf16+previews"].append(seconds_per_image(models["bf16"], on_progress=lambda e: None, preview_every=1))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"demo, 64x64, 20 steps, CFG 7, {rounds} rounds alternating (median s/image):")
    for name, value in medians.items():
        print(f"  {name:14s} {value:.3f} s")
    print(f"  fp32 / bf16 = {medians['fp32'] / medians['bf16']:.2f}x; "
          f"previews every step cost {100 * (medians['bf16+previews'] / medians['bf16'] - 1):+.1f}%")  # fmt: skip


def prompt_following(scenes: int, seeds: int) -> None:
    rng = np.random.default_rng(2026)
    right = {"background": 0, "colour": 0, "shape": 0}
    total = 0
    for _ in range(scenes):
        drawn = world.random_scene(rng)
        scene = world.Scene(drawn.colour, drawn.shape, drawn.background)
        for image in diffuse_kit.generate(scene.prompt, seed=int(rng.integers(1 << 30)), batch_size=seeds).images:
            measured = world.measure(image)
            right["background"] += measured.background == scene.background
            right["colour"] += measured.colour == scene.colour
            right["shape"] += measured.shape == scene.shape
            total += 1
    print(f"prompt following, {scenes} random scenes x {seeds} seeds = {total} images (default settings):")
    for name, count in right.items():
        print(f"  {name:10s} {count / total:.1%} right")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scenes", type=int, default=48)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    speed(args.rounds)
    prompt_following(args.scenes, args.seeds)


if __name__ == "__main__":
    main()
