"""ClassifierView: where a linear probe on embeddings confuses one class for another.

The confusion matrix of :func:`artlab.embed.linear_probe` (cross-validated
predictions, rows = true class, columns = predicted class) as a heatmap.
Clicking a cell (or choosing the true and predicted class) shows the images
behind it as thumbnails with their paths: off the diagonal, the misclassified
ones. Accuracy, balanced accuracy, per-fold scores and the per-class report sit
beside it. The heatmap is a FigureWidget updated in place.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from types import SimpleNamespace

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from artlab.embed.browse import check_embeddings

from .kit import MUTED, RED, figure_widget, model_badge
from .thumbnails import ThumbnailStore, short_name, thumbnail_grid_html

__all__ = ["ClassifierView", "report_table_html"]


def _labels(values) -> np.ndarray:
    """Labels as an object array of str, None where missing (never the string "None")."""
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values],
                    dtype=object)


class ClassifierView(W.VBox):
    """Inspect a linear probe's cross-validated mistakes.

    ``probe_result``: what :func:`artlab.embed.linear_probe` returned for
    ``embeddings`` (one prediction per embedded image, in the same order);
    ``collection``: the collection they came from (optional; checked against the
    embeddings' paths). ``thumbnails``: a shared :class:`ThumbnailStore` or
    precomputed previews (else they are made now). ``max_images`` caps the grid.

    Controls: ``true_class``, ``predicted_class`` (clicking a cell sets both) and
    ``scale`` ("counts" or "row %"). State: ``cell`` (true, predicted), ``shown``
    (indices of the images in the grid).
    """

    def __init__(
        self,
        probe_result,
        embeddings,
        collection=None,
        *,
        thumbnails: ThumbnailStore | Sequence[bytes | str | None] | None = None,
        thumb_side: int = 96,
        max_images: int = 60,
        height: int | None = None,
    ) -> None:
        check_embeddings(embeddings)
        missing = [a for a in ("classes", "confusion", "predictions", "accuracy") if not hasattr(probe_result, a)]
        if missing:
            raise TypeError(f"probe_result must be what artlab.embed.linear_probe returns; "
                            f"{type(probe_result).__name__} has no {', '.join(missing)}")
        trained_on = [str(p) for p in getattr(probe_result, "paths", None) or []]
        if trained_on and trained_on != [str(p) for p in embeddings.paths]:
            raise ValueError("the probe was trained on other embeddings (its paths differ); pass the embeddings "
                             "given to linear_probe")
        self.result, self.embeddings, self.collection = probe_result, embeddings, collection
        self.classes = [str(c) for c in probe_result.classes]
        self.confusion = np.asarray(probe_result.confusion)
        k = len(self.classes)
        if self.confusion.shape != (k, k):
            raise ValueError(f"the probe result's confusion matrix has shape {self.confusion.shape} "
                             f"for {k} classes")
        # None marks images the probe left out (no label, or a class of one image): they are in no cell
        self.predicted = _labels(probe_result.predictions)
        self.truth = self._true_labels()
        n = len(embeddings.vectors)
        if len(self.predicted) != n or len(self.truth) != n:
            raise ValueError(f"the probe result has {len(self.predicted)} predictions for {n} embedded images; "
                             "pass the embeddings the probe was trained on")
        if collection is not None:
            known = {str(p) for p in collection.paths}
            foreign = [str(p) for p in embeddings.paths if str(p) not in known]
            if foreign:
                raise ValueError(f"{len(foreign)} embedded images are not in the collection (e.g. {foreign[0]}); "
                                 "pass the collection the embeddings were computed from")
        if isinstance(thumbnails, ThumbnailStore):
            self.thumbs = thumbnails
        else:
            self.thumbs = ThumbnailStore(embeddings.paths, side=thumb_side, thumbnails=thumbnails)
        self.max_images = int(max_images)
        self.cell: tuple[str, str] | None = None
        self.shown: list[int] = []

        off_diag = self.confusion - np.diag(np.diag(self.confusion))
        start = np.unravel_index(int(np.argmax(off_diag)), off_diag.shape) if off_diag.any() else (0, 0)
        self.true_class = W.Dropdown(options=self.classes, value=self.classes[start[0]], description="true class")
        self.predicted_class = W.Dropdown(options=self.classes, value=self.classes[start[1]],
                                          description="predicted")
        self.scale = W.ToggleButtons(options=["counts", "row %"], value="counts", description="show")
        self.cell_title = W.HTML("")
        self.grid = W.HTML("")
        self.report = W.HTML(self._report_html())
        # a width of its own: sized by the page, the plot was drawn wider than its box and lost its last column
        self.heatmap = self._make_heatmap(height or max(320, 40 * k + 140), max(420, 60 * k + 190))

        self.scale.observe(lambda _c: self._draw_heatmap(), names="value")
        for control in (self.true_class, self.predicted_class):
            control.observe(lambda _c: self._draw_cell(), names="value")
        self.heatmap.data[0].on_click(self._on_cell_click)

        badge = model_badge(SimpleNamespace(label=embeddings.model_label, pretrained=bool(embeddings.pretrained)))
        super().__init__([
            badge,
            W.HBox([W.Box([self.heatmap], layout=W.Layout(flex="0 0 auto")), self.report],
                   layout=W.Layout(flex_flow="row wrap")),  # a narrow page puts the report under the matrix
            W.HBox([self.true_class, self.predicted_class, self.scale]),
            self.cell_title,
            self.grid,
        ])
        self._draw_heatmap()
        self.thumbs.start(on_done=self._draw_cell)
        self._draw_cell()

    # ------------------------------------------------------------------ data
    def _true_labels(self) -> np.ndarray:
        if getattr(self.result, "labels", None) is not None:
            return _labels(self.result.labels)
        if "label" not in self.embeddings.meta.columns:
            raise ValueError("the probe result has no true labels and the embeddings' metadata has no 'label' "
                             "column; pass the result of linear_probe on these embeddings")
        return _labels(self.embeddings.meta["label"])

    def images_in_cell(self, true: str, predicted: str) -> list[int]:
        """Indices (rows of the embeddings) of the images of class ``true`` predicted as ``predicted``."""
        return np.flatnonzero((self.truth == str(true)) & (self.predicted == str(predicted))).tolist()

    # ------------------------------------------------------------------ views
    def _make_heatmap(self, height: int, width: int) -> go.FigureWidget:
        fig = figure_widget(go.Figure(layout={
            "height": height, "width": width, "margin": {"t": 70, "b": 60, "l": 110, "r": 20},
            "xaxis": {"title": {"text": "predicted class"}, "side": "bottom", "tickangle": -35},
            "yaxis": {"title": {"text": "true class"}, "autorange": "reversed"},
            "title": {"font": {"size": 13}},
        }))
        fig.add_heatmap(z=self.confusion.tolist(), x=self.classes, y=self.classes, colorscale="Blues",
                        texttemplate="%{text}", text=self.confusion.astype(int).astype(str).tolist(),
                        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
                        colorbar={"thickness": 12})
        fig.update_layout(shapes=[{"type": "rect", "xref": "x", "yref": "y", "x0": -0.5, "x1": 0.5,
                                   "y0": -0.5, "y1": 0.5, "line": {"color": RED, "width": 3}}])
        return fig

    def _title(self) -> str:
        label = html.escape(self.embeddings.model_label)
        if not self.embeddings.pretrained:
            label = f'<span style="color:{RED}">{label} — random weights</span>'
        # two lines: on one, the label ran past the figure's edge beside the report
        return (f"linear probe confusion ({self.scale.value}) · accuracy {self.result.accuracy:.1%}"
                f'<br><span style="font-size:11px">{label}</span>')

    def _draw_heatmap(self) -> None:
        counts = self.confusion.astype(float)
        if self.scale.value == "row %":
            rows = counts.sum(axis=1, keepdims=True)
            z = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) * 100
            text = [[f"{v:.0f}%" for v in row] for row in z]
        else:
            z, text = counts, self.confusion.astype(int).astype(str).tolist()
        with self.heatmap.batch_update():
            self.heatmap.data[0].z = z.tolist()
            self.heatmap.data[0].text = text
            self.heatmap.layout.title.text = self._title()

    def _on_cell_click(self, _trace, points, _state) -> None:
        if not points.point_inds and not points.xs:
            return
        if points.xs and points.ys:  # heatmap points carry their class names
            true, predicted = str(points.ys[0]), str(points.xs[0])
        else:
            row, col = points.point_inds[0]
            true, predicted = self.classes[int(row)], self.classes[int(col)]
        self.show_cell(true, predicted)

    def show_cell(self, true: str, predicted: str) -> list[int]:
        """Show the images of class ``true`` predicted as ``predicted`` (what clicking that cell does)."""
        for name, value in (("true", true), ("predicted", predicted)):
            if str(value) not in self.classes:
                raise ValueError(f"{name} class {value!r} is not one of {', '.join(self.classes)}")
        with self.true_class.hold_trait_notifications(), self.predicted_class.hold_trait_notifications():
            self.true_class.value, self.predicted_class.value = str(true), str(predicted)
        self._draw_cell()
        return self.shown

    def _draw_cell(self) -> None:
        true, predicted = self.true_class.value, self.predicted_class.value
        self.cell = (true, predicted)
        self.shown = self.images_in_cell(true, predicted)
        r, c = self.classes.index(true), self.classes.index(predicted)
        with self.heatmap.batch_update():
            self.heatmap.layout.shapes[0].update(x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5)
        what = "correctly classified" if true == predicted else "misclassified"
        self.cell_title.value = (f"<b>{len(self.shown)}</b> image(s) of <b>{html.escape(true)}</b> predicted as "
                                 f"<b>{html.escape(predicted)}</b> ({what})")
        captions = [html.escape(short_name(self.embeddings.paths[i])) for i in self.shown]
        grid = thumbnail_grid_html(self.thumbs, self.shown, captions, side=self.thumbs.side, limit=self.max_images,
                                   empty="no images in this cell")
        paths = "".join(f"<li><code>{html.escape(str(self.embeddings.paths[i]))}</code></li>"
                        for i in self.shown[: self.max_images])
        self.grid.value = grid + (f'<ul style="font-size:11px;margin:4px 0">{paths}</ul>' if paths else "")

    def _report_html(self) -> str:
        r = self.result
        parts = [
            f"<b>accuracy</b> {r.accuracy:.1%} ± {r.accuracy_std:.1%} ({len(r.fold_accuracies)}-fold cross-validation)",
            f"<b>balanced accuracy</b> {r.balanced_accuracy:.1%}",
            f"chance (majority class) {r.chance:.1%} · {len(self.classes)} classes",
            "per fold: " + ", ".join(f"{a:.0%}" for a in r.fold_accuracies),
        ]
        parts += [f'<span style="color:#a66">{html.escape(str(n))}</span>' for n in r.notes]
        table = report_table_html(r.report) if isinstance(r.report, pd.DataFrame) else ""
        return ('<div style="padding-left:16px;min-width:300px;line-height:1.5">' + "<br>".join(parts)
                + table + "</div>")


#: cell padding of the per-class report: room between the columns, rows a finger apart
CELL = "padding:3px 10px;white-space:nowrap"


def report_table_html(report: pd.DataFrame) -> str:
    """The per-class report (precision, recall, f1, support per row) as a readable HTML table.

    pandas' ``to_html`` packs the cells edge to edge with a border on each; here the class names are
    left-aligned, the numbers right-aligned in tabular figures with padding between the columns, a
    rule under the header and above the averages, support as whole numbers, escaped throughout.
    scikit-learn's "accuracy" row repeats the accuracy in every column: it is shown as its text
    report shows it, under f1-score, with the number of images as support.
    """
    columns = [str(c) for c in report.columns]
    total = int(round(report["support"].max())) if "support" in columns else None
    head = "".join(f'<th style="{CELL};text-align:right">{html.escape(c)}</th>' for c in columns)
    rows, ruled = [], False
    for name, values in report.iterrows():
        name = str(name)
        summary = name in ("accuracy", "macro avg", "weighted avg", "micro avg")
        texts = []
        for col, v in zip(columns, values.tolist()):
            if name == "accuracy" and col != "f1-score":
                texts.append(str(total) if col == "support" and total is not None else "")
            elif col == "support":
                texts.append(str(int(round(float(v)))))
            else:
                texts.append(f"{v:.2f}" if isinstance(v, float) else html.escape(str(v)))
        cells = "".join(f'<td style="{CELL};text-align:right">{t}</td>' for t in texts)
        style = ""
        if summary:
            style = f' style="{"" if ruled else "border-top:1px solid #ccc;"}color:{MUTED}"'
            ruled = True
        rows.append(f'<tr{style}><th style="{CELL};text-align:left;font-weight:normal">{html.escape(name)}</th>'
                    f"{cells}</tr>")
    return ('<div style="font-size:12px;max-height:360px;overflow:auto;margin-top:8px">'
            '<table style="border-collapse:collapse;font-variant-numeric:tabular-nums">'
            f'<thead><tr style="border-bottom:1px solid #999"><th style="{CELL}"></th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')
