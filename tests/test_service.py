"""The HTTP service through Flask's test client: every route and every error case."""

import base64
import io
import json
import threading

import pytest
from PIL import Image

from diffuse_kit import infotext


def ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data.split(",")[-1])))


def b64_png(size=(64, 64), colour=(200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_health_models_samplers(client, tiny_sd):
    assert client.get("/api/health").get_json()["status"] == "ok"
    models = client.get("/api/models").get_json()
    assert models["default"] == tiny_sd and {m["id"] for m in models["data"]} >= {tiny_sd, "demo"}
    names = [s["name"] for s in client.get("/api/samplers").get_json()["data"]]
    assert "DPM++ 2M Karras" in names and "Euler a" in names


def test_images_stream_one_progress_line_per_step_then_the_result(client):
    response = client.post("/api/images", json={"prompt": "a cat", "steps": 5, "seed": 3, "width": 64})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = ndjson(response)
    progress, result = lines[:-1], lines[-1]
    assert [line["step"] for line in progress] == [1, 2, 3, 4, 5] and {p["total"] for p in progress} == {5}
    assert [bool(line["preview"]) for line in progress] == [False, True, False, True, True]
    assert all(line["eta"] >= 0 and line["elapsed"] >= 0 for line in progress)
    assert result["type"] == "result" and result["seeds"] == [3]
    image = png(result["images"][0])
    assert image.size == (64, 64)
    assert infotext.parse(infotext.read_png(image))["Seed"] == 3


def test_images_without_stream_answer_one_object(client):
    body = client.post("/api/images", json={"prompt": "a cat", "steps": 2, "stream": False, "batch_size": 2}).get_json()
    assert body["type"] == "result" and len(body["images"]) == 2 and len(body["infotext"]) == 2


def test_img2img_through_the_native_api(client):
    body = {"prompt": "a cat", "steps": 2, "stream": False, "init_image": "data:image/png;base64," + b64_png((80, 64)),
            "strength": 0.5}  # fmt: skip
    result = client.post("/api/images", json=body).get_json()
    assert png(result["images"][0]).size == (80, 64)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "a cat", "steps": 0}, 400, "steps"),
        ({"prompt": "a cat", "steps": "many"}, 400, "steps"),
        ({"prompt": "a cat", "width": 65}, 400, "width"),
        ({"prompt": "a cat", "guidance_scale": -1}, 400, "guidance_scale"),
        ({"prompt": ""}, 400, "prompt"),
        ({"steps": 3}, 400, "prompt"),
        ({"prompt": "a cat", "sampler": "Euler z"}, 400, "sampler"),
        ({"prompt": "a cat", "model": "/etc"}, 404, "model"),
        ({"prompt": "a cat", "model": "someone/else"}, 404, "model"),
        ({"prompt": "a cat", "init_image": "not base64!"}, 400, "init_image"),
        ({"prompt": "a cat", "init_image": base64.b64encode(b"text").decode()}, 400, "init_image"),
        ({"prompt": "a cat", "strength": 0.5}, 400, "strength"),
        ({"prompt": "a cat", "colour": "red"}, 400, "colour"),
        ({"prompt": "a cat", "batch_size": 9}, 400, "batch_size"),
    ],
)
@pytest.mark.parametrize("route", ["/api/images", "/api/jobs"])
def test_bad_bodies_get_a_4xx_naming_the_field(client, route, body, status, param):
    response = client.post(route, json=body)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["param"] == param and param in error["message"] and error["type"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{not json", "application/json"), ("[1, 2]", "application/json"), ("prompt=a", "text/plain"), ("", None)],
)
def test_malformed_bodies_are_400_json(client, data, content_type):
    response = client.post("/api/images", data=data, content_type=content_type)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "body"


def test_unknown_route_and_method_are_json(client):
    assert client.get("/api/nothing").get_json()["error"]["type"] == "not_found_error"
    response = client.get("/api/images")
    assert response.status_code == 405 and "error" in response.get_json()


def test_body_size_limit(app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = app.test_client().post("/api/images", json={"prompt": "x" * 2000})
    assert response.status_code == 413 and response.get_json()["error"]["type"] == "request_too_large"


def test_job_lifecycle(client):
    submitted = client.post("/api/jobs", json={"prompt": "a cat", "steps": 3, "seed": 9})
    assert submitted.status_code == 202
    job = submitted.get_json()
    assert job["state"] in ("queued", "running") and job["position"] >= 0
    for _ in range(600):
        status = client.get(f"/api/jobs/{job['id']}").get_json()
        if status["state"] == "done":
            break
        threading.Event().wait(0.05)
    assert status["state"] == "done" and status["result"]["seeds"] == [9]
    assert status["progress"]["step"] == status["progress"]["total"] == 3


def test_cancel_a_job_and_unknown_jobs(client):
    job = client.post("/api/jobs", json={"prompt": "a cat", "steps": 150, "width": 256, "height": 256}).get_json()
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
    for _ in range(600):
        state = client.get(f"/api/jobs/{job['id']}").get_json()["state"]
        if state == "cancelled":
            break
        threading.Event().wait(0.05)
    assert state == "cancelled"
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.delete("/api/jobs/nope").get_json()["error"]["param"] == "id"


def test_full_queue_refuses_at_once(tiny_sd):
    from service import create_app

    release = threading.Event()

    def blocked_runner(request, **kwargs):
        release.wait(30)
        raise RuntimeError("released")

    app = create_app({"MODEL": tiny_sd, "QUEUE_SIZE": 2, "RUNNER": blocked_runner})
    client, jobs = app.test_client(), app.extensions["diffuse_kit"].jobs
    assert client.post("/api/jobs", json={"prompt": "a cat"}).status_code == 202
    while jobs.running is None:  # the worker took it: the queue is empty again
        threading.Event().wait(0.01)
    responses = [client.post("/api/jobs", json={"prompt": "a cat"}) for _ in range(4)]
    release.set()
    assert [r.status_code for r in responses] == [202, 202, 429, 429]  # two may wait, the rest are refused
    assert responses[2].get_json()["error"]["type"] == "queue_full" and responses[2].headers["Retry-After"]


def test_engine_failure_is_a_json_500_and_the_worker_survives(tiny_sd):
    from service import create_app

    calls = []

    def flaky_runner(request, **kwargs):
        calls.append(request)
        raise RuntimeError("boom")

    client = create_app({"MODEL": tiny_sd, "RUNNER": flaky_runner}).test_client()
    for _ in range(2):
        response = client.post("/api/images", json={"prompt": "a cat", "stream": False})
        assert response.status_code == 500 and response.get_json()["error"]["message"] == "internal error"
    assert len(calls) == 2


def test_openapi_document_comes_from_the_validating_models(client):
    document = client.get("/api/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    schema_ref = document["paths"]["/api/images"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][schema_ref["$ref"].rsplit("/", 1)[1]]
    assert schema["properties"]["steps"]["maximum"] == 150 and "prompt" in schema["required"]


# -- OpenAI-compatible ------------------------------------------------------------------------


def test_openai_models_and_generations(client, tiny_sd):
    models = client.get("/v1/models").get_json()
    assert models["object"] == "list" and models["data"][0] == {**models["data"][0], "id": tiny_sd, "object": "model"}
    body = client.post("/v1/images/generations", json={"prompt": "a cat", "n": 2, "size": "64x96", "quality": "hd"})
    data = body.get_json()["data"]
    assert len(data) == 2 and png(data[0]["b64_json"]).size == (64, 96)


@pytest.mark.parametrize(
    ("body", "param"),
    [({"prompt": "a cat", "response_format": "url"}, "response_format"), ({"prompt": "a cat", "size": "big"}, "size"),
     ({"prompt": "a cat", "n": 11}, "n"), ({"n": 1}, "prompt"), ({"prompt": "a cat", "size": "65x64"}, "width")],
)  # fmt: skip
def test_openai_errors_name_the_field(client, body, param):
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == param


# -- A1111-compatible -------------------------------------------------------------------------


def test_a1111_txt2img_ignores_unknown_fields_and_counts_seeds(client):
    body = {"prompt": "a cat", "negative_prompt": "dog", "steps": 2, "cfg_scale": 5, "width": 64, "height": 64,
            "seed": 100, "n_iter": 2, "batch_size": 2, "sampler_name": "Euler a", "enable_hr": True,
            "hr_scale": 2, "script_args": [], "alwayson_scripts": {}, "styles": []}  # fmt: skip
    answer = client.post("/sdapi/v1/txt2img", json=body).get_json()
    info = json.loads(answer["info"])
    assert len(answer["images"]) == 4 and info["all_seeds"] == [100, 101, 102, 103]
    assert (info["sampler_name"], info["cfg_scale"], info["negative_prompt"]) == ("Euler a", 5, "dog")
    assert answer["parameters"]["prompt"] == "a cat" and len(info["infotexts"]) == 4
    assert infotext.parse(infotext.read_png(png(answer["images"][3])))["Seed"] == 103


@pytest.mark.parametrize(
    ("body", "param"),
    [({"prompt": "a", "steps": 0}, "steps"), ({"prompt": "a", "cfg_scale": "x"}, "cfg_scale"),
     ({"prompt": "a", "seed": -2}, "seed"), ({"prompt": "a", "sampler_name": "nope"}, "sampler"),
     ({"prompt": "a", "width": 100}, "width"), ({"prompt": "a", "n_iter": 0}, "n_iter")],
)  # fmt: skip
def test_a1111_rejects_known_fields_out_of_range(client, body, param):
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == param


def test_a1111_img2img_and_png_info(client):
    body = {"prompt": "a cat", "steps": 4, "init_images": [b64_png((64, 72))], "denoising_strength": 0.5,
            "seed": 5}  # fmt: skip
    answer = client.post("/sdapi/v1/img2img", json=body).get_json()
    assert png(answer["images"][0]).size == (64, 72)
    info = client.post("/sdapi/v1/png-info", json={"image": answer["images"][0]}).get_json()
    assert info["parameters"]["Denoising strength"] == 0.5 and info["parameters"]["Seed"] == 5
    assert client.post("/sdapi/v1/img2img", json={"prompt": "a", "init_images": ["@@"]}).status_code == 400
    assert client.post("/sdapi/v1/png-info", json={"image": "@@"}).get_json()["error"]["param"] == "image"


def test_a1111_lists_progress_and_interrupt(client, tiny_sd):
    assert client.get("/sdapi/v1/sd-models").get_json()[0]["title"] == tiny_sd
    assert {"name", "aliases", "options"} <= set(client.get("/sdapi/v1/samplers").get_json()[0])
    idle = client.get("/sdapi/v1/progress").get_json()
    assert idle["progress"] == 0 and idle["current_image"] is None
    job = client.post("/api/jobs", json={"prompt": "a cat", "steps": 150, "width": 256, "height": 256}).get_json()
    for _ in range(600):
        busy = client.get("/sdapi/v1/progress").get_json()
        if busy["state"]["sampling_step"] >= 2:
            break
        threading.Event().wait(0.05)
    assert 0 < busy["progress"] < 1 and busy["state"]["sampling_steps"] == 150 and busy["current_image"]
    assert client.get("/sdapi/v1/progress?skip_current_image=true").get_json()["current_image"] is None
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    for _ in range(600):
        if client.get(f"/api/jobs/{job['id']}").get_json()["state"] == "cancelled":
            break
        threading.Event().wait(0.05)
    assert client.get(f"/api/jobs/{job['id']}").get_json()["state"] == "cancelled"


# -- security ---------------------------------------------------------------------------------


@pytest.fixture
def locked(tiny_sd):
    from service import create_app

    return create_app({"MODEL": tiny_sd, "API_KEY": "s3cret"}).test_client()


def test_api_key_is_required_except_for_health_and_the_page(locked):
    assert locked.get("/api/health").status_code == 200
    assert locked.get("/").status_code == 200
    for path in ("/api/models", "/v1/models", "/sdapi/v1/sd-models", "/api/openapi.json"):
        response = locked.get(path)
        assert response.status_code == 401 and response.get_json()["error"]["type"] == "authentication_error"
    assert locked.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_bearer_and_basic_keys_work(locked):
    assert locked.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    basic = base64.b64encode(b"anyone:s3cret").decode()
    assert locked.get("/sdapi/v1/sd-models", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_api_key_from_the_environment(tiny_sd, monkeypatch):
    from service import create_app

    monkeypatch.setenv("DIFFUSE_KIT_API_KEY", "env-key")
    client = create_app({"MODEL": tiny_sd}).test_client()
    assert client.get("/api/models").status_code == 401
    assert client.get("/api/models", headers={"Authorization": "Bearer env-key"}).status_code == 200


def test_cors_is_off_unless_an_origin_is_given(client, tiny_sd):
    from service import create_app

    assert "Access-Control-Allow-Origin" not in client.get("/api/health", headers={"Origin": "http://x"}).headers
    open_client = create_app({"MODEL": tiny_sd, "CORS_ORIGIN": "http://x"}).test_client()
    assert (
        open_client.get("/api/health", headers={"Origin": "http://x"}).headers["Access-Control-Allow-Origin"]
        == "http://x"
    )
    assert "Access-Control-Allow-Origin" not in open_client.get("/api/health", headers={"Origin": "http://y"}).headers


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="generate"' in page.data
    assert client.get("/static/app.js").status_code == 200
