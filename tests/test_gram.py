"""Gram matrices, style distances, inspection helpers, patch shuffling and texture synthesis.

Everything runs on the tiny random VGG-19 twin (same layer names, few channels) with
32-64 px images, so the file stays fast; receptive-field numbers are checked on the
real VGG-19 layout without a forward pass. One test reads ../shared/data when present.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from artlab.gram import (
    NORMALIZATIONS,
    FlatImageWarning,
    GramSet,
    ReceptiveFieldWarning,
    StyleDistance,
    SynthesisStep,
    cluster_order,
    compute_grams,
    eigen_spectrum,
    gram,
    gram_block,
    shuffle_experiment,
    shuffle_patches,
    style_distance,
    style_distance_matrix,
    synthesize_texture,
    texture_from,
    top_differing_pairs,
)
from artlab.models import backbone, receptive_field

import hostile_files as hf

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
TINY_CHANNELS = {"relu1_1": 8, "relu2_1": 16, "relu3_1": 24, "relu4_1": 32, "relu5_1": 32}


@pytest.fixture(autouse=True)
def _quiet_receptive_field():
    # 32-64 px images are smaller than relu5_1's 156 px receptive field; the warning is
    # tested on its own below and would only be noise elsewhere.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReceptiveFieldWarning)
        yield


def texture(size: int = 64, seed: int = 0, kind: str = "stripes") -> torch.Tensor:
    """A seeded procedural texture 1×3×size×size in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    if kind == "stripes":
        base = torch.sin(xx / 1.5 + yy / 3.0)[None, None] * torch.tensor([0.4, 0.2, -0.3]).view(1, 3, 1, 1)
        img = 0.5 + base + 0.15 * torch.rand(1, 3, size, size, generator=g)
    else:  # soft blotches in other colours
        coarse = torch.rand(1, 3, size // 8, size // 8, generator=g)
        img = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        img = 0.2 + 0.6 * img * torch.tensor([0.3, 1.0, 0.6]).view(1, 3, 1, 1)
    return img.clamp(0, 1)


# --------------------------------------------------------------------------- gram


HAND = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]])
HAND_FFT = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 2.0], [2.0, 2.0, 4.0]])  # F Fᵀ worked out on paper


@pytest.mark.parametrize("normalize, divisor", [("gatys", 3 * 2 * 2), ("hw", 2 * 2), ("none", 1)])
def test_gram_matches_a_hand_computation(normalize, divisor):
    g = gram(HAND, normalize)
    assert g.shape == (1, 3, 3)
    torch.testing.assert_close(g[0], HAND_FFT / divisor)


def test_gram_is_batched_and_can_compute_in_float64():
    x = torch.randn(4, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    batched = gram(x)
    for i in range(4):
        f = x[i].reshape(5, -1)
        torch.testing.assert_close(batched[i], f @ f.T / (5 * 6 * 7))
    g64 = gram(x, "hw", dtype=torch.float64)
    assert g64.dtype == torch.float64
    torch.testing.assert_close(g64.float(), gram(x, "hw"), rtol=1e-5, atol=1e-6)


def test_gram_is_symmetric_positive_semidefinite():
    x = torch.rand(2, 16, 9, 9, generator=torch.Generator().manual_seed(1))
    g = gram(x, dtype=torch.float64)
    torch.testing.assert_close(g, g.transpose(1, 2))
    assert torch.linalg.eigvalsh(g).min() > -1e-12


def test_gram_rejects_bad_input_clearly():
    with pytest.raises(ValueError, match="'gatys', 'hw', 'none'"):
        gram(HAND, "paper")
    with pytest.raises(ValueError, match="unsqueeze"):
        gram(HAND[0])
    assert NORMALIZATIONS == ("gatys", "hw", "none")


# --------------------------------------------------------------------------- compute_grams


def test_compute_grams_defaults_to_the_style_layers(model):
    gs = compute_grams(model, texture(48))
    assert isinstance(gs, GramSet)
    assert gs.layers() == STYLE
    assert {k: v.shape[0] for k, v in gs.grams.items()} == TINY_CHANNELS
    assert all(v.shape == (c, c) for v, c in zip(gs.grams.values(), TINY_CHANNELS.values()))
    assert (gs.model_name, gs.normalize, gs.image_size) == ("tiny_vgg", "gatys", (48, 48))
    assert "random init" in gs.model_label


def test_compute_grams_normalisations_differ_by_their_factors(model):
    img = texture(32)
    gatys, hw, none = (compute_grams(model, img, ["relu2_1"], normalize=n).grams["relu2_1"] for n in NORMALIZATIONS)
    c, positions = 16, 16 * 16  # relu2_1 of a 32 px image: 16 channels on 16×16
    torch.testing.assert_close(hw, gatys * c)
    torch.testing.assert_close(none, hw * positions, rtol=1e-4, atol=1e-6)


def test_compute_grams_refuses_a_batch_and_unknown_layers(model):
    with pytest.raises(ValueError, match="one image"):
        compute_grams(model, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="relu9_9"):
        compute_grams(model, texture(32), ["relu9_9"])


@pytest.mark.parametrize("colour", [(0.5, 0.5, 0.5), (1.0, 0.0, 0.0)])
def test_a_flat_image_warns_that_its_grams_mean_little(model, colour):
    flat = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, 32, 32).clone()
    with pytest.warns(FlatImageWarning, match="constant colour"):
        compute_grams(model, flat)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatImageWarning)
        compute_grams(model, texture(32))  # a textured image does not warn


def test_a_too_small_image_is_refused_with_the_size_it_needs(model):
    with pytest.raises(ValueError, match=r"image is 12×12 px but relu5_1 needs at least 16×16 .*downsamples by 16"):
        compute_grams(model, torch.rand(1, 3, 12, 12))
    # shallower layers are fine at that size
    assert compute_grams(model, torch.rand(1, 3, 12, 12), ["relu1_1", "relu2_1"]).grams["relu2_1"].shape == (16, 16)


def test_an_image_smaller_than_the_receptive_field_warns(model):
    with warnings.catch_warnings():
        warnings.simplefilter("default", ReceptiveFieldWarning)
        with pytest.warns(ReceptiveFieldWarning, match=r"156 px receptive field of relu5_1.*global layout"):
            compute_grams(model, texture(32))
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReceptiveFieldWarning)
            compute_grams(model, texture(32), ["relu1_1", "relu2_1", "relu3_1"])  # rf 24 px < 32 px


# --------------------------------------------------------------------------- receptive_field


@pytest.mark.parametrize(
    "layer, expected",
    [("relu1_1", (3, 1)), ("pool1", (6, 2)), ("relu2_1", (10, 2)), ("relu3_1", (24, 4)),
     ("relu4_1", (68, 8)), ("relu4_2", (84, 8)), ("relu5_1", (156, 16)), ("pool5", (268, 32))],
)
def test_receptive_field_of_vgg19(layer, expected):
    assert receptive_field(_vgg19(), layer) == expected


def test_receptive_field_of_other_layouts():
    assert receptive_field(backbone("vgg16", weights=None), "pool5") == (212, 32)  # the often-quoted number
    assert receptive_field(backbone("tiny_vgg", weights=None), "relu5_1") == (156, 16)  # same layout as VGG-19
    resnet = backbone("tiny_resnet", weights=None)
    assert receptive_field(resnet, "conv1") == (7, 2)
    assert receptive_field(resnet, "maxpool") == (11, 4)
    assert receptive_field(resnet, "layer1") == (27, 4)  # one basic block: two 3×3 convs at stride 4
    with pytest.raises(ValueError, match="avgpool.*whole input"):
        receptive_field(resnet, "fc")
    with pytest.raises(ValueError, match="fc6.*AdaptiveAvgPool2d"):
        receptive_field(_vgg19(), "fc6")


_VGG19 = []


def _vgg19():
    if not _VGG19:
        _VGG19.append(backbone("vgg19", weights=None))
    return _VGG19[0]


# --------------------------------------------------------------------------- style distance


def test_style_distance_is_zero_for_identical_images_and_symmetric_otherwise(model):
    a, b = compute_grams(model, texture(48, 0)), compute_grams(model, texture(48, 1, "blotches"))
    same = style_distance(a, compute_grams(model, texture(48, 0)))
    assert same.total == 0 and all(v == 0 for v in same.per_layer.values())
    ab, ba = style_distance(a, b), style_distance(b, a)
    assert ab.total > 0 and all(v > 0 for v in ab.per_layer.values())
    assert ab.per_layer == pytest.approx(ba.per_layer, rel=1e-12)


def test_style_distance_terms_add_up_with_weights(model):
    a, b = compute_grams(model, texture(48, 0)), compute_grams(model, texture(48, 1, "blotches"))
    d = style_distance(a, b)
    assert isinstance(d, StyleDistance) and d.layers == STYLE and d.normalize == "gatys"
    assert d.weights == {layer: 0.2 for layer in STYLE}
    assert d.total == pytest.approx(sum(0.2 * v for v in d.per_layer.values()), rel=1e-12)
    ga, gb = a.grams["relu3_1"].double(), b.grams["relu3_1"].double()
    assert d.per_layer["relu3_1"] == pytest.approx(float(((ga - gb) ** 2).sum() / 24**2), rel=1e-9)
    weights = {"relu1_1": 1.0, "relu2_1": 0.0, "relu3_1": 2.0, "relu4_1": 0.0, "relu5_1": 0.5}
    w = style_distance(a, b, layer_weights=weights)
    assert w.total == pytest.approx(sum(weights[k] * d.per_layer[k] for k in STYLE), rel=1e-12)
    rows = w.as_rows()
    assert [r["layer"] for r in rows] == STYLE
    assert sum(r["weighted"] for r in rows) == pytest.approx(w.total)
    assert rows[2] == {"layer": "relu3_1", "distance": d.per_layer["relu3_1"], "weight": 2.0,
                       "weighted": 2.0 * d.per_layer["relu3_1"]}
    with pytest.raises(ValueError, match=r"missing \['relu5_1'\]"):
        style_distance(a, b, layer_weights={k: 1.0 for k in STYLE[:4]})


def test_style_distance_of_images_needs_a_model_and_matches_gram_sets(model):
    a, b = texture(32, 0), texture(32, 1, "blotches")
    with pytest.raises(ValueError, match="model="):
        style_distance(a, b)
    from_images = style_distance(a, b, model=model, layers=["relu1_1", "relu3_1"], normalize="hw")
    from_sets = style_distance(compute_grams(model, a, ["relu1_1", "relu3_1"], normalize="hw"),
                               compute_grams(model, b, ["relu1_1", "relu3_1"], normalize="hw"))
    assert from_images == from_sets
    mixed = style_distance(compute_grams(model, a, ["relu1_1", "relu3_1"], normalize="hw"), b, model=model)
    assert mixed.per_layer == pytest.approx(from_sets.per_layer)


def test_style_distance_refuses_incomparable_grams(model):
    a = compute_grams(model, texture(32, 0))
    b = compute_grams(model, texture(32, 1))
    other_model = dataclasses.replace(b, model_name="vgg19")
    with pytest.raises(ValueError, match="A's Grams come from tiny_vgg but B's from vgg19: compute both with the same model"):
        style_distance(a, other_model)
    with pytest.raises(ValueError, match="'gatys'.*'hw'"):
        style_distance(a, compute_grams(model, texture(32, 1), normalize="hw"))
    fewer = compute_grams(model, texture(32, 1), ["relu1_1", "relu2_1"])
    with pytest.raises(ValueError, match=r"B lacks \['relu3_1', 'relu4_1', 'relu5_1'\], A lacks \[\]"):
        style_distance(a, fewer)
    assert style_distance(a, fewer, layers=["relu1_1", "relu2_1"]).layers == ["relu1_1", "relu2_1"]
    wrong_c = dataclasses.replace(b, grams={**b.grams, "relu2_1": torch.zeros(5, 5)})
    with pytest.raises(ValueError, match="relu2_1.*16×16 but B's is 5×5"):
        style_distance(a, wrong_c)


def test_style_distance_matrix_is_symmetric_with_zero_diagonal(model):
    images = torch.cat([texture(32, 0), texture(32, 1, "blotches"), texture(32, 2), texture(32, 3, "blotches")])
    total, per_layer = style_distance_matrix(model, images)
    assert total.shape == (4, 4) and set(per_layer) == set(STYLE)
    torch.testing.assert_close(total, total.T)
    assert torch.all(total.diagonal() == 0) and torch.all(total[~torch.eye(4, dtype=torch.bool)] > 0)
    pair = style_distance(images[1:2], images[3:4], model=model)
    assert float(total[1, 3]) == pytest.approx(pair.total, rel=1e-9)
    assert float(per_layer["relu4_1"][3, 1]) == pytest.approx(pair.per_layer["relu4_1"], rel=1e-9)
    # a list of differently sized images works too
    total2, _ = style_distance_matrix(model, [texture(32, 0), texture(48, 1)], ["relu1_1"])
    assert total2.shape == (2, 2) and total2[0, 1] > 0


# --------------------------------------------------------------------------- inspection


def _two_block_gram(seed: int = 0, c: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gram whose channels form two correlated groups, with channels shuffled; and the groups."""
    g = torch.Generator().manual_seed(seed)
    group = torch.tensor([0] * (c // 2) + [1] * (c - c // 2))
    sources = torch.randn(2, 400, generator=g)
    f = sources[group] + 0.3 * torch.randn(c, 400, generator=g)
    perm = torch.randperm(c, generator=g)
    f, group = f[perm], group[perm]
    return f @ f.T / 400, group


def test_cluster_order_recovers_correlated_blocks():
    gram_a, group = _two_block_gram(0)
    order = cluster_order(gram_a)
    assert sorted(order) == list(range(12))
    labels = group[order].tolist()
    assert labels == sorted(labels) or labels == sorted(labels, reverse=True), labels  # two contiguous blocks
    assert cluster_order(gram_a) == order  # deterministic


def test_cluster_order_gives_one_order_for_two_grams():
    a, group = _two_block_gram(0)
    b = a + 0.01 * torch.eye(12)
    ab, ba = cluster_order(a, b), cluster_order(b, a)
    assert ab == ba  # correlation distance ignores the order of the concatenated columns
    labels = group[ab].tolist()
    assert labels == sorted(labels) or labels == sorted(labels, reverse=True)


def test_cluster_order_puts_dead_channels_last_without_nan():
    a, _ = _two_block_gram(0)
    a[3, :] = 0
    a[:, 3] = 0
    a[7, :] = 0
    a[:, 7] = 0
    order = cluster_order(a)
    assert sorted(order) == list(range(12)) and order[-2:] == [3, 7]
    assert cluster_order(torch.zeros(4, 4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="same channel count"):
        cluster_order(torch.zeros(4, 4), torch.zeros(5, 5))


def test_gram_block_reorders_and_clips():
    g = torch.arange(36.0).reshape(6, 6)
    torch.testing.assert_close(gram_block(g, None, 1, 2), g[1:3, 1:3])
    order = [5, 4, 3, 2, 1, 0]
    torch.testing.assert_close(gram_block(g, order, 0, 2), torch.tensor([[35.0, 34.0], [29.0, 28.0]]))
    assert gram_block(g, None, 4, 10).shape == (2, 2)  # clipped at the end
    for start, size in [(6, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError):
            gram_block(g, None, start, size)
    with pytest.raises(ValueError, match="permutation"):
        gram_block(g, [0, 0, 1, 2, 3, 4], 0, 2)


def test_top_differing_pairs_finds_a_planted_difference():
    a, _ = _two_block_gram(1)
    b = a.clone()
    b[2, 9] += 5.0
    b[9, 2] += 5.0
    b[4, 4] -= 1.0
    rows = top_differing_pairs(a, b, k=3)
    assert (rows[0]["i"], rows[0]["j"]) == (2, 9) and rows[0]["diff"] == pytest.approx(-5.0)
    assert rows[0]["a"] - rows[0]["b"] == pytest.approx(rows[0]["diff"])
    assert (rows[1]["i"], rows[1]["j"], rows[1]["diff"]) == (4, 4, pytest.approx(1.0))
    assert abs(rows[2]["diff"]) < 1e-9 and all(r["i"] <= r["j"] for r in rows)
    assert len(top_differing_pairs(a, b, k=1000)) == 12 * 13 // 2


def test_eigen_spectrum_is_descending_nonnegative_and_sums_to_the_trace():
    a, _ = _two_block_gram(2)
    spectrum = eigen_spectrum(a)
    assert spectrum.dtype == torch.float64 and spectrum.shape == (12,)
    assert torch.all(spectrum[:-1] >= spectrum[1:]) and torch.all(spectrum >= 0)
    assert float(spectrum.sum()) == pytest.approx(float(a.double().trace()), rel=1e-6)
    assert spectrum[1] > 5 * spectrum[2]  # two correlated groups: two big directions


# --------------------------------------------------------------------------- shuffling


def _tiles(img: torch.Tensor, t: int) -> list[bytes]:
    _, c, h, w = img.shape
    x = img[0].reshape(c, h // t, t, w // t, t).permute(1, 3, 0, 2, 4).reshape(-1, c * t * t)
    return sorted(row.numpy().tobytes() for row in x)


def test_shuffle_patches_permutes_tiles():
    img = texture(64)
    out = shuffle_patches(img, 16, seed=0)
    assert out.shape == img.shape and not torch.equal(out, img)
    assert _tiles(out, 16) == _tiles(img, 16)  # the same tiles, elsewhere
    assert torch.equal(out, shuffle_patches(img, 16, seed=0))
    assert not torch.equal(out, shuffle_patches(img, 16, seed=1))
    assert torch.equal(shuffle_patches(img, 64), img)  # one tile: nothing to shuffle
    two = shuffle_patches(img, 32, seed=0)
    assert not torch.equal(two, img)  # never the identity when tiles can move


def test_shuffle_patches_crops_to_a_multiple_and_refuses_big_tiles():
    img = texture(64)[..., :50, :64]
    out = shuffle_patches(img, 16)
    assert out.shape == (1, 3, 48, 64)
    assert _tiles(out, 16) == _tiles(img[..., 1:49, :], 16)  # centre crop
    with pytest.raises(ValueError, match="larger than the image"):
        shuffle_patches(img, 51)
    with pytest.raises(ValueError, match="positive integer"):
        shuffle_patches(img, 0)


def test_shuffling_changes_content_much_more_than_style(model):
    img = texture(64, 0)
    rows = shuffle_experiment(model, img, tiles=(32, 16, 8), seed=0)
    assert [r["tile"] for r in rows] == [32, 16, 8]
    by_tile = {r["tile"]: r for r in rows}
    assert by_tile[8]["content_distance"] > by_tile[32]["content_distance"] > 0
    other = style_distance(img, texture(64, 1, "blotches"), model=model).total
    assert all(r["style_distance"] < 0.2 * other for r in rows), (rows, other)
    with pytest.raises(ValueError, match="larger than the image"):
        shuffle_experiment(model, img, tiles=(128,))


# --------------------------------------------------------------------------- synthesis


@pytest.fixture(scope="module")
def target(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReceptiveFieldWarning)
        return compute_grams(model, texture(32, 0))


@pytest.mark.parametrize("optimizer, steps", [pytest.param("adam", 30, marks=pytest.mark.slow), ("lbfgs", 15)])
def test_synthesis_reduces_the_loss(model, target, optimizer, steps):
    updates = list(synthesize_texture(model, target, steps=steps, optimizer=optimizer, seed=0, preview_every=10))
    assert [u.step for u in updates] == list(range(steps)) and isinstance(updates[0], SynthesisStep)
    assert updates[-1].best_loss < 0.5 * updates[0].loss
    assert updates[-1].best_loss == min(u.best_loss for u in updates)
    assert all(math.isfinite(u.loss) and set(u.per_layer) == set(STYLE) for u in updates)
    first = updates[0]
    assert first.loss == pytest.approx(sum(0.2 * v for v in first.per_layer.values()), rel=1e-5)
    final = updates[-1].image
    assert final.shape == (1, 3, 32, 32) and final.min() >= 0 and final.max() <= 1
    # the final image's loss is what best_loss says
    check = compute_grams(model, final)
    assert style_distance(check, target).total == pytest.approx(updates[-1].best_loss, rel=1e-3)


def test_synthesis_previews_every_n_steps(model, target):
    updates = list(synthesize_texture(model, target, steps=10, optimizer="adam", preview_every=3))
    assert [u.step for u in updates if u.image is not None] == [2, 5, 8, 9]
    assert all(u.image.device.type == "cpu" and not u.image.requires_grad for u in updates if u.image is not None)
    only_last = list(synthesize_texture(model, target, steps=4, optimizer="adam", preview_every=0))
    assert [u.image is not None for u in only_last] == [False, False, False, True]


def test_synthesis_can_stop_early_and_keeps_the_best(model, target):
    synthesis = synthesize_texture(model, target, steps=200, optimizer="adam")
    assert synthesis.best_image is None
    seen = []
    for update in synthesis:
        seen.append(update)
        if update.step == 2:
            break
    synthesis.close()
    best = synthesis.best_image
    assert len(seen) == 3 and best.shape == (1, 3, 32, 32) and 0 <= best.min() and best.max() <= 1
    assert synthesis.best_loss == seen[-1].best_loss == min(u.loss for u in seen)
    with pytest.raises(StopIteration):
        next(synthesis)


def test_synthesis_is_deterministic_for_a_seed(model):
    img = texture(32, 0)
    a = texture_from(model, img, steps=4, seed=3)
    b = texture_from(model, img, steps=4, seed=3)
    c = texture_from(model, img, steps=4, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_synthesis_sizes_and_errors(model, target):
    img = texture(48, 0)
    assert texture_from(model, img, ["relu1_1", "relu2_1"], steps=2, optimizer="adam").shape == (1, 3, 48, 48)
    assert texture_from(model, img, steps=2, optimizer="adam", size=(32, 40)).shape == (1, 3, 32, 40)
    init = torch.full((1, 3, 32, 32), 0.5)
    assert texture_from(model, target, steps=2, optimizer="adam", init=init).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="'lbfgs', 'adam'"):
        synthesize_texture(model, target, optimizer="sgd")
    with pytest.raises(ValueError, match="relu5_1 needs at least 16×16"):
        synthesize_texture(model, target, size=8)
    with pytest.raises(ValueError, match="come from vgg19 but model is tiny_vgg"):
        synthesize_texture(model, dataclasses.replace(target, model_name="vgg19"))
    with pytest.raises(ValueError, match=r"no Grams at \['relu4_2'\]"):
        synthesize_texture(model, target, ["relu4_2"])


def test_synthesis_refuses_a_size_that_does_not_fit_and_names_one_that_does(model, monkeypatch):
    """synthesize_texture(size=8000) used to start computing 8000² Grams (10 GB) with no memory check."""
    import artlab.gram.texture as gram_module
    from artlab.gram import TextureTooLarge
    from artlab.optimize import OptimizationTooLarge, estimate_memory

    img = texture(48, 0)
    with hf.address_space_limit(512 << 20):  # the estimate reads the limit: refused before any allocation
        with pytest.raises(TextureTooLarge, match=r"texture synthesis at 8000×8000 px .* use size=\d+") as info:
            synthesize_texture(model, img, size=8000, steps=1)
    assert isinstance(info.value, OptimizationTooLarge) and isinstance(info.value, MemoryError)
    assert info.value.needed > 100 * 2**30 > info.value.available and info.value.largest_size < 8000
    # the named size is accepted: a budget just enough for 64 px refuses 256 px and names about 64
    layers = list(model.spec.style_layers)
    budget = estimate_memory(model, (64, 64), layers=layers, targets=[(64, 64)], held=2 * 64 * 64) / 0.9 + 1
    monkeypatch.setattr(gram_module, "available_memory", lambda device="cpu": int(budget))
    with pytest.raises(TextureTooLarge, match="largest size that fits is about 6\\d px") as info:
        synthesize_texture(model, img, size=256, steps=1)
    side = info.value.largest_size
    assert 64 <= side < 70
    assert texture_from(model, img, size=side, steps=1, optimizer="adam").shape[-1] == side
    # a GramSet target (no target pass to count) is checked as well
    grams = compute_grams(model, img)
    with pytest.raises(TextureTooLarge):
        synthesize_texture(model, grams, size=256, steps=1)


# --------------------------------------------------------------------------- real images


def test_painting_vs_photo_per_layer_on_real_images(shared_data):
    from artlab.images import load_image

    paintings = sorted((shared_data / "paintings" / "van_gogh").glob("*.jpg"))
    photos = sorted((shared_data / "photos" / "landscapes").glob("*.jpg"))
    if len(paintings) < 2 or not photos:
        pytest.skip("../shared/data lacks Van Gogh paintings or landscape photos")
    vgg = _vgg19()
    painting, other_painting, photo = (load_image(p, (128, 128)) for p in (paintings[0], paintings[1], photos[0]))
    vs_photo = style_distance(painting, photo, model=vgg)
    vs_painting = style_distance(painting, other_painting, model=vgg)
    print(f"\n{vgg.label} · 128 px · normalize=gatys · {paintings[0].name} vs ...")
    print(f"{'layer':<9}{'vs photo':>14}{'vs painting 2':>16}")
    for layer in vs_photo.layers:
        print(f"{layer:<9}{vs_photo.per_layer[layer]:>14.4g}{vs_painting.per_layer[layer]:>16.4g}")
    print(f"{'total':<9}{vs_photo.total:>14.4g}{vs_painting.total:>16.4g}")
    for d in (vs_photo, vs_painting):
        assert all(math.isfinite(v) and v > 0 for v in d.per_layer.values())


@pytest.mark.slow
def test_texture_synthesis_uses_the_networks_defaults():
    """Lite's stride-2 stem leaves pixel speckle unconstrained: its default adds a little TV; VGG's does not."""
    lite = backbone("tiny_efficientnet_lite", weights=None)
    target = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    plain = texture_from(lite, target, steps=3, seed=0, tv_weight=0.0)
    default = texture_from(lite, target, steps=3, seed=0)
    assert lite.spec.texture_tv_weight > 0 and not torch.equal(plain, default)
    assert torch.equal(default, texture_from(lite, target, steps=3, seed=0, tv_weight=lite.spec.texture_tv_weight))
    with pytest.raises(ValueError, match="tv_weight"):
        texture_from(lite, target, steps=1, tv_weight=-1.0)
    # style_distance weighs the layers as the network says, with a model or from GramSets alone
    a, b = compute_grams(lite, target), compute_grams(lite, target.flip(-1) * 0.5)
    d = style_distance(a, b)
    assert d.weights == style_distance(target, target.flip(-1) * 0.5, model=lite).weights
    assert math.isclose(sum(d.weights.values()), 1.0) and d.weights["stem"] > 10 * d.weights["stage2"]
    assert set(style_distance(a, b, layer_weights=dict.fromkeys(d.layers, 1.0)).weights.values()) == {1.0}


# --------------------------------------------------------------------------- progress and the saved texture's label


def test_texture_from_shows_a_bar_only_when_asked(model, capsys):
    img = texture(32, 0)
    quiet = texture_from(model, img, steps=3, optimizer="adam", seed=1, progress=False)
    assert capsys.readouterr() == ("", "")
    shown = texture_from(model, img, steps=3, optimizer="adam", seed=1, progress=True)
    err = capsys.readouterr().err
    assert "texture synthesis" in err and "3/3" in err and "loss=" in err
    assert torch.equal(quiet, shown)


def test_a_resumed_synthesis_finishes_its_bar_and_saves_its_label(model, capsys, tmp_path):
    import json

    from PIL import Image

    synthesis = synthesize_texture(model, texture(32, 0), steps=4, optimizer="adam", seed=0)
    with pytest.raises(ValueError, match="nothing to save yet"):
        synthesis.save(tmp_path / "early.png")
    next(synthesis)
    best = synthesis.result(progress=True)
    err = capsys.readouterr().err
    assert "1/4" in err and "4/4" in err and " 0/4" not in err  # the bar starts where the iteration stopped
    assert synthesis.steps_done == 4 and torch.equal(best, synthesis.best_image)
    with Image.open(synthesis.save(tmp_path / "texture.png")) as image:
        assert image.text["artlab:model"] == model.label and image.text["artlab:kind"] == "texture"
        settings = json.loads(image.text["artlab:settings"])
    assert settings["steps"] == 4 and settings["size"] == [32, 32] and settings["layers"] == STYLE
