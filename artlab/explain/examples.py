"""Dataset examples: which patches of a collection excite a channel most, and how paintings and photos differ.

Feature visualisation (:mod:`artlab.explain.channels`) shows what a channel *could* respond to; dataset
examples show what it *does* respond to in real images (Olah, Mordvintsev & Schubert, "Feature
Visualization", Distill 2017, section "Dataset Examples"; Zeiler & Fergus 2014 crop the receptive field
around the strongest activation the same way). One batched pass over a collection
(:func:`channel_index`, on :func:`artlab.activations.pooled.batched_forward`) keeps, per image and channel,
three numbers: the maximum activation, where on the feature map it is, and the mean activation. Memory is
C floats × 3 per image whatever the map size, so a 10,000-image collection at a 1280-channel layer needs
~150 MB, and every later question (top patches of any channel, per-domain means, the channels that tell
paintings from photos, histograms) is answered from that index without another forward pass.

The index is cached on disk (:class:`ChannelIndexStore`): an image's row is keyed by the sha256 of the
file's bytes (or of the pixels, for in-memory images) together with the model label, layer and size, so
a second call over the same files, renamed or moved, does no forward pass. The cache holds plain ``.npy``
arrays (loaded with ``allow_pickle=False``) and ``.json`` lists, written to a temporary file and renamed
into place; everything read back is validated (shapes, dtypes, finite values, positions inside the map,
the configuration it claims) and a file that fails is set aside and its images recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from artlab.activations.inspection import tensor_digest
from artlab.activations.pooled import (
    ImageSet,
    batched_forward,
    check_size,
    image_sources,
    size_notes,
)
from artlab.data import Collection
from artlab.embed.file_hashes import sha256_file
from artlab.embed.locks import atomic_write_bytes
from artlab.images import load_images
from artlab.models import Backbone, model_device, receptive_field
from artlab.runs import Progress, progress_bar

__all__ = ["ChannelIndex", "ChannelIndexStore", "Example", "channel_index"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FORMAT = 1


@dataclass(frozen=True)
class Example:
    """One dataset example of a channel: image ``index`` of the set (``name``; ``path`` for files), its
    ``domain`` (or None), the channel's maximum ``activation`` in it, where (``position``: (y, x) on the
    feature map), and ``box`` (top, left, bottom, right) in the size×size image the network saw: the
    channel's receptive field centred on that position, clipped to the image."""

    index: int
    name: str
    path: Path | None
    domain: str | None
    channel: int
    activation: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]


# --------------------------------------------------------------------------- the on-disk cache


class ChannelIndexStore:
    """A directory of per-image channel statistics, reused across :func:`channel_index` calls.

    Layout: one sub-folder per (model label, layer, size), named by a hash of that configuration and
    holding a ``config.json``; in it, shards ``<id>.npy`` (float32, n × 3C: max, position, mean) with a
    ``<id>.json`` naming the n content hashes, the channel count and the map size. The ``.json`` is
    written last, so a shard counts only once both files are complete. Loading never unpickles
    (``allow_pickle=False``) and checks every field; a shard that fails is renamed ``*.rejected`` and
    its images recomputed (the reasons are in :attr:`rejected`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        #: (file, reason) for every shard set aside as invalid, by this store object
        self.rejected: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"ChannelIndexStore({str(self.root)!r})"

    @staticmethod
    def config(model: Backbone, layer: str, size: int) -> dict[str, Any]:
        """What a cached row depends on besides the image content."""
        return {"kind": "artlab.explain.channel_index", "format": _FORMAT, "model": str(model.label),
                "layer": str(layer), "size": int(size)}

    def folder(self, config: dict[str, Any]) -> Path:
        name = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]
        return self.root / name

    def load(self, config: dict[str, Any]) -> tuple[dict[str, np.ndarray], tuple[int, int] | None, int | None]:
        """({content hash: 3C row}, map size, channels) of every valid shard for ``config``."""
        folder = self.folder(config)
        rows: dict[str, np.ndarray] = {}
        fmap: tuple[int, int] | None = None
        channels: int | None = None
        if not folder.is_dir():
            return rows, fmap, channels
        try:
            stored = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            self._reject(folder / "config.json", f"unreadable configuration ({exc})")
            return rows, fmap, channels
        if stored != config:
            self._reject(folder / "config.json", "configuration does not match its folder")
            return rows, fmap, channels
        for meta_path in sorted(folder.glob("*.json")):
            if meta_path.name == "config.json":
                continue
            try:
                hashes, shard_fmap, shard_c, data = self._read_shard(meta_path)
            except (OSError, ValueError) as exc:
                self._reject(meta_path, str(exc))
                continue
            if (fmap, channels) != (None, None) and (shard_fmap, shard_c) != (fmap, channels):
                self._reject(meta_path, f"map {shard_fmap}×{shard_c} differs from other shards' {fmap}×{channels}")
                continue
            fmap, channels = shard_fmap, shard_c
            rows.update(zip(hashes, data))
        return rows, fmap, channels

    @staticmethod
    def _read_shard(meta_path: Path) -> tuple[list[str], tuple[int, int], int, np.ndarray]:
        """A shard's hashes, map size, channel count and rows; ValueError with the reason if anything is off."""
        if meta_path.stat().st_size > 64 << 20:
            raise ValueError("metadata file too large")
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError("not a channel-index shard of this format")
        hashes, fmap, channels = meta.get("hashes"), meta.get("fmap"), meta.get("channels")
        if not (isinstance(hashes, list) and hashes and all(isinstance(h, str) and _HEX64.match(h) for h in hashes)):
            raise ValueError("hashes must be a non-empty list of sha256 hex digests")
        if not (isinstance(fmap, list) and len(fmap) == 2
                and all(type(v) is int and 1 <= v <= 1 << 16 for v in fmap)):
            raise ValueError("fmap must be [height, width] of positive ints")
        if type(channels) is not int or not 1 <= channels <= 1 << 20:
            raise ValueError("channels must be a positive int")
        data = np.load(meta_path.with_suffix(".npy"), allow_pickle=False)  # never unpickle a cache file
        if data.dtype != np.float32 or data.shape != (len(hashes), 3 * channels):
            raise ValueError(f"array is {data.dtype} {data.shape}, expected float32 {(len(hashes), 3 * channels)}")
        if not np.isfinite(data).all():
            raise ValueError("array holds non-finite values")
        pos = data[:, channels : 2 * channels]
        if (pos < 0).any() or (pos >= fmap[0] * fmap[1]).any() or (pos != np.round(pos)).any():
            raise ValueError("positions outside the feature map")
        return hashes, (fmap[0], fmap[1]), channels, data

    def _reject(self, path: Path, reason: str) -> None:
        """Set an invalid file aside (renamed, so it is neither read again nor lost for inspection)."""
        self.rejected.append((str(path), reason))
        for victim in (path, path.with_suffix(".npy")) if path.name != "config.json" else (path,):
            try:
                victim.replace(victim.with_name(victim.name + f".{secrets.token_hex(3)}.rejected"))
            except OSError:
                pass

    def save(self, config: dict[str, Any], hashes: Sequence[str], rows: np.ndarray, fmap: tuple[int, int]) -> None:
        """Write one shard atomically (array first, then the metadata that makes it count)."""
        if not hashes:
            return
        folder = self.folder(config)
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.json"
        if not config_path.is_file():
            atomic_write_bytes(config_path, lambda fh: fh.write(json.dumps(config, sort_keys=True).encode()))
        stem = folder / secrets.token_hex(8)
        data = np.ascontiguousarray(rows, dtype=np.float32)
        atomic_write_bytes(stem.with_suffix(".npy"), lambda fh: np.save(fh, data, allow_pickle=False))
        meta = {"format": _FORMAT, "hashes": list(hashes), "fmap": [int(fmap[0]), int(fmap[1])],
                "channels": int(data.shape[1] // 3)}
        atomic_write_bytes(stem.with_suffix(".json"), lambda fh: fh.write(json.dumps(meta).encode()))


# --------------------------------------------------------------------------- the index


@dataclass
class ChannelIndex:
    """Per image and channel of one layer: the maximum activation, its position and the mean activation.

    Built by :func:`channel_index`. Arrays are N×C (N the images that loaded, in set order):
    ``max``, ``argmax`` (flat index into the h×w map, row-major) and ``mean``; ``indices`` maps rows to
    positions in the set passed, ``names``/``domains`` describe each row. ``fmap`` is the map's (h, w)
    at ``size``; ``rf`` the layer's (receptive field, stride) in pixels, or None where it is global.
    ``computed``/``reused`` count images run through the network vs taken from the cache.
    """

    model_label: str
    pretrained: bool
    layer: str
    size: int
    max: np.ndarray
    argmax: np.ndarray
    mean: np.ndarray
    fmap: tuple[int, int]
    rf: tuple[int, int] | None
    indices: list[int]
    names: list[str]
    domains: list[str | None]
    sources: list[Any] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    computed: int = 0
    reused: int = 0

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def channels(self) -> int:
        return int(self.max.shape[1])

    def _channel(self, channel: object) -> int:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
            raise TypeError(f"channel must be an int, got {type(channel).__name__}")
        if not 0 <= int(channel) < self.channels:
            raise ValueError(f"channel {channel} out of range: {self.layer} has {self.channels} channels (0–{self.channels - 1})")
        return int(channel)

    def _rows(self, domain: str | None) -> np.ndarray:
        if domain is None:
            return np.arange(len(self))
        rows = np.array([i for i, d in enumerate(self.domains) if d == domain], dtype=int)
        if rows.size == 0:
            known = sorted({d for d in self.domains if d is not None})
            raise ValueError(f"no image of domain {domain!r} in this index; domains present: {known or 'none'} "
                             "(domains come from a Collection's meta['domain'] or the domains= argument)")
        return rows

    def box(self, position: tuple[int, int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) in the size×size image: the receptive field around a map position.

        The unit's centre is placed proportionally, (y + 0.5) · size / h: for "same"-padded convolutions
        that is y·stride + stride/2, within half a stride of the exact centre whatever the padding. A
        global layer (or a 1×1 map) gives the whole image.
        """
        h, w = self.fmap
        if self.rf is None or (h == 1 and w == 1):
            return (0, 0, self.size, self.size)
        half = self.rf[0] / 2
        cy, cx = (position[0] + 0.5) * self.size / h, (position[1] + 0.5) * self.size / w
        clip = lambda v: int(min(max(round(v), 0), self.size))
        return (clip(cy - half), clip(cx - half), clip(cy + half), clip(cx + half))

    def top_examples(self, channel: int, k: int = 8, domain: str | None = None) -> list[Example]:
        """The ``k`` images (of ``domain``, or all) where ``channel`` reaches its highest maximum, best first."""
        c = self._channel(channel)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        rows = self._rows(domain)
        values = self.max[rows, c]
        order = rows[np.argsort(-values, kind="stable")[: int(k)]]
        out = []
        for r in order:
            flat = int(self.argmax[r, c])
            pos = (flat // self.fmap[1], flat % self.fmap[1])
            src = self.sources[self.indices[r]]
            out.append(Example(index=self.indices[r], name=self.names[r], path=src if isinstance(src, Path) else None,
                               domain=self.domains[r], channel=c, activation=float(self.max[r, c]),
                               position=pos, box=self.box(pos)))
        return out

    def crops(self, examples: Sequence[Example], size: int = 96) -> Tensor:
        """The examples' boxes as a K×3×size×size batch: each image loaded as the index saw it (shorter side
        to ``self.size``, centre crop), its box cut out and scaled to fit, padded white where the box was
        clipped to a non-square shape."""
        size = check_size(size)
        if not examples:
            raise ValueError("no examples given")
        out = []
        for ex in examples:
            if not isinstance(ex, Example):
                raise TypeError(f"examples must come from top_examples, got {type(ex).__name__}")
            image = load_images([self.sources[ex.index]], self.size)
            top, left, bottom, right = ex.box
            patch = image[:, :, top:bottom, left:right]
            scale = size / max(patch.shape[-2:])
            ph, pw = max(1, round(patch.shape[-2] * scale)), max(1, round(patch.shape[-1] * scale))
            patch = F.interpolate(patch, size=(ph, pw), mode="bilinear", align_corners=False, antialias=True)
            canvas = torch.ones(1, 3, size, size)
            y0, x0 = (size - ph) // 2, (size - pw) // 2
            canvas[:, :, y0 : y0 + ph, x0 : x0 + pw] = patch.clamp(0, 1)
            out.append(canvas)
        return torch.cat(out)

    def domain_means(self, domains: Sequence[str] | None = None):
        """A pandas DataFrame, one row per channel: ``mean_<domain>`` (the channel's spatial-mean activation
        averaged over that domain's images) for each of ``domains`` (default: all present, sorted), and
        ``difference`` = first domain minus second when two or more are given."""
        import pandas as pd

        if domains is None:
            domains = sorted({d for d in self.domains if d is not None})
        if isinstance(domains, str):
            raise TypeError("domains must be a sequence of domain names, e.g. ['painting', 'photo']")
        frame = pd.DataFrame(index=pd.RangeIndex(self.channels, name="channel"))
        for d in domains:
            frame[f"mean_{d}"] = self.mean[self._rows(d)].mean(axis=0).astype(np.float64)
        if len(domains) >= 2:
            frame["difference"] = frame[f"mean_{domains[0]}"] - frame[f"mean_{domains[1]}"]
        frame.attrs.update(layer=self.layer, model=self.model_label,
                           counts={d: int(self._rows(d).size) for d in domains})
        return frame

    def rank_channels_by_domain(self, a: str = "painting", b: str = "photo"):
        """Channels ordered by how differently they respond to domains ``a`` and ``b``: a DataFrame with
        ``mean_a``/``mean_b`` (named after the domains), ``difference`` (a − b), ``effect`` (the standardised
        difference, Cohen's d: difference over the pooled standard deviation of per-image means; positive =
        stronger on ``a``) and ``prefers``; sorted by |effect|, largest first."""
        if a == b:
            raise ValueError("a and b must be two different domains")
        ra, rb = self._rows(a), self._rows(b)
        xa, xb = self.mean[ra].astype(np.float64), self.mean[rb].astype(np.float64)
        frame = self.domain_means([a, b])
        va = xa.var(axis=0, ddof=1) if len(ra) > 1 else np.zeros(self.channels)
        vb = xb.var(axis=0, ddof=1) if len(rb) > 1 else np.zeros(self.channels)
        dof = max(len(ra) + len(rb) - 2, 1)
        pooled = np.sqrt(((len(ra) - 1) * va + (len(rb) - 1) * vb) / dof)
        diff = frame["difference"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1), 0.0)
        frame["pooled_std"] = pooled
        frame["effect"] = effect
        frame["prefers"] = np.where(effect > 0, a, np.where(effect < 0, b, "neither"))
        order = np.argsort(-np.abs(effect), kind="stable")
        return frame.iloc[order]

    def histogram(self, channel: int, domain: str | None = None, *, bins: int = 30, stat: str = "max"):
        """(counts, edges) of ``channel``'s per-image ``stat`` ("max" or "mean") over ``domain``'s images
        (or all). The edges span all images of the index, so histograms of two domains share a scale."""
        c = self._channel(channel)
        if stat not in ("max", "mean"):
            raise ValueError(f"stat must be 'max' or 'mean', got {stat!r}")
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise ValueError(f"bins must be a positive int, got {bins!r}")
        values = (self.max if stat == "max" else self.mean)[:, c]
        lo, hi = float(values.min()), float(values.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
        counts, _ = np.histogram(values[self._rows(domain)], bins=edges)
        return counts, edges


# --------------------------------------------------------------------------- building


def _domains_of(images: Any, n: int, domains: Sequence[str | None] | None) -> list[str | None]:
    if domains is not None:
        if isinstance(domains, str) or len(domains) != n:
            raise ValueError(f"domains must be a sequence with one entry per image ({n}), got {domains!r}")
        return [None if d is None else str(d) for d in domains]
    if isinstance(images, Collection):
        if any(item.meta.get("domain") for item in images):
            return [item.meta.get("domain") for item in images]
        return [item.label for item in images]  # no domain column: the labels (e.g. paintings/ and photos/)
    return [None] * n


def _stats(act: Tensor) -> Tensor:
    """N×C×h×w -> N×3C float32 on the CPU: per channel max, flat argmax and mean (flat N×C maps: itself, 0, itself)."""
    act = act.detach()
    if act.ndim == 2:
        act = act[:, :, None, None]
    flat = act.flatten(2)
    top, where = flat.max(dim=2)
    return torch.cat([top, where.to(top.dtype), flat.mean(dim=2)], dim=1).to("cpu", torch.float32)


def channel_index(
    model: Backbone,
    images: ImageSet,
    layer: str,
    *,
    size: int = 224,
    batch_size: int = 8,
    progress: bool | None = None,
    on_progress: Progress | None = None,
    cache: ChannelIndexStore | str | os.PathLike[str] | None = None,
    domains: Sequence[str | None] | None = None,
    device: str | torch.device | None = None,
) -> ChannelIndex:
    """Index ``layer``'s channels over a set of images in one batched pass (see the module docstring).

    ``images``: a :class:`~artlab.data.Collection` (domains from ``meta["domain"]``, or its labels when no
    item has one), a folder, a list of
    paths or images, or an N×3×H×W tensor; each is resized (shorter side to ``size``) and centre-cropped.
    ``domains`` (one per image) overrides or supplies domains. ``cache``: a :class:`ChannelIndexStore` or a
    directory; rows found there (same content, model label, layer, size) skip the network, new ones are
    written as one shard at the end. Unreadable images are skipped and listed in ``notes``.
    ``on_progress("channel index", done, total)`` after every batch; a progress bar in notebooks and
    terminals (``progress=False``: none).
    """
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be an artlab Backbone, got {type(model).__name__}")
    canonical = model.resolve_layer(layer)
    size = check_size(size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if cache is not None and not isinstance(cache, ChannelIndexStore):
        if not isinstance(cache, (str, os.PathLike)):
            raise TypeError(f"cache must be a ChannelIndexStore or a directory, got {type(cache).__name__}")
        cache = ChannelIndexStore(cache)
    src = image_sources(images, "images")
    if not src.sources:
        raise ValueError("images is empty: pass a Collection, a folder, a list of images or an N×3×H×W tensor")
    doms = _domains_of(images, len(src.sources), domains)
    src.notes += size_notes(src, size)
    try:
        rf: tuple[int, int] | None = receptive_field(model, canonical)
    except ValueError:
        rf = None  # a global layer: every unit sees the whole image

    config = ChannelIndexStore.config(model, canonical, size) if cache is not None else {}
    stored: dict[str, np.ndarray] = {}
    fmap: tuple[int, int] | None = None
    if cache is not None:
        n_rejected = len(cache.rejected)
        stored, fmap, _ = cache.load(config)
        for path, why in cache.rejected[n_rejected:]:
            src.notes.append(f"cache: ignored {path} ({why}); its images were recomputed")
    rows: dict[int, np.ndarray] = {}
    keys: dict[int, str] = {}
    skipped: list[tuple[str, str]] = []
    todo: list[int] = []
    for i, s in enumerate(src.sources):
        if cache is not None and isinstance(s, Path):
            try:
                keys[i] = sha256_file(s)
            except OSError as exc:
                skipped.append((str(s), f"unreadable: {exc.strerror or exc}"))
                continue
            if keys[i] in stored:
                rows[i] = stored[keys[i]]
                continue
        todo.append(i)

    def reuse(i: int, image: Tensor) -> bool:
        """In-memory images are keyed by their pixels once loaded (sha256 of a content digest)."""
        if cache is None or i in keys:
            return False
        keys[i] = hashlib.sha256(tensor_digest(image).encode()).hexdigest()
        if keys[i] in stored:
            rows[i] = stored[keys[i]]
            return True
        return False

    new_keys: list[str] = []
    new_rows: list[np.ndarray] = []
    seen_fmap: list[tuple[int, int]] = []

    def pool(act: Tensor) -> Tensor:
        seen_fmap.append((1, 1) if act.ndim == 2 else (int(act.shape[2]), int(act.shape[3])))
        return _stats(act)

    computed = 0
    bar = progress_bar(len(todo), f"{model.name} {canonical} channel index", enabled=progress, unit="img")
    done = 0
    try:
        for consumed, chunk, pooled in batched_forward(
            model, src.sources, src.names, todo, [canonical], size=size, batch_size=int(batch_size),
            device=model_device(model, device), skipped=skipped, pool=pool, reuse=reuse,
        ):
            for r, i in enumerate(chunk):
                rows[i] = pooled[canonical][r].numpy()
                computed += 1
                if cache is not None:
                    new_keys.append(keys[i])  # files: hashed above; in-memory images: in reuse()
                    new_rows.append(rows[i])
            done += consumed
            bar.update(consumed)
            if on_progress is not None:
                on_progress("channel index", done, len(todo))
    finally:
        bar.close()
    if seen_fmap:
        if fmap is not None and seen_fmap[0] != fmap:
            raise AssertionError(f"cached map size {fmap} differs from the computed {seen_fmap[0]}")
        fmap = seen_fmap[0]
    if cache is not None and new_keys and fmap is not None:
        cache.save(config, new_keys, np.stack(new_rows), fmap)
    if skipped:
        listed = "; ".join(f"{n} ({why})" for n, why in skipped[:10])
        src.notes.append(f"skipped {len(skipped)} unreadable image(s): {listed}")
    used = sorted(rows)
    if not used or fmap is None:
        raise ValueError(f"none of the {len(src.sources)} images could be loaded: {' | '.join(src.notes)}")
    table = np.stack([rows[i] for i in used]).astype(np.float32, copy=False)
    c = table.shape[1] // 3
    return ChannelIndex(
        model_label=str(model.label), pretrained=bool(model.pretrained), layer=canonical, size=size,
        max=table[:, :c].copy(), argmax=table[:, c : 2 * c].astype(np.int64), mean=table[:, 2 * c :].copy(),
        fmap=fmap, rf=rf, indices=used, names=[src.names[i] for i in used], domains=[doms[i] for i in used],
        sources=src.sources, notes=src.notes, computed=computed, reused=len(used) - computed,
    )
