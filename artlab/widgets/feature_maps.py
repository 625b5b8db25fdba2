"""FeatureMapViewer, deprecated: :class:`~artlab.widgets.ActivationExplorer` with ``look="mosaic"`` shows the same.

Kept one release so notebooks written for it still run; it warns and builds the explorer in
the look it had (per image a mosaic of its own most active channels, up to 32).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import ipywidgets as W
from torch import Tensor

from artlab.models import Backbone

from .activation_explorer import ActivationExplorer

__all__ = ["FeatureMapViewer"]


class FeatureMapViewer(ActivationExplorer):
    """Deprecated: use ``ActivationExplorer(model, images, layers=..., look="mosaic", k=channels)``.

    Controls were renamed: ``count`` is ``k``, ``order`` is ``mode`` (``"own"`` for "most active",
    ``"first"``), ``shared`` is ``scale`` / ``shared_scale``, ``channels_for(name)`` is ``channels(i)``.
    """

    def __init__(
        self,
        model: Backbone,
        images: Mapping[str, Tensor],
        layers: Sequence[str] | None = None,
        *,
        channels: int = 8,
    ) -> None:
        warnings.warn("FeatureMapViewer is deprecated; use ActivationExplorer(model, images, look='mosaic', "
                      "k=channels), the same view", DeprecationWarning, stacklevel=2)
        if layers is None:  # its own default: the style layers, else the first five
            layers = list(model.spec.style_layers) or model.layer_names[:5]
        super().__init__(model, images, layers=layers, look="mosaic", k=channels, page_size=32)

    @property
    def count(self) -> W.IntSlider:
        """The channel-count slider (now ``k``)."""
        return self.k

    def channels_for(self, name: str) -> list[int]:
        """The channels shown for image ``name`` (now ``channels(index)``)."""
        return self.channels(self.names.index(name))
