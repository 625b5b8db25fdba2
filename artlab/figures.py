"""Static matplotlib figures (for the demo page, reports and notebooks).

Every figure that shows a network's features carries the model's label in its
title, and a red banner when the weights are a random init, so a random network's
feature maps are never mistaken for an ImageNet-trained one's.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib
import torch
from matplotlib.figure import Figure
from torch import Tensor

from artlab.data import Collection
from artlab.images import ensure_image_batch, load_image, thumbnail, to_numpy_hwc
from artlab.models import Backbone, features

# Figures are built with matplotlib.figure.Figure directly, not pyplot: no global
# state, no backend switch (notebooks keep %matplotlib inline), nothing to close.

__all__ = [
    "ArtlabFigure",
    "stamp_model",
    "model_tag",
    "corpus_grid",
    "feature_map_grid",
    "feature_mosaic",
    "most_active_channels",
    "image_row",
    "style_distance_bars",
    "ratio_sweep_figure",
    "save_figure",
]

RANDOM_COLOUR = "#c0392b"


class ArtlabFigure(Figure):
    """A matplotlib Figure that renders itself in Jupyter (``_repr_png_``).

    Built without pyplot, a plain Figure shows as ``<Figure size …>`` text unless
    the inline backend was activated; this one always displays as an image.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        return buffer.getvalue()


def model_tag(model: Backbone | None = None, label: str | None = None, pretrained: bool = False) -> Any:
    """What :func:`stamp_model` needs (``label``, ``pretrained``): the model itself, or a stand-in made from a
    stored label (a result loaded from disk keeps the label of the network that computed it, not the network)."""
    return model if model is not None else SimpleNamespace(label=label, pretrained=pretrained)


def stamp_model(fig: Figure, model: Backbone) -> Figure:
    """Write the model label at the foot of ``fig``; in red with a warning for random weights."""
    if model.pretrained:
        fig.text(0.995, 0.005, model.label, ha="right", va="bottom", fontsize=8, color="#555555")
    else:
        fig.text(
            0.5, 0.005,
            f"{model.label} — RANDOM WEIGHTS, not ImageNet features (see `artlab weights list`)",
            ha="center", va="bottom", fontsize=9, color="white", weight="bold",
            bbox={"facecolor": RANDOM_COLOUR, "edgecolor": "none", "pad": 3},
        )
    return fig


def corpus_grid(collection: Collection, *, columns: str = "style", rows: str = "subject", thumb: int = 96) -> Figure:
    """A table of thumbnails: one row per ``rows`` value, one column per ``columns`` value."""
    row_keys = sorted({i.meta.get(rows, "") for i in collection}, key=str)
    # "photo" (the originals) first, then the other values in first-seen order
    col_keys = sorted(dict.fromkeys(i.meta.get(columns, i.label or "") for i in collection), key=lambda k: k != "photo")
    lookup = {(i.meta.get(rows, ""), i.meta.get(columns, i.label or "")): i.path for i in collection}
    fig = ArtlabFigure(figsize=(1.45 * len(col_keys), 1.45 * len(row_keys)))
    axes = fig.subplots(len(row_keys), len(col_keys), squeeze=False)
    for r, rk in enumerate(row_keys):
        for c, ck in enumerate(col_keys):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if (rk, ck) in lookup:
                ax.imshow(to_numpy_hwc(thumbnail(load_image(lookup[(rk, ck)]), thumb))[0])
            if r == 0:
                ax.set_title(ck, fontsize=9)
            if c == 0:
                ax.set_ylabel(rk, fontsize=8)
    fig.suptitle(f"{collection.name or 'collection'}: {len(collection)} images", fontsize=11)
    fig.tight_layout()
    return fig


def most_active_channels(activation: Tensor, k: int) -> list[int]:
    """The ``k`` channels with the largest mean activation in the first image of ``activation`` (N×C×H×W),
    strongest first: which maps a figure shows. (:func:`artlab.activations.top_channels` ranks by any
    statistic, averaged over a batch.)"""
    energy = activation[0].float().flatten(1).mean(1)
    return torch.topk(energy, min(k, energy.numel())).indices.tolist()


def top_channels(activation: Tensor, k: int) -> list[int]:
    """Deprecated name of :func:`most_active_channels` (it collided with :func:`artlab.activations.top_channels`)."""
    warnings.warn("artlab.figures.top_channels is deprecated; use artlab.figures.most_active_channels",
                  DeprecationWarning, stacklevel=2)
    return most_active_channels(activation, k)


def feature_map_grid(
    model: Backbone,
    images: Mapping[str, Tensor],
    layers: Sequence[str],
    *,
    channels: int = 6,
) -> Figure:
    """Feature maps of several images (e.g. a painting and a photo) at several layers.

    One row per (image, layer): the input, then the ``channels`` most active channels
    of that layer for that image, each map normalised to its own range (viridis).
    """
    names = list(images)
    batch = torch.cat([ensure_image_batch(images[n]) for n in names])
    acts = features(model, batch, list(layers))
    n_rows = len(names) * len(layers)
    fig = ArtlabFigure(figsize=(1.5 * (channels + 1), 1.55 * n_rows + 0.5))
    axes = fig.subplots(n_rows, channels + 1, squeeze=False)
    for i, name in enumerate(names):
        picture = to_numpy_hwc(batch[i : i + 1])[0]
        for j, layer in enumerate(layers):
            row = axes[i * len(layers) + j]
            act = acts[layer][i : i + 1].detach().float().cpu()
            row[0].imshow(picture)
            row[0].set_ylabel(f"{name}\n{layer}", fontsize=8)
            for c, ch in enumerate(most_active_channels(act, channels)):
                fmap = act[0, ch].numpy()
                row[c + 1].imshow(fmap, cmap="viridis", vmin=float(fmap.min()), vmax=float(fmap.max()) + 1e-12)
                row[c + 1].set_title(f"ch {ch}", fontsize=7)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(f"Feature maps · {model.label}", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return stamp_model(fig, model)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG (parents created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def feature_mosaic(activation: Tensor, channels: Sequence[int], *, columns: int = 4, cmap: str = "viridis",
                   shared_scale: bool = False, gap: int = 2) -> Tensor:
    """Tile the chosen channels of one 1×C×H×W activation into a colour-mapped image.

    Returns a 1×3×H'×W' tensor in [0, 1] (artlab's image convention), ready for
    ``to_png_bytes`` or an ipywidgets Image. Each map is scaled to its own range
    unless ``shared_scale`` (then all share the range of the chosen channels).
    """
    if activation.ndim != 4 or activation.shape[0] != 1:
        raise ValueError(f"expected one activation map 1×C×H×W, got {tuple(activation.shape)}")
    if not channels:
        raise ValueError("choose at least one channel")
    maps = activation[0, list(channels)].detach().float().cpu()
    if shared_scale:
        lo, hi = maps.min(), maps.max()
        maps = (maps - lo) / (hi - lo + 1e-12)
    else:
        flat = maps.flatten(1)
        lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
        maps = (maps - lo) / (hi - lo + 1e-12)
    coloured = torch.from_numpy(matplotlib.colormaps[cmap](maps.numpy())[..., :3]).float().permute(0, 3, 1, 2)
    columns = max(1, min(columns, len(channels)))
    rows = -(-len(channels) // columns)
    h, w = coloured.shape[-2:]
    canvas = torch.ones(3, rows * (h + gap) - gap, columns * (w + gap) - gap)
    for i, tile in enumerate(coloured):
        r, c = divmod(i, columns)
        canvas[:, r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return canvas.unsqueeze(0)


def image_row(images: Mapping[str, Tensor], *, title: str = "", model: Backbone | None = None,
              size: float = 2.2) -> Figure:
    """Images side by side with a caption each (e.g. textures synthesised from different layer sets)."""
    fig = ArtlabFigure(figsize=(size * len(images), size + 0.7))
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (caption, image) in zip(axes, images.items()):
        ax.imshow(to_numpy_hwc(image[:1])[0])
        ax.set_title(caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title if model is None else f"{title} · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if model is not None else 0, 1, 1))
    return stamp_model(fig, model) if model is not None else fig


def style_distance_bars(distances: Mapping[str, Mapping[str, float]], model: Backbone, *,
                        title: str = "Style distance per layer") -> Figure:
    """Grouped bars: per-layer style distance for several image pairs ({pair: {layer: value}}), log scale."""
    pairs = list(distances)
    layers = list(next(iter(distances.values())))
    fig = ArtlabFigure(figsize=(1.2 * len(layers) + 2.5, 3.4))
    ax = fig.subplots()
    width = 0.8 / max(1, len(pairs))
    for i, pair in enumerate(pairs):
        xs = [j + (i - (len(pairs) - 1) / 2) * width for j in range(len(layers))]
        ax.bar(xs, [distances[pair][layer] for layer in layers], width=width, label=pair)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yscale("log")
    ax.set_ylabel("Gram distance (mean squared)")
    ax.legend(fontsize=8)
    fig.suptitle(f"{title} · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return stamp_model(fig, model)


def ratio_sweep_figure(content: Tensor, style: Tensor, results: Sequence[tuple[float, Tensor]], *, steps: int,
                       model: Backbone) -> Figure:
    """Content, style, then one style-transfer result per style/content weight ratio β/α, in one row.

    ``results``: (ratio, image) pairs, as :func:`artlab.transfer.ratio_sweep` returns them;
    ``steps`` (the steps each run took) and the model's label go into the title, and the
    model is stamped at the foot (red for random weights).
    """
    panels = [("content", content), ("style", style)]
    panels += [(f"β/α = {ratio:.0e}", image) for ratio, image in results]
    fig = ArtlabFigure(figsize=(2.2 * len(panels), 2.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(to_numpy_hwc(image)[0])
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Style transfer: the style/content ratio · {steps} steps · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return stamp_model(fig, model)
