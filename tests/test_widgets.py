"""The Playground without a browser: set the controls, click, wait, read the widgets."""

import io
import time

import pytest
from PIL import Image

from diffuse_kit import infotext

widgets = pytest.importorskip("diffuse_kit.widgets")


@pytest.fixture
def playground(tiny_sd, tmp_path):
    panel = widgets.Playground(model=tiny_sd, output_dir=str(tmp_path))
    panel.steps.value, panel.width.value, panel.height.value = 4, 72, 64
    return panel


def shown(image_widget) -> Image.Image:
    return Image.open(io.BytesIO(image_widget.value))


def test_click_generates_an_image_of_the_requested_size(playground):
    playground.prompt.value = "a red cat"
    playground.generate_button.click()
    assert playground.generate_button.disabled  # one generation at a time
    result = playground.wait(60)
    assert shown(playground.image).size == (72, 64)
    assert len(playground.history) == 1 and len(playground.gallery.children) == 1
    assert playground.progress.value == playground.progress.max == 4
    assert not playground.generate_button.disabled and playground.cancel_button.disabled
    assert "a red cat" in playground.infotext.value and result.request.prompt == "a red cat"


def test_cancel_stops_a_long_run(playground):
    playground.steps.value = 150
    playground.width.value = playground.height.value = 256
    playground.generate_button.click()
    deadline = time.monotonic() + 60
    while playground.progress.value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    playground.cancel_button.click()
    playground.wait(60)
    assert playground.status.value.startswith("cancelled")
    assert playground.progress.value < 150 and playground.history == []


def test_restore_puts_settings_back(playground):
    playground.seed.value, playground.guidance_scale.value, playground.sampler.value = 11, 3.5, "DDIM"
    playground.generate()
    playground.wait(60)
    playground.seed.value, playground.steps.value, playground.guidance_scale.value = -1, 30, 9.0
    playground.sampler.value, playground.prompt.value = "model default", "something else"
    playground.restore(0)
    assert (playground.seed.value, playground.steps.value, playground.guidance_scale.value) == (11, 4, 3.5)
    assert (playground.sampler.value, playground.prompt.value) == ("DDIM", "a red circle on a white background")


def test_random_seed_is_kept_when_locked(playground):
    playground.lock_seed.value = True
    playground.generate()
    first = playground.wait(60)
    assert playground.seed.value == first.seeds[0]
    playground.randomize_button.click()
    assert playground.seed.value == -1


def test_use_as_init_image_runs_img2img_and_save_writes_pngs(playground, tmp_path):
    playground.generate()
    playground.wait(60)
    playground.set_init_image(playground.history[0].images[0])
    playground.strength.value = 0.5
    playground.generate()
    second = playground.wait(60)
    assert infotext.parse(second.infotext[0])["Denoising strength"] == 0.5
    (path,) = playground.save(1)
    assert infotext.parse(infotext.read_png(Image.open(path)))["Denoising strength"] == 0.5


def test_bad_settings_show_an_error_instead_of_running(playground):
    playground.prompt.value = "   "
    playground.generate_button.click()
    assert playground.status.value.startswith("⚠ prompt")
    assert not playground.generate_button.disabled and playground.history == []


def test_sweep_panel_renders_a_grid(playground):
    panel = widgets.SweepPanel(playground)
    panel.x_axis.value, panel.x_values.value = "guidance_scale", "1, 7"
    panel.y_axis.value = None
    panel.run()
    result = panel.wait(60)
    assert shown(panel.grid).size == result.grid.size
    assert "saved" in panel.status.value


def test_suggest_button_writes_a_drawable_prompt(playground):
    from diffuse_kit.demo import world

    playground.prompt.value = "orange circle"
    playground.suggest_button.click()
    playground.wait(30)
    scene = world.parse_prompt(playground.prompt.value)
    assert scene is not None and (scene.colour, scene.shape) == ("orange", "circle")
    assert not playground.suggest_button.disabled


def test_chat_panel_streams_a_reply_and_sends_it_to_image(playground):
    panel = widgets.ChatPanel(playground=playground)
    panel.system.value = "You write prompts for the demo image model."
    panel.temperature.value = 0.5
    panel.message.value = "Write an image prompt about: a white square"
    panel.send_button.click()
    result = panel.wait(30)
    assert "white square" in result.text
    assert [m["role"] for m in panel.history] == ["user", "assistant"]
    printed = "".join(o["text"] for o in panel.output.outputs if o["name"] == "stdout")
    assert printed.startswith("you: Write an image prompt") and result.text in printed
    panel.send("Write an image prompt")  # history goes along: two exchanges now
    panel.wait(30)
    assert len(panel.history) == 4
    panel.to_image_button.click()
    image_result = playground.wait(60)
    assert image_result.request.prompt == panel.last.text.strip()
    panel.clear_button.click()
    assert panel.history == [] and panel.output.outputs == ()
