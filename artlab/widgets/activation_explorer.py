"""ActivationExplorer: one layer's feature maps for a painting and a photo (or any named images), side by side.

Two looks of one widget. ``look="grid"`` (default): a block of plotly heatmap tiles per image
(A left, B right), the same channels in every block; clicking a tile shows that channel large
for every image, laid over the picture. ``look="mosaic"`` (what ``FeatureMapViewer`` showed):
per image, the picture, a PNG mosaic of its own most active (or first) channels and a caption.
The network runs once per image for all offered layers (an :class:`~artlab.activations.ActivationCache`),
so a control only re-slices cached maps; figures and images are updated in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
from torch import Tensor

from artlab.activations import (
    CHANNEL_STATS,
    ActivationCache,
    ChannelStats,
    channel_stats,
    default_layers,
    feature_maps,
    top_channels,
    top_difference,
)
from artlab.figures import feature_mosaic
from artlab.images import ensure_image_batch, thumbnail, to_png_bytes
from artlab.models import Backbone

from .kit import figure_widget, model_badge, png_image
from .feature_tiles import colour_ranges, overlay_figure, shrink_map, tile_grid, upsample_map

__all__ = ["ActivationExplorer"]

LOOKS = ("grid", "mosaic")
#: the space between the images' columns in the mosaic look
COLUMN_GAP = "24px"


def _named_images(painting, photo, names) -> tuple[tuple[str, ...], list[Tensor]]:
    """(names, images) from the two ways of passing images: ``painting, photo`` or ``{name: image}``."""
    if isinstance(painting, Mapping):
        if photo is not None:
            raise TypeError("give a mapping {name: image} or a painting and a photo, not both")
        names, images = tuple(names or painting), list(painting.values())
    else:
        names, images = tuple(names or ("painting", "photo")), [painting] + ([photo] if photo is not None else [])
    if not images:
        raise ValueError("give at least one image, e.g. {'painting': p, 'photo': q}")
    if len(names) < len(images):
        raise ValueError(f"{len(images)} images but only {len(names)} names: give one name per image")
    return names[: len(images)], [ensure_image_batch(image, name)[:1] for image, name in zip(images, names)]


class ActivationExplorer(W.VBox):
    """Compare what one layer of ``model`` responds to in ``painting`` and ``photo``.

    ``painting`` may instead be a mapping ``{name: image}`` of one or more images (then no ``photo``;
    ``names`` default to its keys). Controls: ``layer``; ``mode``, in the grid look ``"pages"`` of
    ``page_size`` channels in index order, ``"active_a"`` / ``"active_b"`` / ...: the ``k`` most active
    channels of image A / B / ..., ``"difference"`` (two images): the ``k`` channels whose statistic
    differs most; in the mosaic look ``"own"``: each image's own ``k`` most active channels,
    ``"first"``: channels 0..k-1. ``page``; ``k`` (at most ``page_size``); ``rank_by`` (mean | energy |
    std | active); ``scale`` (``"map"``: each tile its own range, ``"channel"``: a channel shares one
    range in every image, ``"shared"``: one range for every tile, per image in the mosaic look);
    ``channel`` (the large view; clicking a tile sets it); ``opacity`` of the map over the picture.
    """

    def __init__(
        self,
        model: Backbone,
        painting: Tensor | Mapping[str, Tensor],
        photo: Tensor | None = None,
        *,
        layers: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
        look: str = "grid",
        page_size: int = 16,
        columns: int = 4,
        k: int = 8,
        tile_side: int = 48,
        detail_side: int = 256,
        cache: ActivationCache | None = None,
    ) -> None:
        if page_size < 1 or columns < 1:
            raise ValueError(f"page_size and columns must be at least 1, got {page_size} and {columns}")
        if look not in LOOKS:
            raise ValueError(f"look must be one of {', '.join(LOOKS)}, got {look!r}")
        self.model, self.look = model, look
        self.names, images = _named_images(painting, photo, names)
        self.images = tuple(images)
        self.layers = list(dict.fromkeys(layers if layers is not None else default_layers(model)))
        self.page_size, self.columns, self.tile_side = page_size, columns, tile_side
        # Room for every offered layer of every image, so switching layers never evicts one.
        self.cache = cache if cache is not None else ActivationCache(max(32, 2 * len(images) * len(self.layers)))
        for image in self.images:  # the one forward pass per image, for all offered layers (names checked)
            feature_maps(model, image, self.layers, cache=self.cache)
        self._held: tuple[str | None, tuple[Tensor, ...]] = (None, ())
        self._shown: list[int] = []
        self._quiet = False

        grid = look == "grid"
        modes = [("pages", "pages")] + [(f"most active: {name}", f"active_{chr(97 + i)}")  # active_a, active_b, ...
                                        for i, name in enumerate(self.names)]
        modes += [("most different", "difference")] if len(images) == 2 else []
        self.layer = W.Dropdown(options=self.layers, value=self.layers[0], description="layer")
        self.mode = W.ToggleButtons(options=modes if grid else [("most active", "own"), ("first", "first")],
                                    description="channels" if grid else "order", style={"button_width": "auto"})
        self.page = W.IntSlider(value=1, min=1, max=1, description="page")
        self.k = W.IntSlider(value=min(k, page_size), min=1, max=page_size, description="top k" if grid else "channels")
        self.rank_by = W.Dropdown(options=list(CHANNEL_STATS), value="mean", description="rank by")
        scales = [("each map", "map")] + ([("per channel", "channel")] if grid else []) + [("one scale", "shared")]
        self.scale = W.ToggleButtons(options=scales, value="map", description="colour scale",
                                     style={"button_width": "auto"})
        self.channel = W.BoundedIntText(value=0, min=0, max=0, description="channel")
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="map opacity",
                                     style={"description_width": "initial"})
        self.caption = W.HTML()

        self.layer.observe(self._on_layer, names="value")
        for control in (self.mode, self.page, self.k, self.rank_by, self.scale):
            control.observe(self._on_selection, names="value")
        self.channel.observe(self._on_channel, names="value")
        self.opacity.observe(self._on_opacity, names="value")
        super().__init__(self._grid_look(detail_side) if grid else self._mosaic_look())
        self._on_selection()
        self._on_layer()

    def _grid_look(self, detail_side: int) -> list[W.Widget]:
        """The tile grid (clickable) and the large view over the pictures, under their controls."""
        figure, self._titles = tile_grid(len(self.images), self.page_size, self.columns)  # trace i: _titles[i]
        self.grid = figure_widget(figure)  # a plain Figure first: one addTraces edit for all the traces
        for i, trace in enumerate(self.grid.data):
            trace.on_click(lambda _trace, points, _state, i=i: self._on_tile_click(i, points))
        self._pictures = tuple(thumbnail(image, detail_side) for image in self.images)  # under the large view
        self.detail = figure_widget(overlay_figure(self._pictures, self.names, opacity=self.opacity.value))
        return [model_badge(self.model), W.HBox([self.layer, self.rank_by]), self.mode, W.HBox([self.page, self.k]),
                self.scale, self.grid, self.caption, W.HBox([self.channel, self.opacity]), self.detail]

    def _mosaic_look(self) -> list[W.Widget]:
        """One column per image (name, picture, mosaic, caption), under the controls of FeatureMapViewer."""
        self.grid = self.detail = None
        self.views = {name: png_image() for name in self.names}
        self.captions = {name: W.HTML() for name in self.names}
        # a gutter between the images' columns: side by side, one's mosaic ran into the next one's
        columns = [W.VBox([W.HTML(f"<b>{name}</b>"), png_image(image, "160px"), self.views[name], self.captions[name]],
                          layout=W.Layout(margin=f"0 {COLUMN_GAP} 0 0"))
                   for name, image in zip(self.names, self.images)]
        return [W.HBox([self.layer, self.k]), W.HBox([self.mode, self.scale]), W.HBox(columns),
                model_badge(self.model)]

    # ------------------------------------------------------------------ data (cached)
    def activation(self, which: int, layer: str | None = None) -> Tensor:
        """Image ``which``'s (0: painting, 1: photo, ...) 1×C×H×W activation at ``layer`` (default: current)."""
        layer = layer or self.layer.value
        if self._held[0] != layer:  # one cache lookup per layer switch (each lookup hashes the image)
            self._held = (layer, tuple(feature_maps(self.model, image, layer, cache=self.cache)[layer]
                                       for image in self.images))
        return self._held[1][which]

    def stats(self, which: int, layer: str | None = None) -> ChannelStats:
        """Per-channel statistics of image ``which`` at ``layer`` (default: the current one)."""
        return channel_stats(self.activation(which, layer), layer or self.layer.value)

    @property
    def n_channels(self) -> int:
        """How many channels the current layer has."""
        return int(self.activation(0).shape[1])

    @property
    def n_pages(self) -> int:
        """How many pages of ``page_size`` channels the current layer fills."""
        return max(1, math.ceil(self.n_channels / self.page_size))

    @property
    def shared_scale(self) -> bool:
        """True when tiles share one colour range (``scale == "shared"``); settable."""
        return self.scale.value == "shared"

    @shared_scale.setter
    def shared_scale(self, value: bool) -> None:
        self.scale.value = "shared" if value else "map"

    def channels(self, which: int = 0) -> list[int]:
        """The channels shown for image ``which`` under the current controls, in tile order (the same
        for every image, except in mode ``"own"``: each image its own most active)."""
        mode, by, k = self.mode.value, self.rank_by.value, min(self.k.value, self.n_channels)
        if mode == "pages":
            start = (self.page.value - 1) * self.page_size
            return list(range(start, min(start + self.page_size, self.n_channels)))
        if mode == "first":
            return list(range(k))
        if mode == "difference":
            return top_difference(self.activation(0), self.activation(1), k, by=by)
        return top_channels(self.activation(which if mode == "own" else ord(mode[-1]) - 97), k, by=by)

    def select_channel(self, channel: int) -> None:
        """Show ``channel`` of the current layer large for every image (what a click on a tile does)."""
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"{self.layer.value} has channels 0–{self.n_channels - 1}; got {channel}")
        self.channel.value = int(channel)

    def tile_maps(self, which: int) -> list[np.ndarray]:
        """The heatmaps currently shown in grid ``which`` (0: painting, 1: photo, ...), in tile order."""
        start = which * self.page_size
        return [np.asarray(t.z) for t in self.grid.data[start : start + len(self._shown)]]

    def detail_maps(self) -> list[np.ndarray]:
        """The upsampled maps of the large view, one per image."""
        return [np.asarray(trace.z) for trace in self.detail.data[1::2]]

    # ------------------------------------------------------------------ events
    def _on_layer(self, _change=None) -> None:
        self._quiet = True  # sliders clamped to the new layer must not redraw one by one
        try:
            self.page.max, self.k.max = self.n_pages, min(self.page_size, self.n_channels)
            self.channel.max = self.n_channels - 1
            self._draw_channels()
            self.channel.value = self._shown[0] if self._shown else 0  # channel numbers differ between layers
        finally:
            self._quiet = False
        self._draw_detail()

    def _on_selection(self, change=None) -> None:
        self.page.disabled, self.k.disabled = self.mode.value != "pages", self.mode.value == "pages"
        if change is not None and not self._quiet:
            self._draw_channels()
            if change["owner"] is self.scale:
                self._draw_detail()

    def _on_channel(self, _change=None) -> None:
        if not self._quiet:
            self._draw_detail()

    def _on_opacity(self, _change=None) -> None:
        if self.detail is not None:
            with self.detail.batch_update():
                for trace in self.detail.data[1::2]:
                    trace.opacity = self.opacity.value

    def _on_tile_click(self, index: int, points) -> None:
        slot = index % self.page_size
        if points.point_inds and slot < len(self._shown):  # plotly calls every trace's handler; one has points
            self.select_channel(self._shown[slot])

    # ------------------------------------------------------------------ drawing
    def _draw_channels(self) -> None:
        """Redraw the tiles (grid look) or the mosaics (mosaic look) under the current controls."""
        self._shown = self.channels()
        if self.grid is None:
            for which, name in enumerate(self.names):
                act, own = self.activation(which), self.channels(which)
                self.views[name].value = to_png_bytes(feature_mosaic(act, own, shared_scale=self.shared_scale))
                self.captions[name].value = (f"{self.layer.value}: {act.shape[1]} channels, "
                                             f"{act.shape[2]}×{act.shape[3]} · showing {own}")
        else:
            self._draw_grid()

    def _draw_grid(self) -> None:
        layer, shown, n = self.layer.value, self._shown, len(self.images)
        maps = [[shrink_map(self.activation(i)[0, c], self.tile_side) for c in shown] for i in range(n)]
        ranges = colour_ranges(maps, self.scale.value)
        with self.grid.batch_update():
            for index, (trace, cell) in enumerate(zip(self.grid.data, self._titles)):
                (which, slot), title = divmod(index, self.page_size), self.grid.layout.annotations[cell]
                if slot < len(shown):
                    trace.z, (trace.zmin, trace.zmax) = maps[which][slot], ranges[which][slot]
                    trace.visible, title.text = True, f"ch {shown[slot]}"
                else:
                    trace.visible, title.text = False, ""
            # one colour bar, on a tile that is always drawn (the last image's first), when one scale holds
            self.grid.data[(n - 1) * self.page_size].showscale = self.shared_scale and bool(shown)
            sides = f"{self.names[0]} (left) | {self.names[1]} (right)" if n == 2 else " | ".join(self.names)
            self.grid.layout.title.text = f"{layer} · {sides} · {self._what()}"
        shapes = " · ".join(f"{name} {self.activation(i).shape[-2]}×{self.activation(i).shape[-1]}"
                            for i, name in enumerate(self.names))
        self.caption.value = (f"{layer}: {self.n_channels} channels · maps {shapes} · showing "
                              f"{', '.join(map(str, shown))} · click a tile to see it large")

    def _what(self) -> str:
        mode, k, by = self.mode.value, len(self._shown), self.rank_by.value
        if mode == "pages":
            first = (self.page.value - 1) * self.page_size
            return f"page {self.page.value}/{self.n_pages} (channels {first}–{first + k - 1})"
        if mode == "difference":
            return f"top {k} by |Δ {by}|"
        return f"top {k} of {self.names[ord(mode[-1]) - 97]} by {by}"

    def _draw_detail(self) -> None:
        if self.detail is None:
            return
        layer, channel = self.layer.value, min(self.channel.value, self.n_channels - 1)
        maps = [upsample_map(self.activation(i)[0, channel], pic.shape[-2:]) for i, pic in enumerate(self._pictures)]
        # one tile per image: "per channel" and "one scale" both put the images on one range
        ranges = [tiles[0] for tiles in colour_ranges([[m] for m in maps], self.scale.value)]
        means = " vs ".join(f"{name} {float(self.stats(i).mean[0, channel]):.3g}" for i, name in enumerate(self.names))
        with self.detail.batch_update():
            for trace, fmap, (lo, hi) in zip(self.detail.data[1::2], maps, ranges):
                trace.z, trace.zmin, trace.zmax = fmap.astype(np.float32), lo, hi
            self.detail.layout.title.text = f"{layer} · channel {channel} · mean activation {means}"
