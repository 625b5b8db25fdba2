"""The lesson's ratio sweep: one style transfer per style/content weight ratio β/α.

:func:`ratio_sweep` computes the results (the same settings every time except the
ratio, so the row shows what the ratio alone does); :func:`plot_ratio_sweep` draws them
with :func:`artlab.figures.ratio_sweep_figure` (notebook 03).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from matplotlib.figure import Figure
from torch import Tensor

from artlab.figures import ratio_sweep_figure
from artlab.images import as_rgb_image, load_image
from artlab.models import Backbone, best_backbone
from artlab.runs import progress_bar
from artlab.transfer.engine import stylize
from artlab.transfer.settings import (
    TransferSettings,
    check_count,
    check_number,
    resolve_settings,
)

__all__ = ["ratio_sweep", "plot_ratio_sweep"]


def ratio_sweep(content: object, style: object, model: Backbone | None = None,
                ratios: Sequence[float] = (1e2, 1e4, 1e6), steps: int = 50, *, size: int = 128,
                settings: TransferSettings | None = None, progress: bool | None = None) -> list[tuple[float, Tensor]]:
    """One style transfer of ``content`` in the style of ``style`` per ratio β/α: [(ratio, image 1×3×H×W CPU)].

    Every run uses the same settings (``settings``, default content init, L-BFGS; with
    ``steps`` steps at ``size`` px on the longer side) except the ratio: content_weight 1,
    style_weight = ratio. Low ratios keep the photo, high ratios dissolve it into the
    style. model: default :func:`artlab.models.best_backbone`. Ctrl+C stops the whole sweep.
    ``progress``: one bar over the runs (default: when a person is watching, :func:`artlab.runs.wants_progress`).
    """
    if model is None:
        model = best_backbone()  # ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
    ratios = [check_number(r, "ratios", positive=True) for r in ratios]
    if not ratios:
        raise ValueError("ratios is empty; pass e.g. (1e2, 1e4, 1e6)")
    base = resolve_settings(settings, {"steps": check_count(steps, "steps"), "size": size, "preview_every": 0})
    content_image = load_image(as_rgb_image(content, "content"), size)
    style_image = load_image(as_rgb_image(style, "style"), size)
    results = []
    with warnings.catch_warnings(), progress_bar(len(ratios), "ratio sweep", enabled=progress, unit="run") as bar:
        warnings.simplefilter("ignore", category=UserWarning)  # receptive-field warnings at lesson sizes
        for ratio in ratios:
            # stylize().result(), not transfer(): Ctrl+C stops the whole sweep, not just one panel
            results.append((ratio, stylize(content_image, style_image, model,
                                           base.replace(content_weight=1.0, style_weight=ratio)).result(progress=False)))
            bar.update(1)
    return results


def plot_ratio_sweep(content: object, style: object, model: Backbone | None = None,
                     ratios: Sequence[float] = (1e2, 1e4, 1e6), steps: int = 50, *, size: int = 128,
                     settings: TransferSettings | None = None, progress: bool | None = None) -> Figure:
    """Content, style, then one result per style/content weight ratio β/α (an :class:`artlab.figures.ArtlabFigure`).

    :func:`ratio_sweep` with these arguments, drawn by :func:`artlab.figures.ratio_sweep_figure`;
    the model label is stamped on it.
    """
    if model is None:
        model = best_backbone()  # ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
    results = ratio_sweep(content, style, model, ratios, steps, size=size, settings=settings, progress=progress)
    content_image = load_image(as_rgb_image(content, "content"), size)
    style_image = load_image(as_rgb_image(style, "style"), size)
    return ratio_sweep_figure(content_image, style_image, results, steps=steps, model=model)
