"""artlab.explain's optimisations: feature visualisation, inversion, DeepDream (issue 18's contracts).

Small sizes and few steps throughout; the bundled EfficientNet-Lite0 (``lite0``) where a contract needs
trained features, the random tiny twins for the mechanics.
"""

from __future__ import annotations

import pytest
import torch

from artlab.explain import (
    FourierImage,
    channel,
    deepdream,
    direction,
    diversity,
    invert,
    inversion_strip,
    neuron,
    plot_inversion_strip,
    random_transforms,
    visualize,
    visualize_channel,
)
from artlab.explain.dream import dream_value
from artlab.models import backbone

# small tensors: one torch thread (on the shared 2-core machine, two threads made a 48-step 64 px
# visualisation 20x slower: 9-28 s instead of 0.4-1.5 s)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def twin():
    return backbone("tiny_efficientnet_lite", weights=None, seed=0)


@pytest.fixture(scope="module")
def picture():
    """A smooth 64 px test picture with edges and colour (no files needed)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    r = 0.5 + 0.4 * torch.sin(6 * xx) * torch.cos(4 * yy)
    g = (xx + yy) / 2
    b = ((xx - 0.5).square() + (yy - 0.5).square() < 0.08).float() * 0.8 + 0.1
    return torch.stack([r, g, b]).unsqueeze(0).clamp(0, 1)


# --------------------------------------------------------------------------- parameterisation


def test_fourier_image_is_a_valid_seeded_image():
    a, b, c = FourierImage(32, batch=2, seed=1), FourierImage(32, batch=2, seed=1), FourierImage(32, batch=2, seed=2)
    x = a()
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert 0 <= float(x.detach().min()) and float(x.detach().max()) <= 1
    assert torch.equal(x, b()) and not torch.equal(x, c())
    x.sum().backward()
    assert a.spectrum.grad is not None and bool(torch.isfinite(a.spectrum.grad).all())
    assert FourierImage((24, 40))().shape == (1, 3, 24, 40)
    with pytest.raises(ValueError, match="size"):
        FourierImage(0)


def test_random_transforms_are_seeded_and_differentiable():
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    one = random_transforms(x, generator=torch.Generator().manual_seed(3))
    two = random_transforms(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, two)
    one.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


# --------------------------------------------------------------------------- objectives and visualize


def test_objectives_compose(twin):
    acts = {"stage3": torch.rand(2, 8, 4, 4)}
    a, b = channel("stage3", 1), neuron("stage3", 2)
    total = (a + 2 * b - 0.5 * a)(acts)
    expected = 0.5 * acts["stage3"][:, 1].mean(dim=(1, 2)).sum() + 2 * acts["stage3"][:, 2, 2, 2].sum()
    torch.testing.assert_close(total, expected)
    assert (a + b).layers == ("stage3",)
    v = torch.zeros(8)
    v[3] = 2.0
    torch.testing.assert_close(direction("stage3", v)(acts), channel("stage3", 3)(acts))
    assert float(diversity("stage3", 1.0)(acts)) < 0  # similarity of non-negative maps, negated
    assert float(diversity("stage3", 1.0)({"stage3": acts["stage3"][:1]})) == 0.0


def test_visualized_channel_rises_far_above_noise(lite0):
    """Contract 1: the visualised channel's activation ends far above its value on noise (trained network)."""
    layer, index = "stage4", 5
    obj = channel(layer, index)
    noise = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        on_noise = lite0(noise, [layer])[layer][:, index].mean(dim=(1, 2))  # one value per noise image
    run = visualize(lite0, obj, size=64, steps=48, preview_every=16)
    steps = list(run)
    assert len(steps) == 48 and steps[-1].image is not None and steps[15].image is not None and steps[3].image is None
    assert len(run.values) == 48 and run.best_image is not None
    with torch.no_grad():
        reached = obj(lite0(run.image, [layer]))
    assert float(reached) > float(on_noise.max()) + 10 * float(on_noise.std()), (float(reached), on_noise)
    assert float(reached) > 3 * float(on_noise.abs().max()), (float(reached), on_noise)
    assert run.image.shape == (1, 3, 64, 64) and 0 <= float(run.image.min()) and float(run.image.max()) <= 1


def test_visualize_is_reproducible_for_a_seed(twin):
    """Contract 4: same seed, same images; another seed, different ones."""
    kw = dict(size=32, steps=5, batch=2)
    obj = channel("stage3", 2) + diversity("stage3", 10.0)
    a = visualize(twin, obj, seed=7, **kw).run()
    b = visualize(twin, obj, seed=7, **kw).run()
    c = visualize(twin, obj, seed=8, **kw).run()
    assert torch.equal(a.image, b.image) and a.values == b.values
    assert not torch.allclose(a.image, c.image)
    assert not torch.allclose(a.image[0], a.image[1])  # the batch items differ
    plain = visualize_channel(twin, "stage3", 2, size=32, steps=3, transforms=False)
    assert plain.shape == (1, 3, 32, 32)


def test_stopped_visualization_keeps_its_images(twin):
    """Contract 5: a stopped run keeps best_image and image."""
    run = visualize(twin, neuron("stage3", 0), size=32, steps=100, preview_every=0)
    for step in run:
        if step.step == 2:
            break
    run.close()
    assert len(run.values) == 3 and run.best_image is not None and run.image.shape == (1, 3, 32, 32)
    assert max(run.values) == run.best_value
    assert list(run) == []


def test_visualize_rejects_bad_input_naming_valid_values(twin):
    """Contract 5: unknown layer, channel out of range, bad numbers."""
    with pytest.raises(ValueError, match=r"no layer 'stage9'.*Valid layers: stem"):
        visualize(twin, channel("stage9", 0), size=32, steps=1)
    n = int(twin(torch.zeros(1, 3, 32, 32), ["stage3"])["stage3"].shape[1])
    with pytest.raises(ValueError, match=rf"channel {n} is out of range.*{n} channels \(valid: 0..{n - 1}\)"):
        visualize(twin, channel("stage3", n), size=32, steps=1)
    with pytest.raises(ValueError, match="valid: x in"):
        visualize(twin, neuron("stage3", 0, x=99, y=0), size=32, steps=1)
    with pytest.raises(ValueError, match="vector has 3 entries"):
        visualize(twin, direction("stage3", [1.0, 0.0, 0.0]), size=32, steps=1)
    with pytest.raises(ValueError, match="steps"):
        visualize(twin, channel("stage3", 0), size=32, steps=0)
    with pytest.raises(TypeError, match="Objective"):
        visualize(twin, "stage3", size=32)


# --------------------------------------------------------------------------- inversion


def test_inversion_is_closer_at_a_shallow_layer(lite0, picture):
    """Contract 2: the stem's reconstruction is close to the image, a deep layer's much less so."""
    errors = {}
    for layer, steps in (("stem", 40), ("stage4", 20)):
        run = invert(lite0, picture, layer, steps=steps, preview_every=10)
        steps = list(run)
        assert steps[9].image is not None and steps[-1].image is not None and steps[0].image is None
        assert run.best_loss < run.losses[0]
        errors[layer] = float((run.best_image - picture).square().mean())
    assert errors["stem"] < 0.02, errors
    assert errors["stem"] * 3 < errors["stage4"], errors


def test_inversion_runs_seeded_and_stoppable(twin, picture):
    """Contracts 4 and 5 for inversion, on the tiny twin; Adam with jitter too."""
    a = invert(twin, picture, "stage2", steps=3, seed=1, optimizer="lbfgs").run().best_image
    b = invert(twin, picture, "stage2", steps=3, seed=1, optimizer="lbfgs").run().best_image
    c = invert(twin, picture, "stage2", steps=3, seed=2, optimizer="lbfgs").run().best_image
    assert torch.equal(a, b) and not torch.equal(a, c)
    run = invert(twin, picture, "stage2", steps=50, jitter=2)
    next(run)
    next(run)
    run.close()
    assert len(run.losses) == 2 and run.best_image is not None
    with pytest.raises(ValueError, match="Valid layers"):
        invert(twin, picture, "nope")
    with pytest.raises(ValueError, match=r"1×3×H×W"):
        invert(twin, torch.rand(2, 3, 16, 16), "stem")
    with pytest.raises(ValueError, match="N×3×H×W"):
        invert(twin, torch.rand(1, 4, 16, 16), "stem")
    with pytest.raises(ValueError, match="jitter needs optimizer='adam'"):
        invert(twin, picture, "stem", optimizer="lbfgs", jitter=2)


def test_inversion_strip_and_figure(twin, picture):
    strip = inversion_strip(twin, picture, ["stem", "stage3"], steps=2, size=32)
    assert list(strip) == ["stem", "stage3"] and strip["stem"].shape == (1, 3, 32, 32)
    fig = plot_inversion_strip({"painting": picture, "photo": picture}, {"painting": strip, "photo": strip}, twin)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "RANDOM WEIGHTS" in texts and len(fig.axes) == 6


# --------------------------------------------------------------------------- DeepDream


def test_deepdream_changes_the_image_and_raises_the_activation(lite0, picture):
    """Contract 3."""
    layer = "stage4"
    run = deepdream(lite0, picture, layer, octaves=2, steps_per_octave=6, preview_every=4)
    steps = list(run)
    assert len(steps) == 12 and [s.octave for s in steps] == [0] * 6 + [1] * 6
    assert steps[5].image is not None and steps[5].image.shape[-1] < 64 and steps[-1].image.shape == (1, 3, 64, 64)
    assert float((run.image - picture).abs().mean()) > 0.01
    with torch.no_grad():
        before = float(dream_value(lite0(picture, [layer])[layer], None))
        after = float(dream_value(lite0(run.image, [layer])[layer], None))
    assert after > 1.2 * before, (before, after)
    assert 0 <= float(run.image.min()) and float(run.image.max()) <= 1


def test_deepdream_seeded_stoppable_and_checked(twin, picture):
    kw = dict(octaves=2, steps_per_octave=2, channel=1)
    a = deepdream(twin, picture, "stage3", seed=0, **kw).run().image
    assert torch.equal(a, deepdream(twin, picture, "stage3", seed=0, **kw).run().image)
    assert not torch.equal(a, deepdream(twin, picture, "stage3", seed=1, **kw).run().image)
    run = deepdream(twin, picture, "stage3", octaves=3, steps_per_octave=5)
    next(run)
    run.close()
    assert len(run.values) == 1 and run.best_image is not None
    with pytest.raises(ValueError, match="channel 999 is out of range"):
        deepdream(twin, picture, "stage3", channel=999)
    with pytest.raises(ValueError, match="Valid layers"):
        deepdream(twin, picture, "stage99")
    with pytest.raises(ValueError, match="one image"):
        deepdream(twin, torch.rand(3, 16, 16, 3), "stage3")
