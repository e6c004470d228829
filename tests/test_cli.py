import subprocess
import sys
from pathlib import Path

from PIL import Image

from diffuse_kit import infotext


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffuse_kit", *args], capture_output=True, text=True, cwd=cwd)


def test_generate_prints_the_png_paths_with_parameters(repo_root, tmp_path):
    out = tmp_path / "x"
    done = run_cli("generate", "a white square on a red background", "--seed", "7", "--steps", "9", "--out", str(out),
                   cwd=repo_root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (path,) = [Path(line) for line in done.stdout.split()]
    assert path.parent == out and path.suffix == ".png"
    parsed = infotext.parse(infotext.read_png(Image.open(path)))
    assert parsed["Prompt"] == "a white square on a red background"
    assert (parsed["Steps"], parsed["Seed"]) == (9, 7)


def test_bad_argument_exits_2_naming_the_field(repo_root, tmp_path):
    done = run_cli("generate", "a cat", "--width", "100", "--out", str(tmp_path), cwd=repo_root)
    assert done.returncode == 2
    assert done.stderr.startswith("error: width:")
    assert "Traceback" not in done.stderr


def test_models_lists_the_embedded_model(repo_root):
    done = run_cli("models", cwd=repo_root)
    assert done.returncode == 0
    assert done.stdout.split("\t")[0] == "demo"
