"""Handmade CLIP tokenizers: byte-level BPE whose merges make each given word one token.

The demo model's tokenizer is built this way from the words of its world, and so are the
tiny test pipelines', with no download.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from transformers import CLIPTokenizer

MAX_LENGTH = 77  # CLIP's; without it the limit is ~1e30 and padding overflows


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}


def _apply_merges(tokens: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """What BPE does with `tokens`: merge the best-ranked adjacent pair until none is known."""
    while len(tokens) > 1:
        rank, i = min((ranks.get(pair, math.inf), i) for i, pair in enumerate(pairwise(tokens)))
        if rank == math.inf:
            break
        tokens = [*tokens[:i], tokens[i] + tokens[i + 1], *tokens[i + 2 :]]
    return tokens


def build_clip_tokenizer(words: Iterable[str], folder: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt to `folder` and return the tokenizer saved there.

    Each word's merges are appended after the earlier words' have done what they can, so a
    later merge never breaks an earlier word: BPE always prefers the lower rank.
    """
    chars = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars])}
    merges: list[tuple[str, str]] = []
    for word in words:
        tokens = _apply_merges([*word[:-1], word[-1] + "</w>"], {m: i for i, m in enumerate(merges)})
        while len(tokens) > 1:
            merges.append((tokens[0], tokens[1]))
            tokens = [tokens[0] + tokens[1], *tokens[2:]]
            vocab.setdefault(tokens[0], len(vocab))
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=MAX_LENGTH
    )
    tokenizer.save_pretrained(folder)
    return tokenizer
