"""Which painting suits this photo? Style suggestions by deep-patch similarity (after Li & Wand 2016).

:func:`suggest_styles` ranks candidate style images by how well their local feature
patches can redraw the content's: for each content patch the most similar style patch
is found, and the mean of these best similarities is the score.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.data import Collection
from artlab.images import as_rgb_image, load_image
from artlab.models import Backbone, best_backbone, features
from artlab.transfer.settings import check_count

__all__ = ["suggest_styles"]


def _patches(feats: Tensor) -> Tensor:
    """3×3 patches of a 1×C×H×W feature map as unit vectors (L × 9C)."""
    patches = F.unfold(feats, kernel_size=3)[0].T  # L × 9C
    return F.normalize(patches, dim=1)


def _patch_score(content_patches: Tensor, style_patches: Tensor, chunk: int = 4096) -> float:
    """Mean over content patches of the best cosine similarity to any style patch."""
    best = []
    for i in range(0, content_patches.shape[0], chunk):
        best.append((content_patches[i : i + chunk] @ style_patches.T).max(dim=1).values)
    return float(torch.cat(best).mean())


def suggest_styles(content: object, candidates: object, model: Backbone | None = None, k: int = 3,
                   layer: str | None = None, *, size: int = 128) -> list[tuple[int | Path, float]]:
    """Rank style images by deep-patch similarity to ``content``; the ``k`` best as (key, score).

    Each image (resized to ``size`` on the longer side) goes through ``model`` to
    ``layer`` (default: the model's middle style layer, relu3_1 for VGG, stage3 for
    EfficientNet-Lite); its 3×3 patches of feature vectors are normalised to unit length.
    For every content patch the most similar candidate patch (cosine similarity) is
    found, and the score is the mean of these best similarities (1 = every content
    patch has an exact counterpart): styles whose local structures can redraw the
    content rank first (the patch matching of Li & Wand 2016, used as a score).

    candidates: a folder (str or Path; read with :meth:`Collection.from_folder`, so class
    subfolders and a metadata CSV work, and unreadable files are skipped), an
    :class:`artlab.data.Collection` (for both, keys are the images' paths), a list of
    images or paths, or an N×3×H×W batch (keys are indices).
    """
    k = check_count(k, "k")
    if model is None:
        model = best_backbone()  # ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
    style = model.spec.style_layers
    layer = model.resolve_layer(layer if layer is not None else style[len(style) // 2] if style else "")
    if isinstance(candidates, (str, Path)):
        folder = Path(candidates).expanduser()
        if not folder.is_dir():
            raise ValueError(f"candidates: {folder} is not a folder (give a folder of images, a Collection, "
                             "a list of images or paths, or an N×3×H×W batch)")
        candidates = Collection.from_folder(folder)
    if isinstance(candidates, Collection):
        keys: list[int | Path] = list(candidates.paths)
        sources: list[object] = list(keys)
    elif isinstance(candidates, Tensor) and candidates.ndim == 4:
        keys, sources = list(range(candidates.shape[0])), [candidates[i : i + 1] for i in range(candidates.shape[0])]
    elif isinstance(candidates, (list, tuple)):
        keys, sources = list(range(len(candidates))), list(candidates)
    else:
        raise TypeError("candidates must be a folder, a Collection, a list of images or paths, or an N×3×H×W batch, "
                        f"got {type(candidates).__name__}")
    if not sources:
        raise ValueError("no candidate styles given")
    device = model.mean.device

    def patches(src: object, name: str) -> Tensor:
        image = load_image(as_rgb_image(src, name), size).to(device)
        feats = features(model, image, [layer])[layer]
        if min(feats.shape[-2:]) < 3:
            raise ValueError(f"at size={size} the {layer} map is {tuple(feats.shape[-2:])}, too small for 3×3 "
                             f"patches; use a larger size or an earlier layer")
        return _patches(feats)

    reference = patches(content, "content")
    scores = [(key, _patch_score(reference, patches(src, f"candidates[{i}]")))
              for i, (key, src) in enumerate(zip(keys, sources))]
    scores.sort(key=lambda pair: -pair[1])
    return scores[:k]
