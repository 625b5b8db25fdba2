"""What ``artlab explore`` checks before anything starts: the folder and every option.

Mistakes get a clear message naming what to pass instead, before a server or a page exists.
Nothing here imports torch at module level: the app's Voilà server imports this package.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artlab.data import Collection

__all__ = ["ExploreError", "ExploreOptions", "KERNEL_NAME", "TEMPLATE_NAME", "NOTEBOOK_NAME", "check_folder",
           "check_options", "network_name"]

#: name of the private kernelspec written next to the app notebook
KERNEL_NAME = "artlab-explore"
#: name of the Voilà template written next to it (Voilà's "lab" template, minus its CDN stylesheets)
TEMPLATE_NAME = "artlab-explore"
#: the app notebook's file name: Voilà shows its stem as the page's title
NOTEBOOK_NAME = "{folder} · artlab explore.ipynb"
MIN_SIZE = 32


class ExploreError(ValueError):
    """What the user asked ``artlab explore`` for cannot work; the message says what to do."""


@dataclass(frozen=True)
class ExploreOptions:
    """Everything the app needs to know, checked by :func:`check_options`.

    ``model="best"`` is :func:`artlab.models.best_backbone` (VGG-19 when its ImageNet file
    is cached, else the bundled EfficientNet-Lite0); ``weights`` follows
    :func:`artlab.models.backbone` (``"auto"``: ImageNet weights already on this machine;
    ``None``: a seeded random init that the page labels in red). ``layer=None`` lets
    :func:`artlab.embed.embed` pick the model's default.
    ``csv_path`` is where the map's "Export CSV" writes (the app's own folder is
    temporary, so it must not be relative to it). ``label``: what the points are coloured by
    at first, a folder level (``"2"``, ``"-1"``) or a metadata column (``"artist"``,
    ``"folder_2"``), see :func:`artlab.data.label_source`; None: the folder's default label.
    """

    folder: Path
    model: str = "best"
    weights: str | None = "auto"
    layer: str | None = None
    pooling: str = "mean"
    size: int = 224
    cache_dir: Path | None = None
    device: str | None = None
    seed: int = 0
    csv_path: Path | None = None
    label: str | None = None

    def app_kwargs(self) -> dict:
        """Keyword arguments for ``CuratorApp`` (plain literals: they are written into the notebook)."""
        kwargs = asdict(self)
        folder = kwargs.pop("folder")
        kwargs = {k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}
        return {"folder": str(folder), **kwargs}


# ----------------------------------------------------------------------------- checks


def check_folder(folder: str | os.PathLike, label: str | int | None = None) -> Collection:
    """The folder as a :class:`~artlab.data.Collection`, or an :class:`ExploreError` saying what is wrong.

    Missing, not a directory, or with fewer than two readable images (a map needs
    two points): each gets its own message naming the path and what to pass instead.
    ``label`` (``--label``): a folder level or a metadata column it must have.
    """
    # imported here: the app's Voilà server imports this module (for V1OnlyKernelConnection), not torch
    from artlab.data import IMAGE_EXTENSIONS, Collection, CollectionError, label_source

    path = Path(folder).expanduser()
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not path.exists():
        raise ExploreError(f"{path} does not exist; pass the folder that holds your images "
                           "(class subfolders or a metadata.csv are optional)")
    if not path.is_dir():
        raise ExploreError(f"{path} is a file, not a folder; pass the folder that contains it "
                           f"({path.parent}) or another folder of images")
    try:
        collection = Collection.from_folder(path, **label_source(label))
    except CollectionError as exc:
        if "no readable images" in str(exc):
            raise ExploreError(f"no readable images in {path} or its subfolders (looked for {extensions}); "
                               "pass a folder with at least two images") from exc
        hint = "; --label takes a folder level (1, 2, … or -1) or a column name" if "label_" in str(exc) else ""
        raise ExploreError(f"{path}: {exc}{hint}") from exc
    except ValueError as exc:  # a label that is neither a level nor a column
        raise ExploreError(f"--label {label!r}: {exc}") from exc
    if len(collection) < 2:
        raise ExploreError(f"{path} holds a single readable image ({collection.paths[0].name}); "
                           "a map needs at least two: add images or pass a larger folder")
    return collection


def _layer_names(model: str) -> tuple[list[str], list[str]]:
    """(canonical layer names, aliases) of a registered backbone, without allocating its weights."""
    import torch

    from artlab.models import registered_backbones

    spec = registered_backbones()[network_name(model)]
    # The meta device builds the module graph with no storage: the names, instantly.
    with torch.device("meta"):
        net = spec.build()
    stages, aliases = spec.stages(net)
    return [name for name, _ in stages], sorted(aliases)


def network_name(model: str) -> str:
    """The registered network a model name stands for ("best": the one best_backbone picks here)."""
    from artlab import weights as _weights
    from artlab.models import BEST, FALLBACKS, imagenet_files, registered_backbones

    if model != BEST:
        return model
    return "vgg19" if _weights.cached_path(imagenet_files(registered_backbones()["vgg19"])[0]) else FALLBACKS[0]


def _check_weights_here(model: str, weights: str | None) -> None:
    """weights='auto' loads only files already here: say what to do before the app starts, not after."""
    from artlab import weights as _weights
    from artlab.models import BEST, imagenet_files, registered_backbones

    if model == BEST or weights != "auto":
        return
    files = imagenet_files(registered_backbones()[model])
    if not files:
        return  # a random test twin: there is nothing to look for
    known = files[0]
    if _weights.cached_path(known) is None:
        raise ExploreError(
            f"{model}'s ImageNet weights ({known.filename}) are not on this machine. Get them with "
            f"`artlab weights download {model}` (or `artlab weights import FILE`), use --model best (the best "
            "network here: the bundled EfficientNet-Lite0), or --weights random for a labelled random init")


def check_options(
    folder: str | os.PathLike,
    *,
    model: str = "best",
    weights: str | None = "auto",
    layer: str | None = None,
    pooling: str = "mean",
    size: int = 224,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    seed: int = 0,
    csv_path: str | os.PathLike | None = None,
    label: str | int | None = None,
) -> ExploreOptions:
    """Check every option the way the app will use it and return them resolved (absolute paths).

    ``csv_path`` defaults to ``<current directory>/<folder name>_selection.csv``.
    """
    from artlab.embed import POOLINGS
    from artlab.models import registered_backbones

    collection = check_folder(folder, label)
    known = registered_backbones()
    if model not in known and model != "best":
        raise ExploreError(f"unknown model {model!r}; choose best (the best network here) or one of "
                           f"{', '.join(sorted(known))}")
    if layer is not None:
        names, aliases = _layer_names(model)
        if layer not in names and layer not in aliases:
            which = f"{network_name(model)} (the best network here)" if model == "best" else model
            raise ExploreError(f"{which} has no layer {layer!r}; valid layers: {', '.join(names + aliases)}")
    if pooling not in POOLINGS:
        raise ExploreError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if device is not None:
        import torch

        try:
            kind = torch.device(device).type
        except RuntimeError as exc:
            raise ExploreError(f"--device {device!r} is not a torch device ({exc}); use cpu or cuda") from exc
        if kind == "cuda" and not torch.cuda.is_available():
            raise ExploreError(f"--device {device} asked for, but torch sees no CUDA GPU here; use --device cpu")
    if int(size) < MIN_SIZE:
        raise ExploreError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if isinstance(weights, str) and (os.sep in weights or weights.endswith((".pth", ".pt"))):
        if not Path(weights).expanduser().is_file():
            raise ExploreError(f"weights file {weights} does not exist; pass a .pth state dict, "
                               "or --weights auto (the ImageNet weights on this machine)")
        if model == "best":
            raise ExploreError("a weights file needs the network it belongs to: pass --model too (e.g. vgg19)")
        weights = str(Path(weights).expanduser().resolve())
    else:
        _check_weights_here(model, weights)
    root = Path(collection.root or folder).expanduser().resolve()
    csv = Path(csv_path) if csv_path is not None else Path.cwd() / f"{root.name or 'collection'}_selection.csv"
    return ExploreOptions(
        folder=root,
        model=model,
        weights=weights,
        layer=layer,
        pooling=pooling,
        size=int(size),
        cache_dir=Path(cache_dir).expanduser().resolve() if cache_dir is not None else None,
        device=device,
        seed=int(seed),
        csv_path=csv.expanduser().resolve(),
        label=str(label).strip() or None if label is not None else None,
    )
