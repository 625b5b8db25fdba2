"""EmbeddingMap: a whole collection on one map, one point per image.

A plotly WebGL scatter of the embeddings' 2-D (or 3-D) map (UMAP, PCA or t-SNE), coloured by
any metadata column. Hovering a point shows its thumbnail, a box or lasso selection fills a
thumbnail grid and a table (exportable to CSV), the search box selects the points whose path or
metadata contain a text, and clicking a point shows the images the network finds most alike
(:func:`artlab.embed.nearest`: centred cosine, shown as "closer than 97% of the others").
The widget reads its controls, asks the core (:class:`artlab.embed.browse.MapTable`,
:class:`artlab.embed.maps.Layouts`) and changes its figure in place (:mod:`~artlab.widgets.map_figure`;
built for 20,000 points). Thumbnails are made in a background thread (:class:`ThumbnailStore`).

UMAP's first fit in a kernel spends ~17 s compiling (numba). With ``method="umap"`` and no
``coords`` the map opens on a layout cached by an earlier run (``layout_cache``), or else shows
PCA while UMAP is compiled and fitted in a background thread, and moves the points when ready.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as W
import numpy as np
import pandas as pd

from artlab.embed import maps
from artlab.embed.browse import MAX_COLOURS, ExportPathError, MapTable

from .kit import BackgroundRun, error_html, guarded, model_badge
from .map_figure import (METHOD_TITLES, NEIGHBOURS_HINT, PREVIEW_PLACEHOLDER, colour_options, colour_points,
                         highlight, hover_caption, map_figure, map_title, method_options, move_points,
                         neighbour_grid_html, place_overlays)
from .selection_panel import SelectionPanel
from .thumbnails import ThumbnailStore, short_name, short_names, thumbnail_bytes, thumbnail_grid_html

__all__ = ["MAX_COLOURS", "EmbeddingMap", "ExportPathError", "ThumbnailStore", "short_name", "thumbnail_bytes",
           "thumbnail_grid_html"]

METHODS = maps.METHODS
UMAP_COMPILE_NOTE = "preparing the similarity map (UMAP; the first in this session compiles for ~17 s)"
_GREY = '<i style="color:#777">{}</i>'


class EmbeddingMap(W.VBox):
    """Browse ``embeddings`` (of ``collection``) as a map, one point per image.

    ``coords``: an (N, dims) array to show as given (no projection is computed);
    otherwise ``method`` ("umap", "pca" or "tsne", see :func:`artlab.embed.map_points`)
    maps the vectors to ``dims`` (2 or 3) dimensions with ``seed``. ``color_by``: a
    metadata column. ``k``: neighbours shown for a clicked point. ``thumbnails``:
    precomputed previews, one per embedded image (bytes or data URLs), else they are
    made in a background thread (``thumb_side`` px). ``csv_path``: the export file.
    ``csv_dir``: when given, every export (the "CSV file" box is editable in the page)
    must be a ``.csv`` file inside that folder, relative paths being relative to it;
    others are refused with a message next to the button. ``layout_cache``: a folder (or a
    :class:`~artlab.embed.maps.LayoutCache`) keeping UMAP/t-SNE layouts for the next time (None: none).

    Controls (set them from code as a user does): ``method``, ``color``, ``search``,
    ``k_slider``, ``csv_file``, ``export_button``, ``clear_button``. Actions the plot
    triggers are methods too: :meth:`hover`, :meth:`select`, :meth:`show_neighbours`.
    State: ``selection`` (indices), ``query``, ``neighbours`` (DataFrame),
    ``shown_method``, ``coords``.
    """

    def __init__(self, collection, embeddings, *, coords: np.ndarray | None = None, method: str = "umap",
                 dims: int = 2, color_by: str = "label", seed: int = 0, k: int = 8,
                 thumbnails: Sequence[bytes | str | None] | ThumbnailStore | None = None, thumb_side: int = 96,
                 grid_max: int = 60, table_max: int = 200, csv_path: str | os.PathLike = "embedding_selection.csv",
                 csv_dir: str | os.PathLike | None = None, height: int = 600, point_size: float | None = None,
                 projection_kwargs: dict | None = None, layout_cache: str | os.PathLike | None = None) -> None:
        self.map_table = MapTable(embeddings, collection)
        if method not in METHODS:
            raise ValueError(f"method={method!r}; use one of {', '.join(METHODS)}")
        self.embeddings, self.collection = embeddings, collection
        self.meta, self.columns, self.n = self.map_table.meta, self.map_table.columns, self.map_table.n
        self.dims, self.seed, self.grid_max, self.table_max = dims, int(seed), int(grid_max), int(table_max)
        if color_by not in self.columns:
            raise ValueError(f"color_by={color_by!r} is not a metadata column; choose one of {', '.join(self.columns)}")
        if isinstance(thumbnails, ThumbnailStore) and len(thumbnails) != self.n:
            raise ValueError(f"the ThumbnailStore has {len(thumbnails)} images, the embeddings {self.n}")
        self.thumbs = thumbnails if isinstance(thumbnails, ThumbnailStore) else ThumbnailStore(
            self.meta["path"], side=thumb_side, thumbnails=thumbnails)
        self.layouts = maps.Layouts(embeddings, dims, seed, given=coords, cache=layout_cache,
                                    **(projection_kwargs or {}))
        self._runs, self._pending = {}, set()  # one BackgroundRun per projection method; methods being computed
        self._lock, self._status = threading.RLock(), {}
        self.selection, self.query, self.neighbours = np.zeros(0, dtype=int), None, pd.DataFrame()
        self.saved: Path | None = None  # _outline: a box/lasso drawn in the plot
        self.shown_method, self._hovered, self._outline = "", None, False

        first = "given" if coords is not None else method
        self.method = W.Dropdown(options=method_options((["given"] if coords is not None else []) + list(METHODS)),
                                 value=first, description="layout")
        self.color = W.Dropdown(options=colour_options(self.columns), value=color_by, description="colour by")
        self.search = W.Text(value="", placeholder="text in path or metadata, Enter", description="search",
                             continuous_update=False)
        self.k_slider = W.IntSlider(value=k, min=1, max=max(1, min(32, self.n - 1)), description="neighbours")
        self.csv_dir = Path(csv_dir).expanduser().resolve() if csv_dir is not None else None
        self.panel = SelectionPanel(self.thumbs, csv_path=csv_path, grid_max=grid_max, table_max=table_max)
        p = self.panel  # its controls, as the map's (what a user sets, what tests read)
        self.csv_file, self.export_button, self.clear_button = p.csv_file, p.export_button, p.clear_button
        self.grid, self.table, self.selection_title, self.export_status = p.grid, p.table, p.title, p.export_status
        self.status, self.error = W.HTML(""), W.HTML("")
        side = f"{max(thumb_side, 128)}px"
        # hidden until there is a picture (an empty image is a broken-image icon): a neutral box meanwhile
        self.preview = W.Image(format="jpeg", layout=W.Layout(width=side, height=side, object_fit="contain",
                                                               display="none"))
        self.preview_placeholder = W.HTML(PREVIEW_PLACEHOLDER.format(side=side))
        self.preview_caption = W.HTML(_GREY.format("hover a point"), layout=W.Layout(width="220px"))
        self.neighbour_grid = W.HTML(_GREY.format("click a point to see the images most like it"))

        self._point_size = point_size or (8 if self.n <= 2000 else 5 if self.n <= 10000 else 3)
        hover = short_names(self.meta["path"]) + "<br>" + self.meta["label"].fillna("").astype(str)
        self.figure = map_figure(hover.tolist(), dims, height, self._point_size)
        colour_points(self.figure, self.map_table.colouring(color_by))
        shown = first  # given coordinates, or a layout cached by an earlier run: shown at once
        if first != "given" and not self.layouts.from_cache(first):
            shown = "pca"  # PCA at once; a slower method in the background, the points move when it is ready
            self.layouts.compute("pca")
            if first != "pca":
                self._compute_async(first)
        self._show_coords(shown)

        self.method.observe(lambda c: self._guard(lambda: self._on_method(c["new"])), names="value")
        self.color.observe(lambda _c: self._guard(self._apply_colour), names="value")
        self.search.observe(lambda _c: self._guard(self._apply_search), names="value")
        self.k_slider.observe(lambda _c: self.query is not None and self.show_neighbours(self.query), names="value")
        self.export_button.on_click(lambda _b: self._export_clicked())
        self.clear_button.on_click(lambda _b: self.clear_selection())
        points = self.figure.data[0]
        points.on_hover(self._point_handler(self.hover))  # plotly calls every trace's handler; this one is ours
        points.on_click(self._point_handler(self.show_neighbours))
        if dims == 2:
            points.on_selection(lambda _t, pts, selector: self._guard(lambda: self._on_selection(pts, selector)))
            points.on_deselect(lambda _t, _p: self.clear_selection())

        badge = model_badge(SimpleNamespace(label=embeddings.model_label, pretrained=bool(embeddings.pretrained)))
        side_panel = W.VBox([W.HTML("<b>Hovered</b>"), self.preview_placeholder, self.preview, self.preview_caption],
                            layout=W.Layout(width="240px", min_width="240px"))
        super().__init__([
            badge, W.HBox([self.method, self.color, self.search]), self.status, self.error,
            W.HBox([W.Box([self.figure], layout=W.Layout(flex="1 1 auto", min_width="0")), side_panel]),
            W.HTML(NEIGHBOURS_HINT), W.HBox([self.k_slider]), self.neighbour_grid, self.panel,
        ], layout=W.Layout(width="100%"))
        self.thumbs.start(on_progress=lambda _stage, done, total: done < total and self._set_status(
            "thumbs", f"making thumbnails: {done:,}/{total:,}"), on_done=self._on_thumbs_done)
        if not self.thumbs.done.is_set():
            self._set_status("thumbs", f"making thumbnails: 0/{self.n:,}")

    # ------------------------------------------------------------------ callbacks
    def _guard(self, action: Callable[[], object]) -> None:
        """Run a plot or control callback (nobody would see its traceback): a failure is shown under the status."""
        if guarded(action, self.error):
            self.error.value = ""

    def _point_handler(self, action: Callable[[int], object]) -> Callable:
        """A plotly point-event handler: ``action(index)`` of the first point, when the event has points."""
        return lambda _trace, points, _state: points.point_inds and self._guard(lambda: action(points.point_inds[0]))

    def _set_status(self, part: str, text: str) -> None:
        self._status[part] = text
        self.status.value = " · ".join(v for v in self._status.values() if v)

    # ------------------------------------------------------------------ layouts
    def _title(self) -> str:
        waiting = self.method.value if self.method.value in self._pending - {self.shown_method} else None
        return map_title(getattr(self.collection, "name", "") or "images", self.n, self.shown_method, waiting,
                         self.embeddings)

    def _retitle(self) -> None:
        with self.figure.batch_update():
            self.figure.layout.title.text = self._title()

    def _apply_colour(self) -> None:
        colour_points(self.figure, self.map_table.colouring(self.color.value))

    def _compute_async(self, method: str) -> None:
        """Fit ``method`` in a daemon thread (compiling UMAP's numba code first), then move the points."""
        if method in self._pending:
            return
        self._pending.add(method)
        compiling = method == "umap" and not maps.umap_ready()
        note = UMAP_COMPILE_NOTE if compiling else f"laying out {self.n:,} pictures ({METHOD_TITLES[method]})"
        self._set_status("projection", f"{note} — a quick layout (PCA) is shown until it is ready")
        self._runs.setdefault(method, BackgroundRun(f"artlab-{method}")).start(lambda: self._compute(method))

    def _compute(self, method: str) -> None:
        started, title = time.perf_counter(), METHOD_TITLES[method]
        compiled = f"UMAP prepared; laying out {self.n:,} pictures — a quick layout (PCA) is shown until then"
        try:
            self.layouts.compute(method, on_compiled=lambda: self._set_status("projection", compiled))
        except Exception as exc:  # noqa: BLE001 - say it in the widget; the PCA view stays usable
            self._set_status("projection", error_html(f"{title} failed: {exc}"))
        else:
            self._set_status("projection", f"{title} ready ({time.perf_counter() - started:.1f} s)")
        self._pending.discard(method)
        if self.method.value == method and method in self.layouts:
            self._show_coords(method)
        else:
            self._retitle()

    def _on_method(self, method: str) -> None:
        if method in self.layouts:
            self._show_coords(method)
        else:
            self._compute_async(method)
            self._retitle()

    def _show_coords(self, method: str) -> None:
        """Move every point (and the overlays) to ``method``'s coordinates, in place."""
        with self._lock:
            self.shown_method = method
            with self.figure.batch_update():
                move_points(self.figure, self.layouts[method], self._neighbour_rows(), self.query)
                self.figure.layout.uirevision = method  # a new layout resets the zoom; a recolour does not
                self.figure.layout.title.text = self._title()

    @property
    def coords(self) -> np.ndarray:
        """The coordinates drawn now, (N, dims)."""
        return self.layouts[self.shown_method]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until background projections and thumbnails are done (scripts, tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        left = lambda: None if deadline is None else max(0.0, deadline - time.monotonic())  # noqa: E731
        return all(run.join(left()) for run in list(self._runs.values())) and self.thumbs.wait(left())

    # ------------------------------------------------------------------ thumbnails, hover, neighbours
    def _on_thumbs_done(self) -> None:
        failed = len(self.thumbs.failed)
        self._set_status("thumbs", error_html(f"{failed:,} image(s) could not be previewed") if failed else "")
        if len(self.selection):  # grids drawn while previews were missing: redraw them with the pictures
            self.panel.show(self.selection_frame())
        if self.query is not None and len(self.neighbours):
            self._draw_neighbours()
        if self._hovered is not None:
            self.hover(self._hovered)

    def hover(self, index: int) -> None:
        """Show point ``index``'s preview and metadata: a list lookup, whatever the number of points."""
        self._hovered = index = int(index)
        data = self.thumbs.get(index)
        if data is not None:
            self.preview.format, self.preview.value = ("png" if data[:4] == b"\x89PNG" else "jpeg"), data
        # an empty image would be a broken-image icon: the neutral box instead
        self.preview.layout.display, self.preview_placeholder.layout.display = ("none", None) if data is None \
            else (None, "none")
        missing = None if data is not None else (
            "preview unavailable" if index in self.thumbs.failed else "thumbnail still being made")
        self.preview_caption.value = hover_caption(self.meta.iloc[index], missing)

    def show_neighbours(self, index: int) -> pd.DataFrame:
        """Mark point ``index`` and show its ``k`` nearest neighbours (what clicking a point does)."""
        self.query, self.neighbours = int(index), self.map_table.neighbours(int(index), self.k_slider.value)
        self._draw_neighbours()
        with self.figure.batch_update():
            place_overlays(self.figure, self.coords, self._neighbour_rows(), self.query)
        return self.neighbours

    def _neighbour_rows(self) -> list[int]:
        return self.neighbours["index"].astype(int).tolist() if len(self.neighbours) else []

    def _draw_neighbours(self) -> None:
        self.neighbour_grid.value = neighbour_grid_html(self.thumbs, self.query, self.neighbours)

    # ------------------------------------------------------------------ selection, search, export
    def _on_selection(self, points, selector) -> None:
        if selector is None and not points.point_inds:
            # Not the user's: plotly.js answers the removal of an outline with an empty selection,
            # and plotly.py has just set every trace's selectedpoints to []. Restore ours.
            self.figure.data[0].selectedpoints = self.selection if len(self.selection) else None
            return
        self._outline = selector is not None
        self.select(points.point_inds, _from_plot=True)  # the plot shows it already: not sent back

    def select(self, indices: Sequence[int], *, _from_plot: bool = False, _matching: str = "") -> np.ndarray:
        """Select points ``indices`` (what a box/lasso selection does): fill the grid and the table."""
        self.selection = chosen = self.map_table.check_indices(indices)
        if not _from_plot:
            highlight(self.figure, chosen, self._point_size)
            if self._outline and self.dims == 2:
                # the box/lasso outline of the user's last selection no longer matches, and it would
                # catch the mouse (hover, click) over the points inside it: remove it
                self._outline = False
                self.figure.plotly_relayout({"selections": []})
        self.panel.show(self.selection_frame(), _matching)
        return chosen

    def clear_selection(self) -> None:
        """Forget the selection (and the search text)."""
        self.select([])
        if self.search.value:
            self.search.value = ""

    def selection_frame(self) -> pd.DataFrame:
        """The selected images: index, path, metadata and the map coordinates shown."""
        return self.map_table.selection_frame(self.selection, self.coords, self.shown_method)

    def _apply_search(self) -> None:
        self.select(self.map_table.search(self.search.value), _matching=self.search.value.strip())

    def export_csv(self, path: str | os.PathLike | None = None) -> Path:
        """Write the selection's table (every selected row) to ``path`` (default: the CSV file box);
        with ``csv_dir`` set, only to a .csv file inside it (else an :class:`ExportPathError`)."""
        value = path if path is not None else self.csv_file.value
        self.saved = self.map_table.export_csv(self.selection, value, coords=self.coords, method=self.shown_method,
                                               folder=self.csv_dir)
        self.panel.saved(self.saved, len(self.selection))
        return self.saved

    def _export_clicked(self) -> None:
        try:
            self.export_csv()
        except Exception as exc:  # noqa: BLE001 - a bad path is shown, not lost in the log
            self.panel.failed("export refused" if isinstance(exc, ExportPathError) else "export failed", exc)
