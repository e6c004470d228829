"""Progress events and cheap latent -> RGB previews.

A preview is a linear projection of the latents (as A1111's "Approx cheap" and ComfyUI's
latent2rgb do). Instead of hard-coding the SD 1.5 factors, the projection is fitted once per
model by encoding a few patchwork images with its own VAE, so any latent space gets one:
SD 1.x, SDXL and the demo model alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PREVIEW_MAX_SIDE = 256


@dataclass(frozen=True)
class ProgressEvent:
    """One finished denoising step. `step` counts from 1; `preview` is set every few steps."""

    step: int
    total: int
    elapsed: float
    eta: float
    preview: Image.Image | None = None


@dataclass(frozen=True)
class LatentPreviewer:
    weights: torch.Tensor  # (latent_channels, 3): latent -> RGB in 0..255
    bias: torch.Tensor  # (3,)
    scaling_factor: float
    shift_factor: float

    @classmethod
    @torch.no_grad()
    def fit(cls, vae: torch.nn.Module, patches: int = 4, images: int = 6) -> LatentPreviewer:
        """Least squares from the VAE's latents to the colours of the pixels they encode."""
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        side = patches * 2 * factor
        rng = np.random.default_rng(0)
        colours = rng.integers(0, 256, size=(images, 3, patches, patches)).astype(np.float32)
        pixels = torch.from_numpy(colours).repeat_interleave(side // patches, 2).repeat_interleave(side // patches, 3)
        parameter = next(vae.parameters())
        encoded = vae.encode((pixels / 127.5 - 1).to(parameter.device, parameter.dtype)).latent_dist.mean
        latents = encoded.float().cpu().permute(0, 2, 3, 1).reshape(-1, encoded.shape[1])
        target = torch.nn.functional.avg_pool2d(pixels, factor).permute(0, 2, 3, 1).reshape(-1, 3)
        design = torch.cat([latents, torch.ones(len(latents), 1)], dim=1)
        solution = torch.linalg.lstsq(design, target).solution
        return cls(
            solution[:-1],
            solution[-1],
            float(getattr(vae.config, "scaling_factor", 1.0) or 1.0),
            float(getattr(vae.config, "shift_factor", None) or 0.0),
        )

    def __call__(self, latents: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        """Preview of the first image of a batch of (scaled) latents, at most 256 px a side."""
        latent = latents[0].detach().float().cpu() / self.scaling_factor + self.shift_factor
        rgb = (latent.permute(1, 2, 0) @ self.weights + self.bias).clamp(0, 255).to(torch.uint8)
        scale = min(1.0, PREVIEW_MAX_SIDE / max(size))
        target = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        return Image.fromarray(rgb.numpy()).resize(target, Image.Resampling.BILINEAR)
