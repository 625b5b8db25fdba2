"""The catalogue of pretrained files: every file artlab knows, which network it belongs to.

Each network declares its own files where it is defined (torchvision's weights entries
for the torchvision backbones, :data:`artlab.efficientnet.LITE_FILES`, the official
StyleGAN2-ADA pickles in :mod:`artlab.stylegan.pretrained`, LPIPS' VGG16 in
:mod:`artlab.stylegan.perceptual`); this module gathers them into one list, looks a file
up by name, and identifies a file a user downloaded elsewhere (``artlab weights
import``). :mod:`artlab.weights` below it knows only how files are cached, downloaded,
hashed and recorded, not which networks exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from artlab.models import imagenet_files, registered_backbones
from artlab.stylegan.perceptual import lpips_vgg_file
from artlab.stylegan.pretrained import official_files
from artlab.weights import KnownFile, WeightsError, install_file, sha256_of

__all__ = ["known_files", "find_known", "identify", "import_file"]


def known_files() -> list[KnownFile]:
    """All pretrained files artlab knows about: backbones (torchvision's first), LPIPS, StyleGAN2-ADA."""
    files: dict[str, KnownFile] = {}
    for spec in registered_backbones().values():
        for known in imagenet_files(spec):
            files.setdefault(known.key, known)
    for known in [lpips_vgg_file(), *official_files()]:
        files.setdefault(known.key, known)
    return list(files.values())


def find_known(name: str) -> KnownFile:
    """Look a file up by key (``vgg19/IMAGENET1K_V1``), file name or model name (its first entry)."""
    files = known_files()
    for f in files:
        if name in (f.key, f.filename):
            return f
    for f in files:
        if f.key.split("/")[0] == name:
            return f
    names = ", ".join(sorted({f.key for f in files}))
    raise WeightsError(f"unknown pretrained file {name!r}; known: {names}")


def identify(path: str | os.PathLike, digest: str | None = None) -> KnownFile:
    """Which known file ``path`` is: by its name, else (a renamed download) by its sha256."""
    path = Path(path)
    files = known_files()
    by_name = [f for f in files if f.filename == path.name]
    if by_name:
        return by_name[0]
    digest = digest or sha256_of(path)
    by_hash = [f for f in files if (f.sha256 or f.sha256_prefix) and f.matches(digest)]
    if by_hash:
        return by_hash[0]
    raise WeightsError(
        f"{path} is not a pretrained file artlab knows: neither its name nor its sha256 ({digest[:12]}…) "
        "matches an entry of `artlab weights list`."
    )


def import_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Bring a file downloaded elsewhere into the torch hub cache (``artlab weights import FILE``).

    The file is identified (:func:`identify`), checked against its published hash and
    copied under the exact name torchvision expects, with a provenance record beside it
    (:func:`artlab.weights.install_file`).
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"cannot import {src}: no such file")
    digest = sha256_of(src)
    return install_file(src, identify(src, digest), overwrite=overwrite, digest=digest)
