import os
import sys

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


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python-service" / "src"))


@pytest.fixture
def app(tiny_sd):
    """The service over the tiny test model (flaskr-style fixtures)."""
    from service import create_app

    return create_app({"MODEL": tiny_sd, "QUEUE_SIZE": 4, "PREVIEW_EVERY": 2})


@pytest.fixture
def client(app):
    return app.test_client()
