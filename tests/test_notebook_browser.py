"""JupyterLab in headless Chromium: open the playground notebook, run it, click Generate."""

import os
import secrets
import subprocess
import sys

import pytest
from browser import SCREENSHOTS, chromium_page, free_port, wait_for_http


@pytest.fixture
def jupyterlab(repo_root, tiny_sd):
    port, token = free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={repo_root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    # The kernel inherits this: the notebook's parameters cell then picks the tiny test model.
    env = os.environ | {"DIFFUSE_KIT_MODEL": tiny_sd, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=90)
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.slow
def test_playground_generates_in_jupyterlab(jupyterlab):
    base, token = jupyterlab
    with chromium_page() as page:
        page.goto(f"{base}/lab/tree/notebooks/02_playground.ipynb?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        status = page.locator(".widget-label", has_text="done: seed")
        try:
            status.first.wait_for(timeout=120_000)  # the notebook's own generate() cell finished
        except Exception:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / "playground-failed.png", full_page=True)
            raise
        page.locator("button.widget-button", has_text="Generate").first.click()
        history = page.locator("img[title]")
        history.nth(1).wait_for(timeout=60_000)  # a second result in the gallery: the click worked
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "playground.png", full_page=True)
        assert history.count() == 2
        assert page.locator(".widget-image img, img.widget-image").count() >= 1
