"""FeatureMapViewer: the same layer's feature maps for several images, side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as W
from torch import Tensor

from artlab.figures import feature_mosaic, top_channels
from artlab.images import ensure_image_batch, to_png_bytes
from artlab.models import Backbone, features

from ._common import model_badge, png_image

__all__ = ["FeatureMapViewer"]


class FeatureMapViewer(W.VBox):
    """Pick a layer and see its most active (or first) channels for each image.

    The forward pass runs once per image for all offered layers and is cached, so
    moving the controls only re-tiles maps (no network call). Images update in place.
    """

    def __init__(
        self,
        model: Backbone,
        images: Mapping[str, Tensor],
        layers: Sequence[str] | None = None,
        *,
        channels: int = 8,
    ) -> None:
        if not images:
            raise ValueError("give at least one image, e.g. {'painting': p, 'photo': q}")
        self.model = model
        self.images = {name: ensure_image_batch(img, name)[:1] for name, img in images.items()}
        offered = list(layers) if layers is not None else list(model.spec.style_layers) or model.layer_names[:5]
        self._acts = {name: features(model, img, offered) for name, img in self.images.items()}

        self.layer = W.Dropdown(options=offered, value=offered[0], description="layer")
        self.count = W.IntSlider(value=channels, min=1, max=32, description="channels")
        self.order = W.ToggleButtons(options=["most active", "first"], value="most active", description="order")
        self.shared = W.Checkbox(value=False, description="shared colour scale")
        self.views = {name: png_image() for name in self.images}
        self.captions = {name: W.HTML() for name in self.images}
        columns = [
            W.VBox([W.HTML(f"<b>{name}</b>"), png_image(img, "160px"), self.views[name], self.captions[name]])
            for name, img in self.images.items()
        ]
        for control in (self.layer, self.count, self.order, self.shared):
            control.observe(self._update, names="value")
        super().__init__([W.HBox([self.layer, self.count]), W.HBox([self.order, self.shared]),
                          W.HBox(columns), model_badge(model)])
        self._update()

    def channels_for(self, name: str) -> list[int]:
        """The channels shown for image ``name`` under the current controls."""
        act = self._acts[name][self.layer.value]
        k = min(self.count.value, act.shape[1])
        return top_channels(act, k) if self.order.value == "most active" else list(range(k))

    def _update(self, _change=None) -> None:
        for name in self.images:
            act = self._acts[name][self.layer.value]
            chosen = self.channels_for(name)
            self.views[name].value = to_png_bytes(feature_mosaic(act, chosen, shared_scale=self.shared.value))
            self.captions[name].value = (
                f"{self.layer.value}: {act.shape[1]} channels, {act.shape[2]}×{act.shape[3]} · showing {chosen}"
            )
