"""Images from a StyleGAN2-ADA generator: seeds, classes, truncation, noise, style mixing.

The generator (:mod:`artlab.stylegan.networks`) computes raw float images, nominally in
[-1, 1]; everything here returns artlab's convention, float32 N×3×H×W in [0, 1] on the
CPU, through one pair of converters (:func:`to_images`, :func:`from_images`).

Truncation (design spec 4.2, 6.1). The official truncation lerps every w towards the
stored ``mapping.w_avg``: ``w' = w_avg + psi·(w − w_avg)`` on the ws rows
``< cutoff``. For a class-conditional generator ``w_avg`` was tracked over training
labels, so it is a *class-agnostic* centre: strong truncation pulls every class towards
the same average image. ``class_aware=True`` (an extension, not official behaviour)
lerps towards the class's own mean in W instead, estimated by sampling ``mapping(z, c)``
(:func:`class_w_mean`). Every function that truncates takes one :class:`Truncation`
(``psi``, ``cutoff``, ``class_aware``, ``n_class_samples``; a bare number means
``Truncation(psi=…)``); the old keywords ``truncation_psi=`` … still work for one
release, with a DeprecationWarning.

Style mixing (spec 4.4, 4.11): ws rows are the per-layer inputs of the synthesis
network (row 0 feeds the 4×4 block; a ToRGB shares its row with the next block's first
conv). Taking a range of rows from another latent mixes coarse (low rows) or fine (high
rows) attributes.

:func:`render` is the one call behind an interactive view: seeds (or z), a class or class
mix, a truncation, a noise mode and an optional style mix in, images and their ws out.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from artlab.images import ensure_image_batch, image_grid
from artlab.stylegan.networks import NOISE_MODES, z_from_seeds

__all__ = [
    "CIFAR10_CLASSES",
    "ClassSpec",
    "Truncation",
    "as_truncation",
    "StyleMix",
    "Rendered",
    "render",
    "check_noise_mode",
    "label_rows",
    "to_images",
    "from_images",
    "class_label",
    "class_names",
    "class_w_mean",
    "truncate",
    "map_to_ws",
    "synthesize",
    "generate",
    "style_mix",
    "style_mix_grid",
    "layer_range",
]

#: CIFAR-10 label order of the official ``cifar10.pkl`` (spec 6.1); set ``G.class_names`` to use names.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: A class as ``class_label`` accepts it: an index, a name, ``{class: weight}``, c_dim weights, or None.
ClassSpec = int | str | Mapping | Sequence | Tensor | None


# --------------------------------------------------------------------------- conventions


def to_images(raw: Tensor) -> Tensor:
    """Raw generator output (nominally [-1, 1]) -> artlab images, float32 in [0, 1] (``(x+1)/2``, clamped)."""
    return ((raw.detach().to(torch.float32) + 1.0) / 2.0).clamp(0.0, 1.0)


def from_images(images: Tensor) -> Tensor:
    """artlab images (N×3×H×W in [0, 1]) -> the generator's raw range [-1, 1]."""
    return ensure_image_batch(images) * 2.0 - 1.0


# --------------------------------------------------------------------------- classes


def class_names(G) -> list[str]:
    """The generator's class names (``G.class_names`` if set, else ``"0" … "c_dim-1"``)."""
    names = getattr(G, "class_names", None)
    if names is not None and len(names) == G.c_dim:
        return [str(n) for n in names]
    return [str(i) for i in range(G.c_dim)]


def _class_index(G, key: object) -> int:
    if isinstance(key, bool):
        raise TypeError(f"a class is an int index or a name, got {key!r}")
    if isinstance(key, str):
        names = class_names(G)
        if key in names:
            return names.index(key)
        if key.isdigit() and int(key) < G.c_dim:
            return int(key)
        raise ValueError(f"unknown class {key!r}; this generator's classes are: {', '.join(names)}")
    if not isinstance(key, numbers.Integral):
        raise TypeError(f"a class is an int index or a name, got {type(key).__name__} {key!r}")
    try:
        index = int(key)
    except (TypeError, ValueError):
        raise TypeError(f"a class is an int index or a name, got {type(key).__name__} {key!r}") from None
    if index != key or not 0 <= index < G.c_dim:
        raise ValueError(
            f"class index {key!r} is out of range: this generator has c_dim={G.c_dim} (0 … {G.c_dim - 1})"
        )
    return index


def class_label(G, cls: ClassSpec) -> Tensor:
    """The label row ``c`` (1, c_dim) for a class: one-hot, or a soft label on the simplex.

    ``cls`` is an index or a name (one-hot), ``{class: weight}`` (e.g. ``{3: 0.7, 5: 0.3}``),
    or ``c_dim`` weights. Weights are normalised to sum to 1; negative, non-finite or
    all-zero weights are a ``ValueError``. A soft label is a convex combination of one-hot
    labels, which the class embedding (an affine layer) maps to the same combination of the
    classes' embeddings (spec 6.2); the rest of the mapping network is nonlinear.
    ``None`` is only valid for an unconditional generator (returns a (1, 0) tensor).
    """
    c_dim = G.c_dim
    if cls is None:
        if c_dim > 0:
            named = getattr(G, "class_names", None)
            names = f", a name ({', '.join(map(str, list(named)[:4]))}…)" if named else ""
            raise ValueError(
                f"this generator is class-conditional (c_dim={c_dim}); give a class: an index 0 … {c_dim - 1}"
                f"{names}, or {{class: weight}} for a mix"
            )
        return torch.zeros(1, 0)
    if c_dim == 0:
        raise ValueError(f"this generator is unconditional (c_dim=0); it takes no class, got {cls!r}. Pass c=None.")
    if isinstance(cls, (numbers.Integral, str)) and not isinstance(cls, bool):
        weights = torch.zeros(c_dim, dtype=torch.float64)
        weights[_class_index(G, cls)] = 1.0
    elif isinstance(cls, Mapping):
        if not cls:
            raise ValueError("an empty class mix; give at least one {class: weight}")
        weights = torch.zeros(c_dim, dtype=torch.float64)
        for key, value in cls.items():
            weights[_class_index(G, key)] += float(value)
    elif isinstance(cls, (Sequence, Tensor)):
        weights = torch.as_tensor(cls if isinstance(cls, Tensor) else list(cls)).detach().to("cpu", torch.float64)
        weights = weights.reshape(-1) if weights.ndim == 2 and weights.shape[0] == 1 else weights
        if weights.ndim != 1 or weights.shape[0] != c_dim:
            raise ValueError(f"class weights must be {c_dim} numbers (c_dim={c_dim}), got shape {tuple(weights.shape)}")
    else:
        raise TypeError(f"unsupported class {type(cls).__name__}: give an index, a name, a dict or c_dim weights")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(f"class weights must be finite, got {weights.tolist()}")
    if bool((weights < 0).any()):
        raise ValueError(f"class weights must be ≥ 0 (a mix lies on the simplex), got {weights.tolist()}")
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("class weights are all zero; give at least one positive weight")
    return (weights / total).to(torch.float32).unsqueeze(0)


def label_rows(G, c: ClassSpec, n: int) -> Tensor | None:
    """c as (n, c_dim) label rows on the CPU (None for an unconditional G): a class spec
    (:func:`class_label`) repeated n times, or a (n, c_dim) tensor of per-row labels, each checked.

    What the mapping network is fed; the walks (:mod:`artlab.stylegan.walks`) use it too.
    """
    if G.c_dim == 0:
        if c is not None:
            class_label(G, c)  # raises the "unconditional" error
        return None
    if isinstance(c, Tensor) and c.ndim == 2 and c.shape[0] > 1:
        if c.shape != (n, G.c_dim):
            raise ValueError(f"c must have shape ({n}, {G.c_dim}) (one label per latent), got {tuple(c.shape)}")
        return torch.cat([class_label(G, row) for row in c.detach().cpu()], dim=0)
    return class_label(G, c).repeat(n, 1)


# --------------------------------------------------------------------------- per-class W means

# G -> {(label, n, seed, weights version): mean w}; entries vanish with their generator.
_W_MEANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mapping_version(G) -> tuple[int, ...]:
    # In-place changes (load_state_dict, optimiser steps) bump a tensor's version counter,
    # so a cached mean is never reused for changed weights.
    return tuple(t._version for t in list(G.mapping.parameters()) + list(G.mapping.buffers()))


@torch.no_grad()
def class_w_mean(G, c: ClassSpec = None, *, n: int = 2000, seed: int = 0, chunk: int = 1000) -> Tensor:
    """The mean of ``w = mapping(z, c)`` over ``n`` latents z ~ N(0, I) (seeded): shape (w_dim,).

    For a class (any :func:`class_label` spec) it is that class's centre in W, the target of
    class-aware truncation; for an unconditional generator (``c=None``) a sampled estimate
    of ``w_avg``. The standard error per coordinate is about ``std(w)/sqrt(n)``. Results are
    cached per generator, label, ``n`` and ``seed`` (and dropped when the mapping's weights
    change or the generator is garbage-collected).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of latents to average), got {n!r}")
    label = label_rows(G, c, 1)
    key = (None if label is None else tuple(label[0].tolist()), n, int(seed), _mapping_version(G))
    cache = _W_MEANS.setdefault(G, {})
    if key in cache:
        return cache[key].clone()
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        z = torch.randn(m, G.z_dim, generator=gen)
        cm = None if label is None else label.repeat(m, 1)
        w = G.mapping(z.to(G.device), None if cm is None else cm.to(G.device), update_w_avg=False)
        w = w[:, 0] if w.ndim == 3 else w
        total += w.to("cpu", torch.float64).sum(dim=0)
        done += m
    mean = (total / n).to(torch.float32)
    if len(cache) > 256:  # a small cache: forget the oldest entry
        cache.pop(next(iter(cache)))
    cache[key] = mean
    return mean.clone()


# --------------------------------------------------------------------------- truncation settings


@dataclass(frozen=True)
class Truncation:
    """How far to pull latents towards a centre: ``w' = centre + psi·(w − centre)`` (spec 4.2).

    ``psi``: 1 leaves w alone (all the variety), 0 gives every seed the centre's image,
    0.5-0.7 is the usual trade-off. ``cutoff``: only the ws rows ``< cutoff`` are pulled
    (None: all rows; official ``truncation_cutoff``). ``class_aware``: the centre is each
    label's own mean in W (:func:`class_w_mean` over ``n_class_samples`` latents) instead of
    the class-agnostic ``mapping.w_avg`` (an extension; needs a conditional generator).
    """

    psi: float = 1.0
    cutoff: int | None = None
    class_aware: bool = False
    n_class_samples: int = 2000

    def __post_init__(self) -> None:
        try:  # a number of any kind (also a 0-d tensor) becomes a float
            psi = math.nan if isinstance(self.psi, (bool, str)) else float(self.psi)
        except (TypeError, ValueError):
            psi = math.nan
        if not math.isfinite(psi):
            raise ValueError(f"truncation psi must be a finite number, got {self.psi!r}")
        object.__setattr__(self, "psi", psi)
        cutoff = self.cutoff
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 0):
            raise ValueError(f"truncation cutoff must be None or an int ≥ 0 (number of ws rows), got {cutoff!r}")
        n = self.n_class_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n_class_samples must be a positive int (latents per class mean), got {n!r}")

    def replace(self, **changes: object) -> Truncation:
        """A copy with some fields changed (``Truncation(0.7).replace(class_aware=True)``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: The keywords every truncating function took before :class:`Truncation` (-> its field).
LEGACY_TRUNCATION_KEYWORDS = {
    "truncation_psi": "psi",
    "truncation_cutoff": "cutoff",
    "class_aware_truncation": "class_aware",
    "n_class_samples": "n_class_samples",
}


def as_truncation(
    truncation: Truncation | float | None = None,
    legacy: Mapping[str, object] | None = None,
    *,
    default: Truncation = Truncation(),
    caller: str = "this function",
    stacklevel: int = 3,
) -> Truncation:
    """The :class:`Truncation` a call asked for.

    ``truncation``: a :class:`Truncation`, a number (``psi``, the other fields from
    ``default``) or None (``default``). ``legacy``: the call's other keywords; the old
    ``truncation_psi`` / ``truncation_cutoff`` / ``class_aware_truncation`` /
    ``n_class_samples`` are applied over ``default`` with a DeprecationWarning (one
    release), any other keyword is a TypeError, as Python would raise.
    """
    legacy = dict(legacy or {})
    unknown = sorted(set(legacy) - set(LEGACY_TRUNCATION_KEYWORDS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    if truncation is None:
        result = default
    elif isinstance(truncation, Truncation):
        result = truncation
    elif isinstance(truncation, numbers.Real) and not isinstance(truncation, bool):
        result = default.replace(psi=float(truncation))
    else:
        raise TypeError(f"truncation must be a Truncation, a number (psi) or None, got {type(truncation).__name__}")
    if legacy:
        if truncation is not None:
            raise TypeError(f"{caller}(): give truncation=Truncation(...) or the old keywords "
                            f"({', '.join(sorted(legacy))}), not both")
        fields = {LEGACY_TRUNCATION_KEYWORDS[k]: v for k, v in legacy.items()}
        new = ", ".join(f"{f}={v!r}" for f, v in fields.items())
        warnings.warn(
            f"{caller}(): the keywords {', '.join(k + '=' for k in legacy)} are deprecated and will be removed in "
            f"the next release; pass truncation=Truncation({new}) (artlab.stylegan.Truncation)",
            DeprecationWarning, stacklevel=stacklevel,
        )
        result = result.replace(**fields)
    return result


# --------------------------------------------------------------------------- mapping and synthesis


def truncate(ws: Tensor, center: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
    """``center + psi·(ws − center)`` on ws rows ``< cutoff`` (all rows if None); other rows untouched.

    ``ws`` is (N, num_ws, w_dim); ``center`` is (w_dim,) or (N, w_dim) (one centre per sample).
    """
    if ws.ndim != 3:
        raise ValueError(f"ws must have shape (N, num_ws, w_dim), got {tuple(ws.shape)}")
    psi = float(psi)
    if not math.isfinite(psi):
        raise ValueError(f"truncation psi must be a finite number, got {psi!r}")
    if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 0):
        raise ValueError(f"truncation_cutoff must be None or an int ≥ 0 (number of ws rows), got {cutoff!r}")
    center = center.to(ws.device, ws.dtype)
    center = center.view(1, 1, -1) if center.ndim == 1 else center.unsqueeze(1)
    stop = ws.shape[1] if cutoff is None else min(cutoff, ws.shape[1])
    out = ws.clone()
    out[:, :stop] = center + psi * (ws[:, :stop] - center)
    return out


def check_noise_mode(noise_mode: str) -> None:
    """ValueError unless ``noise_mode`` is one of :data:`artlab.stylegan.networks.NOISE_MODES`."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")


def _latents(G, seeds: int | Sequence[int] | None, z: Tensor | None) -> Tensor:
    if (seeds is None) == (z is None):
        raise ValueError("give exactly one of seeds (e.g. [0, 1, 2]) or z (a tensor of shape [N, z_dim])")
    if z is None:
        return z_from_seeds(seeds, G.z_dim)  # type: ignore[arg-type]
    z = torch.as_tensor(z)
    if z.ndim == 1:
        z = z.unsqueeze(0)
    if z.ndim != 2 or z.shape[1] != G.z_dim:
        raise ValueError(f"z must have shape [N, {G.z_dim}] (z_dim={G.z_dim}), got {tuple(z.shape)}")
    return z.detach().to("cpu", torch.float32)


def map_to_ws(
    G,
    seeds: int | Sequence[int] | None = None,
    z: Tensor | None = None,
    c: ClassSpec = None,
    *,
    truncation: Truncation | float | None = None,
    **legacy: object,
) -> Tensor:
    """ws (N, num_ws, w_dim) on G's device for seeds (or z) and a class, with ``truncation``.

    ``truncation`` (a :class:`Truncation` or a psi; default none): with ``class_aware`` it
    lerps towards each label's sampled W mean (:func:`class_w_mean`) instead of the
    class-agnostic ``mapping.w_avg``, which needs a conditional generator. The old keywords
    (``truncation_psi=`` …) still work for one release (DeprecationWarning).
    """
    trunc = as_truncation(truncation, legacy, caller="map_to_ws")
    with torch.no_grad():
        return _mapped(G, seeds, z, c, trunc)


def _mapped(G, seeds: int | Sequence[int] | None, z: Tensor | None, c: ClassSpec, trunc: Truncation) -> Tensor:
    zs = _latents(G, seeds, z)
    labels = label_rows(G, c, zs.shape[0])
    ws = G.mapping(zs.to(G.device), None if labels is None else labels.to(G.device), update_w_avg=False)
    if float(trunc.psi) == 1.0:
        return ws
    if trunc.class_aware:
        if labels is None:
            raise ValueError("class_aware truncation needs a class-conditional generator (c_dim > 0)")
        centers = torch.stack([class_w_mean(G, row, n=trunc.n_class_samples) for row in labels])
    else:
        if getattr(G.mapping, "w_avg", None) is None:
            raise ValueError("this generator has no w_avg, so it cannot truncate; use truncation psi=1")
        centers = G.mapping.w_avg.detach()
    return truncate(ws, centers, trunc.psi, trunc.cutoff)


@torch.no_grad()
def synthesize(G, ws: Tensor, *, noise_mode: str = "const", noise_seed: int = 0, batch_size: int = 8) -> Tensor:
    """ws (N, num_ws, w_dim) -> images N×3×R×R in [0, 1] on the CPU, ``batch_size`` at a time.

    ``noise_mode='random'`` draws the per-pixel noise from one ``torch.Generator`` seeded
    with ``noise_seed`` (batch after batch), so a call is reproducible.
    """
    check_noise_mode(noise_mode)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    gen = torch.Generator(device=G.device).manual_seed(int(noise_seed)) if noise_mode == "random" else None
    out = []
    for start in range(0, ws.shape[0], batch_size):
        raw = G.synthesis(ws[start : start + batch_size].to(G.device), noise_mode=noise_mode, generator=gen)
        out.append(to_images(raw).cpu())
    return torch.cat(out, dim=0)


def generate(
    G,
    seeds: int | Sequence[int] | None = None,
    z: Tensor | None = None,
    c: ClassSpec = None,
    *,
    truncation: Truncation | float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    batch_size: int = 8,
    **legacy: object,
) -> Tensor:
    """Images (N×3×R×R in [0, 1], CPU) for seeds (official z convention) or latents ``z``.

    c: a class for every image (index, name, ``{class: weight}`` soft label, c_dim weights)
    or a (N, c_dim) tensor of labels, one per image. truncation: a :class:`Truncation` (or
    a psi) lerping the first ``cutoff`` ws rows towards the centre (``mapping.w_avg``, or
    the class's W mean with ``class_aware``). noise_mode: ``'const'`` (stored noise, the
    default for reproducible images), ``'random'`` (seeded by ``noise_seed``) or ``'none'``.
    The old keywords (``truncation_psi=`` …) still work for one release (DeprecationWarning).
    """
    trunc = as_truncation(truncation, legacy, caller="generate")
    check_noise_mode(noise_mode)
    ws = map_to_ws(G, seeds, z, c, truncation=trunc)
    return synthesize(G, ws, noise_mode=noise_mode, noise_seed=noise_seed, batch_size=batch_size)


# --------------------------------------------------------------------------- style mixing


def layer_range(G, layers: range | slice | tuple[int, int]) -> range:
    """ws rows as a ``range`` within [0, num_ws): from a range, a slice or a (start, stop) pair."""
    num_ws = G.num_ws
    if isinstance(layers, tuple) and len(layers) == 2:
        layers = range(*layers)
    if isinstance(layers, slice):
        layers = range(num_ws)[layers]
    if not isinstance(layers, range):
        raise TypeError(f"layers must be a range, a slice or a (start, stop) pair, got {layers!r}")
    rows = list(layers)
    if not rows:
        raise ValueError(f"layers {layers!r} selects no ws row; num_ws={num_ws}")
    if min(rows) < 0 or max(rows) >= num_ws:
        raise ValueError(f"layers {layers!r} must lie within 0 … {num_ws - 1} (num_ws={num_ws})")
    return layers


def style_mix(G, ws_a: Tensor, ws_b: Tensor, layers: range | slice | tuple[int, int]) -> Tensor:
    """ws_a with the rows in ``layers`` taken from ws_b (batch of 1 broadcasts).

    Rows index the synthesis inputs: low rows set coarse structure (pose, layout), high
    rows fine detail and colour. ``synthesis.block_ws_slices()`` says which block reads which row.
    """
    rows = layer_range(G, layers)
    for name, ws in (("ws_a", ws_a), ("ws_b", ws_b)):
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise ValueError(f"{name} must have shape (N, {G.num_ws}, {G.w_dim}), got {tuple(ws.shape)}")
    n = max(ws_a.shape[0], ws_b.shape[0])
    if ws_a.shape[0] not in (1, n) or ws_b.shape[0] not in (1, n):
        raise ValueError(f"batch sizes {ws_a.shape[0]} and {ws_b.shape[0]} do not broadcast (use equal sizes or 1)")
    out = ws_a.expand(n, -1, -1).clone()
    index = torch.tensor(list(rows), device=out.device)
    out[:, index] = ws_b.to(out.device, out.dtype).expand(n, -1, -1)[:, index]
    return out


def style_mix_grid(
    G,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    layers: range | slice | tuple[int, int] = (0, 7),
    *,
    c: ClassSpec = None,
    truncation: Truncation | float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    as_grid: bool = True,
    **legacy: object,
) -> Tensor:
    """The style-mixing table: cell (i, j) = row seed i with ``layers`` taken from column seed j.

    Headers are the plain images: the top row shows the column seeds, the left column the
    row seeds, the corner is blank (white). As in the official ``style_mixing.py`` the
    default layers are rows 0-6 (coarse and middle styles from the column seed). Every
    latent is mapped with ``c`` and ``truncation`` (a :class:`Truncation` or a psi). Returns
    one grid image (1×3×H×W) or, with ``as_grid=False``, the (R+1)·(C+1) tiles in row order.
    """
    trunc = as_truncation(truncation, legacy, caller="style_mix_grid")
    rows, cols = list(row_seeds), list(col_seeds)
    if not rows or not cols:
        raise ValueError("give at least one row seed and one column seed")
    layers = layer_range(G, layers)
    ws_rows = map_to_ws(G, rows, None, c, truncation=trunc)
    ws_cols = map_to_ws(G, cols, None, c, truncation=trunc)
    mixed = torch.cat([style_mix(G, ws_rows[i : i + 1], ws_cols, layers) for i in range(len(rows))])
    syn = dict(noise_mode=noise_mode, noise_seed=noise_seed)
    row_imgs, col_imgs = synthesize(G, ws_rows, **syn), synthesize(G, ws_cols, **syn)
    cells = synthesize(G, mixed, **syn)
    blank = torch.ones_like(row_imgs[:1])
    tiles = [blank, *col_imgs.split(1)]
    for i in range(len(rows)):
        tiles += [row_imgs[i : i + 1], *cells[i * len(cols) : (i + 1) * len(cols)].split(1)]
    batch = torch.cat(tiles)
    return image_grid(batch, nrow=len(cols) + 1) if as_grid else batch


# --------------------------------------------------------------------------- one call for a view


@dataclass(frozen=True)
class StyleMix:
    """Take the ws rows ``layers`` from the latent of ``seed`` (mapped with the same class and truncation)."""

    seed: int
    layers: range | slice | tuple[int, int] = (0, 7)


class Rendered(NamedTuple):
    """What :func:`render` drew: ``images`` (N×3×R×R in [0, 1], CPU) and the ``ws`` that drew them."""

    images: Tensor
    ws: Tensor


_mix_rows = style_mix  # render's ``style_mix`` argument shadows the function inside it


@torch.no_grad()
def render(
    G,
    seeds_or_z: int | Sequence[int] | Tensor,
    c: ClassSpec = None,
    *,
    truncation: Truncation | float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    style_mix: StyleMix | tuple[int, range | slice | tuple[int, int]] | None = None,
    batch_size: int = 8,
) -> Rendered:
    """Images and ws for seeds (or a z tensor), a class or class mix, a truncation and a style mix, in one call.

    What an interactive view draws: :func:`map_to_ws` (``c``: an index, a name,
    ``{class: weight}``, c_dim weights; ``truncation``: a :class:`Truncation` or a psi), then,
    with ``style_mix=StyleMix(seed, layers)`` (or ``(seed, layers)``), the rows ``layers``
    replaced by those of ``seed``'s latent under the same class and truncation
    (:func:`style_mix`), then :func:`synthesize` with ``noise_mode``. Returns
    ``Rendered(images, ws)`` (ws on the CPU).
    """
    trunc = as_truncation(truncation, caller="render")
    check_noise_mode(noise_mode)
    if isinstance(seeds_or_z, Tensor) and seeds_or_z.is_floating_point():
        ws = map_to_ws(G, None, seeds_or_z, c, truncation=trunc)
    else:
        ws = map_to_ws(G, seeds_or_z, None, c, truncation=trunc)  # type: ignore[arg-type]
    if style_mix is not None:
        mix = style_mix if isinstance(style_mix, StyleMix) else StyleMix(*style_mix)
        per_row = isinstance(c, Tensor) and c.ndim == 2 and c.shape[0] > 1  # one label per latent: mix each
        mix_ws = map_to_ws(G, [int(mix.seed)] * (ws.shape[0] if per_row else 1), None, c, truncation=trunc)
        ws = _mix_rows(G, ws, mix_ws, mix.layers)
    images = synthesize(G, ws, noise_mode=noise_mode, noise_seed=noise_seed, batch_size=batch_size)
    return Rendered(images, ws.detach().cpu())
