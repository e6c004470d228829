"""Tiny random pipelines and text models built offline from small configs, as diffusers' own
tests do.

    folder = tiny_pipeline_folder(tmp_path / "tiny", kind="sd")   # a diffusers folder
    diffuse_kit.generate("a cat", model=str(folder))
    diffuse_kit.chat("hello", model=str(tiny_text_model_folder(tmp_path / "tiny-lm")))

Their images are noise, but every code path (loading by path, schedulers, callbacks,
img2img, saving) runs through real diffusers classes in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, GPT2Config, GPT2LMHeadModel

from diffuse_kit.demo.tokenizer import build_byte_bpe, build_clip_tokenizer

_WORDS = ("a", "cat", "dog", "red", "blue", "photo", "of")


def _text_config(vocab_size: int, hidden: int, projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=projection or hidden,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )  # fmt: skip


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


_UNET = dict(
    block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
)  # fmt: skip


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def _sd(folder: Path) -> StableDiffusionPipeline:
    tokenizer = build_clip_tokenizer(_WORDS, folder / "_tokenizer")
    unet = UNet2DConditionModel(**_UNET, cross_attention_dim=32, attention_head_dim=2)
    return StableDiffusionPipeline(
        vae=_vae(), text_encoder=CLIPTextModel(_text_config(len(tokenizer), 32)), tokenizer=tokenizer,
        unet=unet, scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip


def _sdxl(folder: Path) -> StableDiffusionXLPipeline:
    tokenizer = build_clip_tokenizer(_WORDS, folder / "_tokenizer")
    unet = UNet2DConditionModel(
        **_UNET, attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size/crop ids x 8 + the pooled 32
        cross_attention_dim=64,
    )  # fmt: skip
    return StableDiffusionXLPipeline(
        vae=_vae(), unet=unet, scheduler=_scheduler(), tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(_text_config(len(tokenizer), 32)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(len(tokenizer), 32, projection=32)),
    )  # fmt: skip


def tiny_pipeline_folder(folder: Path, kind: Literal["sd", "sdxl"] = "sd", seed: int = 0) -> Path:
    """Build a tiny random SD 1.x- or SDXL-architecture pipeline and `save_pretrained` it."""
    torch.manual_seed(seed)
    pipe = {"sd": _sd, "sdxl": _sdxl}[kind](folder)
    pipe.save_pretrained(folder)
    return folder


def tiny_text_model_folder(folder: Path, seed: int = 0) -> Path:
    """Build a tiny random GPT-2 with a byte-level tokenizer that has *no* chat template (as
    base models have none) and `save_pretrained` both. It rarely ends a reply by itself, so
    its replies run to max_new_tokens: what tests of length, stop strings and cancel need."""
    torch.manual_seed(seed)
    tokenizer = build_byte_bpe([" ".join(_WORDS)] * 4, folder, vocab_size=300, end="<|endoftext|>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
