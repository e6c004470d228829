"""OpenAI-compatible routes: /v1/models, /v1/images/generations and /v1/chat/completions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from api import json_body, streamed
from flask import Blueprint
from jobs import Job
from schemas import OpenAIChatBody, OpenAIImageBody, encode_png, parse_size
from serving import ServiceError, current, error_json, finished

from diffuse_kit import ChatResult
from diffuse_kit.requests import MAX_BATCH, validate

bp = Blueprint("openai", __name__, url_prefix="/v1")


@bp.get("/models")
def models():
    created = int(time.time())
    service = current()
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "diffuse_kit"}
                 for m in [*service.allowed_models(), *service.allowed_text_models()]],
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


@bp.post("/chat/completions")
def chat_completions():
    body = validate(OpenAIChatBody, json_body())
    service = current()
    request = service.text_request(**body.request_fields())
    job = service.jobs.submit(request)
    head = {"id": f"chatcmpl-{job.id}", "created": int(time.time()), "model": request.model}
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return streamed(_sse_chunks(job, head, usage), job, "text/event-stream")
    job.wait()
    result = finished(job)
    if not isinstance(result, ChatResult) or result.finish_reason == "cancelled":
        raise ServiceError(409, "the reply was interrupted", "cancelled")
    message = {"role": "assistant", "content": result.text}
    choice = {"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}
    return head | {"object": "chat.completion", "choices": [choice], "usage": result.usage}


def _sse_chunks(job: Job, head: dict[str, Any], include_usage: bool) -> Iterator[str]:
    """OpenAI's stream: a role chunk, a chunk per piece, a finish chunk, [usage], [DONE]."""

    def event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data)}\n\n"

    def chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return event(head | {"object": "chat.completion.chunk", "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    for piece in job.events():
        yield chunk({"content": piece})
    result = job.result
    if job.state == "failed":
        yield event(error_json(job.error)[1])
    elif not isinstance(result, ChatResult) or result.finish_reason == "cancelled":
        yield event({"error": {"message": "the reply was interrupted", "type": "cancelled", "param": None}})
    else:
        yield chunk({}, result.finish_reason)
        if include_usage:
            yield event(head | {"object": "chat.completion.chunk", "choices": [], "usage": result.usage})
    yield "data: [DONE]\n\n"
