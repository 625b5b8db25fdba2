"""What an ImageNet classifier thinks an image is: top-k labels, confidence and entropy.

The output-space face of the domain shift. A network trained on photographs has never
been told what a painting is, so it answers with photo classes; how *sure* it is, and
how spread its guesses are, differ between paintings and photos of the same subjects.
:func:`predict` gives the top-k ImageNet classes with their probabilities, plus the
top-1 confidence and the entropy of the whole distribution for every image;
:func:`compare_confidence` puts two or more sets side by side (histograms and a
Mann–Whitney test).

Class names come from torchvision's weights metadata (the standard ImageNet-1k order
all these networks share), so nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from artlab.data import Collection
from artlab.images import (
    ImageLoadError,
    ensure_image_batch,
    load_images,
    thumbnail,
    to_numpy_hwc,
)
from artlab.models import Backbone, features
from artlab.runs import progress_bar

__all__ = ["Predictions", "compare_confidence", "confidence_table", "imagenet_categories", "predict"]

#: entropy of a uniform guess over the 1000 ImageNet classes, in bits
MAX_ENTROPY_BITS = math.log2(1000)


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard order (from torchvision's metadata)."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass
class Predictions:
    """Top-k ImageNet predictions of a set of images.

    ``indices``/``probs``: N×k class indices and softmax probabilities, best first;
    ``labels``: the class names; ``confidence``: top-1 probability per image;
    ``entropy``: entropy of the full 1000-way distribution in bits (0: certain, ~9.97:
    uniform). ``names`` identify the images; ``skipped`` lists files that could not be
    read, with the reason. ``thumbnails`` keeps small copies of the first images for
    :meth:`plot`.
    """

    names: list[str]
    indices: Tensor
    probs: Tensor
    labels: list[list[str]]
    confidence: Tensor
    entropy: Tensor
    model_label: str
    pretrained: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    thumbnails: list[Tensor] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def top1(self) -> list[str]:
        """The most likely class of every image."""
        return [row[0] for row in self.labels]

    def table(self):
        """A pandas DataFrame: one row per image with its top-k labels and probabilities, confidence, entropy."""
        import pandas as pd

        rows = []
        for i, name in enumerate(self.names):
            row: dict[str, Any] = {"image": name}
            for j, (label, p) in enumerate(zip(self.labels[i], self.probs[i].tolist()), start=1):
                row[f"top{j}"] = label
                row[f"p{j}"] = round(p, 4)
            row["confidence"] = float(self.confidence[i])
            row["entropy_bits"] = float(self.entropy[i])
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, columns: int = 4, max_images: int = 12):
        """Each image beside a bar chart of its top-k classes (stamped with the model label)."""
        from artlab.figures import ArtlabFigure, stamp_model

        n = min(len(self), max_images, len(self.thumbnails))
        if n == 0:
            raise ValueError("no images to plot (thumbnails are kept for the first images only)")
        columns = max(1, min(columns, n))
        rows = math.ceil(n / columns)
        k = self.probs.shape[1]
        fig = ArtlabFigure(figsize=(4.2 * columns, 1.9 * rows + 0.5))
        grid = fig.add_gridspec(rows, 2 * columns, width_ratios=[1, 1.25] * columns, wspace=0.08, hspace=0.45)
        for i in range(n):
            r, c = divmod(i, columns)
            ax_img = fig.add_subplot(grid[r, 2 * c])
            ax_img.imshow(to_numpy_hwc(self.thumbnails[i])[0])
            ax_img.set_xticks([])
            ax_img.set_yticks([])
            ax_img.set_title(_short(self.names[i]), fontsize=7)
            ax_bar = fig.add_subplot(grid[r, 2 * c + 1])
            ys = np.arange(k)[::-1]
            probs = self.probs[i].numpy()
            ax_bar.barh(ys, probs, color="#9db4d6")
            for y, p, label in zip(ys, probs, self.labels[i]):  # the class name on its bar, left-aligned
                ax_bar.text(0.02, y, f"{_short(label, 22)}  {p:.2f}", va="center", fontsize=7)
            ax_bar.set_yticks([])
            ax_bar.set_xlim(0, 1)
            ax_bar.tick_params(axis="x", labelsize=6)
            ax_bar.set_title(f"H = {float(self.entropy[i]):.1f} bits", fontsize=7)
        fig.suptitle(f"What the network thinks each image is (top {k}) · {self.model_label}", fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, top=0.9 - 0.15 / rows, bottom=0.12 / rows + 0.06)
        return stamp_model(fig, _Tag(self.model_label, self.pretrained))


@dataclass
class _Tag:
    """The two fields :func:`artlab.figures.stamp_model` reads."""

    label: str
    pretrained: bool


def _short(text: str, width: int = 28) -> str:
    text = Path(text).name if os.sep in text else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _sources(images: Any) -> tuple[list[Any], list[str], list[tuple[str, str]]]:
    """(one source per image, its name, files already found unreadable) from a tensor, a folder,
    a Collection or a list. A folder's or Collection's unreadable files (its ``skipped``, found
    by the header check of :meth:`Collection.from_folder`) are passed on, not dropped silently."""
    if isinstance(images, Tensor):
        batch = ensure_image_batch(images)
        return [batch[i : i + 1] for i in range(batch.shape[0])], [f"image {i}" for i in range(batch.shape[0])], []
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_dir():
            images = Collection.from_folder(path)
        elif path.is_file():
            return [path], [str(path)], []
        else:
            raise ValueError(f"{path} does not exist; pass an image, a folder, a list of images or a tensor")
    if isinstance(images, Collection):
        return (list(images.paths), [str(p) for p in images.paths],
                [(str(p), why) for p, why in images.skipped])
    if isinstance(images, Iterable):
        items = [Path(s).expanduser() if isinstance(s, (str, os.PathLike)) else s for s in images]
        return items, [str(s) if isinstance(s, Path) else f"image {i}" for i, s in enumerate(items)], []
    raise TypeError(f"images must be a tensor, a path, a folder, a Collection or a list, got {type(images).__name__}")


def predict(
    model: Backbone,
    images: Any,
    k: int = 5,
    *,
    size: int | None = None,
    batch_size: int = 16,
    keep_thumbnails: int = 32,
    progress: bool | None = None,
) -> Predictions:
    """The top-``k`` ImageNet classes of ``images`` under ``model`` (a Backbone with a classifier head).

    images: an N×3×H×W tensor in [0, 1], an image file, a folder, a
    :class:`~artlab.data.Collection` or a list of any of these. Each image is resized so
    its shorter side is ``size`` (default: the network's training resolution, 224 for
    Lite0 and VGG) and centre-cropped to a square. Departure from the reference
    evaluations: they crop the central 87.5 % first (resize to 256, crop 224); we keep
    the whole shorter side, so a painting is seen in full. Unreadable files are skipped
    and listed in ``skipped``. Memory is bounded by ``batch_size`` images at a time and
    ``keep_thumbnails`` small copies for :meth:`Predictions.plot`. A progress bar shows in
    notebooks and terminals (``progress=False``: none; :func:`artlab.runs.wants_progress`).
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    layer = model.spec.logits_layer
    if layer is None:
        raise ValueError(f"{model.name} has no ImageNet classifier head, so it cannot predict classes; use "
                         "artlab.models.best_backbone() or backbone('efficientnet_lite0')")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 1000:
        raise ValueError(f"k must be an integer between 1 and 1000, got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    size = int(size or model.spec.resolution)
    sources, names, skipped = _sources(images)
    if not sources:
        raise ValueError("no images given")
    categories = imagenet_categories()
    device = model.mean.device
    kept_names: list[str] = []
    thumbs: list[Tensor] = []
    top_i, top_p, conf, ent = [], [], [], []
    with progress_bar(len(sources), f"{model.name}: predicting", enabled=progress, unit="img") as bar:
        for start in range(0, len(sources), batch_size):
            batch, batch_names = [], []
            for src, name in zip(sources[start : start + batch_size], names[start : start + batch_size]):
                try:
                    batch.append(load_images([src], size))
                except ImageLoadError as exc:
                    skipped.append((name, exc.reason))
                    continue
                batch_names.append(name)
            bar.update(min(batch_size, len(sources) - start))
            if not batch:
                continue
            x = torch.cat(batch)
            logits = features(model, x.to(device, model.mean.dtype), layer)[layer].float().cpu()
            if logits.shape[-1] != len(categories):
                raise ValueError(f"{model.name}'s head has {logits.shape[-1]} outputs, not the 1000 ImageNet "
                                 "classes (a tiny test twin or a fine-tuned head?)")
            log_p = torch.log_softmax(logits, dim=1)
            p = log_p.exp()
            values, indices = p.topk(k, dim=1)
            top_i.append(indices)
            top_p.append(values)
            conf.append(values[:, 0])
            ent.append(-(p * log_p).sum(dim=1) / math.log(2))
            kept_names += batch_names
            for image in x[: max(0, keep_thumbnails - len(thumbs))]:
                thumbs.append(thumbnail(image[None], 128))
    if not kept_names:
        raise ValueError(f"none of the {len(sources)} images could be read: "
                         + "; ".join(f"{n} ({why})" for n, why in skipped[:5]))
    indices = torch.cat(top_i)
    return Predictions(
        names=kept_names, indices=indices, probs=torch.cat(top_p),
        labels=[[categories[j] for j in row] for row in indices.tolist()],
        confidence=torch.cat(conf), entropy=torch.cat(ent),
        model_label=model.label, pretrained=bool(model.pretrained), skipped=skipped, thumbnails=thumbs,
    )


def confidence_table(sets: Mapping[str, Predictions]):
    """Per set: images, mean and median top-1 confidence, mean entropy (bits), and the share of
    images whose top-1 probability is below 0.5; with a Mann–Whitney U test (two-sided) of the
    first set against each other set on confidence and on entropy. A pandas DataFrame."""
    import pandas as pd
    from scipy.stats import mannwhitneyu

    if len(sets) < 1:
        raise ValueError("give at least one set of predictions, e.g. {'paintings': p1, 'photos': p2}")
    first_name, first = next(iter(sets.items()))
    rows = []
    for name, preds in sets.items():
        row = {
            "set": name, "images": len(preds),
            "mean confidence": float(preds.confidence.mean()),
            "median confidence": float(preds.confidence.median()),
            "mean entropy (bits)": float(preds.entropy.mean()),
            "share unsure (p1 < 0.5)": float((preds.confidence < 0.5).float().mean()),
        }
        if name != first_name and len(preds) > 1 and len(first) > 1:
            row[f"p (confidence vs {first_name})"] = float(
                mannwhitneyu(first.confidence.numpy(), preds.confidence.numpy()).pvalue)
            row[f"p (entropy vs {first_name})"] = float(
                mannwhitneyu(first.entropy.numpy(), preds.entropy.numpy()).pvalue)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_confidence(sets: Mapping[str, Predictions], bins: int = 12):
    """Histograms of top-1 confidence and of entropy for each set, overlaid (the output-space shift)."""
    from artlab.figures import ArtlabFigure, stamp_model

    if not sets:
        raise ValueError("give at least one set of predictions, e.g. {'paintings': p1, 'photos': p2}")
    fig = ArtlabFigure(figsize=(9, 3.2))
    ax_c, ax_e = fig.subplots(1, 2)
    for name, preds in sets.items():
        ax_c.hist(preds.confidence.numpy(), bins=np.linspace(0, 1, bins + 1), alpha=0.55,
                  label=f"{name} (mean {float(preds.confidence.mean()):.2f})")
        ax_e.hist(preds.entropy.numpy(), bins=np.linspace(0, MAX_ENTROPY_BITS, bins + 1), alpha=0.55,
                  label=f"{name} (mean {float(preds.entropy.mean()):.1f})")
    ax_c.set_xlabel("top-1 probability (confidence)")
    ax_e.set_xlabel("entropy of the 1000-way prediction (bits)")
    for ax in (ax_c, ax_e):
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    first = next(iter(sets.values()))
    fig.suptitle(f"How sure is the network? · {first.model_label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return stamp_model(fig, _Tag(first.model_label, first.pretrained))

