"""OpenAI-compatible routes: /v1/models and /v1/images/generations."""

from __future__ import annotations

import time

from api import json_body
from flask import Blueprint
from schemas import OpenAIImageBody, encode_png, parse_size
from serving import ServiceError, current

from diffuse_kit.requests import MAX_BATCH, validate

bp = Blueprint("openai", __name__, url_prefix="/v1")


@bp.get("/models")
def models():
    created = int(time.time())
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "diffuse_kit"}
                 for m in current().allowed_models()],
    }  # fmt: skip


@bp.post("/images/generations")
def generations():
    body = validate(OpenAIImageBody, json_body())
    if body.response_format == "url":
        raise ServiceError(400, "response_format 'url' is not supported: this server keeps no image store; "
                           "use 'b64_json'", param="response_format")  # fmt: skip
    width, height = parse_size(body.size)
    service = current()
    images = []
    for start in range(0, body.n, MAX_BATCH):  # n may exceed the engine's batch limit
        request = service.request(prompt=body.prompt, model=body.model, width=width, height=height,
                                  batch_size=min(MAX_BATCH, body.n - start))  # fmt: skip
        result = service.run(request)
        if result is None or result.cancelled:
            raise ServiceError(409, "the generation was interrupted", "cancelled")
        images += [{"b64_json": encode_png(image, text), "revised_prompt": body.prompt}
                   for image, text in zip(result.images, result.infotext, strict=True)]  # fmt: skip
    return {"created": int(time.time()), "data": images}
