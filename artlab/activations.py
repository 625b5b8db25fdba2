"""How a CNN sees art: feature maps, channel statistics, spectra and per-layer domain shift.

Two scales of question, one module:

* **One painting, one photo.** :class:`ActivationCache` memoises forward passes so a
  widget can switch layers without re-running the network; :func:`channel_stats`,
  :func:`top_channels`, :func:`top_difference` and :func:`disagreement` say which
  channels fire and where a painting and a photo disagree; :func:`radial_spectrum`
  says at which spatial frequencies a layer's maps carry their energy.
* **Two sets of images** (paintings vs photos). :func:`domain_shift` pools each
  layer's maps to one vector per image (:func:`pooled_features`) and measures, layer
  by layer, how far apart the two clouds of vectors are: the Fréchet distance (the FID
  formula), KID (unbiased polynomial-kernel MMD²), an RBF-kernel MMD² with a
  permutation test, and the accuracy of a linear probe. Every number comes with n, the
  feature dimension, a bootstrap interval and a note when n is too small for it.

Small samples are the normal case here (tens of images against 64-512 channels):
when n ≤ dim a covariance is singular, so the Fréchet distance switches to a
Ledoit-Wolf shrinkage covariance and a :class:`SmallSampleWarning` is raised; KID and
the MMD test are unbiased and remain valid at small n. All randomness (bootstrap,
permutations, CV folds) comes from ``seed`` via numpy Generators: same seed, same table.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from artlab.data import Collection
from artlab.figures import ArtlabFigure, stamp_model
from artlab.images import ImageLoadError, _open_regular, ensure_image_batch, load_image, load_images
from artlab.models import Backbone, features, receptive_field

__all__ = [
    "MEASURES",
    "CHANNEL_STATS",
    "SmallSampleWarning",
    "ActivationCache",
    "FeatureStore",
    "ChannelStats",
    "DomainShift",
    "feature_maps",
    "channel_stats",
    "top_channels",
    "top_difference",
    "disagreement",
    "example_maps",
    "radial_spectrum",
    "layer_spectra",
    "plot_spectra",
    "pooled_features",
    "frechet_distance",
    "kid",
    "mmd_test",
    "probe_accuracy",
    "bootstrap_ci",
    "domain_shift",
    "default_layers",
]

#: The set-to-set measures :func:`domain_shift` knows, in table order.
MEASURES = ("frechet", "kid", "mmd", "probe")
#: The per-channel statistics :func:`top_channels` and friends rank by.
CHANNEL_STATS = ("mean", "energy", "std", "active")
MIN_PER_SET = 2

ImageSet = Union[Collection, str, "os.PathLike[str]", Sequence[Any], Tensor]
ProgressFn = Callable[[str, int, int], None]


class SmallSampleWarning(UserWarning):
    """Fewer images than feature dimensions: covariances are singular, estimates noisy."""


# --------------------------------------------------------------------------- hashing


def _tensor_digest(images: Tensor) -> str:
    """A content hash of a tensor (sha1 of its float32 bytes plus its shape)."""
    data = images.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha1(data.numpy().tobytes())
    digest.update(str(tuple(data.shape)).encode())
    return digest.hexdigest()


def _file_key(path: Path) -> tuple:
    """A file's identity for caching: resolved path, modification time and size."""
    stat = path.stat()
    return ("file", str(path.resolve()), stat.st_mtime_ns, stat.st_size)


# --------------------------------------------------------------------------- caches


class ActivationCache:
    """Memoised feature maps: {(model, image content, layer): activation}, least recently used out.

    ``get(model, image, layers)`` runs one forward pass, to the deepest layer that is not
    cached yet, and keeps every requested layer; asking again for any of them (or a subset)
    costs a hash of the image. Request all layers a view needs in the first call: layers
    never requested are not kept. Entries are keyed by ``id(model)``, ``model.label``, the
    image's content hash and the canonical layer name, and are checked against a weak
    reference to the model, so a new model that happens to reuse an id never gets stale maps.

    ``max_items`` counts (image, layer) maps. Thread-safe: one lock around lookups and the
    forward pass, so two threads asking for the same maps run the network once.
    Returned tensors are shared with the cache: treat them as read-only.
    """

    def __init__(self, max_items: int = 32) -> None:
        if int(max_items) < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items = int(max_items)
        self._items: OrderedDict[tuple, tuple[weakref.ref, Tensor]] = OrderedDict()
        self._lock = threading.RLock()
        self.forwards = 0  # forward passes run (for tests and curiosity)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Forget every stored map."""
        with self._lock:
            self._items.clear()

    def get(self, model: Backbone, image: Tensor, layers: str | Iterable[str]) -> dict[str, Tensor]:
        """Activations {layer: N×C×H×W} of ``image`` (a 1×3×H×W image or a batch) at ``layers``."""
        names = _layer_list(layers)
        canonical = {name: model.resolve_layer(name) for name in names}
        image = ensure_image_batch(image).detach()
        digest = _tensor_digest(image)
        with self._lock:
            found: dict[str, Tensor] = {}
            missing: list[str] = []
            for layer in dict.fromkeys(canonical.values()):
                entry = self._items.get((id(model), model.label, digest, layer))
                if entry is not None and entry[0]() is model:
                    self._items.move_to_end((id(model), model.label, digest, layer))
                    found[layer] = entry[1]
                    self.hits += 1
                else:
                    missing.append(layer)
                    self.misses += 1
            if missing:
                out = features(model, image, missing)  # stops at the deepest missing layer
                self.forwards += 1
                ref = weakref.ref(model)
                for layer in missing:
                    found[layer] = out[layer].detach()
                    self._items[(id(model), model.label, digest, layer)] = (ref, found[layer])
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return {name: found[canonical[name]] for name in names}


class FeatureStore:
    """Pooled features per image, kept across calls: {(model, image, layer, size): C-vector}.

    Pass one as ``cache=`` to :func:`pooled_features` or :func:`domain_shift` and repeated
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


# --------------------------------------------------------------------------- feature maps


def _layer_list(layers: str | Iterable[str]) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("no layers given; pass at least one layer name, e.g. layers=['relu3_1']")
    return names


def feature_maps(
    model: Backbone, images: Tensor, layers: str | Iterable[str], *, cache: ActivationCache | None = None
) -> dict[str, Tensor]:
    """Activations {layer: N×C×H×W} of ``images`` (one forward pass, through ``cache`` if given).

    Layer names are checked first: an unknown one raises ``ValueError`` listing the valid names.
    """
    names = _layer_list(layers)
    for name in names:
        model.resolve_layer(name)
    if cache is not None:
        return cache.get(model, images, names)
    out = features(model, ensure_image_batch(images), names)
    return {name: act.detach() for name, act in out.items()}


# --------------------------------------------------------------------------- channel statistics


@dataclass
class ChannelStats:
    """Per-image, per-channel summaries of one layer's maps (each N×C).

    ``mean`` and ``std`` over positions, ``active`` the fraction of positions > 0 (after
    a ReLU: how much of the image the channel responds to), ``energy`` the mean squared
    activation (the Gram diagonal with "hw" normalisation).
    """

    layer: str
    mean: Tensor
    std: Tensor
    active: Tensor
    energy: Tensor

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (image, channel) with mean, std, active, energy."""
        n, c = self.mean.shape
        return pd.DataFrame({
            "layer": self.layer,
            "image": np.repeat(np.arange(n), c),
            "channel": np.tile(np.arange(c), n),
            "mean": self.mean.reshape(-1).numpy(),
            "std": self.std.reshape(-1).numpy(),
            "active": self.active.reshape(-1).numpy(),
            "energy": self.energy.reshape(-1).numpy(),
        })

    def get(self, by: str) -> Tensor:
        """The N×C tensor of statistic ``by`` (one of :data:`CHANNEL_STATS`)."""
        return getattr(self, _check_stat(by))


def _check_stat(by: str) -> str:
    if by not in CHANNEL_STATS:
        raise ValueError(f"unknown statistic {by!r}; choose one of {', '.join(CHANNEL_STATS)}")
    return by


def _as_maps(activation: Tensor, what: str = "activation") -> Tensor:
    """N×C×H×W float32 on the CPU; a C×H×W map gets a batch axis, N×C vectors become 1×1 maps."""
    if not isinstance(activation, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor (N×C×H×W), got {type(activation).__name__}")
    act = activation.detach().to("cpu", torch.float32)
    if act.ndim == 3:
        act = act.unsqueeze(0)
    elif act.ndim == 2:
        act = act[:, :, None, None]
    if act.ndim != 4:
        raise ValueError(f"{what} must be N×C×H×W (or C×H×W), got shape {tuple(activation.shape)}")
    return act


def channel_stats(activation: Tensor, layer: str = "") -> ChannelStats:
    """Per-channel mean, std, fraction active and energy of each image's maps (N×C×H×W)."""
    flat = _as_maps(activation).flatten(2)
    return ChannelStats(
        layer=layer,
        mean=flat.mean(2),
        std=flat.std(2, unbiased=False),
        active=(flat > 0).float().mean(2),
        energy=flat.square().mean(2),
    )


def _channel_profile(activation: Tensor, by: str) -> Tensor:
    """One value per channel: statistic ``by`` averaged over the images of the batch."""
    return channel_stats(activation).get(by).mean(0)


def _check_k(k: int, channels: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(int(k), channels)


def top_channels(activation: Tensor, k: int, by: str = "mean") -> list[int]:
    """The ``k`` channels with the largest statistic ``by`` (mean|energy|std|active).

    For a batch the statistic is averaged over its images.
    """
    profile = _channel_profile(activation, _check_stat(by))
    return torch.topk(profile, _check_k(k, profile.numel())).indices.tolist()


def top_difference(act_a: Tensor, act_b: Tensor, k: int, by: str = "mean") -> list[int]:
    """The ``k`` channels whose statistic ``by`` differs most (absolute) between two images.

    Compares per-channel statistics, not maps, so the two may have different sizes.
    """
    a = _channel_profile(act_a, _check_stat(by))
    b = _channel_profile(act_b, by)
    if a.numel() != b.numel():
        raise ValueError(f"the activations have {a.numel()} and {b.numel()} channels; compare the same layer")
    return torch.topk((a - b).abs(), _check_k(k, a.numel())).indices.tolist()


def disagreement(
    model: Backbone, a: Tensor, b: Tensor, layer: str, k: int = 10, *,
    cache: ActivationCache | None = None, by: str = "mean",
) -> pd.DataFrame:
    """The channels a painting (``a``) and a photo (``b``) disagree on most at ``layer``.

    Columns channel, stat_a, stat_b, diff (= stat_a − stat_b), sorted by |diff|.
    """
    act_a = feature_maps(model, a, layer, cache=cache)[layer]
    act_b = feature_maps(model, b, layer, cache=cache)[layer]
    sa, sb = _channel_profile(act_a, _check_stat(by)), _channel_profile(act_b, by)
    frame = pd.DataFrame({"channel": np.arange(sa.numel()), "stat_a": sa.numpy(), "stat_b": sb.numpy()})
    frame["diff"] = frame["stat_a"] - frame["stat_b"]
    order = frame["diff"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].head(_check_k(k, len(frame))).reset_index(drop=True)


def example_maps(
    model: Backbone, images: Tensor, layer: str, channel: int, k: int = 3, *, cache: ActivationCache | None = None
) -> tuple[Tensor, list[int]]:
    """The maps of ``channel`` at ``layer`` for the ``k`` images that activate it most (by mean).

    Returns (k×H×W maps, their indices in ``images``), strongest first.
    """
    act = feature_maps(model, images, layer, cache=cache)[layer]
    act = _as_maps(act)
    if not 0 <= int(channel) < act.shape[1]:
        raise ValueError(
            f"{layer} has {act.shape[1]} channels; channel must be in 0..{act.shape[1] - 1}, got {channel}"
        )
    score = act[:, int(channel)].flatten(1).mean(1)
    order = torch.topk(score, _check_k(k, score.numel())).indices.tolist()
    return act[order, int(channel)], order


# --------------------------------------------------------------------------- spectra


def radial_spectrum(activation: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of each image's maps: (freqs, power N×F).

    Per channel: remove the spatial mean, apply a 2-D Hann window (so the map's edges do
    not add spurious high frequencies), take |FFT|² / (H·W); then average the power over
    rings of equal radial frequency (bin width 1/min(H, W) cycles per pixel, up to the
    Nyquist limit 0.5) and over channels. ``freqs`` are the ring centres in cycles per
    pixel of the map (multiply by the layer's stride for cycles per image pixel).
    """
    act = _as_maps(activation)
    n, c, h, w = act.shape
    if min(h, w) < 4:
        raise ValueError(
            f"the maps are {h}×{w}: too small for a spectrum (need at least 4×4); "
            "use a larger image or a shallower layer"
        )
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    side = min(h, w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    ring = np.rint(np.sqrt(fx**2 + fy**2) * side).astype(int).ravel()
    bins = side // 2 + 1
    keep = ring < bins  # the corners beyond Nyquist are dropped
    counts = np.bincount(ring[keep], minlength=bins)
    power = np.zeros((n, bins))
    for i in range(n):  # one image at a time keeps memory at one C×H×W spectrum
        maps = act[i] - act[i].mean(dim=(1, 2), keepdim=True)
        spec = torch.fft.fft2(maps * window).abs().square().mean(0) / (h * w)
        sums = np.bincount(ring[keep], weights=spec.numpy().ravel()[keep], minlength=bins)
        power[i] = sums / np.maximum(counts, 1)
    return np.arange(bins) / side, power


def layer_spectra(
    model: Backbone, images: Tensor, layers: str | Iterable[str], *, cache: ActivationCache | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`radial_spectrum` of ``images`` at each layer (one forward pass)."""
    acts = feature_maps(model, images, layers, cache=cache)
    return {layer: radial_spectrum(act) for layer, act in acts.items()}


def _model_tag(model: Backbone | None = None, label: str | None = None, pretrained: bool = False):
    """Something stamp_model accepts, from a model or from a stored label."""
    return model if model is not None else SimpleNamespace(label=label, pretrained=pretrained)


def plot_spectra(
    spectra_a: dict[str, tuple[np.ndarray, np.ndarray]],
    spectra_b: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: tuple[str, str] = ("painting", "photo"),
    model: Backbone | None = None,
) -> ArtlabFigure:
    """Log-log radial spectra per layer, two sets (mean over images) in one panel per layer."""
    layers = [layer for layer in spectra_a if layer in spectra_b]
    if not layers:
        raise ValueError("spectra_a and spectra_b share no layer; compute both with the same layers")
    fig = ArtlabFigure(figsize=(3.0 * len(layers), 3.2))
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        for (freqs, power), name, colour in zip((spectra_a[layer], spectra_b[layer]), labels, ("#8e44ad", "#2980b9")):
            mean = np.asarray(power).mean(0)
            ax.loglog(freqs[1:], np.maximum(mean[1:], 1e-20), label=name, color=colour)  # the DC ring is ~0
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("cycles / pixel of the map", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("power", fontsize=8)
    axes[0].legend(fontsize=8)
    title = "Radial power spectrum of feature maps"
    fig.suptitle(title if model is None else f"{title} · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if model is not None else 0, 1, 1))
    return stamp_model(fig, model) if model is not None else fig


# --------------------------------------------------------------------------- image sets


@dataclass
class _ImageSet:
    """What a set argument became: one source per image (a path or a 1×3×H×W tensor)."""

    label: str
    sources: list[Any]
    names: list[str]
    notes: list[str] = field(default_factory=list)


def _set_from(images: ImageSet, label: str) -> _ImageSet:
    """Collection, folder, list of images or N×3×H×W tensor -> an _ImageSet."""
    if isinstance(images, Tensor):
        batch = ensure_image_batch(images, label)
        return _ImageSet(label, [batch[i : i + 1] for i in range(batch.shape[0])],
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
        return _ImageSet(label, list(images.paths), [str(p) for p in images.paths], notes)
    if isinstance(images, Iterable):
        sources = [Path(s).expanduser() if isinstance(s, (str, os.PathLike)) else s for s in images]
        return _ImageSet(label, sources, [str(s) if isinstance(s, Path) else f"{label}[{i}]"
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
            with _open_regular(source, str(source)) as fh, Image.open(fh) as im:
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


def _size_notes(images: _ImageSet, size: int) -> list[str]:
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
    return ("data", _tensor_digest(loaded))


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


def _batched_forward(
    model: Backbone, sources: Sequence[Any], names: Sequence[str], todo: Sequence[int], layers: list[str], *,
    size: int, batch_size: int, device: torch.device, skipped: list[tuple[str, str]],
    pool: Callable[[Tensor], Tensor] = _pool, reuse: Callable[[int, Tensor], bool] | None = None,
) -> Iterator[tuple[int, list[int], dict[str, Tensor]]]:
    """artlab's one image-batching loop for per-image features (also behind :mod:`artlab.embed`).

    Loads ``sources[i]`` for each ``i`` in ``todo`` as a size×size crop (shorter side
    resized, centre crop), ``batch_size`` images at a time; runs one forward pass per
    batch that stops at the deepest of ``layers``; and applies ``pool`` (N×C×H×W -> N×D on
    the CPU) to every layer inside the loop, so full maps are dropped at once. Yields
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


def _pool_set(
    model: Backbone, images: _ImageSet, layers: list[str], *, size: int, batch_size: int, progress: bool,
    cache: FeatureStore | None, device: torch.device, on_progress: ProgressFn | None,
) -> tuple[dict[str, Tensor], list[int]]:
    """Pooled features of every loadable image; (features, indices of the images used)."""
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

    bar = tqdm(total=len(todo), desc=f"{images.label}: {model.name} features", unit="img", disable=not progress)
    done = 0
    try:
        for consumed, chunk, pooled in _batched_forward(
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


def _model_device(model: Backbone, device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else model.mean.device


def _check_size(size: object) -> int:
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
    progress: bool = True,
    cache: FeatureStore | None = None,
    device: str | torch.device | None = None,
    notes: list[str] | None = None,
    name: str = "images",
    on_progress: ProgressFn | None = None,
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
    total)`` is called after every batch (raise from it to stop).
    """
    names = _layer_list(layers)
    for layer in names:
        model.resolve_layer(layer)
    if cache is not None and not isinstance(cache, FeatureStore):
        raise TypeError(f"cache must be an artlab.activations.FeatureStore, got {type(cache).__name__}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    images = _set_from(images_or_set, name)
    if not images.sources:
        raise ValueError(f"{name} has no images")
    size = _check_size(size)
    images.notes += _size_notes(images, size)
    feats, used = _pool_set(model, images, names, size=size, batch_size=int(batch_size), progress=progress,
                            cache=cache, device=_model_device(model, device), on_progress=on_progress)
    if notes is not None:
        notes.extend(images.notes)
    if not used:
        raise ValueError(
            f"none of the {len(images.sources)} images of {name} could be loaded: {' | '.join(images.notes)}"
        )
    return feats


# --------------------------------------------------------------------------- measures


def _single_threaded_blas():
    """A context running BLAS on one thread (or nothing, without threadpoolctl).

    The statistics use many small matrices (≤ a few hundred wide); with several BLAS
    threads on a busy 2-core machine they ran 6× slower than on one (measured here).
    """
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _one_blas_thread(fn):
    """Run ``fn`` with :func:`_single_threaded_blas` (many small matrices: one thread is faster)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper


def _matrix(x: Any, name: str) -> np.ndarray:
    """A float64 n×d numpy array from a tensor or array (rows = images)."""
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of pooled features (images × dims), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair(a: Any, b: Any, minimum: int = MIN_PER_SET) -> tuple[np.ndarray, np.ndarray]:
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b have different feature dimensions ({a.shape[1]} vs {b.shape[1]}); use one layer")
    for name, x in (("a", a), ("b", b)):
        if len(x) < minimum:
            raise ValueError(f"{name} has {len(x)} rows; this measure needs at least {minimum} per set")
    return a, b


@dataclass(frozen=True)
class _Covariance:
    """A covariance kept as alpha·I + U Uᵀ (U: d×k), so n ≪ d never needs a d×d eigensolve."""

    alpha: float
    u: np.ndarray

    def trace(self) -> float:
        return self.alpha * len(self.u) + float((self.u**2).sum())

    def full(self) -> np.ndarray:
        return self.alpha * np.eye(len(self.u)) + self.u @ self.u.T


def _covariance(x: np.ndarray, method: str | float) -> _Covariance:
    """Sample covariance (ddof=1), Ledoit-Wolf, or shrunk toward tr(Σ)/d · I by a fixed amount."""
    n, d = x.shape
    xc = x - x.mean(0)
    if method == "ledoit-wolf":
        from sklearn.covariance import ledoit_wolf_shrinkage

        # sklearn's LedoitWolf: (1 − s)·S + s·tr(S)/d·I with S the maximum-likelihood (ddof=0) covariance.
        s = float(ledoit_wolf_shrinkage(x)) if d > 1 else 0.0
        return _Covariance(s * float((xc**2).sum()) / (n * d), math.sqrt((1 - s) / n) * xc.T)
    s = 0.0 if method == "empirical" else float(method)
    return _Covariance(s * float((xc**2).sum()) / ((n - 1) * d), math.sqrt((1 - s) / (n - 1)) * xc.T)


def _shrinkage_method(shrinkage: Any, n: int, d: int) -> str | float:
    """The covariance estimator a ``shrinkage`` argument stands for, given n and d."""
    if shrinkage == "auto":
        # A sample covariance of n points has rank ≤ n − 1, singular when n ≤ d.
        return "ledoit-wolf" if n <= d else "empirical"
    if shrinkage is None or shrinkage == "empirical":
        return "empirical"
    if shrinkage == "ledoit-wolf":
        return shrinkage
    if isinstance(shrinkage, (int, float)) and not isinstance(shrinkage, bool) and 0 <= shrinkage <= 1:
        return float(shrinkage)
    raise ValueError(
        f"shrinkage must be 'auto', 'ledoit-wolf', None (or 'empirical') or a number in [0, 1], got {shrinkage!r}"
    )


def _sym_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr √(S1 S2) for symmetric PSD S1, S2.

    The reference FID code takes scipy.linalg.sqrtm(S1 @ S2) and drops imaginary parts.
    Here the same trace comes from the symmetric matrix √S1 S2 √S1 (similar to S1 S2, so it
    has the same eigenvalues), whose eigenvalues are real and ≥ 0: no complex round-off.
    """
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def _trace_sqrt_product(ca: _Covariance, cb: _Covariance) -> float:
    """tr √(Σa Σb), exactly, in the span of the two sets' centred data when that is smaller than d.

    Both Σ = αI + U Uᵀ map the span Q of [Ua, Ub] (k = na + nb columns) into itself and act
    as αa·αb on its orthogonal complement, so the eigenvalues of Σa Σb are those of the
    k×k restrictions' product plus (d − k) copies of αa·αb.
    """
    d, k = len(ca.u), ca.u.shape[1] + cb.u.shape[1]
    if k >= d:
        return _sym_trace_sqrt(ca.full(), cb.full())
    q, _ = np.linalg.qr(np.hstack([ca.u, cb.u]))
    ua, ub = q.T @ ca.u, q.T @ cb.u
    inner = _sym_trace_sqrt(ca.alpha * np.eye(k) + ua @ ua.T, cb.alpha * np.eye(k) + ub @ ub.T)
    return inner + (d - k) * math.sqrt(max(ca.alpha * cb.alpha, 0.0))


@_one_blas_thread
def frechet_distance(a: Any, b: Any, *, shrinkage: str | float | None = "auto") -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (the FID formula).

    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½). ``shrinkage``: ``"auto"`` uses Ledoit-Wolf
    covariances when a set has n ≤ dim rows (the sample covariance would be singular),
    else the sample covariance; ``"ledoit-wolf"`` always, ``None`` never; a number s in
    [0, 1] shrinks each covariance toward tr(Σ)/d · I by s. Shrinkage trades variance for
    a bias that depends on n, so compare distances computed with equal set sizes.
    """
    a, b = _pair(a, b)
    method = _shrinkage_method(shrinkage, min(len(a), len(b)), a.shape[1])
    ca, cb = _covariance(a, method), _covariance(b, method)
    diff = a.mean(0) - b.mean(0)
    value = diff @ diff + ca.trace() + cb.trace() - 2 * _trace_sqrt_product(ca, cb)
    return max(float(value), 0.0)  # ≥ 0 in exact arithmetic; clip round-off


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, coef0: float) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD² from kernel blocks: within-set means exclude the diagonal (i = j) terms."""
    m, n = len(kxx), len(kyy)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kid(a: Any, b: Any, *, degree: int = 3, coef0: float = 1.0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x, y) = (x·y/d + coef0)^degree.

    Unbiased at any n ≥ 2 (its expectation is 0 when both sets come from one
    distribution, so small negative values happen). Bińkowski et al. (2018) average it
    over random subsets of 1000; with the tens of images used here the whole sets are used.
    """
    a, b = _pair(a, b)
    return _mmd2_unbiased(_poly_kernel(a, a, degree, coef0), _poly_kernel(b, b, degree, coef0),
                          _poly_kernel(a, b, degree, coef0))


def _rbf_gram(z: np.ndarray) -> np.ndarray:
    """RBF kernel matrix exp(−‖x−y‖² / 2σ²) with σ² the median squared pairwise distance."""
    sq = (z**2).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0, None)
    off = d2[np.triu_indices(len(z), k=1)]
    positive = off[off > 0]
    sigma2 = float(np.median(positive)) if len(positive) else 1.0
    return np.exp(-d2 / (2 * sigma2))


def _kernel_matrix(a: np.ndarray, b: np.ndarray, kernel: str, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    z = np.vstack([a, b])
    if kernel == "rbf":
        return _rbf_gram(z)
    if kernel in ("poly", "polynomial", "kid"):
        return _poly_kernel(z, z, degree, coef0)
    raise ValueError(f"unknown kernel {kernel!r}; choose 'rbf' or 'poly'")


def _mmd2_from_gram(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> float:
    return _mmd2_unbiased(k[np.ix_(ia, ia)], k[np.ix_(ib, ib)], k[np.ix_(ia, ib)])


@_one_blas_thread
def mmd_test(a: Any, b: Any, *, n_perm: int = 500, seed: int = 0, kernel: str = "rbf") -> tuple[float, float]:
    """Two-sample kernel test (Gretton et al. 2012): (unbiased MMD², permutation p-value).

    RBF kernel with the median heuristic bandwidth (σ² = median squared distance over
    both sets pooled; ``kernel="poly"`` uses KID's kernel instead). The p-value is
    (1 + #{permuted MMD² ≥ observed}) / (1 + n_perm) over ``n_perm`` random relabellings.
    """
    a, b = _pair(a, b)
    if int(n_perm) < 1:
        raise ValueError(f"n_perm must be at least 1, got {n_perm}")
    k = _kernel_matrix(a, b, kernel)
    m, total = len(a), len(a) + len(b)
    observed = _mmd2_from_gram(k, np.arange(m), np.arange(m, total))
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(int(n_perm)):
        perm = rng.permutation(total)
        exceed += _mmd2_from_gram(k, perm[:m], perm[m:]) >= observed
    return observed, (exceed + 1) / (int(n_perm) + 1)


def _cv_balanced_accuracy(x: np.ndarray, y: np.ndarray, splits: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Balanced accuracy of standardised L2 logistic regression on each (train, test) split.

    The same as sklearn's cross_val_score over make_pipeline(StandardScaler(),
    LogisticRegression(class_weight="balanced")) with scoring="balanced_accuracy", written
    out because the bootstrap runs it hundreds of times and the generic machinery doubled
    the cost. ``class_weight="balanced"``: with unequal sets, predicting the larger one
    must not look like skill.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    scores = []
    with warnings.catch_warnings():
        # n ≤ d sets are often separable; L2 keeps the weights finite, the accuracy is what matters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in splits:
            mean, std = x[train].mean(0), x[train].std(0)
            std[std == 0] = 1.0
            clf = LogisticRegression(max_iter=2000, class_weight="balanced")
            clf.fit((x[train] - mean) / std, y[train])
            pred = clf.predict((x[test] - mean) / std)
            scores.append(np.mean([np.mean(pred[y[test] == c] == c) for c in np.unique(y[test])]))
    return np.asarray(scores)


@_one_blas_thread
def probe_accuracy(a: Any, b: Any, *, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Cross-validated accuracy of a linear probe telling set a from set b: (mean, std over folds).

    Standardised features, L2 logistic regression, stratified shuffled folds (``seed``);
    ``folds`` is reduced to the smaller set's size. The score is the *balanced* accuracy
    (mean of the two per-set recalls, classes weighted alike), so 0.5 means
    indistinguishable whatever the set sizes, 1.0 linearly separable.
    """
    from sklearn.model_selection import StratifiedKFold

    a, b = _pair(a, b)
    k = max(2, min(int(folds), len(a), len(b)))
    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    scores = _cv_balanced_accuracy(x, y, StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))
    return float(scores.mean()), float(scores.std())


@_one_blas_thread
def bootstrap_ci(
    stat_fn: Callable[..., float], a: Any, b: Any, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
    indices: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat_fn(a*, b*)``, each set resampled with replacement.

    The two sets are resampled independently (``n_boot`` times, numpy Generator from
    ``seed``). With ``indices=True`` ``stat_fn`` receives the two index arrays instead of
    the resampled rows (so it can treat repeated images itself). Non-finite statistics are
    dropped; (nan, nan) if none is left. The interval shows the spread of the statistic
    over resamples; for a measure biased at small n (the Fréchet distance grows as n
    shrinks) it can lie off the point estimate.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    a, b = _pair(a, b, minimum=1)
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        ia, ib = rng.integers(0, len(a), len(a)), rng.integers(0, len(b), len(b))
        try:
            values[i] = stat_fn(ia, ib) if indices else stat_fn(a[ia], b[ib])
        except (ValueError, np.linalg.LinAlgError):  # a degenerate resample (e.g. one class too small)
            values[i] = np.nan
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


# Bootstrap statistics that know which rows are repeats of one image.


def _mmd2_resampled(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> float:
    """Unbiased MMD² on a bootstrap resample, leaving out pairs that are one image twice.

    A plain U-statistic on a resample counts k(x, x) for repeated images as a within-set
    pair, which biases MMD² upward; excluding same-image pairs centres the bootstrap
    distribution on the full-sample estimate.
    """
    def within(idx: np.ndarray) -> float:
        block = k[np.ix_(idx, idx)]
        distinct = idx[:, None] != idx[None, :]
        return float(block[distinct].mean()) if distinct.any() else math.nan

    return within(ia) + within(ib) - 2 * float(k[np.ix_(ia, ib)].mean())


def _probe_resampled(x: np.ndarray, m: int, ia: np.ndarray, ib: np.ndarray, folds: int, seed: int) -> float:
    """Probe accuracy on a resample with group-aware folds: copies of one image never span train and test."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.r_[ia, ib + m]
    k = min(folds, len(np.unique(ia)), len(np.unique(ib)))
    if k < 2:
        return math.nan
    y = np.r_[np.zeros(len(ia), int), np.ones(len(ib), int)]
    splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(x[groups], y, groups)
    scores = _cv_balanced_accuracy(x[groups], y, splits)
    return float(scores.mean())


# --------------------------------------------------------------------------- domain shift


@dataclass
class DomainShift:
    """Per-layer distances between two image sets, with the features they came from.

    ``table`` is tidy: one row per (layer, measure) with value, bootstrap interval,
    p-value (MMD only), set sizes, feature dimension and a note. ``wide()`` puts one
    row per layer; ``plot()`` draws each measure across depth; ``divergent_channels``
    says which channels separate the sets most at a layer.
    """

    table: pd.DataFrame
    features_a: dict[str, Tensor]
    features_b: dict[str, Tensor]
    model_label: str
    pretrained: bool
    notes: list[str]
    layers: list[str]
    names: tuple[str, str] = ("A", "B")
    size: int = 224
    seed: int = 0
    sources_a: list[str] = field(default_factory=list)
    sources_b: list[str] = field(default_factory=list)

    def wide(self) -> pd.DataFrame:
        """One row per layer (depth order): n_a, n_b, dim and a column per measure (plus mmd_p)."""
        t = self.table
        frame = t.pivot_table(index=["layer", "depth"], columns="measure", values="value", sort=False)
        frame = frame.reset_index().sort_values("depth", kind="stable")
        ordered = [m for m in MEASURES if m in frame.columns]
        extra = t.groupby("layer", sort=False)[["n_a", "n_b", "dim"]].first()
        frame = frame.merge(extra, left_on="layer", right_index=True)
        columns = ["layer", "depth", "n_a", "n_b", "dim"] + ordered
        if "mmd" in ordered:
            p = t[t["measure"] == "mmd"].set_index("layer")["p_value"]
            frame["mmd_p"] = frame["layer"].map(p)
            columns.insert(columns.index("mmd") + 1, "mmd_p")
        frame = frame[columns].reset_index(drop=True)
        frame.columns.name = None
        return frame

    def _header(self) -> str:
        tag = "pretrained" if self.pretrained else "RANDOM INIT (not ImageNet features)"
        a, b = self.names
        n_a, n_b = (int(self.table[c].iloc[0]) if len(self.table) else 0 for c in ("n_a", "n_b"))
        return f"Domain shift {a} (n={n_a}) vs {b} (n={n_b}) · {self.model_label} · {tag} · {self.size} px"

    def _display_frame(self) -> pd.DataFrame:
        """Wide table with 'value [lo, hi]' cells."""
        t = self.table
        out = self.wide()[["layer", "dim"] + [c for c in ("mmd_p",) if c in self.wide().columns]]
        for measure in [m for m in MEASURES if m in set(t["measure"])]:
            rows = t[t["measure"] == measure].set_index("layer")
            out[measure] = [
                f"{rows.at[layer, 'value']:.4g} [{rows.at[layer, 'ci_low']:.3g}, {rows.at[layer, 'ci_high']:.3g}]"
                for layer in out["layer"]
            ]
        if "mmd_p" in out.columns:
            out["mmd_p"] = out["mmd_p"].map(lambda p: f"{p:.3g}")
            out = out[[c for c in out.columns if c != "mmd_p"] + ["mmd_p"]]
        return out

    def __str__(self) -> str:
        lines = [self._header(), self._display_frame().to_string(index=False)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        colour = "#555" if self.pretrained else "#c0392b"
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div><p style='color:{colour};font-weight:bold'>{html.escape(self._header())}</p>"
            f"{self._display_frame().to_html(index=False)}"
            + (f"<ul style='font-size:smaller'>{notes}</ul>" if notes else "")
            + "</div>"
        )

    def divergent_channels(self, layer: str, k: int = 8) -> pd.DataFrame:
        """Channels whose pooled activation separates the sets most at ``layer``.

        Columns channel, mean_a, mean_b, effect: Cohen's d, (mean_a − mean_b) / pooled std
        (NaN for a channel constant in both sets), sorted by |effect|.
        """
        if layer not in self.features_a:
            raise ValueError(f"no features for layer {layer!r}; this result has {', '.join(self.features_a)}")
        a = self.features_a[layer].double().numpy()
        b = self.features_b[layer].double().numpy()
        na, nb = len(a), len(b)
        pooled = np.sqrt(((na - 1) * a.var(0, ddof=1) + (nb - 1) * b.var(0, ddof=1)) / (na + nb - 2))
        diff = a.mean(0) - b.mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1), np.nan)
        frame = pd.DataFrame({"channel": np.arange(a.shape[1]), "mean_a": a.mean(0), "mean_b": b.mean(0),
                              "effect": effect})
        order = frame["effect"].abs().sort_values(ascending=False, kind="stable", na_position="last").index
        return frame.loc[order].head(_check_k(k, len(frame))).reset_index(drop=True)

    def plot(self) -> ArtlabFigure:
        """One panel per measure: value across layers (depth order) with its bootstrap band."""
        t = self.table
        measures = [m for m in MEASURES if m in set(t["measure"])]
        layers = self.wide()["layer"].tolist()
        fig = ArtlabFigure(figsize=(3.3 * len(measures), 3.4))
        axes = fig.subplots(1, len(measures), squeeze=False)[0]
        for ax, measure in zip(axes, measures):
            rows = t[t["measure"] == measure].set_index("layer").loc[layers]
            x = np.arange(len(layers))
            ax.fill_between(x, rows["ci_low"], rows["ci_high"], alpha=0.25, color="#2980b9", lw=0)
            ax.plot(x, rows["value"], "o-", color="#2980b9", ms=4)
            if measure == "mmd":
                sig = rows["p_value"].to_numpy() < 0.05
                ax.plot(x[sig], rows["value"].to_numpy()[sig], "o", color="#c0392b", ms=6, label="p < 0.05")
                if sig.any():
                    ax.legend(fontsize=7)
            if measure == "probe":
                ax.axhline(0.5, color="grey", ls="--", lw=1)
            elif measure in ("kid", "mmd"):
                ax.axhline(0.0, color="grey", ls="--", lw=1)
            ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=7)
            ax.set_title(_MEASURE_TITLES[measure], fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        a, b = self.names
        fig.suptitle(f"Domain shift per layer: {a} vs {b} · {self.model_label}", fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return stamp_model(fig, _model_tag(label=self.model_label, pretrained=self.pretrained))


_MEASURE_TITLES = {
    "frechet": "Fréchet distance",
    "kid": "KID (unbiased MMD², poly)",
    "mmd": "MMD² (RBF), red: p < 0.05",
    "probe": "linear probe accuracy (CV)",
}


def default_layers(model: Backbone) -> list[str]:
    """The model's layers for per-layer views (``spec.inspect_layers``; else its style layers plus its
    content layer), without duplicates, in depth order."""
    names = list(model.spec.inspect_layers) or (
        list(model.spec.style_layers) + ([model.spec.content_layer] if model.spec.content_layer else []))
    if not names:
        raise ValueError(f"{model.name} has no default style layers; pass layers=[...] explicitly")
    return _unique_by_depth(model, names)


def _unique_by_depth(model: Backbone, names: Iterable[str]) -> list[str]:
    """Validate, drop names that resolve to an already listed layer, sort by depth."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(model.resolve_layer(name), name)
    return [seen[c] for c in sorted(seen, key=model.layer_names.index)]


def _check_measures(measures: Iterable[str]) -> list[str]:
    chosen = [measures] if isinstance(measures, str) else list(dict.fromkeys(measures))
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen:
        raise ValueError(f"unknown measures {unknown or chosen}; choose from {', '.join(MEASURES)}")
    return chosen


def _check_layer_sizes(model: Backbone, layers: list[str], size: int) -> list[str]:
    """Refuse a size at which a layer's maps vanish; note layers that see the whole image."""
    notes = []
    for layer in layers:
        try:
            rf, stride = receptive_field(model, layer)
        except ValueError:  # past a global pool: every unit sees the whole image by design
            continue
        if size < stride:
            raise ValueError(
                f"size {size} px is smaller than the {stride} px stride of {layer}: its maps would be empty; "
                f"use size>={stride} or leave {layer} out of layers"
            )
        if size < rf:
            notes.append(f"{layer}: receptive field {rf} px > image size {size} px, its units see the whole image")
    return notes


def _count_check(images: _ImageSet, which: str, n: int | None = None) -> None:
    n = len(images.sources) if n is None else n
    if n < MIN_PER_SET:
        raise ValueError(
            f"{which} has {n} image{'' if n == 1 else 's'}; domain shift needs at least {MIN_PER_SET} per set "
            f"({images.label}). Add images, or pick a folder with more readable files."
            + (f" Notes: {' | '.join(images.notes)}" if images.notes else "")
        )


def _layer_rows(
    layer: str, depth: int, a: np.ndarray, b: np.ndarray, measures: list[str], *,
    n_boot: int, n_perm: int, seed: int, folds: int = 5,
) -> list[dict]:
    """The table rows (one per measure) for one layer's pooled features."""
    n_a, n_b, dim = len(a), len(b), a.shape[1]
    small = min(n_a, n_b) <= dim
    base = {"layer": layer, "depth": depth, "n_a": n_a, "n_b": n_b, "dim": dim}
    m = len(a)
    rows = []
    for measure in measures:
        p_value, note = math.nan, []
        if measure == "frechet":
            method = _shrinkage_method("auto", min(n_a, n_b), dim)
            value = frechet_distance(a, b, shrinkage=method)
            lo, hi = bootstrap_ci(lambda x, y: frechet_distance(x, y, shrinkage=method), a, b,
                                  n_boot=n_boot, seed=seed)
            if small:
                note.append(f"n ≤ dim ({min(n_a, n_b)} ≤ {dim}): Ledoit-Wolf shrinkage covariance; "
                            "biased, prefer kid/mmd at this n")
        elif measure in ("kid", "mmd"):
            kernel = "poly" if measure == "kid" else "rbf"
            gram = _kernel_matrix(a, b, kernel)
            value = _mmd2_from_gram(gram, np.arange(m), np.arange(m, m + n_b))
            if measure == "mmd":
                value, p_value = mmd_test(a, b, n_perm=n_perm, seed=seed)
                note.append(f"RBF kernel, median bandwidth; p from {n_perm} permutations")
            lo, hi = bootstrap_ci(lambda ia, ib: _mmd2_resampled(gram, ia, ib + m), a, b,
                                  n_boot=n_boot, seed=seed, indices=True)
        else:
            value, spread = probe_accuracy(a, b, folds=folds, seed=seed)
            x = np.vstack([a, b])
            lo, hi = bootstrap_ci(lambda ia, ib: _probe_resampled(x, m, ia, ib, folds, seed), a, b,
                                  n_boot=n_boot, seed=seed, indices=True)
            note.append(f"{max(2, min(folds, n_a, n_b))}-fold CV, fold std {spread:.2f}")
        if not (lo <= value <= hi):
            note.append("bootstrap interval excludes the estimate (small-sample bias of this measure)")
        rows.append({**base, "measure": measure, "value": value, "ci_low": lo, "ci_high": hi,
                     "p_value": p_value, "note": "; ".join(note)})
    return rows


def _standardise_jointly(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre both sets on their joint mean and divide by one number, the RMS deviation from it.

    One scalar per layer (not per dimension), so the geometry is kept: the Fréchet distance
    becomes FD / σ² with σ² = tr(Σ_joint) / d, a distance in units of the sets' average
    per-dimension variance, and KID's kernel (x·y/d + 1)³ gets inputs of order 1, as it has
    with Inception features. The scale depends on both sets: compare values across the
    layers of one result, not across results for different pairs of sets.
    """
    joint = np.concatenate([a, b])
    centre = joint.mean(0)
    spread = math.sqrt(float(np.mean((joint - centre) ** 2)))
    if spread == 0:
        return a - centre, b - centre
    return (a - centre) / spread, (b - centre) / spread


def _statistics(
    model: Backbone, feats: list[dict[str, Tensor]], layers: list[str], measures: list[str], *,
    scale: str | None, n_boot: int, n_perm: int, seed: int, progress: bool, on_progress: ProgressFn | None,
) -> list[dict]:
    """Table rows for every layer (see :func:`_layer_rows`), with a progress bar."""
    rows: list[dict] = []
    bar = tqdm(layers, desc="domain shift statistics", unit="layer", disable=not progress)
    with _single_threaded_blas():
        for i, layer in enumerate(bar):
            a, b = (f[layer].double().numpy() for f in feats)
            if scale == "std":
                a, b = _standardise_jointly(a, b)
            depth = model.layer_names.index(model.resolve_layer(layer))
            rows += _layer_rows(layer, depth, a, b, measures, n_boot=n_boot, n_perm=n_perm, seed=seed)
            if on_progress is not None:
                on_progress("statistics", i + 1, len(layers))
    return rows


def domain_shift(
    set_a: ImageSet,
    set_b: ImageSet,
    model: Backbone,
    layers: Sequence[str] | None = None,
    *,
    size: int = 224,
    batch_size: int = 8,
    n_boot: int = 200,
    n_perm: int = 500,
    seed: int = 0,
    measures: Sequence[str] = MEASURES,
    cache: FeatureStore | None = None,
    progress: bool = True,
    names: tuple[str, str] = ("A", "B"),
    device: str | torch.device | None = None,
    on_progress: ProgressFn | None = None,
    scale: str | None = "std",
) -> DomainShift:
    """How far apart two image sets are at each layer of ``model``: the per-layer domain shift.

    Each image is resized (shorter side) and centre-cropped to ``size``×``size``, its maps
    at ``layers`` (default :func:`default_layers`) are average-pooled to one vector per
    layer, and each layer's two clouds of vectors are compared with ``measures``:
    ``frechet`` (FID formula; Ledoit-Wolf covariances when n ≤ dim), ``kid``, ``mmd``
    (RBF, permutation p-value from ``n_perm`` relabellings) and ``probe`` (cross-validated
    linear-probe accuracy). Each value has a ``n_boot`` bootstrap interval; for kid/mmd
    and the probe the resampling keeps copies of one image from pairing with themselves or
    spanning train and test. A :class:`SmallSampleWarning` is raised when n ≤ dim at some
    layer. ``seed`` fixes every random choice. ``cache`` (a :class:`FeatureStore`) reuses
    features across calls. Sets with fewer than 2 readable images raise ``ValueError``.

    ``scale="std"`` (see :func:`_standardise_jointly`) puts each layer's vectors in units of
    the two sets' own spread before the Fréchet distance and KID, so layers compare: a
    random network's activations shrink or grow by orders of magnitude with depth, and deep
    ones can be nearly constant across images; raw distances would mostly show that. MMD
    (median bandwidth) and the probe (standardised) do not depend on scale. ``scale=None``
    gives raw units (the FID convention). ``features_a``/``features_b`` are always raw.
    """
    measures = _check_measures(measures)
    if cache is not None and not isinstance(cache, FeatureStore):
        raise TypeError(f"cache must be an artlab.activations.FeatureStore, got {type(cache).__name__}")
    if scale not in ("std", None):
        raise ValueError(f"scale must be 'std' or None, got {scale!r}")
    layers = default_layers(model) if layers is None else _unique_by_depth(model, _layer_list(layers))
    size = _check_size(size)
    labels = [f"{which} ({name})" for which, name in zip(("set_a", "set_b"), names)]
    sets = [_set_from(s, label) for s, label in zip((set_a, set_b), labels)]
    for which, images in zip(("set_a", "set_b"), sets):
        _count_check(images, which)
    notes = _check_layer_sizes(model, layers, size)
    feats, sources = [], []
    for which, images in zip(("set_a", "set_b"), sets):
        images.notes += _size_notes(images, size)
        pooled, used = _pool_set(model, images, layers, size=size, batch_size=int(batch_size), progress=progress,
                                 cache=cache, device=_model_device(model, device), on_progress=on_progress)
        _count_check(images, which, len(used))
        feats.append(pooled)
        sources.append([images.names[i] for i in used])
        notes += images.notes
    rows = _statistics(model, feats, layers, measures, scale=scale, n_boot=int(n_boot), n_perm=int(n_perm),
                       seed=seed, progress=progress, on_progress=on_progress)
    if scale == "std" and {"frechet", "kid"} & set(measures):
        notes.append("frechet and kid use each layer's features centred on both sets' mean and divided by their "
                     "RMS deviation (scale='std'): values are in units of the sets' own spread, comparable "
                     "across layers of one result, not across different pairs of sets; scale=None: raw units")
    table = pd.DataFrame(rows, columns=["layer", "depth", "measure", "value", "ci_low", "ci_high", "p_value",
                                        "n_a", "n_b", "dim", "note"])
    _warn_small(table)
    return DomainShift(table, feats[0], feats[1], model.label, model.pretrained, notes, layers,
                       tuple(names), size, seed, sources[0], sources[1])


def _warn_small(table: pd.DataFrame) -> None:
    per_layer = table.groupby("layer", sort=False)[["n_a", "n_b", "dim"]].first()
    small = per_layer[per_layer[["n_a", "n_b"]].min(axis=1) <= per_layer["dim"]]
    if len(small):
        listed = ", ".join(f"{layer} (dim {int(r.dim)})" for layer, r in small.iterrows())
        n = int(per_layer[["n_a", "n_b"]].min(axis=1).min())
        warnings.warn(
            f"only {n} images in the smaller set but as many or more feature dimensions at {listed}: "
            "covariances are singular there, so the Fréchet distance uses Ledoit-Wolf shrinkage and is "
            "biased; KID and the MMD test stay unbiased. Add images for tighter estimates.",
            SmallSampleWarning,
            stacklevel=3,
        )
