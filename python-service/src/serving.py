"""What every route shares: the job queue, the model policy, and running a request to its end."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from jobs import Job, JobQueue
from schemas import data_uri

from diffuse_kit import (
    ChatResult,
    DiffuseKitError,
    ImageRequest,
    InvalidRequestError,
    ModelNotFoundError,
    ProgressEvent,
    Result,
    TextRequest,
)
from diffuse_kit.models import known_image_models
from diffuse_kit.requests import validate
from diffuse_kit.text import check_fits, known_text_models

log = logging.getLogger("diffuse_kit.service")


class ServiceError(Exception):
    """An HTTP error with a JSON body: {"error": {"message", "type", "param"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param = status, message, type_, param


@dataclass
class Service:
    jobs: JobQueue
    default_model: str = "demo"
    extra_models: list[str] = field(default_factory=list)
    allow_any_model: bool = False
    text_model: str = "demo-text"
    text_adapter: str | None = None  # the operator's PEFT adapter on text_model; clients cannot pick one

    def __post_init__(self) -> None:
        # Read the Hugging Face cache once at start, not on every request that names a model.
        self._allowed = list(dict.fromkeys([self.default_model, *known_image_models(extra=self.extra_models)]))
        self._allowed_text = list(dict.fromkeys([self.text_model, *known_text_models()]))

    def allowed_models(self) -> list[str]:
        """Image model ids requests may name: the server's own, the embedded ones, cached hub pipelines."""
        return self._allowed

    def allowed_text_models(self) -> list[str]:
        """Text model ids requests may name: the server's own, the embedded ones, cached hub causal LMs."""
        return self._allowed_text

    def _allow(self, model: str, allowed: list[str]) -> str:
        if not self.allow_any_model and model not in allowed:
            # Never open a path or hub id that a client made up: only what the operator allowed.
            raise ModelNotFoundError(f"model: {model!r} is not served here; available: {', '.join(allowed)}")
        return model

    def request(self, **fields: Any) -> ImageRequest:
        fields["model"] = self._allow(fields.get("model") or self.default_model, self.allowed_models())
        return validate(ImageRequest, fields)

    def text_request(self, **fields: Any) -> TextRequest:
        fields["model"] = self._allow(fields.get("model") or self.text_model, self.allowed_text_models())
        if fields.get("adapter") and not self.allow_any_model:
            raise InvalidRequestError("adapter: this server serves its own adapter; clients cannot pick one", "adapter")
        if fields["model"] == self.text_model and self.text_adapter:
            fields["adapter"] = self.text_adapter
        request = validate(TextRequest, fields)
        check_fits(request)
        return request

    def run(self, request: ImageRequest) -> Result | None:
        """Queue `request`, wait for its end: its Result (None or .cancelled when interrupted)."""
        job = self.jobs.submit(request)
        job.wait()
        return finished(job)


def finished(job: Job) -> Result | ChatResult | None:
    if job.state == "failed":
        raise job.error  # type: ignore[misc]
    return job.result


def current() -> Service:
    return current_app.extensions["diffuse_kit"]


def progress_json(event: ProgressEvent) -> dict[str, Any]:
    return {
        "type": "progress",
        "step": event.step,
        "total": event.total,
        "elapsed": round(event.elapsed, 3),
        "eta": round(event.eta, 3),
        "preview": data_uri(event.preview) if event.preview is not None else None,
    }


def result_json(result: Result | None) -> dict[str, Any]:
    if result is None or result.cancelled:
        return {"type": "cancelled", "images": [], "seeds": [], "infotext": []}
    return {
        "type": "result",
        "images": [data_uri(image, text) for image, text in zip(result.images, result.infotext, strict=True)],
        "seeds": result.seeds,
        "infotext": result.infotext,
        "device": result.device,
        "dtype": result.dtype,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
    }


def error_json(exc: BaseException) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ServiceError):
        return exc.status, {"error": {"message": exc.message, "type": exc.type, "param": exc.param}}
    if isinstance(exc, DiffuseKitError):
        status = 404 if isinstance(exc, ModelNotFoundError) else 400
        return status, {"error": {"message": exc.message, "type": exc.type, "param": exc.param}}
    log.error("internal error", exc_info=exc)
    return 500, {"error": {"message": "internal error", "type": "server_error", "param": None}}


def text_result_json(result: ChatResult | None) -> dict[str, Any]:
    if result is None:  # cancelled before it started
        return {"type": "result", "text": "", "finish_reason": "cancelled", "usage": None}
    return {"type": "result", "text": result.text, "finish_reason": result.finish_reason, "usage": result.usage,
            "model": result.model, "seed": result.seed}  # fmt: skip


def job_events(job: Job) -> Iterator[dict[str, Any]]:
    """A job's progress (or token) lines, then its result (or error) line."""
    for event in job.events():
        yield {"type": "token", "text": event} if isinstance(event, str) else progress_json(event)
    if job.state == "failed":
        yield {"type": "error", **error_json(job.error)[1]}
    elif isinstance(job.request, TextRequest):
        yield text_result_json(job.result)
    else:
        yield result_json(job.result)
