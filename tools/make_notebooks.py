"""Write the notebooks in notebooks/ from the cell lists below (no outputs are committed).

    python tools/make_notebooks.py

Editing them in JupyterLab is fine too; this script is how they were first written.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

PARAMETERS = """\
# Parameters: the same notebook runs on a real model with DIFFUSE_KIT_MODEL=<hub id or folder>.
import os

MODEL = os.environ.get("DIFFUSE_KIT_MODEL", "demo")
PROMPT = "a red circle on a white background\""""

TEXT_PARAMETERS = """\
# Parameters: DIFFUSE_KIT_TEXT_MODEL=<hub id or folder> (and DIFFUSE_KIT_ADAPTER=<PEFT adapter>) for a real model.
import os

MODEL = os.environ.get("DIFFUSE_KIT_MODEL", "demo")
TEXT_MODEL = os.environ.get("DIFFUSE_KIT_TEXT_MODEL", "demo-text")
ADAPTER = os.environ.get("DIFFUSE_KIT_ADAPTER") or None"""

METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
    "language_info": {"name": "python"},
}

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        new_markdown_cell("# Quickstart\n\nLoad a model, generate, look, save; then watch a generation step by step."),
        new_code_cell(PARAMETERS),
        new_code_cell(
            "import diffuse_kit\n\n"
            "model = diffuse_kit.load(MODEL)  # cached: loading again is free\n"
            "print(model.id, model.device, model.dtype, model.native_size)"
        ),
        new_code_cell(
            "result = diffuse_kit.generate(PROMPT, model=MODEL, seed=1, steps=20)\n"
            "print(result.infotext[0])\n"
            "result.images[0]"
        ),
        new_markdown_cell("Live progress: a bar, the time left and a preview every two steps."),
        new_code_cell(
            "from IPython.display import display\n\n"
            "from diffuse_kit.widgets import ProgressView\n\n"
            "view = ProgressView()\n"
            "display(view)\n"
            "result = diffuse_kit.generate(PROMPT, model=MODEL, seed=2, steps=20, on_progress=view, preview_every=2)"
        ),
        new_markdown_cell("Same seed, same pixels; the PNGs carry A1111's `parameters` text."),
        new_code_cell(
            "again = diffuse_kit.generate(PROMPT, model=MODEL, seed=2, steps=20)\n"
            "assert again.images[0].tobytes() == result.images[0].tobytes()\n"
            'paths = result.save("output")\n'
            "paths"
        ),
    ],
    "02_playground.ipynb": [
        new_markdown_cell(
            "# Playground\n\nType a prompt, move the sliders, press **Generate**. Cancel stops within a step; "
            "the history below keeps each result: *restore* puts its settings back, *use as init* sends it "
            "to image-to-image, *save* writes a PNG with its parameters."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell("from diffuse_kit.widgets import Playground\n\nplayground = Playground(model=MODEL)\nplayground"),
        new_markdown_cell("The same from code (this is what the Generate button does):"),
        new_code_cell("playground.generate()\nresult = playground.wait()\nprint(result.infotext[0])"),
    ],
    "03_sweeps.ipynb": [
        new_markdown_cell(
            "# Sweeps\n\nAn X/Y grid over two parameters, labelled, saved with its parameters "
            "(like A1111's X/Y plot). `prompt_sr` is Prompt S/R: its first value is replaced in the prompt."
        ),
        new_code_cell(PARAMETERS),
        new_code_cell(
            "from diffuse_kit.sweeps import sweep\n\n"
            'grid = sweep(PROMPT, model=MODEL, x=("guidance_scale", [1, 4, 7, 10]), y=("steps", [5, 10, 20]), seed=1)\n'
            "grid.grid"
        ),
        new_code_cell(
            'colours = sweep(PROMPT, model=MODEL, x=("prompt_sr", ["red", "blue", "yellow"]),\n'
            '                y=("sampler", ["Euler a", "DPM++ 2M", "DDIM"]), seed=2)\n'
            'print(colours.save("output"))\n'
            "colours.grid"
        ),
        new_markdown_cell("The same as a widget, over a Playground's settings:"),
        new_code_cell(
            "from diffuse_kit.widgets import Playground, SweepPanel\n\n"
            "panel = SweepPanel(Playground(model=MODEL))\n"
            "panel"
        ),
    ],
    "04_text.ipynb": [
        new_markdown_cell(
            "# Text\n\nChat with a causal language model (here the embedded `demo-text`, a tiny GPT-2 that "
            "writes prompts the demo image model can draw), streamed token by token; then text -> prompt -> image."
        ),
        new_code_cell(TEXT_PARAMETERS),
        new_code_cell(
            "import diffuse_kit\n\n"
            'messages = [{"role": "user", "content": "Write an image prompt about: a blue square"}]\n'
            "reply = diffuse_kit.chat(messages, model=TEXT_MODEL, adapter=ADAPTER, seed=1)\n"
            "reply"
        ),
        new_markdown_cell("Streamed: the pieces come as they are generated; the result then holds the token counts."),
        new_code_cell(
            "stream = diffuse_kit.chat(messages, model=TEXT_MODEL, adapter=ADAPTER, seed=1, stream=True)\n"
            "for piece in stream:\n"
            '    print(piece, end="|", flush=True)\n'
            "print()\n"
            "print(stream.result.finish_reason, stream.result.usage)\n"
            "assert stream.result.text == reply  # same seed, same reply"
        ),
        new_markdown_cell(
            "A chat panel: system prompt, temperature and length sliders, the reply streamed into the output "
            "below the history. *send to image* puts the last reply into the Playground's prompt and generates."
        ),
        new_code_cell(
            "from IPython.display import display\n\n"
            "from diffuse_kit.widgets import ChatPanel, Playground\n\n"
            "playground = Playground(model=MODEL, text_model=TEXT_MODEL)\n"
            "panel = ChatPanel(TEXT_MODEL, adapter=ADAPTER, playground=playground)\n"
            "display(panel, playground)"
        ),
        new_code_cell(
            'panel.send("Write an image prompt about: a yellow triangle")  # what the Send button does\n'
            "print(panel.wait().text)\n"
            "panel.to_image()  # the 'send to image' button\n"
            "print(playground.wait().infotext[0])"
        ),
        new_markdown_cell("Text -> prompt -> image in code: `suggest_prompt` is what the Suggest button uses."),
        new_code_cell(
            'prompt = diffuse_kit.suggest_prompt("green circle", model=TEXT_MODEL, seed=3)\n'
            "print(prompt)\n"
            "diffuse_kit.generate(prompt, model=MODEL, seed=3).images[0]"
        ),
    ],
}


def main() -> None:
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells, metadata=METADATA)
        nbformat.write(notebook, folder / name)
        print(folder / name)


if __name__ == "__main__":
    main()
