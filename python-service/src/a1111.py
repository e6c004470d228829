"""The AUTOMATIC1111-compatible subset under /sdapi/v1, with A1111's field names."""

from __future__ import annotations

import json
from typing import Any

from api import json_body
from flask import Blueprint, request
from PIL import Image
from schemas import A1111Img2ImgBody, A1111Txt2ImgBody, PngInfoBody, decode_image, encode_png
from serving import ServiceError, current

from diffuse_kit import Result, infotext
from diffuse_kit.requests import validate
from diffuse_kit.samplers import SAMPLERS

bp = Blueprint("a1111", __name__, url_prefix="/sdapi/v1")


def _model(body: A1111Txt2ImgBody) -> str | None:
    # A1111 clients switch checkpoints per request with override_settings.sd_model_checkpoint.
    checkpoint = body.override_settings.get("sd_model_checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ServiceError(400, "override_settings.sd_model_checkpoint: must be a string",
                           param="override_settings.sd_model_checkpoint")  # fmt: skip
    return checkpoint


def _generate(body: A1111Txt2ImgBody, init_image: Image.Image | None, strength: float | None) -> dict[str, Any]:
    service = current()
    seed = None if body.seed == -1 else body.seed
    results: list[Result] = []
    for _ in range(body.n_iter):  # n_iter batches, seeds continuing like A1111's
        request = service.request(
            prompt=body.prompt, negative_prompt=body.negative_prompt, model=_model(body), steps=body.steps,
            guidance_scale=body.cfg_scale, width=body.width, height=body.height, seed=seed,
            sampler=body.sampler_name or body.sampler_index, batch_size=body.batch_size,
            init_image=init_image, strength=strength,
        )  # fmt: skip
        result = service.run(request)
        if result is None or result.cancelled:
            break  # interrupted: A1111 answers with what it has
        results.append(result)
        seed = result.seeds[-1] + 1
    return _response(body, results)


def _response(body: A1111Txt2ImgBody, results: list[Result]) -> dict[str, Any]:
    images = [(image, text) for r in results for image, text in zip(r.images, r.infotext, strict=True)]
    seeds = [s for r in results for s in r.seeds]
    texts = [text for _, text in images]
    size = images[0][0].size if images else (body.width, body.height)
    info = {
        "prompt": body.prompt, "all_prompts": [body.prompt] * len(seeds), "negative_prompt": body.negative_prompt,
        "seed": seeds[0] if seeds else body.seed, "all_seeds": seeds, "steps": body.steps,
        "cfg_scale": body.cfg_scale, "width": size[0], "height": size[1], "batch_size": body.batch_size,
        "sampler_name": infotext.parse(texts[0]).get("Sampler") if texts else body.sampler_name,
        "infotexts": texts, "sd_model_name": infotext.parse(texts[0]).get("Model") if texts else None,
    }  # fmt: skip
    return {
        "images": [encode_png(image, text) for image, text in images] if body.send_images else [],
        "parameters": body.model_dump(exclude={"init_images"}),
        "info": json.dumps(info),
    }


@bp.post("/txt2img")
def txt2img():
    body = validate(A1111Txt2ImgBody, json_body())
    return _generate(body, None, None)


@bp.post("/img2img")
def img2img():
    body = validate(A1111Img2ImgBody, json_body())
    return _generate(body, decode_image(body.init_images[0], "init_images"), body.denoising_strength)


@bp.get("/progress")
def progress():
    jobs = current().jobs
    running, event = jobs.running, jobs.running.progress if jobs.running else None
    fraction = event.step / event.total if event else 0.0
    skip_image = request.args.get("skip_current_image", "false").lower() == "true"
    preview = encode_png(event.preview) if event and event.preview is not None and not skip_image else None
    return {
        "progress": fraction,
        "eta_relative": event.eta if event else 0.0,
        "state": {
            "skipped": False, "interrupted": bool(running and running.cancel.is_set()),
            "job": running.id if running else "", "job_count": jobs.depth + (1 if running else 0),
            "job_timestamp": str(int(running.created)) if running else "0", "job_no": 0,
            "sampling_step": event.step if event else 0, "sampling_steps": event.total if event else 0,
        },
        "current_image": preview,
        "textinfo": f"step {event.step}/{event.total}" if event else None,
    }  # fmt: skip


@bp.post("/interrupt")
def interrupt():
    current().jobs.interrupt()
    return {}


@bp.get("/sd-models")
def sd_models():
    return [{"title": m, "model_name": m, "hash": None, "sha256": None, "filename": m, "config": None}
            for m in current().allowed_models()]  # fmt: skip


@bp.get("/samplers")
def samplers():
    return [{"name": s.name, "aliases": list(s.aliases), "options": {}} for s in SAMPLERS.values()]


@bp.post("/png-info")
def png_info():
    body = validate(PngInfoBody, json_body())
    image = decode_image(body.image, "image")
    text = infotext.read_png(image) or ""
    items = {k: v for k, v in image.info.items() if k != infotext.PNG_KEY and isinstance(v, str)}
    return {"info": text, "items": items, "parameters": infotext.parse(text) if text else {}}
