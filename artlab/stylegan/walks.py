"""Latent walks: seed-to-seed animations in Z and W, and walks between classes.

Every walk is a generator of :class:`WalkFrame` objects, one image each, computed when
asked for, so a widget can play a walk and stop it, a script can save it
(:func:`save_walk`: GIF, MP4, or a PNG contact sheet that carries the generator's label),
and :func:`collect` stacks the frames into one batch.

* :func:`walk_z` interpolates latents z with :func:`slerp`: z ~ N(0, I) lives near the
  sphere of radius √z_dim, and a straight line between two such points dips inside it
  (its midpoint has ~0.71× the norm for orthogonal z), where the mapping network saw
  no training inputs.
* :func:`walk_w` interpolates in W with :func:`lerp`: W is where StyleGAN interpolates
  (every style vector is affine in w, spec 6.2), and a linear path is the natural one.
* :func:`class_mix_walk` morphs one class into another for a fixed seed, in one of two
  ways (see its docstring for the difference).
* :func:`walk_w_to_class` moves a latent that has no seed (a projection) to another class.

Frames are mapped with one :class:`artlab.stylegan.generate.Truncation` (``truncation=``;
the old ``truncation_psi=`` … keywords still work for one release). GIF and MP4 files are
written by :mod:`artlab.video`.

Loops (``loop=True``) add the segment from the last keyframe back to the first and leave
out each segment's end frame (it is the next segment's start), so the frames repeat
seamlessly when played in a cycle.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from artlab import video
from artlab.images import ensure_image_batch, image_grid, result_metadata, save_image
from artlab.stylegan.generate import (
    ClassSpec,
    Truncation,
    as_truncation,
    check_noise_mode,
    class_label,
    class_names,
    class_w_mean,
    label_rows,
    map_to_ws,
    synthesize,
)
from artlab.stylegan.networks import z_from_seeds

__all__ = [
    "WalkFrame",
    "CLASS_MIX_METHODS",
    "slerp",
    "lerp",
    "walk_z",
    "walk_w",
    "class_mix_walk",
    "walk_w_to_class",
    "walk_to_class",
    "collect",
    "frame_grid",
    "save_walk",
    "save_gif",
    "save_mp4",
]

CLASS_MIX_METHODS = ("soft_label", "centroid")


@dataclass
class WalkFrame:
    """One frame of a walk.

    ``index``: frame number. ``t``: position along the walk in [0, 1] (for a class walk:
    the fraction of class b in the mix). ``image``: 1×3×H×W in [0, 1] (CPU). ``ws``: the
    (1, num_ws, w_dim) latent drawn (CPU). ``label``: a caption for the frame.
    ``c``: the (1, c_dim) class label fed to the mapping network (None when unconditional
    or, for a centroid walk, when no single label produced the frame). ``z``: the (1, z_dim)
    latent for Z walks and class walks, else None.
    """

    index: int
    t: float
    image: Tensor
    ws: Tensor
    label: str
    c: Tensor | None = None
    z: Tensor | None = None


# --------------------------------------------------------------------------- interpolation


def _t_like(t: float | Tensor, a: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    return t.unsqueeze(-1) if t.ndim > 0 else t


def lerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Straight line ``a + t·(b − a)`` (t a number, or a tensor broadcast over the last axis); exact ends."""
    return torch.lerp(a, b, _t_like(t, a))


def slerp(a: Tensor, b: Tensor, t: float | Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the last axis: the direction moves on the great circle
    from ``a`` to ``b`` at constant angular speed, the norm goes linearly from ‖a‖ to ‖b‖.

    With ‖a‖ = ‖b‖ this is the classic slerp (constant norm). The endpoints are exact.
    (Nearly) parallel directions fall back to a normalised lerp of the directions; exactly
    opposite ones have no unique great circle; a zero vector falls back to :func:`lerp`.
    """
    t = _t_like(t, a)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    if bool((na <= eps).any()) or bool((nb <= eps).any()):
        return torch.lerp(a, b, t)
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    small = sin.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(sin), sin)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe
    fallback = torch.lerp(ua, ub, t)
    fallback = fallback / fallback.norm(dim=-1, keepdim=True).clamp_min(eps)
    direction = torch.where(small, fallback, direction)
    out = direction * (na + t * (nb - na))
    # exact endpoints whatever the rounding
    out = torch.where(t == 0, a, out)
    return torch.where(t == 1, b, out)


def _schedule(n_keys: int, steps_per_segment: int, loop: bool) -> list[tuple[int, int, float]]:
    """(frame index, segment, t within the segment) for a walk through ``n_keys`` keyframes."""
    if isinstance(steps_per_segment, bool) or not isinstance(steps_per_segment, int) or steps_per_segment < 1:
        raise ValueError(f"steps_per_segment must be a positive int, got {steps_per_segment!r}")
    if n_keys < 2:
        raise ValueError("a walk needs at least two keyframes (e.g. seeds=[0, 1])")
    segments = n_keys if loop else n_keys - 1
    frames = [(s, k / steps_per_segment) for s in range(segments) for k in range(steps_per_segment)]
    if not loop:
        frames.append((segments - 1, 1.0))  # the last keyframe itself
    return [(i, s, t) for i, (s, t) in enumerate(frames)]


# --------------------------------------------------------------------------- Z and W walks


def _frame_ws(ws: Tensor) -> Tensor:
    return ws.detach().to("cpu", torch.float32)


def walk_z(
    G,
    seeds: Sequence[int],
    steps_per_segment: int = 16,
    loop: bool = True,
    *,
    c: ClassSpec = None,
    truncation: Truncation | float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    **legacy: object,
) -> Iterator[WalkFrame]:
    """Walk through the latents of ``seeds`` in Z (:func:`slerp`), ``steps_per_segment`` frames per pair.

    Every frame is mapped with the same class ``c`` and ``truncation`` (a :class:`Truncation`
    or a psi), and drawn with the same noise (``'random'`` noise is re-drawn from
    ``noise_seed`` for every frame, so it does not flicker).
    """
    trunc = as_truncation(truncation, legacy, caller="walk_z")
    check_noise_mode(noise_mode)
    keys = z_from_seeds(list(seeds), G.z_dim)
    schedule = _schedule(len(keys), steps_per_segment, loop)
    label = label_rows(G, c, 1)
    total = schedule[-1][1] + 1
    for index, seg, t in schedule:
        a, b = keys[seg], keys[(seg + 1) % len(keys)]
        z = slerp(a, b, t).unsqueeze(0)
        ws = map_to_ws(G, None, z, label, truncation=trunc)
        image = synthesize(G, ws, noise_mode=noise_mode, noise_seed=noise_seed)
        caption = f"seed {seeds[seg]} → {seeds[(seg + 1) % len(keys)]}, t = {t:.2f} (slerp in Z)"
        yield WalkFrame(index, (seg + t) / total, image, _frame_ws(ws), caption, label, z)


def walk_w(
    G,
    seeds: Sequence[int] | None = None,
    steps_per_segment: int = 16,
    loop: bool = True,
    *,
    ws: Tensor | None = None,
    c: ClassSpec = None,
    truncation: Truncation | float | None = None,
    noise_mode: str = "const",
    noise_seed: int = 0,
    **legacy: object,
) -> Iterator[WalkFrame]:
    """Walk in W (:func:`lerp`) through the ws of ``seeds`` (mapped with ``c`` and ``truncation``),
    or through given keyframes ``ws`` (K, num_ws, w_dim), e.g. projections of images.

    Truncation commutes with a linear walk (same centre and psi), so truncating the
    keyframes is the same as truncating every frame.
    """
    trunc = as_truncation(truncation, legacy, caller="walk_w")
    check_noise_mode(noise_mode)
    if (seeds is None) == (ws is None):
        raise ValueError("give exactly one of seeds or ws (keyframes of shape (K, num_ws, w_dim))")
    if ws is None:
        keys = map_to_ws(G, list(seeds), None, c, truncation=trunc)  # type: ignore[arg-type]
        names = [f"seed {s}" for s in seeds]  # type: ignore[union-attr]
    else:
        keys = torch.as_tensor(ws).detach()
        if keys.ndim != 3 or keys.shape[1:] != (G.num_ws, G.w_dim):
            raise ValueError(f"ws keyframes must have shape (K, {G.num_ws}, {G.w_dim}), got {tuple(keys.shape)}")
        keys = keys.to(G.device, torch.float32)
        names = [f"key {k}" for k in range(len(keys))]
    schedule = _schedule(len(keys), steps_per_segment, loop)
    total = schedule[-1][1] + 1
    for index, seg, t in schedule:
        w = lerp(keys[seg], keys[(seg + 1) % len(keys)], t).unsqueeze(0)
        image = synthesize(G, w, noise_mode=noise_mode, noise_seed=noise_seed)
        caption = f"{names[seg]} → {names[(seg + 1) % len(keys)]}, t = {t:.2f} (lerp in W)"
        yield WalkFrame(index, (seg + t) / total, image, _frame_ws(w), caption)


# --------------------------------------------------------------------------- class walks


def _mix_caption(G, a: int, b: int, t: float) -> str:
    names = class_names(G)
    return f"{100 * (1 - t):.0f}% {names[a]} / {100 * t:.0f}% {names[b]}"


def class_mix_walk(
    G,
    classes: tuple[int | str, int | str] = (0, 1),
    mix_from: float = 0.0,
    mix_to: float = 1.0,
    steps: int = 16,
    method: str = "soft_label",
    seed: int = 0,
    truncation: Truncation | float | None = None,
    *,
    loop: bool = False,
    noise_mode: str = "const",
    noise_seed: int = 0,
    **legacy: object,
) -> Iterator[WalkFrame]:
    """Morph class a into class b for one seed, ``steps`` frames from ``mix_from`` to ``mix_to``
    (the fraction t of class b: 0.3 means "70% a / 30% b").

    Two meanings of a fractional class, both exact at t = 0 and t = 1:

    * ``method="soft_label"``: feed the soft label c = (1−t)·e_a + t·e_b to the mapping
      network. The class embedding is affine, so it receives the same mix of the two
      classes' embeddings; but the embedding is then normalised and passed through the
      nonlinear mapping MLP, so w(t) is a *curve* in W, not the straight line between the
      classes' ws (spec 6.2). Mixed labels were never seen in training (they are one-hot
      there): the network extrapolates, which can show unexpected hybrids or jumps.
      With ``truncation.class_aware`` the truncation centre is the sampled W mean of the
      soft label itself.
    * ``method="centroid"``: map the seed with each class, w_a and w_b, truncate each
      towards its own class centroid μ_a, μ_b (:func:`class_w_mean`), and go in a straight
      line in W: w(t) = (1−t)·w_a' + t·w_b'. This equals the truncation of the lerp of the
      ws towards the lerp of the centroids, (1−t)·μ_a + t·μ_b: the class centroid moves
      linearly and the seed keeps its offset from it (scaled by psi). W is where StyleGAN
      interpolates smoothly, so the morph is smooth; at psi = 0 it is exactly the walk
      between the two class centroids. ``Truncation(class_aware=False)`` uses the
      class-agnostic ``mapping.w_avg`` as both centres.

    ``truncation``: a :class:`Truncation` or a psi; here ``class_aware`` defaults to True
    (``Truncation(psi, class_aware=True)``), so a bare psi truncates towards the class centroids.

    ``loop=True`` walks back again (a to b to a, without repeating the turning frames).
    Frames carry ``c`` (the soft label; for centroid walks the mix weights too, as a record).
    """
    trunc = as_truncation(truncation, legacy, default=Truncation(class_aware=True), caller="class_mix_walk")
    if G.c_dim < 2:
        raise ValueError(
            f"class walks need a class-conditional generator with c_dim ≥ 2; this one has c_dim={G.c_dim}"
        )
    if method not in CLASS_MIX_METHODS:
        raise ValueError(f"method must be one of {', '.join(CLASS_MIX_METHODS)}, got {method!r}")
    if len(classes) != 2:
        raise ValueError(f"classes must be a pair (a, b), got {classes!r}")
    for name, v in (("mix_from", mix_from), ("mix_to", mix_to)):
        if not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be a fraction in [0, 1] (the share of class b), got {v!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int ≥ 2 (frames including both ends), got {steps!r}")
    check_noise_mode(noise_mode)
    e_a, e_b = class_label(G, classes[0]), class_label(G, classes[1])
    a, b = int(e_a.argmax()), int(e_b.argmax())
    ts = torch.linspace(float(mix_from), float(mix_to), steps, dtype=torch.float64).tolist()
    if loop:
        ts = ts + ts[-2:0:-1]
    z = z_from_seeds(seed, G.z_dim)
    psi = float(trunc.psi)
    if method == "centroid":
        w_a, w_b = map_to_ws(G, None, z, e_a, truncation=trunc), map_to_ws(G, None, z, e_b, truncation=trunc)
    for index, t in enumerate(ts):
        c = (1 - t) * e_a + t * e_b
        if method == "soft_label":
            ws = map_to_ws(G, None, z, c, truncation=trunc)
        else:
            ws = lerp(w_a, w_b, t)
        image = synthesize(G, ws, noise_mode=noise_mode, noise_seed=noise_seed)
        caption = f"{_mix_caption(G, a, b, t)} ({method.replace('_', ' ')}, seed {seed}, psi {psi:g})"
        yield WalkFrame(index, float(t), image, _frame_ws(ws), caption, c.to(torch.float32), z)


# --------------------------------------------------------------------------- frames and export


def collect(walk: Iterable[WalkFrame] | Iterable[Tensor]) -> Tensor:
    """Run a walk to the end and stack its frames' images: N×3×H×W in [0, 1]."""
    images = [f.image if isinstance(f, WalkFrame) else ensure_image_batch(f) for f in walk]
    if not images:
        raise ValueError("the walk produced no frames")
    return torch.cat(images, dim=0)


def _as_batch(frames: Tensor | Iterable[WalkFrame] | Iterable[Tensor]) -> Tensor:
    return ensure_image_batch(frames, "frames") if isinstance(frames, Tensor) else collect(frames)


def frame_grid(frames: Tensor | Iterable[WalkFrame] | Iterable[Tensor], columns: int = 8, padding: int = 2) -> Tensor:
    """Frames (a batch, a walk, or a list of frames or images) tiled ``columns`` per row: 1×3×H×W."""
    return image_grid(_as_batch(frames), nrow=columns, padding=padding)


def save_walk(frames: Tensor | Iterable[WalkFrame] | Iterable[Tensor], path: str | Path, fps: float = 12, *,
              label: str | None = None) -> Path:
    """Save frames as an animated GIF (``.gif``), an H.264 MP4 (``.mp4``, imageio-ffmpeg) or a PNG
    contact sheet of every frame (``.png``, :func:`frame_grid`, 8 per row).

    ``label`` (the generator's, ``G.label``) is stored in the PNG's metadata
    (:func:`artlab.images.result_metadata`), so the sheet says which network drew it; GIF and
    MP4 files keep no metadata, so a label is refused for them. Uses artlab's writers
    (:func:`artlab.video.save_gif`, :func:`artlab.video.save_mp4`, :func:`artlab.images.save_image`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4", ".png"):
        raise ValueError(f"save_walk writes .gif or .mp4 files (or a .png contact sheet), got {path.name!r}")
    if suffix == ".png":
        metadata = result_metadata(label, kind="latent walk") if label is not None else None
        return save_image(frame_grid(frames), path, metadata=metadata)
    if label is not None:
        raise ValueError(f"{suffix} files keep no metadata, so label cannot be stored; save a .png contact "
                         "sheet for that, or leave label out")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return save_gif(frames, path, fps) if suffix == ".gif" else save_mp4(frames, path, fps)


def save_gif(frames: Tensor | Iterable[WalkFrame] | Iterable[Tensor], path: str | Path, fps: float = 12) -> Path:
    """Frames (a batch, a walk or a list) as an animated GIF; :func:`artlab.video.save_gif` writes it."""
    return video.save_gif(_as_batch(frames), path, fps)


def save_mp4(frames: Tensor | Iterable[WalkFrame] | Iterable[Tensor], path: str | Path, fps: float = 12) -> Path:
    """Frames (a batch, a walk or a list) as an H.264 MP4; :func:`artlab.video.save_mp4` writes it."""
    return video.save_mp4(_as_batch(frames), path, fps)


# --------------------------------------------------------------------------- from a projection to a class


def walk_w_to_class(G, ws: Tensor, cls: int | str, frames: int = 8, *, c_from: ClassSpec = None,
                    n_class_samples: int = 2000, noise_mode: str = "const",
                    noise_seed: int = 0) -> Iterator[WalkFrame]:
    """Walk in W from a latent ``ws`` (1, num_ws, w_dim) to the same latent moved to class ``cls``: ``frames`` frames.

    For a latent that has no seed, such as a projection (:func:`artlab.stylegan.project`).
    The destination keeps the latent's offset from its class centre and swaps the centre:
    ``ws + μ_cls − Σ_k c_k·μ_k``, with μ_k the class centroids in W (:func:`class_w_mean`,
    ``n_class_samples`` latents each) and ``c_from`` the class the latent was projected with
    (one-hot or soft; None: the class-agnostic start of the projection, a uniform mix). This
    is the centroid method of :func:`class_mix_walk` applied to a latent that has no z.
    Like every walk, a generator of :class:`WalkFrame` (``collect`` stacks the images).
    """
    if G.c_dim < 1:
        raise ValueError("walking to a class needs a class-conditional generator (c_dim > 0)")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an int ≥ 2 (both ends included), got {frames!r}")
    target = int(class_label(G, cls).argmax())
    centroids = torch.stack([class_w_mean(G, k, n=n_class_samples) for k in range(G.c_dim)])  # (c_dim, w_dim)
    weights = torch.full((G.c_dim,), 1.0 / G.c_dim) if c_from is None else class_label(G, c_from)[0]
    shift = centroids[target] - weights @ centroids
    start = ws.detach().to("cpu", torch.float32)
    keys = torch.cat([start, start + shift.view(1, 1, -1)])
    name = class_names(G)[target]
    for frame in walk_w(G, ws=keys, steps_per_segment=frames - 1, loop=False, noise_mode=noise_mode,
                        noise_seed=noise_seed):
        frame.label = f"projection → class {name}, t = {frame.t:.2f} (lerp in W)"
        yield frame


def walk_to_class(G, ws: Tensor, cls: int, *, frames: int = 8, c_from: Tensor | None = None,
                  n_class_samples: int = 2000) -> Tensor:
    """Deprecated: ``collect(walk_w_to_class(...))``; this name returned images, unlike every other walk.

    Images (frames×3×H×W) on a straight W path from ``ws`` to the same latent moved to
    class ``cls`` (see :func:`walk_w_to_class`). Removed in the next release.
    """
    warnings.warn(
        "walk_to_class is deprecated and will be removed in the next release; use "
        "collect(walk_w_to_class(G, ws, cls, frames, c_from=...)) (a walk of WalkFrames, like walk_z/walk_w)",
        DeprecationWarning, stacklevel=2,
    )
    return collect(walk_w_to_class(G, ws, cls, frames, c_from=c_from, n_class_samples=n_class_samples))
