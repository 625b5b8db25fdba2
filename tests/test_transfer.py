"""Style transfer: the generator protocol, settings, colour modes, scales, panoramas, suggestions, export, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import hostile_files as hf
from artlab.gram import ReceptiveFieldWarning, style_distance
from artlab.images import load_image
from artlab.models import backbone, features
from artlab.transfer import (
    StyleTransfer,
    TransferSettings,
    TransferStep,
    TransferTooLarge,
    circular_padding,
    estimate_memory,
    largest_size,
    match_color,
    plot_ratio_sweep,
    progression_gif,
    rgb_to_yiq,
    save_gif,
    save_mp4,
    seam_error,
    stylize,
    stylize_frames,
    stylize_video,
    suggest_styles,
    transfer,
)

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
# tiny_vgg's random features are small at relu4_2: this content weight makes content and style comparable
BALANCED = {"content_weight": 1e6, "style_weight": 1e5}

pytestmark = pytest.mark.filterwarnings("ignore::artlab.gram.ReceptiveFieldWarning")


@pytest.fixture(scope="module")
def images(corpus):
    """Content photos and painted styles from the sample corpus, 48 px on the longer side."""
    by = {(i.meta["subject"], i.meta["style"]): i.path for i in corpus}
    return {key: load_image(path, 48) for key, path in by.items()}


@pytest.fixture(scope="module")
def content(images):
    """A 36×48 photo (4:3, so sizes and aspect ratios are checked)."""
    return images[("chelsea", "photo")][..., 6:42, :].contiguous()


@pytest.fixture(scope="module")
def style(images):
    return images[("astronaut", "pointillism")]


def _periodic(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth noise that wraps around horizontally (circular low-pass filter in Fourier space)."""
    noise = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    fy, fx = torch.fft.fftfreq(h).view(-1, 1), torch.fft.fftfreq(w).view(1, -1)
    smooth = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-(fx**2 + fy**2) / (2 * 0.08**2))).real
    return (smooth - smooth.amin()) / (smooth.amax() - smooth.amin())


# --------------------------------------------------------------------------- the shared optimiser


def test_image_optimizer_reuses_evaluations_clamps_and_stops_on_nan():
    from artlab.optimize import ImageOptimizer

    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2  # partly outside [0, 1]
    calls = [0]

    def objective(x):
        calls[0] += 1
        loss = (x - target).square().mean()
        return loss, {"mse": loss}

    opt = ImageOptimizer(objective, torch.full((1, 3, 8, 8), 0.5))
    updates = [opt.step() for _ in range(10)]
    assert updates[-1].best_loss < 0.1 * updates[0].loss and updates[0].terms == {"mse": updates[0].loss}
    # a step's starting evaluation is the previous line search's last one: fewer calls than 2 per step
    assert calls[0] < 2 * 10
    assert opt.current_image.min() >= 0 and opt.current_image.max() <= 1
    best = opt.best_image
    torch.testing.assert_close(best, target.clamp(0, 1), atol=0.05, rtol=0)

    def broken(x):
        loss = objective(x)[0]
        return (loss * float("nan") if calls[0] > 25 else loss), {}

    calls[0] = 0
    opt = ImageOptimizer(broken, torch.full((1, 3, 8, 8), 0.5), optimizer="adam", lr=0.05)
    statuses = []
    while not opt.stopped:
        statuses.append(opt.step().status)
    assert statuses[-1] == "nonfinite" and set(statuses[:-1]) == {"ok"} and len(statuses) == 26
    assert torch.isfinite(opt.current_image).all() and opt.best_image is not None
    with pytest.raises(RuntimeError, match="stopped after a non-finite loss"):
        opt.step()


# --------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("optimizer, steps", [("lbfgs", 12), pytest.param("adam", 25, marks=pytest.mark.slow)])
def test_the_loss_decreases_and_terms_add_up(model, content, style, optimizer, steps):
    run = stylize(content, style, model, size=48, steps=steps, optimizer=optimizer, tv_weight=1.0,
                  preview_every=0, **BALANCED)
    updates = list(run)
    assert isinstance(run, StyleTransfer) and isinstance(updates[0], TransferStep)
    assert [u.step for u in updates] == list(range(steps)) and all(u.status == "ok" for u in updates)
    first, last = updates[0], updates[-1]
    assert last.best_loss < 0.5 * first.loss
    assert last.best_loss == min(u.best_loss for u in updates)
    for u in (first, last):
        assert u.loss == pytest.approx(u.content + u.style + u.tv + u.histogram, rel=1e-5)
        assert set(u.per_layer) == set(STYLE)
        assert u.style == pytest.approx(1e5 * sum(0.2 * v for v in u.per_layer.values()), rel=1e-4)
    assert first.content == 0 and first.style > 0 and first.tv > 0  # content init
    assert last.content > 0
    assert run.history == [u.loss for u in updates]
    assert last.image.shape == (1, 3, 36, 48)  # the content's 4:3 aspect, longer side 48


def test_generator_protocol_previews_close_and_best_image(model, content, style):
    run = stylize(content, style, model, size=32, steps=50, optimizer="adam", preview_every=3)
    assert run.best_image is None and run.best_loss == math.inf  # nothing has run yet
    seen = []
    for update in run:
        seen.append(update)
        if update.step == 7:
            break
    run.close()
    assert [u.step for u in seen if u.image is not None] == [2, 5]
    assert all(u.image.device.type == "cpu" and not u.image.requires_grad for u in seen if u.image is not None)
    best = run.best_image
    assert best.shape == (1, 3, 24, 32) and 0 <= best.min() and best.max() <= 1
    assert run.best_loss == seen[-1].best_loss == min(u.loss for u in seen)
    assert len(run.frames) == 2 and len(run.history) == 8
    with pytest.raises(StopIteration):
        next(run)
    assert torch.equal(run.best_image, best)  # still there after close()


def test_a_plain_call_runs_to_the_end_and_is_deterministic(model, content, style):
    a = transfer(content, style, model, size=32, steps=3, init="noise", seed=1)
    b = transfer(content, style, model, size=32, steps=3, init="noise", seed=1)
    c = transfer(content, style, model, size=32, steps=3, init="noise", seed=2)
    assert a.shape == (1, 3, 24, 32) and torch.equal(a, b) and not torch.equal(a, c)
    run = stylize(content, style, model, size=32, steps=4, preview_every=0)
    image = run.result()
    assert len(run.history) == 4 and torch.equal(image, run.best_image)
    assert [f.shape for f in run.frames] == [(1, 3, 24, 32)]  # the last step's preview


def test_a_warm_start_continues_where_a_run_stopped(model, content, style):
    cold = stylize(content, style, model, size=32, steps=8, **BALANCED)
    cold_steps = list(cold)
    warm = stylize(content, style, model, size=32, steps=2, init=cold.current_image, **BALANCED)
    warm_first = next(warm)
    # the warm run starts from the cold run's last image, far below where the cold run started
    assert warm_first.loss <= cold_steps[-1].loss * 1.001
    assert warm_first.loss < 0.5 * cold_steps[0].loss


def test_a_quick_start_previews_small_then_runs_at_full_size_from_its_result(model, content, style):
    import torch.nn.functional as F

    run = stylize(content, style, model, size=48, steps=3, quick_start=2, quick_size=24, **BALANCED)
    updates = list(run)
    assert [u.quick for u in updates] == [True, True, False, False, False] and run.quick.steps == 2
    assert [u.size for u in updates] == [(18, 24)] * 2 + [(36, 48)] * 3
    assert all(u.image is not None for u in updates[:2]), "every quick step brings a preview"
    assert run.total_steps == 5 == len(run.history) and run.settings.total_steps == 3
    # the full-size start: the sharp content plus the change the quick start made, upsampled
    delta = F.interpolate(updates[1].image - load_image(content, (18, 24)), size=(36, 48), mode="bilinear",
                          align_corners=False)
    torch.testing.assert_close(run.scale_start, (load_image(content, (36, 48)) + delta).clamp(0, 1))
    assert stylize(content, style, model, size=48, steps=1, quick_start=2, quick_size=48).quick is None


def test_restart_continues_from_the_current_image_with_new_settings(model, content, style):
    run = stylize(content, style, model, size=32, steps=4, quick_start=2, quick_size=24, **BALANCED)
    for _ in range(3):
        next(run)
    current = run.current_image
    same = run.restart()
    assert run.closed and same.quick is None, "a warm restart needs no quick start"
    assert torch.equal(same.settings.init, current) and same.settings.steps == 4
    first = next(same)
    larger = same.restart(style_weight=1e6, size=48)
    assert larger.settings.style_weight == 1e6 and larger.size == (36, 48)
    torch.testing.assert_close(larger.settings.init, load_image(same.current_image, (36, 48)))
    assert next(larger).size == (36, 48) and first.size == (24, 32)


def _interrupt_step(monkeypatch, at: int) -> None:
    """Make ImageOptimizer.step raise KeyboardInterrupt on its ``at``-th call (1-based), once,
    after moving the pixels (as Ctrl+C inside an L-BFGS line search leaves them at a trial point)."""
    from artlab.optimize import ImageOptimizer

    real = ImageOptimizer.step
    calls = {"n": 0}

    def step(self):
        calls["n"] += 1
        if calls["n"] == at:
            with torch.no_grad():
                self.x.mul_(0.5)
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(ImageOptimizer, "step", step)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_an_interrupted_run_resumes_where_it_stopped(model, content, style, monkeypatch, optimizer):
    reference = stylize(content, style, model, size=32, steps=6, optimizer=optimizer, **BALANCED)
    done = [next(reference) for _ in range(3)]
    _interrupt_step(monkeypatch, at=4)
    run = stylize(content, style, model, size=32, steps=6, optimizer=optimizer, preview_every=0, **BALANCED)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for update in run:
            seen.append(update)
    assert [u.step for u in seen] == [0, 1, 2] and len(run.history) == 3
    assert [u.loss for u in seen] == [u.loss for u in done]  # the same run up to the interrupt
    assert torch.equal(run.best_image, reference.best_image)  # nothing lost
    assert torch.equal(run.current_image, reference.current_image)  # the interrupted step was undone
    rest = list(run)  # iterating again resumes; it does not start over
    assert [u.step for u in rest] == [3, 4, 5] and len(run.history) == 6
    assert rest[0].loss == next(reference).loss  # the resumed step starts from the undone step's image
    assert run.best_loss <= min(run.history[:3])
    assert [f.shape for f in run.frames] == [(1, 3, 24, 32)]  # one final preview, not one per attempt
    with pytest.raises(StopIteration):
        next(run)


def test_an_interrupted_coarse_to_fine_run_resumes_at_the_right_scale(model, images, monkeypatch):
    photo, painting = images[("coffee", "photo")], images[("rocket", "pointillism")]  # 48×48
    _interrupt_step(monkeypatch, at=3)  # the first step of the fine scale
    run = stylize(photo, painting, model, size=32, scales=2, steps=4, preview_every=0)
    with pytest.raises(KeyboardInterrupt):
        run.result()
    assert len(run.history) == 2 and run.best_image.shape == (1, 3, 32, 32)
    assert torch.equal(run.current_image, run.best_image)  # the fine scale's start, put back
    image = run.result()  # resumes at the fine scale: the coarse one is not redone
    assert [f.shape[-1] for f in run.frames] == [16, 32] and len(run.history) == 4
    assert image.shape == (1, 3, 32, 32)


def test_an_interrupted_transfer_returns_the_best_image_so_far(model, content, style, monkeypatch):
    reference = stylize(content, style, model, size=32, steps=5, **BALANCED)
    next(reference), next(reference)
    _interrupt_step(monkeypatch, at=3)
    try:
        with pytest.warns(UserWarning, match=r"interrupted after 2 of 5 steps.*steps=3"):
            image = transfer(content, style, model, size=32, steps=5, **BALANCED)
    except KeyboardInterrupt:  # not let through: pytest would take it for the user's Ctrl+C and stop
        pytest.fail("transfer() let the interrupt through instead of returning the best image so far")
    assert torch.equal(image, reference.best_image)
    _interrupt_step(monkeypatch, at=1)  # before any step: nothing to return, the interrupt propagates
    with pytest.raises(KeyboardInterrupt):
        transfer(content, style, model, size=32, steps=5, **BALANCED)


def test_blend_weights_decide_which_style_wins(model, content, images):
    s1, s2 = images[("coffee", "pointillism")], images[("rocket", "woodblock")]

    def distances(blend):
        out = transfer(content, [s1, s2], model, size=32, steps=15, init="noise", content_weight=0,
                       style_blend=blend)
        return [style_distance(out, load_image(s, (24, 32)), model=model).total for s in (s1, s2)]

    towards1, towards2 = distances((100, 1)), distances((1, 100))
    assert towards1[0] < towards1[1] and towards2[1] < towards2[0]
    assert towards1[0] < towards2[0] and towards2[1] < towards1[1]


# --------------------------------------------------------------------------- colour


def test_luminance_mode_keeps_the_content_chroma(model, content, style):
    kept = transfer(content, style, model, size=32, steps=6, color="luminance", **BALANCED)
    plain = transfer(content, style, model, size=32, steps=6, color="none", **BALANCED)
    reference = rgb_to_yiq(load_image(content, (24, 32)))
    ok = ((kept > 0) & (kept < 1)).all(dim=1, keepdim=True).expand(-1, 2, -1, -1)  # not clipped
    chroma_kept = (rgb_to_yiq(kept)[:, 1:] - reference[:, 1:]).abs()[ok].mean()
    chroma_plain = (rgb_to_yiq(plain)[:, 1:] - reference[:, 1:]).abs()[ok].mean()
    assert ok.float().mean() > 0.5
    assert chroma_kept < 1e-4 and chroma_plain > 100 * chroma_kept
    assert (rgb_to_yiq(kept)[:, 0] - reference[:, 0]).abs().mean() > 1e-3  # the luminance was stylised


def test_histogram_colour_mode_recolours_the_style_like_the_content(model, content, style):
    def mean(x):
        return x.flatten(2)[0].mean(-1)

    def cov(x):
        return torch.cov(x.flatten(2)[0])

    recoloured = match_color(style, content)
    assert (mean(recoloured) - mean(content)).abs().max() < 0.2 * (mean(style) - mean(content)).abs().max()
    assert (cov(recoloured) - cov(content)).abs().max() < 0.2 * (cov(style) - cov(content)).abs().max()
    out = transfer(content, style, model, size=32, steps=4, color="histogram", **BALANCED)
    assert out.shape == (1, 3, 24, 32) and torch.isfinite(out).all()


def test_grayscale_styles_of_another_shape_work_in_every_colour_mode(model, content, style):
    gray = style.mean(dim=1, keepdim=True)[..., :20, :]  # 1 channel, 20×48: a very different aspect
    for color in ("none", "luminance", "histogram"):
        out = transfer(content, gray, model, size=32, steps=2, color=color)
        assert out.shape == (1, 3, 24, 32) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- losses and scales


@pytest.mark.slow
def test_histogram_loss_runs_and_decreases(model, content, style):
    updates = list(stylize(content, style, model, size=32, steps=10, loss="gram+histogram", **BALANCED))
    assert set(updates[0].histogram_per_layer) == {"relu1_1", "relu4_1"}  # Risser et al.'s layers
    assert updates[0].histogram > 0 and updates[-1].histogram < 0.7 * updates[0].histogram
    assert updates[-1].best_loss < 0.5 * updates[0].loss


@pytest.mark.slow
def test_coarse_to_fine_ends_at_the_requested_size(model, images):
    photo, painting = images[("coffee", "photo")], images[("rocket", "pointillism")]  # 48×48
    run = stylize(photo, painting, model, size=56, steps=7, scales=2, preview_every=0)
    updates = list(run)
    assert [u.scale for u in updates] == [0] * 3 + [1] * 4
    assert {u.size for u in updates} == {(28, 28), (56, 56)}
    assert [u.image.shape[-1] for u in updates if u.image is not None] == [28, 56]
    assert run.best_image.shape == (1, 3, 56, 56)
    # the fine scale starts from the coarse result, upsampled: below where the coarse scale started
    assert updates[3].style < updates[0].style
    explicit = stylize(photo, painting, model, size=56, scales=2, scale_steps=(1, 2))
    assert [u.scale for u in explicit] == [0, 1, 1]


# --------------------------------------------------------------------------- panoramas


def test_circular_padding_wraps_around_and_is_restored(model):
    image = _periodic(32, 32)
    tiled = torch.cat([image] * 3, dim=-1)  # a wider image whose middle third has real neighbours
    plain = features(model, tiled, ["relu3_1"])["relu3_1"]  # stride 4: the middle third is columns 8..15
    with circular_padding(model):
        wrapped = features(model, image, ["relu3_1"])["relu3_1"]
    torch.testing.assert_close(wrapped, plain[..., 8:16], rtol=1e-4, atol=1e-5)
    paddings = [m.padding for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises(RuntimeError, match="boom"), circular_padding(model):
        raise RuntimeError("boom")
    assert [m.padding for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == paddings == [(1, 1)] * 16
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert not torch.allclose(features(model, image, ["relu3_1"])["relu3_1"], wrapped)


def test_seam_error_measures_the_wrap_around():
    assert seam_error(_periodic(32, 64)) == pytest.approx(1.0, abs=0.35)
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 32, 64)
    assert seam_error(ramp) > 30  # the whole range jumps at the seam
    assert seam_error(torch.full((1, 3, 8, 8), 0.5)) == 0.0


def test_panorama_mode_hides_the_seam(model, style):
    pano = _periodic(32, 64)
    kwargs = {"size": 64, "steps": 15, "content_weight": 1e6}
    off = seam_error(transfer(pano, style, model, panorama=False, **kwargs))
    on = seam_error(transfer(pano, style, model, panorama=True, **kwargs))
    assert on < 0.8 * off and on < 1.4


# --------------------------------------------------------------------------- suggestions


def test_suggest_styles_ranks_the_matching_style_first(model, corpus, images):
    target = images[("chelsea", "pointillism")]
    candidates = [images[("rocket", "woodblock")], target.flip(-1), images[("coffee", "kmeans")]]
    ranked = suggest_styles(target, candidates, model, k=3, size=48)
    assert [key for key, _ in ranked][0] == 1 and len(ranked) == 3
    assert ranked[0][1] > ranked[1][1] >= ranked[2][1] and ranked[0][1] <= 1 + 1e-6
    subset = corpus.subset(style=["woodblock", "pointillism"], subject=["chelsea", "rocket"])
    best_path, score = suggest_styles(target, subset, model, k=1, size=48)[0]
    assert best_path.parent.name == "pointillism" and best_path.stem == "chelsea" and score > 0.99


# --------------------------------------------------------------------------- sequences and export


@pytest.mark.slow
def test_frames_gif_and_mp4_round_trip(model, content, style, tmp_path):
    import imageio.v2 as imageio
    import imageio.v3 as iio

    frames = torch.cat([torch.roll(content, shift, dims=-1) for shift in (0, 2, 4)])
    results = list(stylize_frames(frames, style, TransferSettings(size=32, steps=3), model, warm_steps=2))
    assert [r.index for r in results] == [0, 1, 2] and [r.steps for r in results] == [3, 2, 2]
    assert all(r.image.shape == (1, 3, 24, 32) and r.status == "ok" for r in results)
    outputs = [r.image for r in results]

    gif = iio.imread(save_gif(outputs, tmp_path / "frames.gif", fps=5), index=None)
    assert gif.shape == (3, 24, 32, 3)
    mp4 = save_mp4(outputs, tmp_path / "out" / "frames.mp4", fps=5)
    with imageio.get_reader(mp4, format="FFMPEG") as reader:
        assert reader.count_frames() == 3 and reader.get_data(0).shape == (24, 32, 3)

    video = stylize_video(mp4, tmp_path / "styled.mp4", style, model=model, size=32, steps=2, max_frames=2)
    with imageio.get_reader(video, format="FFMPEG") as reader:
        assert reader.count_frames() == 2


def test_the_progression_gif_has_one_frame_per_preview(model, content, style, tmp_path):
    import imageio.v3 as iio

    run = stylize(content, style, model, size=64, steps=6, scales=2, preview_every=2, **BALANCED)
    with pytest.raises(ValueError, match="no preview frames yet"):
        progression_gif(run, tmp_path / "empty.gif")
    run.result()
    # previews at steps 1, 3, 5 and at the end of scale 0 (step 2); coarse frames are upsampled in the GIF
    assert [tuple(f.shape[-2:]) for f in run.frames] == [(24, 32), (24, 32), (48, 64), (48, 64)]
    frames = iio.imread(progression_gif(run, tmp_path / "progress.gif"), index=None)
    assert frames.shape[1:] == (48, 64, 3) and 2 <= frames.shape[0] <= 4  # GIF merges identical frames


# --------------------------------------------------------------------------- failures


def test_a_nan_stops_the_run_and_keeps_the_last_good_image(content, style):
    poisoned = backbone("tiny_vgg", weights=None)
    calls = [0]

    def poison(_module, _inputs, output):
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] > 6:
                return output * float("nan")
        return output

    poisoned.net.features[0].register_forward_hook(poison)
    for optimizer in ("lbfgs", "adam"):
        calls[0] = 0
        run = stylize(content, style, poisoned, size=32, steps=20, optimizer=optimizer, **BALANCED)
        updates = list(run)
        assert len(updates) < 20 and updates[-1].status.startswith("nonfinite")
        assert all(u.status == "ok" for u in updates[:-1])
        assert updates[-1].image is not None and torch.isfinite(updates[-1].image).all()
        assert run.best_image is not None and torch.isfinite(run.current_image).all()
        assert run.best_loss == min(u.loss for u in updates if math.isfinite(u.loss))


def test_bad_settings_get_actionable_errors(model, content, style):
    with pytest.raises(ValueError, match="nothing to optimise"):
        stylize(content, style, model, content_weight=0, style_weight=0)
    # every style layer weighted 0: caught without a model when all are named, else once resolved
    with pytest.raises(ValueError, match="every style layer weight is 0"):
        TransferSettings(content_weight=0, style_layers=("relu1_1", "relu2_1"),
                         layer_weights={"relu1_1": 0, "relu2_1": 0.0}).validate()
    layers = tuple(model.spec.style_layers)
    with pytest.raises(ValueError, match="every style layer weight is 0"):
        stylize(content, style, model, content_weight=0, layer_weights={layer: 0 for layer in layers})
    some_on = {layer: 0 for layer in layers[1:]}  # the first keeps its default 1/len(layers)
    assert next(iter(stylize(content, style, model, content_weight=0, layer_weights=some_on, size=32, steps=1)))
    with pytest.raises(ValueError, match="'lbfgs', 'adam'"):
        stylize(content, style, model, optimizer="sgd")
    with pytest.raises(ValueError, match="unknown init 'photo'"):
        stylize(content, style, model, init="photo")
    with pytest.raises(ValueError, match="unknown color"):
        stylize(content, style, model, color="sepia")
    with pytest.raises(ValueError, match="style_blend has 1 weights but 2 style images"):
        stylize(content, [style, style], model, style_blend=(1.0,))
    with pytest.raises(ValueError, match="not a style layer"):
        stylize(content, style, model, layer_weights={"relu4_2": 1.0})
    with pytest.raises(ValueError, match="relu5_1 needs at least 16×16"):
        stylize(content, style, model, size=8)
    with pytest.raises(ValueError, match=r"scales<=2"):
        stylize(content, style, model, size=64, scales=4)
    with pytest.raises(TypeError, match="unknown setting"):
        stylize(content, style, model, stpes=3)
    with pytest.raises(ValueError, match="device=meta"):
        stylize(content, style, model, device="meta")


def test_settings_helpers():
    s = TransferSettings.from_ratio(4)
    assert s.content_weight == 1 and s.style_weight == pytest.approx(1e4) and s.ratio == pytest.approx(1e4)
    assert TransferSettings(steps=10, scales=3).steps_per_scale() == [3, 3, 4]
    assert s.replace(steps=7).steps == 7 and s.steps == 200
    with pytest.raises(ValueError, match="steps=2 cannot be split over scales=3"):
        TransferSettings(steps=2, scales=3).validate()


# --------------------------------------------------------------------------- memory


def test_memory_estimate_grows_with_size_and_optimiser_state(model):
    sizes = [estimate_memory(model, side) for side in (64, 128, 256)]
    growth = (sizes[2] - sizes[1]) / (sizes[1] - sizes[0])
    assert 3.9 < growth < 4.1  # activations and optimiser state grow with the area (plus fixed workspace)
    large = sizes[1]
    assert estimate_memory(model, 128, optimizer="adam") < large
    assert estimate_memory(model, 128, n_styles=3) > large


def test_a_size_too_large_for_memory_names_the_largest_that_fits(model, content, style, monkeypatch):
    import artlab.transfer.memory as transfer_module

    budget = estimate_memory(model, (96, 128)) / 0.9 + 1  # just enough for 128 px at the content's 3:4
    monkeypatch.setattr(transfer_module, "available_memory", lambda device="cpu": int(budget))
    with pytest.raises(TransferTooLarge, match=r"largest size that fits is about 12\d px") as info:
        stylize(content, style, model, size=512)
    assert 128 <= info.value.largest_size < 140 and info.value.needed > info.value.available
    assert isinstance(info.value, MemoryError)
    accepted = stylize(content, style, model, size=info.value.largest_size)  # that size is accepted
    assert 0 < accepted.estimated_bytes <= 0.9 * budget
    assert largest_size(model, 0.75, available=int(budget)) == info.value.largest_size


def test_the_memory_estimate_covers_style_images_and_a_thin_one_is_refused(model, content, monkeypatch):
    """A 1×100000 style is enlarged to 16×1,600,000 px for relu5_1 (6.5 GB); the estimate used to ignore styles."""
    import artlab.transfer.memory as transfer_module
    from artlab.optimize import OptimizationTooLarge

    plain = estimate_memory(model, 48)
    assert estimate_memory(model, 48, styles=[(48, 48)]) == plain  # an ordinary style: what it always counted
    thin = estimate_memory(model, 48, styles=[(1, 100_000)])
    assert thin > 50 * plain and thin > 2 * 2**30
    assert largest_size(model, styles=[(1, 100_000)], available=int(thin / 2)) is None  # no size helps
    strip = torch.rand(1, 3, 1, 100_000, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(transfer_module, "available_memory", lambda device="cpu": 2 * 2**30)
    with hf.address_space_limit(512 << 20):  # refused before anything is allocated
        with pytest.raises(TransferTooLarge, match=r"(?s)1×100,000 px.*enlarged to 16×1,600,000 px.*crop it") as info:
            stylize(content, strip, model, size=48)
    assert info.value.largest_size is None and isinstance(info.value, OptimizationTooLarge)
    # a moderately thin style is counted and fits
    run = stylize(content, strip[..., :40].contiguous(), model, size=48, steps=1)
    assert run.estimated_bytes > plain


# --------------------------------------------------------------------------- the lesson's figure


def test_ratio_sweep_figure_is_labelled(model, content, style):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReceptiveFieldWarning)
        fig = plot_ratio_sweep(content, style, model, ratios=(1e2, 1e6), steps=2, size=32)
    texts = [t.get_text() for t in fig.texts]
    assert any("RANDOM WEIGHTS" in t and model.label in t for t in texts)
    assert len(fig.axes) == 4 and fig._repr_png_()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- per-network defaults


def test_the_network_brings_its_own_style_weight_and_layer_balance(content, style):
    lite = backbone("tiny_efficientnet_lite", weights=None)
    settings = TransferSettings(steps=1, size=48)
    assert settings.style_weight is None and math.isnan(settings.ratio)  # "the network's default" until resolved
    assert settings.for_model(lite).style_weight == lite.spec.style_weight
    assert settings.replace(style_weight=3.0).for_model(lite).style_weight == 3.0  # an explicit β wins
    run = stylize(content, style, lite, settings)
    assert run.settings.style_weight == lite.spec.style_weight
    # Lite's Grams differ in size by orders of magnitude between layers: its default w_l balance them
    weights = dict(run.layer_weights)
    assert math.isclose(sum(weights.values()), 1.0) and weights["stem"] > 10 * weights["stage2"]
    vgg = stylize(content, style, backbone("tiny_vgg", weights=None), settings)
    assert vgg.settings.style_weight == 1e5 and set(vgg.layer_weights.values()) == {0.2}  # Gatys: 1/n


@pytest.mark.parametrize("name", ["stage2", "stage2.1"])
def test_layer_weights_name_a_style_layer_by_alias_or_canonical_name(content, style, name):
    lite = backbone("tiny_efficientnet_lite", weights=None)
    run = stylize(content, style, lite, steps=1, size=48, layer_weights={name: 0.5})
    assert run.layer_weights["stage2"] == 0.5  # keyed as the style layers are named
    with pytest.raises(ValueError, match="not a style layer"):
        stylize(content, style, lite, steps=1, size=48, layer_weights={"stage6": 0.5})


# --------------------------------------------------------------------------- progress and the saved result's label


def test_transfer_shows_a_bar_with_steps_and_loss_only_when_asked(model, content, style, capsys):
    quiet = transfer(content, style, model, size=32, steps=4, optimizer="adam", progress=False, **BALANCED)
    assert capsys.readouterr() == ("", "")
    shown = transfer(content, style, model, size=32, steps=4, optimizer="adam", progress=True, **BALANCED)
    err = capsys.readouterr().err
    assert f"style transfer · {model.name}" in err and "4/4" in err and "loss=" in err
    assert torch.equal(quiet, shown), "the bar changes nothing in the result"


def test_transfer_is_silent_by_default_when_nobody_watches(model, content, style, capfd, monkeypatch):
    from artlab import runs

    monkeypatch.delenv(runs.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(runs, "in_kernel", lambda: False)
    monkeypatch.setattr(runs, "stderr_is_terminal", lambda: False)
    transfer(content, style, model, size=32, steps=2, optimizer="adam", **BALANCED)
    assert capfd.readouterr().err == ""
    monkeypatch.setattr(runs, "in_kernel", lambda: True)  # a notebook: on by default, off by the variable
    monkeypatch.setenv(runs.PROGRESS_ENV, "0")
    transfer(content, style, model, size=32, steps=2, optimizer="adam", **BALANCED)
    assert capfd.readouterr().err == ""


def test_a_multiscale_run_has_one_bar_over_all_its_steps(model, content, style, capsys):
    run = stylize(content, style, model, size=64, steps=6, scales=2, quick_start=2, quick_size=24, **BALANCED)
    assert run.total_steps == 8
    run.result(progress=True)
    err = capsys.readouterr().err
    assert err.count(" 0/8 ") == 1 and "8/8" in err and "/6" not in err and "/2 " not in err
    assert "size=48×64" in err  # the postfix says which stage is running (tqdm redraws at most 10× a second)


def test_iterating_a_transfer_yourself_stays_silent(model, content, style, capsys, monkeypatch):
    from artlab import runs

    monkeypatch.setattr(runs, "in_kernel", lambda: True)
    assert len(list(stylize(content, style, model, size=32, steps=3, **BALANCED))) == 3
    assert capsys.readouterr() == ("", "")


def test_a_saved_transfer_carries_the_network_label(model, content, style, tmp_path):
    import json

    from PIL import Image

    from artlab.images import read_image_metadata

    run = stylize(content, style, model, size=32, steps=2, **BALANCED)
    with pytest.raises(ValueError, match="nothing to save yet"):
        run.save(tmp_path / "early.png")
    run.result(progress=False)
    png, jpg = run.save(tmp_path / "out.png"), run.save(tmp_path / "out.jpg")
    with Image.open(png) as image:  # read with PIL alone: any tool sees the text chunks
        assert image.text["artlab:model"] == model.label == "tiny_vgg · random init (seed 0)"
        assert image.text["artlab:kind"] == "style transfer" and image.text["Software"].startswith("artlab ")
        settings = json.loads(image.text["artlab:settings"])
    assert settings["steps"] == 2 and settings["size"] == 32 and settings["style_weight"] == BALANCED["style_weight"]
    with Image.open(jpg) as image:  # EXIF ImageDescription, in ASCII
        assert image.getexif()[0x010E] == "tiny_vgg - random init (seed 0)"
    assert read_image_metadata(jpg) == read_image_metadata(png) == run.metadata
    np_png = load_image(png)
    assert np_png.shape == run.best_image.shape


def test_the_labs_save_button_writes_the_network_label(model, content, style, tmp_path):
    from artlab.images import read_image_metadata
    from artlab.widgets import TransferLab

    lab = TransferLab(content, style, model, size=32, steps=2, optimizer="adam", quick_steps=0, output_dir=tmp_path)
    lab.start_run(block=True)
    saved = read_image_metadata(lab.save_png())
    assert saved["artlab:model"] == model.label and saved["artlab:kind"] == "style transfer"
    assert '"steps":2' in saved["artlab:settings"]


def test_frames_show_one_bar_over_every_frames_steps(model, content, style, capsys):
    frames = torch.cat([torch.roll(content, shift, dims=-1) for shift in (0, 2, 4)])
    settings = TransferSettings(size=32, steps=3, optimizer="adam")
    results = list(stylize_frames(frames, style, settings, model, warm_steps=2, progress=True))
    err = capsys.readouterr().err
    assert [r.steps for r in results] == [3, 2, 2]
    assert "stylize frames" in err and "7/7" in err and "frame=3/3" in err
    list(stylize_frames(frames[:1], style, settings, model, progress=False))
    assert capsys.readouterr().err == ""
