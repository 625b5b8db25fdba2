"""Image sets to pooled features: artlab's one batched loop from images to one vector per image and layer.

A set argument (a :class:`~artlab.data.Collection`, a folder, a list of paths or
in-memory images, an N×3×H×W tensor) becomes :class:`ImageSources`; every image is
resized (shorter side) and centre-cropped to size×size, batched, and run through the
network once per batch (:func:`batched_forward`, also behind :mod:`artlab.embed`), each
layer's maps pooled inside the loop so full maps are never kept. :class:`FeatureStore`
keeps the vectors across calls; :func:`pooled_features` is the public entry.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from artlab.activations.inspection import layer_list, tensor_digest
from artlab.data import Collection
from artlab.images import (
    ImageLoadError,
    ensure_image_batch,
    load_image,
    load_images,
    open_regular,
)
from artlab.models import Backbone, features, model_device
from artlab.runs import Progress, progress_bar

__all__ = [
    "ImageSet",
    "ImageSources",
    "FeatureStore",
    "image_sources",
    "size_notes",
    "batched_forward",
    "pool_set",
    "check_size",
    "pooled_features",
]

#: What a set argument may be: a Collection, a folder, a list of images (paths, PIL images,
#: arrays, tensors) or an N×3×H×W tensor.
ImageSet = Union[Collection, str, "os.PathLike[str]", Sequence[Any], Tensor]


def _file_key(path: Path) -> tuple:
    """A file's identity for caching: resolved path, modification time and size."""
    stat = path.stat()
    return ("file", str(path.resolve()), stat.st_mtime_ns, stat.st_size)


class FeatureStore:
    """Pooled features per image, kept across calls: {(model, image, layer, size): C-vector}.

    Pass one as ``cache=`` to :func:`pooled_features` or :func:`~artlab.activations.domain_shift` and repeated
    runs (another measure, another set paired with the same photos, a re-run after an
    interruption) only compute images not seen before. Files are keyed by resolved path,
    modification time and byte size (an edited file is recomputed), in-memory images by
    a content hash. In memory only; thread-safe.
    """

    def __init__(self) -> None:
        self._items: dict[tuple, tuple[weakref.ref, Tensor]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every stored vector."""
        with self._lock:
            self._items.clear()

    @staticmethod
    def _key(model: Backbone, image_key: tuple, layer: str, size: int) -> tuple:
        return (model.label, id(model), image_key, layer, size)

    def lookup(self, model: Backbone, image_key: tuple, layers: Sequence[str], size: int) -> dict[str, Tensor] | None:
        """All of ``layers`` for one image, or None when any is missing."""
        with self._lock:
            out = {}
            for layer in layers:
                entry = self._items.get(self._key(model, image_key, layer, size))
                if entry is None or entry[0]() is not model:
                    self.misses += 1
                    return None
                out[layer] = entry[1]
            self.hits += 1
            return out

    def store(self, model: Backbone, image_key: tuple, vectors: dict[str, Tensor], size: int) -> None:
        """Keep one image's pooled vectors."""
        ref = weakref.ref(model)
        with self._lock:
            for layer, vector in vectors.items():
                self._items[self._key(model, image_key, layer, size)] = (ref, vector)


# --------------------------------------------------------------------------- image sets


@dataclass
class ImageSources:
    """What a set argument became: one source per image (a path or a 1×3×H×W tensor), a display
    name per image, and notes on what was skipped or converted (appended to as the set is used)."""

    label: str
    sources: list[Any]
    names: list[str]
    notes: list[str] = field(default_factory=list)


def image_sources(images: ImageSet, label: str) -> ImageSources:
    """Collection, folder, list of images or N×3×H×W tensor -> an :class:`ImageSources` named ``label``.

    Nothing is decoded here: a folder is listed, a tensor split into 1×3×H×W images.
    """
    if isinstance(images, Tensor):
        batch = ensure_image_batch(images, label)
        return ImageSources(label, [batch[i : i + 1] for i in range(batch.shape[0])],
                            [f"{label}[{i}]" for i in range(batch.shape[0])])
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_dir():
            images = Collection.from_folder(path)
        elif path.is_file():
            images = [path]
        else:
            raise ValueError(f"{label}: {path} does not exist; pass a folder of images, a list of files or a tensor")
    if isinstance(images, Collection):
        notes = list(images.notes)
        if images.skipped:
            notes.append(_skipped_note(label, images.skipped))
        return ImageSources(label, list(images.paths), [str(p) for p in images.paths], notes)
    if isinstance(images, Iterable):
        sources = [Path(s).expanduser() if isinstance(s, (str, os.PathLike)) else s for s in images]
        return ImageSources(label, sources, [str(s) if isinstance(s, Path) else f"{label}[{i}]"
                                     for i, s in enumerate(sources)])
    raise TypeError(
        f"{label} must be a Collection, a folder path, a list of image paths or an N×3×H×W tensor, "
        f"got {type(images).__name__}"
    )


def _skipped_note(label: str, skipped: Sequence[tuple[Any, str]]) -> str:
    listed = "; ".join(f"{p} ({why})" for p, why in skipped[:10])
    more = f"; … and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return f"{label}: skipped {len(skipped)} unreadable file(s): {listed}{more}"


_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _source_shape(source: Any) -> tuple[tuple[int, int] | None, bool]:
    """((height, width), is_grayscale) from a file header or an in-memory image; (None, False) if unknown."""
    if isinstance(source, Path):
        try:  # only a regular file is opened: a FIFO would block here forever (refused when loading)
            with open_regular(source, str(source)) as fh, Image.open(fh) as im:
                return (im.size[1], im.size[0]), im.mode in _GRAY_MODES
        except Exception:  # unreadable files are reported when loading
            return None, False
    if isinstance(source, Tensor):
        return tuple(source.shape[-2:]), False
    if isinstance(source, np.ndarray):
        return source.shape[:2], source.ndim == 2 or source.shape[-1] in (1, 2)
    if isinstance(source, Image.Image):
        return (source.size[1], source.size[0]), source.mode in _GRAY_MODES
    return None, False


def size_notes(images: ImageSources, size: int) -> list[str]:
    """Say how images were brought to size×size, and how many were grayscale."""
    shapes, gray = [], 0
    for source in images.sources:
        shape, is_gray = _source_shape(source)
        if shape is not None:
            shapes.append(shape)
        gray += is_gray
    notes = []
    distinct = sorted(set(shapes))
    if distinct and distinct != [(size, size)]:
        hs, ws = [s[0] for s in shapes], [s[1] for s in shapes]
        if len(distinct) == 1:
            where = f"all {hs[0]}×{ws[0]} px (H×W)"
        else:
            where = f"{len(distinct)} different sizes, {min(hs)}–{max(hs)} × {min(ws)}–{max(ws)} px (H×W)"
        notes.append(
            f"{images.label}: {len(shapes)} images ({where}) resized (shorter side to {size} px) "
            f"and centre-cropped to {size}×{size}"
        )
    if gray:
        notes.append(f"{images.label}: {gray} grayscale image(s) converted to RGB (gray copied to 3 channels)")
    return notes


def _image_key(source: Any, loaded: Tensor | None) -> tuple:
    if isinstance(source, Path):
        try:
            return _file_key(source)
        except OSError:
            pass
    if loaded is None:
        loaded = load_image(source)
    return ("data", tensor_digest(loaded))


def _pool(act: Tensor) -> Tensor:
    """Spatial average: N×C×H×W -> N×C (already flat N×C vectors pass through), float32 on the CPU."""
    act = act.detach()
    if act.ndim == 4:
        act = act.mean(dim=(2, 3))
    return act.to("cpu", torch.float32)


def _load_failure(exc: Exception) -> str:
    """Why an image could not be loaded, for a skipped list: the reason of an ImageLoadError,
    else the error itself with what to do (bounded in length: it may quote the file)."""
    if isinstance(exc, ImageLoadError):
        return exc.reason
    text = str(exc)
    text = text if len(text) <= 200 else text[:197] + "..."
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return (f"ran out of memory while decoding it ({type(exc).__name__}: {text}); "
                "shrink the file or load it alone with artlab.images.load_image to see why")
    return (f"unexpected error while decoding it ({type(exc).__name__}: {text}); "
            "check the file with artlab.images.load_image")


def batched_forward(
    model: Backbone, sources: Sequence[Any], names: Sequence[str], todo: Sequence[int], layers: list[str], *,
    size: int, batch_size: int, device: torch.device, skipped: list[tuple[str, str]],
    pool: Callable[[Tensor], Tensor] = _pool, reuse: Callable[[int, Tensor], bool] | None = None,
) -> Iterator[tuple[int, list[int], dict[str, Tensor]]]:
    """artlab's one image-batching loop for per-image features (also behind :mod:`artlab.embed`).

    Loads ``sources[i]`` for each ``i`` in ``todo`` as a size×size crop (shorter side
    resized, centre crop), ``batch_size`` images at a time; runs one forward pass per
    batch that stops at the deepest of ``layers``; and applies ``pool`` (N×C×H×W -> N×D on
    the CPU; default the spatial mean) to every layer inside the loop, so full maps are dropped at once. Yields
    (images of ``todo`` consumed, indices computed, {layer: pooled rows in that order})
    after each batch, so callers can store, report progress or stop between batches.
    Images that fail to load are appended to ``skipped`` as (name, reason), whatever the
    failure (a refused file, or an unexpected error or lack of memory while decoding
    one): one bad file never ends a collection run, and the batches before it are kept.
    ``reuse(i, image)`` may claim a loaded image (a cache hit on its content) so that it
    skips the forward pass.
    """
    for start in range(0, len(todo), batch_size):
        chunk, batch = [], []
        for i in todo[start : start + batch_size]:
            try:
                image = load_images([sources[i]], size)
            except Exception as exc:  # noqa: BLE001 - skipped and listed, never fatal (see docstring)
                skipped.append((names[i], _load_failure(exc)))
                continue
            if reuse is not None and reuse(i, image):
                continue
            chunk.append(i)
            batch.append(image)
        pooled: dict[str, Tensor] = {}
        if batch:
            acts = features(model, torch.cat(batch).to(device), layers)  # one forward, to the deepest layer
            pooled = {layer: pool(acts[layer]) for layer in layers}  # full maps are dropped here
            del acts
        yield min(batch_size, len(todo) - start), chunk, pooled


def pool_set(
    model: Backbone, images: ImageSources, layers: list[str], *, size: int, batch_size: int, progress: bool | None,
    cache: FeatureStore | None, device: torch.device, on_progress: Progress | None,
) -> tuple[dict[str, Tensor], list[int]]:
    """Pooled features {layer: N×C} of every loadable image of ``images``; (features, indices of the images used).

    Vectors found in ``cache`` are reused and new ones stored batch by batch; files that cannot
    be read are listed in ``images.notes``. ``on_progress(f"features {label}", done, total)``
    after each batch; a progress bar when ``progress``. No image loaded gives ({}, []): callers
    say what that means for them.
    """
    vectors: dict[int, dict[str, Tensor]] = {}
    keys: dict[int, tuple] = {}
    skipped: list[tuple[str, str]] = []
    todo: list[int] = []
    for i, source in enumerate(images.sources):
        if isinstance(source, Path) and cache is not None:
            try:
                keys[i] = _file_key(source)
            except OSError as exc:
                skipped.append((str(source), f"unreadable: {exc.strerror or exc}"))
                continue
            found = cache.lookup(model, keys[i], layers, size)
            if found is not None:
                vectors[i] = found
                continue
        todo.append(i)

    def reuse(i: int, image: Tensor) -> bool:
        """In-memory images are keyed by content once loaded: a stored one skips the forward."""
        if cache is None or i in keys:
            return False
        keys[i] = _image_key(images.sources[i], image)
        found = cache.lookup(model, keys[i], layers, size)
        if found is not None:
            vectors[i] = found
        return found is not None

    bar = progress_bar(len(todo), f"{images.label}: {model.name} features", enabled=progress, unit="img")
    done = 0
    try:
        for consumed, chunk, pooled in batched_forward(
            model, images.sources, images.names, todo, layers, size=size, batch_size=batch_size,
            device=device, skipped=skipped, reuse=reuse,
        ):
            for row, i in enumerate(chunk):
                vectors[i] = {layer: pooled[layer][row].clone() for layer in layers}
                if cache is not None:
                    cache.store(model, keys[i], vectors[i], size)
            done += consumed
            bar.update(consumed)
            if on_progress is not None:
                on_progress(f"features {images.label}", done, len(todo))
    finally:
        bar.close()
    if skipped:
        images.notes.append(_skipped_note(images.label, skipped))
    used = sorted(vectors)
    if not used:  # callers say what that means for them
        return {}, []
    return {layer: torch.stack([vectors[i][layer] for i in used]) for layer in layers}, used



def check_size(size: object) -> int:
    """The square crop side ``size`` as an int; ValueError unless it is an int of at least 8 pixels."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int of at least 8 pixels (the square crop side), got {size!r}")
    return int(size)


def pooled_features(
    model: Backbone,
    images_or_set: ImageSet,
    layers: str | Iterable[str],
    *,
    size: int = 224,
    batch_size: int = 8,
    progress: bool | None = None,
    cache: FeatureStore | None = None,
    device: str | torch.device | None = None,
    notes: list[str] | None = None,
    name: str = "images",
    on_progress: Progress | None = None,
) -> dict[str, Tensor]:
    """Spatially average-pooled features {layer: N×C} of a set of images.

    ``images_or_set``: a :class:`~artlab.data.Collection`, a folder, a list of paths (or
    PIL images/arrays/tensors) or an N×3×H×W tensor. Every image is resized (shorter side
    to ``size``) and centre-cropped to size×size, then batched; each batch runs one forward
    pass that stops at the deepest requested layer, and each layer is pooled inside the
    loop so full maps are never kept. Unreadable files are skipped. What was resized,
    converted or skipped is appended to ``notes`` when given. ``cache`` (a
    :class:`FeatureStore`) makes later calls reuse vectors already computed; they are
    stored batch by batch, so an interrupted run loses nothing. ``on_progress(stage, done,
    total)`` (an :data:`artlab.runs.Progress`) is called after every batch (raise from it to
    stop); a progress bar shows in notebooks and terminals (``progress=False``: none).
    """
    names = layer_list(layers)
    for layer in names:
        model.resolve_layer(layer)
    if cache is not None and not isinstance(cache, FeatureStore):
        raise TypeError(f"cache must be an artlab.activations.FeatureStore, got {type(cache).__name__}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    images = image_sources(images_or_set, name)
    if not images.sources:
        raise ValueError(f"{name} has no images")
    size = check_size(size)
    images.notes += size_notes(images, size)
    feats, used = pool_set(model, images, names, size=size, batch_size=int(batch_size), progress=progress,
                           cache=cache, device=model_device(model, device), on_progress=on_progress)
    if notes is not None:
        notes.extend(images.notes)
    if not used:
        raise ValueError(
            f"none of the {len(images.sources)} images of {name} could be loaded: {' | '.join(images.notes)}"
        )
    return feats

