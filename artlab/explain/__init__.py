"""What a layer sees: feature visualisation, feature inversion, DeepDream (and, from examples/cam, the
images that excite a channel and where a class is seen).

* :mod:`~artlab.explain.param`: the Fourier-parameterised, colour-decorrelated image and the random
  transforms of Olah et al. 2017 ("Feature Visualization", Distill).
* :mod:`~artlab.explain.channels`: objectives (:func:`channel`, :func:`neuron`, :func:`direction`,
  :func:`diversity`; they compose with ``+`` and ``*``) and :func:`visualize`, a stoppable run.
* :mod:`~artlab.explain.inversion`: :func:`invert` an image from one layer's activation (Mahendran &
  Vedaldi 2015), :func:`inversion_strip` at every depth, :func:`plot_inversion_strip`.
* :mod:`~artlab.explain.dream`: :func:`deepdream` (Mordvintsev et al. 2015) with octaves and jitter.
* :mod:`~artlab.explain.examples`: :func:`channel_index` (one cached batched pass over a collection) and
  its :class:`ChannelIndex`: top patches per channel, per-domain means, channels ranked by domain.
* :mod:`~artlab.explain.cam`: :func:`grad_cam` (Grad-CAM, Grad-CAM++, LayerCAM) for a class or
  :func:`similarity_to` another image, :func:`cam_overlay`, :func:`plot_cams`.

Every long job is an :class:`artlab.runs.Run`: iterate, stop, keep ``best_image``.
"""

from __future__ import annotations

from artlab.explain.cam import (
    CAM,
    CAM_METHODS,
    SimilarityTarget,
    cam_layer,
    cam_overlay,
    grad_cam,
    plot_cams,
    similarity_to,
)
from artlab.explain.channels import (
    ChannelVisualization,
    Objective,
    VisStep,
    channel,
    direction,
    diversity,
    neuron,
    visualize,
    visualize_channel,
)
from artlab.explain.dream import DeepDream, DreamStep, deepdream
from artlab.explain.examples import ChannelIndex, ChannelIndexStore, Example, channel_index
from artlab.explain.inversion import Inversion, InversionStep, invert, inversion_strip, plot_inversion_strip
from artlab.explain.param import FourierImage, random_transforms

__all__ = [
    "FourierImage",
    "random_transforms",
    "Objective",
    "channel",
    "neuron",
    "direction",
    "diversity",
    "VisStep",
    "ChannelVisualization",
    "visualize",
    "visualize_channel",
    "InversionStep",
    "Inversion",
    "invert",
    "inversion_strip",
    "plot_inversion_strip",
    "DreamStep",
    "DeepDream",
    "deepdream",
    "Example",
    "ChannelIndex",
    "ChannelIndexStore",
    "channel_index",
    "CAM",
    "CAM_METHODS",
    "SimilarityTarget",
    "cam_layer",
    "cam_overlay",
    "grad_cam",
    "plot_cams",
    "similarity_to",
]
