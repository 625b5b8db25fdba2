"""TransferLab, driven by setting its controls and asserting on its outputs (tiny_vgg, 32-64 px)."""

from __future__ import annotations

import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from artlab.images import load_image, to_png_bytes

# 48-64 px test images are below tiny_vgg's 156 px receptive field on purpose (speed)
pytestmark = pytest.mark.filterwarnings("ignore::artlab.gram.ReceptiveFieldWarning")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    content = torch.rand(1, 3, 48, 64, generator=g)  # landscape: the output keeps the aspect ratio
    first = torch.rand(1, 3, 40, 40, generator=g)
    second = (torch.rand(1, 3, 40, 40, generator=g) * 0.4 + 0.6).clamp(0, 1)
    return content, first, second


def make_lab(model, images, tmp_path, styles=1, **settings):
    from artlab.widgets import TransferLab

    content, *style_images = images
    options = {"size": 48, "steps": 6, "preview_every": 2, "quick_steps": 0, "output_dir": tmp_path / "out"}
    options.update(settings)
    return TransferLab(content, style_images[:styles] if styles > 1 else style_images[0], model, **options)


def _trace(lab, name):
    return next(t for t in lab.curves.data if t.name == name)


def test_run_previews_and_draws_the_loss_curves_in_place(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path)
    figure, preview, first_png = lab.curves, lab.preview, bytes(lab.preview.value)
    assert lab.save_button.disabled and lab.gif_button.disabled, "nothing to save before a run"
    lab.start_run(block=True)
    assert "done" in lab.status.value and "6 steps" in lab.status.value
    assert lab.curves is figure and lab.preview is preview, "views are updated, not replaced"
    assert bytes(preview.value).startswith(b"\x89PNG") and bytes(preview.value) != first_png
    assert bytes(preview.value) == to_png_bytes(lab.best_image), "the preview ends on the best image"
    assert lab.best_image.shape == (1, 3, 36, 48)  # 48×64 content at size 48 (longer side)
    assert len(lab.history) == 6 and [h["step"] for h in lab.history] == list(range(6))
    total = _trace(lab, "total")
    assert list(total.x) == list(range(6))
    np.testing.assert_allclose(total.y, [h["loss"] for h in lab.history])
    for name, attr in (("content", "content"), ("style", "style")):
        assert len(_trace(lab, name).y) == sum(h[attr] > 0 for h in lab.history) > 0
    assert lab.frames and lab.first_preview_s is not None
    assert not lab.run_button.disabled and lab.stop_button.disabled
    assert not lab.save_button.disabled and not lab.gif_button.disabled


@pytest.mark.slow
def test_quick_start_previews_small_then_continues_at_full_size(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, size=64, steps=4, preview_size=32, quick_steps=3)
    lab.start_run(block=True)
    assert [s["kind"] for s in lab.segments] == ["quick start", "run"]
    sizes = [h["size"] for h in lab.history]
    assert sizes == [(24, 32)] * 3 + [(48, 64)] * 4
    assert tuple(lab.frames[0].shape[-2:]) == (24, 32), "the first preview comes from the small quick start"
    start = lab.segments[1]["init"]
    assert isinstance(start, torch.Tensor) and start.shape == (1, 3, 48, 64)
    content = load_image(images[0], (48, 64))
    assert not torch.equal(start, content), "the full-size run starts from the quick start's result"
    assert lab.segments[1]["settings"].optimizer == lab.optimizer.value  # the quick start's Adam is not kept


def test_slider_change_mid_run_restarts_warm_from_the_current_image(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, steps=5)
    seen: dict = {}

    def change_once(_change):  # runs in the loop's thread, right after a step is reported
        if "step 3/5" in lab.status.value and "current" not in seen:
            seen["current"] = lab._transfer.current_image
            seen["weight"] = lab.settings().style_weight
            lab.ratio.value = lab.ratio.value + 1.0

    lab.status.observe(change_once, names="value")
    lab.start_run(block=True)
    assert [s["kind"] for s in lab.segments] == ["run", "warm restart"]
    restart = lab.segments[1]
    assert restart["start_step"] == 3
    assert torch.equal(restart["init"], seen["current"]), "the restart starts from the image reached so far"
    assert not torch.equal(restart["init"], load_image(images[0], (36, 48)))
    assert restart["settings"].style_weight == pytest.approx(10 * seen["weight"])
    assert len(lab.history) == 3 + 5 and "done" in lab.status.value
    assert len(lab.curves.layout.shapes) == 1, "the restart is marked on the loss curves"


@pytest.mark.slow
def test_size_change_mid_run_resizes_the_current_image(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, steps=4)

    def grow(_change):
        if "step 2/4" in lab.status.value and lab.size.value == 48:
            lab.size.value = 64

    lab.status.observe(grow, names="value")
    lab.start_run(block=True)
    assert [s["kind"] for s in lab.segments] == ["run", "warm restart"]
    assert lab.segments[1]["init"].shape == (1, 3, 48, 64)
    assert lab.best_image.shape == (1, 3, 48, 64)


def test_changing_a_control_while_idle_starts_nothing(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path)
    lab.tv.value = 1e-2
    lab.content_layer.value = "relu3_1"
    assert not lab.running and lab.history == [] and lab.status.value == "press Run"
    settings = lab.settings()
    assert settings.tv_weight == 1e-2 and settings.content_layer == "relu3_1"


def test_stop_ends_a_background_run_and_keeps_the_best_image(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, steps=1000)
    lab.run_button.click()  # a background thread, as in Jupyter
    deadline = time.monotonic() + 30
    while len(lab.history) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lab.running and lab.run_button.disabled
    lab.stop_button.click()
    lab.worker.join(timeout=30)
    assert not lab.worker.running and not lab.running
    assert "stopped" in lab.status.value and len(lab.history) < 1000
    assert lab.best_image is not None and bytes(lab.preview.value) == to_png_bytes(lab.best_image)
    assert not lab.run_button.disabled and lab.stop_button.disabled


def test_save_and_export_write_files_and_show_their_paths(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path)
    lab.start_run(block=True)
    lab.save_button.click()
    png = lab.saved[-1]
    assert png.parent == tmp_path / "out" and png.suffix == ".png" and str(png) in lab.saved_note.value
    np.testing.assert_allclose(load_image(png).numpy(), lab.best_image.numpy(), atol=1 / 255 + 1e-6)
    lab.gif_button.click()
    gif = lab.saved[-1]
    assert gif.suffix == ".gif" and str(gif) in lab.saved_note.value
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == len(lab.frames) >= 2 and frames.shape[1:3] == (36, 48)
    lab.save_png()
    assert lab.saved[-1] != png and png.exists(), "a second save never overwrites the first"

    lab.output_dir.value = str(tmp_path / "other")
    assert lab.save_png().parent == tmp_path / "other"


def test_save_before_a_run_says_what_to_do(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path)
    with pytest.raises(ValueError, match="press Run"):
        lab.save_png()
    lab.gif_button.disabled = False
    lab.gif_button.click()  # the button reports instead of raising in the callback
    assert "press Run" in lab.saved_note.value


def test_blend_slider_only_with_two_styles(model, images, tmp_path):
    def described(lab, text):
        found, stack = [], [lab]
        while stack:
            w = stack.pop()
            stack.extend(getattr(w, "children", ()))
            if getattr(w, "description", None) == text:
                found.append(w)
        return found

    one = make_lab(model, images, tmp_path)
    assert one.blend is None and described(one, "blend") == []
    two = make_lab(model, images, tmp_path, styles=2, style_blend=(3, 1))
    assert described(two, "blend") == [two.blend] and two.blend.value == pytest.approx(0.25)
    two.blend.value = 0.75
    assert two.settings().style_blend == pytest.approx((0.25, 0.75))
    two.start_run(block=True)
    assert "done" in two.status.value


def test_settings_follow_the_controls(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, content_weight=2.0, style_weight=2e4, seed=7)
    assert lab.ratio.value == pytest.approx(4.0)
    lab.ratio.value = 2.0
    lab.optimizer.value = "adam"
    lab.init.value = "noise"
    lab.color.value = "luminance"
    lab.steps.value = 9
    lab.layer_weights["relu1_1"].value = 0.0
    s = lab.settings()
    assert s.content_weight == 2.0 and s.style_weight == pytest.approx(200.0) and s.seed == 7
    assert (s.optimizer, s.init, s.color, s.steps) == ("adam", "noise", "luminance", 9)
    assert s.layer_weights["relu1_1"] == 0.0 and s.layer_weights["relu5_1"] == pytest.approx(1 / 5)  # 1 = default 1/5
    assert "10<sup>2</sup>" in lab.ratio_note.value


def test_a_failing_run_reports_in_the_status(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, content_weight=0.0)
    assert lab.ratio.disabled and "style only" in lab.ratio_note.value  # no ratio without a content weight
    assert lab.settings().style_weight == 1e5
    for slider in lab.layer_weights.values():
        slider.value = 0.0
    lab.start_run(block=True)
    assert "transfer failed" in lab.status.value and "nothing to optimise" in lab.status.value
    assert not lab.running and not lab.run_button.disabled and lab.history == []


def test_bad_inputs_are_refused_clearly(model, images):
    from artlab.widgets import TransferLab

    content, style, _ = images
    with pytest.raises(ValueError, match="one image"):
        TransferLab(torch.cat([content, content]), style, model)
    with pytest.raises(ValueError, match="at least one style"):
        TransferLab(content, [], model)
    with pytest.raises(TypeError, match="Backbone"):
        TransferLab(content, style, model=torch.nn.Identity())
    with pytest.raises(ValueError, match="unknown color"):
        TransferLab(content, style, model, color="sepia")
    with pytest.raises(TypeError, match="unknown setting"):
        TransferLab(content, style, model, style_wieght=1e4)


def test_random_weights_get_a_red_badge(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path)
    badge = lab.children[-1]
    assert "random weights" in badge.value and "#c0392b" in badge.value
    assert model.label in lab.curves.layout.title.text


def _wait(predicate, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout_s:.0f} s")
        time.sleep(0.01)


def test_pause_holds_the_run_and_a_change_made_while_paused_restarts_warm_on_resume(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, steps=1000)
    lab.run_button.click()
    _wait(lambda: len(lab.history) >= 2, "two steps")
    lab.pause_button.click()
    _wait(lambda: lab.status.value.startswith("paused · run · step"), "the paused status")
    held = len(lab.history)
    time.sleep(0.3)
    assert len(lab.history) == held and lab.paused and lab.pause_button.description == "Resume"
    lab.ratio.value = lab.ratio.value + 1.0  # changed while paused: nothing runs yet
    assert len(lab.history) == held and [s["kind"] for s in lab.segments] == ["run"]
    lab.pause_button.click()  # Resume: the change is picked up before anything else
    _wait(lambda: len(lab.segments) == 2, "the warm restart")
    assert lab.segments[1]["kind"] == "warm restart" and lab.segments[1]["start_step"] == held
    lab.stop_button.click()
    lab.worker.join(timeout=30)
    assert not lab.running and "stopped" in lab.status.value and "1 warm restart" in lab.status.value
    assert lab.pause_button.disabled and lab.pause_button.description == "Pause"


def test_stop_while_paused_ends_the_run(model, images, tmp_path):
    lab = make_lab(model, images, tmp_path, steps=1000)
    lab.run_button.click()
    _wait(lambda: len(lab.history) >= 1, "a step")
    lab.pause_run()
    _wait(lambda: lab.status.value.startswith("paused"), "the paused status")
    lab.stop_run()
    lab.worker.join(timeout=30)
    assert not lab.worker.running and "stopped" in lab.status.value and not lab.paused
