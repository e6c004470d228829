import pytest
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

from diffuse_kit.samplers import SAMPLERS, canonical_sampler, make_scheduler, sampler_name

BASE = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_builds_its_scheduler_from_the_model_config(name):
    scheduler = make_scheduler(name, BASE, seed=1)
    assert isinstance(scheduler, SAMPLERS[name].scheduler)
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's noise schedule is kept
    assert sampler_name(scheduler) == name
    scheduler.set_timesteps(10)  # usable as built


def test_required_a1111_names_exist():
    required = {"Euler", "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE", "LMS", "Heun", "UniPC", "LCM"}
    assert required <= set(SAMPLERS)


def test_karras_differs_from_plain():
    plain, karras = make_scheduler("DPM++ 2M", BASE, 1), make_scheduler("DPM++ 2M Karras", BASE, 1)
    assert isinstance(karras, DPMSolverMultistepScheduler)
    assert karras.config.use_karras_sigmas and not plain.config.use_karras_sigmas


def test_names_are_case_insensitive_and_take_a1111_aliases():
    assert canonical_sampler("k_euler_a") == "Euler a"
    assert canonical_sampler("dpm++ 2m karras") == "DPM++ 2M Karras"


def test_each_request_gets_a_fresh_scheduler():
    first, second = make_scheduler("Euler a", BASE, 1), make_scheduler("Euler a", BASE, 1)
    assert first is not second and isinstance(first, EulerAncestralDiscreteScheduler)
