"""EmbeddingMap: a whole collection on one map, one point per image.

A plotly WebGL scatter of the embeddings' 2-D (or 3-D) map (UMAP, PCA or t-SNE),
coloured by any metadata column. Hovering a point shows its thumbnail, a box or
lasso selection fills a thumbnail grid and a table (exportable to CSV), the search
box selects the points whose path or metadata contain a text, and clicking a point
shows its nearest neighbours in embedding space (:func:`artlab.embed.nearest`).

Built for 20,000 points: the figure is built once and later changes touch only
trace properties in place (marker colour, ``selectedpoints``, x/y on a projection
switch). Thumbnails are small JPEGs made once per image in a background thread, so
a hover is one list lookup plus sending ~3 KB (see :class:`ThumbnailStore` for why
the hover preview is served from Python rather than by a script in the browser).

UMAP's first fit in a kernel spends ~17 s compiling (numba). When the map opens
with ``method="umap"`` and no ``coords``, it shows PCA at once, compiles and fits
UMAP in a background thread, and moves the points to the UMAP layout when ready.
"""

from __future__ import annotations

import atexit
import base64
import functools
import html
import io
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as W
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageOps

from artlab import embed as _embed
from artlab.images import load_image, to_pil

from ._common import figure_widget, model_badge

__all__ = ["EmbeddingMap", "ExportPathError", "ThumbnailStore", "short_name", "thumbnail_bytes",
           "thumbnail_grid_html"]

METHODS = ("umap", "pca", "tsne")
METHOD_TITLES = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE", "given": "given coordinates"}
#: distinct colours before the rarest categories are lumped together as "other"
MAX_COLOURS = 24
PALETTE = (  # plotly's Dark24, then Light24's first entries: distinguishable on white
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B",
    "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
    "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)
OTHER_COLOUR = "#b0b0b0"
UMAP_COMPILE_NOTE = "first UMAP in this kernel: compiling, ~17 s"
_RED = "#c0392b"

#: larger images take the careful path (load_image's decompression-bomb guard)
_FAST_MAX_PIXELS = 50_000_000
# Stores with a running thread: stopped at interpreter exit, so no thread dies inside a C library call.
_running_stores: weakref.WeakSet = weakref.WeakSet()

# True once a UMAP has been fitted in this kernel (numba's compiled code is then cached in memory).
_umap_warm = False
_umap_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------- thumbnails
def thumbnail_bytes(path: str | os.PathLike, side: int = 96, quality: int = 80) -> bytes:
    """A small JPEG preview of the image file ``path`` (longer side ``side`` px), as bytes.

    Plain 8-bit RGB/grey files are shrunk by PIL directly, JPEGs decoded at reduced
    scale (PIL's ``draft``): several times cheaper than a full decode for large photos.
    Everything else (alpha, 16-bit, palette, huge files…) goes through
    :func:`artlab.images.load_image`, which handles every mode and refuses bad files.
    Raises :class:`artlab.images.ImageLoadError` (or ``OSError``) when the file cannot be used.
    """
    picture = None
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "L") and im.width * im.height <= _FAST_MAX_PIXELS:
                if im.format == "JPEG":
                    im.draft("RGB", (side, side))
                picture = ImageOps.exif_transpose(im).convert("RGB")
                picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    except Exception:  # noqa: BLE001 - anything odd: the careful loader below says what is wrong
        picture = None
    if picture is None:
        picture = to_pil(load_image(path, size=side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """Accept raw image bytes or a ``data:image/...;base64,`` URL (what people cache)."""
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        return None if value is None else bytes(value)
    if isinstance(value, str) and value.startswith("data:image/") and ";base64," in value:
        return base64.b64decode(value.split(",", 1)[1])
    raise TypeError(f"thumbnails must be image bytes or 'data:image/...;base64,...' URLs, got {type(value).__name__}")


def _mime(data: bytes) -> str:
    return "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"


class ThumbnailStore:
    """One small preview per image, made once, looked up in O(1).

    Why Python and not a script in the browser: a browser-side hover would need every
    thumbnail in the page before the first hover (20,000 × ~3 KB ≈ 60 MB through the
    widget channel, delaying the first render), and a second widget reaching into
    plotly's figure view. Here the figure carries only coordinates and short hover
    texts; a hover asks the kernel for one point's bytes, a list index — the same cost
    for 20 or 20,000 points — and the preview reaches the page as an ipywidgets Image
    (the same in JupyterLab and Voilà).

    ``thumbnails``: precomputed previews (bytes or data URLs, ``None`` for missing),
    one per path; otherwise :meth:`start` makes them in a background thread.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        side: int = 96,
        thumbnails: Sequence[bytes | str | None] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.side = int(side)
        self._bytes: list[bytes | None] = [None] * len(self.paths)
        self.failed: dict[int, str] = {}  #: index -> why no preview could be made
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.made = 0  #: previews made so far by :meth:`start` / :meth:`fill`
        if thumbnails is not None:
            if len(thumbnails) != len(self.paths):
                raise ValueError(f"thumbnails has {len(thumbnails)} entries for {len(self.paths)} images; "
                                 "pass one (or None) per embedded image, in the embeddings' order")
            self._bytes = [_as_bytes(t) for t in thumbnails]
        if all(b is not None for b in self._bytes):
            self.done.set()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> bytes | None:
        """The preview of image ``index`` (None while not made yet, or if the file failed)."""
        return self._bytes[index]

    def data_url(self, index: int) -> str | None:
        data = self._bytes[index]
        if data is None:
            return None
        return f"data:{_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"

    @property
    def ready(self) -> int:
        """How many previews exist."""
        return sum(b is not None for b in self._bytes)

    def fill(self, indices: Sequence[int] | None = None) -> None:
        """Make the missing previews of ``indices`` (all by default) here, now."""
        for i in range(len(self.paths)) if indices is None else indices:
            if self._stop.is_set():
                return
            if self._bytes[i] is None and i not in self.failed:
                try:
                    # looked up at call time, so a test can count calls by patching the module function
                    self._bytes[i] = thumbnail_bytes(self.paths[i], self.side)
                    self.made += 1
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                    self.failed[i] = str(exc)

    def start(self, on_progress: Callable[[int, int], None] | None = None,
              on_done: Callable[[], None] | None = None, every: int = 250) -> None:
        """Make every missing preview in a daemon thread; ``on_progress(done, total)`` every ``every``."""
        if self.done.is_set() or (self._thread is not None and self._thread.is_alive()):
            if self.done.is_set() and on_done is not None:
                on_done()
            return

        def work() -> None:
            total = len(self.paths)
            try:
                for start in range(0, total, every):
                    self.fill(range(start, min(start + every, total)))
                    if self._stop.is_set():
                        return
                    if on_progress is not None:
                        on_progress(min(start + every, total), total)
            finally:
                if not self._stop.is_set():
                    self.done.set()
                    if on_done is not None:
                        on_done()

        self._thread = threading.Thread(target=work, name="artlab-thumbnails", daemon=True)
        _running_stores.add(self)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread after its current image (previews made so far are kept)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every preview is made (or failed); False on timeout."""
        return self.done.wait(timeout)


def thumbnail_grid_html(store: ThumbnailStore, indices: Sequence[int], captions: Sequence[str] | None = None,
                        *, side: int = 96, limit: int | None = None, empty: str = "") -> str:
    """An HTML grid of the previews of ``indices`` with a caption under each (paths as tooltips)."""
    indices = [int(i) for i in indices]
    if not indices:
        return f'<i style="color:#777">{html.escape(empty)}</i>' if empty else ""
    shown = indices if limit is None else indices[:limit]
    captions = list(captions) if captions is not None else [html.escape(short_name(store.paths[i])) for i in indices]
    cells = []
    for i, caption in zip(shown, captions):
        url = store.data_url(i)
        if url is not None:
            picture = f'<img src="{url}" style="max-width:{side}px;max-height:{side}px;display:block;margin:auto">'
        else:
            why = "unreadable" if i in store.failed else "…"
            picture = (f'<div style="width:{side}px;height:{side}px;background:#eee;color:#888;display:flex;'
                       f'align-items:center;justify-content:center;font-size:11px">{why}</div>')
        cells.append(
            f'<div class="artlab-thumb" data-index="{i}" title="{html.escape(store.paths[i])}" '
            f'style="width:{side + 8}px;font-size:10px;line-height:1.2;text-align:center">{picture}'
            f'<div style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">{caption}</div></div>'
        )
    more = (f'<div style="color:#777;font-size:11px">showing {len(shown):,} of {len(indices):,}</div>'
            if len(shown) < len(indices) else "")
    return f'<div style="display:flex;flex-wrap:wrap;gap:4px">{"".join(cells)}</div>{more}'


@atexit.register
def _stop_thumbnail_threads() -> None:
    for store in list(_running_stores):
        store.stop()
    for store in list(_running_stores):
        if store._thread is not None:
            store._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------- helpers
def _check_embeddings(embeddings) -> None:
    missing = [a for a in ("vectors", "paths", "meta", "model_label") if not hasattr(embeddings, a)]
    if missing:
        raise TypeError(f"embeddings must be an artlab.embed.Embeddings (from artlab.embed.embed(...)); "
                        f"{type(embeddings).__name__} has no {', '.join(missing)}")
    if len(embeddings.paths) != len(embeddings.vectors) or len(embeddings.meta) != len(embeddings.vectors):
        raise ValueError(f"embeddings are inconsistent: {len(embeddings.vectors)} vectors, "
                         f"{len(embeddings.paths)} paths, {len(embeddings.meta)} metadata rows")
    if len(embeddings.vectors) < 2:
        raise ValueError(f"a map needs at least 2 embedded images, got {len(embeddings.vectors)}")


def _meta_frame(embeddings, collection) -> pd.DataFrame:
    """One row per embedded image: path, label and metadata (from the embeddings, else the collection)."""
    meta = embeddings.meta.reset_index(drop=True).copy()
    paths = [str(p) for p in embeddings.paths]
    if collection is not None:
        known = {str(p) for p in collection.paths}
        foreign = [p for p in paths if p not in known]
        if foreign:
            raise ValueError(f"{len(foreign)} of the {len(paths)} embedded images are not in the collection "
                             f"(e.g. {foreign[0]}); pass the collection the embeddings were computed from")
        if len(meta.columns) <= 1:  # embeddings without metadata: take the collection's rows
            frame = collection.to_frame().drop_duplicates("path").set_index("path")
            meta = frame.reindex(paths).reset_index()
    meta["path"] = paths
    if "label" not in meta.columns:
        meta.insert(1, "label", None)
    return meta


def _colour_columns(meta: pd.DataFrame) -> list[str]:
    """Columns offered for colouring: label first, then the other metadata (never the path)."""
    rest = [c for c in meta.columns if c not in ("path", "label") and not str(c).startswith("_")]
    return ["label", *rest]


def _numeric(values: pd.Series) -> pd.Series | None:
    """The column as floats when it is numeric with many distinct values (e.g. year), else None."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() < 0.9 * values.notna().sum() or numbers.nunique() <= MAX_COLOURS:
        return None
    return numbers


def _discrete_scale(colours: Sequence[str]) -> list[list]:
    """A step colorscale: integer code k (of len(colours)) maps exactly to colours[k]."""
    n = len(colours)
    scale = []
    for k, colour in enumerate(colours):
        scale += [[k / n, colour], [(k + 1) / n, colour]]
    return scale


def short_name(path: str | os.PathLike) -> str:
    """``folder/file`` — the file name alone is ambiguous in class-folder layouts (every style has coffee.png)."""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _short_names(paths: pd.Series) -> pd.Series:
    """:func:`short_name` of every path, column-wise (no Python loop over 20,000 rows)."""
    split = paths.astype(str).str.replace("\\", "/", regex=False).str.rsplit("/", n=2)
    folder = split.str[-2].where(split.str.len() >= 2, "")
    return (folder + "/").where(folder != "", "") + split.str[-1]


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write atomically (temp file + rename): an interrupted export never leaves half a file."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            # names with undecodable bytes (surrogate escapes) written as \xNN, like Embeddings.save_csv
            _embed.escape_undecodable(frame).to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ExportPathError(ValueError):
    """An export path outside the folder exports are confined to (see ``EmbeddingMap(csv_dir=...)``)."""


def _confined_csv_path(value: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Where an export typed as ``value`` goes when exports must stay in ``folder``.

    A relative path is taken relative to ``folder`` (not the kernel's working directory);
    the result, symlinks resolved, must be inside ``folder`` and end in ``.csv``, else an
    :class:`ExportPathError` says why (``../x.csv``, ``/etc/x.csv`` and a symlink leading
    out are all refused).
    """
    folder = Path(folder).expanduser().resolve()
    text = str(value).strip()
    if not text:
        raise ExportPathError(f"no file name: type one ending in .csv (it is written to {folder})")
    path = Path(text).expanduser()
    target = (path if path.is_absolute() else folder / path).resolve()
    if not target.is_relative_to(folder):
        raise ExportPathError(f"{text} is outside {folder}, the folder exports go to: "
                              "type a file name there, e.g. selection.csv")
    if target.suffix.lower() != ".csv" or target == folder:
        raise ExportPathError(f"{text}: the export file's name must end in .csv")
    return target


def _errors_in_status(handler: Callable) -> Callable:
    """Plot and control callbacks run where nobody sees a traceback: show a failure in the status line."""

    @functools.wraps(handler)
    def wrapper(self, *args, **kwargs):
        try:
            result = handler(self, *args, **kwargs)
            if self._status.get("error"):
                self._set_status("error", "")
            return result
        except Exception as exc:  # noqa: BLE001 - reported in the widget, the map stays usable
            self._set_status("error", f'<span style="color:{_RED}">{handler.__name__.strip("_").replace("_", " ")} '
                                      f"failed: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>")
            return None

    return wrapper


# ---------------------------------------------------------------------------------------------- the widget
class EmbeddingMap(W.VBox):
    """Browse ``embeddings`` (of ``collection``) as a map, one point per image.

    ``coords``: an (N, dims) array to show as given (no projection is computed);
    otherwise ``method`` ("umap", "pca" or "tsne", see :func:`artlab.embed.project`)
    maps the vectors to ``dims`` (2 or 3) dimensions with ``seed``. ``color_by``: a
    metadata column. ``k``: neighbours shown for a clicked point. ``thumbnails``:
    precomputed previews, one per embedded image (bytes or data URLs), else they are
    made in a background thread (``thumb_side`` px). ``csv_path``: the export file.
    ``csv_dir``: when given, every export (the "CSV file" box is editable in the page)
    must be a ``.csv`` file inside that folder, relative paths being relative to it;
    others are refused with a message next to the button.

    Controls (set them from code as a user does): ``method``, ``color``, ``search``,
    ``k_slider``, ``csv_file``, ``export_button``, ``clear_button``. Actions the plot
    triggers are methods too: :meth:`hover`, :meth:`select`, :meth:`show_neighbours`.
    State: ``selection`` (indices), ``query``, ``neighbours`` (DataFrame),
    ``shown_method``, ``coords``.
    """

    def __init__(
        self,
        collection,
        embeddings,
        *,
        coords: np.ndarray | None = None,
        method: str = "umap",
        dims: int = 2,
        color_by: str = "label",
        seed: int = 0,
        k: int = 8,
        thumbnails: Sequence[bytes | str | None] | ThumbnailStore | None = None,
        thumb_side: int = 96,
        grid_max: int = 60,
        table_max: int = 200,
        csv_path: str | os.PathLike = "embedding_selection.csv",
        csv_dir: str | os.PathLike | None = None,
        height: int = 600,
        point_size: float | None = None,
        projection_kwargs: dict | None = None,
    ) -> None:
        _check_embeddings(embeddings)
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        if method not in METHODS:
            raise ValueError(f"method={method!r}; use one of {', '.join(METHODS)}")
        self.embeddings = embeddings
        self.collection = collection
        self.meta = _meta_frame(embeddings, collection)
        self.n = n = len(self.meta)
        self.dims, self.seed = dims, int(seed)
        self.projection_kwargs = dict(projection_kwargs or {})
        self.grid_max, self.table_max = int(grid_max), int(table_max)
        self.columns = _colour_columns(self.meta)
        if color_by not in self.columns:
            raise ValueError(f"color_by={color_by!r} is not a metadata column; choose one of {', '.join(self.columns)}")

        self._coords: dict[str, np.ndarray] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._pending: set[str] = set()  # methods being computed in the background
        self._lock = threading.RLock()
        self._status: dict[str, str] = {}
        self.selection = np.zeros(0, dtype=int)
        self.query: int | None = None
        self.neighbours = pd.DataFrame()
        self.saved: Path | None = None
        self.shown_method = ""
        self._hovered: int | None = None
        self._outline = False  # a box/lasso outline is drawn in the plot
        # Searched text per point: the path and every metadata value, lower-case (built once, column by column).
        hay = self.meta["path"].astype(str)
        for column in self.meta.columns.drop("path"):
            hay = hay + " | " + self.meta[column].fillna("").astype(str)
        self._haystack = hay.str.lower()

        if isinstance(thumbnails, ThumbnailStore):
            if len(thumbnails) != n:
                raise ValueError(f"the ThumbnailStore has {len(thumbnails)} images, the embeddings {n}")
            self.thumbs = thumbnails
        else:
            self.thumbs = ThumbnailStore(self.meta["path"], side=thumb_side, thumbnails=thumbnails)

        if coords is not None:
            coords = np.asarray(coords, dtype=float)
            if coords.shape != (n, dims):
                raise ValueError(f"coords has shape {coords.shape}; expected ({n}, {dims}): one row per embedded "
                                 "image, in the embeddings' order")
            self._coords["given"] = coords
        first = "given" if coords is not None else method

        # ------------------------------------------------------------ controls
        options = (["given"] if coords is not None else []) + list(METHODS)
        self.method = W.Dropdown(options=options, value=first, description="projection")
        self.color = W.Dropdown(options=self.columns, value=color_by, description="colour by")
        self.search = W.Text(value="", placeholder="text in path or metadata, Enter", description="search",
                             continuous_update=False)
        self.k_slider = W.IntSlider(value=k, min=1, max=max(1, min(32, n - 1)), description="neighbours")
        self.csv_dir = Path(csv_dir).expanduser().resolve() if csv_dir is not None else None
        self.csv_file = W.Text(value=str(csv_path), description="CSV file")
        self.export_button = W.Button(description="Export CSV", icon="download", disabled=True)
        self.clear_button = W.Button(description="Clear selection", icon="times", disabled=True)
        self.status = W.HTML("")
        self.export_status = W.HTML("")
        self.preview = W.Image(format="jpeg", layout=W.Layout(width=f"{max(thumb_side, 128)}px",
                                                              height=f"{max(thumb_side, 128)}px",
                                                              object_fit="contain"))
        self.preview_caption = W.HTML('<i style="color:#777">hover a point</i>',
                                      layout=W.Layout(width="220px"))
        self.neighbour_grid = W.HTML('<i style="color:#777">click a point to see its nearest neighbours</i>')
        self.grid = W.HTML('<i style="color:#777">box or lasso select points (or search) to list them here</i>')
        self.table = W.HTML("")
        self.selection_title = W.HTML("<b>Selection</b>")

        # ------------------------------------------------------------ figure
        self.figure = self._make_figure(height, point_size)
        self._apply_colour()
        initial = self._initial_coords(first)
        self._show_coords(initial)

        self.method.observe(self._on_method, names="value")
        self.color.observe(lambda _c: self._apply_colour(), names="value")
        self.search.observe(lambda _c: self._apply_search(), names="value")
        self.k_slider.observe(lambda _c: self.query is not None and self.show_neighbours(self.query), names="value")
        self.export_button.on_click(lambda _b: self._export_clicked())
        self.clear_button.on_click(lambda _b: self.clear_selection())
        points = self.figure.data[0]
        points.on_hover(self._on_hover)
        points.on_click(self._on_click)
        if dims == 2:
            points.on_selection(self._on_selection)
            points.on_deselect(lambda _t, _p: self.clear_selection())

        badge = model_badge(SimpleNamespace(label=embeddings.model_label,
                                            pretrained=bool(getattr(embeddings, "pretrained", False))))
        side_panel = W.VBox([W.HTML("<b>Hovered</b>"), self.preview, self.preview_caption],
                            layout=W.Layout(width="240px", min_width="240px"))
        super().__init__([
            badge,
            W.HBox([self.method, self.color, self.search]),
            self.status,
            W.HBox([W.Box([self.figure], layout=W.Layout(flex="1 1 auto", min_width="0")), side_panel]),
            W.HTML("<b>Nearest neighbours</b> (cosine similarity in embedding space)"),
            W.HBox([self.k_slider]),
            self.neighbour_grid,
            W.HBox([self.selection_title, self.clear_button]),
            self.grid,
            W.HBox([self.csv_file, self.export_button, self.export_status]),
            self.table,
        ], layout=W.Layout(width="100%"))
        self.thumbs.start(on_progress=self._on_thumb_progress, on_done=self._on_thumbs_done)
        if not self.thumbs.done.is_set():
            self._set_status("thumbs", f"making thumbnails: 0/{n:,}")

    # ------------------------------------------------------------------ figure
    def _make_figure(self, height: int, point_size: float | None) -> go.FigureWidget:
        n, three_d = self.n, self.dims == 3
        size = self._point_size = point_size or (8 if n <= 2000 else 5 if n <= 10000 else 3)
        names = _short_names(self.meta["path"])
        label = self.meta["label"].fillna("").astype(str)
        hover = (names + "<br>" + label).to_numpy(dtype=object)
        kind = go.Scatter3d if three_d else go.Scattergl
        empty = {"x": [], "y": [], **({"z": []} if three_d else {})}
        # plotly marks every trace's points unselected on a box selection: keep the overlays opaque
        opaque = {} if three_d else {"unselected": {"marker": {"opacity": 1}}}
        traces = [
            kind(**empty, mode="markers", name="images", showlegend=False, text=hover,
                 hovertemplate="%{text}<extra></extra>",
                 marker={"size": size, "opacity": 0.85, "line": {"width": 0}},
                 **({} if three_d else {"unselected": {"marker": {"opacity": 0.12}}})),
            # WebGL open symbols are stroked in the marker colour; 3-D has no open circles: a ring outline
            kind(**empty, mode="markers", name="neighbours", showlegend=False, hoverinfo="skip",
                 marker={"size": size + 8, "line": {"width": 2, "color": "black"},
                         **({"color": "rgba(0,0,0,0)"} if three_d else {"color": "black", "symbol": "circle-open"})},
                 **opaque),
            kind(**empty, mode="markers", name="query", showlegend=False, hoverinfo="skip",
                 marker={"size": size + 12, "color": "black",
                         "symbol": "diamond" if three_d else "star", "line": {"width": 1, "color": "white"}},
                 **opaque),
        ]
        # A fixed pool of legend-only traces: recolouring renames/recolours them in place.
        none = {"x": [None], "y": [None], **({"z": [None]} if three_d else {})}
        traces += [kind(**none, mode="markers", name=" ", visible=False, hoverinfo="skip",
                        marker={"size": 10, "color": OTHER_COLOUR}) for _ in range(MAX_COLOURS)]
        layout = {
            "height": height, "autosize": True, "dragmode": "orbit" if three_d else "select",
            "margin": {"t": 50, "b": 10, "l": 10, "r": 10}, "hovermode": "closest", "clickmode": "event",
            "legend": {"itemclick": False, "itemdoubleclick": False, "font": {"size": 11}},
            "title": {"font": {"size": 13}}, "plot_bgcolor": "white",
        }
        fig = figure_widget(go.Figure(data=traces, layout=layout))
        axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "title": ""}
        if three_d:
            fig.update_scenes(xaxis=axis, yaxis=axis, zaxis=axis)
        else:
            fig.update_xaxes(**axis)
            fig.update_yaxes(**axis)
        return fig

    def _title(self) -> str:
        emb = self.embeddings
        name = getattr(self.collection, "name", "") or "images"
        what = METHOD_TITLES.get(self.shown_method, self.shown_method)
        if self.method.value in self._pending and self.method.value != self.shown_method:
            what += f" (until {METHOD_TITLES[self.method.value]} is ready)"
        layer = " · ".join(str(x) for x in (getattr(emb, "layer", ""), getattr(emb, "pooling", "")) if x)
        label = html.escape(emb.model_label)
        if not getattr(emb, "pretrained", False):
            label = f'<span style="color:{_RED}">{label} — random weights</span>'
        return f"{html.escape(str(name))} · {self.n:,} images · {what} · {html.escape(layer)} · {label}"

    def _apply_colour(self) -> None:
        """Colour the points by the chosen column: one trace property, set in place."""
        column = self.color.value
        values = self.meta[column]
        numbers = _numeric(values)
        points = self.figure.data[0]
        with self.figure.batch_update():
            if numbers is not None:  # continuous: a colour bar
                points.marker.color = numbers.to_numpy(float)
                points.marker.colorscale = "Viridis"
                points.marker.cmin, points.marker.cmax = float(numbers.min()), float(numbers.max())
                points.marker.showscale = True
                points.marker.colorbar = {"title": {"text": column}, "thickness": 12}
                for trace in self.figure.data[3:]:
                    trace.visible = False
                self.figure.layout.showlegend = False
            else:
                text = values.fillna("(none)").astype(str)
                counts = text.value_counts()  # most frequent first: they get the distinct colours
                if len(counts) > MAX_COLOURS:
                    named = list(counts.index[: MAX_COLOURS - 1])
                    legend = named + [f"other ({len(counts) - len(named)} values)"]
                    sizes = [int(counts[c]) for c in named] + [int(counts.iloc[len(named):].sum())]
                    colours = list(PALETTE[: MAX_COLOURS - 1]) + [OTHER_COLOUR]
                else:
                    named = legend = list(counts.index)
                    sizes = [int(c) for c in counts]
                    colours = list(PALETTE[: len(named)])
                code_of = {c: k for k, c in enumerate(named)}
                codes = text.map(code_of).fillna(len(named)).to_numpy(int)  # unnamed -> "other"
                points.marker.color = codes
                points.marker.colorscale = _discrete_scale(colours)
                points.marker.cmin, points.marker.cmax = -0.5, len(colours) - 0.5
                points.marker.showscale = False
                for k, trace in enumerate(self.figure.data[3:]):
                    trace.visible = k < len(legend)
                    if k < len(legend):
                        trace.name = f"{legend[k]} ({sizes[k]:,})"
                        trace.marker.color = colours[k]
                self.figure.layout.showlegend = True
                self.figure.layout.legend.title = {"text": column}

    # ------------------------------------------------------------------ projections
    def _initial_coords(self, first: str) -> str:
        """What to draw now: given coords, or PCA at once while a slow method runs in the background."""
        if first == "given":
            return "given"
        if first == "pca":
            self._coords["pca"] = self._project("pca")
            return "pca"
        self._coords["pca"] = self._project("pca")
        self._compute_async(first)
        return "pca"

    def _project(self, method: str) -> np.ndarray:
        kwargs = dict(self.projection_kwargs) if method != "pca" else {}
        coords = np.asarray(_embed.project(method, self.embeddings, dims=self.dims, seed=self.seed, **kwargs),
                            dtype=float)
        if coords.shape != (self.n, self.dims):
            raise RuntimeError(f"artlab.embed.project({method!r}) returned shape {coords.shape}, "
                               f"expected ({self.n}, {self.dims})")
        return coords

    def _compute_async(self, method: str) -> None:
        """Fit ``method`` in a daemon thread (warming UMAP's numba code first), then move the points."""
        global _umap_warm
        if method in self._pending:
            return
        self._pending.add(method)
        compiling = method == "umap" and not _umap_warm
        note = UMAP_COMPILE_NOTE if compiling else f"computing {METHOD_TITLES[method]} of {self.n:,} points"
        self._set_status("projection", f"{note} — showing PCA until it is ready")

        def work() -> None:
            global _umap_warm
            started = time.perf_counter()
            try:
                if method == "umap" and not _umap_warm:
                    with _umap_lock:  # two maps opening at once compile once
                        if not _umap_warm:
                            _embed.warm_up_umap()
                            _umap_warm = True
                    self._set_status("projection", f"UMAP compiled; fitting {self.n:,} points — showing PCA "
                                                   "until it is ready")
                coords = self._project(method)
                if method == "umap":
                    _umap_warm = True
            except Exception as exc:  # noqa: BLE001 - say it in the widget; the PCA view stays usable
                self._pending.discard(method)
                self._set_status("projection", f'<span style="color:{_RED}">{METHOD_TITLES[method]} failed: '
                                               f"{html.escape(str(exc))}</span>")
                with self.figure.batch_update():
                    self.figure.layout.title.text = self._title()
                return
            self._coords[method] = coords
            self._pending.discard(method)
            self._set_status("projection", f"{METHOD_TITLES[method]} ready ({time.perf_counter() - started:.1f} s)")
            if self.method.value == method:
                self._show_coords(method)

        thread = threading.Thread(target=work, name=f"artlab-{method}", daemon=True)
        self._threads[method] = thread
        thread.start()

    @_errors_in_status
    def _on_method(self, change) -> None:
        method = change["new"]
        if method in self._coords:
            self._show_coords(method)
        else:
            self._compute_async(method)
            with self.figure.batch_update():
                self.figure.layout.title.text = self._title()

    def _show_coords(self, method: str) -> None:
        """Move every point (and the overlays) to ``method``'s coordinates, in place."""
        with self._lock:
            xyz = self._coords[method]
            self.shown_method = method
            with self.figure.batch_update():
                points = self.figure.data[0]
                points.x, points.y = xyz[:, 0], xyz[:, 1]
                if self.dims == 3:
                    points.z = xyz[:, 2]
                self._draw_overlays()
                self.figure.layout.uirevision = method  # a new layout resets the zoom; a recolour does not
                self.figure.layout.title.text = self._title()

    def _draw_overlays(self) -> None:
        xyz = self._coords[self.shown_method]
        for trace, idx in ((self.figure.data[1], self.neighbours.get("index", pd.Series([], dtype=int))),
                           (self.figure.data[2], [] if self.query is None else [self.query])):
            idx = np.asarray(list(idx), dtype=int)
            trace.x, trace.y = xyz[idx, 0], xyz[idx, 1]
            if self.dims == 3:
                trace.z = xyz[idx, 2]

    @property
    def coords(self) -> np.ndarray:
        """The coordinates drawn now, (N, dims)."""
        return self._coords[self.shown_method]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until background projections and thumbnails are done (scripts, tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return self.thumbs.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ status
    def _set_status(self, part: str, text: str) -> None:
        self._status[part] = text
        self.status.value = " · ".join(v for v in self._status.values() if v)

    def _on_thumb_progress(self, done: int, total: int) -> None:
        if done < total:
            self._set_status("thumbs", f"making thumbnails: {done:,}/{total:,}")

    def _on_thumbs_done(self) -> None:
        failed = len(self.thumbs.failed)
        self._set_status("thumbs", f'<span style="color:{_RED}">{failed:,} image(s) could not be previewed</span>'
                         if failed else "")
        # grids drawn while previews were missing: redraw them with the pictures
        if len(self.selection):
            self._draw_selection()
        if self.query is not None and len(self.neighbours):
            self._draw_neighbours()
        if self._hovered is not None:
            self.hover(self._hovered)

    # ------------------------------------------------------------------ hover
    @_errors_in_status
    def _on_hover(self, _trace, points, _state) -> None:
        if points.point_inds:  # plotly calls every trace's handler; only the hovered one has points
            self.hover(points.point_inds[0])

    def hover(self, index: int) -> None:
        """Show point ``index``'s preview and metadata: a list lookup, whatever the number of points."""
        index = int(index)
        self._hovered = index
        data = self.thumbs.get(index)
        if data is not None:
            self.preview.format = "png" if data[:4] == b"\x89PNG" else "jpeg"
            self.preview.value = data
        else:
            self.preview.value = b""
        row = self.meta.iloc[index]
        lines = [f"<b>{html.escape(short_name(row['path']))}</b>"]
        lines += [f"{html.escape(str(c))}: {html.escape(str(row[c]))}" for c in self.meta.columns
                  if c != "path" and pd.notna(row[c]) and str(row[c]) != ""]
        if data is None:
            lines.append('<i style="color:#777">' + ("preview unavailable" if index in self.thumbs.failed
                                                     else "thumbnail still being made") + "</i>")
        lines.append(f'<span style="color:#777;font-size:10px;word-break:break-all">{html.escape(str(row["path"]))}'
                     "</span>")
        self.preview_caption.value = "<br>".join(lines)

    # ------------------------------------------------------------------ neighbours
    @_errors_in_status
    def _on_click(self, _trace, points, _state) -> None:
        if points.point_inds:
            self.show_neighbours(points.point_inds[0])

    def show_neighbours(self, index: int) -> pd.DataFrame:
        """Mark point ``index`` and show its ``k`` nearest neighbours (what clicking a point does)."""
        index = int(index)
        k = self.k_slider.value
        found = _embed.nearest(self.embeddings, index, k=min(k + 1, self.n))
        found = found[found["index"].astype(int) != index].head(k).reset_index(drop=True)
        self.query, self.neighbours = index, found
        self._draw_neighbours()
        with self.figure.batch_update():
            self._draw_overlays()
        return found

    def _draw_neighbours(self) -> None:
        query = self.query
        found = self.neighbours
        captions = [f"#{int(r['rank'])} · {float(r['similarity']):.3f}<br>{html.escape(short_name(r['path']))}"
                    for _, r in found.iterrows()]
        head = thumbnail_grid_html(self.thumbs, [query],
                                   [f"<b>query</b><br>{html.escape(short_name(self.thumbs.paths[query]))}"],
                                   side=self.thumbs.side)
        rest = thumbnail_grid_html(self.thumbs, found["index"].astype(int).tolist(), captions, side=self.thumbs.side)
        self.neighbour_grid.value = (f'<div style="display:flex;gap:16px;align-items:flex-start">{head}'
                                     f'<div style="border-left:1px solid #ccc;padding-left:12px">{rest}</div></div>')

    # ------------------------------------------------------------------ selection
    @_errors_in_status
    def _on_selection(self, _trace, points, selector) -> None:
        if selector is None and not points.point_inds:
            # Not the user's: plotly.js answers the removal of an outline with an empty selection,
            # and plotly.py has just set every trace's selectedpoints to []. Restore ours.
            self.figure.data[0].selectedpoints = self.selection if len(self.selection) else None
            return
        self._outline = selector is not None
        self.select(points.point_inds, _from_plot=True)  # the plot shows it already: not sent back

    def select(self, indices: Sequence[int], *, _from_plot: bool = False) -> np.ndarray:
        """Select points ``indices`` (what a box/lasso selection does): fill the grid and the table."""
        chosen = np.unique(np.asarray(list(indices), dtype=int))
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= self.n):
            raise IndexError(f"point indices must be in 0..{self.n - 1}")
        self.selection = chosen
        if not _from_plot and self.dims == 3:  # 3-D scatters have no selectedpoints: enlarge the chosen
            sizes = np.full(self.n, self._point_size, dtype=float)
            sizes[chosen] *= 2.5
            self.figure.data[0].marker.size = sizes if len(chosen) else self._point_size
        elif not _from_plot:
            self.figure.data[0].selectedpoints = chosen if len(chosen) else None
            if self._outline:
                # the box/lasso outline of the user's last selection no longer matches, and it would
                # catch the mouse (hover, click) over the points inside it: remove it
                self._outline = False
                self.figure.plotly_relayout({"selections": []})
        self._draw_selection()
        return chosen

    def clear_selection(self) -> None:
        """Forget the selection (and the search text)."""
        self.select([])
        if self.search.value:
            self.search.value = ""

    def selection_frame(self) -> pd.DataFrame:
        """The selected images: index, path, metadata and the map coordinates shown."""
        idx = self.selection
        frame = self.meta.iloc[idx].copy()
        frame.insert(0, "index", idx)
        for d, axis in enumerate("xyz"[: self.dims]):
            frame[f"{self.shown_method}_{axis}"] = self.coords[idx, d]
        return frame.reset_index(drop=True)

    def _draw_selection(self) -> None:
        idx = self.selection
        self.export_button.disabled = self.clear_button.disabled = len(idx) == 0
        self.selection_title.value = f"<b>Selection</b>: {len(idx):,} image(s)"
        if not len(idx):
            self.grid.value = '<i style="color:#777">nothing selected</i>'
            self.table.value = ""
            return
        self.grid.value = thumbnail_grid_html(self.thumbs, idx.tolist(), side=self.thumbs.side, limit=self.grid_max)
        frame = self.selection_frame().head(self.table_max)
        more = (f'<div style="color:#777;font-size:11px">first {self.table_max:,} rows of {len(idx):,}; '
                "the CSV has them all</div>" if len(idx) > self.table_max else "")
        self.table.value = (f'<div style="max-height:320px;overflow:auto;font-size:11px">'
                            f'{frame.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}")}</div>'
                            f"{more}")

    # ------------------------------------------------------------------ search
    @_errors_in_status
    def _apply_search(self) -> None:
        text = self.search.value.strip().lower()
        if not text:
            self.select([])
            return
        hits = np.flatnonzero(self._haystack.str.contains(text, regex=False).to_numpy())
        self.select(hits)
        self.selection_title.value = (f"<b>Selection</b>: {len(hits):,} image(s) matching "
                                      f"“{html.escape(self.search.value.strip())}”")

    # ------------------------------------------------------------------ export
    def export_csv(self, path: str | os.PathLike | None = None) -> Path:
        """Write the selection's table (every selected row) to ``path`` (default: the CSV file box);
        with ``csv_dir`` set, only to a .csv file inside it (else an :class:`ExportPathError`)."""
        value = path if path is not None else self.csv_file.value
        target = _confined_csv_path(value, self.csv_dir) if self.csv_dir is not None else Path(value)
        if not len(self.selection):
            raise ValueError("nothing is selected: box/lasso select points or search first, then export")
        target = _write_csv(self.selection_frame(), target)
        self.saved = target
        self.export_status.value = f"saved {len(self.selection):,} rows to <code>{html.escape(str(target))}</code>"
        return target

    def _export_clicked(self) -> None:
        try:
            self.export_csv()
        except ExportPathError as exc:
            self.export_status.value = f'<span style="color:{_RED}">export refused: {html.escape(str(exc))}</span>'
        except Exception as exc:  # noqa: BLE001 - a bad path is shown, not lost in the log
            self.export_status.value = f'<span style="color:{_RED}">export failed: {html.escape(str(exc))}</span>'
