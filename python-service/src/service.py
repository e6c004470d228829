"""The diffuse_kit HTTP service: a Flask app factory and its command line.

    python3 python-service/src/service.py [--host 127.0.0.1] [--port 7860] [--model demo]
        [--text-model demo-text] [--text-adapter PATH] [--api-key KEY] [--cors-origin ORIGIN]
        [--queue-size N] [--dev]

Routes live in blueprints (api: native, openai_api: /v1, a1111: /sdapi/v1); no model code
here: the engine (diffuse_kit) does the work, one job at a time from a bounded queue.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import a1111
import api
import openai_api
from flask import Flask, Response, current_app, request, send_from_directory
from jobs import JobQueue, QueueFullError
from serving import Service, ServiceError, error_json
from werkzeug.exceptions import HTTPException

STATIC = Path(__file__).resolve().parent / "static"
OPEN_ENDPOINTS = {"api.health", "page", "static"}  # reachable without the API key

DEFAULTS: dict[str, Any] = {
    "MODEL": "demo",
    "EXTRA_MODELS": [],
    "TEXT_MODEL": "demo-text",
    "TEXT_ADAPTER": None,  # a PEFT adapter the service applies to TEXT_MODEL
    "ALLOW_ANY_MODEL": False,
    "API_KEY": None,
    "CORS_ORIGIN": None,
    "QUEUE_SIZE": 4,
    "PREVIEW_EVERY": 2,
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,  # a few base64 init images, not more
    "RUNNER": None,  # tests may swap the engine calls
    "TEXT_RUNNER": None,
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(DEFAULTS)
    app.config["API_KEY"] = os.environ.get("DIFFUSE_KIT_API_KEY") or None
    app.config.update(config or {})
    runners = {name: app.config[key] for name, key in (("runner", "RUNNER"), ("text_runner", "TEXT_RUNNER"))
               if app.config[key]}  # fmt: skip
    jobs = JobQueue(app.config["QUEUE_SIZE"], preview_every=app.config["PREVIEW_EVERY"], **runners)
    app.extensions["diffuse_kit"] = Service(
        jobs, app.config["MODEL"], list(app.config["EXTRA_MODELS"]), app.config["ALLOW_ANY_MODEL"],
        app.config["TEXT_MODEL"], app.config["TEXT_ADAPTER"],
    )  # fmt: skip
    for blueprint in (api.bp, openai_api.bp, a1111.bp):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "page", lambda: send_from_directory(STATIC, "index.html"))
    app.before_request(_authenticate)
    app.after_request(_cors)
    _register_errors(app)
    return app


def _authenticate() -> Response | None:
    key = current_app.config["API_KEY"]
    if key is None or request.endpoint in OPEN_ENDPOINTS or request.method == "OPTIONS":
        return None
    if _presented_key() is not None and hmac.compare_digest(_presented_key(), key):
        return None
    raise ServiceError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "authentication_error")


def _presented_key() -> str | None:
    """The key from `Authorization: Bearer KEY`, or the password of HTTP Basic (A1111 clients)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def _cors(response: Response) -> Response:
    allowed, origin = current_app.config["CORS_ORIGIN"], request.headers.get("Origin")
    if allowed and origin and allowed in ("*", origin):
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Vary"] = "Origin"
    return response


def _register_errors(app: Flask) -> None:
    """Every error is JSON {"error": {"message", "type", "param"}}: never an HTML page."""

    @app.errorhandler(QueueFullError)
    def queue_full(exc: QueueFullError):
        return {"error": {"message": str(exc), "type": "queue_full", "param": None}}, 429, {"Retry-After": "2"}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        kind = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "request_too_large"}.get(exc.code or 500, "invalid_request_error")  # fmt: skip
        return {"error": {"message": exc.description, "type": kind, "param": None}}, exc.code

    @app.errorhandler(Exception)
    def any_error(exc: Exception):
        status, body = error_json(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="diffuse_kit"'} if status == 401 else {}
        return body, status, headers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The diffuse_kit HTTP service and web page.")
    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", default="demo", help="the default model (also the only non-embedded one allowed)")
    parser.add_argument("--text-model", default="demo-text", help="the default text model")
    parser.add_argument("--text-adapter", default=None, help="a PEFT adapter folder or hub id on --text-model")
    parser.add_argument("--api-key", default=os.environ.get("DIFFUSE_KIT_API_KEY"), help="or DIFFUSE_KIT_API_KEY")
    parser.add_argument("--cors-origin", default=None, help="an origin allowed to call the API from a browser")
    parser.add_argument("--queue-size", type=int, default=4, help="jobs that may wait; more are refused with 429")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: queue size + 8)")
    parser.add_argument("--dev", action="store_true", help="Flask's debug server instead of waitress")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    app = create_app({"MODEL": args.model, "TEXT_MODEL": args.text_model, "TEXT_ADAPTER": args.text_adapter,
                      "API_KEY": args.api_key, "CORS_ORIGIN": args.cors_origin,
                      "QUEUE_SIZE": args.queue_size})  # fmt: skip
    where = f"http://{args.host}:{args.port}/"
    print(f"diffuse_kit service on {where} (models {args.model}, {args.text_model})", flush=True)
    if args.dev:
        app.run(host=args.host, port=args.port, debug=True, threaded=True, use_reloader=False)
        return
    make_server(app, args.host, args.port, threads=args.threads).run()


def make_server(app: Flask, host: str, port: int, threads: int | None = None):
    """The production server: waitress. Each waiting or streaming client holds one of its threads,
    so there are more threads than queue slots; send_bytes=1 sends each NDJSON line at once."""
    from waitress.server import create_server

    threads = threads or app.config["QUEUE_SIZE"] + 8
    return create_server(
        app, host=host, port=port, threads=threads, send_bytes=1, channel_request_lookahead=1, ident="diffuse_kit"
    )  # lookahead: notice a client that hangs up mid-stream


if __name__ == "__main__":
    main()
