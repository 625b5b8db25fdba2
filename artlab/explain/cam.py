"""Class activation maps: where in an image the evidence for a class (or for a similarity) lies.

Three gradient-weighted maps over one convolutional layer's activations A (C×h×w), for a score S:

* **Grad-CAM** — Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from
  Deep Networks via Gradient-based Localization", ICCV 2017. Channel weights are the spatially averaged
  gradients, w_c = mean_ij ∂S/∂A_cij; the map is ReLU(Σ_c w_c A_c).
* **Grad-CAM++** — Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized Gradient-based
  Visual Explanations for Deep Convolutional Networks", WACV 2018. Each position gets its own coefficient
  α_cij = g² / (2g² + Σ_ab A_cab · g³) (g = ∂S/∂A_cij) and w_c = Σ_ij α_cij ReLU(g_cij), so several
  instances of a class all count, not only the largest.
* **LayerCAM** — Jiang, Zhang, Hou, Cheng & Wei, "LayerCAM: Exploring Hierarchical Class Activation Maps
  for Localization", IEEE TIP 2021. Every position keeps its own positive gradient as its weight:
  ReLU(Σ_c ReLU(g_cij) A_cij), which stays sharp at shallower layers where Grad-CAM's averages blur.

The score S is an ImageNet class's logit (the pre-softmax score, as Selvaraju et al. use) on the model's
logits layer, or, with :func:`similarity_to`, the cosine similarity of two images' pooled embeddings ("why
are these two neighbours?"). Gradients come from one forward pass through
:func:`artlab.models.features` with ``requires_grad`` on the input, and ``torch.autograd.grad`` with
respect to the layer's output (no parameter gradients are accumulated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.figures import ArtlabFigure, stamp_model
from artlab.images import ensure_image_batch, load_images, to_numpy_hwc
from artlab.models import Backbone, features, model_device, receptive_field
from artlab.predict import imagenet_categories, predict

__all__ = ["CAM", "CAM_METHODS", "SimilarityTarget", "cam_layer", "cam_overlay", "grad_cam", "plot_cams",
           "similarity_to"]

#: The methods :func:`grad_cam` knows, with their display names.
CAM_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}


@dataclass
class CAM:
    """A class activation map: ``heatmap`` (H×W in [0, 1] at the image's size, bilinearly upsampled and
    min-max scaled; all zeros when no position has positive evidence), ``raw`` (h×w, the unscaled map on
    the layer's grid), the ``layer`` and ``method``, what was explained (``target_label``; ``target`` the
    class index, or None for a similarity) and its ``score`` (the class logit, or the cosine similarity)."""

    heatmap: Tensor
    raw: Tensor
    layer: str
    method: str
    target_label: str
    score: float
    target: int | None = None

    def peak(self) -> tuple[int, int]:
        """(y, x) of the heatmap's maximum, in image pixels."""
        flat = int(torch.argmax(self.heatmap))
        return flat // self.heatmap.shape[1], flat % self.heatmap.shape[1]


@dataclass(frozen=True)
class SimilarityTarget:
    """Explain the cosine similarity to ``other`` (a 3×H×W / 1×3×H×W image, or an embedding vector) of the
    spatially averaged activations at ``embed_layer`` (None: the CAM layer itself). Made by
    :func:`similarity_to`."""

    other: Any
    embed_layer: str | None = None
    name: str = "the other image"


def similarity_to(other: Tensor | np.ndarray, embed_layer: str | None = None, *,
                  name: str = "the other image") -> SimilarityTarget:
    """A :func:`grad_cam` target: the cosine similarity of the image's pooled ``embed_layer`` embedding to
    ``other``'s (an image in [0, 1], or an embedding vector such as a row of
    :class:`artlab.embed.Embeddings`). For neighbours found by :mod:`artlab.embed`, pass its layer
    (``artlab.embed.default_layer(model)``) and a CAM layer at or before it."""
    if isinstance(other, np.ndarray):
        other = torch.from_numpy(np.asarray(other, dtype=np.float32))
    if not isinstance(other, Tensor):
        raise TypeError(f"other must be an image tensor or an embedding vector, got {type(other).__name__}")
    if embed_layer is not None and not isinstance(embed_layer, str):
        raise TypeError(f"embed_layer must be a layer name, got {type(embed_layer).__name__}")
    return SimilarityTarget(other.detach(), embed_layer, name)


def cam_layer(model: Backbone) -> str:
    """The default CAM layer: the deepest layer that still has spatial positions (not a pooling layer),
    as Selvaraju et al. use the last convolutional layer (``head`` for EfficientNet-Lite, ``relu5_4`` VGG)."""
    best = None
    for name in model.layer_names:
        try:
            receptive_field(model, name)
        except ValueError:
            break
        if not name.startswith("pool"):
            best = name
    if best is None:
        raise ValueError(f"{model.name} has no spatial layer to compute a CAM on")
    return best


def _pooled(act: Tensor) -> Tensor:
    return act.mean(dim=(2, 3)) if act.ndim == 4 else act.flatten(1)


def _combine(acts: Tensor, grads: Tensor, method: str) -> Tensor:
    """The h×w map (before ReLU scaling) from A and ∂S/∂A (both 1×C×h×w)."""
    if method == "gradcam":
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return F.relu((weights * acts).sum(dim=1))[0]
    if method == "gradcam++":
        # Chattopadhay et al. take the gradients of exp(S): for a piecewise-linear network the second and
        # third derivatives of exp(S) are exp(S)·g² and exp(S)·g³, so α needs only g (exp(S) cancels in α,
        # and the remaining positive factor exp(S) in w_c is dropped: the heatmap is rescaled anyway).
        # EfficientNet-Lite's ReLU6 and VGG's ReLU are piecewise linear; the head's pooling is linear.
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(grads != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                            torch.zeros_like(g2))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
        return F.relu((weights * acts).sum(dim=1))[0]
    # LayerCAM: element-wise positive gradients as weights (Jiang et al., eq. 5)
    return F.relu((F.relu(grads) * acts).sum(dim=1))[0]


def grad_cam(
    model: Backbone,
    image: Tensor,
    layer: str | None,
    target: int | SimilarityTarget,
    *,
    method: str = "gradcam",
    device: str | torch.device | None = None,
) -> CAM:
    """The class activation map of ``target`` at ``layer`` (None: :func:`cam_layer`) for one image.

    ``image``: 3×H×W or 1×3×H×W in [0, 1], used at its own size. ``target``: an ImageNet class index (the
    class's logit on ``model.spec.logits_layer`` is explained) or :func:`similarity_to`. ``method``:
    "gradcam", "gradcam++" or "layercam" (see the module docstring).
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    if method not in CAM_METHODS:
        raise ValueError(f"method must be one of {', '.join(CAM_METHODS)}, got {method!r}")
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a 3×H×W or 1×3×H×W tensor in [0, 1], got {type(image).__name__}")
    x = ensure_image_batch(image[None] if image.ndim == 3 else image, "image")
    if x.shape[0] != 1:
        raise ValueError(f"grad_cam explains one image at a time, got a batch of {x.shape[0]}")
    layer = model.resolve_layer(layer) if layer is not None else cam_layer(model)
    dev = model_device(model, device)
    x = x.detach().to(dev, model.mean.dtype).requires_grad_(True)  # so features() builds the graph

    if isinstance(target, SimilarityTarget):
        embed = model.resolve_layer(target.embed_layer) if target.embed_layer else layer
        if model.depth(embed) < model.depth(layer):
            raise ValueError(f"embed_layer {embed!r} comes before the CAM layer {layer!r}: the similarity does not "
                             "depend on it; pick a CAM layer at or before the embedding layer")
        acts = features(model, x, [layer, embed])
        emb = _pooled(acts[embed])[0]
        other = target.other.to(dev, emb.dtype)
        if other.ndim in (3, 4):  # an image: its embedding, without gradients
            ref = ensure_image_batch(other[None] if other.ndim == 3 else other, "other")
            if ref.shape[0] != 1:
                raise ValueError("similarity_to takes one other image")
            ref_emb = _pooled(features(model, ref, embed)[embed])[0].detach()
        elif other.ndim == 1:
            ref_emb = other
        else:
            raise ValueError(f"other must be an image or a 1-D embedding vector, got shape {tuple(other.shape)}")
        if ref_emb.shape != emb.shape:
            raise ValueError(f"the other embedding has {ref_emb.numel()} dimensions, {embed} gives {emb.numel()}")
        unit = ref_emb / ref_emb.norm().clamp_min(1e-12)
        norm = emb.norm().clamp_min(1e-12)
        score_value = float((emb @ unit).detach() / norm.detach())
        # Departure: the gradient of the cosine itself is zero where the two embeddings are parallel (the
        # cosine is at its maximum), so an image compared with itself would get an empty map. We
        # differentiate (e · ô) / |e| with |e| held fixed: same value, and its gradient splits the
        # similarity into the positions' contributions (as Stylianou et al., "Visualizing Deep
        # Similarity Networks", WACV 2019, decompose a pooled-feature similarity).
        score = (emb @ unit) / norm.detach()
        label = f"similarity to {target.name}"
        index = None
    else:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"target must be an ImageNet class index (int) or similarity_to(...), "
                            f"got {type(target).__name__}")
        logits_layer = model.spec.logits_layer
        if logits_layer is None:
            raise ValueError(f"{model.name} has no ImageNet classifier head; use similarity_to(...) as the target "
                             "or a network with one (artlab.models.best_backbone())")
        acts = features(model, x, [layer, logits_layer])
        logits = acts[logits_layer].flatten(1)[0]
        if not 0 <= int(target) < logits.numel():
            raise ValueError(f"target class {target} out of range: the head has {logits.numel()} classes")
        if model.depth(logits_layer) <= model.depth(layer):
            raise ValueError(f"layer {layer!r} must come before the logits layer {logits_layer!r}")
        score = logits[int(target)]
        score_value = float(score.detach())
        categories = imagenet_categories()
        label = categories[int(target)] if logits.numel() == len(categories) else f"class {int(target)}"
        index = int(target)

    act = acts[layer]
    try:
        receptive_field(model, layer)
        spatial = act.ndim == 4
    except ValueError:  # pooled or fully connected: one value per channel for the whole image
        spatial = False
    if not spatial:
        raise ValueError(f"layer {layer!r} has no spatial positions (shape {tuple(act.shape)}); pick a convolutional "
                         f"layer such as {cam_layer(model)!r}")
    (grads,) = torch.autograd.grad(score, act)
    with torch.no_grad():
        raw = _combine(act.detach().float(), grads.float(), method).cpu()
        up = F.interpolate(raw[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
        lo, hi = float(up.min()), float(up.max())
        heatmap = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
    return CAM(heatmap=heatmap.clamp(0, 1), raw=raw, layer=layer, method=method, target_label=label,
               score=score_value, target=index)


def cam_overlay(image: Tensor, cam: CAM | Tensor, *, alpha: float = 0.5, cmap: str = "jet") -> Tensor:
    """``image`` (3×H×W or 1×3×H×W) blended with the colour-mapped heatmap: (1 − alpha)·image + alpha·colour,
    as a 1×3×H×W tensor in [0, 1]; the heatmap is resized to the image when the sizes differ."""
    import matplotlib

    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    x = ensure_image_batch(image[None] if image.ndim == 3 else image, "image")[:1].detach().cpu().float()
    heat = cam.heatmap if isinstance(cam, CAM) else cam
    if not isinstance(heat, Tensor) or heat.ndim != 2:
        raise ValueError("cam must be a CAM or an H×W tensor in [0, 1]")
    heat = heat.detach().cpu().float()
    if tuple(heat.shape) != tuple(x.shape[-2:]):
        heat = F.interpolate(heat[None, None], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    colours = matplotlib.colormaps[cmap](heat.clamp(0, 1).numpy())[..., :3]
    colour = torch.from_numpy(colours.astype(np.float32)).permute(2, 0, 1)[None]
    return ((1 - alpha) * x + alpha * colour).clamp(0, 1)


def plot_cams(
    model: Backbone,
    images: Mapping[str, Tensor],
    *,
    layer: str | None = None,
    methods: Sequence[str] = tuple(CAM_METHODS),
    target: int | None = None,
    k: int = 5,
    size: int | None = None,
) -> ArtlabFigure:
    """One row per image: the image, its CAM overlay for each of ``methods``, and its top-``k`` ImageNet
    predictions (:func:`artlab.predict.predict`). ``target``: the class to explain (default: each image's
    top-1 class). Images are resized (shorter side) and centre-cropped to ``size`` (default: the network's
    resolution), as ``predict`` sees them. Stamped with the model label."""
    if not images:
        raise ValueError("images is empty: pass {name: image tensor}")
    for m in methods:
        if m not in CAM_METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {', '.join(CAM_METHODS)}")
    size = int(size or model.spec.resolution)
    layer = model.resolve_layer(layer) if layer is not None else cam_layer(model)
    n, cols = len(images), len(methods) + 2
    fig = ArtlabFigure(figsize=(2.3 * cols, 2.4 * n + 0.4))
    grid = fig.add_gridspec(n, cols, width_ratios=[1] * (cols - 1) + [1.4], wspace=0.08, hspace=0.35)
    for r, (name, image) in enumerate(images.items()):
        x = load_images([image], size)
        preds = predict(model, x, k=k)
        cls = int(preds.indices[0, 0]) if target is None else int(target)
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(to_numpy_hwc(x)[0])
        ax.set_title(str(name)[:28], fontsize=8)
        ax.axis("off")
        for c, m in enumerate(methods, start=1):
            cam = grad_cam(model, x, layer, cls, method=m)
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(to_numpy_hwc(cam_overlay(x, cam))[0])
            ax.set_title(f"{CAM_METHODS[m]}: {cam.target_label[:18]}", fontsize=7)
            ax.axis("off")
        ax = fig.add_subplot(grid[r, cols - 1])
        ys = np.arange(k)[::-1]
        probs = preds.probs[0].numpy()
        ax.barh(ys, probs, color="#9db4d6")
        for y, p, lab in zip(ys, probs, preds.labels[0]):
            ax.text(0.02, y, f"{lab[:22]}  {p:.2f}", va="center", fontsize=7)
        ax.set_yticks([])
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(f"top {k}", fontsize=7)
    fig.suptitle(f"Where the evidence is: class activation maps at {layer} · {model.label}", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9 - 0.1 / n, bottom=0.06 + 0.05 / n)
    return stamp_model(fig, model)
