"""Train the embedded demo text model (`demo-text`) from scratch, offline, seeded.

    python tools/train_demo_text.py [--out diffuse_kit/demo/text] [--steps 4000]

A byte-level BPE tokenizer (so any input text encodes; no unknown tokens) trained on
conversations about the demo world, with a chat template; then a tiny GPT-2 (4 layers,
128 wide, ~1M parameters) trained on those conversations with the loss on the assistant's
replies only. Asked for an image prompt (see `diffuse_kit.text.suggest_messages`), it answers
with one that the demo image model can draw, using the words it was asked about. About 18
minutes on a 2-core Zen 4 (0.26 s/step). The loss sits near 0.55 (replies that ignore the
request) for ~1000 steps, then falls to ~0.35 as the model learns to use the request's words.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from diffuse_kit.demo import world
from diffuse_kit.demo.tokenizer import build_byte_bpe
from diffuse_kit.text import CHAT_TEMPLATE, END, ROLE_TOKENS, suggest_messages

SEED = 4321
SYSTEM_PROMPTS = (
    "You write prompts for the demo image model.",
    "You are a helpful assistant.",
    "Answer with one short image prompt.",
)
ASKS = (
    "Give me an image prompt.",
    "Suggest a prompt.",
    "What should I draw?",
    "Describe a picture I can generate.",
    "Write a prompt for the demo model.",
)
GREETINGS = ("hello", "Hi!", "who are you?", "What can you do?", "thanks")

Message = dict[str, str]


def hint(scene: world.Scene, rng: np.random.Generator) -> str:
    """Some words of the scene, as a user would seed a suggestion with them. A colour word
    names the shape's colour unless "on" puts it in the background: mixed with forms where a
    lone colour meant the background, the tiny model never learned to use hints at all."""
    size = f"{scene.size} " if scene.size else ""
    options = (
        f"{scene.colour} {scene.shape}",
        f"a {scene.colour} {scene.shape}",
        f"{size}{scene.colour} {scene.shape}",
        f"{scene.colour} {scene.shape} on {scene.background}",
        f"{size}{scene.colour} {scene.shape} on {scene.background}",
        scene.shape,
    )
    return str(rng.choice(options))


def exchange(rng: np.random.Generator) -> list[Message]:
    """One user turn and the assistant's reply."""
    scene = world.random_scene(rng)
    if rng.random() < 0.3:
        scene = world.Scene(scene.colour, scene.shape, scene.background)  # no size word
    kind = rng.random()
    if kind < 0.05:
        reply = f"Hello! I write prompts for the demo image model, such as: {scene.prompt}"
        return [{"role": "user", "content": str(rng.choice(GREETINGS))}, {"role": "assistant", "content": reply}]
    if kind < 0.25:
        user = [{"role": "user", "content": str(rng.choice(ASKS))}]
    else:
        user = suggest_messages(hint(scene, rng) if rng.random() < 0.85 else "")
    return [*user, {"role": "assistant", "content": scene.prompt}]


def conversation(rng: np.random.Generator) -> list[Message]:
    messages = [{"role": "system", "content": str(rng.choice(SYSTEM_PROMPTS))}] if rng.random() < 0.3 else []
    for _ in range(1 + int(rng.random() < 0.2)):  # a fifth have an earlier exchange as history
        messages += exchange(rng)
    return messages


def render(messages: list[Message]) -> list[tuple[str, bool]]:
    """The chat template's text in pieces, each marked whether the model learns to write it."""
    pieces = []
    for message in messages:
        learn = message["role"] == "assistant"
        pieces += [(f"{ROLE_TOKENS[message['role']]}\n", False), (f"{message['content']}{END}\n", learn)]
    return pieces


def build_tokenizer(rng: np.random.Generator, folder: Path) -> PreTrainedTokenizerFast:
    corpus = ["".join(text for text, _ in render(conversation(rng))) for _ in range(5000)]
    return build_byte_bpe(
        corpus, folder, vocab_size=512, end=END, special=ROLE_TOKENS.values(),
        model_max_length=512, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip


def encode(tokenizer: PreTrainedTokenizerFast, messages: list[Message]) -> tuple[list[int], list[int]]:
    ids, labels = [], []
    for text, learn in render(messages):
        piece = tokenizer(text, add_special_tokens=False).input_ids
        ids += piece
        labels += piece if learn else [-100] * len(piece)
    return ids, labels


def batch(tokenizer: PreTrainedTokenizerFast, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
    rows = [encode(tokenizer, conversation(rng)) for _ in range(size)]
    length = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([ids + [pad] * (length - len(ids)) for ids, _ in rows]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids, _ in rows]),
        "labels": torch.tensor([labels + [-100] * (length - len(labels)) for _, labels in rows]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("diffuse_kit/demo/text"))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)  # fixed so that the float reductions, and so the weights, repeat
    rng = np.random.default_rng(SEED)
    tokenizer = build_tokenizer(rng, args.out)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=128,
        n_layer=4,
        n_head=4,
        # No dropout: every batch is freshly generated, so there is nothing to overfit.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    start = time.time()
    for step in range(1, args.steps + 1):
        loss = model(**batch(tokenizer, rng, args.batch)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(args.out)
    print(f"saved {args.out}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")


if __name__ == "__main__":
    main()
