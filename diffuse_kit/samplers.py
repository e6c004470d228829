"""Sampler names as A1111 users know them, mapped to diffusers schedulers.

Every request gets its own scheduler built with `from_config`: a scheduler keeps a step
index, so one shared between two generations goes out of range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from diffuse_kit.errors import InvalidRequestError


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler: type[SchedulerMixin]
    options: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


_KARRAS = {"use_karras_sigmas": True}
_PLAIN = {"use_karras_sigmas": False}
_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}

SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in [
        Sampler("DPM++ 2M", DPMSolverMultistepScheduler, _DPMPP | _PLAIN, ("k_dpmpp_2m",)),
        Sampler("DPM++ 2M Karras", DPMSolverMultistepScheduler, _DPMPP | _KARRAS, ("k_dpmpp_2m_ka",)),
        Sampler("DPM++ 2M SDE", DPMSolverMultistepScheduler, _DPMPP | _PLAIN | {"algorithm_type": "sde-dpmsolver++"}),
        Sampler("DPM++ SDE", DPMSolverSDEScheduler, _PLAIN, ("k_dpmpp_sde",)),
        Sampler("DPM++ SDE Karras", DPMSolverSDEScheduler, _KARRAS, ("k_dpmpp_sde_ka",)),
        Sampler("Euler", EulerDiscreteScheduler, _PLAIN, ("k_euler",)),
        Sampler("Euler a", EulerAncestralDiscreteScheduler, {}, ("k_euler_a",)),
        Sampler("Heun", HeunDiscreteScheduler, _PLAIN, ("k_heun",)),
        Sampler("LMS", LMSDiscreteScheduler, _PLAIN, ("k_lms",)),
        Sampler("LMS Karras", LMSDiscreteScheduler, _KARRAS, ("k_lms_ka",)),
        # diffusers' DDIM clips predicted latents to [-1, 1] unless told not to (SD configs say
        # so; other models' configs may not); A1111's DDIM never clips.
        Sampler("DDIM", DDIMScheduler, {"clip_sample": False}, ("ddim",)),
        Sampler("UniPC", UniPCMultistepScheduler, {}, ("unipc",)),
        Sampler("LCM", LCMScheduler, {}, ("lcm",)),
    ]
}
_BY_LOWER = {key.lower(): s.name for s in SAMPLERS.values() for key in (s.name, *s.aliases)}


def canonical_sampler(name: str) -> str:
    """The canonical name for `name` (any case, or an A1111 alias such as 'k_euler_a')."""
    try:
        return _BY_LOWER[name.strip().lower()]
    except KeyError:
        raise InvalidRequestError(
            f"sampler: unknown sampler {name!r}; known: {', '.join(SAMPLERS)}", "sampler"
        ) from None


def make_scheduler(name: str, base: SchedulerMixin, seed: int) -> SchedulerMixin:
    """A fresh scheduler for one request, keeping the model's noise schedule (betas, spacing)."""
    sampler = SAMPLERS[canonical_sampler(name)]
    options = dict(sampler.options)
    if sampler.scheduler is DPMSolverSDEScheduler:
        options["noise_sampler_seed"] = seed  # its Brownian noise must follow the seed too
    return sampler.scheduler.from_config(base.config, **options)


def sampler_name(scheduler: SchedulerMixin) -> str:
    """The A1111 name of a scheduler as configured, or its class name when none matches."""
    config = scheduler.config
    for sampler in SAMPLERS.values():
        if type(scheduler) is sampler.scheduler and all(config.get(k) == v for k, v in sampler.options.items()):
            return sampler.name
    return type(scheduler).__name__
