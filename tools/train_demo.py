"""Train the embedded demo image model (`demo`) from scratch, offline and deterministically.

    python tools/train_demo.py [--out diffuse_kit/demo/image] [--unet-steps 4000]

Stages: a handmade CLIP tokenizer in which every word of the demo world is one token; a
tiny AutoencoderKL (64x64 RGB <-> 4x16x16 latents) trained on drawn scenes; then a tiny
CLIPTextModel and UNet2DConditionModel trained together on those latents (epsilon
prediction, SD 1.5's noise schedule, min-SNR weighting, EMA, 10% empty prompts for CFG).
The result is saved as an ordinary StableDiffusionPipeline folder. About 45 minutes on a
2-core Zen 4. Checkpoints go to --work so a run can be inspected while it trains.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from diffuse_kit.demo import world
from diffuse_kit.demo.tokenizer import build_clip_tokenizer

SEED = 1234
OFFSET_NOISE = 0.1
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    tokenizer = build_clip_tokenizer(world.WORDS, folder)
    for word in world.WORDS:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    return tokenizer


def draw_batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, list[world.Scene]]:
    scenes = [world.random_scene(rng) for _ in range(n)]
    arrays = np.stack([np.asarray(world.draw(s, rng)) for s in scenes])
    pixels = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1
    return pixels, scenes


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=world.NATIVE_SIZE,
    )


def train_vae(rng: np.random.Generator, steps: int, batch: int) -> AutoencoderKL:
    torch.manual_seed(SEED)
    vae = make_vae()
    # Start near-deterministic: with the default posterior std of 1 the noise drowns the
    # untrained latents and the decoder settles on the mean colour for hundreds of steps.
    # (Few channels per norm group, too: a group of one channel is an instance norm, which
    # erases the colour of a flat image.)
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels :] = -8.0
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.05)
    start = time.time()
    for step in range(steps):
        pixels, _ = draw_batch(rng, batch)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        # A tiny KL weight, as in SD's VAE: latents stay near-Gaussian without blurring edges.
        loss = F.mse_loss(reconstruction, pixels) + 1e-6 * posterior.kl().mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            print(f"vae step {step} loss {loss.item():.5f} {time.time() - start:.0f}s", flush=True)
    vae.eval().requires_grad_(False)
    print(f"vae palette accuracy {vae_accuracy(vae, rng):.4f}", flush=True)
    return vae


@torch.no_grad()
def vae_accuracy(vae: AutoencoderKL, rng: np.random.Generator) -> float:
    """Share of reconstructed pixels that land on the right palette colour."""
    pixels, _ = draw_batch(rng, 64)
    reconstruction = vae.decode(vae.encode(pixels).latent_dist.mean).sample

    def labels(batch: torch.Tensor) -> np.ndarray:
        rgb = ((batch.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).byte().numpy()
        return np.stack([world.classify_pixels(Image.fromarray(image)) for image in rgb])

    return float((labels(pixels) == labels(reconstruction)).mean())


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, list[world.Scene]]:
    latents, scenes = [], []
    for _ in range(n // 250):
        pixels, batch_scenes = draw_batch(rng, 250)
        latents.append(vae.encode(pixels).latent_dist.mean)
        scenes += batch_scenes
    latents = torch.cat(latents)
    vae.register_to_config(scaling_factor=float(1 / latents.std()))
    return latents * vae.config.scaling_factor, scenes


def make_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=world.NATIVE_SIZE // 4,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        # diffusers reads this as the number of heads: 2 heads keep head dims >= 16, which
        # CPU attention kernels need to be efficient.
        attention_head_dim=2,
        norm_num_groups=8,
    )


def prompt_ids(tokenizer: CLIPTokenizer, scenes: list[world.Scene]) -> torch.Tensor:
    """Token ids per scene, three ways: with its size word, without, and the empty prompt."""
    variants = []
    for scene in scenes:
        unsized = world.Scene(scene.colour, scene.shape, scene.background)
        variants.append([scene.prompt, unsized.prompt, ""])
    flat = [p for v in variants for p in v]
    ids = tokenizer(flat, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return ids.view(len(scenes), 3, -1)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)


def train_denoiser(
    latents: torch.Tensor, ids: torch.Tensor, tokenizer: CLIPTokenizer, args: argparse.Namespace, save
) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED + 1)  # the initial weights, whether or not the VAE was trained in this run
    unet, text_encoder = make_unet(), make_text_encoder(tokenizer)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1e-3, total_steps=args.unet_steps, pct_start=0.05, final_div_factor=20
    )
    noise_schedule = DDPMScheduler(**SCHEDULE)
    alphas = noise_schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    start = time.time()
    for step in range(args.unet_steps):
        index = torch.randint(len(latents), (args.batch,), generator=generator)
        # 45% with the size word, 45% without, 10% empty (for classifier-free guidance).
        variant = torch.bucketize(torch.rand(args.batch, generator=generator), torch.tensor([0.45, 0.9]))
        x0 = latents[index]
        # Offset noise: with i.i.d. noise alone, SD's schedule leaves an image's mean colour
        # nearly untouched even at t=999, so the model never learns to set the background
        # colour from the prompt (the known "SD cannot do solid backgrounds" failure).
        offset = OFFSET_NOISE * torch.randn(x0.shape[0], x0.shape[1], 1, 1, generator=generator)
        noise = torch.randn(x0.shape, generator=generator) + offset
        t = torch.randint(0, 1000, (args.batch,), generator=generator)
        noisy = noise_schedule.add_noise(x0, noise, t)
        context = text_encoder(ids[index, variant])[0]
        prediction = unet(noisy, t, context).sample
        weight = torch.clamp(snr[t], max=5.0) / snr[t]  # min-SNR-5 weighting for epsilon
        loss = (weight * ((prediction - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        if step % 100 == 0:
            print(f"unet step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
        if (step + 1) % args.checkpoint_every == 0:
            save(ema_unet, ema_text, args.work / f"step-{step + 1}")
    return ema_unet, ema_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("diffuse_kit/demo/image"))
    parser.add_argument("--work", type=Path, default=Path("build/train_demo"))
    parser.add_argument("--vae-steps", type=int, default=1000)
    parser.add_argument("--unet-steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dataset", type=int, default=30000)
    parser.add_argument("--vae-from", type=Path, default=None, help="reuse the VAE saved by an earlier run")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)  # fixed so that the float reductions, and so the weights, repeat
    tokenizer = build_tokenizer(args.work / "tokenizer")
    if args.vae_from:  # the VAE of an earlier run of this script (each stage has its own seeds)
        vae = AutoencoderKL.from_pretrained(args.vae_from).eval().requires_grad_(False)
    else:
        vae = train_vae(np.random.default_rng(SEED), args.vae_steps, batch=16)
        vae.save_pretrained(args.work / "vae")
    latents, scenes = encode_dataset(vae, np.random.default_rng(SEED + 1), args.dataset)
    print(f"latents {tuple(latents.shape)} scaling_factor {vae.config.scaling_factor:.4f}", flush=True)
    ids = prompt_ids(tokenizer, scenes)
    # DPM++ 2M Karras: measured on benchmarks/bench_demo.py's scenes, it follows prompts best.
    scheduler = DPMSolverMultistepScheduler(**SCHEDULE, steps_offset=1, use_karras_sigmas=True)

    def save(unet: UNet2DConditionModel, text_encoder: CLIPTextModel, folder: Path) -> None:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(folder)
        print(f"saved {folder}", flush=True)

    unet, text_encoder = train_denoiser(latents, ids, tokenizer, args, save)
    save(unet, text_encoder, args.out)
    for name in ("vocab.json", "merges.txt"):  # keep the handmade sources beside tokenizer.json
        (args.out / "tokenizer" / name).write_bytes((args.work / "tokenizer" / name).read_bytes())


if __name__ == "__main__":
    main()
