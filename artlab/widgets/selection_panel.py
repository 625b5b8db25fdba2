"""The selection panel of :class:`~artlab.widgets.EmbeddingMap`: the chosen images as a grid, a table and a CSV.

Only presentation: the map decides what is selected (box, lasso or search) and writes
the CSV (:meth:`artlab.embed.browse.MapTable.export_csv`); the panel shows the result.
"""

from __future__ import annotations

import html
import os

import ipywidgets as W
import pandas as pd

from .kit import error_html
from .map_figure import table_html
from .thumbnails import ThumbnailStore, thumbnail_grid_html

__all__ = ["SelectionPanel"]


class SelectionPanel(W.VBox):
    """"Selection: n image(s)" with a Clear button, a thumbnail grid (at most ``grid_max``), the CSV
    file box with Export, and the table (first ``table_max`` rows)."""

    def __init__(self, thumbs: ThumbnailStore, *, csv_path: str | os.PathLike, grid_max: int = 60,
                 table_max: int = 200) -> None:
        self.thumbs, self.grid_max, self.table_max = thumbs, int(grid_max), int(table_max)
        self.title = W.HTML("<b>Selection</b>")
        self.clear_button = W.Button(description="Clear selection", icon="times", disabled=True)
        self.grid = W.HTML('<i style="color:#777">box or lasso select points (or search) to list them here</i>')
        self.csv_file = W.Text(value=str(csv_path), description="CSV file")
        self.export_button = W.Button(description="Export CSV", icon="download", disabled=True)
        self.export_status = W.HTML("")
        self.table = W.HTML("")
        super().__init__([W.HBox([self.title, self.clear_button]), self.grid,
                          W.HBox([self.csv_file, self.export_button, self.export_status]), self.table])

    def show(self, frame: pd.DataFrame, matching: str = "") -> None:
        """Show the selected rows ``frame`` (its ``index`` column: rows of the map); ``matching``: the search text."""
        n = len(frame)
        self.export_button.disabled = self.clear_button.disabled = n == 0
        self.title.value = f"<b>Selection</b>: {n:,} image(s)" + (
            f" matching “{html.escape(matching)}”" if matching else "")
        if not n:
            self.grid.value, self.table.value = '<i style="color:#777">nothing selected</i>', ""
            return
        self.grid.value = thumbnail_grid_html(self.thumbs, frame["index"].tolist(), side=self.thumbs.side,
                                              limit=self.grid_max)
        self.table.value = table_html(frame, n, self.table_max)

    def saved(self, path: os.PathLike, rows: int) -> None:
        self.export_status.value = f"saved {rows:,} rows to <code>{html.escape(str(path))}</code>"

    def failed(self, what: str, exc: BaseException) -> None:
        self.export_status.value = error_html(f"{what}: {exc}")
