import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: no test may download

from pathlib import Path

import pytest

from diffuse_kit.testing import tiny_pipeline_folder


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random SD 1.x-architecture diffusers folder, loaded by path."""
    return str(tiny_pipeline_folder(tmp_path_factory.mktemp("tiny") / "tiny-sd", kind="sd"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_pipeline_folder(tmp_path_factory.mktemp("tiny") / "tiny-sdxl", kind="sdxl"))


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
