"""Tokenizers built offline: handmade CLIP tokenizers whose merges make each given word one
token (the demo image model's and the tiny test pipelines'), and byte-level BPE tokenizers
trained on a corpus (the demo text model's and the tiny test text model's).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer, PreTrainedTokenizerFast

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


def build_byte_bpe(
    corpus: Iterable[str], folder: Path, *, vocab_size: int, end: str, special: Iterable[str] = (), **kwargs
) -> PreTrainedTokenizerFast:
    """Train a GPT-2-style byte-level BPE on `corpus` (any text encodes: no unknown tokens) and
    save it to `folder`; `end` ends a turn and pads. `kwargs` go to the tokenizer (chat_template...)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[end, *special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=end, pad_token=end, **kwargs)
    tokenizer.save_pretrained(folder)
    return tokenizer
