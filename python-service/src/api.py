"""The native API: /api/health, models, samplers, images (NDJSON progress), text (NDJSON tokens),
jobs, openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request
from jobs import Job
from openapi import openapi_document
from schemas import NativeImageBody, NativeTextBody, SuggestBody, decode_image
from serving import ServiceError, current, error_json, finished, job_events, progress_json, result_json

import diffuse_kit
import diffuse_kit.text
from diffuse_kit.requests import validate
from diffuse_kit.samplers import SAMPLERS

bp = Blueprint("api", __name__, url_prefix="/api")


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        raise ServiceError(400, "the body is not valid JSON (or not sent as application/json)", param="body")
    if not isinstance(body, dict):
        raise ServiceError(400, "the body must be a JSON object", param="body")
    return body


def image_request(body: NativeImageBody) -> diffuse_kit.ImageRequest:
    fields = body.model_dump(exclude={"stream", "init_image"})
    if body.init_image is not None:
        fields["init_image"] = decode_image(body.init_image, "init_image")
    return current().request(**fields)


@bp.get("/health")
def health():
    service = current()
    return {"status": "ok", "version": "0.1.0", "queue": service.jobs.depth,
            "running": service.jobs.running is not None}  # fmt: skip


@bp.get("/models")
def models():
    service = current()
    loaded = {m.id for m in [*diffuse_kit.models.CACHE.loaded(), *diffuse_kit.text.TEXT_CACHE.loaded()]}
    return {
        "default": service.default_model,
        "default_text": service.text_model,
        "data": [{"id": m, "kind": "image", "loaded": m in loaded} for m in service.allowed_models()]
        + [{"id": m, "kind": "text", "loaded": m in loaded} for m in service.allowed_text_models()],
    }


@bp.get("/samplers")
def samplers():
    return {"data": [{"name": s.name, "aliases": list(s.aliases)} for s in SAMPLERS.values()]}


@bp.get("/openapi.json")
def openapi():
    return openapi_document()


def streamed(chunks: Iterator[str], job: Job, mimetype: str) -> Response:
    """A response sent as `chunks` come; a client that goes away cancels the job."""
    jobs = current().jobs  # looked up now: the generator runs after the request context is gone

    def stream() -> Iterator[str]:
        try:
            yield from chunks
        finally:
            if not job.finished:
                jobs.cancel(job)

    return Response(stream(), mimetype=mimetype, headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})


def ndjson(lines: Iterator[dict[str, Any]], job: Job) -> Response:
    return streamed((json.dumps(line) + "\n" for line in lines), job, "application/x-ndjson")


def respond(job: Job, stream: bool) -> Response | tuple[dict[str, Any], int]:
    """The job's lines as NDJSON while it runs, or its last line as one JSON answer."""
    return ndjson(job_events(job), job) if stream else answer(job)


def answer(job: Job) -> tuple[dict[str, Any], int]:
    """A finished job's last line as one JSON answer (its error's status when it failed)."""
    job.wait()
    lines = list(job_events(job))
    if lines[-1]["type"] == "error":
        status, error = error_json(job.error)
        return error, status
    return lines[-1], 200


@bp.post("/images")
def images():
    body = validate(NativeImageBody, json_body())
    return respond(current().jobs.submit(image_request(body)), body.stream)


@bp.post("/text")
def text():
    body = validate(NativeTextBody, json_body())
    service = current()
    return respond(service.jobs.submit(service.text_request(**body.request_fields())), body.stream)


@bp.post("/suggest")
def suggest():
    body = validate(SuggestBody, json_body())
    service = current()
    fields = diffuse_kit.text.suggest_fields(body.seed_text, model=body.model or service.text_model, seed=body.seed)
    job = service.jobs.submit(service.text_request(**fields))
    job.wait()
    result = finished(job)
    if result is None or result.finish_reason == "cancelled":
        raise ServiceError(409, "the suggestion was interrupted", "cancelled")
    return {"prompt": result.text.strip(), "seed": result.seed, "model": result.model}


@bp.post("/jobs")
def submit_job():
    body = validate(NativeImageBody, json_body())
    service = current()
    job = service.jobs.submit(image_request(body))
    return {"id": job.id, "state": job.state, "position": service.jobs.position(job)}, 202


def find_job(job_id: str) -> Job:
    job = current().jobs.get(job_id)
    if job is None:
        raise ServiceError(404, f"no job {job_id!r}", "not_found_error", "id")
    return job


@bp.get("/jobs/<job_id>")
def job_status(job_id: str):
    job = find_job(job_id)
    answer: dict[str, Any] = {"id": job.id, "state": job.state, "position": current().jobs.position(job)}
    answer["progress"] = {k: v for k, v in progress_json(job.progress).items() if k != "type"} if job.progress else None
    if job.state == "done":
        answer["result"] = result_json(job.result)
    if job.state == "failed":
        answer["error"] = error_json(job.error)[1]["error"]
    return answer


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    job = find_job(job_id)
    current().jobs.cancel(job)
    return {"id": job.id, "state": job.state if job.finished else "cancelling"}
