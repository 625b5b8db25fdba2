"""What a Gram forgets: where things are. Shuffle an image's tiles and watch the distances.

Grams sum over positions, so cutting an image into tiles and permuting them leaves its
style distance to the original small while its content distance grows as the tiles
shrink (:func:`shuffle_patches`, :func:`shuffle_experiment`; notebook 02).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from artlab.gram.checks import (
    check_flat,
    check_image_size,
    check_normalize,
    positive_int,
    single_image,
    style_layers,
)
from artlab.gram.distance import style_distance
from artlab.gram.matrices import GramSet, grams_and_features
from artlab.images import ensure_image_batch
from artlab.models import Backbone

__all__ = ["shuffle_patches", "shuffle_experiment"]


def _crop_to_tiles(images: Tensor, tile: int) -> Tensor:
    """Centre crop so that height and width are multiples of ``tile``."""
    h, w = images.shape[-2:]
    if tile > min(h, w):
        raise ValueError(f"tile {tile} px is larger than the image ({h}×{w} px); use tile <= {min(h, w)}")
    ch, cw = h - h % tile, w - w % tile
    top, left = (h - ch) // 2, (w - cw) // 2
    return images[..., top : top + ch, left : left + cw]


def shuffle_patches(images: Tensor, tile: int, *, seed: int = 0) -> Tensor:
    """Cut images into ``tile``×``tile`` tiles, permute the tiles, and put them back together.

    When height or width is not a multiple of ``tile``, the images are first
    **centre-cropped** to the largest multiple (so the result can be smaller than the
    input; :func:`shuffle_experiment` compares against the same crop). One seeded
    permutation is used for the whole batch; it is never the identity when there are
    at least two tiles (a shuffle that moves nothing would show nothing). ``tile``
    must be at most the shorter side.
    """
    images = ensure_image_batch(images)
    tile = positive_int(tile, "tile")
    x = _crop_to_tiles(images, tile)
    n, c, h, w = x.shape
    rows, cols = h // tile, w // tile
    count = rows * cols
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(count, generator=generator)
    while count > 1 and torch.equal(perm, torch.arange(count)):
        perm = torch.randperm(count, generator=generator)
    tiles = x.reshape(n, c, rows, tile, cols, tile).permute(0, 2, 4, 1, 3, 5).reshape(n, count, c, tile, tile)
    tiles = tiles[:, perm.to(x.device)]
    return tiles.reshape(n, rows, cols, c, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w).contiguous()


def shuffle_experiment(
    model: Backbone,
    image: Tensor,
    tiles: Sequence[int] = (128, 64, 32, 16),
    *,
    layers: Sequence[str] | None = None,
    content_layer: str | None = None,
    normalize: str = "gatys",
    seed: int = 0,
) -> list[dict]:
    """Style vs content distance between an image and tile-shuffled versions of it.

    For each tile size: :func:`shuffle_patches`, then the style distance
    (:func:`style_distance` at ``layers``) and the content distance (mean squared
    feature difference at ``content_layer``, default the model's, relu4_2 for VGG,
    as in Gatys et al.'s content loss up to its factor ½) to the original (cropped
    like the shuffled image when the size is not a multiple of the tile). Grams sum
    over positions, so style distance stays small while content distance grows as
    the tiles shrink. Rows: {tile, style_distance, content_distance}.
    """
    normalize = check_normalize(normalize)
    image = single_image(image)
    layers = style_layers(model, layers)
    content_layer = content_layer or model.spec.content_layer
    if content_layer is None:
        raise ValueError(f"{model.name} has no default content layer; pass content_layer=...")
    model.resolve_layer(content_layer)
    tiles = [positive_int(t, "tile") for t in tiles]
    if not tiles:
        raise ValueError("no tile sizes given")
    check_image_size(model, tuple(image.shape[-2:]), [*layers, content_layer])
    check_flat(image)
    originals: dict[tuple[int, int], tuple[GramSet, Tensor]] = {}
    rows = []
    for tile in tiles:
        original = _crop_to_tiles(image, tile)
        key = tuple(original.shape[-2:])
        if key not in originals:
            grams, content = grams_and_features(model, original, layers, normalize, None, [content_layer])
            originals[key] = (GramSet(model.name, model.label, normalize, key, grams), content[content_layer])
        ref_grams, ref_content = originals[key]
        shuffled = shuffle_patches(original, tile, seed=seed)
        grams, content = grams_and_features(model, shuffled, layers, normalize, None, [content_layer])
        style = style_distance(ref_grams, GramSet(model.name, model.label, normalize, key, grams)).total
        content_d = float((content[content_layer].double() - ref_content.double()).square().mean())
        rows.append({"tile": tile, "style_distance": style, "content_distance": content_d})
    return rows
