"""What diffuse_kit adds on top of the pipeline call, measured side by side in one process:
live previews (per step), the HTTP service (per request, over a real loopback socket) and the
switch from text-to-image to image-to-image on a loaded model. Alternating A B A B; medians.

    HF_HUB_OFFLINE=1 venv/bin/python benchmarks/bench_overheads.py [--model demo] [--rounds 5]

`--model build/bench/sd15` measures previews at SD 1.5 scale (after `python -m diffuse_kit bench`
has built that folder); the service and switch figures use the same model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python-service" / "src"))

import diffuse_kit

PROMPT = "a red circle on a white background"


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def step_seconds(model: str, size: int, steps: tuple[int, int], **options) -> float:
    """s/step from the difference of two step counts (load and decode cancel)."""
    times = [timed(lambda n=n: diffuse_kit.generate(PROMPT, model=model, steps=n, seed=1, width=size, height=size,
                                                    **options)) for n in steps]  # fmt: skip
    return (times[1] - times[0]) / (steps[1] - steps[0])


def previews(model: str, size: int, rounds: int) -> None:
    plain, previewed = [], []
    for _ in range(rounds):
        plain.append(step_seconds(model, size, (2, 6)))
        previewed.append(step_seconds(model, size, (2, 6), on_progress=lambda event: None, preview_every=1))
    a, b = statistics.median(plain), statistics.median(previewed)
    print(f"previews: {a:.3f} s/step without, {b:.3f} s/step with a preview every step: {100 * (b / a - 1):+.1f}%")


def service(model: str, size: int, rounds: int) -> None:
    from service import create_app, make_server

    server = make_server(create_app({"MODEL": model, "ALLOW_ANY_MODEL": True}), "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    body = json.dumps({"prompt": PROMPT, "model": model, "seed": 1, "steps": 20, "width": size, "height": size,
                       "stream": False}).encode()  # fmt: skip
    url = f"http://127.0.0.1:{server.effective_port}/api/images"

    def over_http() -> None:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            json.loads(response.read())

    def direct() -> None:
        diffuse_kit.generate(PROMPT, model=model, seed=1, steps=20, width=size, height=size)

    over_http()  # warm-up: loads the model and fits the previewer once
    http_times, direct_times = [], []
    for _ in range(rounds):
        http_times.append(timed(over_http))
        direct_times.append(timed(direct))
    server.close()
    a, b = statistics.median(direct_times), statistics.median(http_times)
    print(f"service: generate() {a:.3f} s, POST /api/images {b:.3f} s (20 steps, PNG + base64 + JSON, "
          f"previews every 2 steps): {100 * (b / a - 1):+.1f}%")  # fmt: skip


def switch(model: str, size: int) -> None:
    loaded = diffuse_kit.load(model)
    txt2img = timed(lambda: diffuse_kit.generate(PROMPT, model=model, seed=1, steps=8, width=size, height=size))
    init = diffuse_kit.generate(PROMPT, model=model, seed=1, steps=2, width=size, height=size).images[0]
    first = timed(lambda: diffuse_kit.generate(PROMPT, model=model, seed=1, steps=8, init_image=init, strength=1.0))
    again = timed(lambda: diffuse_kit.generate(PROMPT, model=model, seed=1, steps=8, init_image=init, strength=1.0))
    shared = loaded.img2img().unet is loaded.pipeline.unet
    print(f"img2img switch: txt2img {txt2img:.3f} s, first img2img {first:.3f} s, next {again:.3f} s "
          f"(8 steps); UNet shared, not reloaded: {shared}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size or diffuse_kit.load(args.model).native_size[0]
    print(f"model {args.model}, {size}x{size}, {args.rounds} rounds alternating (medians):")
    previews(args.model, size, args.rounds)
    service(args.model, size, args.rounds)
    switch(args.model, size)


if __name__ == "__main__":
    main()
