"""The service on a real waitress server on a loopback port: streaming, disconnects, bursts,
memory, the official openai client and the web page in headless Chromium."""

import base64
import concurrent.futures
import http.client
import io
import json
import threading
import time
import urllib.error
import urllib.request

import psutil
import pytest
from browser import SCREENSHOTS, chromium_page
from PIL import Image


@pytest.fixture
def serve(tiny_sd):
    """Start create_app(config) on a free loopback port with the production server."""
    from service import create_app, make_server

    servers = []

    def start(**config):
        app = create_app({"MODEL": tiny_sd, **config})
        server = make_server(app, "127.0.0.1", 0)
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        return app, f"127.0.0.1:{server.effective_port}"

    yield start
    for server in servers:
        server.close()


def post(address: str, path: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{address}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(address: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as response:
        return json.loads(response.read())


def open_stream(address: str, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/api/images", json.dumps(body), {"Content-Type": "application/json"})
    return connection, connection.getresponse()


def test_progress_really_streams_through_waitress(serve):
    _, address = serve()
    connection, response = open_stream(address, {"prompt": "a cat", "steps": 40, "width": 256, "height": 256})
    first = json.loads(response.readline())
    assert first["type"] == "progress" and first["step"] == 1
    assert get(address, "/api/health")["running"]  # the first line came while the job still ran
    lines = [json.loads(line) for line in response.read().splitlines()]
    assert len(lines) == 40 and lines[-1]["type"] == "result"
    connection.close()


def test_a_client_that_disconnects_cancels_its_job(serve):
    _, address = serve()
    connection, response = open_stream(address, {"prompt": "a cat", "steps": 150, "width": 256, "height": 256})
    response.readline()
    job_id = get(address, "/sdapi/v1/progress")["state"]["job"]
    response.close()  # the browser tab went away (the response holds the socket too)
    connection.close()
    deadline = time.monotonic() + 30
    while get(address, f"/api/jobs/{job_id}")["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    job = get(address, f"/api/jobs/{job_id}")
    assert job["state"] == "cancelled" and job["progress"]["step"] < 150


@pytest.mark.slow
def test_burst_of_clients_with_a_small_queue(serve, capsys):
    _, address = serve(QUEUE_SIZE=2)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(post, address, "/api/images", {"prompt": "a cat", "steps": 4, "stream": False}, 120)
                   for _ in range(24)]  # fmt: skip
        statuses = [future.result(timeout=150)[0] for future in futures]  # none may hang
    elapsed = time.monotonic() - started
    done, refused = statuses.count(200), statuses.count(429)
    with capsys.disabled():
        print(f"\nburst: 24 clients, queue 2: {done} done, {refused} refused (429), {elapsed:.1f}s")
    assert done + refused == 24 and done >= 3 and refused >= 1
    assert get(address, "/api/health")["status"] == "ok"
    assert post(address, "/api/images", {"prompt": "a cat", "steps": 2, "stream": False})[0] == 200


@pytest.mark.slow
def test_memory_stays_flat_over_hundreds_of_requests(serve, capsys):
    _, address = serve()
    body = {"prompt": "a cat", "steps": 1, "stream": False, "width": 64, "height": 64}
    for _ in range(20):  # warm up caches and thread pools before measuring
        post(address, "/api/images", body)
    process = psutil.Process()
    before = process.memory_info().rss
    for _ in range(300):
        assert post(address, "/api/images", body)[0] == 200
    growth_mb = (process.memory_info().rss - before) / 2**20
    with capsys.disabled():
        print(f"\nmemory: 300 requests, RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 64


def test_the_official_openai_client_works_unchanged(serve, tiny_sd):
    openai = pytest.importorskip("openai")
    _, address = serve(API_KEY="k")
    client = openai.OpenAI(base_url=f"http://{address}/v1", api_key="k")
    assert tiny_sd in [model.id for model in client.models.list()]
    answer = client.images.generate(prompt="a cat", size="64x64", n=2, response_format="b64_json")
    images = [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in answer.data]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"http://{address}/v1", api_key="wrong").models.list()
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.images.generate(prompt="a cat", response_format="url")


def test_the_openai_client_chats_plain_and_streamed(serve, capsys):
    openai = pytest.importorskip("openai")
    _, address = serve(API_KEY="k")
    client = openai.OpenAI(base_url=f"http://{address}/v1", api_key="k")
    assert "demo-text" in [model.id for model in client.models.list()]
    messages = [{"role": "user", "content": "Write an image prompt about: a purple circle"}]
    plain = client.chat.completions.create(model="demo-text", messages=messages, seed=7)
    stream = client.chat.completions.create(model="demo-text", messages=messages, seed=7, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    with capsys.disabled():
        print(f"\nopenai client, streamed: {pieces} -> usage {chunks[-1].usage}")
    assert len(pieces) > 1 and "".join(pieces) == plain.choices[0].message.content
    assert "purple circle" in plain.choices[0].message.content
    assert plain.usage.total_tokens == chunks[-1].usage.total_tokens > 0
    with pytest.raises(openai.NotFoundError, match="not served"):
        client.chat.completions.create(model="gpt-4o", messages=messages)


@pytest.mark.slow
def test_web_page_chat_streams_and_sends_a_reply_to_image(serve):
    _, address = serve()
    with chromium_page(1100, 900) as page:
        page.goto(f"http://{address}/")
        page.locator("#chat-model option").first.wait_for(state="attached")
        assert page.input_value("#chat-model") == "demo-text"
        page.fill("#chat-input", "Write an image prompt about: a black triangle")
        page.click("#chat-send")
        page.locator(".message.assistant button").first.wait_for(timeout=30_000)  # the reply ended
        reply = page.locator(".message.assistant span").first.inner_text()
        assert "black triangle" in reply
        page.click(".message.assistant button")  # send to image
        assert page.input_value("#prompt") == reply.strip()
        page.fill("#prompt", "yellow square")
        page.click("#suggest")
        page.wait_for_function("document.getElementById('prompt').value.endsWith('background')")
        assert "yellow square" in page.input_value("#prompt")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "web-page-chat.png", full_page=True)


@pytest.mark.slow
def test_web_page_generates_with_progress(serve):
    _, address = serve(PREVIEW_EVERY=1)
    with chromium_page(1100, 900) as page:
        page.goto(f"http://{address}/")
        page.locator("#model option").first.wait_for(state="attached")
        page.fill("#prompt", "a blue square on a yellow background")
        page.fill("#seed", "5")
        page.locator("#steps").fill("60")
        page.click("#generate")
        page.wait_for_function("document.getElementById('progress').value > 0")  # progress came first
        assert page.locator("#status").inner_text().startswith("step")
        page.locator("#gallery img").first.wait_for(timeout=60_000)
        assert "Seed: 5" in page.locator("#gallery pre").first.inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "web-page.png", full_page=True)
        page.locator("#gallery button").first.click()  # reuse settings
        assert page.input_value("#seed") == "5"
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=SCREENSHOTS / "web-page-phone.png", full_page=True)


def test_the_readme_command_starts_the_service(repo_root, tiny_sd):
    import subprocess
    import sys

    from browser import free_port, wait_for_http

    port = free_port()
    command = [sys.executable, "python-service/src/service.py", "--host", "127.0.0.1", "--port", str(port),
               "--model", tiny_sd]  # fmt: skip
    server = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=60)
        assert get(f"127.0.0.1:{port}", "/api/models")["default"] == tiny_sd
        status, body = post(f"127.0.0.1:{port}", "/api/images", {"prompt": "a cat", "steps": 2, "stream": False})
        assert status == 200 and body["type"] == "result"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output
