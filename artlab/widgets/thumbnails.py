"""Thumbnails for the collection widgets: one small preview per image, made once, and grids of them.

Shared by :class:`~artlab.widgets.EmbeddingMap` and :class:`~artlab.widgets.ClassifierView`
(which can share one :class:`ThumbnailStore`, so every preview is made once).
"""

from __future__ import annotations

import atexit
import base64
import html
import io
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from artlab.images import load_image, to_pil
from artlab.runs import Progress

from .kit import BackgroundRun

__all__ = ["ThumbnailStore", "short_name", "short_names", "thumbnail_bytes", "thumbnail_grid_html"]

#: larger images take the careful path (load_image's decompression-bomb guard)
_FAST_MAX_PIXELS = 50_000_000
# Stores with a running thread: stopped at interpreter exit, so no thread dies inside a C library call.
_running_stores: weakref.WeakSet = weakref.WeakSet()


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

    def __init__(self, paths: Sequence[str | os.PathLike], *, side: int = 96,
                 thumbnails: Sequence[bytes | str | None] | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.side = int(side)
        self._bytes: list[bytes | None] = [None] * len(self.paths)
        self.failed: dict[int, str] = {}  #: index -> why no preview could be made
        self.done = threading.Event()
        self._worker = BackgroundRun("artlab-thumbnails")
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
        """The preview of image ``index`` as a ``data:`` URL for an ``<img>`` (None if there is none)."""
        data = self._bytes[index]
        if data is None:
            return None
        mime = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    @property
    def ready(self) -> int:
        """How many previews exist."""
        return sum(b is not None for b in self._bytes)

    def fill(self, indices: Sequence[int] | None = None) -> None:
        """Make the missing previews of ``indices`` (all by default) here, now."""
        for i in range(len(self.paths)) if indices is None else indices:
            if self._worker.stopping:
                return
            if self._bytes[i] is None and i not in self.failed:
                try:
                    # looked up at call time, so a test can count calls by patching the module function
                    self._bytes[i] = thumbnail_bytes(self.paths[i], self.side)
                    self.made += 1
                except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                    self.failed[i] = str(exc)

    def start(self, on_progress: Progress | None = None, on_done: Callable[[], None] | None = None,
              every: int = 250) -> None:
        """Make every missing preview in a daemon thread; ``on_progress("thumbnails", done, total)`` every
        ``every`` images, ``on_done()`` at the end."""
        if self.done.is_set() or self._worker.running:
            if self.done.is_set() and on_done is not None:
                on_done()
            return

        def work() -> None:
            total = len(self.paths)
            try:
                for start in range(0, total, every):
                    self.fill(range(start, min(start + every, total)))
                    if self._worker.stopping:
                        return
                    if on_progress is not None:
                        on_progress("thumbnails", min(start + every, total), total)
            finally:
                if not self._worker.stopping:
                    self.done.set()
                    if on_done is not None:
                        on_done()

        _running_stores.add(self)
        self._worker.start(work)

    def stop(self) -> None:
        """Stop the background thread after its current image (previews made so far are kept)."""
        self._worker.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every preview is made (or failed); False on timeout."""
        return self.done.wait(timeout)


@atexit.register
def _stop_thumbnail_threads() -> None:
    for store in list(_running_stores):
        store.stop()
    for store in list(_running_stores):
        store._worker.join(timeout=5)


def short_name(path: str | os.PathLike) -> str:
    """``folder/file`` — the file name alone is ambiguous in class-folder layouts (every style has coffee.png)."""
    return "/".join(Path(path).parts[-2:])


def short_names(paths: pd.Series) -> pd.Series:
    """:func:`short_name` of every path, column-wise (no Python loop over 20,000 rows)."""
    split = paths.astype(str).str.replace("\\", "/", regex=False).str.rsplit("/", n=2)
    folder = split.str[-2].where(split.str.len() >= 2, "")
    return (folder + "/").where(folder != "", "") + split.str[-1]


def thumbnail_grid_html(store: ThumbnailStore, indices: Sequence[int], captions: Sequence[str] | None = None,
                        *, side: int = 96, limit: int | None = None, empty: str = "") -> str:
    """An HTML grid of the previews of ``indices`` with a caption under each (paths as tooltips).

    ``captions`` are HTML (default: the escaped :func:`short_name`); at most ``limit``
    cells, with "showing k of n" under them; ``empty`` is shown when there are none.
    """
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
