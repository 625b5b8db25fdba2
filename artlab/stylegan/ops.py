"""Low-level operators of a StyleGAN2-ADA compatible generator, in pure PyTorch.

Written from ``design/stylegan2_ada_spec.md`` (sections 4.7, 4.8, 4.10): FIR up/down-sampling
(``upfirdn2d``), the modulated convolution with demodulation, bias + activation with gain and
clamp, and ``normalize_2nd_moment``. Everything runs on any device in float32; float16 inputs
are accepted (the activation is then evaluated in float32 and cast back, as the spec says the
official kernel does).

Conventions used throughout:

* A *true convolution* flips the kernel; PyTorch's ``conv2d`` is a cross-correlation.
  ``flip_weight=True`` means "cross-correlate with the weight as stored" (plain ``conv2d``),
  ``flip_weight=False`` means "true convolution with the weight as stored".
* Padding tuples are ``(x0, x1, y0, y1)``: left, right, top, bottom. Negative values crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]

Padding = int | Sequence[int]


# --------------------------------------------------------------------------- filters


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), *, normalize: bool = True) -> Tensor:
    """The 2-D FIR filter ``outer(taps, taps)``, normalised to sum 1 (float32).

    For the default ``[1, 3, 3, 1]`` this is the generator's ``resample_filter`` buffer,
    ``[[1,3,3,1],[3,9,9,3],[3,9,9,3],[1,3,3,1]] / 64``.
    """
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    if k.ndim != 1 or k.numel() == 0:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {tuple(k.shape)}")
    f = torch.outer(k, k)
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    pad = [int(p) for p in padding]
    if len(pad) == 2:  # (px, py)
        return pad[0], pad[0], pad[1], pad[1]
    if len(pad) == 4:
        return pad[0], pad[1], pad[2], pad[3]
    raise ValueError(f"padding must be an int, (px, py) or (x0, x1, y0, y1); got {padding!r}")


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = 1.0,
    flip_filter: bool = False,
) -> Tensor:
    """Upsample by zero insertion, pad, FIR-filter (true convolution), downsample by slicing.

    ``x`` is N×C×H×W; ``f`` a 2-D filter applied to every channel. Zero insertion puts ``up-1``
    zeros after *every* sample (also the last), so the upsampled size is ``H*up`` before
    padding. The filter is multiplied by ``gain`` (``gain ** (f.ndim / 2)`` in general, which
    is ``gain`` itself for a 2-D filter, spec 4.8).
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects an N×C×H×W tensor, got shape {tuple(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D filter, got shape {tuple(f.shape)}")
    x0, x1, y0, y1 = _parse_padding(padding)
    n, c, h, w = x.shape
    if up > 1:  # zero insertion: [.., H, 1, W, 1] padded to [.., H, up, W, up]
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    # F.pad crops when given negative values, which is what the spec's negative padding means.
    x = F.pad(x, [x0, x1, y0, y1])
    f = f.to(device=x.device, dtype=x.dtype) * gain ** (f.ndim / 2)
    if not flip_filter:
        f = f.flip([0, 1])  # conv2d cross-correlates; flip for a true convolution
    weight = f[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2, padding: Padding = 0, gain: float = 1.0) -> Tensor:
    """Upsample by ``up`` with FIR filter ``f`` so that an H×W input becomes (H·up)×(W·up).

    The filter is scaled by ``up**2`` (so a constant image stays constant away from the
    border) and placed with padding ``((fw+up-1)//2, (fw-up)//2)``, which is (2, 1) for the
    4-tap filter and ``up=2`` (spec 4.8). Borders are zero padded, not replicated.
    """
    x0, x1, y0, y1 = _parse_padding(padding)
    fh, fw = f.shape
    pad = (
        x0 + (fw + up - 1) // 2,
        x1 + (fw - up) // 2,
        y0 + (fh + up - 1) // 2,
        y1 + (fh - up) // 2,
    )
    return upfirdn2d(x, f, up=up, padding=pad, gain=gain * up * up)


def downsample2d(x: Tensor, f: Tensor, down: int = 2, padding: Padding = 0, gain: float = 1.0) -> Tensor:
    """Filter with ``f`` then keep every ``down``-th sample (H×W -> about (H/down)×(W/down)).

    Padding ``((fw-down+1)//2, (fw-down)//2)`` centres the filter; (1, 1) for 4 taps, ``down=2``.
    Not used by the generator; provided for completeness and checked against the reference.
    """
    x0, x1, y0, y1 = _parse_padding(padding)
    fh, fw = f.shape
    pad = (
        x0 + (fw - down + 1) // 2,
        x1 + (fw - down) // 2,
        y0 + (fh - down + 1) // 2,
        y1 + (fh - down) // 2,
    )
    return upfirdn2d(x, f, down=down, padding=pad, gain=gain)


# --------------------------------------------------------------------------- convolution


def conv2d_resample(
    x: Tensor,
    w: Tensor,
    f: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> Tensor:
    """2-D convolution, optionally fused with FIR upsampling by ``up`` (1 or 2).

    ``up == 1``: ``conv2d`` with zero padding ``padding`` (cross-correlation when
    ``flip_weight``, true convolution otherwise).

    ``up > 1`` (spec 4.8, "equivalent fast form"): a stride-``up`` transposed convolution
    followed by the FIR filter ``f`` with gain ``up**2``. The result equals zero-insertion
    upsampling, padding by ``((fw+up-1)//2 + p, (fw-up)//2 + p)``, filtering, and a valid
    true convolution with ``w``. For a 1×1 kernel it is exactly "1×1 conv, then
    ``upsample2d``". Note that for k > 1 it is *not* "upsample2d, then a padded 3×3 conv":
    the two differ on a 1-pixel border.
    """
    if up == 1:
        if not flip_weight:
            w = w.flip([2, 3])
        return F.conv2d(x, w, padding=padding, groups=groups)
    if f is None:
        raise ValueError("conv2d_resample with up > 1 needs the FIR filter f (e.g. setup_filter())")
    out_ch, in_per_group, kh, kw = w.shape
    # conv_transpose2d computes a true convolution of the zero-inserted input, so flip only
    # when cross-correlation semantics are asked for.
    if flip_weight:
        w = w.flip([2, 3])
    # conv_transpose2d wants [in, out/groups, kh, kw]: swap in/out inside every group.
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=up, groups=groups)
    # Padding of the filter stage, derived from the reference form above: the transposed conv
    # already produced the full (k-1)-wide support and omits the trailing inserted zero.
    fh, fw = f.shape
    px0 = (fw + up - 1) // 2 + padding - kw + 1
    px1 = (fw - up) // 2 + padding - kw + up
    py0 = (fh + up - 1) // 2 + padding - kh + 1
    py1 = (fh - up) // 2 + padding - kh + up
    return upfirdn2d(x, f, padding=(px0, px1, py0, py1), gain=up * up)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    noise: Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> Tensor:
    """StyleGAN2 modulated convolution (spec 4.7), optionally demodulated, plus ``noise``.

    ``x``: N×I×H×W, ``weight``: O×I×k×k, ``styles``: N×I. The weight is scaled per sample
    and input channel by ``styles``; with ``demodulate`` every output channel of the
    per-sample weight is renormalised to unit L2 norm (``+1e-8`` inside the square root).

    ``fused_modconv=True`` builds one weight per sample and runs a grouped convolution (what
    the official code does in eval mode). ``False`` scales the activations instead and
    multiplies the output by the demodulation coefficients (what training uses); the two agree
    to float32 rounding. ``noise`` (broadcastable to the output) is added after demodulation.

    In float16 the weight and styles are pre-normalised by their max-abs values before
    demodulating (spec 4.7): demodulation is invariant to that scaling, it only avoids
    overflow.
    """
    if x.ndim != 4 or weight.ndim != 4 or styles.ndim != 2:
        raise ValueError(
            "modulated_conv2d expects x N×I×H×W, weight O×I×k×k and styles N×I; got "
            f"{tuple(x.shape)}, {tuple(weight.shape)}, {tuple(styles.shape)}"
        )
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.shape[1] != in_ch or styles.shape != (n, in_ch):
        raise ValueError(
            f"modulated_conv2d shape mismatch: x has {x.shape[1]} channels, weight expects {in_ch}, "
            f"styles are {tuple(styles.shape)} (expected ({n}, {in_ch}))"
        )
    weight = weight.to(x.dtype)
    styles = styles.to(x.dtype)
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    dcoefs = None
    if demodulate or fused_modconv:
        wmod = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # N×O×I×k×k
        if demodulate:
            dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # N×O

    if not fused_modconv:
        x = x * styles.reshape(n, in_ch, 1, 1)
        x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if dcoefs is not None:
            x = x * dcoefs.reshape(n, out_ch, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    if dcoefs is not None:
        wmod = wmod * dcoefs.reshape(n, out_ch, 1, 1, 1)
    # One group per sample: fold the batch into the channel axis.
    y = conv2d_resample(
        x.reshape(1, n * in_ch, *x.shape[2:]),
        wmod.reshape(n * out_ch, in_ch, kh, kw),
        f=resample_filter,
        up=up,
        padding=padding,
        groups=n,
        flip_weight=flip_weight,
    )
    y = y.reshape(n, out_ch, *y.shape[2:])
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y


# --------------------------------------------------------------------------- bias + activation

# name -> (function(x, alpha), default alpha, default gain), spec 4.10
ACTIVATIONS: dict[str, tuple] = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> Tensor:
    """``clamp(gain * act(x + b), -clamp, +clamp)``, the order of spec 4.10.

    ``b`` is added along ``dim``. ``alpha``/``gain`` default to the activation's own values
    (lrelu: 0.2 and √2). The clamp is applied *after* the gain, so a caller that scales the
    gain must scale the clamp too (the synthesis layers do). Computed in float32 and cast
    back for half-precision inputs.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    fn, def_alpha, def_gain = ACTIVATIONS[act]
    alpha = def_alpha if alpha is None else float(alpha)
    gain = def_gain if gain is None else float(gain)
    dtype = x.dtype
    y = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of x {tuple(x.shape)}")
        shape = [1] * x.ndim
        shape[dim] = -1
        y = y + b.to(y.dtype).reshape(shape)
    y = fn(y, alpha)
    if gain != 1:
        y = y * gain
    if clamp is not None and clamp >= 0:
        y = y.clamp(-clamp, clamp)
    return y.to(dtype)


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x / sqrt(mean(x**2, dim) + eps)``: unit root-mean-square along ``dim`` (spec 4.2)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
