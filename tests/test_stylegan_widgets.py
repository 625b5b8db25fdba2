"""LatentExplorer and ProjectionView, driven by setting their controls and asserting on what they show.

A tiny random conditional generator (4 classes, 32 px) stands in for a trained one; the
images are checked against the core functions (artlab.stylegan.generate / walks), not
against stored numbers.
"""

from __future__ import annotations

import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from artlab.stylegan import tiny_generator
from artlab.stylegan.generate import Truncation, class_w_mean, generate, map_to_ws, synthesize


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


@pytest.fixture(scope="module")
def G():
    return tiny_generator(c_dim=4, resolution=32)


def tiny_distance(a, b):
    """A stand-in 'perceptual' distance for fast tests: mean squared error per image."""
    return ((a - b) ** 2).flatten(1).mean(dim=1)


tiny_distance.label = "pixel MSE (test stand-in)"
tiny_distance.pretrained = False


def _wait(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# ============================================================================ LatentExplorer


@pytest.fixture()
def explorer(G, tmp_path):
    from artlab.widgets import LatentExplorer

    return LatentExplorer(G, seed=3, output_dir=tmp_path / "out", frames=3)


def test_explorer_shows_the_generated_image_and_updates_in_place(G, explorer):
    torch.testing.assert_close(explorer.image, generate(G, seeds=[3], c=0))
    view, before = explorer.view, bytes(explorer.view.value)
    explorer.seed.value = 7
    assert explorer.view is view and bytes(view.value) != before and bytes(view.value).startswith(b"\x89PNG")
    torch.testing.assert_close(explorer.image, generate(G, seeds=[7], c=0))
    assert "seed 7" in explorer.caption.value


def test_truncation_psi_zero_collapses_every_seed_to_the_mean(G, explorer):
    explorer.psi.value = 0.0
    at_mean = explorer.image.clone()
    explorer.seed.value = 11
    torch.testing.assert_close(explorer.image, at_mean)
    torch.testing.assert_close(explorer.image, generate(G, seeds=[11], c=0, truncation=0.0))
    explorer.psi.value = 0.5
    torch.testing.assert_close(explorer.image, generate(G, seeds=[11], c=0, truncation=0.5))
    assert not torch.equal(explorer.image, at_mean)


def test_class_sliders_make_a_normalised_soft_label(G, explorer):
    explorer.preset_button.click()
    assert [s.value for s in explorer.class_sliders] == [0.7, 0.3, 0.0, 0.0]
    torch.testing.assert_close(explorer.class_vector(), torch.tensor([[0.7, 0.3, 0.0, 0.0]]))
    torch.testing.assert_close(explorer.image, generate(G, seeds=[3], c={0: 0.7, 1: 0.3}))
    assert "70% class 0 / 30% class 1" in explorer.caption.value

    explorer.class_sliders[0].value = 0.6
    explorer.class_sliders[1].value = 0.6  # 0.6 + 0.6: normalised to 50/50
    torch.testing.assert_close(explorer.class_vector(), torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert "class 0 50%, class 1 50%" in explorer.class_note.value


def test_all_zero_class_weights_are_reported_and_the_image_kept(explorer):
    shown = explorer.image.clone()
    for slider in explorer.class_sliders:
        slider.value = 0.0
    assert "all zero" in explorer.class_note.value and "#c0392b" in explorer.class_note.value
    torch.testing.assert_close(explorer.image, shown)
    explorer.class_sliders[2].value = 1.0
    assert "class 2 100%" in explorer.class_note.value


def test_class_aware_truncation_pulls_towards_the_class_mean(G, explorer):
    explorer.psi.value = 0.0
    explorer.class_sliders[0].value = 0.0
    explorer.class_sliders[2].value = 1.0
    global_mean = explorer.image.clone()
    explorer.class_aware.value = True
    torch.testing.assert_close(explorer.image,
                               generate(G, seeds=[3], c=2, truncation=Truncation(0.0, class_aware=True)))
    centre = class_w_mean(G, 2).view(1, 1, -1).expand(1, G.num_ws, -1)
    torch.testing.assert_close(explorer.ws, centre)
    assert not torch.equal(explorer.image, global_mean)
    assert "class-aware" in explorer.caption.value


def test_style_mixing_takes_the_chosen_ws_rows_from_the_mix_seed(G, explorer):
    explorer.mix_seed.value = 9
    explorer.mix_rows.value = (2, 4)
    explorer.mixing.value = True
    ws_a, ws_b = map_to_ws(G, [3], None, 0), map_to_ws(G, [9], None, 0)
    torch.testing.assert_close(explorer.ws[:, 2:5], ws_b[:, 2:5])
    torch.testing.assert_close(explorer.ws[:, :2], ws_a[:, :2])
    torch.testing.assert_close(explorer.ws[:, 5:], ws_a[:, 5:])
    torch.testing.assert_close(explorer.image, synthesize(G, explorer.ws))
    assert "rows 2–4" in explorer.caption.value and "8–16 px" in explorer.mix_note.value
    explorer.mix_rows.value = (0, G.num_ws - 1)  # every row from the mix seed: its own image
    torch.testing.assert_close(explorer.image, generate(G, seeds=[9], c=0))


def test_z_walk_plays_loops_and_exports(G, explorer, tmp_path):
    explorer.walk_kind.value = "z"
    explorer.keyframes.value = 2
    explorer.frames_slider.value = 3
    explorer.play(block=True)
    assert len(explorer.frames) == 6  # 2 seeds, looped: 2 segments × 3 frames
    torch.testing.assert_close(explorer.frames[0], generate(G, seeds=[3], c=0))
    torch.testing.assert_close(explorer.frames[3], generate(G, seeds=[4], c=0))
    torch.testing.assert_close(explorer.image, explorer.frames[-1])
    assert "done" in explorer.status.value and "6 frames" in explorer.status.value
    assert not explorer.gif_button.disabled and not explorer.mp4_button.disabled
    assert not explorer.play_button.disabled and explorer.stop_button.disabled

    gif = explorer.export_gif()
    assert gif.parent == tmp_path / "out" and str(gif) in explorer.saved_note.value
    assert iio.imread(gif, index=None).shape == (6, 32, 32, 3)
    mp4 = explorer.export_mp4()
    assert mp4.suffix == ".mp4" and mp4.stat().st_size > 0
    png = explorer.save_png()
    np.testing.assert_array_equal(iio.imread(png), np.round(explorer.image[0].permute(1, 2, 0).numpy() * 255))
    assert explorer.export_gif() != gif, "a second export gets a new name, nothing is overwritten"


def test_class_mix_walks_by_soft_label_and_by_centroid(G, explorer):
    explorer.walk_kind.value = "class"
    assert explorer.walk_class_box.layout.display is None and explorer.keyframes.layout.display == "none"
    explorer.walk_from.value, explorer.walk_to.value = 1, 3
    explorer.frames_slider.value = 5
    walks = {}
    for method in ("soft_label", "centroid"):
        explorer.walk_method.value = method
        explorer.play(block=True)
        walks[method] = torch.cat(explorer.frames)
        assert walks[method].shape == (5, 3, 32, 32)
        assert f"by {method.replace('_', ' ')}" in explorer.status.value
        # at ψ = 1 both methods start at class 1 and end at class 3 exactly
        torch.testing.assert_close(walks[method][:1], generate(G, seeds=[3], c=1))
        torch.testing.assert_close(walks[method][-1:], generate(G, seeds=[3], c=3))
    assert not torch.allclose(walks["soft_label"][2], walks["centroid"][2], atol=1e-4), \
        "a 50/50 soft label is not the midpoint in W"
    explorer.walk_to.value = 1
    explorer.play(block=True)
    assert "two different classes" in explorer.status.value


def test_stop_ends_a_background_walk_and_keeps_its_frames(G, explorer):
    explorer.walk_kind.value = "w"
    explorer.keyframes.value = 16
    explorer.frames_slider.value = 120
    explorer.fps.value = 60
    explorer.play()  # a background thread, as the Play button does
    _wait(lambda: len(explorer.frames) >= 2)
    explorer.psi.value = 0.5  # moved during the walk: applied when it ends
    explorer.stop()
    explorer.worker.join(timeout=60)
    assert not explorer.worker.running
    assert "stopped" in explorer.status.value
    assert 2 <= len(explorer.frames) < 16 * 120
    assert not explorer.gif_button.disabled and not explorer.play_button.disabled
    torch.testing.assert_close(explorer.image, generate(G, seeds=[3], c=0, truncation=0.5))
    explorer.seed.value = 5
    assert "seed 5" in explorer.caption.value


def test_exports_before_a_walk_say_what_to_do(explorer):
    with pytest.raises(ValueError, match="press Play"):
        explorer.export_gif()
    explorer.gif_button.disabled = False
    explorer.gif_button.click()
    assert "press Play" in explorer.saved_note.value


def test_unconditional_generator_hides_the_class_controls(tmp_path):
    from artlab.widgets import LatentExplorer

    G0 = tiny_generator(c_dim=0, resolution=32)
    explorer = LatentExplorer(G0, seed=1, output_dir=tmp_path)
    assert explorer.class_box.layout.display == "none" and explorer.walk_class_box.layout.display == "none"
    assert "class" not in [value for _label, value in explorer.walk_kind.options]
    assert explorer.class_vector() is None and "class" not in explorer.describe()
    torch.testing.assert_close(explorer.image, generate(G0, seeds=[1]))
    explorer.walk_kind.value = "w"
    explorer.keyframes.value = 2
    explorer.frames_slider.value = 2
    explorer.play(block=True)
    assert len(explorer.frames) == 4


def test_badge_flags_random_weights(G):
    from artlab.widgets.stylegan_parts import generator_badge

    assert "random weights" in generator_badge(G).value and "#c0392b" in generator_badge(G).value
    trained = tiny_generator(c_dim=0, resolution=32, seed=5)
    trained.set_provenance("my-run.pkl", pretrained=True)
    badge = generator_badge(trained).value
    assert "my-run.pkl" in badge and "random" not in badge and "#c0392b" not in badge


def test_explorer_refuses_what_is_not_a_generator():
    from artlab.widgets import LatentExplorer

    with pytest.raises(TypeError, match="StyleGAN2-ADA Generator"):
        LatentExplorer(torch.nn.Linear(2, 2))


# ============================================================================ ProjectionView


@pytest.fixture(scope="module")
def target(G):
    return generate(G, seeds=[21], c=2)  # an image the generator can make


def _view(G, target, tmp_path, **kwargs):
    from artlab.widgets import ProjectionView

    kwargs.setdefault("perceptual", tiny_distance)
    kwargs.setdefault("n_w_samples", 256)
    return ProjectionView(G, target, output_dir=tmp_path / "out", **kwargs)


def test_projection_runs_live_and_keeps_the_best(G, target, tmp_path):
    view = _view(G, target, tmp_path, steps=15, preview_every=5)
    curve = view.curve
    view.class_choice.value = 2
    view.start(block=True)
    assert view.curve is curve and len(view.history) == 15
    assert list(curve.data[0].x) == list(range(15))
    np.testing.assert_allclose(curve.data[0].y, [h["lpips"] for h in view.history])
    assert min(h["lpips"] for h in view.history) < view.history[0]["lpips"]
    assert "done" in view.status.value and "15 steps" in view.status.value
    assert view.best_image.shape == (1, 3, 32, 32) and view.recon_view.filled and bytes(view.recon_view.value).startswith(b"\x89PNG")
    assert torch.allclose(view.best_ws, view.best_ws[:, :1].expand_as(view.best_ws)), "W: one w for every row"
    assert not view.walk_button.disabled and view.stop_button.disabled
    assert view.perceptual_label in curve.layout.title.text


def test_target_is_cropped_and_resized_to_the_generator(G, tmp_path):
    view = _view(G, torch.rand(1, 3, 48, 64), tmp_path)
    assert view.target.shape == (1, 3, 32, 32)
    assert "resized to 32×32" in str(view.children[0].children[0].children[1].value)


def test_w_plus_and_optimised_soft_class(G, target, tmp_path):
    view = _view(G, target, tmp_path, steps=8)
    view.space.value = "w+"
    view.class_choice.value = "optimize"
    view.start(block=True)
    assert not torch.allclose(view.best_ws[:, 0], view.best_ws[:, -1]), "W+: rows move independently"
    assert view.projected_c.shape == (1, 4)
    assert float(view.projected_c.sum()) == pytest.approx(1.0, abs=1e-5) and bool((view.projected_c >= 0).all())
    assert "soft class found" in view.recon_caption.value


def test_stop_ends_a_background_projection(G, target, tmp_path):
    view = _view(G, target, tmp_path, steps=1000)
    view.project_button.click()  # a background thread, as in the notebook
    _wait(lambda: len(view.history) >= 2)
    view.stop_button.click()
    view.worker.join(timeout=60)
    assert not view.worker.running and not view.running
    assert "stopped" in view.status.value and len(view.history) < 1000
    assert view.best_ws is not None and not view.project_button.disabled


def test_walk_from_the_projection_to_a_class_and_export(G, target, tmp_path):
    view = _view(G, target, tmp_path, steps=4, walk_frames=6)
    with pytest.raises(ValueError, match="press Project"):
        view.walk_to_class(1)
    view.class_choice.value = 2
    view.start(block=True)
    view.walk_class.value = 0
    view.walk_button.click()
    assert view.walk.shape == (6, 3, 32, 32)
    torch.testing.assert_close(view.walk[:1], synthesize(G, view.best_ws))
    assert "to class 0" in view.saved_note.value
    path = view.export_gif()
    assert path.exists() and path.parent == tmp_path / "out" and str(path) in view.saved_note.value


def test_walk_to_class_swaps_the_class_centre(G):
    from artlab.stylegan.walks import WalkFrame, collect, walk_to_class, walk_w_to_class

    centre = {k: class_w_mean(G, k).view(1, 1, -1).expand(1, G.num_ws, -1) for k in (1, 3)}
    onehot = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    walk = list(walk_w_to_class(G, centre[1], 3, frames=4, c_from=onehot))
    assert all(isinstance(f, WalkFrame) for f in walk) and "class 3" in walk[-1].label  # a walk, like walk_w
    frames = collect(walk)
    torch.testing.assert_close(frames[:1], synthesize(G, centre[1]))
    torch.testing.assert_close(frames[-1:], synthesize(G, centre[3]), atol=1e-5, rtol=1e-4)
    same = collect(walk_w_to_class(G, centre[1], 1, frames=3, c_from=onehot))
    torch.testing.assert_close(same, synthesize(G, centre[1]).expand(3, -1, -1, -1))
    with pytest.warns(DeprecationWarning, match="walk_w_to_class"):  # the old name: images, one release more
        old = walk_to_class(G, centre[1], 3, frames=4, c_from=onehot)
    torch.testing.assert_close(old, frames)


def test_offline_lpips_is_labelled_loudly(G, target, tmp_path, hub_cache, monkeypatch):
    """Without LPIPS-VGG's file, "auto" (the default; None too) is a labelled feature distance on a
    trained network, and says why; only without any trained network is it the random LPIPS, in red."""
    import artlab.stylegan.perceptual as perceptual
    from artlab.stylegan.perceptual import FeatureDistance
    from artlab.weights import WeightsNotFoundError

    view = _view(G, target, tmp_path, perceptual=None, steps=2)
    assert isinstance(view.metric, FeatureDistance) and view.metric.pretrained and not view.perceptual_is_random
    note = view.perceptual_note.value
    assert "feature distance on" in note and "#c0392b" not in note
    assert "vgg16-397923af.pth" in note and "artlab weights import" in note
    view.start(block=True)
    assert len(view.history) == 2 and view.perceptual_label in view.projection.label

    def no_trained_network(**_kw):
        raise WeightsNotFoundError("no trained network is available")

    monkeypatch.setattr(perceptual, "best_backbone", no_trained_network)
    with pytest.warns(UserWarning, match="not a perceptual metric"):
        view = _view(G, target, tmp_path, perceptual="auto", steps=3)
    assert view.metric.pretrained is False and view.perceptual_is_random
    note = view.perceptual_note.value
    assert "not a perceptual metric" in note and "#c0392b" in note
    assert "vgg16-397923af.pth" in note and "artlab weights import" in note
    view.start(block=True)  # the real lpips package with a random VGG16
    assert len(view.history) == 3 and all(np.isfinite(h["lpips"]) for h in view.history)
    assert "not a perceptual metric" in view.projection.label

    custom = _view(G, target, tmp_path, perceptual=tiny_distance)
    assert (custom.metric, custom.perceptual_label, custom.perceptual_is_random) == \
        (tiny_distance, "pixel MSE (test stand-in)", True)
    with pytest.raises(ValueError, match="lpips-vgg-random"):
        _view(G, target, tmp_path, perceptual="vgg")


def test_unconditional_projection_has_no_class_controls(tmp_path):
    G0 = tiny_generator(c_dim=0, resolution=32)
    view = _view(G0, generate(G0, seeds=[2]), tmp_path, steps=3)
    assert view.class_choice.layout.display == "none" and view.walk_box.layout.display == "none"
    assert view.class_argument() is None
    view.start(block=True)
    assert len(view.history) == 3 and view.walk_button.disabled


def test_old_widget_names_still_work_for_one_release(G, target, tmp_path):
    from artlab.widgets import LatentExplorer
    from artlab.widgets.latent_explorer import class_names
    from artlab.widgets.projection_view import resolve_perceptual
    from artlab.widgets.stylegan_parts import class_choices

    with pytest.warns(DeprecationWarning, match="class_choices"):
        assert class_names(G) == class_choices(G) == ["class 0", "class 1", "class 2", "class 3"]
    with pytest.warns(DeprecationWarning, match="perceptual_loss"):
        assert resolve_perceptual(tiny_distance) == (tiny_distance, "pixel MSE (test stand-in)", True)
    with pytest.warns(DeprecationWarning, match="Truncation"):
        explorer = LatentExplorer(G, seed=3, truncation_psi=0.5, output_dir=tmp_path)
    torch.testing.assert_close(explorer.image, generate(G, seeds=[3], c=0, truncation=0.5))
    assert explorer.psi.value == 0.5
