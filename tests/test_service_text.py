"""The text routes through Flask's test client: /api/text, /api/suggest, /v1/chat/completions."""

import json

import diffuse_kit
from diffuse_kit.demo import world

ASK = [{"role": "user", "content": "Write an image prompt about: a blue square"}]


def ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def sse(response) -> list[dict | str]:
    """The `data:` payloads of an event stream: JSON objects, and the final "[DONE]"."""
    events = [line.removeprefix("data: ") for line in response.get_data(as_text=True).split("\n\n") if line]
    return [event if event == "[DONE]" else json.loads(event) for event in events]


def test_text_streams_tokens_then_the_result(client):
    response = client.post("/api/text", json={"messages": ASK, "seed": 1})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = ndjson(response)
    tokens, result = lines[:-1], lines[-1]
    assert len(tokens) > 1 and {line["type"] for line in tokens} == {"token"}
    assert result["type"] == "result" and result["text"] == "".join(line["text"] for line in tokens)
    assert result["text"] == diffuse_kit.chat(ASK, seed=1)  # the engine's reply, unchanged
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert result["finish_reason"] == "stop" and result["model"] == "demo-text"


def test_text_takes_a_prompt_shorthand_and_answers_one_object(client):
    body = client.post("/api/text", json={"prompt": ASK[0]["content"], "seed": 1, "stream": False}).get_json()
    assert body["type"] == "result" and body["text"] == diffuse_kit.chat(ASK, seed=1)


def test_text_errors_name_the_field(client):
    cases = [
        ({"messages": ASK, "prompt": "hi"}, 400, "messages"),
        ({}, 400, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role"),
        ({"prompt": "hi", "temperature": 5}, 400, "temperature"),
        ({"prompt": "hi", "model": "demo"}, 404, "model"),  # an image model is no text model
        ({"prompt": "hi", "model": "/etc"}, 404, "model"),  # never a path a client made up
        ({"prompt": "hi", "adapter": "/tmp/x"}, 400, "adapter"),
        ({"prompt": "hi " * 300}, 400, "messages"),  # longer than demo-text's context
    ]
    for body, status, param in cases:
        response = client.post("/api/text", json=body)
        assert response.status_code == status, body
        assert response.get_json()["error"]["param"] == param, body


def test_models_lists_text_models_with_their_kind(client):
    models = client.get("/api/models").get_json()
    kinds = {m["id"]: m["kind"] for m in models["data"]}
    assert kinds["demo-text"] == "text" and kinds["demo"] == "image" and models["default_text"] == "demo-text"
    assert "demo-text" in [m["id"] for m in client.get("/v1/models").get_json()["data"]]


def test_suggest_writes_a_prompt_the_image_model_can_draw(client):
    body = client.post("/api/suggest", json={"seed_text": "green triangle", "seed": 2}).get_json()
    scene = world.parse_prompt(body["prompt"])
    assert scene is not None and (scene.colour, scene.shape) == ("green", "triangle")
    assert body["prompt"] == diffuse_kit.suggest_prompt("green triangle", seed=2)


def test_chat_completions_plain_answer(client):
    body = client.post("/v1/chat/completions", json={"model": "demo-text", "messages": ASK, "seed": 1}).get_json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert world.parse_prompt(choice["message"]["content"]) is not None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_completions_stream_is_server_sent_chunks_ending_done(client):
    request = {"messages": ASK, "seed": 1, "stream": True, "stream_options": {"include_usage": True}}
    response = client.post("/v1/chat/completions", json=request)
    assert response.mimetype == "text/event-stream"
    events = sse(response)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    plain = client.post("/v1/chat/completions", json={"messages": ASK, "seed": 1}).get_json()
    assert text == plain["choices"][0]["message"]["content"]
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]


def test_chat_completions_accepts_openai_message_shapes(client):
    messages = [
        {"role": "developer", "content": "You write prompts."},
        {"role": "user", "content": [{"type": "text", "text": "Write an image prompt about: "},
                                     {"type": "text", "text": "a red circle"}]},
    ]  # fmt: skip
    body = client.post("/v1/chat/completions", json={"messages": messages, "seed": 3, "max_tokens": 40}).get_json()
    assert "red circle" in body["choices"][0]["message"]["content"]
    bad = client.post("/v1/chat/completions", json={"messages": ASK, "n": 2})
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "n"
