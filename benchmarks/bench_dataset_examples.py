"""Dataset examples: artlab's cached channel index vs a plain per-image loop, over a generated collection.

Measured side by side in one run on N PNGs (1,000; quick: 100) made from jittered crops of the sample
corpus, with EfficientNet-Lite0 at ``stage4.0`` (128 px), for Q query channels (top 8 patches each,
cropped to 64 px):
* artlab: ``channel_index`` (one batched pass, written to an empty disk cache) then the Q queries
  (``top_examples`` + ``crops``) on the same index; and a second run that finds every row in the disk
  cache (hashing the files, no forward pass) before the same queries;
* the plain loop written here: for each query channel, load each image, one forward per image, that
  channel's max and its position, then the top 8 and their crops (what one writes without an index);
* the same loop done once for all Q channels (one forward per image), the fairest hand-written rival.
Ratios > 1 mean artlab is faster. Weights do not change speed; the bundled ImageNet ones are used.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from artlab.data import sample_corpus
from artlab.explain import channel_index
from artlab.images import load_images, save_image
from artlab.models import backbone, features, receptive_field

LAYER, SIZE, K, CROP = "stage4.0", 128, 8, 64
CHANNELS = (0, 7, 21, 42)


def _make_collection(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n distinct PNGs: random 160 px crops of the sample corpus, flipped and colour-jittered."""
    corpus = sample_corpus(progress=False)
    originals = load_images(corpus.paths, 256)
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        src = originals[int(torch.randint(len(originals), (1,), generator=g))]
        y, x = (int(v) for v in torch.randint(0, 256 - 160, (2,), generator=g))
        crop = src[:, y : y + 160, x : x + 160]
        if torch.rand(1, generator=g) < 0.5:
            crop = crop.flip(-1)
        gain = 0.85 + 0.3 * torch.rand(3, 1, 1, generator=g)
        paths.append(save_image((crop * gain).clamp(0, 1)[None], folder / f"{i:05d}.png"))
    return paths


def _box(model, pos: tuple[int, int], fmap: tuple[int, int]) -> tuple[int, int, int, int]:
    rf = receptive_field(model, LAYER)[0] / 2
    cy, cx = (pos[0] + 0.5) * SIZE / fmap[0], (pos[1] + 0.5) * SIZE / fmap[1]
    clip = lambda v: int(min(max(round(v), 0), SIZE))  # noqa: E731
    return clip(cy - rf), clip(cx - rf), clip(cy + rf), clip(cx + rf)


def _crops(paths, hits, model, fmap) -> torch.Tensor:
    out = []
    for i, pos in hits:
        t, left, b, r = _box(model, pos, fmap)
        patch = load_images([paths[i]], SIZE)[:, :, t:b, left:r]
        out.append(torch.nn.functional.interpolate(patch, size=(CROP, CROP), mode="bilinear", antialias=True))
    return torch.cat(out)


def _plain_per_channel(model, paths) -> list:
    """For each channel: every image loaded and run through the network on its own."""
    results = []
    for c in CHANNELS:
        scores = []
        for i, p in enumerate(paths):
            act = features(model, load_images([p], SIZE), LAYER)[LAYER][0, c]
            flat = int(act.argmax())
            scores.append((float(act.max()), i, divmod(flat, act.shape[1]), tuple(act.shape)))
        top = sorted(scores, key=lambda s: -s[0])[:K]
        results.append(_crops(paths, [(i, pos) for _, i, pos, _ in top], model, top[0][3]))
    return results


def _plain_one_pass(model, paths) -> list:
    """One forward per image for all query channels, then the same top-k and crops."""
    per = {c: [] for c in CHANNELS}
    fmap = None
    for i, p in enumerate(paths):
        act = features(model, load_images([p], SIZE), LAYER)[LAYER][0]
        fmap = tuple(act.shape[1:])
        flat = act.flatten(1)
        top, where = flat.max(dim=1)
        for c in CHANNELS:
            per[c].append((float(top[c]), i, divmod(int(where[c]), fmap[1])))
    out, tops = [], []
    for c in CHANNELS:
        top = sorted(per[c], key=lambda s: -s[0])[:K]
        out.append(_crops(paths, [(i, pos) for _, i, pos in top], model, fmap))
        tops.append([(i, pos) for _, i, pos in top])
    return out, tops


def _artlab(model, folder: Path, cache: Path) -> tuple[list, object]:
    index = channel_index(model, folder, LAYER, size=SIZE, batch_size=16, cache=cache)
    return [index.crops(index.top_examples(c, k=K), size=CROP) for c in CHANNELS], index


def run(quick: bool) -> list[dict]:
    n = 100 if quick else 1000
    model = backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = _make_collection(root / "images", n)
        _artlab(model, root / "images", root / "warm-cache")  # warm-up (threads, allocator), not timed
        cache = root / "cache"
        t0 = time.perf_counter()
        first, index = _artlab(model, root / "images", cache)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        second, again = _artlab(model, root / "images", cache)
        t_cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        _plain_per_channel(model, paths)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, plain_tops = _plain_one_pass(model, paths)
        t_one = time.perf_counter() - t0
    same = all(torch.allclose(a, b) for a, b in zip(first, second))
    ours = [[(e.index, e.position) for e in index.top_examples(c, k=K)] for c in CHANNELS]
    return [{
        "case": f"dataset examples, {n} PNGs @{SIZE}px, lite0 {LAYER}, {len(CHANNELS)} channels × top {K}",
        "artlab_build_s": t_build, "artlab_cached_s": t_cached, "plain_per_channel_s": t_plain,
        "plain_one_pass_s": t_one, "speedup_vs_per_channel": t_plain / t_build,
        "speedup_vs_one_pass": t_one / t_build, "cached_speedup_vs_one_pass": t_one / t_cached,
        "cached_vs_build": t_build / t_cached, "cached_forwards": again.computed,
        "cached_equal": same, "same_top_examples_as_plain": ours == plain_tops,
    }]
