"""GramInspector: what "style" is to a CNN, for two images side by side.

Heatmaps of the two images' Gram matrices at one layer (channels in one shared
clustered order so blocks line up), their difference, the per-layer style
distances, and texture synthesis from the Grams with a live preview.
"""

from __future__ import annotations

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from artlab.gram import (
    NORMALIZATIONS,
    GramSet,
    cluster_order,
    compute_grams,
    gram_block,
    style_distance,
    synthesize_texture,
)
from artlab.images import ensure_image_batch, to_png_bytes
from artlab.models import Backbone

from .kit import BackgroundRun, error_html, figure_widget, model_badge, png_image

__all__ = ["GramInspector"]


class GramInspector(W.VBox):
    """Compare the Gram matrices of ``image_a`` and ``image_b`` under ``model``.

    Controls: layer, normalisation, channel order (clustered / index), channel
    block (start and size). The heatmaps and bars are plotly FigureWidgets updated
    in place. "Synthesise texture" optimises noise to match image A's Grams,
    previewing every few steps; "Stop" ends it and keeps the best image so far.
    """

    def __init__(
        self,
        model: Backbone,
        image_a: Tensor,
        image_b: Tensor,
        *,
        layers: list[str] | None = None,
        names: tuple[str, str] = ("A", "B"),
        block: int = 64,
    ) -> None:
        self.model = model
        self.images = (ensure_image_batch(image_a, names[0])[:1], ensure_image_batch(image_b, names[1])[:1])
        self.names = names
        self.layers = list(layers or model.spec.style_layers or model.layer_names[:5])
        self._grams: dict[tuple[int, str], GramSet] = {}
        self._orders: dict[tuple[str, str], list[int]] = {}
        self.worker = BackgroundRun("gram-inspector")
        self.best_texture: Tensor | None = None
        self.losses: list[float] = []  # texture loss per synthesis step of the latest run

        self.layer = W.Dropdown(options=self.layers, value=self.layers[0], description="layer")
        self.normalize = W.Dropdown(options=list(NORMALIZATIONS), value="gatys", description="normalise")
        self.sort = W.ToggleButtons(options=["clustered", "index"], value="clustered", description="order")
        self.block_size = W.IntSlider(value=block, min=2, max=block, description="block size")
        self.block_start = W.IntSlider(value=0, min=0, max=0, description="block start")
        self.steps = W.IntSlider(value=60, min=5, max=500, step=5, description="steps")
        # sized to its label: at ipywidgets' default width (148 px) it read "Synthesise tex…"
        self.run_button = W.Button(description="Synthesise texture", button_style="primary", icon="play",
                                   layout=W.Layout(width="auto", min_width="max-content"))
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.status = W.HTML("")
        self.preview = png_image(width="200px")

        self.heatmaps = self._make_heatmaps()
        self.bars = figure_widget(go.Figure(layout={"height": 260, "margin": {"t": 40, "b": 40, "l": 50, "r": 10},
                                            "title": "style distance per layer",
                                            "yaxis": {"type": "log", "exponentformat": "power"}}))
        self.bars.add_bar(x=self.layers, y=[0.0] * len(self.layers), name="style distance")

        for control in (self.layer, self.normalize, self.sort):
            control.observe(self._refresh, names="value")
        for control in (self.block_size, self.block_start):
            control.observe(self._draw_heatmaps, names="value")
        self.normalize.observe(self._draw_bars, names="value")
        self.run_button.on_click(lambda _b: self.start_synthesis())
        self.stop_button.on_click(lambda _b: self.stop_synthesis())

        super().__init__(
            [
                W.HBox([self.layer, self.normalize]),
                W.HBox([self.sort]),
                W.HBox([self.block_start, self.block_size]),
                self.heatmaps,
                self.bars,
                W.HBox([W.VBox([W.HBox([self.run_button, self.stop_button]), self.steps, self.status]),
                        self.preview]),
                model_badge(model),
            ]
        )
        self._refresh()
        self._draw_bars()

    # ------------------------------------------------------------------ compute (cached)
    def gram_set(self, which: int, normalize: str | None = None) -> GramSet:
        """The GramSet of image ``which`` (0: A, 1: B) under a normalisation (cached)."""
        key = (which, normalize or self.normalize.value)
        if key not in self._grams:
            self._grams[key] = compute_grams(self.model, self.images[which], self.layers, normalize=key[1])
        return self._grams[key]

    def order(self) -> list[int]:
        """The channel order shown: one clustering of A's and B's Grams together, or the index."""
        layer, norm = self.layer.value, self.normalize.value
        channels = self.gram_set(0).grams[layer].shape[0]
        if self.sort.value == "index":
            return list(range(channels))
        if (layer, norm) not in self._orders:
            self._orders[(layer, norm)] = cluster_order(self.gram_set(0).grams[layer], self.gram_set(1).grams[layer])
        return self._orders[(layer, norm)]

    def blocks(self) -> tuple[Tensor, Tensor, Tensor]:
        """The shown blocks of A's Gram, B's Gram and A − B."""
        layer, order = self.layer.value, self.order()
        a, b = (gram_block(self.gram_set(i).grams[layer], order, self.block_start.value, self.block_size.value)
                for i in (0, 1))
        return a, b, a - b

    # ------------------------------------------------------------------ views
    def _make_heatmaps(self) -> go.FigureWidget:
        titles = (f"Gram {self.names[0]}", f"Gram {self.names[1]}", f"{self.names[0]} − {self.names[1]}")
        fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.12)
        for col in (1, 2):
            fig.add_heatmap(z=[[0]], colorscale="Viridis", coloraxis="coloraxis", row=1, col=col)
        fig.add_heatmap(z=[[0]], colorscale="RdBu", zmid=0, showscale=True,
                        colorbar={"x": 1.01, "thickness": 12, "len": 0.9}, row=1, col=3)
        # A's and B's shared colour bar in the gutter after B: at x=0.64 it lay over the difference map
        fig.update_layout(height=330, margin={"t": 40, "b": 20, "l": 30, "r": 60},
                          coloraxis={"colorscale": "Viridis", "colorbar": {
                              "x": fig.layout.xaxis2.domain[1] + 0.008, "thickness": 12, "len": 0.9}})
        for axis in ("yaxis", "yaxis2", "yaxis3"):
            fig.layout[axis].autorange = "reversed"
        return figure_widget(fig)  # built as a plain Figure first, then sent as one set of edits

    def _refresh(self, _change=None) -> None:
        channels = self.gram_set(0).grams[self.layer.value].shape[0]
        with self.block_size.hold_trait_notifications(), self.block_start.hold_trait_notifications():
            self.block_size.max = channels
            self.block_size.value = min(self.block_size.value, channels) if self.block_size.value else channels
            self.block_start.max = max(0, channels - self.block_size.value)
        self._draw_heatmaps()

    def _draw_heatmaps(self, _change=None) -> None:
        channels = self.gram_set(0).grams[self.layer.value].shape[0]
        self.block_start.max = max(0, channels - self.block_size.value)
        order = self.order()
        a, b, diff = self.blocks()
        start = min(self.block_start.value, max(0, channels - self.block_size.value))
        labels = [str(c) for c in order[start : start + a.shape[0]]]
        with self.heatmaps.batch_update():
            for trace, z in zip(self.heatmaps.data, (a, b, diff)):
                trace.z = z.double().cpu().numpy()
                trace.x = labels
                trace.y = labels
            self.heatmaps.layout.coloraxis.cmin = float(min(a.min(), b.min()))
            self.heatmaps.layout.coloraxis.cmax = float(max(a.max(), b.max()))
            self.heatmaps.layout.title.text = (f"{self.layer.value} · {self.normalize.value} · channels "
                                          f"{start}–{start + a.shape[0] - 1} of {channels} ({self.sort.value})")

    def _draw_bars(self, _change=None) -> None:
        distance = style_distance(self.gram_set(0), self.gram_set(1), layers=self.layers)
        with self.bars.batch_update():
            self.bars.data[0].y = [distance.per_layer[layer] for layer in self.layers]
            self.bars.layout.title.text = f"style distance per layer ({distance.normalize}); total {distance.total:.4g}"

    # ------------------------------------------------------------------ texture synthesis
    def synthesis_steps(self):
        """The synthesis generator for the current settings (texture of image A)."""
        return synthesize_texture(self.model, self.gram_set(0), self.layers, steps=self.steps.value,
                                  preview_every=5, seed=0)

    def start_synthesis(self, *, block: bool = False) -> None:
        """Run texture synthesis in a background thread (``block=True`` runs it here, for scripts and tests)."""
        if self.worker.running:
            return
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.worker.start(self._synthesise, block=block)

    def stop_synthesis(self) -> None:
        """Ask a running synthesis to stop after its current step (the best image is kept)."""
        self.worker.stop()

    def _synthesise(self) -> None:
        steps = self.synthesis_steps()
        self.losses = []
        try:
            for update in steps:
                self.losses.append(update.loss)
                self.status.value = (f"step {update.step + 1}/{self.steps.value} · loss {update.loss:.4g} "
                                     f"· best {update.best_loss:.4g}")
                if update.image is not None:
                    self.best_texture = update.image
                    self.preview.value = to_png_bytes(update.image)
                if self.worker.stopping:
                    self.status.value += " · stopped"
                    break
            else:
                self.status.value += " · done"
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            self.status.value = error_html(f"synthesis failed: {exc}")
        finally:
            steps.close()
            if steps.best_image is not None:  # the best so far, also when stopped between previews
                self.best_texture = steps.best_image
                self.preview.value = to_png_bytes(self.best_texture)
            self.run_button.disabled, self.stop_button.disabled = False, True
