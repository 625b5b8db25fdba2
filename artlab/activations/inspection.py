"""One painting, one photo: which channels of a layer fire, where two images disagree, at what frequencies.

:class:`ActivationCache` memoises forward passes so a widget can switch layers without
re-running the network; :func:`channel_stats`, :func:`top_channels`,
:func:`top_difference` and :func:`disagreement` say which channels fire and where a
painting and a photo disagree; :func:`example_maps` shows the images that drive a
channel hardest; :func:`radial_spectrum` says at which spatial frequencies a layer's
maps carry their energy.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from artlab.figures import ArtlabFigure, stamp_model
from artlab.images import ensure_image_batch
from artlab.models import Backbone, features

__all__ = [
    "CHANNEL_STATS",
    "ActivationCache",
    "ChannelStats",
    "feature_maps",
    "channel_stats",
    "top_channels",
    "top_difference",
    "disagreement",
    "example_maps",
    "radial_spectrum",
    "layer_spectra",
    "plot_spectra",
    "tensor_digest",
    "layer_list",
    "check_k",
]

#: The per-channel statistics :func:`top_channels` and friends rank by.
CHANNEL_STATS = ("mean", "energy", "std", "active")


def tensor_digest(images: Tensor) -> str:
    """A content hash of a tensor (sha1 of its float32 bytes plus its shape): the cache key of an
    in-memory image, here and in :mod:`artlab.activations.pooled`."""
    data = images.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha1(data.numpy().tobytes())
    digest.update(str(tuple(data.shape)).encode())
    return digest.hexdigest()


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
        names = layer_list(layers)
        canonical = {name: model.resolve_layer(name) for name in names}
        image = ensure_image_batch(image).detach()
        digest = tensor_digest(image)
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


# --------------------------------------------------------------------------- feature maps


def layer_list(layers: str | Iterable[str]) -> list[str]:
    """A ``layers`` argument (one name or several) as a non-empty list; ValueError when empty."""
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
    names = layer_list(layers)
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


def check_k(k: int, channels: int) -> int:
    """How many of ``channels`` a top-``k`` request returns: ``k`` capped at ``channels``; ValueError below 1."""
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return min(int(k), channels)


def top_channels(activation: Tensor, k: int, by: str = "mean") -> list[int]:
    """The ``k`` channels with the largest statistic ``by`` (mean|energy|std|active).

    For a batch the statistic is averaged over its images.
    """
    profile = _channel_profile(activation, _check_stat(by))
    return torch.topk(profile, check_k(k, profile.numel())).indices.tolist()


def top_difference(act_a: Tensor, act_b: Tensor, k: int, by: str = "mean") -> list[int]:
    """The ``k`` channels whose statistic ``by`` differs most (absolute) between two images.

    Compares per-channel statistics, not maps, so the two may have different sizes.
    """
    a = _channel_profile(act_a, _check_stat(by))
    b = _channel_profile(act_b, by)
    if a.numel() != b.numel():
        raise ValueError(f"the activations have {a.numel()} and {b.numel()} channels; compare the same layer")
    return torch.topk((a - b).abs(), check_k(k, a.numel())).indices.tolist()


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
    return frame.loc[order].head(check_k(k, len(frame))).reset_index(drop=True)


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
    order = torch.topk(score, check_k(k, score.numel())).indices.tolist()
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



def _readable_log_ticks(ax) -> None:
    """Labels a narrow log-log panel can hold: decades, 1-2-5 or 1…9 steps (by the span) as plain numbers,
    minor ticks unlabelled.

    matplotlib labels the minor ticks of a log axis that spans less than about a decade, in
    "2×10⁻¹" form at full size; three of them side by side overlap in a 3-inch panel.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.autoscale_view()
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        decades = abs(np.log10(max(limits) / max(min(limits), 1e-300)))
        # wide: decades only; a decade or two: 1-2-5; narrow: every digit (at least two labels)
        subs = (1.0,) if decades > 3 else (1.0, 2.0, 5.0) if decades > 0.8 else tuple(range(1, 10))
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
        axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        axis.set_minor_formatter(NullFormatter())
    ax.tick_params(which="both", labelsize=7)


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
        _readable_log_ticks(ax)
    axes[0].set_ylabel("power", fontsize=8)
    axes[0].legend(fontsize=8)
    title = "Radial power spectrum of feature maps"
    fig.suptitle(title if model is None else f"{title} · {model.label}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07 if model is not None else 0, 1, 1))
    return stamp_model(fig, model) if model is not None else fig
