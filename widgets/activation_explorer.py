"""ActivationExplorer: one layer's feature maps for a painting and a photo, side by side.

Two grids of plotly heatmaps (image A left, image B right) show the same channels
for both images: a page of channels in index order, the most active channels of
either image, or the channels on which the two images disagree most. Clicking a
tile (or setting ``channel``) shows that channel large for both images, upsampled
and laid over the input picture. All figures are FigureWidgets updated in place.

The network runs once per image for every offered layer (through an
:class:`artlab.activations.ActivationCache`), so moving a control only re-slices
cached activations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import Tensor

from artlab.activations import (
    CHANNEL_STATS,
    ActivationCache,
    ChannelStats,
    channel_stats,
    default_layers,
    top_channels,
    top_difference,
)
from artlab.images import ensure_image_batch, thumbnail, to_data_url
from artlab.models import Backbone

from ._common import figure_widget, model_badge

__all__ = ["ActivationExplorer"]


def _thumb(fmap: Tensor, max_side: int) -> np.ndarray:
    """A feature map shrunk (area average) so its longer side is at most ``max_side`` — display only.

    Tiles are ~100 px on screen; sending 256×256 maps for 32 tiles would make every
    update megabytes of JSON for no visible gain.
    """
    h, w = fmap.shape
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        fmap = F.adaptive_avg_pool2d(fmap[None, None], size)[0, 0]
    return fmap.numpy().astype(np.float32)


def _upsample(fmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A feature map bilinearly resized to the displayed picture's size, for the overlay."""
    return F.interpolate(fmap[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


class ActivationExplorer(W.VBox):
    """Compare what one layer of ``model`` responds to in ``painting`` and ``photo``.

    Controls: ``layer``; ``mode`` (``"pages"`` of ``page_size`` channels in index
    order, ``"active_a"`` / ``"active_b"``: the ``k`` most active channels of one
    image, ``"difference"``: the ``k`` channels whose statistic differs most);
    ``page``; ``k``; ``rank_by`` (mean | energy | std | active); ``scale``
    (``"map"``: each tile its own range, ``"channel"``: a channel shares one range
    in both images, ``"shared"``: one range for every tile shown); ``channel`` (the
    large view; clicking a tile sets it); ``opacity`` of the map over the picture.
    """

    def __init__(
        self,
        model: Backbone,
        painting: Tensor,
        photo: Tensor,
        *,
        layers: Sequence[str] | None = None,
        names: tuple[str, str] = ("painting", "photo"),
        page_size: int = 16,
        columns: int = 4,
        k: int = 8,
        tile_side: int = 48,
        detail_side: int = 256,
        cache: ActivationCache | None = None,
    ) -> None:
        if page_size < 1 or columns < 1:
            raise ValueError(f"page_size and columns must be at least 1, got {page_size} and {columns}")
        self.model = model
        self.names = tuple(names)
        self.images = (ensure_image_batch(painting, names[0])[:1], ensure_image_batch(photo, names[1])[:1])
        offered = list(layers) if layers is not None else default_layers(model)
        if not offered:
            raise ValueError("give at least one layer, e.g. layers=['relu1_1', 'relu3_1']")
        for layer in offered:
            model.resolve_layer(layer)  # a wrong name raises here, listing the valid ones
        self.layers = list(dict.fromkeys(offered))
        self.page_size, self.columns, self.tile_side = page_size, columns, tile_side
        # Room for every offered layer of both images, so switching layers never evicts one.
        self.cache = cache if cache is not None else ActivationCache(max_items=max(32, 4 * len(self.layers)))
        for image in self.images:  # the one forward pass per image, for all offered layers at once
            self.cache.get(model, image, self.layers)
        self._stats: dict[tuple[int, str], ChannelStats] = {}
        self._held: tuple[str | None, tuple[Tensor, ...]] = (None, ())
        self._shown: list[int] = []
        self._quiet = False
        # What the picture in the large view shows (downscaled once: the map is upsampled to it).
        self._pictures = tuple(thumbnail(image, detail_side) for image in self.images)

        self.layer = W.Dropdown(options=self.layers, value=self.layers[0], description="layer")
        self.mode = W.ToggleButtons(
            options=[("pages", "pages"), (f"most active: {names[0]}", "active_a"),
                     (f"most active: {names[1]}", "active_b"), ("most different", "difference")],
            value="pages", description="channels", style={"button_width": "auto"})
        self.page = W.IntSlider(value=1, min=1, max=1, description="page")
        self.k = W.IntSlider(value=min(k, page_size), min=1, max=page_size, description="top k", disabled=True)
        self.rank_by = W.Dropdown(options=list(CHANNEL_STATS), value="mean", description="rank by")
        self.scale = W.ToggleButtons(
            options=[("each map", "map"), ("per channel", "channel"), ("one scale", "shared")],
            value="map", description="colour scale", style={"button_width": "auto"})
        self.channel = W.BoundedIntText(value=0, min=0, max=0, description="channel")
        self.opacity = W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="map opacity",
                                    style={"description_width": "initial"})
        self.caption = W.HTML()

        self.grid = self._make_grid()
        self.detail = self._make_detail()

        self.layer.observe(self._on_layer, names="value")
        for control in (self.mode, self.page, self.k, self.rank_by):
            control.observe(self._on_selection, names="value")
        self.scale.observe(self._on_scale, names="value")
        self.channel.observe(self._on_channel, names="value")
        self.opacity.observe(self._on_opacity, names="value")

        super().__init__([
            model_badge(model),
            W.HBox([self.layer, self.rank_by]),
            self.mode,
            W.HBox([self.page, self.k]),
            self.scale,
            self.grid,
            self.caption,
            W.HBox([self.channel, self.opacity]),
            self.detail,
        ])
        self._on_layer()

    # ------------------------------------------------------------------ data (cached)
    def activation(self, which: int, layer: str | None = None) -> Tensor:
        """Image ``which``'s (0: painting, 1: photo) 1×C×H×W activation at ``layer`` (default: the current one)."""
        layer = layer or self.layer.value
        if self._held[0] != layer:  # one cache lookup per layer switch (each lookup hashes the image)
            self._held = (layer, tuple(self.cache.get(self.model, image, [layer])[layer] for image in self.images))
        return self._held[1][which]

    def stats(self, which: int, layer: str | None = None) -> ChannelStats:
        """Per-channel statistics of image ``which`` at ``layer`` (cached)."""
        key = (which, layer or self.layer.value)
        if key not in self._stats:
            self._stats[key] = channel_stats(self.activation(which, key[1]).detach().float().cpu(), key[1])
        return self._stats[key]

    @property
    def n_channels(self) -> int:
        return int(self.activation(0).shape[1])

    @property
    def n_pages(self) -> int:
        return max(1, math.ceil(self.n_channels / self.page_size))

    @property
    def shared_scale(self) -> bool:
        """True when every tile shares one colour range (``scale == "shared"``); settable."""
        return self.scale.value == "shared"

    @shared_scale.setter
    def shared_scale(self, value: bool) -> None:
        self.scale.value = "shared" if value else "map"

    def channels(self) -> list[int]:
        """The channels shown in both grids under the current controls, in tile order."""
        mode, by = self.mode.value, self.rank_by.value
        k = min(self.k.value, self.n_channels)
        if mode == "pages":
            start = (self.page.value - 1) * self.page_size
            return list(range(start, min(start + self.page_size, self.n_channels)))
        a, b = (self.activation(i).detach().float().cpu() for i in (0, 1))
        if mode == "active_a":
            return [int(c) for c in top_channels(a, k, by=by)]
        if mode == "active_b":
            return [int(c) for c in top_channels(b, k, by=by)]
        return [int(c) for c in top_difference(a, b, k, by=by)]

    def select_channel(self, channel: int) -> None:
        """Show ``channel`` of the current layer large for both images (what a click on a tile does)."""
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"{self.layer.value} has channels 0–{self.n_channels - 1}; got {channel}")
        self.channel.value = int(channel)

    def tile_maps(self, which: int) -> list[np.ndarray]:
        """The heatmaps currently shown in grid ``which`` (0: painting, 1: photo), in tile order."""
        start = which * self.page_size
        return [np.asarray(t.z) for t in self.grid.data[start : start + len(self._shown)]]

    def detail_maps(self) -> list[np.ndarray]:
        """The two upsampled maps of the large view (painting, photo)."""
        return [np.asarray(self.detail.data[i].z) for i in (1, 3)]

    # ------------------------------------------------------------------ figures
    def _make_grid(self) -> go.FigureWidget:
        rows = math.ceil(self.page_size / self.columns)
        cols = 2 * self.columns + 1  # a narrow empty column between the two images' grids
        specs = [[{}] * self.columns + [None] + [{}] * self.columns for _ in range(rows)]
        fig = make_subplots(rows=rows, cols=cols, specs=specs, column_widths=[1] * self.columns + [0.3]
                            + [1] * self.columns, horizontal_spacing=0.01, vertical_spacing=0.06,
                            subplot_titles=[" "] * (2 * rows * self.columns))
        cells = [(r, c) for r in range(rows) for c in range(self.columns)][: self.page_size]
        # Trace order: image A's tiles, then image B's; annotation i titles the i-th cell row-major.
        self._titles: list[int] = []
        for which in (0, 1):
            for r, c in cells:
                col = c + 1 + which * (self.columns + 1)
                fig.add_heatmap(z=[[0.0]], colorscale="Viridis", showscale=False, zauto=False, zmin=0, zmax=1,
                                hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>", row=r + 1, col=col)
                self._titles.append(r * 2 * self.columns + c + which * self.columns)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                         constrain="domain")
        for trace in fig.data:  # square pixels: a map keeps its aspect ratio
            fig.layout[trace.yaxis.replace("y", "yaxis")].scaleanchor = trace.xaxis
        fig.update_layout(height=120 * rows + 90, margin={"t": 60, "b": 10, "l": 10, "r": 70},
                          title={"font": {"size": 13}}, plot_bgcolor="white")
        fig.update_annotations(font_size=10)
        widget = figure_widget(fig)  # built as a plain Figure first: one addTraces edit for all the traces
        for i, trace in enumerate(widget.data):
            trace.on_click(lambda _trace, points, _state, i=i: self._on_tile_click(i, points))
        return widget

    def _make_detail(self) -> go.FigureWidget:
        fig = make_subplots(rows=1, cols=2, subplot_titles=self.names, horizontal_spacing=0.08)
        for which, picture in enumerate(self._pictures):
            h, w = picture.shape[-2:]
            fig.add_image(source=to_data_url(picture), hoverinfo="skip", row=1, col=which + 1)
            fig.add_heatmap(z=np.zeros((h, w), np.float32), colorscale="Viridis", opacity=self.opacity.value,
                            zauto=False, zmin=0, zmax=1, showscale=which == 1, colorbar={"len": 0.9},
                            hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>", row=1, col=which + 1)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                         scaleanchor="x")
        fig.layout.yaxis2.scaleanchor = "x2"
        fig.update_layout(height=340, margin={"t": 60, "b": 10, "l": 10, "r": 10}, title={"font": {"size": 13}})
        return figure_widget(fig)

    # ------------------------------------------------------------------ events
    @contextmanager
    def _hold(self):
        """Change several controls without each one redrawing (one redraw afterwards)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _on_layer(self, _change=None) -> None:
        channels = self.n_channels
        with self._hold():
            self.page.max = self.n_pages
            self.page.value = min(self.page.value, self.n_pages)
            self.k.max = min(self.page_size, channels)
            self.channel.max = channels - 1
        self._draw_grid()
        with self._hold():
            self.channel.value = self._shown[0] if self._shown else 0  # channel numbers differ between layers
        self._draw_detail()

    def _on_selection(self, _change=None) -> None:
        self.page.disabled, self.k.disabled = self.mode.value != "pages", self.mode.value == "pages"
        if not self._quiet:
            self._draw_grid()

    def _on_scale(self, _change=None) -> None:
        self._draw_grid()
        self._draw_detail()

    def _on_channel(self, _change=None) -> None:
        if not self._quiet:
            self._draw_detail()

    def _on_opacity(self, _change=None) -> None:
        with self.detail.batch_update():
            for i in (1, 3):
                self.detail.data[i].opacity = self.opacity.value

    def _on_tile_click(self, index: int, points) -> None:
        if not points.point_inds:  # plotly calls every trace's handler; only the clicked one has points
            return
        slot = index % self.page_size
        if slot < len(self._shown):
            self.select_channel(self._shown[slot])

    # ------------------------------------------------------------------ drawing
    def _draw_grid(self) -> None:
        layer, shown = self.layer.value, self.channels()
        self._shown = shown
        maps = [[_thumb(self.activation(i)[0, c].detach().float().cpu(), self.tile_side) for c in shown]
                for i in (0, 1)]
        ranges = self._ranges(maps)
        with self.grid.batch_update():
            for which in (0, 1):
                for slot in range(self.page_size):
                    index = which * self.page_size + slot
                    trace, title = self.grid.data[index], self.grid.layout.annotations[self._titles[index]]
                    if slot < len(shown):
                        trace.z, (trace.zmin, trace.zmax) = maps[which][slot], ranges[which][slot]
                        trace.visible, title.text = True, f"ch {shown[slot]}"
                    else:
                        trace.visible, title.text = False, ""
            # one colour bar, on a tile that is always drawn (the photo's first), when one scale holds
            self.grid.data[self.page_size].showscale = self.scale.value == "shared" and bool(shown)
            self.grid.layout.title.text = (f"{layer} · {self.names[0]} (left) | {self.names[1]} (right) · "
                                           f"{self._what()}")
        self.caption.value = self._caption()

    def _ranges(self, maps: list[list[np.ndarray]]) -> list[list[tuple[float, float]]]:
        """(zmin, zmax) per tile under the colour-scale mode."""
        def span(*arrays: np.ndarray) -> tuple[float, float]:
            lo, hi = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
            return lo, hi if hi > lo else lo + 1e-6  # a constant map still gets a valid range

        if self.scale.value == "shared":
            whole = span(*maps[0], *maps[1]) if maps[0] else (0.0, 1.0)
            return [[whole] * len(m) for m in maps]
        if self.scale.value == "channel":
            per = [span(a, b) for a, b in zip(*maps)]
            return [per, per]
        return [[span(m) for m in ms] for ms in maps]

    def _what(self) -> str:
        mode, k, by = self.mode.value, len(self._shown), self.rank_by.value
        if mode == "pages":
            first = (self.page.value - 1) * self.page_size
            return f"page {self.page.value}/{self.n_pages} (channels {first}–{first + k - 1})"
        if mode == "difference":
            return f"top {k} by |Δ {by}|"
        return f"top {k} of {self.names[0 if mode == 'active_a' else 1]} by {by}"

    def _caption(self) -> str:
        shapes = " · ".join(f"{name} {self.activation(i).shape[-2]}×{self.activation(i).shape[-1]}"
                            for i, name in enumerate(self.names))
        return (f"{self.layer.value}: {self.n_channels} channels · maps {shapes} · showing "
                f"{', '.join(map(str, self._shown))} · click a tile to see it large")

    def _draw_detail(self) -> None:
        layer, channel = self.layer.value, min(self.channel.value, self.n_channels - 1)
        maps = []
        for which, picture in enumerate(self._pictures):
            fmap = self.activation(which)[0, channel].detach().float().cpu()
            maps.append(_upsample(fmap, tuple(picture.shape[-2:])))
        if self.scale.value == "map":
            ranges = [(float(m.min()), float(m.max())) for m in maps]
        else:  # one channel: "per channel" and "one scale" both compare the two images on one range
            lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
            ranges = [(lo, hi)] * 2
        ranges = [(lo, hi if hi > lo else lo + 1e-6) for lo, hi in ranges]
        means = [float(self.stats(i).mean[0, channel]) for i in (0, 1)]
        with self.detail.batch_update():
            for which, (fmap, (lo, hi)) in enumerate(zip(maps, ranges)):
                trace = self.detail.data[2 * which + 1]
                trace.z, trace.zmin, trace.zmax = fmap.astype(np.float32), lo, hi
            self.detail.layout.title.text = (f"{layer} · channel {channel} · mean activation "
                                             f"{self.names[0]} {means[0]:.3g} vs {self.names[1]} {means[1]:.3g}")
