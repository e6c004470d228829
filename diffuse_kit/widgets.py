"""The ipywidgets UI for notebooks: a Playground, a SweepPanel and a ChatPanel.

    from diffuse_kit.widgets import Playground
    Playground()          # the last expression of a cell displays it

Generation runs in a worker thread so the kernel stays free: sliders stay live, Cancel stops
a run within a step, and the preview updates as steps complete. Only notebooks import this
module; the engine never does.
"""

from __future__ import annotations

import base64
import html
import io
import secrets
import threading
import time
from typing import Any

import ipywidgets as w
from PIL import Image

from diffuse_kit.errors import DiffuseKitError
from diffuse_kit.generation import Result, run
from diffuse_kit.models import known_image_models, load
from diffuse_kit.progress import ProgressEvent
from diffuse_kit.requests import MAX_SEED, ImageRequest
from diffuse_kit.samplers import SAMPLERS
from diffuse_kit.sweeps import AXES, SweepResult, parse_values, sweep
from diffuse_kit.text import ChatResult, chat, known_text_models, suggest_prompt

THUMBNAIL = 128
MODEL_DEFAULT = "model default"  # the sampler choice that keeps the model's own scheduler


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _Worker:
    """One background job at a time, with a cancel flag."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.cancel = threading.Event()

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, target: Any) -> None:
        self.cancel = threading.Event()
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class ProgressView(w.VBox):
    """A progress bar, "step x/N · elapsed · left", and the live preview; call it with events.

    view = ProgressView(); display(view)
    diffuse_kit.generate(prompt, on_progress=view)
    """

    def __init__(self) -> None:
        self.progress = w.IntProgress(0, min=0, max=1, description="Progress")
        self.status = w.Label("")
        self.image = w.Image(format="png", layout=w.Layout(min_width="64px", max_width="512px"))
        super().__init__([w.HBox([self.progress, self.status]), self.image])

    def __call__(self, event: ProgressEvent) -> None:
        self.progress.max, self.progress.value = event.total, event.step
        self.status.value = f"step {event.step}/{event.total} · {event.elapsed:.1f}s elapsed · {event.eta:.1f}s left"
        if event.preview is not None:
            self.image.value = png_bytes(event.preview)


class Playground(w.VBox):
    """Prompt boxes, sliders, seed, sampler and model pickers, Generate/Cancel, live progress
    and preview, and a history of results that restore their settings or feed img2img."""

    def __init__(
        self, model: str = "demo", *, text_model: str = "demo-text", output_dir: str = "output", preview_every: int = 2
    ) -> None:
        self.text_model, self.output_dir, self.preview_every = text_model, output_dir, preview_every
        self.history: list[Result] = []
        self._worker = _Worker()
        width, height = load(model).native_size
        self._build_inputs(model, width, height)
        self._build_outputs()
        super().__init__([self._layout_inputs(), self._layout_outputs()])

    # -- construction ---------------------------------------------------------------------

    def _build_inputs(self, model: str, width: int, height: int) -> None:
        wide = w.Layout(width="98%")
        self.prompt = w.Textarea("a red circle on a white background", description="Prompt", layout=wide)
        self.suggest_button = w.Button(description="Suggest", icon="magic",
                                       tooltip="the text model writes a prompt from the words in the box")  # fmt: skip
        self.negative_prompt = w.Textarea("", description="Negative", layout=wide)
        self.steps = w.IntSlider(20, min=1, max=150, description="Steps")
        self.guidance_scale = w.FloatSlider(7.0, min=0.0, max=20.0, step=0.5, description="CFG")
        self.width = w.IntSlider(width, min=64, max=2048, step=8, description="Width")
        self.height = w.IntSlider(height, min=64, max=2048, step=8, description="Height")
        self.batch_size = w.IntSlider(1, min=1, max=8, description="Batch")
        self.seed = w.IntText(-1, description="Seed", tooltip="-1: a new random seed each run")
        self.randomize_button = w.Button(icon="random", tooltip="random seed", layout=w.Layout(width="40px"))
        self.lock_seed = w.Checkbox(False, description="lock", tooltip="keep the last seed used", indent=False)
        self.sampler = w.Dropdown(options=[MODEL_DEFAULT, *SAMPLERS], description="Sampler")
        self.model = w.Dropdown(options=known_image_models(extra=[model]), value=model, description="Model")
        self.model_path = w.Text(
            "", placeholder="or a folder, .safetensors file or hub id", layout=w.Layout(width="40%")
        )
        self.strength = w.FloatSlider(0.75, min=0.05, max=1.0, step=0.05, description="Strength")
        self.init_image = w.Image(format="png", layout=w.Layout(max_width=f"{THUMBNAIL}px", display="none"))
        self.clear_init_button = w.Button(description="no init image", disabled=True)
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", icon="stop", disabled=True)
        self.randomize_button.on_click(lambda _: setattr(self.seed, "value", -1))
        self.clear_init_button.on_click(lambda _: self.set_init_image(None))
        self.generate_button.on_click(lambda _: self.generate())
        self.suggest_button.on_click(lambda _: self.suggest())
        self.cancel_button.on_click(lambda _: self._worker.cancel.set())
        self._init: Image.Image | None = None

    def _build_outputs(self) -> None:
        self.live = ProgressView()
        self.progress, self.status, self.image = self.live.progress, self.live.status, self.live.image
        self.infotext = w.HTML("")
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))

    def _layout_inputs(self) -> w.Widget:
        seed_row = w.HBox([self.seed, self.randomize_button, self.lock_seed])
        img2img = w.HBox([self.strength, self.init_image, self.clear_init_button])
        return w.VBox([
            w.HBox([self.prompt, self.suggest_button]), self.negative_prompt,
            w.HBox([w.VBox([self.steps, self.guidance_scale, self.batch_size]), w.VBox([self.width, self.height])]),
            seed_row, w.HBox([self.sampler, self.model, self.model_path]), img2img,
            w.HBox([self.generate_button, self.cancel_button]),
        ])  # fmt: skip

    def _layout_outputs(self) -> w.Widget:
        return w.VBox([self.live, self.infotext, w.Label("History"), self.gallery])

    # -- generating -----------------------------------------------------------------------

    def request(self) -> ImageRequest:
        """The request the current settings describe (raises InvalidRequestError if bad)."""
        seed = self.seed.value if self.seed.value >= 0 else None
        return ImageRequest.create(
            prompt=self.prompt.value, negative_prompt=self.negative_prompt.value,
            model=self.model_path.value.strip() or self.model.value, steps=self.steps.value,
            guidance_scale=self.guidance_scale.value, width=self.width.value, height=self.height.value,
            seed=seed if seed is not None else secrets.randbelow(MAX_SEED + 1),
            sampler=None if self.sampler.value == MODEL_DEFAULT else self.sampler.value,
            batch_size=self.batch_size.value, init_image=self._init,
            strength=self.strength.value if self._init is not None else None,
        )  # fmt: skip

    def generate(self) -> None:
        """What the Generate button does: start one generation in the background."""
        if self._worker.busy:
            return
        try:
            request = self.request()
        except DiffuseKitError as exc:
            self.status.value = f"⚠ {exc}"
            return
        self._set_busy(True)
        self.progress.value, self.progress.max = 0, request.steps
        self.status.value = "loading model…"
        self._worker.start(lambda: self._run(request))

    def suggest(self) -> None:
        """What the Suggest button does: the text model rewrites the prompt from its words."""
        if self._worker.busy:
            return
        self._set_busy(True)
        self.status.value = "writing a prompt…"
        self._worker.start(self._suggest)

    def _suggest(self) -> None:
        try:
            self.prompt.value = suggest_prompt(self.prompt.value, model=self.text_model)
            self.status.value = f"prompt suggested by {self.text_model}"
        except Exception as exc:  # the worker's top level: show it rather than lose it in a thread
            self.status.value = f"⚠ {exc}"
        finally:
            self._set_busy(False)

    def cancel(self) -> None:
        self._worker.cancel.set()

    def wait(self, timeout: float | None = None) -> Result | None:
        """Block until the running generation ends; the newest result (None if none)."""
        self._worker.wait(timeout)
        return self.history[-1] if self.history else None

    def _run(self, request: ImageRequest) -> None:
        try:
            result = run(request, on_progress=self.live, cancel=self._worker.cancel,
                         preview_every=self.preview_every)  # fmt: skip
            self._show_result(result)
        except Exception as exc:  # the worker's top level: show it rather than lose it in a thread
            self.status.value = f"⚠ {exc}"
        finally:
            self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self.generate_button.disabled = self.suggest_button.disabled = busy
        self.cancel_button.disabled = not busy

    def _show_result(self, result: Result) -> None:
        if result.cancelled:
            self.status.value = f"cancelled after {self.progress.value} steps"
            return
        self.image.value = png_bytes(result.images[0])
        self.infotext.value = f"<pre style='white-space: pre-wrap'>{html.escape(result.infotext[0])}</pre>"
        if self.lock_seed.value:
            self.seed.value = result.seeds[0]
        self.history.append(result)
        self.gallery.children = (*self.gallery.children, self._history_item(len(self.history) - 1))
        self.status.value = f"done: seed {result.seeds[0]}, {result.timings['total_s']:.1f}s"

    # -- history --------------------------------------------------------------------------

    def _history_item(self, index: int) -> w.Widget:
        result = self.history[index]
        thumbnail = result.images[0].copy()
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        buttons = {
            "restore": lambda _: self.restore(index),
            "use as init": lambda _: self.set_init_image(result.images[0]),
            "save": lambda _: self.save(index),
        }
        row = [w.Button(description=label, layout=w.Layout(width="auto")) for label in buttons]
        for button, action in zip(row, buttons.values(), strict=True):
            button.on_click(action)
        tooltip = html.escape(result.infotext[0])
        picture = w.HTML(f"<img src='data:image/png;base64,{_b64(thumbnail)}' title='{tooltip}'>")
        summary = w.HTML(f"<small>seed {result.seeds[0]} · {result.request.steps} steps · "
                         f"CFG {result.request.guidance_scale:g}</small>")  # fmt: skip
        return w.VBox([picture, summary, w.HBox(row)], layout=w.Layout(margin="4px"))

    def restore(self, index: int) -> None:
        """Put the settings of history item `index` back into the controls."""
        request, result = self.history[index].request, self.history[index]
        self.prompt.value, self.negative_prompt.value = request.prompt, request.negative_prompt
        self.steps.value, self.guidance_scale.value = request.steps, request.guidance_scale
        self.width.value, self.height.value = result.images[0].size
        self.batch_size.value, self.seed.value = request.batch_size, result.seeds[0]
        self.sampler.value = request.sampler or MODEL_DEFAULT
        if request.model in self.model.options:
            self.model.value, self.model_path.value = request.model, ""
        else:
            self.model_path.value = request.model

    def set_init_image(self, image: Image.Image | None) -> None:
        """Use `image` as the img2img init image (None: back to text-to-image)."""
        self._init = image
        self.init_image.value = png_bytes(image) if image is not None else b""
        self.init_image.layout.display = None if image is not None else "none"
        self.clear_init_button.disabled = image is None

    def save(self, index: int) -> list[str]:
        paths = [str(p) for p in self.history[index].save(self.output_dir)]
        self.status.value = "saved " + ", ".join(paths)
        return paths


def _b64(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode()


class SweepPanel(w.VBox):
    """Pick X and Y parameters and their values; render the labelled grid of a Playground's settings."""

    def __init__(self, playground: Playground) -> None:
        self.playground = playground
        self.x_axis = w.Dropdown(options=AXES, value="guidance_scale", description="X")
        self.x_values = w.Text("3, 7, 12", description="X values")
        self.y_axis = w.Dropdown(options=[("none", None), *((a, a) for a in AXES)], value="steps", description="Y")
        self.y_values = w.Text("10, 20", description="Y values")
        self.run_button = w.Button(description="Run sweep", button_style="primary")
        self.status = w.Label("")
        self.grid = w.Image(format="png")
        self.result: SweepResult | None = None
        self._worker = _Worker()
        self.run_button.on_click(lambda _: self.run())
        super().__init__([
            w.HBox([self.x_axis, self.x_values]), w.HBox([self.y_axis, self.y_values]),
            w.HBox([self.run_button, self.status]), self.grid,
        ])  # fmt: skip

    def run(self) -> None:
        if self._worker.busy:
            return
        try:
            x = (self.x_axis.value, parse_values(self.x_axis.value, self.x_values.value))
            y = (self.y_axis.value, parse_values(self.y_axis.value, self.y_values.value)) if self.y_axis.value else None
            # Sweeps are text-to-image: one image per cell, the init image stays out.
            fields = self.playground.request().model_dump(exclude={"batch_size", "strength"})
        except DiffuseKitError as exc:
            self.status.value = f"⚠ {exc}"
            return
        self.run_button.disabled = True
        self._worker.start(lambda: self._run(fields, x, y))

    def wait(self, timeout: float | None = None) -> SweepResult | None:
        self._worker.wait(timeout)
        return self.result

    def _run(self, fields: dict[str, Any], x: Any, y: Any) -> None:
        started = time.perf_counter()
        cells = len(x[1]) * (len(y[1]) if y else 1)
        try:
            prompt = fields.pop("prompt")
            self.result = sweep(
                prompt, x=x, y=y, **fields,
                on_cell=lambda r, c, _: setattr(self.status, "value", f"cell {r * len(x[1]) + c + 1}/{cells}"),
            )  # fmt: skip
            self.grid.value = png_bytes(self.result.grid)
            path = self.result.save(self.playground.output_dir)
            self.status.value = f"{cells} cells in {time.perf_counter() - started:.1f}s, saved {path}"
        except Exception as exc:  # the worker's top level
            self.status.value = f"⚠ {exc}"
        finally:
            self.run_button.disabled = False


class ChatPanel(w.VBox):
    """A chat with a text model: system prompt, temperature and length sliders, the reply
    streamed into an Output widget, the history, and "send to image" into a Playground."""

    def __init__(
        self, model: str = "demo-text", *, adapter: str | None = None, playground: Playground | None = None
    ) -> None:
        self.adapter, self.playground = adapter, playground
        self.history: list[dict[str, str]] = []
        self.last: ChatResult | None = None
        self._worker = _Worker()
        wide = w.Layout(width="98%")
        self.system = w.Text("", description="System", placeholder="optional system prompt", layout=wide)
        self.temperature = w.FloatSlider(0.7, min=0.0, max=2.0, step=0.1, description="Temperature")
        self.max_new_tokens = w.IntSlider(128, min=8, max=1024, step=8, description="Max tokens")
        self.model = w.Dropdown(options=known_text_models(extra=[model]), value=model, description="Model")
        self.message = w.Textarea("Write an image prompt about: a green triangle", description="Message", layout=wide)
        self.send_button = w.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.clear_button = w.Button(description="Clear", icon="trash")
        self.to_image_button = w.Button(description="send to image", icon="image", disabled=True)
        self.output = w.Output(layout=w.Layout(border="1px solid #ddd", min_height="4em", padding="4px"))
        self.status = w.Label("")
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self._worker.cancel.set())
        self.clear_button.on_click(lambda _: self.clear())
        self.to_image_button.on_click(lambda _: self.to_image())
        buttons = w.HBox([self.send_button, self.stop_button, self.clear_button, self.to_image_button])
        sliders = w.HBox([self.temperature, self.max_new_tokens, self.model])
        super().__init__([self.system, sliders, self.output, self.message, buttons, self.status])

    def send(self, text: str | None = None) -> None:
        """Send `text` (default: the message box) and stream the reply below the history."""
        text = (text if text is not None else self.message.value).strip()
        if self._worker.busy or not text:
            return
        self.history.append({"role": "user", "content": text})
        self.message.value = ""
        self.output.append_stdout(f"you: {text}\nassistant: ")
        system = [{"role": "system", "content": self.system.value}] if self.system.value.strip() else []
        self._set_busy(True)
        self._worker.start(lambda: self._reply([*system, *self.history]))

    def _reply(self, messages: list[dict[str, str]]) -> None:
        try:
            reply = chat(messages, model=self.model.value, adapter=self.adapter, stream=True,
                         temperature=self.temperature.value,
                         max_new_tokens=self.max_new_tokens.value, cancel=self._worker.cancel)  # fmt: skip
            for piece in reply:  # append_stdout: print() from a thread would land in the wrong cell
                self.output.append_stdout(piece)
            self.last = reply.result
            self.history.append({"role": "assistant", "content": reply.result.text})
            self.status.value = f"{reply.result.completion_tokens} tokens, {reply.result.finish_reason}"
        except Exception as exc:  # the worker's top level: show it rather than lose it in a thread
            self.history.pop()  # the question stays unanswered: forget it so it can be asked again
            self.status.value = f"⚠ {exc}"
        finally:
            self.output.append_stdout("\n")
            self._set_busy(False)

    def wait(self, timeout: float | None = None) -> ChatResult | None:
        """Block until the reply in progress ends; the newest reply (None if none)."""
        self._worker.wait(timeout)
        return self.last

    def clear(self) -> None:
        self.history, self.last = [], None
        self.output.outputs = ()  # clear_output() needs a kernel; this works from threads and tests too
        self.to_image_button.disabled = True

    def to_image(self) -> None:
        """Put the last reply into the Playground's prompt and generate from it."""
        if self.playground is None or self.last is None:
            return
        self.playground.prompt.value = self.last.text.strip()
        self.playground.generate()

    def _set_busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy
        self.to_image_button.disabled = busy or self.playground is None or not self.history
