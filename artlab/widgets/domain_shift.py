"""DomainShiftView: how far apart two image sets (paintings, photos) are, layer by layer.

Per-layer curves of each measure in :func:`artlab.activations.domain_shift`
(Fréchet distance, KID, MMD², linear-probe accuracy) with their confidence bands.
Picking a layer (click a point, or the ``layer`` dropdown) lists the channels whose
mean activation differs most between the sets and shows, for each, the maps of the
images of each set that drive it hardest. A negative KID/MMD² or a probe below chance is
marked, with a plain explanation (tooltip and footnote): no detectable difference, not an
error. All figures update in place.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import Tensor

from artlab.activations import ActivationCache, DomainShift, domain_shift, example_maps
from artlab.activations.statistics import reading_note
from artlab.models import Backbone

from .kit import figure_widget, model_badge

__all__ = ["DomainShiftView"]

MEASURE_TITLES = {
    "frechet": "Fréchet distance",
    "kid": "KID (polynomial MMD²)",
    "mmd": "MMD² (RBF)",
    "probe": "linear probe accuracy",
}
COLOURS = {"frechet": "#1f77b4", "kid": "#9467bd", "mmd": "#2ca02c", "probe": "#d62728"}


def _thumb(fmap: Tensor, max_side: int) -> np.ndarray:
    """A map shrunk (area average) so its longer side is at most ``max_side`` — display only."""
    h, w = fmap.shape
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        fmap = F.adaptive_avg_pool2d(fmap[None, None], (max(1, round(h * scale)), max(1, round(w * scale))))[0, 0]
    return fmap.numpy().astype(np.float32)


def _reading_html(measure: str, value: float, sep: str = "<br>") -> str:
    """``sep`` and the plain reading of a value that looks wrong but is not (a tooltip line); "" for others."""
    text = reading_note(measure, value)
    return sep + html.escape(text).replace(" (", sep + "(") if text else ""


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


class DomainShiftView(W.VBox):
    """Explore a :class:`~artlab.activations.DomainShift` between image sets A and B.

    ``DomainShiftView(set_a, set_b, model, **domain_shift_kwargs)`` computes the
    shift (any input :func:`~artlab.activations.domain_shift` accepts);
    :meth:`from_result` wraps one computed already. Controls: ``layer`` (also set by
    clicking a point of a curve). ``channels`` divergent channels are shown, each
    with the ``examples`` most activating images of each set.
    """

    def __init__(
        self,
        set_a,
        set_b,
        model: Backbone,
        *,
        channels: int = 4,
        examples: int = 3,
        tile_side: int = 40,
        shift: DomainShift | None = None,
        cache: ActivationCache | None = None,
        **domain_shift_kwargs,
    ) -> None:
        if channels < 1 or examples < 1:
            raise ValueError(f"channels and examples must be at least 1, got {channels} and {examples}")
        if shift is None:
            shift = domain_shift(set_a, set_b, model, **domain_shift_kwargs)
        elif domain_shift_kwargs:
            raise TypeError(f"options {sorted(domain_shift_kwargs)} are for computing a shift; "
                            "this one is computed already")
        self.shift = shift
        self.model = model
        self.names = tuple(shift.names)
        self.images = (shift.measured_images(0, set_a), shift.measured_images(1, set_b))
        if shift.model_label != model.label:
            raise ValueError(f"the shift was computed with {shift.model_label!r}, not {model.label!r}; "
                             "pass the same model")
        self.layers = list(shift.layers)
        self.measures = [m for m in MEASURE_TITLES if m in set(shift.table["measure"])]
        self.n_channels, self.n_examples, self.tile_side = channels, examples, tile_side
        # Holds the candidate batches' maps: two per layer (A, B); a few layers back is plenty.
        self.cache = cache if cache is not None else ActivationCache(max_items=8)
        self.divergent = pd.DataFrame()

        self.layer = W.Dropdown(options=self.layers, value=self.layers[-1], description="layer")
        self.curves = self._make_curves()
        self.gallery = self._make_gallery()
        self.numbers = W.HTML()
        self.channel_table = W.HTML()
        self.notes = W.HTML(self._notes_html())
        self.layer.observe(self._on_layer, names="value")
        super().__init__([
            model_badge(model),
            self.curves,
            W.HBox([self.layer, W.HTML("<i>or click a point on a curve</i>")]),
            W.HBox([self.gallery, self.channel_table]),
            self.numbers,
            self.notes,
        ])
        self._on_layer()

    @classmethod
    def from_result(cls, shift: DomainShift, set_a, set_b, model: Backbone, **options) -> DomainShiftView:
        """A view of a shift computed already from ``set_a`` and ``set_b`` (the same arguments:
        Collections, folders, path lists or N×3×H×W tensors) with ``model``.

        ``options``: ``channels``, ``examples``, ``tile_side``, ``cache``.
        """
        return cls(set_a, set_b, model, shift=shift, **options)

    # ------------------------------------------------------------------ figures
    def _make_curves(self) -> go.FigureWidget:
        table = self.shift.table
        fig = make_subplots(rows=1, cols=len(self.measures), horizontal_spacing=0.07,
                            subplot_titles=[MEASURE_TITLES[m] for m in self.measures])
        self._value_traces: list[int] = []
        for col, measure in enumerate(self.measures, start=1):
            rows = table[table["measure"] == measure].set_index("layer").reindex(self.layers)
            x = list(self.layers)
            lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
            ok = ~(np.isnan(lo) | np.isnan(hi))
            band_x = [layer for layer, keep in zip(x, ok) if keep]
            fig.add_scatter(x=band_x + band_x[::-1], y=list(hi[ok]) + list(lo[ok][::-1]), fill="toself",
                            mode="lines", fillcolor=_rgba(COLOURS[measure], 0.2), line={"width": 0},
                            hoverinfo="skip", showlegend=False, name=f"{measure} CI", row=1, col=col)
            p = rows["p_value"].to_numpy(float) if "p_value" in rows else np.full(len(x), np.nan)
            values = rows["value"].to_numpy(float)
            hover = [f"{layer}<br>{v:.4g} [{a:.4g}, {b:.4g}]" + ("" if np.isnan(pv) else f"<br>p = {pv:.3g}")
                     + _reading_html(measure, v) for layer, v, a, b, pv in zip(x, values, lo, hi, p)]
            fig.add_scatter(x=x, y=rows["value"].to_numpy(float), mode="lines+markers", name=measure,
                            line={"color": COLOURS[measure]}, marker={"size": 8}, text=hover,
                            hovertemplate="%{text}<extra></extra>", showlegend=False, row=1, col=col)
            self._value_traces.append(len(fig.data) - 1)
            fig.add_scatter(x=[x[-1]], y=[rows["value"].iloc[-1]], mode="markers", hoverinfo="skip",
                            marker={"size": 16, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "black"}},
                            showlegend=False, name=f"{measure} selected", row=1, col=col)
            if measure == "probe":
                fig.add_hline(y=0.5, line_dash="dot", line_color="grey", row=1, col=col,
                              annotation_text="chance", annotation_position="bottom right")
        fig.update_xaxes(tickangle=-45)
        fig.update_layout(height=330, width=210 * len(self.measures) + 60, title={"font": {"size": 13}},
                          margin={"t": 60, "b": 70, "l": 50, "r": 10},
                          title_text=f"{self.names[0]} vs {self.names[1]} per layer · {self.shift.model_label}")
        widget = figure_widget(fig)
        for index in self._value_traces:
            widget.data[index].on_click(self._on_point_click)
        return widget

    def _make_gallery(self) -> go.FigureWidget:
        cols = 2 * self.n_examples + 1  # a narrow empty column between set A's and set B's maps
        specs = [[{}] * self.n_examples + [None] + [{}] * self.n_examples for _ in range(self.n_channels)]
        fig = make_subplots(rows=self.n_channels, cols=cols, specs=specs, horizontal_spacing=0.01,
                            vertical_spacing=0.08, column_widths=[1] * self.n_examples + [0.3] + [1] * self.n_examples,
                            subplot_titles=[" "] * (2 * self.n_examples * self.n_channels))
        for r in range(self.n_channels):
            for which in (0, 1):
                for e in range(self.n_examples):
                    fig.add_heatmap(z=[[0.0]], colorscale="Viridis", showscale=False, zauto=False, zmin=0, zmax=1,
                                    hovertemplate="%{z:.3g}<extra></extra>",
                                    row=r + 1, col=e + 1 + which * (self.n_examples + 1))
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                         constrain="domain")
        for trace in fig.data:  # square pixels
            fig.layout[trace.yaxis.replace("y", "yaxis")].scaleanchor = trace.xaxis
        fig.update_layout(height=105 * self.n_channels + 70, width=95 * (2 * self.n_examples) + 60,
                          margin={"t": 85, "b": 10, "l": 10, "r": 10}, title={"font": {"size": 12}},
                          plot_bgcolor="white")
        fig.update_annotations(font_size=9)
        return figure_widget(fig)

    # ------------------------------------------------------------------ events
    def _on_point_click(self, _trace, points, _state) -> None:
        if points.point_inds:  # plotly calls every trace's handler; only the clicked one has points
            self.select_layer(self.layers[points.point_inds[0]])

    def select_layer(self, layer: str) -> None:
        """Show ``layer``'s divergent channels (what clicking its point on a curve does)."""
        canonical = self.model.resolve_layer(layer)
        matches = [name for name in self.layers if self.model.resolve_layer(name) == canonical]
        if not matches:
            raise ValueError(f"the shift was measured at {', '.join(self.layers)}; {layer!r} is not one of them")
        self.layer.value = matches[0]

    def _on_layer(self, _change=None) -> None:
        layer = self.layer.value
        self.divergent = self.shift.divergent_channels(layer, k=self.n_channels)
        self._draw_selection(layer)
        self._draw_gallery(layer)
        self.channel_table.value = self._channel_table_html(layer)
        self.numbers.value = self._numbers_html(layer)

    # ------------------------------------------------------------------ drawing
    def examples(self, which: int, channel: int) -> tuple[Tensor, list[int]]:
        """Set ``which``'s (0: A, 1: B) maps of ``channel`` at the current layer for its most activating images.

        Returns (maps k×H×W, indices into the set), strongest first.
        """
        return self._examples_from(which, self._candidates(which, [channel]), int(channel))

    def _candidates(self, which: int, channels: Sequence[int]) -> list[int]:
        # the result picks them from its pooled features: only these images go through the network
        return self.shift.example_candidates(which, self.layer.value, channels, self.n_examples)

    def gallery_maps(self, which: int) -> list[list[np.ndarray]]:
        """The maps shown for set ``which``: one list per divergent channel (rows), examples in order."""
        per_row, out = 2 * self.n_examples, []
        for r in range(min(self.n_channels, len(self.divergent))):
            start = r * per_row + which * self.n_examples
            traces = self.gallery.data[start : start + self.n_examples]
            out.append([np.asarray(t.z) for t in traces if t.visible is not False])
        return out

    def _draw_selection(self, layer: str) -> None:
        index = self.layers.index(layer)
        with self.curves.batch_update():
            for trace_index in self._value_traces:
                values, marker = self.curves.data[trace_index], self.curves.data[trace_index + 1]
                marker.x, marker.y = [layer], [values.y[index]]
            self.curves.layout.title.text = (f"{self.names[0]} vs {self.names[1]} per layer · selected {layer} · "
                                             f"{self.shift.model_label}")

    def _draw_gallery(self, layer: str) -> None:
        per_row, shown = 2 * self.n_examples, [int(c) for c in self.divergent["channel"]]
        batches = [self._candidates(w, shown) for w in (0, 1)]  # one forward per set for all rows
        with self.gallery.batch_update():
            for r in range(self.n_channels):
                maps = [self._examples_from(w, batches[w], shown[r]) if r < len(shown) else (None, [])
                        for w in (0, 1)]
                tiles = [[_thumb(m.detach().float().cpu(), self.tile_side) for m in ms] if ms is not None else []
                         for ms, _ in maps]
                flat = [t for ts in tiles for t in ts]
                lo = min((float(t.min()) for t in flat), default=0.0)
                hi = max((float(t.max()) for t in flat), default=1.0)
                for which in (0, 1):
                    indices = maps[which][1]
                    for e in range(self.n_examples):
                        i = r * per_row + which * self.n_examples + e
                        trace, title = self.gallery.data[i], self.gallery.layout.annotations[i]
                        if e < len(tiles[which]):  # one colour range per channel: A and B comparable
                            trace.z, trace.zmin, trace.zmax = tiles[which][e], lo, hi if hi > lo else lo + 1e-6
                            trace.visible = True
                            lead = f"ch {shown[r]} · " if e == 0 and which == 0 else ""
                            title.text = f"{lead}{self.names[which]} #{indices[e]}"
                        else:
                            trace.visible, title.text = False, ""
            self.gallery.layout.title.text = (f"{layer}: most divergent channels<br>"
                                              f"<sub>{self.names[0]} | {self.names[1]}: most activating images</sub>")

    def _examples_from(self, which: int, candidates: list[int], channel: int) -> tuple[Tensor, list[int]]:
        maps, order = example_maps(self.model, self.images[which][candidates], self.layer.value, channel,
                                   k=min(self.n_examples, len(candidates)), cache=self.cache)
        return maps, [candidates[i] for i in order]

    def _channel_table_html(self, layer: str) -> str:
        frame = self.divergent.rename(columns={"mean_a": f"mean {self.names[0]}", "mean_b": f"mean {self.names[1]}",
                                               "effect": "effect (Cohen's d)"})
        return (f"<b>{html.escape(layer)}: channels that differ most</b>"
                + frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0))

    def _numbers_html(self, layer: str) -> str:
        rows, table, readings = [], self.shift.table, {}
        for current in self.layers:
            cells = [f"<td>{html.escape(current)}</td>"]
            for measure in self.measures:
                row = table[(table["layer"] == current) & (table["measure"] == measure)]
                if row.empty:
                    cells.append("<td></td>")
                    continue
                r = row.iloc[0]
                text = f"{r['value']:.4g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
                if measure == "mmd" and not np.isnan(r.get("p_value", np.nan)):
                    text += f" p={r['p_value']:.3g}"
                reading = reading_note(measure, r["value"])  # marked, explained in a tooltip and a footnote
                readings[reading] = None
                cells.append(f'<td title="{html.escape(reading)}">{text}{" *" if reading else ""}</td>')
            style = ' style="font-weight:bold;background:#eef"' if current == layer else ""
            rows.append(f"<tr{style}>{''.join(cells)}</tr>")
        head = "".join(f"<th>{MEASURE_TITLES[m]}</th>" for m in self.measures)
        n = self.shift.table.iloc[0]
        notes = "".join(f"<div style='font-size:smaller;color:#555'>* {html.escape(t)}</div>" for t in readings if t)
        return (f"<b>{html.escape(self.names[0])} (n={int(n['n_a'])}) vs {html.escape(self.names[1])} "
                f"(n={int(n['n_b'])})</b>, value [CI]: <table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table>"
                + notes)

    def _notes_html(self) -> str:
        """The result's notes (resizing, skipped files, receptive fields) and, folded, each number's caveats."""
        general = "".join(f"<li>{html.escape(n)}</li>" for n in self.shift.notes)
        table = self.shift.table
        per_number = [f"<li>{html.escape(f'{r.layer} · {r.measure}: {r.note}')}</li>"
                      for r in table.itertuples() if isinstance(r.note, str) and r.note.strip()]
        out = f"<ul style='color:#555;margin:0'>{general}</ul>" if general else ""
        if per_number:
            out += (f"<details><summary>caveats per number ({len(per_number)})</summary>"
                    f"<ul style='color:#555'>{''.join(per_number)}</ul></details>")
        return out

