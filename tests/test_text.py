"""Text generation: chat template, streaming, seeds, stop strings, cancel, adapters, errors."""

import shutil
import threading

import pytest
import torch

import diffuse_kit
from diffuse_kit import InvalidRequestError, ModelNotFoundError, TextRequest
from diffuse_kit.demo import world
from diffuse_kit.models import CACHE, load
from diffuse_kit.testing import tiny_text_model_folder
from diffuse_kit.text import CHAT_TEMPLATE, EMBEDDED_TEXT_MODELS, encode_prompt, load_text, stream_chat


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    """A tiny random GPT-2 without a chat template; its replies run to max_new_tokens."""
    return str(tiny_text_model_folder(tmp_path_factory.mktemp("tiny") / "tiny-lm"))


def request(**fields) -> TextRequest:
    fields.setdefault("messages", [{"role": "user", "content": "hello"}])
    return TextRequest(**fields)


def test_the_chat_template_marks_each_role_and_asks_for_the_reply():
    loaded = load_text("demo-text")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write an image prompt"}]
    ids = encode_prompt(loaded, request(messages=messages))["input_ids"][0]
    text = loaded.tokenizer.decode(ids)
    assert text == "<|system|>\nBe brief.<|end|>\n<|user|>\nWrite an image prompt<|end|>\n<|assistant|>\n"


def test_a_tokenizer_without_a_template_gets_the_documented_fallback(tiny_lm):
    loaded = load_text(tiny_lm)
    assert not loaded.tokenizer.chat_template
    ids = encode_prompt(loaded, request(messages=[{"role": "user", "content": "a cat"}]))["input_ids"][0]
    assert loaded.tokenizer.decode(ids) == "<|user|>\na cat<|end|>\n<|assistant|>\n"
    assert "<|assistant|>" in CHAT_TEMPLATE


def test_streaming_gives_the_same_reply_as_plain_for_the_same_seed():
    messages = [{"role": "user", "content": "Write an image prompt about: a blue square"}]
    for seed in (1, 2, 3):
        stream = diffuse_kit.chat(messages, seed=seed, stream=True)
        pieces = list(stream)
        assert len(pieces) > 1  # it really streamed
        assert "".join(pieces) == stream.result.text == diffuse_kit.chat(messages, seed=seed)
        assert stream.result.seed == seed and stream.result.finish_reason == "stop"


def test_different_seeds_give_different_replies():
    replies = {diffuse_kit.chat("Write an image prompt", seed=seed, temperature=1.0) for seed in range(6)}
    assert len(replies) >= 3


def test_token_counts_and_length_limit(tiny_lm):
    stream = stream_chat(request(model=tiny_lm, max_new_tokens=7, seed=0))
    "".join(stream)
    result = stream.result
    assert result.finish_reason == "length" and result.completion_tokens == 7
    assert result.prompt_tokens == len(encode_prompt(load_text(tiny_lm), request(model=tiny_lm))["input_ids"][0])
    assert result.usage == {"prompt_tokens": result.prompt_tokens, "completion_tokens": 7,
                            "total_tokens": result.prompt_tokens + 7}  # fmt: skip


def test_a_stop_string_ends_the_reply_before_it(tiny_lm):
    full = diffuse_kit.chat("a cat", model=tiny_lm, seed=0, temperature=1, max_new_tokens=40)
    stop = full[12:15]
    cut = full[: full.index(stop)]
    stream = diffuse_kit.chat("a cat", model=tiny_lm, seed=0, temperature=1, max_new_tokens=40, stop=stop, stream=True)
    assert len(set(full)) > 5 and "".join(stream) == cut == stream.result.text
    assert stream.result.finish_reason == "stop"


def test_cancel_stops_the_reply_and_says_so(tiny_lm):
    cancel = threading.Event()
    stream = diffuse_kit.chat("a cat", model=tiny_lm, max_new_tokens=500, stream=True, cancel=cancel)
    for count, _ in enumerate(stream):
        if count == 2:
            cancel.set()
    assert stream.result.finish_reason == "cancelled"
    assert stream.result.completion_tokens < 100  # of 500: it stopped (a few were in flight)


def test_leaving_the_stream_early_stops_the_generation_thread(tiny_lm):
    before = threading.active_count()
    stream = diffuse_kit.chat("a cat", model=tiny_lm, max_new_tokens=200, stream=True)
    next(iter(stream))
    stream.close()
    assert threading.active_count() == before
    assert stream.result is None  # no result for a reply nobody read to the end


def test_a_lora_adapter_made_with_peft_loads_by_path(tiny_lm, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    # init_lora_weights=False: random B, so the adapter changes the replies (the default starts at zero).
    config = LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_lm), config).save_pretrained(tmp_path / "adapter")

    plain = diffuse_kit.chat("a cat", model=tiny_lm, temperature=0, max_new_tokens=12)
    adapted = diffuse_kit.chat("a cat", model=tiny_lm, adapter=str(tmp_path / "adapter"), temperature=0,
                               max_new_tokens=12)  # fmt: skip
    assert adapted != plain
    loaded = load_text(tiny_lm, adapter=str(tmp_path / "adapter"))
    assert type(loaded.model).__name__ == "PeftModel" and loaded.adapter == str(tmp_path / "adapter")
    assert diffuse_kit.chat("a cat", model=tiny_lm, temperature=0, max_new_tokens=12) == plain


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"seed": -5}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_parameters_name_the_field(fields, param):
    messages = fields.pop("messages", [{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidRequestError) as error:
        diffuse_kit.chat(messages, **fields)
    assert error.value.param == param and str(error.value).startswith(param)


def test_a_conversation_longer_than_the_context_is_refused():
    with pytest.raises(InvalidRequestError, match="context of 512 tokens") as error:
        diffuse_kit.chat("a red circle " * 200)
    assert error.value.param == "messages"


def test_missing_models_and_adapters_are_clear_errors(tmp_path, tiny_lm):
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE") as error:
        diffuse_kit.chat("hi", model="someone/no-such-model")
    assert error.value.param == "model"
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        diffuse_kit.chat("hi", model=str(tmp_path))
    with pytest.raises(ModelNotFoundError) as error:
        diffuse_kit.chat("hi", model=tiny_lm, adapter=str(tmp_path / "nothing-here"))
    assert error.value.param == "adapter"


def test_text_and_image_models_stay_loaded_together():
    image = load("demo")
    text = load_text("demo-text")
    assert load("demo") is image and load_text("demo-text") is text  # a second call is free
    assert image in CACHE.loaded()


def test_the_embedded_model_is_small():
    size = sum(f.stat().st_size for f in EMBEDDED_TEXT_MODELS["demo-text"].iterdir())
    assert size <= 5 * 1024 * 1024


def test_demo_text_writes_prompts_the_demo_image_model_can_draw():
    prompts = [diffuse_kit.suggest_prompt(seed=seed) for seed in range(50)]
    valid = [p for p in prompts if world.parse_prompt(p)]
    print(f"demo-text: {len(valid)}/50 valid demo-world prompts, {len(set(valid))} distinct; e.g. {prompts[:3]}")
    assert len(valid) >= 40  # the bar: 80%
    assert len(set(valid)) >= 20  # and not one memorised sentence


def test_suggestions_use_the_words_they_are_seeded_with():
    scenes = [world.parse_prompt(diffuse_kit.suggest_prompt("blue square", seed=seed)) for seed in range(20)]
    following = [s for s in scenes if s and s.colour == "blue" and s.shape == "square"]
    assert len(following) >= 16


def test_text_to_prompt_to_image():
    prompt = diffuse_kit.suggest_prompt("white circle on blue", seed=4)
    scene = world.parse_prompt(prompt)
    assert scene is not None and scene.background == "blue"
    image = diffuse_kit.generate(prompt, seed=4).images[0]
    assert world.measure(image).background == "blue"


def test_the_cli_streams_a_reply(capsys):
    from diffuse_kit.cli import main

    assert main(["chat", "Write an image prompt about: a red circle", "--seed", "1"]) == 0
    reply = capsys.readouterr().out.strip()
    assert reply == diffuse_kit.chat("Write an image prompt about: a red circle", seed=1)
    assert main(["chat", "hi", "--temperature", "9"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_copied_model_folders_load_by_path(tmp_path):
    folder = shutil.copytree(EMBEDDED_TEXT_MODELS["demo-text"], tmp_path / "my-demo")
    assert diffuse_kit.chat("Write an image prompt", model=str(folder), seed=2) == diffuse_kit.chat(
        "Write an image prompt", seed=2
    )
