"""predict: top-k ImageNet classes, confidence and entropy; tables, figures and set comparisons."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from artlab.models import backbone
from artlab.predict import (
    MAX_ENTROPY_BITS,
    Predictions,
    compare_confidence,
    confidence_table,
    imagenet_categories,
    predict,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

skimage_data = pytest.importorskip("skimage.data")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat

# `lite0` (Lite0 with its bundled ImageNet weights) is a fixture of tests/conftest.py.


@pytest.fixture(scope="module")
def tiny():
    """The random tiny twin: a 1000-way head, so it predicts (nonsense), fast."""
    return backbone("tiny_efficientnet_lite", weights=None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """skimage's chelsea (a cat) and coffee (an espresso) as files in a folder."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.jpg")
    return folder


@pytest.fixture(scope="module")
def lite0_photos(lite0, photos) -> Predictions:
    return predict(lite0, [photos / "chelsea.png", photos / "coffee.jpg"], k=5)


def _close_all():
    plt.close("all")


def test_imagenet_categories_are_the_standard_1000():
    names = imagenet_categories()
    assert len(names) == 1000
    assert names[0] == "tench" and names[281] == "tabby" and names[967] == "espresso"


def test_bundled_lite0_recognises_skimage_photos(lite0_photos):
    p = lite0_photos
    assert [Path(n).name for n in p.names] == ["chelsea.png", "coffee.jpg"]
    assert int(p.indices[0, 0]) in CAT_CLASSES, p.labels[0]
    assert p.labels[1][0] == "espresso"
    assert p.top1() == [p.labels[0][0], "espresso"]
    assert p.pretrained and p.model_label == "efficientnet_lite0 · ImageNet"
    assert p.skipped == []


def test_probabilities_sorted_bounded_and_entropy_in_bits(lite0_photos, tiny):
    for p in (lite0_photos, predict(tiny, torch.rand(3, 3, 40, 60), k=7)):
        assert p.probs.shape == p.indices.shape == (len(p), p.probs.shape[1])
        assert (p.probs >= 0).all() and (p.probs.sum(1) <= 1 + 1e-6).all()
        assert (p.probs[:, :-1] >= p.probs[:, 1:]).all(), "best first"
        assert torch.equal(p.confidence, p.probs[:, 0])
        assert ((p.entropy >= 0) & (p.entropy <= math.log2(1000) + 1e-4)).all()
    assert MAX_ENTROPY_BITS == pytest.approx(math.log2(1000))
    # with k = 1000 the probabilities are the whole distribution: they sum to 1 and give the entropy
    full = predict(tiny, torch.rand(2, 3, 32, 32), k=1000)
    torch.testing.assert_close(full.probs.sum(1), torch.ones(2), rtol=0, atol=1e-4)
    bits = -(full.probs * torch.log2(full.probs.clamp_min(1e-30))).sum(1)
    torch.testing.assert_close(full.entropy, bits, rtol=1e-4, atol=1e-4)
    assert sorted(full.indices[0].tolist()) == list(range(1000))
    # a confident photo has low entropy, a random network's guess is close to uniform
    assert float(lite0_photos.entropy[1]) < 0.5 * MAX_ENTROPY_BITS < float(full.entropy.min())


def test_a_folder_with_corrupt_files_skips_and_lists_them(lite0, photos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")  # fails the header check
    data = (photos / "chelsea.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    p = predict(lite0, folder, k=3)
    assert sorted(Path(n).name for n in p.names) == ["chelsea.png", "coffee.jpg"]
    skipped = {Path(n).name: why for n, why in p.skipped}
    assert set(skipped) == {"broken.jpg", "truncated.png"}, p.skipped
    assert all(skipped.values())
    assert len(p) == 2 and len(p.table()) == 2
    assert "espresso" in p.top1()


def test_only_unreadable_images_is_an_error(tiny, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ValueError, match="none of the 1 images could be read"):
        predict(tiny, [bad])


def test_a_model_without_a_classifier_head_is_refused():
    with pytest.raises(ValueError, match="tiny_vgg has no ImageNet classifier head.*best_backbone"):
        predict(backbone("tiny_vgg", weights=None), torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match="artlab Backbone"):
        predict(torch.nn.Identity(), torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("k", [0, -1, 1001, 2.5, True, "5"])
def test_k_out_of_bounds_is_refused(tiny, k):
    with pytest.raises(ValueError, match="k must be an integer between 1 and 1000"):
        predict(tiny, torch.rand(1, 3, 32, 32), k=k)


def test_k_at_the_bounds(tiny):
    x = torch.rand(2, 3, 32, 32)
    one = predict(tiny, x, k=1)
    assert one.probs.shape == (2, 1) and all(len(row) == 1 for row in one.labels)
    assert predict(tiny, x, k=1000).probs.shape == (2, 1000)


def test_table_has_one_row_per_image_with_the_promised_columns(lite0_photos):
    table = lite0_photos.table()
    assert list(table.columns) == ["image", "top1", "p1", "top2", "p2", "top3", "p3", "top4", "p4", "top5", "p5",
                                   "confidence", "entropy_bits"]
    assert len(table) == 2
    assert table.loc[1, "top1"] == "espresso"
    assert table.loc[1, "confidence"] == pytest.approx(float(lite0_photos.confidence[1]))
    assert table.loc[0, "entropy_bits"] == pytest.approx(float(lite0_photos.entropy[0]))
    assert table.loc[0, "p1"] >= table.loc[0, "p2"]


def _texts(fig: Figure) -> list[str]:
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [t.get_text() for t in ax.texts] + [ax.get_title()]
    return texts


def test_plot_returns_a_stamped_figure(lite0_photos, tiny):
    try:
        fig = lite0_photos.plot()
        assert isinstance(fig, Figure)
        texts = " | ".join(_texts(fig))
        assert "efficientnet_lite0 · ImageNet" in texts and "RANDOM" not in texts
        assert "espresso" in texts and "bits" in texts
        random_fig = predict(tiny, torch.rand(2, 3, 32, 32), k=3).plot()
        stamp = [t for t in random_fig.texts if "RANDOM WEIGHTS" in t.get_text()]
        assert stamp and "tiny_efficientnet_lite · random init" in stamp[0].get_text()
        from matplotlib.colors import to_hex

        from artlab.figures import RANDOM_COLOUR

        assert to_hex(stamp[0].get_bbox_patch().get_facecolor()) == to_hex(RANDOM_COLOUR)
    finally:
        _close_all()


def test_plot_without_thumbnails_is_refused(tiny):
    p = predict(tiny, torch.rand(2, 3, 32, 32), keep_thumbnails=0)
    with pytest.raises(ValueError, match="no images to plot"):
        p.plot()


def test_confidence_table_and_compare_confidence_on_two_sets(tiny, lite0_photos):
    a = predict(tiny, torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    b = predict(tiny, torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.1)
    table = confidence_table({"noise": a, "dark": b})
    assert list(table["set"]) == ["noise", "dark"] and list(table["images"]) == [4, 3]
    assert table.loc[0, "mean confidence"] == pytest.approx(float(a.confidence.mean()))
    assert table.loc[1, "mean entropy (bits)"] == pytest.approx(float(b.entropy.mean()))
    assert table.loc[0, "share unsure (p1 < 0.5)"] == pytest.approx(float((a.confidence < 0.5).float().mean()))
    p_conf = table.loc[1, "p (confidence vs noise)"]
    assert 0 <= p_conf <= 1 and 0 <= table.loc[1, "p (entropy vs noise)"] <= 1
    assert math.isnan(table.loc[0, "p (confidence vs noise)"])  # the first set is the reference
    with pytest.raises(ValueError, match="at least one set"):
        confidence_table({})
    try:
        fig = compare_confidence({"noise": a, "dark": b})
        assert isinstance(fig, Figure)
        legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("noise") for t in legends) and any(t.startswith("dark") for t in legends)
        assert any("RANDOM WEIGHTS" in t.get_text() for t in fig.texts)
        fig = compare_confidence({"photos": lite0_photos})
        assert not any("RANDOM" in t.get_text() for t in fig.texts)
        with pytest.raises(ValueError, match="at least one set"):
            compare_confidence({})
    finally:
        _close_all()
