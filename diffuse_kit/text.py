"""Text generation with transformers: chat template, streaming, seeds, cancel, PEFT adapters.

Causal LMs load from the same sources as image models (the embedded `demo-text`, a local
folder, a hub id through the Hugging Face cache), with the same device/dtype policy, into a
cache of their own, so that one text model and one image model can stay loaded together
(text -> prompt -> image would otherwise reload both every turn).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    TextIteratorStreamer,
)
from transformers.utils import logging as transformers_logging

from diffuse_kit.errors import InvalidRequestError, ModelNotFoundError
from diffuse_kit.generation import CancelToken
from diffuse_kit.models import (
    DEMO_DIR,
    HUB_ID,
    ModelCache,
    cached_hub_models,
    hub_error,
    pick_device,
    pick_dtype,
    use_physical_cores,
)
from diffuse_kit.requests import MAX_SEED, TextRequest, validate

EMBEDDED_TEXT_MODELS = {"demo-text": DEMO_DIR / "text"}
END = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
# The demo model's template, and the fallback for tokenizers that have none (base models):
# each message is its role token, a newline, the content and END.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

Message = dict[str, str]


def suggest_messages(seed_text: str = "") -> list[Message]:
    """The request for an image prompt that the demo text model was trained to answer."""
    about = f" about: {seed_text.strip()}" if seed_text.strip() else ""
    return [{"role": "user", "content": f"Write an image prompt{about}"}]


# -- loading ------------------------------------------------------------------------------


@dataclass
class LoadedTextModel:
    """A causal LM with its tokenizer (and PEFT adapter), and what it was loaded with."""

    id: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    adapter: str | None = None

    @property
    def name(self) -> str:
        return Path(self.id).name if os.sep in self.id and not HUB_ID.match(self.id) else self.id

    @property
    def context_length(self) -> int:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)


def _source(model: str) -> str | Path:
    if model in EMBEDDED_TEXT_MODELS:
        return EMBEDDED_TEXT_MODELS[model]
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model: {path} is not a transformers model folder (it has no config.json)")
        return path.resolve()
    if HUB_ID.match(model):
        return model
    raise ModelNotFoundError(
        f"model: unknown text model {model!r}: not an embedded model ({', '.join(EMBEDDED_TEXT_MODELS)}), "
        "a transformers folder or a hub id like 'owner/name'"
    )


def _load(model: str, adapter: str | None, device: torch.device, dtype: torch.dtype) -> LoadedTextModel:
    source = _source(model)
    transformers_logging.disable_progress_bar()  # loading bars would flood notebooks and logs
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        network = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:  # huggingface_hub's offline / not-found errors are OSErrors
        raise hub_error(model, exc) from exc
    if adapter is not None:
        network = _with_adapter(network, adapter)
    network.to(device).eval()
    if device.type == "cpu":
        use_physical_cores()
    return LoadedTextModel(model, network, tokenizer, device, dtype, adapter)


def _with_adapter(network: PreTrainedModel, adapter: str) -> PreTrainedModel:
    from peft import PeftModel  # imported here: only adapters need it

    path = Path(adapter).expanduser()
    if not path.is_dir() and not HUB_ID.match(adapter):
        raise ModelNotFoundError(f"adapter: {adapter!r} is neither a PEFT adapter folder nor a hub id", "adapter")
    try:
        return PeftModel.from_pretrained(network, str(path) if path.is_dir() else adapter)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"adapter: cannot load {adapter!r}: {exc}", "adapter") from exc


TEXT_CACHE = ModelCache()


def load_text(
    model: str = "demo-text",
    *,
    adapter: str | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedTextModel:
    """The loaded text model (with `adapter`, a PEFT folder or hub id), from the cache when there."""
    target = pick_device(device)
    precision = pick_dtype(target, dtype)
    key = (model, adapter, str(target), precision)
    return TEXT_CACHE.fetch(key, target, lambda: _load(model, adapter, target, precision))


def known_text_models(extra: list[str] = ()) -> list[str]:
    """Text model ids a picker can offer: the embedded ones, cached hub causal LMs, `extra`."""
    ids = [*EMBEDDED_TEXT_MODELS, *(m.id for m in cached_hub_models() if m.kind == "text model"), *extra]
    return list(dict.fromkeys(ids))


# -- generation ---------------------------------------------------------------------------


@dataclass
class ChatResult:
    """A finished reply: its text, why it ended, and the token counts (OpenAI's `usage`)."""

    text: str
    finish_reason: str  # "stop" (end of turn or a stop string), "length", or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    seed: int
    model: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


class _Halt(StoppingCriteria):
    """Ends generation at the next token once cancelled or a stop string was seen."""

    def __init__(self, cancel: CancelToken | None) -> None:
        self.cancel, self.halted = cancel, threading.Event()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        stop = self.halted.is_set() or (self.cancel is not None and self.cancel.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)


class ChatStream:
    """Iterate for the reply's text pieces as they are generated; then `.result` holds the ChatResult.

    Generation runs in a worker thread feeding transformers' TextIteratorStreamer. Leaving
    the loop early (or `close()`) stops generation at the next token.
    """

    def __init__(self, loaded: LoadedTextModel, request: TextRequest, cancel: CancelToken | None = None) -> None:
        self.loaded, self.request, self.cancel = loaded, request, cancel
        self.seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        self.inputs = encode_prompt(loaded, request)
        self.result: ChatResult | None = None
        self._halt = _Halt(cancel)
        self._pieces = self._run()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()

    def _run(self) -> Iterator[str]:
        started = time.perf_counter()
        streamer = TextIteratorStreamer(self.loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}
        worker = threading.Thread(target=self._generate, args=(streamer, outcome), name="diffuse-kit-text")
        worker.start()
        stops = StopMatcher(self.request.stop)
        try:
            for piece in streamer:
                if self._halt.halted.is_set():
                    continue  # drain what was queued before the halt took effect
                text, stopped = stops.feed(piece)
                if stopped:
                    self._halt.halted.set()
                if text:
                    yield text
            if not self._halt.halted.is_set() and (rest := stops.flush()):
                yield rest
        finally:
            self._halt.halted.set()  # the consumer left early: stop generating
            worker.join()
        if "error" in outcome:
            raise outcome["error"]
        self.result = self._result(stops, outcome["sequence"], started)

    def _generate(self, streamer: TextIteratorStreamer, outcome: dict[str, Any]) -> None:
        request = self.request
        sampling = (
            {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p}
            if request.temperature > 0
            else {"do_sample": False}
        )
        try:
            # transformers samples from torch's global generator; seeding it here makes a seed
            # repeat its reply (replies are generated one at a time, see the service's queue).
            torch.manual_seed(self.seed)
            with torch.inference_mode():
                output = self.loaded.model.generate(
                    **self.inputs,
                    **sampling,
                    max_new_tokens=request.max_new_tokens,
                    streamer=streamer,
                    stopping_criteria=[self._halt],
                    pad_token_id=self.loaded.tokenizer.pad_token_id or self.loaded.tokenizer.eos_token_id,
                )
            outcome["sequence"] = output[0, self.inputs["input_ids"].shape[1] :].tolist()
        except Exception as exc:  # raised again in the consuming thread
            outcome["error"] = exc
            streamer.end()

    def _result(self, stops: StopMatcher, sequence: list[int], started: float) -> ChatResult:
        eos = self.loaded.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        if self.cancel is not None and self.cancel.is_set():
            reason = "cancelled"
        elif stops.found or (sequence and sequence[-1] in eos_ids):
            reason = "stop"
        else:
            reason = "length" if len(sequence) >= self.request.max_new_tokens else "stop"
        return ChatResult(
            text=stops.text,
            finish_reason=reason,
            prompt_tokens=int(self.inputs["input_ids"].shape[1]),
            completion_tokens=len(sequence),
            seed=self.seed,
            model=self.loaded.name,
            timings={"total_s": time.perf_counter() - started},
        )


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back a tail that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops, self.text, self._pending, self.found = stops, "", "", False

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that is safe to emit now, and whether a stop string was found."""
        pending = self._pending + piece
        for stop in self.stops:
            if (at := pending.find(stop)) >= 0:
                self.found = True
                return self._emit(pending[:at], ""), True
        hold = max((n for stop in self.stops for n in range(len(stop), 0, -1) if pending.endswith(stop[:n])), default=0)
        return self._emit(pending[: len(pending) - hold], pending[len(pending) - hold :]), False

    def flush(self) -> str:
        return self._emit(self._pending, "")

    def _emit(self, text: str, pending: str) -> str:
        self.text += text
        self._pending = pending
        return text


def encode_prompt(loaded: LoadedTextModel, request: TextRequest) -> dict[str, torch.Tensor]:
    """The messages through the tokenizer's chat template (CHAT_TEMPLATE when it has none)."""
    tokenizer = loaded.tokenizer
    messages = [message.model_dump() for message in request.messages]
    try:
        ids = tokenizer.apply_chat_template(
            messages,
            chat_template=None if tokenizer.chat_template else CHAT_TEMPLATE,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        )
    except jinja2.TemplateError as exc:  # e.g. a template that refuses the system role
        raise _invalid("messages", f"{loaded.name}'s chat template refused them: {exc}") from exc
    length = ids["input_ids"].shape[1]
    if length + request.max_new_tokens > loaded.context_length:
        raise _invalid(
            "messages",
            f"{length} prompt tokens + max_new_tokens {request.max_new_tokens} exceed {loaded.name}'s context "
            f"of {loaded.context_length} tokens; send fewer or shorter messages",
        )
    return {name: tensor.to(loaded.device) for name, tensor in ids.items()}


def _invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param)


def check_fits(request: TextRequest) -> None:
    """Raise InvalidRequestError now if the conversation cannot be encoded or is too long for the
    model (the service checks before queueing, so that a stream never starts with an error)."""
    encode_prompt(load_text(request.model, adapter=request.adapter), request)


def stream_chat(request: TextRequest, cancel: CancelToken | None = None) -> ChatStream:
    """Start a validated request: iterate the returned ChatStream for pieces, then read .result."""
    return ChatStream(load_text(request.model, adapter=request.adapter), request, cancel)


def run_chat(
    request: TextRequest, *, on_text: Callable[[str], None] | None = None, cancel: CancelToken | None = None
) -> ChatResult:
    """Run a validated request to its end, passing each piece to `on_text`; the service's call."""
    stream = stream_chat(request, cancel)
    for piece in stream:
        if on_text is not None:
            on_text(piece)
    assert stream.result is not None
    return stream.result


def chat(
    messages: list[Message] | str,
    *,
    model: str = "demo-text",
    stream: bool = False,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int | None = None,
    stop: list[str] | str | None = None,
    adapter: str | None = None,
    cancel: CancelToken | None = None,
) -> str | ChatStream:
    """Reply to `messages` ([{"role": "system"|"user"|"assistant", "content": ...}], or one user
    message as a string): the reply's text, or with `stream=True` a ChatStream of its pieces.

    `temperature` 0 is greedy decoding; `seed` None picks one at random (ChatStream.result.seed);
    `stop` strings end the reply before them; `adapter` is a PEFT adapter folder or hub id
    applied on top of `model`; setting `cancel` stops at the next token.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    request = validate(TextRequest, dict(
        messages=messages, model=model, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, seed=seed, stop=stop, adapter=adapter,
    ))  # fmt: skip
    pieces = stream_chat(request, cancel)
    return pieces if stream else "".join(pieces)


def suggest_fields(seed_text: str = "", *, model: str = "demo-text", seed: int | None = None) -> dict[str, Any]:
    """chat()'s arguments that ask for one image prompt (one line) about `seed_text`."""
    return dict(messages=suggest_messages(seed_text), model=model, seed=seed, max_new_tokens=64, stop=["\n"])


def suggest_prompt(seed_text: str = "", *, model: str = "demo-text", seed: int | None = None) -> str:
    """An image prompt written by a text model, about `seed_text` (words it should use) if given."""
    return chat(**suggest_fields(seed_text, model=model, seed=seed)).strip()
