"""The command line: `python -m diffuse_kit generate|chat|models|bench`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from diffuse_kit.errors import DiffuseKitError
from diffuse_kit.generation import generate
from diffuse_kit.models import EMBEDDED_IMAGE_MODELS, cached_hub_models, load
from diffuse_kit.progress import ProgressEvent
from diffuse_kit.samplers import SAMPLERS
from diffuse_kit.text import EMBEDDED_TEXT_MODELS, chat


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffuse_kit", description="Run image and text models locally.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate images and print the path of each PNG written")
    gen.add_argument("prompt")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--model", default="demo", help="demo, a diffusers folder, a .safetensors file or a hub id")
    gen.add_argument("--steps", type=int, default=20)
    gen.add_argument("--seed", type=int, default=None, help="default: random (it is printed in the PNG)")
    gen.add_argument("--sampler", default=None, help=f"one of: {', '.join(SAMPLERS)}")
    gen.add_argument("--cfg", type=float, default=7.0, help="guidance scale")
    gen.add_argument("--width", type=int, default=None, help="default: the model's native size")
    gen.add_argument("--height", type=int, default=None)
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--init-image", default=None, help="an image file: image-to-image")
    gen.add_argument("--strength", type=float, default=None, help="img2img denoising strength (default 0.75)")
    gen.add_argument("--config", default=None, help="for a .safetensors file: a diffusers folder of its architecture")
    gen.add_argument("--out", default="output", help="folder for the PNGs (default: output/)")
    talk = commands.add_parser("chat", help="reply to a message with a text model, printing the reply as it comes")
    talk.add_argument("message")
    talk.add_argument("--system", default=None, help="a system prompt")
    talk.add_argument("--model", default="demo-text", help="demo-text, a transformers folder or a hub id")
    talk.add_argument("--adapter", default=None, help="a PEFT adapter folder or hub id on top of --model")
    talk.add_argument("--max-tokens", type=int, default=256)
    talk.add_argument("--temperature", type=float, default=0.7, help="0: greedy")
    talk.add_argument("--seed", type=int, default=None)
    commands.add_parser("models", help="list the embedded models and what the Hugging Face cache holds")
    bench = commands.add_parser("bench", help="speed and memory: plain diffusers fp32 vs diffuse_kit, side by side")
    bench.add_argument("--arch", choices=["sd15", "sdxl", "tiny"], action="append",
                       help="default: sd15 and sdxl (random weights from the real configs, built once)")  # fmt: skip
    bench.add_argument("--size", type=int, default=None, help="image side (default: 256 for sd15, 512 for sdxl)")
    bench.add_argument("--quick", action="store_true", help="smaller images (128 / 256), one round")
    bench.add_argument("--rounds", type=int, default=2, help="A B rounds, each in fresh processes")
    bench.add_argument("--work", default="build/bench", help="where the random-weight pipelines are saved")
    bench.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one measurement, in a child process
    bench.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    return parser


def _show_progress(event: ProgressEvent) -> None:
    end = "\n" if event.step == event.total else ""
    print(f"\rstep {event.step}/{event.total}  {event.elapsed:.1f}s, {event.eta:.1f}s left", end=end, file=sys.stderr)


def _generate(args: argparse.Namespace) -> int:
    init_image = Image.open(args.init_image) if args.init_image else None
    if args.config:
        load(args.model, config=args.config)  # cached: generate() below reuses it
    result = generate(
        args.prompt, model=args.model, negative_prompt=args.negative, steps=args.steps, seed=args.seed,
        sampler=args.sampler, guidance_scale=args.cfg, width=args.width, height=args.height,
        batch_size=args.batch, init_image=init_image, strength=args.strength,
        on_progress=_show_progress if sys.stderr.isatty() else None,
    )  # fmt: skip
    for path in result.save(args.out):
        print(path)
    return 0


def _chat(args: argparse.Namespace) -> int:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.message})
    reply = chat(messages, model=args.model, adapter=args.adapter, stream=True, max_new_tokens=args.max_tokens,
                 temperature=args.temperature, seed=args.seed)  # fmt: skip
    for piece in reply:
        print(piece, end="", flush=True)
    print()
    return 0


def _models(args: argparse.Namespace) -> int:
    for name, path in EMBEDDED_IMAGE_MODELS.items():
        print(f"{name}\tembedded image model\t{path}")
    for name, path in EMBEDDED_TEXT_MODELS.items():
        print(f"{name}\tembedded text model\t{path}")
    for model in cached_hub_models():
        print(f"{model.id}\t{model.kind} (Hugging Face cache)\t{model.size_gb:.2f} GB")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from diffuse_kit import bench

    if args.worker:
        print(json.dumps(bench.measure(args.worker, args.arch[0], Path(args.folder), args.size)))
        return 0
    for arch in args.arch or ["sd15", "sdxl"]:
        spec = bench.ARCHS[arch]
        size = args.size or (spec.quick_size if args.quick else spec.size)
        bench.compare(arch, size=size, rounds=1 if args.quick else args.rounds, work=Path(args.work))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"generate": _generate, "chat": _chat, "models": _models, "bench": _bench}
        return commands[args.command](args)
    except (DiffuseKitError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
