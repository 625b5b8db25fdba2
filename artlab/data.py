"""Image collections (folders of paintings and photos) and the offline sample corpus.

A :class:`Collection` is an ordered list of image files with a label and free-form
metadata per image. It reads the layouts people already have:

* class subfolders (``root/<artist or style>/<image>``, as in WikiArt dumps);
* a metadata CSV (``metadata.csv`` in the folder, or any CSV given explicitly) with
  a path column (``path``, ``file``, ``filename``, ``image`` …) and columns such as
  ``artist``, ``style``, ``genre``, ``year`` (Kaggle's WikiArt and "best artworks"
  layouts).

Unreadable files are skipped and listed in ``collection.skipped``, never fatal. Files
that are not images artlab can read (``notes.txt``, or a ``.heic`` without a Pillow plugin
for it) are listed in ``collection.ignored`` with the reason; only hidden files and folders
(``.DS_Store``, ``.git/``), the metadata CSV and the operating system's folder files
(``Thumbs.db``, ``desktop.ini``) are passed over without a word. Which extensions count
as images is decided at run time from the Pillow plugins installed (:func:`image_extensions`).

:func:`sample_corpus` builds a small labelled corpus offline: scikit-image's bundled
colour photographs plus each of them painted by the filters in :mod:`artlab.paint`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError, features
from torch import Tensor

from artlab.images import ImageLoadError, load_image, load_images, save_image

__all__ = [
    "IMAGE_EXTENSIONS",  # noqa: F822 (computed on access by the module's __getattr__)
    "image_extensions",
    "Item",
    "Collection",
    "CollectionError",
    "label_source",
    "sample_corpus",
    "SAMPLE_PHOTOS",
    "cache_root",
]

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "img")
LABEL_COLUMNS = ("label", "artist", "style", "genre", "class")
#: Files an operating system leaves in folders of pictures: never reported (hidden files neither).
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
#: Formats Pillow registers but only identifies (no pixels): not images artlab can read.
_IDENTIFY_ONLY = frozenset({"MPEG"})
#: Formats Pillow reads through another format's plugin (an .mpo is opened as a JPEG).
_READ_AS = {"MPO": "JPEG"}


def _why_not_decodable(fmt: str) -> str | None:
    """Why Pillow here cannot decode format ``fmt`` (a missing codec or program), or None if it can."""
    fmt = _READ_AS.get(fmt, fmt)
    factory = Image.OPEN.get(fmt)
    if factory is None or fmt in _IDENTIFY_ONLY:
        return "not an image type artlab reads"
    if isinstance(factory[0], type) and issubclass(factory[0], ImageFile.StubImageFile):
        return "not an image type artlab reads"  # BUFR, GRIB, HDF5, WMF: need a handler Pillow does not ship
    if fmt == "JPEG2000" and not features.check_codec("jpg_2000"):
        return "not readable here: this Pillow was built without OpenJPEG"
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        if not EpsImagePlugin.has_ghostscript():
            return "not readable here: Pillow needs Ghostscript (gs) for EPS"
    return None


def image_extensions() -> frozenset[str]:
    """The file extensions (lower case, with the dot) of the images artlab reads, decided now.

    Every extension that Pillow, as installed and with the plugins registered at this
    moment (``.avif`` when Pillow has libavif, ``.heic`` once ``pillow_heif`` registers
    its opener), can decode, which is what :func:`artlab.images.load_image` reads.
    Write-only (``.pdf``), identify-only (``.mpg``) and stub formats (``.h5``) are left out.
    """
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if _why_not_decodable(fmt) is None)


def _not_an_image(path: Path, extensions: frozenset[str]) -> str | None:
    """Why a file is not considered an image by its extension (checked before anything opens it), or None."""
    suffix = path.suffix.lower()
    if suffix in extensions:
        return None
    if not suffix:
        return "not an image type artlab reads (no extension)"
    fmt = Image.registered_extensions().get(suffix)
    reason = _why_not_decodable(fmt) if fmt is not None else "not an image type artlab reads"
    return f"{reason} ({suffix})"


def __getattr__(name: str) -> object:
    """``IMAGE_EXTENSIONS``: :func:`image_extensions` computed when asked (plugins can be added later)."""
    if name == "IMAGE_EXTENSIONS":
        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def label_source(label: str | int | None) -> dict[str, str | int]:
    """The :meth:`Collection.from_folder` keyword a user's choice of label means: a whole number (``2``,
    ``"2"``, ``"-1"``) is a folder level (``label_level``), any other text a metadata column
    (``label_column``: ``"artist"``, ``"folder_2"``); None or "" the default ({})."""
    text = str(label).strip() if label is not None else ""
    if text.lstrip("-").isdigit():
        return {"label_level": int(text)}
    return {"label_column": text} if text else {}


class CollectionError(ValueError):
    """A folder or metadata file cannot be read as a collection."""


@dataclass(frozen=True)
class Item:
    """One image of a collection: its file, its label and its metadata row."""

    path: Path
    label: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Collection:
    """An ordered set of image files with labels and metadata.

    ``skipped`` lists (path, reason) for image files that could not be used (empty, not
    a regular file, unreadable); ``ignored`` (path, reason) for files that are not images
    artlab reads (``notes.txt: not an image type artlab reads (.txt)``); ``notes`` lists
    metadata problems (rows without files, files without rows).
    """

    items: list[Item]
    root: Path | None = None
    name: str = ""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    @property
    def paths(self) -> list[Path]:
        return [item.path for item in self.items]

    @property
    def labels(self) -> list[str | None]:
        return [item.label for item in self.items]

    @property
    def classes(self) -> list[str]:
        """Distinct labels, sorted."""
        return sorted({item.label for item in self.items if item.label is not None})

    def column(self, name: str) -> list[str | None]:
        """One metadata column (``None`` where an item lacks it)."""
        return [item.meta.get(name) for item in self.items]

    def subset(self, indices: Sequence[int] | None = None, **where: str | Sequence[str]) -> Collection:
        """The items at ``indices`` and/or whose metadata (or ``label``) match ``where``.

        ``corpus.subset(domain="photo")``, ``corpus.subset(style=["brush", "slic"])``.
        """
        chosen = list(indices) if indices is not None else range(len(self.items))
        picked = []
        for i in chosen:
            item = self.items[i]
            values = {"label": item.label, **item.meta}
            if all(
                values.get(k) in ([v] if isinstance(v, str) else list(v)) for k, v in where.items()
            ):
                picked.append(item)
        return Collection(picked, self.root, self.name, [], [])

    def load(self, index: int, size: int | tuple[int, int] | None = None) -> Tensor:
        """Image ``index`` as a 1×3×H×W tensor (see :func:`artlab.images.load_image`)."""
        return load_image(self.items[index].path, size=size)

    def load_all(self, size: int | tuple[int, int]) -> Tensor:
        """Every image as one N×3×H×W batch (square ``size`` crops; see load_images)."""
        return load_images(self.paths, size)

    def batches(
        self, size: int | tuple[int, int], batch_size: int = 16
    ) -> Iterator[tuple[list[int], Tensor]]:
        """Yield (indices, N×3×H×W batch); files that fail to decode are skipped and recorded."""
        pending: list[int] = []
        tensors: list[Tensor] = []
        for i, item in enumerate(self.items):
            try:
                tensors.append(load_images([item.path], size))
            except ImageLoadError as exc:
                self.skipped.append((item.path, exc.reason))
                continue
            pending.append(i)
            if len(pending) == batch_size:
                yield pending, torch.cat(tensors)
                pending, tensors = [], []
        if pending:
            yield pending, torch.cat(tensors)

    def to_frame(self):
        """A pandas DataFrame: path, label and every metadata column."""
        import pandas as pd

        return pd.DataFrame([{"path": str(i.path), "label": i.label, **i.meta} for i in self.items])

    def summary(self) -> str:
        """A human-readable report: counts per label, skipped and ignored files, metadata notes."""
        lines = [f"{self.name or 'collection'}: {len(self)} images"]
        counts = Counter(item.label for item in self.items)
        if any(label is not None for label in counts):
            lines.append("  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))))
        for files, heading in ((self.skipped, "skipped {} unreadable file(s):"),
                               (self.ignored, "ignored {} file(s) that are not images artlab reads:")):
            if files:
                lines.append("  " + heading.format(len(files)))
                lines += [f"    {p}: {why}" for p, why in files[:20]]
                if len(files) > 20:
                    lines.append(f"    … and {len(files) - 20} more")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Collection({self.name or self.root!s}, {len(self)} images, {len(self.classes)} classes)"

    # ----------------------------------------------------------------- reading folders
    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        metadata: str | os.PathLike | None = None,
        *,
        label_column: str | None = None,
        recursive: bool = True,
        label_level: int | None = None,
    ) -> Collection:
        """Read a folder of images.

        Every image's folders are kept in its metadata, one column per level:
        ``folder_1`` is the subfolder of ``path`` it lies in, ``folder_2`` the one below, and
        so on to the deepest (``paintings/van_gogh/x.jpg``: ``folder_1="paintings"``,
        ``folder_2="van_gogh"``); a level an image does not have (files at other depths) is
        ``""``. A metadata CSV's own column of the same name wins.

        The label: ``label_column`` names any metadata column (a CSV column such as
        ``artist``, or ``folder_2``); ``label_level`` a folder level (1: the top subfolder,
        2: the one below; -1: the folder each image is in, -2 the one above); an image
        without that level has no label. With neither, the label is the CSV's first
        label/artist/style/genre/class column when there is a CSV, else ``folder_1``.
        ``metadata`` defaults to ``<folder>/metadata.csv`` if
        present. Files with an image extension (:func:`image_extensions`: whatever
        Pillow reads here) are opened, header only, to check they are readable images;
        those that are not regular files (a FIFO, a link to ``/dev/zero``) are never
        opened (opening a FIFO blocks) and go to ``skipped`` as "not a regular file".
        Other files go to ``ignored`` with the reason, except hidden files and folders,
        the metadata CSV and :data:`SYSTEM_FILES`.
        """
        root = Path(path).expanduser()
        if not root.exists():
            raise CollectionError(f"collection folder {root} does not exist")
        if not root.is_dir():
            raise CollectionError(f"{root} is a file, not a folder of images")
        meta_path = Path(metadata) if metadata is not None else root / "metadata.csv"
        files, ignored = _image_files(root, recursive, meta_path)
        rows: dict[Path, dict[str, str]] = {}
        notes: list[str] = []
        if metadata is not None or meta_path.is_file():
            rows, notes = _read_metadata(meta_path, root, set(files))
        if label_column is not None and label_level is not None:
            raise ValueError("pass label_column or label_level, not both: the label comes from one place")
        depth = max((len(f.relative_to(root).parts) - 1 for f in files), default=0)
        if label_level is not None:
            if isinstance(label_level, bool) or not isinstance(label_level, int) or label_level == 0:
                raise ValueError(f"label_level must be a folder level: 1 (the top subfolder), 2, … or -1 (the "
                                 f"folder an image is in), -2, …; got {label_level!r}")
            if abs(label_level) > depth:
                raise CollectionError(f"label_level={label_level}, but the deepest image in {root} is "
                                      f"{depth} folder(s) down; choose a level between 1 and {depth} (or -1)"
                                      if depth else f"label_level={label_level}, but {root} has no subfolders "
                                      "with images: there are no folder levels to label by")
        items: list[Item] = []
        skipped: list[tuple[Path, str]] = []
        for file in files:
            reason = _header_problem(file)
            if reason:
                skipped.append((file, reason))
                continue
            folders = file.relative_to(root).parts[:-1]
            row = {**{f"folder_{k + 1}": (folders[k] if k < len(folders) else "") for k in range(depth)},
                   **rows.get(file, {})}
            if label_level is not None:
                level = label_level - 1 if label_level > 0 else len(folders) + label_level
                label = folders[level] if 0 <= level < len(folders) else None
            else:
                label = _label(row, label_column, bool(rows))
            items.append(Item(file, label, row))
        if label_column is not None and items and not any(label_column in item.meta for item in items):
            columns = sorted({c for item in items for c in item.meta})
            raise CollectionError(f"label_column={label_column!r} is not a metadata column of {root}; choose one "
                                  f"of {', '.join(columns) or '(none: no metadata CSV and no subfolders)'}")
        if not items:
            detail = f"; {len(skipped)} unreadable" if skipped else ""
            if ignored:
                kinds = Counter(why for _, why in ignored)
                detail += "; ignored " + ", ".join(f"{n} {why}" for why, n in kinds.most_common(5))
            common = [e for e in (".jpg", ".png", ".tif", ".webp", ".avif") if e in image_extensions()]
            raise CollectionError(
                f"no readable images in {root} (looked for {', '.join(common)} and every other type Pillow reads "
                f"here: artlab.data.image_extensions(){detail})"
            )
        return cls(items, root, root.name, skipped, notes, ignored)


def _image_files(
    root: Path, recursive: bool, metadata: Path | None = None
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files under ``root`` that are images by their extension, and (path, reason) for the others.

    Nothing is opened here. Hidden files and folders, ``metadata`` and :data:`SYSTEM_FILES`
    are left out of both lists.
    """
    extensions = image_extensions()
    csv_file = metadata.resolve() if metadata is not None else None
    pattern = root.rglob("*") if recursive else root.glob("*")
    images: list[Path] = []
    ignored: list[tuple[Path, str]] = []
    for p in sorted(pattern):
        if any(part.startswith(".") for part in p.relative_to(root).parts) or p.is_dir():
            continue
        if p.name.lower() in SYSTEM_FILES or (csv_file is not None and p.name == csv_file.name
                                              and p.resolve() == csv_file):
            continue
        reason = _not_an_image(p, extensions)
        if reason:
            ignored.append((p, reason))
        else:
            images.append(p)
    return images, ignored


def _header_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable image (a cheap header check), or None.

    Only regular files are opened: a FIFO would block the open, a device such as
    ``/dev/zero`` (through a link) would never end; both are "not a regular file".
    """
    try:
        info = path.stat()  # follows links: a link to /dev/zero is a device
    except FileNotFoundError:
        return "broken link" if path.is_symlink() else "vanished while the folder was read"
    except OSError as exc:
        return f"unreadable: {exc}"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    try:
        if info.st_size == 0:
            return "empty file"
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header parse is the check
    except UnidentifiedImageError:
        return "not a recognised image format"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable: {exc}"
    return None


def _label(row: Mapping[str, str], label_column: str | None, from_metadata: bool) -> str | None:
    """The label: ``label_column`` of the row; else from the metadata CSV when there is one (None if the
    row lacks one); else the top subfolder (``folder_1``)."""
    if label_column is not None:
        return row.get(label_column) or None
    for column in LABEL_COLUMNS:
        if row.get(column):
            return row[column]
    if from_metadata:
        return None
    return row.get("folder_1") or None


def _read_metadata(
    csv_path: Path, root: Path, files: set[Path]
) -> tuple[dict[Path, dict[str, str]], list[str]]:
    """Rows keyed by resolved file path, plus notes on rows and files that do not match."""
    if not csv_path.is_file():
        raise CollectionError(f"metadata file {csv_path} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        path_col = next((c for c in columns if c.strip().lower() in PATH_COLUMNS), None)
        if path_col is None:
            raise CollectionError(
                f"{csv_path} has no path column; expected one of {', '.join(PATH_COLUMNS)}, "
                f"found {', '.join(columns) or 'no header'}"
            )
        rows: dict[Path, dict[str, str]] = {}
        missing: list[str] = []
        for row in reader:
            rel = (row.get(path_col) or "").strip()
            if not rel:
                continue
            target = _resolve(rel, root, csv_path.parent, files)
            if target is None:
                missing.append(rel)
                continue
            rows[target] = {k.strip(): (v or "").strip() for k, v in row.items() if k and k != path_col}
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} row(s) of {csv_path.name} name files that are not in {root}: "
            + ", ".join(missing[:5])
            + (" …" if len(missing) > 5 else "")
        )
    unlisted = sorted(f for f in files if f not in rows and f != csv_path)
    if unlisted:
        notes.append(
            f"{len(unlisted)} image(s) have no row in {csv_path.name}: "
            + ", ".join(str(p.relative_to(root)) for p in unlisted[:5])
            + (" …" if len(unlisted) > 5 else "")
        )
    return rows, notes


def _resolve(rel: str, root: Path, csv_dir: Path, files: set[Path]) -> Path | None:
    """A CSV path entry -> the file it names, relative to the folder or the CSV, or by bare name."""
    for base in (root, csv_dir):
        candidate = (base / rel).resolve()
        for f in (candidate, base / rel):
            if f in files:
                return f
    by_name = [f for f in files if f.name == Path(rel).name]
    return by_name[0] if len(by_name) == 1 else None


# --------------------------------------------------------------------------- sample corpus

#: scikit-image's bundled colour photographs (no download needed).
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field")
CORPUS_VERSION = 1


def cache_root() -> Path:
    """artlab's cache folder: ``$ARTLAB_CACHE`` or ``~/.cache/artlab``."""
    return Path(os.environ.get("ARTLAB_CACHE") or Path.home() / ".cache" / "artlab").expanduser()


def _sample_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def _square(image: np.ndarray, size: int) -> Tensor:
    """Centre-crop to a square and resize to size×size (the corpus shares one size)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return load_image(np.ascontiguousarray(image[top : top + side, left : left + side]), size=(size, size))


def sample_corpus(
    *,
    size: int = 256,
    styles: Sequence[str] | None = None,
    photos: Sequence[str] = SAMPLE_PHOTOS,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: bool | None = None,
) -> Collection:
    """The built-in labelled corpus: photographs and the same photographs painted.

    Built on first use from scikit-image's bundled photos (offline, deterministic for
    ``seed``) and cached under ``<cache>/corpus-v1-<hash>/``; later calls just read it.
    Layout: ``photo/<subject>.png`` and ``<style>/<subject>.png`` with a
    ``metadata.csv`` (path, subject, domain, style), so each item's label is its style
    ("photo" for the originals) and ``meta["domain"]`` is "photo" or "painting". The first
    build shows a progress bar in notebooks and terminals (``progress=False``: none).
    """
    from artlab import paint

    styles = list(styles) if styles is not None else list(paint.STYLES)
    unknown = [s for s in styles if s not in paint.STYLES]
    if unknown:
        raise ValueError(f"unknown styles {unknown}; valid: {', '.join(paint.STYLES)}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    # The filters' source is part of the key: changing a filter rebuilds the corpus.
    filters = hashlib.sha256(Path(paint.__file__).read_bytes()).hexdigest()[:12]
    key = json.dumps({"v": CORPUS_VERSION, "size": size, "styles": styles, "photos": list(photos), "seed": seed,
                      "filters": filters})
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    base = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = base / f"corpus-v{CORPUS_VERSION}-{digest}"
    if rebuild and target.exists():
        shutil.rmtree(target)
    if not (target / "metadata.csv").is_file():
        _build_corpus(target, size, styles, photos, seed, progress)
    corpus = Collection.from_folder(target)
    corpus.name = "artlab sample corpus"
    return corpus


def _build_corpus(
    target: Path, size: int, styles: list[str], photos: Sequence[str], seed: int, progress: bool | None
) -> None:
    """Paint every photo in every style into a temp folder, then move it into place atomically."""
    from tqdm.auto import tqdm

    from artlab import paint
    from artlab.runs import wants_progress

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".corpus-", dir=target.parent))
    try:
        rows = []
        jobs = [(p, s) for p in photos for s in ["photo", *styles]]
        bar = tqdm(jobs, desc="building sample corpus", disable=not wants_progress(progress), unit="img")
        originals: dict[str, Tensor] = {}
        for subject, style in bar:
            if subject not in originals:
                originals[subject] = _square(_sample_photo(subject), size)
            image = originals[subject]
            if style != "photo":
                # One seed per (subject, style) so adding a style never changes the others.
                sub_seed = int(hashlib.sha256(f"{seed}/{subject}/{style}".encode()).hexdigest()[:8], 16)
                image = paint.paint(image, style, seed=sub_seed)
            rel = f"{style}/{subject}.png"
            save_image(image, tmp / rel)
            rows.append({"path": rel, "subject": subject, "domain": "photo" if style == "photo" else "painting",
                         "style": style})
        with open(tmp / "metadata.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["path", "subject", "domain", "style"])
            writer.writeheader()
            writer.writerows(rows)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "metadata.csv").is_file():  # lost a race to another builder: theirs is fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
