"""artlab.explain.examples (dataset examples, the cached channel index) and artlab.explain.cam (Grad-CAM,
Grad-CAM++, LayerCAM). Fast tests use the random tiny twins; the checks that need ImageNet features use
the bundled EfficientNet-Lite0 (`lite0`; each well under a second on two cores, so none is marked slow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from artlab.explain import (
    CAM,
    ChannelIndexStore,
    cam_overlay,
    channel_index,
    grad_cam,
    plot_cams,
    similarity_to,
)
from artlab.images import load_images, save_image
from artlab.models import backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
PATCH = (40, 12, 48, 20)  # top, left, bottom, right of the bright patch in image BRIGHT
BRIGHT = 3


@pytest.fixture(scope="module")
def lite_twin():
    return backbone("tiny_efficientnet_lite", weights=None, seed=0)


def _collection(n: int = 6) -> torch.Tensor:
    """n dim, smooth images; image BRIGHT also holds a small white square at PATCH."""
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(SIZE, SIZE),
                                           mode="bilinear", align_corners=False)
    images = 0.25 + 0.1 * base
    top, left, bottom, right = PATCH
    images[BRIGHT, :, top:bottom, left:right] = 1.0
    return images


@pytest.fixture()
def folder(tmp_path) -> Path:
    out = tmp_path / "images"
    for i, image in enumerate(_collection()):
        save_image(image[None], out / f"{i:02d}.png")
    return out


class _Counter:
    """Counts forward passes through a Backbone (a forward pre-hook, removed on exit)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


# --------------------------------------------------------------------------- dataset examples


def test_bright_patch_tops_its_channel_and_box_holds_it(tiny):
    index = channel_index(tiny, _collection(), "relu3_1", size=SIZE, batch_size=4)
    assert len(index) == 6 and index.fmap == (16, 16) and index.rf == (24, 4)
    others = np.delete(index.max, BRIGHT, axis=0).max(axis=0)
    margin = index.max[BRIGHT] - others
    c = int(np.argmax(margin))
    assert margin[c] > 0, "some channel must respond more to the bright patch than to anything else"
    top = index.top_examples(c, k=3)
    assert [e.activation for e in top] == sorted((e.activation for e in top), reverse=True)
    best = top[0]
    assert best.index == BRIGHT and best.channel == c and best.path is None
    t, left, b, r = best.box
    assert t <= PATCH[0] and left <= PATCH[1] and b >= PATCH[2] and r >= PATCH[3], (best.box, PATCH)
    assert b - t <= 24 and r - left <= 24  # the receptive field, not the whole image
    crops = index.crops(top, size=32)
    assert crops.shape == (3, 3, 32, 32) and crops.min() >= 0 and crops.max() <= 1
    assert crops[0].max() > 0.95  # the patch is in the crop


def test_cached_second_call_equals_first_without_forward(tiny, folder, tmp_path):
    cache = tmp_path / "cache"
    first = channel_index(tiny, folder, "relu3_1", size=SIZE, batch_size=4, cache=cache)
    assert first.computed == 6 and first.reused == 0
    with _Counter(tiny) as counter:
        second = channel_index(tiny, folder, "relu3_1", size=SIZE, batch_size=4, cache=ChannelIndexStore(cache))
    assert counter.calls == 0 and second.computed == 0 and second.reused == 6
    for name in ("max", "argmax", "mean"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.fmap == first.fmap and second.names == first.names
    # keyed by content: the same files elsewhere reuse the rows; another size or layer does not
    moved = shutil.copytree(folder, tmp_path / "moved")
    with _Counter(tiny) as counter:
        channel_index(tiny, moved, "relu3_1", size=SIZE, cache=cache)
        assert counter.calls == 0
        channel_index(tiny, moved, "relu3_1", size=SIZE + 8, cache=cache)
        assert counter.calls > 0
    # only plain .npy / .json files
    assert {p.suffix for p in cache.rglob("*") if p.is_file()} == {".npy", ".json"}


def _shards(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*.json") if p.name != "config.json"]


@pytest.mark.parametrize("damage", ["garbage", "positions", "shape", "pickle"])
def test_corrupt_cache_is_rejected_and_rebuilt(tiny, folder, tmp_path, damage):
    cache = tmp_path / "cache"
    first = channel_index(tiny, folder, "relu3_1", size=SIZE, cache=cache)
    (meta,) = _shards(cache)
    npy = meta.with_suffix(".npy")
    marker = tmp_path / "EXECUTED"
    if damage == "garbage":
        npy.write_bytes(b"\x93NUMPY not really" + bytes(100))
    elif damage == "positions":
        data = np.load(npy)
        data[:, first.channels] = 1e6  # a position far outside the map
        np.save(npy, data)
    elif damage == "shape":
        info = json.loads(meta.read_text())
        info["channels"] += 1
        meta.write_text(json.dumps(info))
    else:  # an object array: loading it with pickle would run code
        payload = np.empty(1, dtype=object)
        payload[0] = _Exploit(str(marker))
        np.save(npy, payload, allow_pickle=True)
    store = ChannelIndexStore(cache)
    with _Counter(tiny) as counter:
        again = channel_index(tiny, folder, "relu3_1", size=SIZE, cache=store)
    assert counter.calls > 0 and again.computed == 6
    assert store.rejected and any("ignored" in note for note in again.notes)
    assert not marker.exists()
    np.testing.assert_allclose(again.max, first.max, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again.argmax, first.argmax)
    with _Counter(tiny) as counter:  # the rebuilt shard is used next time
        channel_index(tiny, folder, "relu3_1", size=SIZE, cache=cache)
    assert counter.calls == 0


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_domain_means_and_ranking_on_corpus(lite_twin, corpus):
    index = channel_index(lite_twin, corpus, "stage3.0", size=SIZE, batch_size=12)
    assert len(index) == len(corpus)
    assert set(index.domains) == {"painting", "photo"}
    c = index.channels
    means = index.domain_means(["painting", "photo"])
    assert list(means.columns) == ["mean_painting", "mean_photo", "difference"] and len(means) == c
    paint = np.array([d == "painting" for d in index.domains])
    np.testing.assert_allclose(means["mean_painting"], index.mean[paint].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(means["difference"], means["mean_painting"] - means["mean_photo"])
    ranked = index.rank_channels_by_domain("painting", "photo")
    assert len(ranked) == c and sorted(ranked.index) == list(range(c))
    effect = ranked["effect"].to_numpy()
    assert np.all(np.diff(np.abs(effect)) <= 1e-12)  # most different first
    assert np.all(np.sign(effect) == np.sign(ranked["difference"].to_numpy()))  # positive: stronger on paintings
    assert set(ranked.loc[ranked["effect"] > 0, "prefers"]) <= {"painting"}
    flipped = index.rank_channels_by_domain("photo", "painting")
    np.testing.assert_allclose(flipped.loc[ranked.index, "effect"], -effect)
    counts_p, edges_p = index.histogram(0, "painting", bins=10)
    counts_q, edges_q = index.histogram(0, "photo", bins=10)
    np.testing.assert_array_equal(edges_p, edges_q)  # one scale for both domains
    assert counts_p.sum() == paint.sum() and counts_q.sum() == (~paint).sum()
    top = index.top_examples(0, k=4, domain="photo")
    assert len(top) == 4 and all(e.domain == "photo" and e.path is not None for e in top)


def test_a_folder_collection_without_a_domain_column_uses_its_labels(tiny, tmp_path):
    from artlab.data import Collection

    for i, image in enumerate(_collection()):
        save_image(image[None], tmp_path / ("paintings" if i % 2 else "photos") / f"{i:02d}.png")
    both = Collection.from_folder(tmp_path)
    index = channel_index(tiny, both, "relu2_1", size=SIZE)
    assert index.domains == both.labels and set(index.domains) == {"paintings", "photos"}
    ranked = index.rank_channels_by_domain("paintings", "photos")
    assert len(ranked) == index.channels and set(ranked["prefers"]) <= {"paintings", "photos", "neither"}
    assert [e.domain for e in index.top_examples(0, k=2, domain="photos")] == ["photos", "photos"]


def test_bad_inputs_are_clear(tiny, tmp_path):
    images = _collection()
    with pytest.raises(ValueError, match="no layer"):
        channel_index(tiny, images, "relu9_9", size=SIZE)
    with pytest.raises(ValueError, match="empty"):
        channel_index(tiny, [], "relu3_1", size=SIZE)
    with pytest.raises(ValueError, match="size"):
        channel_index(tiny, images, "relu3_1", size=4)
    with pytest.raises(TypeError, match="cache"):
        channel_index(tiny, images, "relu3_1", size=SIZE, cache=42)
    with pytest.raises(ValueError, match="one entry per image"):
        channel_index(tiny, images, "relu3_1", size=SIZE, domains=["photo"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="could be loaded"):
        channel_index(tiny, [bad], "relu3_1", size=SIZE)
    index = channel_index(tiny, images, "relu3_1", size=SIZE, domains=["photo"] * 3 + ["painting"] * 3)
    with pytest.raises(ValueError, match="out of range"):
        index.top_examples(10_000)
    with pytest.raises(ValueError, match="domain 'sculpture'"):
        index.top_examples(0, domain="sculpture")
    with pytest.raises(ValueError, match="k must"):
        index.top_examples(0, k=0)
    with pytest.raises(ValueError, match="different"):
        index.rank_channels_by_domain("photo", "photo")


def test_in_memory_images_are_cached_by_content(tiny, tmp_path):
    images = _collection()
    first = channel_index(tiny, images, "relu2_1", size=SIZE, cache=tmp_path / "c")
    with _Counter(tiny) as counter:
        second = channel_index(tiny, list(images), "relu2_1", size=SIZE, cache=tmp_path / "c")
    assert counter.calls == 0
    np.testing.assert_array_equal(first.max, second.max)


# --------------------------------------------------------------------------- CAM


def test_cam_contract_on_tiny_twin(lite_twin):
    image = _collection()[BRIGHT]
    for method in ("gradcam", "gradcam++", "layercam"):
        cam = grad_cam(lite_twin, image, "stage3.0", 3, method=method)
        assert isinstance(cam, CAM) and cam.method == method and cam.layer == "stage3.0"
        assert cam.heatmap.shape == (SIZE, SIZE) and cam.raw.shape == (8, 8)
        assert torch.isfinite(cam.heatmap).all() and cam.heatmap.min() >= 0 and cam.heatmap.max() <= 1
        assert cam.target == 3 and isinstance(cam.target_label, str) and np.isfinite(cam.score)
    overlay = cam_overlay(image, cam)
    assert overlay.shape == (1, 3, SIZE, SIZE) and 0 <= overlay.min() and overlay.max() <= 1


def test_similarity_cam_of_itself_is_finite_and_nontrivial(lite_twin):
    image = _collection()[1:2]
    cam = grad_cam(lite_twin, image, "stage3.0", similarity_to(image, "stage4.0"))
    assert cam.score == pytest.approx(1.0, abs=1e-4) and cam.target is None
    assert torch.isfinite(cam.heatmap).all() and cam.heatmap.max() == 1.0 and cam.raw.sum() > 0
    vector = lite_twin(image, "stage4.0")["stage4.0"].mean(dim=(2, 3))[0].detach()
    again = grad_cam(lite_twin, image, "stage3.0", similarity_to(vector, "stage4.0"))
    torch.testing.assert_close(again.heatmap, cam.heatmap)


def test_cam_bad_inputs(lite_twin, tiny):
    image = _collection()[0]
    with pytest.raises(ValueError, match="method"):
        grad_cam(lite_twin, image, "stage3.0", 1, method="scorecam")
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(lite_twin, image, "stage3.0", 1000)
    with pytest.raises(TypeError, match="class index"):
        grad_cam(lite_twin, image, "stage3.0", "cat")
    with pytest.raises(ValueError, match="no spatial positions"):
        grad_cam(lite_twin, image, "pool", 1)
    with pytest.raises(ValueError, match="one image"):
        grad_cam(lite_twin, _collection(), "stage3.0", 1)
    with pytest.raises(ValueError, match="classifier head"):
        grad_cam(tiny, image, "relu3_1", 1)
    with pytest.raises(ValueError, match="comes before"):
        grad_cam(lite_twin, image, "stage4.0", similarity_to(image, "stage2.0"))


def _cat_in_quadrant(q: int) -> torch.Tensor:
    from skimage import data

    cat = load_images([data.chelsea()], 112)
    canvas = torch.full((1, 3, 224, 224), 0.5)
    y0, x0 = (q // 2) * 112, (q % 2) * 112
    canvas[:, :, y0 : y0 + 112, x0 : x0 + 112] = cat
    return canvas


@pytest.mark.parametrize("quadrant", [0, 1, 2, 3])
def test_cam_finds_the_cat(lite0, quadrant):
    from artlab.predict import predict

    image = _cat_in_quadrant(quadrant)
    cls = int(predict(lite0, image, k=1).indices[0, 0])
    assert 281 <= cls <= 285  # a domestic cat
    y0, x0 = (quadrant // 2) * 112, (quadrant % 2) * 112
    for method in ("gradcam", "gradcam++", "layercam"):
        cam = grad_cam(lite0, image, None, cls, method=method)
        assert cam.layer == "head"
        quads = cam.heatmap.reshape(2, 112, 2, 112).mean(dim=(1, 3)).flatten()
        assert int(quads.argmax()) == quadrant, (method, quads)
        y, x = cam.peak()
        assert y0 - 16 <= y < y0 + 128 and x0 - 16 <= x < x0 + 128, (method, (y, x))


def test_plot_cams_with_predictions(lite0):
    fig = plot_cams(lite0, {"cat": _cat_in_quadrant(1)}, k=3)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    assert any("cat" in t for t in texts) and any(lite0.label in t for t in texts)
    assert len(fig.axes) == 5


def test_plot_cams_on_random_twin_is_stamped_red(lite_twin):
    fig = plot_cams(lite_twin, {"img": _collection()[0]}, layer="stage3.0", methods=("layercam",), k=2, size=SIZE)
    assert any("RANDOM WEIGHTS" in t.get_text() for t in fig.texts)
