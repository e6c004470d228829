"""The README is true: its Python runs, its commands run (make demo/test run in CI)."""

import os
import re
import shlex
import subprocess
import sys

import pytest


def blocks(readme: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", readme, re.S)


def commands(readme: str) -> list[list[str]]:
    lines = [line.split("#")[0].strip() for block in blocks(readme, "console") for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line]


@pytest.fixture
def readme(repo_root) -> str:
    return (repo_root / "README.md").read_text()


def test_python_blocks_run(readme, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from diffuse_kit.demo import world

    namespace: dict = {}
    for code in blocks(readme, "python"):  # in order, in one namespace, like a reader's session
        exec(compile(code, "README.md", "exec"), namespace)
    assert [p.name for p in namespace["paths"]] == ["00001-1.png"]
    assert world.parse_prompt(namespace["reply"]) and world.parse_prompt(namespace["prompt"])


def test_every_command_is_known(readme):
    programs = {tuple(c[:2]) if c[0] == "make" else tuple(c[:3]) for c in commands(readme)}
    # make demo/test run in CI; jupyter lab in test_notebook_browser; the service in test_service_live.
    assert programs == {
        ("make", "demo"), ("make", "test"), ("python", "-m", "diffuse_kit"), ("python", "tools/train_demo.py"),
        ("python", "tools/train_demo_text.py"), ("python", "benchmarks/bench_overheads.py"),
        ("venv/bin/jupyter", "lab", "notebooks/"), ("python3", "python-service/src/service.py", "--host"),
    }  # fmt: skip


def test_cli_commands_run(readme, repo_root, tmp_path):
    for command in commands(readme):
        if command[:3] != ["python", "-m", "diffuse_kit"]:
            continue
        argv = [sys.executable, *command[1:]]
        if "--out" in argv:
            argv[argv.index("--out") + 1] = str(tmp_path)
        if command[3] == "bench":  # in miniature: the tiny pipeline stands in for SD 1.5 and SDXL
            argv += ["--arch", "tiny", "--rounds", "1", "--work", str(tmp_path / "bench")]
        done = subprocess.run(argv, cwd=repo_root, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.strip()


@pytest.mark.slow
def test_training_script_runs_end_to_end(repo_root, tmp_path):
    """`python tools/train_demo.py` in miniature: every stage, a loadable pipeline at the end."""
    out = tmp_path / "demo"
    tiny_run = "--vae-steps 2 --unet-steps 2 --dataset 250 --batch 4 --checkpoint-every 1000"
    argv = [sys.executable, "tools/train_demo.py", *tiny_run.split(), "--out", str(out), "--work", str(tmp_path / "w")]
    done = subprocess.run(
        argv, cwd=repo_root, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(repo_root)}
    )
    assert done.returncode == 0, done.stderr
    import diffuse_kit

    result = diffuse_kit.generate("a red circle on a white background", model=str(out), steps=2, seed=1)
    assert result.images[0].size == (64, 64)
    assert (out / "tokenizer" / "vocab.json").is_file() and (out / "tokenizer" / "merges.txt").is_file()


def test_text_training_script_runs_end_to_end(repo_root, tmp_path):
    """`python tools/train_demo_text.py` in miniature: a tokenizer with a chat template and a model that loads."""
    out = tmp_path / "demo-text"
    argv = [sys.executable, "tools/train_demo_text.py", "--steps", "2", "--batch", "4", "--out", str(out)]
    done = subprocess.run(
        argv, cwd=repo_root, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(repo_root)}
    )
    assert done.returncode == 0, done.stderr
    import diffuse_kit

    stream = diffuse_kit.chat("Write an image prompt", model=str(out), max_new_tokens=5, seed=1, stream=True)
    "".join(stream)
    assert stream.result.completion_tokens >= 1
    assert diffuse_kit.load_text(str(out)).tokenizer.chat_template == diffuse_kit.text.CHAT_TEMPLATE


def test_overheads_benchmark_runs(repo_root):
    """`python benchmarks/bench_overheads.py` with one round: each overhead is reported."""
    argv = [sys.executable, "benchmarks/bench_overheads.py", "--rounds", "1"]
    done = subprocess.run(argv, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "previews:" in done.stdout and "service:" in done.stdout and "not reloaded: True" in done.stdout
