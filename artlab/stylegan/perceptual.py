"""LPIPS-VGG as a loss on artlab images, with honest labels for its weights.

LPIPS (Zhang et al. 2018, the ``lpips`` package) compares two images through VGG16
features (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), each unit-normalised over
channels, squared differences weighted per channel by learned "lin" layers and averaged
over space. The StyleGAN2-ADA projector uses exactly this distance (spec 5.4).

Its two sets of weights come from different places:

* the lin layers (v0.1) ship inside the ``lpips`` package: always available;
* the VGG16 backbone needs torchvision's ImageNet file ``vgg16-397923af.pth``. artlab
  never lets ``lpips`` download it: the file is taken from the torch hub cache through
  :mod:`artlab.weights` (downloaded the standard way only when downloads are allowed),
  and a missing file is an error naming it and ``artlab weights import``.

``perceptual_loss("lpips-vgg-random")`` builds the same network with a seeded random
VGG16 (the lin layers still trained). It lets code and tests run offline, but it is not a
perceptual metric, and its label says so.

``perceptual_loss("auto")`` is the choice projection views and lessons make: real
LPIPS-VGG when its VGG16 file is here (:func:`lpips_vgg_available`), else
:class:`FeatureDistance`, LPIPS's recipe without its learned weights on the best trained
network on this machine (:func:`artlab.models.best_backbone`), labelled as such. Only when
no trained network is here at all does it fall back to the random LPIPS, with a warning
and its "not a perceptual metric" label: never a silent stand-in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artlab import weights as _weights
from artlab.models import Backbone, best_backbone, features

__all__ = [
    "PERCEPTUAL_CHOICES",
    "RANDOM_LPIPS_LABEL",
    "LPIPSLoss",
    "FeatureDistance",
    "perceptual_loss",
    "VGG16_WEIGHTS_KEY",
    "lpips_vgg_file",
    "lpips_vgg_available",
    "lpips_vgg_missing_note",
]

PERCEPTUAL_CHOICES = ("auto", "lpips-vgg", "lpips-vgg-random")
VGG16_WEIGHTS_KEY = "vgg16/IMAGENET1K_V1"  # torchvision's vgg16-397923af.pth, which LPIPS v0.1 was calibrated on
RANDOM_LPIPS_LABEL = "LPIPS with random VGG backbone: not a perceptual metric"

_CACHE: dict[tuple, "LPIPSLoss"] = {}


class LPIPSLoss(nn.Module):
    """LPIPS distance between artlab images: ``loss(a, b)`` -> (N,) distances (a, b: N×3×H×W in [0, 1]).

    ``b`` may be a single image broadcast against a batch ``a``. Parameters are frozen;
    gradients flow to the inputs. ``label`` says which weights it uses, ``pretrained`` is
    True only with the ImageNet VGG16 backbone.
    """

    def __init__(self, net: nn.Module, *, label: str, pretrained: bool, note: str = "") -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.label = label
        self.pretrained = pretrained
        #: why this metric was chosen when it was not asked for by name ("auto"), else ""
        self.note = note

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if b.shape[0] == 1 and a.shape[0] > 1:
            b = b.expand(a.shape[0], -1, -1, -1)
        # lpips expects [-1, 1] inputs (its normalize=True does the same conversion).
        return self.net(a * 2 - 1, b * 2 - 1).reshape(a.shape[0])

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class FeatureDistance(nn.Module):
    """LPIPS's recipe without its learned weights, on a trained backbone: ``loss(a, b)`` -> (N,) distances.

    At each of the backbone's style layers every position's channel vector is scaled to
    length 1, squared differences are summed over channels and averaged over positions;
    the layers are summed (Zhang et al. 2018, eq. 1, with unit channel weights). It is not
    calibrated against human judgements as LPIPS is, but its features are a trained
    network's, unlike LPIPS on a random VGG16. Images below ``min_size`` px are upsampled
    (bilinear) so the deepest layers keep a few positions. ``b`` may be one image broadcast
    against a batch ``a``; gradients flow to the inputs, the backbone is frozen.
    """

    def __init__(self, model: Backbone, layers: Sequence[str] | None = None, *, min_size: int = 64,
                 note: str = "") -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.layers = list(layers if layers is not None else model.spec.style_layers)
        if not self.layers:
            raise ValueError(f"{model.label} names no style layers; pass layers=[...]")
        self.min_size = int(min_size)
        self.label = f"feature distance on {model.label} (LPIPS recipe, no learned weights)"
        self.pretrained = bool(model.pretrained)
        self.note = note

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if b.shape[0] == 1 and a.shape[0] > 1:
            b = b.expand(a.shape[0], -1, -1, -1)
        size = max(self.min_size, a.shape[-1])
        if size != a.shape[-1] or size != a.shape[-2]:
            a, b = (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) for x in (a, b))
        fa, fb = features(self.model, a, self.layers), features(self.model, b, self.layers)

        def unit(f: Tensor) -> Tensor:
            return f / (f.norm(dim=1, keepdim=True) + 1e-10)

        total = a.new_zeros(a.shape[0])
        for k in self.layers:
            total = total + (unit(fa[k]) - unit(fb[k])).square().sum(dim=1).mean(dim=(1, 2))
        return total

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def _lpips_skeleton() -> nn.Module:
    """``lpips.LPIPS(net='vgg')`` with its package lin weights and an *uninitialised* VGG16 trunk.

    Built on the meta device first: torchvision's VGG16 constructor would otherwise spend
    seconds initialising the 120M-parameter classifier LPIPS throws away, from the global
    RNG, and ``lpips`` would pass torchvision's deprecated ``pretrained=`` argument (it
    would even try to download the trunk with ``pnet_rand=False``). The caller fills the trunk.
    """
    import lpips

    with torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # deprecated pretrained=
        lp = lpips.LPIPS(net="vgg", pnet_rand=True, pretrained=False, verbose=False)
    lp = lp.to_empty(device="cpu")
    lp.scaling_layer = lpips.ScalingLayer()  # its constant buffers were lost on the meta device
    path = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "vgg.pth"
    try:
        lin = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing or damaged package file
        raise _weights.WeightsError(
            f"cannot read the LPIPS lin weights shipped with the lpips package ({path}: "
            f"{_weights.torch_load_reason(exc)}); "
            "reinstall it: pip install --force-reinstall lpips"
        ) from exc
    result = lp.load_state_dict(lin, strict=False)
    unexpected = list(result.unexpected_keys)
    not_lin = [k for k in result.missing_keys if not k.startswith(("net.", "scaling_layer.", "lins."))]
    if unexpected or not_lin:
        raise _weights.WeightsError(f"{path} does not match lpips' VGG lin layers ({unexpected or not_lin})")
    return lp.eval().requires_grad_(False)


def _random_trunk(lp: nn.Module, seed: int) -> None:
    """Seeded random VGG16 trunk with torchvision's init scheme (He normal, fan-out; zero bias)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lp.net.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * math.sqrt(2.0 / fan_out))
                module.bias.zero_()


def lpips_vgg_file() -> _weights.KnownFile:
    """The pretrained file LPIPS-VGG needs: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``)."""
    from torchvision.models import VGG16_Weights

    return _weights.torchvision_file("vgg16", VGG16_Weights.IMAGENET1K_V1)


def lpips_vgg_available() -> bool:
    """Whether LPIPS-VGG's weights are on this machine (no download is tried)."""
    return _weights.cached_path(lpips_vgg_file()) is not None


def lpips_vgg_missing_note() -> str:
    """Why ``"auto"`` did not pick LPIPS-VGG, and how to get it (shown by views and lessons)."""
    file = lpips_vgg_file().filename
    return (f"LPIPS-VGG needs torchvision's ImageNet VGG16 weights ({file}), which are not in the torch hub cache; "
            f"`artlab weights download vgg16`, or download the file elsewhere and run `artlab weights import {file}`.")


def _imagenet_vgg16_features(device: str | torch.device) -> dict[str, Tensor]:
    """torchvision's ImageNet VGG16 ``features.*`` tensors from the hub cache (or a clear error)."""
    known = lpips_vgg_file()
    try:
        path = _weights.cached_path(known) or _weights.download(known)
    except _weights.WeightsNotFoundError as exc:
        raise _weights.WeightsNotFoundError(
            f"LPIPS-VGG needs torchvision's ImageNet VGG16 weights.\n{exc}\n"
            "To run anyway without a perceptual metric, pass perceptual='lpips-vgg-random' (labelled as such), "
            "or give your own callable loss(images_a, images_b)."
        ) from exc
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated file, not a state dict
        raise _weights.WeightsError(
            f"cannot read {path} ({_weights.torch_load_reason(exc)}); delete it and import a fresh copy with "
            "`artlab weights import`"
        ) from exc
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise _weights.WeightsError(f"{path} holds no VGG16 'features.*' tensors; it is not {known.filename}")
    return feats


def _load_trunk(lp: nn.Module, feats: dict[str, Tensor]) -> None:
    """Copy torchvision ``features.{i}.*`` tensors into lpips' ``slice{k}.{i}.*`` modules."""
    own = lp.net.state_dict()
    new = {}
    for key in own:
        _slice, index, name = key.split(".", 2)
        source = f"features.{index}.{name}"
        if source not in feats or feats[source].shape != own[key].shape:
            raise _weights.WeightsError(f"VGG16 weights lack {source} with shape {tuple(own[key].shape)}")
        new[key] = feats[source]
    lp.net.load_state_dict(new)


def _auto(seed: int, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """LPIPS-VGG when its file is here, else a labelled feature distance on the best trained network."""
    if lpips_vgg_available():
        return perceptual_loss("lpips-vgg", seed=seed, device=device)
    missing = lpips_vgg_missing_note()
    try:
        model = best_backbone(device=device)
    except _weights.WeightsNotFoundError as exc:
        first = str(exc).splitlines()[0]
        warnings.warn(f"perceptual_loss('auto'): {missing} And no trained network is here ({first}), so the "
                      f"distance is {RANDOM_LPIPS_LABEL}.", UserWarning, stacklevel=3)
        random = perceptual_loss("lpips-vgg-random", seed=seed, device=device)
        return LPIPSLoss(random.net, label=random.label, pretrained=False,  # shares the cached network
                         note=f"{missing} No trained network is here either ({first}).")
    return FeatureDistance(model, note=f"{missing} {model.note}").to(device)


def perceptual_loss(
    name: str | Callable[[Tensor, Tensor], Tensor] = "lpips-vgg", *, seed: int = 0,
    device: str | torch.device = "cpu",
) -> Callable[[Tensor, Tensor], Tensor]:
    """A perceptual distance ``loss(a, b)`` on artlab images, per image; ``.label`` and ``.pretrained`` say which.

    ``"lpips-vgg"``: LPIPS v0.1 with torchvision's ImageNet VGG16 (from the torch hub cache;
    offline and missing: :class:`artlab.weights.WeightsNotFoundError`). ``"lpips-vgg-random"``:
    the same with a seeded random VGG16 (label: "LPIPS with random VGG backbone: not a
    perceptual metric"). ``"auto"``: ``"lpips-vgg"`` when its file is here, else a
    :class:`FeatureDistance` on :func:`artlab.models.best_backbone` (``.note`` says why), else
    (no trained network at all) the random LPIPS with a warning. A callable is returned
    unchanged. Built LPIPS networks are cached per (name, seed or weights file, device).
    """
    if callable(name):
        return name
    if name not in PERCEPTUAL_CHOICES:
        raise ValueError(f"perceptual must be one of {', '.join(PERCEPTUAL_CHOICES)} or a callable, got {name!r}")
    device = torch.device(device)
    if name == "auto":
        return _auto(int(seed), device)
    # The pretrained network is cached per weights file location (TORCH_HOME may change).
    where = str(lpips_vgg_file().path) if name == "lpips-vgg" else int(seed)
    key = (name, where, str(device))
    if key in _CACHE:
        return _CACHE[key]
    if name == "lpips-vgg":
        feats = _imagenet_vgg16_features("cpu")  # fail fast, before building anything
        lp = _lpips_skeleton()
        _load_trunk(lp, feats)
        loss = LPIPSLoss(lp, label="LPIPS-VGG (v0.1, ImageNet VGG16)", pretrained=True)
    else:
        lp = _lpips_skeleton()
        _random_trunk(lp, int(seed))
        loss = LPIPSLoss(lp, label=f"{RANDOM_LPIPS_LABEL} (seed {seed})", pretrained=False)
    loss = loss.to(device)
    if len(_CACHE) >= 4:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = loss
    return loss
