"""The OpenAPI 3 document, generated from the pydantic models that validate the bodies."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema
from schemas import (
    A1111Img2ImgBody,
    A1111Txt2ImgBody,
    NativeImageBody,
    NativeTextBody,
    OpenAIChatBody,
    OpenAIImageBody,
    PngInfoBody,
    SuggestBody,
)

_BODIES = {
    "/api/images": NativeImageBody,
    "/api/jobs": NativeImageBody,
    "/api/text": NativeTextBody,
    "/api/suggest": SuggestBody,
    "/v1/images/generations": OpenAIImageBody,
    "/v1/chat/completions": OpenAIChatBody,
    "/sdapi/v1/txt2img": A1111Txt2ImgBody,
    "/sdapi/v1/img2img": A1111Img2ImgBody,
    "/sdapi/v1/png-info": PngInfoBody,
}
_GETS = ["/api/health", "/api/models", "/api/samplers", "/v1/models", "/sdapi/v1/progress",
         "/sdapi/v1/sd-models", "/sdapi/v1/samplers"]  # fmt: skip
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]}}}},
}  # fmt: skip


def _responses(ok: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        ok: {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {"description": "invalid request", **error},
        "401": {"description": "missing or wrong API key", **error},
        "404": {"description": "unknown model or job", **error},
        "429": {"description": "queue full", **error},
    }


@cache
def openapi_document() -> dict[str, Any]:
    models = list(dict.fromkeys(_BODIES.values()))
    refs, definitions = models_json_schema([(m, "validation") for m in models],
                                           ref_template="#/components/schemas/{model}")  # fmt: skip
    paths: dict[str, Any] = {path: {"get": {"responses": _responses("200")}} for path in _GETS}
    for path, model in _BODIES.items():
        schema = refs[(model, "validation")]
        body = {"required": True, "content": {"application/json": {"schema": schema}}}
        paths[path] = {"post": {"requestBody": body, "responses": _responses("202" if path == "/api/jobs" else "200")}}
    job = {"parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}]}
    paths["/api/jobs/{job_id}"] = job | {"get": {"responses": _responses("200")},
                                         "delete": {"responses": _responses("200")}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "diffuse_kit", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}) | {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
