"""NeuronAtlas, driven by setting its controls from Python on a tiny twin and a tiny synthetic collection."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from artlab.data import Collection, Item
from artlab.images import save_image
from artlab.models import backbone

SIZE = 48
# tiny tensors: two torch threads mostly wait on each other on the shared 2-core machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Collection:
    """Four "paintings" (flat colour blocks) and four "photos" (noise), 48 px, with meta["domain"]."""
    root = tmp_path_factory.mktemp("atlas-set")
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(4):
        painting = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(SIZE, SIZE))
        photo = torch.rand(1, 3, SIZE, SIZE, generator=g)
        for domain, image in (("painting", painting), ("photo", photo)):
            path = save_image(image, root / f"{domain}-{i}.png")
            items.append(Item(path, label=domain, meta={"domain": domain}))
    return Collection(items, root)


@pytest.fixture(scope="module")
def model():
    return backbone("tiny_efficientnet_lite", weights=None)


@pytest.fixture
def atlas(model, collection, tmp_path):
    from artlab.widgets import NeuronAtlas

    return NeuronAtlas(model, collection, layer="stage3", size=SIZE, vis_size=32, steps=8, examples=3,
                       output_dir=str(tmp_path / "out"))


def _png(image) -> bool:
    return bytes(image.value).startswith(b"\x89PNG")


def test_opens_on_the_layer_and_its_most_different_channel(atlas, model):
    assert list(atlas.layer.options) == list(model.spec.inspect_layers)
    assert atlas.layer.value == "stage3"
    channels = atlas.index().channels
    assert atlas.channel.max == channels - 1 == 9  # tiny twin: 10 channels at stage3
    assert atlas.channel.value == atlas.ranked[0] and sorted(atlas.ranked) == list(range(channels))
    assert "rank 1 of 10" in atlas.rank_note.value
    assert all(_png(atlas.patches[d]) for d in ("painting", "photo"))
    assert [int(np.sum(t.y)) for t in atlas.histogram.data] == [4, 4], "each domain's 4 images are counted"
    assert set(atlas.images) == {"painting", "photo"}, "default images: the first of each domain"


def test_layer_change_updates_channel_range_examples_and_histogram(atlas):
    figure, before = atlas.histogram, bytes(atlas.patches["painting"].value)
    atlas.layer.value = "stage4"
    assert atlas.histogram is figure, "updated in place"
    assert atlas.channel.max == 19 and atlas.channel.value == atlas.ranked[0]
    assert atlas.index().layer == atlas.model.resolve_layer("stage4")
    assert bytes(atlas.patches["painting"].value) != before
    assert "stage4 · channel" in atlas.histogram.layout.title.text
    examples = atlas.index().top_examples(atlas.channel.value, k=3, domain="photo")
    assert all(f"{e.activation:.3g}" in atlas.patch_notes["photo"].value for e in examples)


def test_next_and_prev_by_difference_follow_the_ranking(atlas):
    ranked = atlas.ranked
    atlas.channel.value = ranked[0]
    atlas.next_button.click()
    assert atlas.channel.value == ranked[1]
    atlas.next_button.click()
    assert atlas.channel.value == ranked[2]
    assert "rank 3 of" in atlas.rank_note.value
    atlas.prev_button.click()
    assert atlas.channel.value == ranked[1]
    atlas.channel.value = ranked[0]
    assert atlas.step_by_difference(-1) == ranked[-1], "stepping back from the first wraps to the last"


def test_visualisation_with_block_gives_an_image(atlas, tmp_path):
    assert atlas.start_visualisation(block=True)
    assert atlas.visualisation.shape == (1, 3, 32, 32)
    assert float(atlas.visualisation.min()) >= 0 and float(atlas.visualisation.max()) <= 1
    assert _png(atlas.preview) and "step 8/8" in atlas.status.value and "done" in atlas.status.value
    assert not atlas.vis_button.disabled and atlas.stop_button.disabled
    path = atlas.save()
    assert path.endswith(".png") and (tmp_path / "out").is_dir() and atlas.save() != path, "never overwrites"


def test_stop_ends_a_background_visualisation(atlas):
    atlas.steps.value = 1024
    atlas.start_visualisation()
    deadline = time.monotonic() + 30
    while "step" not in atlas.status.value and time.monotonic() < deadline:
        time.sleep(0.02)
    atlas.stop_button.click()
    assert atlas.worker.join(timeout=60)
    assert "stopped" in atlas.status.value and atlas.visualisation is not None
    assert not atlas.vis_button.disabled


def test_inversion_strip_and_cam(atlas, model):
    atlas.image_choice.value = "photo"
    assert atlas.start_inversion(block=True, steps=1)
    assert list(atlas.strip) == list(model.spec.inspect_layers) and _png(atlas.strip_view)
    assert "photo: original | stem" in atlas.strip_note.value
    atlas.cam_button.click()
    assert atlas.cam is not None and atlas.cam.layer == model.resolve_layer("stage3") and _png(atlas.cam_view)
    assert "predicted class" in atlas.cam_note.value and atlas.cam.target_label in atlas.cam_note.value
    atlas.cam_method.value = "layercam"  # a method change redraws the shown CAM
    assert atlas.cam.method == "layercam"


def test_errors_are_shown_not_raised(atlas, monkeypatch):
    atlas.save_button.click()  # nothing visualised yet
    assert "nothing to save" in atlas.status.value and "#c0392b" in atlas.status.value

    def broken(layer=None):
        raise RuntimeError("index exploded")

    monkeypatch.setattr(atlas, "index", broken)
    atlas.layer.value = "stem"  # the observer must not raise
    assert "index exploded" in atlas.status.value


def test_cam_needs_a_classifier_head(collection):
    from artlab.widgets import NeuronAtlas

    atlas = NeuronAtlas(backbone("tiny_vgg", weights=None), collection, size=SIZE, examples=2)
    assert atlas.layer.options, "a network without inspect layers falls back to its style layers"
    atlas.cam_button.click()
    assert "no classifier head" in atlas.cam_note.value
