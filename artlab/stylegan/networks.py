"""A StyleGAN2-ADA compatible generator (mapping + synthesis) in pure PyTorch.

Written from ``design/stylegan2_ada_spec.md`` only (sections 2-4). Module names, parameter
and buffer names, shapes and ``state_dict`` order equal those of the official
``stylegan2-ada-pytorch`` generator, so its state dict loads with ``strict=True`` and the same
``z``, ``c``, ``truncation_psi`` and ``noise_mode='const'`` give the same images (to float32
rounding; see ``tests/test_stylegan_networks.py`` for the measured agreement).

Departures from the official entry points, all deliberate:

* ``G(...)`` defaults to ``noise_mode='const'`` (official: ``'random'``) so a call is
  reproducible; ``'random'`` needs an explicit ``torch.Generator`` (no global RNG).
* ``force_fp32`` defaults to True: everything runs in float32. On CUDA,
  ``force_fp32=False`` runs the ``num_fp16_res`` highest-resolution blocks in float16 like the
  official default; on the CPU float32 is always used (``num_fp16_res`` is accepted and
  recorded, nothing more).
* ``fp16_channels_last`` is accepted and ignored (memory layout only).
* A freshly built network has a seeded random init (``seed=``), never the global RNG.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from artlab.stylegan.ops import (
    ACTIVATIONS,
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

__all__ = [
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "NOISE_MODES",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "Conv2dLayer",
    "TINY_LABEL_PREFIX",
    "tiny_generator",
    "z_from_seeds",
]

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
TINY_LABEL_PREFIX = "StyleGAN2-ADA · random init"
SQRT_HALF = math.sqrt(0.5)


def _randn(shape: Sequence[int], generator: torch.Generator) -> Tensor:
    return torch.randn(list(shape), generator=generator, dtype=torch.float32)


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    # Modules built on their own (not through Generator) still get a reproducible init.
    return generator if generator is not None else torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------- layers


class FullyConnectedLayer(nn.Module):
    """Equalized-learning-rate dense layer (spec 4.1): ``y = x·(g_w·W)ᵀ + g_b·b``.

    The parameters are stored *before* their runtime gains, g_w = lr_multiplier/sqrt(in) and
    g_b = lr_multiplier. So with the mapping network's lr_multiplier 0.01 the stored biases
    are 100× the effective ones: always read ``effective_bias()``, never ``bias`` directly.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = _default_generator(generator)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        # Stored weights are N(0,1)/lr_multiplier so that the effective weight g_w·W has
        # variance 1/in whatever the multiplier (equalized learning rate).
        self.weight = nn.Parameter(_randn([out_features, in_features], gen) / lr_multiplier)
        # Stored pre-gain too: the effective initial bias is bias_init.
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_bias(self) -> Tensor | None:
        return None if self.bias is None else self.bias * self.bias_gain

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.effective_bias()
        if self.activation == "linear":
            return x.matmul(w.t()) if b is None else torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain equalized-lr convolution; only used here as the 'resnet' skip (1×1, up=2, no bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = _default_generator(generator)
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ACTIVATIONS[activation][2]
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size], gen))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        # flip_weight=(up == 1): an upsampling conv is a true convolution (spec 4.7).
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, padding=self.padding, flip_weight=self.up == 1)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = None if self.bias is None else self.bias.to(x.dtype)
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)


# --------------------------------------------------------------------------- mapping


class MappingNetwork(nn.Module):
    """z (and one-hot class c) -> w, broadcast to ``num_ws`` rows, with truncation (spec 4.2).

    Layers: ``embed`` (c -> embed_features, linear, lr 1) when c_dim > 0, then ``fc0..fc{L-1}``
    (lrelu on every layer, lr_multiplier 0.01). Buffer ``w_avg``: moving average of w, updated
    only in training mode.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = _default_generator(generator)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        if z_dim + embed_features <= 0:
            raise ValueError("the mapping network needs z_dim > 0 or c_dim > 0")
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        # Registration order = the official state_dict order: w_avg, embed.*, fc0.*, ...
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features, generator=gen)
        for i in range(num_layers):
            layer = FullyConnectedLayer(
                features[i], features[i + 1], activation=activation, lr_multiplier=lr_multiplier, generator=gen
            )
            setattr(self, f"fc{i}", layer)

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool | None = None,
    ) -> Tensor:
        """ws of shape [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

        Truncation: ``ws[:, i] = w_avg + psi·(ws[:, i] − w_avg)`` for ``i < truncation_cutoff``
        (all rows when None). ``update_w_avg`` defaults to ``self.training``.
        """
        device = self._device()
        parts = []
        n = None
        if self.z_dim > 0:
            z = _check_2d(z, self.z_dim, "z", "z_dim")
            n = z.shape[0]
            # Inputs are cast to float32 first (official generate.py passes float64 z).
            parts.append(normalize_2nd_moment(z.to(device=device, dtype=torch.float32)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"this generator is class-conditional (c_dim={self.c_dim}); pass c as a float "
                    f"tensor of shape [N, {self.c_dim}], e.g. one-hot labels"
                )
            c = _check_2d(c, self.c_dim, "c", "c_dim")
            if n is not None and c.shape[0] != n:
                raise ValueError(f"z has {n} rows but c has {c.shape[0]}; give one label row per latent")
            n = c.shape[0]
            # The class embedding is normalised on its own, then concatenated after z.
            parts.append(normalize_2nd_moment(self.embed(c.to(device=device, dtype=torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)

        if update_w_avg is None:
            update_w_avg = self.training
        if update_w_avg and self.w_avg_beta is not None:
            # w_avg <- beta·w_avg + (1−beta)·mean(w); training only (spec 4.2 step 6).
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            x = self.truncate(x, truncation_psi, truncation_cutoff)
        return x

    def truncate(self, ws: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
        """Lerp ws towards the stored ``w_avg`` by ``psi`` on rows ``< cutoff`` (all if None)."""
        if self.w_avg_beta is None:
            raise ValueError("this mapping network has no w_avg (w_avg_beta=None), so it cannot truncate; use psi=1")
        w_avg = self.w_avg.to(ws.dtype)
        if ws.ndim == 2 or cutoff is None:
            return w_avg.lerp(ws, float(psi))
        ws = ws.clone()
        ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], float(psi))
        return ws

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


def _check_2d(t: Tensor | None, dim: int, name: str, attr: str) -> Tensor:
    if t is None:
        raise ValueError(f"{name} is required (a tensor of shape [N, {dim}])")
    t = torch.as_tensor(t)
    if t.ndim != 2 or t.shape[1] != dim:
        raise ValueError(f"{name} must have shape [N, {dim}] ({attr}={dim}); got {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------- synthesis layers


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (+ optional 2× upsampling), noise, bias, lrelu, gain, clamp (spec 4.6)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = _default_generator(generator)
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.act_gain = ACTIVATIONS[activation][2]  # √2 for lrelu
        # The affine layer's bias starts at 1 so that the initial styles are ~1 (no modulation).
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, generator=gen)
        # Parameter order weight, noise_strength, bias and buffer order resample_filter,
        # noise_const reproduce the official state_dict order.
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size], gen))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if use_noise:
            self.register_buffer("noise_const", _randn([resolution, resolution], gen))

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        noise_mode: str = "const",
        fused_modconv: bool = True,
        gain: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        styles = self.affine(w)  # no extra weight gain here: demodulation cancels any scale
        noise = None
        if self.use_noise and noise_mode == "random":
            if generator is None:
                raise ValueError(
                    "noise_mode='random' needs a torch.Generator (generator=torch.Generator().manual_seed(0)); "
                    "artlab never draws from the global RNG. Use noise_mode='const' for the stored noise."
                )
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
            noise = noise.to(x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            # One noise image shared by every sample and channel.
            noise = self.noise_const * self.noise_strength
        # conv0 (up=2) is a *true* convolution, conv1 (up=1) a cross-correlation: the official
        # layer passes flip_weight=(up == 1). Pretrained conv0 weights rely on this.
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            demodulate=True,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        # Gain √2 (lrelu) times the caller's gain (√0.5 for a resnet conv1); the clamp is applied
        # after the gain and scales with the caller's gain too.
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, up={self.up}, activation={self.activation}, conv_clamp={self.conv_clamp}"


class ToRGBLayer(nn.Module):
    """1×1 modulated conv *without* demodulation, plus bias, linear, optional clamp (spec 4.9)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = _default_generator(generator)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1, generator=gen)
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size], gen))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        # Without demodulation the scale matters: the equalized-lr gain goes on the styles.
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: [const |] conv0 (up 2), conv1, ToRGB, image path."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        *,
        generator: torch.Generator | None = None,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        gen = _default_generator(generator)
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = False  # accepted for compatibility; layout is not changed
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = nn.Parameter(_randn([out_channels, resolution, resolution], gen))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, generator=gen, **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution,
            resample_filter=resample_filter, conv_clamp=conv_clamp, generator=gen, **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, generator=gen)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, generator=gen,
            )

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
        force_fp32: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """(x, img) after this block; ``ws`` is the block's slice [N, num_conv + num_torgb, w_dim]."""
        n = ws.shape[0]
        w_iter = iter(ws.unbind(dim=1))
        use_half = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_half else torch.float32
        if fused_modconv is None:
            # Official rule: fused in eval mode, except fp16 blocks with batches > 1.
            fused_modconv = (not self.training) and (dtype == torch.float32 or n == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(n, 1, 1, 1)
        else:
            if x is None:
                raise ValueError(f"block b{self.resolution} needs the previous block's features")
            x = x.to(dtype)

        layer_args = dict(noise_mode=noise_mode, fused_modconv=fused_modconv, generator=generator)
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), **layer_args)
        elif self.architecture == "resnet":
            # Residual sum scaled by √0.5 on both branches to keep the variance.
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x, next(w_iter), **layer_args)
            x = self.conv1(x, next(w_iter), gain=SQRT_HALF, **layer_args)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), **layer_args)
            x = self.conv1(x, next(w_iter), **layer_args)

        # The image path stays float32 whatever the block's dtype.
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] (raw, nominally in [-1, 1])."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        *,
        generator: torch.Generator | None = None,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        gen = _default_generator(generator)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.channels_per_resolution = channels
        # fp16 for the num_fp16_res highest resolutions, never below 8 (spec 4.12).
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels, channels[res], w_dim=w_dim, resolution=res, img_channels=img_channels,
                is_last=is_last, use_fp16=res >= fp16_resolution, generator=gen, **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks b4, b8, ..., in forward order."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def block_ws_slices(self) -> dict[int, slice]:
        """Which ws rows each block reads (spec 4.4): a ToRGB shares its row with the next conv0."""
        out, w_idx = {}, 0
        for block in self.blocks():
            out[block.resolution] = slice(w_idx, w_idx + block.num_conv + block.num_torgb)
            w_idx += block.num_conv
        return out

    def forward(
        self,
        ws: Tensor,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
        force_fp32: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = torch.as_tensor(ws)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"ws must have shape [N, {self.num_ws}, {self.w_dim}] (num_ws, w_dim); got {tuple(ws.shape)}. "
                "A single w of shape [N, w_dim] can be broadcast with w.unsqueeze(1).repeat(1, num_ws, 1)."
            )
        ws = ws.to(device=self.b4.const.device, dtype=torch.float32)
        x = img = None
        for block, sl in zip(self.blocks(), self.block_ws_slices().values()):
            x, img = block(
                x, img, ws[:, sl], noise_mode=noise_mode, fused_modconv=fused_modconv,
                force_fp32=force_fp32, generator=generator,
            )
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, img_resolution={self.img_resolution}, num_ws={self.num_ws}"


# --------------------------------------------------------------------------- generator

_SYNTHESIS_KEYS = {
    "channel_base", "channel_max", "num_fp16_res", "architecture", "resample_filter", "conv_clamp",
    "fp16_channels_last", "use_noise", "activation", "kernel_size", "fused_modconv_default",
}


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``mapping`` (z, c -> ws) then ``synthesis`` (ws -> image).

    Constructor arguments are the official ``init_kwargs`` (e.g. a pickle's
    ``G_ema._init_kwargs`` or a ``config.json``). Synthesis keyword arguments given at the top
    level (the StyleGAN3-repository layout) are merged into ``synthesis_kwargs``.
    ``seed`` seeds the random init of a fresh network (weights loaded later replace it).

    Attributes: ``z_dim, c_dim, w_dim, img_resolution, img_channels, num_ws, init_kwargs``,
    ``label`` (shown on figures) and ``pretrained`` (True only once real weights are loaded;
    whoever loads them sets both).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
        *,
        seed: int = 0,
        **flat_synthesis_kwargs,
    ) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = {**dict(synthesis_kwargs or {}), **flat_synthesis_kwargs}
        unknown = set(synthesis_kwargs) - _SYNTHESIS_KEYS
        if unknown:
            raise TypeError(
                f"unknown synthesis argument(s) {sorted(unknown)}; known: {sorted(_SYNTHESIS_KEYS)}"
            )
        mapping_kwargs.pop("num_ws", None)  # filled in from the synthesis network
        self.init_kwargs = copy.deepcopy(
            dict(
                z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs,
            )
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.seed = seed
        self.label = f"{TINY_LABEL_PREFIX} (seed {seed})"
        self.pretrained = False

        fused_default = synthesis_kwargs.get("fused_modconv_default", "inference_only")
        self.fused_modconv_default = fused_default
        net_kwargs = {k: v for k, v in synthesis_kwargs.items() if k != "fused_modconv_default"}
        gen = torch.Generator().manual_seed(seed)
        # Synthesis is built before mapping: that fixes the state_dict order (synthesis.* first).
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, generator=gen, **net_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, generator=gen, **mapping_kwargs
        )

    def _fused(self, fused_modconv: bool | str | None) -> bool | None:
        value = self.fused_modconv_default if fused_modconv is None else fused_modconv
        return None if value == "inference_only" else bool(value)

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        generator: torch.Generator | None = None,
        fused_modconv: bool | None = None,
        force_fp32: bool = True,
    ) -> Tensor:
        """Images [N, img_channels, R, R], raw float32 (nominally [-1, 1], not clamped).

        ``noise_mode``: 'const' (stored noise; default here, official default is 'random'),
        'random' (fresh noise from ``generator``, required), 'none'. ``fused_modconv``:
        None = fused in eval mode, non-fused in training mode (the official rule).
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(
            ws, noise_mode=noise_mode, fused_modconv=self._fused(fused_modconv),
            force_fp32=force_fp32, generator=generator,
        )

    def set_provenance(self, source: str, *, pretrained: bool) -> None:
        """Record where the weights came from: ``label = "StyleGAN2-ADA · <source>"``.

        Whoever loads weights calls this, e.g. ``set_provenance("ffhq.pkl", pretrained=True)``,
        so figures never show random weights as if they were a trained network.
        """
        if not source or not isinstance(source, str):
            raise ValueError("source must be a non-empty string naming the weights, e.g. 'ffhq.pkl'")
        self.label = f"StyleGAN2-ADA · {source}"
        self.pretrained = bool(pretrained)

    @property
    def device(self) -> torch.device:
        return self.synthesis.b4.const.device

    def extra_repr(self) -> str:
        return f"label={self.label!r}, num_ws={self.num_ws}"


# --------------------------------------------------------------------------- helpers


def z_from_seeds(
    seeds: int | Sequence[int], z_dim: int, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Tensor:
    """Latents [len(seeds), z_dim] following the official seed convention (spec 4.11).

    Row i is ``numpy.random.RandomState(seeds[i]).randn(1, z_dim)`` (legacy Mersenne Twister
    with Box-Muller gaussians), so seed 42 gives the same z as the official ``generate.py
    --seeds=42``. The draw is float64; it is cast to ``dtype`` (float32 by default), which is
    also the first thing the mapping network does with it, so images are identical. Each
    seed gets its own RandomState: the global numpy RNG is never touched.
    """
    if isinstance(seeds, (int, np.integer)):
        seeds = [int(seeds)]
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise ValueError(f"seeds must be integers in [0, 2**32 - 1] (numpy RandomState); got {bad}")
    z = np.concatenate([np.random.RandomState(s).randn(1, z_dim) for s in seeds], axis=0)
    return torch.from_numpy(z).to(device=device, dtype=dtype)


def tiny_generator(
    c_dim: int = 0, resolution: int = 32, seed: int = 0, architecture: str = "skip"
) -> Generator:
    """A tiny random-weight StyleGAN2-ADA twin for tests and demos (no pretrained weights).

    z_dim = w_dim = 32, 2 mapping layers, at most 32 channels, conv_clamp 256. After the
    seeded init it perturbs what a fresh network leaves at zero (conv biases, noise strengths,
    ToRGB biases) and sets ``w_avg`` to the mean w of 256 seeded latents, so noise modes,
    truncation and the clamp all have visible effects. Labelled
    ``"StyleGAN2-ADA · random init (seed N)"``, ``pretrained = False``.
    """
    G = Generator(
        z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=resolution, img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 32, "conv_clamp": 256, "architecture": architecture},
        seed=seed,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.05 + 0.25 * torch.rand([], generator=gen))
            elif name.endswith(".bias") and ".affine." not in name:
                p.add_(0.1 * _randn(p.shape, gen))
        z = _randn([256, G.z_dim], gen)
        c = None
        if c_dim > 0:
            labels = torch.randint(c_dim, [256], generator=gen)
            c = torch.nn.functional.one_hot(labels, c_dim).float()
        G.mapping.w_avg.copy_(G.mapping(z, c, update_w_avg=False)[:, 0].mean(dim=0))
    G.label = f"{TINY_LABEL_PREFIX} (seed {seed})"
    G.pretrained = False
    return G.eval().requires_grad_(False)
