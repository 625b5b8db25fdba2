"""Browsing an embedded collection without widgets: the table behind an embedding map.

:class:`MapTable` holds one row per embedded image (path, label, metadata) and answers
what :class:`artlab.widgets.EmbeddingMap` (and the curator app built on it) asks: which
rows match a search text, how a column colours the points (:class:`Colouring`), an
image's nearest neighbours, and the selected rows as a table or an exported CSV. The
widget only reads its controls, calls one of these and updates its figure in place;
scripts and tests can call them the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artlab.embed.embeddings import write_csv
from artlab.embed.neighbours import nearest

__all__ = ["MAX_COLOURS", "Colouring", "ExportPathError", "MapTable", "check_embeddings", "confined_csv_path"]

#: distinct colours before the rarest categories are lumped together as "other"
MAX_COLOURS = 24


def check_embeddings(embeddings: Any) -> None:
    """TypeError/ValueError unless ``embeddings`` is a consistent :class:`artlab.embed.Embeddings` of ≥ 2 images."""
    missing = [a for a in ("vectors", "paths", "meta", "model_label") if not hasattr(embeddings, a)]
    if missing:
        raise TypeError(f"embeddings must be an artlab.embed.Embeddings (from artlab.embed.embed(...)); "
                        f"{type(embeddings).__name__} has no {', '.join(missing)}")
    if len(embeddings.paths) != len(embeddings.vectors) or len(embeddings.meta) != len(embeddings.vectors):
        raise ValueError(f"embeddings are inconsistent: {len(embeddings.vectors)} vectors, "
                         f"{len(embeddings.paths)} paths, {len(embeddings.meta)} metadata rows")
    if len(embeddings.vectors) < 2:
        raise ValueError(f"a map needs at least 2 embedded images, got {len(embeddings.vectors)}")


def _meta_frame(embeddings: Any, collection: Any) -> pd.DataFrame:
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


@dataclass
class Colouring:
    """How one metadata column colours the points.

    Continuous (a numeric column with many distinct values, e.g. year): ``numbers`` (one
    float per point, NaN where missing). Categorical otherwise: ``codes`` (one int per
    point, k for ``names[k]``), ``names`` in decreasing frequency with ``sizes``; beyond
    ``MAX_COLOURS`` the rarest values share the last code, named "other (N values)"
    (``lumped`` is then True).
    """

    column: str
    numbers: np.ndarray | None = None
    codes: np.ndarray | None = None
    names: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    lumped: bool = False


class ExportPathError(ValueError):
    """An export path outside the folder exports are confined to (see ``EmbeddingMap(csv_dir=...)``)."""


def confined_csv_path(value: str | os.PathLike, folder: str | os.PathLike) -> Path:
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


class MapTable:
    """The rows an embedding map shows: one per embedded image, in the embeddings' order.

    ``collection`` (optional) must contain every embedded path; its metadata is used when
    the embeddings carry none. ``meta`` has ``path``, ``label`` and the metadata;
    ``columns`` the ones offered for colouring (label first, never the path).
    """

    def __init__(self, embeddings: Any, collection: Any = None) -> None:
        check_embeddings(embeddings)
        self.embeddings = embeddings
        self.meta = _meta_frame(embeddings, collection)
        self.n = len(self.meta)
        self.columns = ["label", *[c for c in self.meta.columns
                                   if c not in ("path", "label") and not str(c).startswith("_")]]
        # Searched text per point: the path and every metadata value, lower-case (built once, column by column).
        hay = self.meta["path"].astype(str)
        for column in self.meta.columns.drop("path"):
            hay = hay + " | " + self.meta[column].fillna("").astype(str)
        self._haystack = hay.str.lower()

    def search(self, text: str) -> np.ndarray:
        """Indices of the rows whose path or metadata contain ``text`` (case-insensitive); none for ""."""
        text = text.strip().lower()
        if not text:
            return np.zeros(0, dtype=int)
        return np.flatnonzero(self._haystack.str.contains(text, regex=False).to_numpy())

    def check_indices(self, indices: Sequence[int]) -> np.ndarray:
        """``indices`` as sorted unique ints; IndexError if one is not a row."""
        chosen = np.unique(np.asarray(list(indices), dtype=int))
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= self.n):
            raise IndexError(f"point indices must be in 0..{self.n - 1}")
        return chosen

    def colouring(self, column: str, max_colours: int = MAX_COLOURS) -> Colouring:
        """How ``column`` colours the points: continuous for numbers with many values, else by category."""
        if column not in self.columns:
            raise ValueError(f"{column!r} is not a metadata column; choose one of {', '.join(self.columns)}")
        values = self.meta[column]
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() >= 0.9 * values.notna().sum() and numbers.nunique() > max_colours:
            return Colouring(column, numbers=numbers.to_numpy(float))
        text = values.fillna("").astype(str).replace("", "(none)")  # missing and empty (a folder level a file lacks)
        counts = text.value_counts()  # most frequent first: they get the distinct colours
        lumped = len(counts) > max_colours
        if lumped:
            named = list(counts.index[: max_colours - 1])
            names = named + [f"other ({len(counts) - len(named)} values)"]
            sizes = [int(counts[c]) for c in named] + [int(counts.iloc[len(named):].sum())]
        else:
            named = names = list(counts.index)
            sizes = [int(c) for c in counts]
        code_of = {c: k for k, c in enumerate(named)}
        codes = text.map(code_of).fillna(len(named)).to_numpy(int)  # unnamed -> "other"
        return Colouring(column, codes=codes, names=names, sizes=sizes, lumped=lumped)

    def neighbours(self, index: int, k: int) -> pd.DataFrame:
        """The ``k`` nearest neighbours of row ``index`` (:func:`artlab.embed.nearest`), itself left out."""
        found = nearest(self.embeddings, int(index), k=min(int(k) + 1, self.n))
        return found[found["index"].astype(int) != int(index)].head(int(k)).reset_index(drop=True)

    def selection_frame(self, indices: Sequence[int], coords: np.ndarray | None = None,
                        method: str = "") -> pd.DataFrame:
        """Rows ``indices``: index, path, metadata and, given ``coords`` (N×dims), ``<method>_x``, ``_y`` (, ``_z``)."""
        idx = np.asarray(list(indices), dtype=int)
        frame = self.meta.iloc[idx].copy()
        frame.insert(0, "index", idx)
        if coords is not None:
            for d, axis in enumerate("xyz"[: coords.shape[1]]):
                frame[f"{method}_{axis}"] = coords[idx, d]
        return frame.reset_index(drop=True)

    def export_csv(self, indices: Sequence[int], path: str | os.PathLike, *, coords: np.ndarray | None = None,
                   method: str = "", folder: str | os.PathLike | None = None) -> Path:
        """Write :meth:`selection_frame` of ``indices`` to ``path`` (atomically, names escaped as in
        :func:`artlab.embed.embeddings.write_csv`); with ``folder``, only to a .csv file inside it
        (:func:`confined_csv_path`, else an :class:`ExportPathError`). Returns the resolved path."""
        target = confined_csv_path(path, folder) if folder is not None else Path(path)
        if not len(indices):
            raise ValueError("nothing is selected: box/lasso select points or search first, then export")
        return write_csv(self.selection_frame(indices, coords, method), target.expanduser().resolve())
