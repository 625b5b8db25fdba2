"""Projection into W / W+ (LPIPS, pixel loss, noise regularisation, classes) on the tiny 32 px twin."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from artlab import weights
from artlab.stylegan import tiny_generator
from artlab.stylegan.generate import class_w_mean, generate
from artlab.stylegan.perceptual import RANDOM_LPIPS_LABEL, LPIPSLoss, perceptual_loss
from artlab.stylegan.project import (
    Projection,
    ProjectionStep,
    learning_rate,
    noise_regularization,
    prepare_target,
    project,
)

FAST = dict(n_w_samples=400, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: see conftest


@pytest.fixture(scope="module")
def Gc():
    return tiny_generator(c_dim=3, seed=5)


@pytest.fixture(scope="module")
def target(G):
    return generate(G, [11], truncation=0.8)


def tiny_perceptual(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A cheap stand-in for LPIPS: squared distance of 4×4-pooled images, per image."""
    return (F.avg_pool2d(a, 4) - F.avg_pool2d(b, 4)).pow(2).flatten(1).mean(dim=1)


# --------------------------------------------------------------------------- the pieces


def test_learning_rate_schedule():
    assert learning_rate(0.0) == 0.0
    assert learning_rate(0.5, lr=0.2) == pytest.approx(0.2)
    assert learning_rate(0.025, lr=0.1) == pytest.approx(0.05)  # half-way up the 5% ramp
    assert learning_rate(0.875, lr=0.1) == pytest.approx(0.05)  # half-way down the cosine over the last 25%
    assert learning_rate(0.99) < 0.002


def test_noise_regularization_penalises_correlated_noise():
    gen = torch.Generator().manual_seed(0)
    white = [torch.randn(32, 32, generator=gen), torch.randn(8, 8, generator=gen)]
    blurred = F.avg_pool2d(torch.randn(1, 1, 32, 32, generator=gen), 3, stride=1, padding=1, count_include_pad=False)
    smooth = [blurred[0, 0] / blurred.std(), white[1]]
    assert float(noise_regularization(white)) < 0.1 * float(noise_regularization(smooth))
    # a circular shift that keeps the 2×2 pooling grid (32 -> 16 -> 8: by 4 px) changes nothing
    torch.testing.assert_close(noise_regularization([torch.roll(smooth[0], 4, 0)]), noise_regularization(smooth[:1]))


def test_prepare_target_crops_and_resizes():
    image = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(0))
    out = prepare_target(image, 32)
    assert out.shape == (1, 3, 32, 32)
    same = prepare_target(image[:, :, :, 10:50], 40)
    torch.testing.assert_close(same, image[:, :, :, 10:50])  # centre crop of 60 wide is columns 10..49
    with pytest.raises(ValueError, match="one target image"):
        prepare_target(torch.rand(2, 3, 32, 32), 32)


# --------------------------------------------------------------------------- projection runs


def test_projection_loss_decreases_with_a_callable_metric(G, target):
    run = project(G, target, steps=12, perceptual=tiny_perceptual, noise_regularize=0.0, lr=0.2, **FAST)
    assert isinstance(run, Projection)
    steps = list(run)
    assert len(steps) == 12 and all(isinstance(s, ProjectionStep) for s in steps)
    assert steps[0].lr == 0.0 and max(s.lr for s in steps) == pytest.approx(0.2)
    assert run.best_loss < 0.7 * steps[0].lpips
    assert math.isnan(steps[0].pixel) and run.metric_pretrained is None
    assert "custom perceptual loss" in run.label and G.label in run.label
    # previews every 10 steps and at the last one; each is the image scored
    assert [s.step for s in steps if s.image is not None] == [0, 10, 11]
    assert steps[0].image.shape == (1, 3, 32, 32)
    res = run.result()
    assert res.trajectory.shape == (12, G.num_ws, G.w_dim) and len(res.losses) == 12
    assert res.image.shape == (1, 3, 32, 32) and 0 <= float(res.image.min()) and float(res.image.max()) <= 1
    # the best ws really produce the best image (rendered with the projection's noise maps)
    torch.testing.assert_close(float(tiny_perceptual(res.image, run.target)), res.loss, rtol=1e-4, atol=1e-7)


def test_projection_with_random_lpips(G, target):
    run = project(G, target, steps=6, perceptual="lpips-vgg-random", lr=0.2, **FAST)
    steps = list(run)
    assert all(math.isfinite(s.lpips) and math.isfinite(s.noise_reg) for s in steps)
    assert min(s.lpips for s in steps[1:]) < steps[0].lpips
    assert RANDOM_LPIPS_LABEL in run.label and run.metric_pretrained is False
    # the optimised noise maps stay normalised; G's own noise is untouched
    for name, v in run.noise.items():
        v = v.detach()
        assert abs(float(v.mean())) < 1e-4 and float(v.square().mean()) == pytest.approx(1.0, rel=1e-4)
    orig = dict(G.synthesis.named_buffers())
    assert all(not orig[name].requires_grad for name in run.noise)
    assert (orig[next(iter(run.noise))] - run.noise[next(iter(run.noise))].detach()).abs().max() > 0.1


def test_pixel_only_projection(G, target):
    run = project(G, target, steps=8, lpips_weight=0.0, pixel_weight=1.0, perceptual="lpips-vgg", lr=0.2, **FAST)
    steps = list(run)  # no LPIPS network is built, so no VGG weights are needed
    assert run.perceptual is None and math.isnan(steps[0].lpips)
    assert run.best_loss < steps[0].pixel
    with pytest.raises(ValueError, match="both 0"):
        project(G, target, lpips_weight=0.0, pixel_weight=0.0)


def test_w_and_w_plus_shapes(G, target):
    w = project(G, target, steps=4, space="w", perceptual=tiny_perceptual, **FAST)
    wp = project(G, target, steps=4, space="w+", perceptual=tiny_perceptual, **FAST)
    assert tuple(w.delta.shape) == (1, 1, G.w_dim) and tuple(wp.delta.shape) == (1, G.num_ws, G.w_dim)
    for run in (w, wp):
        list(run)
        assert run.best_ws.shape == (1, G.num_ws, G.w_dim) and len(run.trajectory) == 4
    last_w, last_wp = w.trajectory[-1][0], wp.trajectory[-1][0]
    assert (last_w - last_w[0]).abs().max() == 0  # W: one w in every row
    assert (last_wp - last_wp[0]).abs().max() > 1e-4  # W+: rows move apart
    with pytest.raises(ValueError, match="'w'"):
        project(G, target, space="z")


def test_init_ws_and_small_resolutions(G, Gc, target):
    from artlab.stylegan.generate import map_to_ws

    start = map_to_ws(G, [11], truncation=0.8)
    run = project(G, target, steps=2, init_ws=start, space="w+", perceptual=tiny_perceptual, **FAST)
    torch.testing.assert_close(next(run).ws, start)
    soft = project(Gc, generate(Gc, [1], c=0), steps=2, c="optimize", init_ws=map_to_ws(Gc, [1], c=0),
                   perceptual=tiny_perceptual, **FAST)
    list(soft)
    # a 16 px generator still gets a working LPIPS (inputs upsampled to 32 px for VGG16's five stages)
    g16 = tiny_generator(resolution=16)
    small = project(g16, torch.rand(1, 3, 20, 24), steps=2, perceptual="lpips-vgg-random", **FAST)
    assert all(math.isfinite(s.lpips) for s in small) and small.target.shape == (1, 3, 16, 16)


def test_close_keeps_the_best_and_stops(G, target):
    run = project(G, target, steps=50, perceptual=tiny_perceptual, **FAST)
    for i, step in enumerate(run):
        if i == 2:
            run.close()
    assert run.done and run.steps_done == 3 and len(run.trajectory) == 3
    with pytest.raises(StopIteration):
        next(run)
    res = run.result()  # does not resume
    assert res.steps_done == 3 and res.trajectory.shape[0] == 3
    assert res.loss == min(run.best_loss, res.loss) and res.loss <= min(s for s in run.losses)
    torch.testing.assert_close(res.ws, run.best_ws)


def test_conditional_projection_fixed_class(Gc):
    target = generate(Gc, [3], c=1)
    run = project(Gc, target, steps=3, c=1, perceptual=tiny_perceptual, **FAST)
    first = next(run)
    assert first.c.tolist() == [[0.0, 1.0, 0.0]]
    # starts at the class's W mean (sampled: compare with a larger independent estimate)
    start = first.ws[0, 0]
    centres = [class_w_mean(Gc, k, n=4000) for k in range(3)]
    dists = [float((start - m).norm()) for m in centres]
    assert dists[1] == min(dists) and dists[1] < 0.5 * min(dists[0], dists[2])
    with pytest.raises(ValueError, match="unconditional"):
        project(tiny_generator(), target, c=1, perceptual=tiny_perceptual)


def test_conditional_projection_optimises_a_soft_class(Gc):
    target = generate(Gc, [3], c=2, truncation=0.7)
    run = project(Gc, target, steps=10, c="optimize", perceptual=tiny_perceptual, lr=0.2, **FAST)
    assert run.w_prior_weight == 0.1
    cs = [s.c for s in run]
    for c in cs:
        assert c.shape == (1, 3) and float(c.min()) >= 0 and float(c.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(cs[0], torch.full((1, 3), 1 / 3))
    assert (cs[-1] - cs[0]).abs().max() > 1e-3
    assert run.result().c.shape == (1, 3)
    with pytest.raises(ValueError, match="c_dim"):
        project(tiny_generator(), target, c="optimize", perceptual=tiny_perceptual)


# --------------------------------------------------------------------------- LPIPS and its weights


def test_random_lpips_is_seeded_labelled_and_leaves_the_global_rng():
    import lpips
    from pathlib import Path

    state = torch.get_rng_state()
    loss = perceptual_loss("lpips-vgg-random", seed=0)
    assert torch.equal(state, torch.get_rng_state())
    assert isinstance(loss, LPIPSLoss) and not loss.pretrained and RANDOM_LPIPS_LABEL in loss.label
    assert perceptual_loss("lpips-vgg-random", seed=0) is loss  # cached
    other = perceptual_loss("lpips-vgg-random", seed=1)
    w0, w1 = loss.net.net.slice1[0].weight, other.net.net.slice1[0].weight
    assert (w0 - w1).abs().max() > 0.01
    # the lin layers are the package's calibrated v0.1 weights, the input scaling is lpips' own
    lin = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", map_location="cpu",
                     weights_only=True)
    for key, value in lin.items():
        torch.testing.assert_close(loss.net.state_dict()[key], value)
    torch.testing.assert_close(loss.net.scaling_layer.scale, lpips.ScalingLayer().scale)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d = loss(x, x[:1])
    assert d.shape == (2,) and float(d[0]) == pytest.approx(0.0, abs=1e-6) and float(d[1]) > 0


def test_lpips_vgg_needs_the_vgg16_weights(hub_cache, G, target):
    with pytest.raises(weights.WeightsNotFoundError) as err:
        perceptual_loss("lpips-vgg")
    message = str(err.value)
    for words in ("vgg16-397923af.pth", "artlab weights import", "lpips-vgg-random", str(hub_cache)):
        assert words in message
    with pytest.raises(weights.WeightsNotFoundError, match="vgg16-397923af.pth"):
        project(G, target, steps=2, perceptual="lpips-vgg")
    with pytest.raises(ValueError, match="lpips-vgg-random"):
        perceptual_loss("lpips-alex")


def test_lpips_vgg_uses_the_cached_vgg16_file(hub_cache):
    # A stand-in for torchvision's file: only the features.* tensors LPIPS uses, random values.
    gen = torch.Generator().manual_seed(1)
    shapes = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
              (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    conv_index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    state = {}
    for i, (o, c) in zip(conv_index, shapes):
        state[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=gen) * 0.05
        state[f"features.{i}.bias"] = torch.randn(o, generator=gen) * 0.01
    torch.save(state, hub_cache / "vgg16-397923af.pth")
    loss = perceptual_loss("lpips-vgg")
    assert loss.pretrained and "ImageNet" in loss.label and "random" not in loss.label.lower()
    torch.testing.assert_close(getattr(loss.net.net.slice3, "12").weight, state["features.12.weight"])
    torch.testing.assert_close(getattr(loss.net.net.slice5, "28").bias, state["features.28.bias"])


# --------------------------------------------------------------------------- settings, the Run protocol and "auto"


def test_projection_settings_are_one_dataclass_and_the_old_keywords_still_work(G, target):
    from artlab.runs import Run
    from artlab.stylegan.project import ProjectionSettings

    settings = ProjectionSettings(steps=5, perceptual=tiny_perceptual, n_w_samples=400, lr=0.2)
    run = project(G, target, settings)
    assert isinstance(run, Run) and run.settings is settings
    old = project(G, target, steps=5, perceptual=tiny_perceptual, n_w_samples=400, lr=0.2, seed=0)
    mixed = project(G, target, settings, lr_rampup=0.05)
    assert mixed.settings == settings.replace(lr_rampup=0.05)
    a, b, c = run.result(), old.result(), mixed.result()
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    torch.testing.assert_close(a.ws, c.ws, rtol=0, atol=0)
    for bad, match in [(dict(steps=0), "steps"), (dict(space="z"), "'w'"), (dict(lpips_weight=-1), "lpips_weight"),
                       (dict(lpips_weight=0, pixel_weight=0), "both 0"), (dict(preview_every=0), "preview_every")]:
        with pytest.raises(ValueError, match=match):
            ProjectionSettings(**bad)
    with pytest.raises(TypeError, match="unknown projection setting.*'stepz'"):
        project(G, target, stepz=3)


def test_a_projection_is_a_run_that_stops_on_break(G, target):
    run = project(G, target, steps=20, perceptual=tiny_perceptual, **FAST)
    for step in run:
        if step.step == 3:
            break
    run.close()
    assert run.closed and run.done and run.steps_done == 4 and run.best_ws is not None
    assert list(run) == [] and run.result().steps_done == 4


def test_auto_perceptual_is_lpips_or_a_labelled_feature_distance(hub_cache, monkeypatch):
    import artlab.stylegan.perceptual as perceptual
    from artlab.stylegan.perceptual import FeatureDistance

    metric = perceptual_loss("auto")  # no VGG16 file in this empty hub cache
    assert isinstance(metric, FeatureDistance) and metric.pretrained and "feature distance on" in metric.label
    assert "vgg16-397923af.pth" in metric.note
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    d = metric(x, x[:1].detach())
    assert d.shape == (2,) and float(d[0].detach()) == pytest.approx(0.0, abs=1e-6) and float(d[1].detach()) > 0
    d.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    monkeypatch.setattr(perceptual, "lpips_vgg_available", lambda: True)
    monkeypatch.setattr(perceptual, "perceptual_loss", lambda name, **kw: name)  # what "auto" asks for
    assert perceptual._auto(0, torch.device("cpu")) == "lpips-vgg"
