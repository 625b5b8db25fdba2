"""artlab.activations: feature maps, channel statistics, spectra and per-layer domain shift."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf

from artlab import activations as act
from artlab.figures import ArtlabFigure
from artlab.models import backbone, features


# --------------------------------------------------------------------------- fixtures


def _count_forwards(model) -> list[int]:
    """A counter incremented by every forward pass of ``model`` (remove the hook yourself)."""
    calls = [0]
    handle = model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    calls.append(handle)
    return calls


def _images(kind: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Synthetic image sets: 'smooth' (flat colours, faint noise) or 'noise' (binary pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "smooth":
        base = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.2
        return (base + 0.02 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return (torch.rand(n, 3, size, size, generator=g) > 0.5).float()


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------- Fréchet distance


def _scipy_fid(a, b, cov=lambda x: np.cov(x, rowvar=False)):
    ca, cb = cov(a), cov(b)
    root = scipy.linalg.sqrtm(ca @ cb).real
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(ca) + np.trace(cb) - 2 * np.trace(root))


def test_frechet_is_zero_for_identical_sets_and_grows_with_a_shift():
    a = np.random.default_rng(0).normal(size=(200, 5))
    assert act.frechet_distance(a, a) == pytest.approx(0, abs=1e-8)
    # Same covariance, means 1 apart in each of 5 dims: exactly 5.
    assert act.frechet_distance(a, a + 1) == pytest.approx(5.0, rel=1e-6)
    assert act.frechet_distance(a, a * 2) > 1


def test_frechet_matches_scipy_when_n_exceeds_dim():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.3
    assert act.frechet_distance(a, b) == pytest.approx(_scipy_fid(a, b), rel=1e-6)
    assert act.frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(_scipy_fid(a, b), rel=1e-6)


def test_frechet_uses_ledoit_wolf_when_n_is_below_dim():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(12, 40)), rng.normal(size=(9, 40)) * 1.5 + 0.2
    lw = lambda x: LedoitWolf().fit(x).covariance_  # noqa: E731
    expected = _scipy_fid(a, b, lw)
    assert act.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)  # "auto" picks Ledoit-Wolf
    assert act.frechet_distance(a, b, shrinkage="ledoit-wolf") == pytest.approx(expected, rel=1e-6)
    assert act.frechet_distance(a, b, shrinkage=None) != pytest.approx(expected, rel=1e-3)
    with pytest.raises(ValueError, match="shrinkage"):
        act.frechet_distance(a, b, shrinkage="lots")


def test_measures_refuse_mismatched_or_tiny_inputs():
    with pytest.raises(ValueError, match="dimensions"):
        act.kid(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        act.frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        act.mmd_test(np.full((3, 2), np.nan), np.zeros((3, 2)))


# --------------------------------------------------------------------------- KID, MMD, probe, bootstrap


def test_kid_is_zero_in_expectation_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(0)
    same = [act.kid(rng.normal(size=(30, 10)), rng.normal(size=(30, 10))) for _ in range(20)]
    shifted = [act.kid(rng.normal(size=(30, 10)), rng.normal(size=(30, 10)) + 0.5) for _ in range(20)]
    standard_error = np.std(same) / math.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * standard_error
    assert min(same) < 0 < max(same)  # unbiased: negative values happen
    assert min(shifted) > 10 * abs(np.mean(same))


def test_mmd_test_separates_different_sets_and_not_samples_of_one_distribution():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    stat_same, p_same = act.mmd_test(a, b, n_perm=200)
    stat_diff, p_diff = act.mmd_test(a, b + 1, n_perm=200)
    assert p_same > 0.05
    assert p_diff < 0.01
    assert stat_diff > stat_same
    assert p_diff >= 1 / 201  # (count + 1) / (n_perm + 1) is never 0
    assert act.mmd_test(a, b + 1, n_perm=200, seed=3) == act.mmd_test(a, b + 1, n_perm=200, seed=3)
    with pytest.raises(ValueError, match="kernel"):
        act.mmd_test(a, b, kernel="laplace")


def test_probe_accuracy_is_high_for_separable_sets_and_chance_for_one_distribution():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    assert act.probe_accuracy(a, b + 3)[0] >= 0.95
    same = [act.probe_accuracy(rng.normal(size=(30, 5)), rng.normal(size=(30, 5)), seed=i)[0] for i in range(10)]
    assert 0.35 < np.mean(same) < 0.65
    # Unequal sets: balanced accuracy stays near 0.5, well below the 40/52 majority rate.
    uneven = [act.probe_accuracy(rng.normal(size=(40, 5)), rng.normal(size=(12, 5)), seed=i)[0] for i in range(10)]
    assert 0.35 < np.mean(uneven) < 0.7
    # folds are reduced to the smaller set's size
    mean, std = act.probe_accuracy(rng.normal(size=(10, 3)), rng.normal(size=(2, 3)) + 5, folds=5)
    assert mean == pytest.approx(1.0) and std >= 0


def test_bootstrap_ci_contains_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(35, 3)) + 0.4
    stat = lambda x, y: float(x.mean() - y.mean())  # noqa: E731
    lo, hi = act.bootstrap_ci(stat, a, b, n_boot=300, seed=1)
    assert lo < stat(a, b) < hi
    assert (lo, hi) == act.bootstrap_ci(stat, a, b, n_boot=300, seed=1)
    assert (lo, hi) != act.bootstrap_ci(stat, a, b, n_boot=300, seed=2)
    narrow = act.bootstrap_ci(stat, a, b, n_boot=300, seed=1, level=0.5)
    assert lo < narrow[0] < narrow[1] < hi
    kid_ci = act.bootstrap_ci(act.kid, a, b, n_boot=100, seed=0)
    assert kid_ci[0] < act.kid(a, b) < kid_ci[1]
    with pytest.raises(ValueError, match="level"):
        act.bootstrap_ci(stat, a, b, level=1.5)


# --------------------------------------------------------------------------- channel statistics


def test_channel_stats_values_and_tidy_frame():
    x = torch.zeros(2, 3, 4, 4)
    x[:, 0] = 2.0
    x[:, 1, :2] = -1.0
    x[:, 1, 2:] = 1.0
    stats = act.channel_stats(x, "relu1_1")
    assert torch.allclose(stats.mean[:, 0], torch.tensor(2.0))
    assert torch.allclose(stats.std[:, 0], torch.tensor(0.0))
    assert torch.allclose(stats.active[:, 0], torch.tensor(1.0))
    assert torch.allclose(stats.energy[:, 0], torch.tensor(4.0))
    assert torch.allclose(stats.mean[:, 1], torch.tensor(0.0))
    assert torch.allclose(stats.active[:, 1], torch.tensor(0.5))
    assert torch.allclose(stats.std[:, 1], torch.tensor(1.0))
    frame = stats.to_frame()
    assert {"image", "channel", "mean", "std", "active", "energy"} <= set(frame.columns)
    assert len(frame) == 2 * 3
    assert frame.query("image == 1 and channel == 0")["energy"].item() == pytest.approx(4.0)


def test_top_channels_and_top_difference_find_constructed_channels():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 10, 8, 8, generator=g)
    a[0, 4] += 3.0
    assert act.top_channels(a, 1) == [4]
    assert act.top_channels(a[0], 2)[0] == 4  # C×H×W works too
    spread = torch.rand(1, 10, 8, 8, generator=g)
    spread[0, 6] *= 10
    assert act.top_channels(spread, 1, by="std") == [6]
    b = torch.nn.functional.interpolate(a, size=(5, 5))  # other size: statistics, not maps, are compared
    b[0, 7] += 5.0
    assert act.top_difference(a, b, 1) == [7]
    assert act.top_difference(a, b, 1, by="energy") == [7]
    assert len(act.top_difference(a, b, 50)) == 10
    with pytest.raises(ValueError, match="mean"):
        act.top_channels(a, 3, by="median")
    with pytest.raises(ValueError, match="channels"):
        act.top_difference(a, b[:, :5], 2)


def test_disagreement_and_example_maps(tiny):
    photo = _images("smooth", 1, 48)
    painting = _images("noise", 1, 48)
    table = act.disagreement(tiny, painting, photo, "relu2_1", k=5)
    assert list(table.columns) == ["channel", "stat_a", "stat_b", "diff"]
    assert len(table) == 5
    assert np.allclose(table["diff"], table["stat_a"] - table["stat_b"])
    assert (np.diff(table["diff"].abs()) <= 1e-12).all()
    assert table["channel"].iloc[0] == act.top_difference(
        features(tiny, painting, "relu2_1")["relu2_1"], features(tiny, photo, "relu2_1")["relu2_1"], 1)[0]

    batch = torch.cat([_images("smooth", 3, 48), _images("noise", 3, 48, seed=1)])
    maps, order = act.example_maps(tiny, batch, "relu1_1", channel=2, k=2)
    full = features(tiny, batch, "relu1_1")["relu1_1"][:, 2]
    assert maps.shape == (2, 48, 48)
    assert order == full.flatten(1).mean(1).argsort(descending=True)[:2].tolist()
    assert torch.allclose(maps, full[order])
    with pytest.raises(ValueError, match="channel"):
        act.example_maps(tiny, batch, "relu1_1", channel=99)


# --------------------------------------------------------------------------- caches


def test_activation_cache_runs_one_forward_for_several_layers_and_reuses_it(tiny):
    cache = act.ActivationCache(max_items=8)
    image = _images("noise", 1, 40)
    calls = _count_forwards(tiny)
    try:
        first = cache.get(tiny, image, ["relu1_1", "relu3_1", "relu4_2"])
        assert calls[0] == 1
        again = act.feature_maps(tiny, image, ["relu3_1", "relu1_1"], cache=cache)
        assert calls[0] == 1  # layer switch: no forward
        assert again["relu3_1"] is first["relu3_1"]
        cache.get(tiny, image.clone(), "relu4_2")  # same content, new tensor: still cached
        assert calls[0] == 1
        deeper = cache.get(tiny, image, ["relu1_1", "relu5_1"])
        assert calls[0] == 2 and cache.forwards == 2
        assert torch.equal(deeper["relu5_1"], features(tiny, image, "relu5_1")["relu5_1"])
        cache.get(tiny, _images("noise", 1, 40, seed=5), "relu1_1")  # another image
        assert calls[0] == 4  # (+1 for the direct features() call above)
    finally:
        calls[1].remove()
    assert len(cache) <= 8
    other = backbone("tiny_vgg", weights=None, seed=1)  # other weights: never served the first model's maps
    assert not torch.equal(cache.get(other, image, "relu1_1")["relu1_1"], first["relu1_1"])
    with pytest.raises(ValueError, match="Valid layers"):
        cache.get(tiny, image, "relu9_9")
    with pytest.raises(ValueError, match="relu1_1"):
        act.feature_maps(tiny, image, ["conv_1"])


def test_pooled_features_are_batched_and_reused_from_a_feature_store(tiny, corpus):
    photos = corpus.subset(domain="photo")
    layers = ["relu1_1", "relu4_1"]
    store = act.FeatureStore()
    calls = _count_forwards(tiny)
    try:
        first = act.pooled_features(tiny, photos, layers, size=32, batch_size=4, progress=False, cache=store)
        assert calls[0] == 2  # 6 images in batches of 4: one forward per batch
        second = act.pooled_features(tiny, photos, layers, size=32, batch_size=4, progress=False, cache=store)
        assert calls[0] == 2  # everything came from the store
        subset = act.pooled_features(tiny, photos.paths[:3], layers, size=32, progress=False, cache=store)
        assert calls[0] == 2
        tensors = photos.load_all(32)
        from_tensor = act.pooled_features(tiny, tensors, layers, size=32, batch_size=6, progress=False, cache=store)
        act.pooled_features(tiny, tensors, layers, size=32, batch_size=6, progress=False, cache=store)
        assert calls[0] == 3  # tensors are keyed by content: the second call is free
    finally:
        calls[1].remove()
    assert first["relu1_1"].shape == (6, 8) and first["relu4_1"].shape == (6, 32)
    for layer in layers:
        assert torch.equal(first[layer], second[layer])
        assert torch.equal(first[layer][:3], subset[layer])
        assert torch.allclose(first[layer], from_tensor[layer], atol=1e-5)
        direct = features(tiny, tensors, layer)[layer].mean(dim=(2, 3))
        assert torch.allclose(first[layer], direct, atol=1e-5)
    with pytest.raises(TypeError, match="FeatureStore"):
        act.pooled_features(tiny, tensors, layers, size=32, progress=False, cache={})


def test_an_interrupted_run_keeps_what_it_computed(tiny):
    images = _images("noise", 10, 32)
    store = act.FeatureStore()
    seen = []

    def stop_after_first_batch(stage, done, total):
        seen.append((stage, done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        act.pooled_features(tiny, images, "relu2_1", size=32, batch_size=4, progress=False, cache=store,
                            on_progress=stop_after_first_batch)
    assert seen == [("features images", 4, 10)]
    assert len(store) == 4
    calls = _count_forwards(tiny)
    try:
        resumed = act.pooled_features(tiny, images, "relu2_1", size=32, batch_size=4, progress=False, cache=store)
    finally:
        calls[1].remove()
    assert calls[0] == 2  # the 6 images left, in batches of 4
    assert torch.allclose(resumed["relu2_1"], features(tiny, images, "relu2_1")["relu2_1"].mean(dim=(2, 3)), atol=1e-5)


def test_pooled_features_refuses_a_set_without_loadable_images(tiny, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ValueError, match="none of the 1 images"):
        act.pooled_features(tiny, [broken], "relu1_1", size=32, progress=False)


# --------------------------------------------------------------------------- spectra


def test_radial_spectrum_peaks_at_the_frequency_of_a_sinusoid():
    size = 64
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    horizontal = torch.cos(2 * math.pi * 8 / size * x).float()  # 0.125 cycles/pixel
    diagonal = torch.cos(2 * math.pi * (12 * x + 9 * y) / size).float()  # radius 15/64 cycles/pixel
    maps = torch.stack([torch.stack([horizontal] * 3), torch.stack([diagonal] * 3)])
    freqs, power = act.radial_spectrum(maps)
    assert power.shape == (2, len(freqs)) and freqs[0] == 0 and freqs[-1] == pytest.approx(0.5)
    assert freqs[power[0].argmax()] == pytest.approx(8 / size)
    assert freqs[power[1].argmax()] == pytest.approx(15 / size)
    assert power[0, 0] < 1e-3 * power[0].max()  # mean removed
    with pytest.raises(ValueError, match="too small"):
        act.radial_spectrum(torch.rand(1, 4, 2, 2))


def test_layer_spectra_and_plot(tiny):
    painting, photo = _images("noise", 2, 64), _images("smooth", 2, 64)
    cache = act.ActivationCache()
    spec_a = act.layer_spectra(tiny, painting, ["relu1_1", "relu2_1"], cache=cache)
    spec_b = act.layer_spectra(tiny, photo, ["relu1_1", "relu2_1"], cache=cache)
    freqs, power = spec_a["relu2_1"]
    assert power.shape == (2, len(freqs)) and len(freqs) == 32 // 2 + 1
    # binary pixel noise has far more high-frequency power at relu1_1 than flat colours
    assert spec_a["relu1_1"][1][:, -5:].mean() > 10 * spec_b["relu1_1"][1][:, -5:].mean()
    fig = act.plot_spectra(spec_a, spec_b, model=tiny)
    assert isinstance(fig, ArtlabFigure)
    assert any(tiny.label in t.get_text() for t in fig.texts)
    assert fig._repr_png_().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- domain shift


@pytest.mark.slow
def test_domain_shift_on_the_sample_corpus_is_a_tidy_reproducible_table(tiny, corpus):
    paintings, photos = corpus.subset(domain="painting"), corpus.subset(domain="photo")
    store = act.FeatureStore()
    kwargs = dict(size=64, n_boot=10, n_perm=50, progress=False, cache=store, names=("painted", "photo"))
    with pytest.warns(act.SmallSampleWarning, match="Ledoit-Wolf"):
        shift = act.domain_shift(paintings, photos, tiny, **kwargs)
    table = shift.table
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]  # style + content, by depth
    assert shift.layers == layers
    assert list(table.columns) == ["layer", "depth", "measure", "value", "ci_low", "ci_high", "p_value",
                                   "n_a", "n_b", "dim", "note"]
    assert len(table) == len(layers) * 4
    assert set(zip(table.layer, table.measure)) == {(layer, m) for layer in layers for m in act.MEASURES}
    assert (table.n_a == 30).all() and (table.n_b == 6).all()
    assert table.groupby("layer")["dim"].first().to_dict() == {
        "relu1_1": 8, "relu2_1": 16, "relu3_1": 24, "relu4_1": 32, "relu4_2": 32, "relu5_1": 32}
    assert list(table.drop_duplicates("layer").depth) == [tiny.layer_names.index(layer) for layer in layers]
    assert table.loc[table.measure != "mmd", "p_value"].isna().all()
    assert table.loc[table.measure == "mmd", "p_value"].between(0, 1).all()
    assert table[["value", "ci_low", "ci_high"]].notna().all().all()
    assert (table.ci_low <= table.ci_high).all()
    assert (table.loc[table.measure == "frechet", "value"] >= 0).all()
    assert table.loc[table.measure == "frechet", "note"].str.contains("Ledoit-Wolf").all()
    assert any("resized" in note and "64×64" in note for note in shift.notes)
    assert shift.features_a["relu3_1"].shape == (30, 24) and shift.features_b["relu3_1"].shape == (6, 24)

    wide = shift.wide()
    assert list(wide.layer) == layers
    assert {"frechet", "kid", "mmd", "mmd_p", "probe", "n_a", "n_b", "dim"} <= set(wide.columns)
    text = str(shift)
    assert tiny.label in text and "RANDOM INIT" in text
    assert "random init" in shift._repr_html_().lower()
    fig = shift.plot()
    assert isinstance(fig, ArtlabFigure) and any("RANDOM WEIGHTS" in t.get_text() for t in fig.texts)
    channels = shift.divergent_channels("relu2_1", k=5)
    assert list(channels.columns) == ["channel", "mean_a", "mean_b", "effect"] and len(channels) == 5
    assert (np.diff(channels.effect.abs().fillna(-1)) <= 1e-12).all()
    with pytest.raises(ValueError, match="relu1_1"):
        shift.divergent_channels("relu9_1")

    # Same seed: the same table, from the store (no forward pass); another seed: other intervals.
    calls = _count_forwards(tiny)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", act.SmallSampleWarning)
            again = act.domain_shift(paintings, photos, tiny, **kwargs)
            reseeded = act.domain_shift(paintings, photos, tiny, **{**kwargs, "seed": 1})
    finally:
        calls[1].remove()
    assert calls[0] == 0
    pd.testing.assert_frame_equal(table, again.table)
    assert not np.allclose(table.ci_low, reseeded.table.ci_low)
    fixed = table.measure.isin(["frechet", "kid"])  # no randomness in these two values
    assert np.allclose(table.loc[fixed, "value"], reseeded.table.loc[fixed, "value"])


def test_domain_shift_detects_a_real_difference_and_not_a_split_of_one_set(tiny):
    smooth, noise = _images("smooth", 24, 32), _images("noise", 12, 32, seed=1)
    kwargs = dict(layers=["relu1_1", "relu2_1"], size=32, n_boot=20, n_perm=100, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", act.SmallSampleWarning)
        apart = act.domain_shift(smooth[:12], noise, tiny, **kwargs).table.set_index(["layer", "measure"])
        same = act.domain_shift(smooth[:12], smooth[12:], tiny, **kwargs).table.set_index(["layer", "measure"])
        raw_apart, raw_same = (
            act.domain_shift(smooth[:12], other, tiny, **kwargs, scale=None, measures=["frechet", "kid"])
            .table.set_index(["layer", "measure"]) for other in (noise, smooth[12:])
        )
    for layer in ("relu1_1", "relu2_1"):
        assert apart.loc[(layer, "probe"), "value"] >= 0.95
        assert same.loc[(layer, "probe"), "value"] < 0.8
        assert apart.loc[(layer, "mmd"), "p_value"] < 0.05
        assert same.loc[(layer, "mmd"), "p_value"] > 0.05
        assert apart.loc[(layer, "kid"), "ci_low"] > 0
        for a, b in ((apart, same), (raw_apart, raw_same)):
            assert a.loc[(layer, "kid"), "value"] > 5 * abs(b.loc[(layer, "kid"), "value"])
            assert a.loc[(layer, "frechet"), "value"] > 2 * b.loc[(layer, "frechet"), "value"]
    # scale="std" divides each layer by one number: frechet scales by its square
    assert raw_apart.loc[("relu1_1", "frechet"), "value"] != pytest.approx(apart.loc[("relu1_1", "frechet"), "value"])
    # 12 images against relu1_1's 8 channels: enough, so no Ledoit-Wolf and no warning there
    with warnings.catch_warnings():
        warnings.simplefilter("error", act.SmallSampleWarning)
        ok = act.domain_shift(smooth[:12], noise, tiny, **{**kwargs, "layers": ["relu1_1"], "measures": ["frechet"]})
    assert "Ledoit-Wolf" not in ok.table.note.iloc[0]


def test_domain_shift_explains_negative_and_below_chance_values_in_plain_words(tiny):
    """Two halves of one set: MMD² below 0 and a probe below 0.5 happen (these seeds), and each is explained."""
    smooth = _images("smooth", 24, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", act.SmallSampleWarning)
        same = act.domain_shift(smooth[:12], smooth[12:], tiny, layers=["relu1_1", "relu2_1"], size=32, n_boot=5,
                                n_perm=20, progress=False, measures=["mmd", "probe"])
    t = same.table
    negative, below = t[t.value < 0], t[(t.measure == "probe") & (t.value < 0.5)]
    assert set(negative.measure) == {"mmd"} and len(below) >= 1
    assert negative.note.str.contains("no detectable difference, not an error").all()
    assert below.note.str.contains("the probe found nothing to learn").all()
    fine = t.drop(negative.index.union(below.index))
    assert not fine.note.str.contains("not an error|nothing to learn").any()
    # one plain line per kind in the result's notes (shown under the table and in the widget)
    lines = [n for n in same.notes if "not an error" in n or "nothing to learn" in n]
    assert len(lines) == 2 and all(f"mmd at {layer}" in lines[0] for layer in negative.layer)
    assert "below chance" in str(same) and "no detectable difference" in same._repr_html_()


def test_domain_shift_explains_bad_input(tiny, tmp_path):
    images = _images("noise", 3, 32)
    quick = dict(size=32, n_boot=2, n_perm=5, progress=False, measures=["kid"], layers=["relu1_1"])
    with pytest.raises(ValueError, match=r"set_b has 1 image; domain shift needs at least 2 per set"):
        act.domain_shift(images, images[:1], tiny, **quick)
    with pytest.raises(ValueError, match=r"set_a has 0 images"):
        act.domain_shift([], images, tiny, **quick)
    with pytest.raises(ValueError, match="Valid layers: .*relu1_1"):
        act.domain_shift(images, images, tiny, **{**quick, "layers": ["relu6_1"]})
    with pytest.raises(ValueError, match="unknown measures"):
        act.domain_shift(images, images, tiny, **{**quick, "measures": ["fid"]})
    with pytest.raises(ValueError, match="does not exist"):
        act.domain_shift(tmp_path / "nowhere", images, tiny, **quick)
    with pytest.raises(ValueError, match="stride"):
        act.domain_shift(images, images, tiny, **{**quick, "size": 8, "layers": ["relu5_1"]})

    # A folder with mixed sizes, a grayscale image, a non-image and a truncated PNG.
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    _save(folder / "wide.png", rng.integers(0, 255, (40, 70, 3), dtype=np.uint8))
    _save(folder / "tall.png", rng.integers(0, 255, (90, 50, 3), dtype=np.uint8))
    _save(folder / "gray.png", rng.integers(0, 255, (60, 60), dtype=np.uint8))
    (folder / "notes.jpg").write_text("not an image")
    good = (folder / "wide.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    with pytest.warns(act.SmallSampleWarning):
        shift = act.domain_shift(folder, images, tiny, **quick)
    assert shift.table.n_a.iloc[0] == 3
    notes = " | ".join(shift.notes)
    assert "notes.jpg" in notes and "truncated.png" in notes and "skipped" in notes
    assert "3 different sizes" in notes and "32×32" in notes
    assert "grayscale" in notes
    assert sorted(shift.sources_a) == sorted(str(folder / n) for n in ("gray.png", "tall.png", "wide.png"))

    single = tmp_path / "single"
    single.mkdir()
    _save(single / "one.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (single / "broken.png").write_bytes(good[:40])
    with pytest.raises(ValueError, match="set_b has 1 image"):
        act.domain_shift(images, single, tiny, **quick)


def test_domain_shift_with_a_resnet(tiny_resnet):
    smooth, noise = _images("smooth", 6, 64), _images("noise", 6, 64, seed=1)
    with pytest.warns(act.SmallSampleWarning):
        shift = act.domain_shift(smooth, noise, tiny_resnet, size=64, n_boot=5, n_perm=20, progress=False)
    assert shift.layers == ["conv1", "layer1", "layer2", "layer3", "layer4"]  # layer3 is also the content layer
    assert len(shift.table) == 5 * 4
    assert shift.table.groupby("layer", sort=False)["dim"].first().tolist() == [64, 64, 128, 256, 512]
    assert shift.table["value"].notna().all()
    cache = act.ActivationCache()
    maps = cache.get(tiny_resnet, smooth[:1], ["layer2", "layer4"])
    assert maps["layer2"].shape[1] == 128 and cache.forwards == 1


def test_the_result_picks_example_images_and_reloads_its_sets(tiny, corpus):
    from artlab.images import load_images

    photos, noise = corpus.subset(domain="photo"), _images("noise", 5, 40, seed=3)
    with pytest.warns(act.SmallSampleWarning):
        shift = act.domain_shift(photos, noise, tiny, ["relu2_1"], size=32, n_boot=2, n_perm=5, progress=False,
                                 measures=["kid"])
    images = (shift.measured_images(0, photos), shift.measured_images(1, noise))
    assert torch.equal(images[0], load_images(photos.paths, 32)) and torch.equal(images[1], load_images(list(noise[:, None]), 32))
    for which, pooled in enumerate((shift.features_a["relu2_1"], shift.features_b["relu2_1"])):
        # the candidates hold each channel's most activating images (example_maps' ranking on the whole set)
        channels = [0, 5]
        candidates = shift.example_candidates(which, "relu2_1", channels, k=2)
        assert candidates == sorted(candidates) and len(candidates) <= 4
        for channel in channels:
            _, best = act.example_maps(tiny, images[which], "relu2_1", channel, k=2)
            np.testing.assert_allclose(np.sort(pooled[candidates, channel].numpy())[-2:],
                                       np.sort(pooled[best, channel].numpy()), rtol=1e-5)
    assert shift.example_candidates(1, "relu2_1", [3], k=50) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="set B: 4 images given but the shift was computed on 5"):
        shift.measured_images(1, noise[:4])
    with pytest.raises(ValueError, match="which must be 0"):
        shift.example_candidates(2, "relu2_1", [0], k=1)
    with pytest.raises(ValueError, match="no features for layer 'relu3_1'"):
        shift.example_candidates(0, "relu3_1", [0], k=1)


def test_domain_shift_on_real_paintings_and_photos(tiny, shared_data):
    paintings = sorted((shared_data / "paintings").rglob("*.jpg"))[::12][:6]
    photos = sorted((shared_data / "photos" / "landscapes").rglob("*.jpg"))[:6]
    assert len(paintings) == 6 and len(photos) == 6
    with pytest.warns(act.SmallSampleWarning):
        shift = act.domain_shift(paintings, photos, tiny, size=64, n_boot=10, n_perm=50, progress=False,
                                 names=("paintings", "landscape photos"))
    table = shift.table
    assert len(table) == 6 * 4
    assert (table.n_a == 6).all() and (table.n_b == 6).all()
    assert np.isfinite(table[["value", "ci_low", "ci_high"]].to_numpy()).all()
    assert (table.loc[table.measure == "probe", "value"].between(0, 1)).all()
    assert any("resized" in note for note in shift.notes)
    assert "paintings" in str(shift)
