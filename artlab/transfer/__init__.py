"""Neural style transfer (Gatys, Ecker & Bethge 2016) and the controls that came after it.

An image is optimised so that its deep features match a *content* image at one
layer (relu4_2 for VGG) and its Gram matrices match one or more *style* images at
several layers (relu1_1 … relu5_1):

    L(x) = α · E_content(x) + β · Σ_l w_l E_l(x) [+ γ · E_histogram(x)] [+ τ · TV(x)]

:func:`stylize` returns a :class:`StyleTransfer`, a run (:class:`artlab.runs.Run`)
that yields one :class:`TransferStep` per optimiser step, so a widget, a script and a
test drive the same loop and can stop it; :func:`transfer` runs it to the end.

One idea per module (everything is importable from ``artlab.transfer``):

* :mod:`~artlab.transfer.settings`: :class:`TransferSettings`, every knob (weights α, β
  or their ratio, τ, w_l; layers, size, steps, optimiser, init, seed, device; style blend;
  colour mode; histogram loss; coarse-to-fine scales; panorama; quick start) and the modes;
* :mod:`~artlab.transfer.engine`: :func:`stylize`, :class:`StyleTransfer` (quick start,
  warm restarts with :meth:`StyleTransfer.restart`, resuming after Ctrl+C), :func:`transfer`;
* :mod:`~artlab.transfer.colour`: colour preservation (Gatys et al. 2017): luminance-only
  transfer (:func:`rgb_to_yiq`, :func:`match_luminance`) or the style recoloured (:func:`match_color`);
* :mod:`~artlab.transfer.panorama`: 360° panoramas (:func:`circular_padding`, :func:`seam_error`);
* :mod:`~artlab.transfer.memory`: the memory estimate before every run (:func:`estimate_memory`,
  :func:`largest_size`; too large raises :class:`TransferTooLarge` naming the size that fits);
* :mod:`~artlab.transfer.suggest`: style suggestions by deep-patch similarity (:func:`suggest_styles`);
* :mod:`~artlab.transfer.frames`: sequences and videos with warm starts (:func:`stylize_frames`,
  :func:`stylize_video`) and :func:`progression_gif`; GIF/MP4 writing is :mod:`artlab.video`'s
  (:func:`save_gif`, :func:`save_mp4`);
* :mod:`~artlab.transfer.sweep`: the lesson's content/style ratio sweep (:func:`ratio_sweep`,
  :func:`plot_ratio_sweep`).
"""

from __future__ import annotations

from artlab.transfer.colour import match_color, match_luminance, rgb_to_yiq, yiq_to_rgb
from artlab.transfer.engine import StyleTransfer, TransferStep, stylize, transfer, transfer_metadata
from artlab.transfer.frames import (
    FrameResult,
    progression_gif,
    stylize_frames,
    stylize_video,
)
from artlab.transfer.memory import (
    TransferTooLarge,
    available_memory,
    estimate_memory,
    largest_size,
)
from artlab.transfer.panorama import circular_padding, seam_error
from artlab.transfer.settings import (
    COLOR_MODES,
    INIT_MODES,
    LOSS_MODES,
    TransferSettings,
)
from artlab.transfer.suggest import suggest_styles
from artlab.transfer.sweep import plot_ratio_sweep, ratio_sweep
from artlab.video import save_gif, save_mp4

__all__ = [
    "COLOR_MODES",
    "INIT_MODES",
    "LOSS_MODES",
    "TransferSettings",
    "TransferStep",
    "StyleTransfer",
    "TransferTooLarge",
    "FrameResult",
    "stylize",
    "transfer",
    "transfer_metadata",
    "estimate_memory",
    "available_memory",
    "largest_size",
    "circular_padding",
    "seam_error",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "match_color",
    "match_luminance",
    "suggest_styles",
    "stylize_frames",
    "stylize_video",
    "save_gif",
    "save_mp4",
    "progression_gif",
    "ratio_sweep",
    "plot_ratio_sweep",
]
