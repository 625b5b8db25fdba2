"""CuratorApp: a folder of images as an embedding map, for people who do not write code.

``artlab explore FOLDER`` serves this widget as a Voilà page (see
:mod:`artlab.explore`). On first use it embeds the folder with
:func:`artlab.embed.embed` in a background thread, showing a progress bar fed by
embed's ``on_progress(stage, done, total)`` callback, so the page is usable (and tells what it is
doing) from the start; embeddings and the map's layout are cached on disk, so the next launch
goes straight to the :class:`~artlab.widgets.embedding_map.EmbeddingMap` in its final layout
(without importing umap). The main view speaks to curators (pictures, folders, "most alike");
the network, layer, pooling, cache folders and timings sit behind a "Details" disclosure.

The steps are public methods — :meth:`CuratorApp.load`, :meth:`CuratorApp.compute`,
:meth:`CuratorApp.show_map` — which :meth:`CuratorApp.run` chains and
:meth:`CuratorApp.start` runs in a thread; tests call them one by one.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as W

from artlab import embed as embedding
from artlab.data import Collection, label_source
from artlab.embed import maps
from artlab.models import Backbone, backbone

from .kit import RED, BackgroundRun, model_badge
from .map_figure import HOW_TO_READ

__all__ = ["CuratorApp"]

#: the values of ``CuratorApp.stage``, in the order a run goes through them
STAGES = ("created", "loading", "embedding", "mapping", "ready", "failed", "cancelled")


class _Cancelled(Exception):
    """Raised from the progress callback to stop :func:`artlab.embed.embed` (its documented way)."""


class CuratorApp(W.VBox):
    """Embed ``folder`` (with progress shown in the page), then explore it as an :class:`EmbeddingMap`.

    ``model`` is a backbone name (built with ``weights``, ``seed`` and ``device``;
    ``"best"``: :func:`~artlab.models.best_backbone`, VGG-19 when cached, else the bundled
    EfficientNet-Lite0; ``weights=None``: a seeded random init, labelled in red) or a built
    :class:`~artlab.models.Backbone`. ``layer``, ``pooling``, ``size``,
    ``batch_size``, ``cache_dir`` and ``device`` go to :func:`artlab.embed.embed`;
    ``seed``, ``csv_path`` (where "Export CSV" writes) and ``map_options`` to the
    ``EmbeddingMap``, whose UMAP layout is kept next to the embeddings (``<cache_dir>/layouts``).
    ``label``: what the points are coloured by at first: a folder level (``2`` or ``"2"``: the second
    folder level, ``-1``: the folder each picture is in) or a metadata column (``"artist"``,
    ``"folder_2"``); default: :meth:`Collection.from_folder`'s label. The page's "colour by" offers
    every folder level and column anyway. The page's "CSV file" box is editable, so exports are confined to
    ``csv_dir`` (default: the folder of ``csv_path``, else the current directory): a
    path outside it is refused with a message in the page. With ``start=True`` the work runs in a
    daemon thread at once; otherwise call :meth:`run` (or the steps) yourself.

    ``stage`` says where it is: one of ``created, loading, embedding, mapping,
    ready, failed, cancelled``; ``error`` holds the exception of a failed run.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        model: str | Backbone = "best",
        weights: str | None = "auto",
        layer: str | None = None,
        pooling: str = "mean",
        size: int = 224,
        batch_size: int = 16,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
        seed: int = 0,
        csv_path: str | os.PathLike | None = None,
        csv_dir: str | os.PathLike | None = None,
        map_options: dict | None = None,
        start: bool = True,
        warm_up: bool = True,
        label: str | int | None = None,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.label_options = label_source(label)
        self.model_spec = model
        self.weights, self.seed, self.device = weights, seed, device
        self.embed_options = {"layer": layer, "pooling": pooling, "size": int(size), "batch_size": int(batch_size),
                              "cache_dir": cache_dir, "device": device}
        if csv_dir is None:  # the folder the user chose for the export (explore: --csv, or where it ran)
            csv_dir = Path(csv_path).expanduser().absolute().parent if csv_path is not None else Path.cwd()
        layouts = Path(cache_dir if cache_dir is not None else embedding.default_cache_dir()).expanduser() / "layouts"
        self.map_options = {"seed": seed, **({"csv_path": str(csv_path)} if csv_path is not None else {}),
                            "csv_dir": str(csv_dir), "layout_cache": layouts, **(map_options or {})}
        self.warm_up = warm_up
        self.collection: Collection | None = None
        self.model: Backbone | None = None
        self.embeddings = None
        self.map = None
        self.error: BaseException | None = None
        self.stage = "created"
        self.seconds: dict[str, float] = {}
        self._worker = BackgroundRun("artlab-curator-app")

        self.header = W.HTML(
            f'<h2 style="margin:4px 0">{html.escape(self.folder.name or str(self.folder))}</h2>'
            f'<div style="color:#555;font-size:90%">{html.escape(str(self.folder))}</div>'
        )
        self.badge = W.HTML()
        self.progress = W.IntProgress(value=0, min=0, max=1, description="embedding", bar_style="info",
                                      layout=W.Layout(width="420px"))
        self.status = W.HTML("<i>starting…</i>")
        self.stop_button = W.Button(description="Stop", icon="stop", layout=W.Layout(width="auto"),
                                    tooltip="stop; the pictures looked at so far are remembered for the next launch")
        self.stop_button.on_click(lambda _b: self.cancel())
        self.progress_row = W.HBox([self.progress, self.stop_button, self.status])
        self.notes = W.HTML()
        self.body = W.VBox()
        self.how_to_read = W.HTML(f'<details open class="artlab-how-to-read"><summary><b>How to read this map</b>'
                                  f'</summary><p style="max-width:60em;margin:4px 0 8px">{HOW_TO_READ}</p></details>')
        self.details_html = W.HTML()
        self.details = W.Accordion(children=[self.details_html], selected_index=None)
        self.details.set_title(0, "Details (network, layer, caches, timings)")
        self.details.add_class("artlab-details")
        self._details: dict[str, str] = {}
        super().__init__([self.header, self.badge, self.progress_row, self.notes, self.body, self.details])
        self.add_class("artlab-curator-app")
        if start:
            self.start()

    # ------------------------------------------------------------------ driving
    def start(self) -> bool:
        """Run :meth:`run` in a daemon thread (the page stays live meanwhile); False if one is running already."""
        return self._worker.start(self.run)

    def join(self, timeout: float | None = None) -> None:
        """Wait for a :meth:`start`-ed run to finish."""
        self._worker.join(timeout)

    def cancel(self) -> None:
        """Stop the embedding at the next batch (what is cached so far stays cached)."""
        self._worker.stop()

    def run(self) -> None:
        """Load, embed and show the map; any failure is shown in the page (and kept in ``error``)."""
        try:
            self.load()
            self.compute()
            self.show_map()
        except _Cancelled:
            self.stage = "cancelled"
            self.progress.bar_style = "warning"
            self._set_status("stopped; what was embedded so far is cached", "warning")
        except Exception as exc:  # shown to the curator, not swallowed: kept in self.error
            self.show_error(exc)
        finally:
            self.stop_button.layout.display = "none"

    # ------------------------------------------------------------------ steps
    def load(self) -> tuple[Collection, Backbone]:
        """Read the folder and build the model (its label goes into the header at once)."""
        self.stage = "loading"
        self._set_status("reading the folder…")
        self.collection = Collection.from_folder(self.folder, **self.label_options)
        if isinstance(self.model_spec, Backbone):
            self.model = self.model_spec
        else:
            self._set_status("preparing the network that looks at the pictures…")
            self.model = backbone(self.model_spec, weights=self.weights, seed=self.seed,
                                  device=self.device or "cpu")
        # the network's name (red for random weights) on the page; which one was chosen, and why, in Details
        self.badge.value = model_badge(SimpleNamespace(label=self.model.label, pretrained=self.model.pretrained)).value
        self._detail("network", f"{self.model.label}. {getattr(self.model, 'note', '')}")
        self.progress.max = max(1, len(self.collection))
        self._set_status(f"{len(self.collection)} pictures found")
        return self.collection, self.model

    def compute(self):
        """Embed the collection (cached on disk) with progress in the bar; returns the Embeddings."""
        if self.collection is None or self.model is None:
            self.load()
        self.stage = "embedding"
        self.progress.bar_style = "info"
        t0 = time.perf_counter()
        # looked up at call time (artlab.embed.embed), so a test harness can wrap it
        self.embeddings = embedding.embed(self.collection, self.model, on_progress=self._on_progress,
                                          progress=False, **self.embed_options)  # the page has its own bar
        self.seconds["embed"] = time.perf_counter() - t0
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        emb = self.embeddings
        self._add_notes(list(emb.notes))  # skipped files, duplicates, random weights, cache problems
        cache = self.embed_options["cache_dir"] or embedding.default_cache_dir()
        self._detail("features", f"layer {emb.layer}, {emb.pooling} pooling, pictures resized to {emb.size} px: "
                                 f"{emb.vectors.shape[1]} numbers per picture")
        self._detail("embeddings", f"{emb.n_computed} computed in {self.seconds['embed']:.1f} s, {emb.n_cached} "
                                   f"read from the cache in {cache}")
        fresh, kept = emb.n_computed, emb.n_cached
        self._set_status(f"{len(emb)} pictures: " + ("all remembered from an earlier launch" if not fresh else
                         "all looked at now" if not kept else
                         f"{fresh} new ones looked at now, {kept} remembered from an earlier launch"))
        return self.embeddings

    def show_map(self):
        """Build the EmbeddingMap (it computes the 2-D layout) and put it in the page."""
        from .embedding_map import EmbeddingMap

        if self.embeddings is None:
            self.compute()
        self.stage = "mapping"
        done = self.status.value
        self._set_status(f"{len(self.embeddings)} pictures ready; arranging the map…")
        t0 = time.perf_counter()
        self.map = EmbeddingMap(self.collection, self.embeddings, **self.map_options)
        self.seconds["map"] = time.perf_counter() - t0
        shown = self.map.shown_method
        self._detail("map", f"{'UMAP layout read from' if shown == 'umap' else 'layouts are kept in'} "
                            f"{self.map_options.get('layout_cache') or '(nowhere)'}; opened in "
                            f"{self.seconds['map']:.1f} s")
        self.body.children = (self.how_to_read, self.map)
        self.progress.layout.display = self.stop_button.layout.display = "none"
        self.status.value = done  # back to the embedding summary
        self.badge.layout.display = "none"  # the map carries the model label itself
        self.stage = "ready"
        return self.map

    def show_error(self, exc: BaseException) -> None:
        """Put ``exc`` in the page in plain words (the run stops there)."""
        self.error = exc
        self.stage = "failed"
        self.progress.bar_style = "danger"
        self._set_status(f"<b>could not continue:</b> {html.escape(str(exc) or type(exc).__name__)}", "error")

    # ------------------------------------------------------------------ helpers
    def _on_progress(self, _stage: str, done: int, total: int) -> None:
        if self._worker.stopping:
            raise _Cancelled()
        if self.warm_up and done < total:  # pictures to look at: compile UMAP's numba code meanwhile (a
            maps.warm_up_umap(background=True)  # launch on cached pictures and layout never imports umap)
        self.progress.max = max(1, int(total))
        self.progress.value = min(int(done), self.progress.max)
        self._set_status(f"looking at the pictures: {done} / {total}…")

    def _detail(self, what: str, text: str) -> None:
        """Put a technical detail (network, layer, caches, timings) into the Details disclosure."""
        self._details[what] = text
        self.details_html.value = "".join(f"<div><b>{html.escape(k)}</b>: {html.escape(v)}</div>"
                                          for k, v in self._details.items())

    def _set_status(self, text: str, kind: str = "info") -> None:
        colour = {"info": "#333", "warning": "#b9770e", "error": RED}[kind]
        self.status.value = f'<span class="artlab-status" style="color:{colour}">{text}</span>'

    def _add_notes(self, notes: list[str]) -> None:
        if not notes:
            return
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:20])
        more = f"<li>… and {len(notes) - 20} more</li>" if len(notes) > 20 else ""
        self.notes.value += f'<ul style="color:#555;font-size:90%;margin:2px 0">{items}{more}</ul>'

