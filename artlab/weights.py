"""Pretrained files: which ones artlab knows, where they live, and how to bring them in.

artlab never ships or silently fetches weights. It uses the standard places:
torchvision's weights API and the torch hub cache (``$TORCH_HOME/hub/checkpoints``,
``~/.cache/torch/hub/checkpoints`` by default). On a machine without internet a
user downloads a file elsewhere and runs ``artlab weights import FILE``: the file
is checked against the name and hash the official URL carries, then copied into
the cache under the exact name torchvision looks for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "KnownFile",
    "WeightsError",
    "WeightsNotFoundError",
    "cache_dir",
    "known_files",
    "register_file",
    "find_known",
    "cached_path",
    "import_file",
    "download",
    "missing_message",
    "downloads_allowed",
]


class WeightsError(RuntimeError):
    """A pretrained file is missing, corrupt or not the one expected."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The pretrained file is neither cached nor downloadable right now."""


@dataclass(frozen=True)
class KnownFile:
    """One pretrained file artlab can use.

    ``sha256_prefix`` follows torch hub's convention: official file names end in
    ``-<first hex digits of the sha256>`` and the loader checks that prefix.
    """

    key: str  # e.g. "vgg19/IMAGENET1K_V1"
    filename: str  # the exact name the cache must hold
    url: str
    size_mb: float | None = None
    sha256_prefix: str | None = None
    used_by: str = ""

    @property
    def path(self) -> Path:
        """Where torchvision / torch hub look for this file."""
        return cache_dir() / self.filename


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_EXTRA: dict[str, KnownFile] = {}


def cache_dir() -> Path:
    """The torch hub checkpoint directory (respects ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hash_prefix_from_name(filename: str) -> str | None:
    """The sha256 prefix an official file name carries (``vgg19-dcbb9e9d.pth`` -> ``dcbb9e9d``)."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def register_file(known: KnownFile) -> KnownFile:
    """Add a file to the registry (later modules register StyleGAN pickles, LPIPS, ...)."""
    _EXTRA[known.key] = known
    return known


def _torchvision_files() -> list[KnownFile]:
    """Every weights entry of torchvision for the registered backbones."""
    from torchvision.models import get_model_weights

    from artlab.models import registered_backbones

    files: list[KnownFile] = []
    for spec in registered_backbones().values():
        if spec.torchvision_name is None:
            continue
        for entry in get_model_weights(spec.torchvision_name):
            filename = entry.url.rsplit("/", 1)[-1]
            files.append(
                KnownFile(
                    key=f"{spec.name}/{entry.name}",
                    filename=filename,
                    url=entry.url,
                    size_mb=entry.meta.get("_file_size"),
                    sha256_prefix=hash_prefix_from_name(filename),
                    used_by=f"artlab.models.backbone({spec.name!r}, weights={entry.name!r})",
                )
            )
    return files


def known_files() -> list[KnownFile]:
    """All pretrained files artlab knows about, torchvision backbones first."""
    import artlab.stylegan.pretrained  # noqa: F401  (registers the official StyleGAN2-ADA pickles)

    files = {f.key: f for f in _torchvision_files()}
    files.update(_EXTRA)
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


def cached_path(known: KnownFile) -> Path | None:
    """The cached file if present (non-empty), else None."""
    path = known.path
    return path if path.is_file() and path.stat().st_size > 0 else None


def downloads_allowed() -> bool:
    """False when ``ARTLAB_OFFLINE`` (or ``HF_HUB_OFFLINE``-style ``TORCH_HUB_OFFLINE``) is set."""
    return not any(os.environ.get(v, "") not in ("", "0") for v in ("ARTLAB_OFFLINE", "TORCH_HUB_OFFLINE"))


def missing_message(known: KnownFile, reason: str = "") -> str:
    """The message a user sees when a pretrained file cannot be had: what, where, how."""
    size = f" ({known.size_mb:.0f} MB)" if known.size_mb else ""
    why = f" ({reason})" if reason else ""
    return (
        f"pretrained weights {known.key} are not available{why}.\n"
        f"  expected file:   {known.filename}{size}\n"
        f"  cache directory: {cache_dir()}\n"
        f"  official URL:    {known.url}\n"
        f"Download the file on a machine with internet access, then run\n"
        f"    artlab weights import /path/to/{known.filename}\n"
        f"(or copy it into the cache directory under exactly that name). "
        f"For a seeded random init instead, pass weights=None; figures then say 'random init'."
    )


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _match_file(path: Path, digest: str) -> KnownFile:
    """Which known file ``path`` is: by its name, else by its hash."""
    files = known_files()
    by_name = [f for f in files if f.filename == path.name]
    if by_name:
        return by_name[0]
    by_hash = [f for f in files if f.sha256_prefix and digest.startswith(f.sha256_prefix)]
    if by_hash:
        return by_hash[0]
    raise WeightsError(
        f"{path} is not a pretrained file artlab knows: neither its name nor its sha256 ({digest[:12]}…) "
        "matches an entry of `artlab weights list`."
    )


def import_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy a file downloaded elsewhere into the torch hub cache, after checking it.

    The file is identified by name (or, if renamed, by hash), its sha256 must start
    with the prefix in the official name, and it is written under the exact name
    torchvision expects, atomically (a temp file in the cache, then a rename).
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"cannot import {src}: no such file")
    digest = sha256_of(src)
    known = _match_file(src, digest)
    if known.sha256_prefix and not digest.startswith(known.sha256_prefix):
        raise WeightsError(
            f"{src} has sha256 {digest[:16]}…, but {known.filename} must start with {known.sha256_prefix}: "
            "the download is incomplete or corrupt, or it is a different file. Download it again from "
            f"{known.url}"
        )
    dest = known.path
    if cached_path(known) and not overwrite:
        if sha256_of(dest) == digest:
            return dest
        raise WeightsError(f"{dest} exists with different contents; pass overwrite=True (--force) to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".import-", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def download(known: KnownFile, *, progress: bool = True) -> Path:
    """Fetch a known file into the cache the standard way (torch hub), or explain why not."""
    if path := cached_path(known):
        return path
    if not downloads_allowed():
        raise WeightsNotFoundError(missing_message(known, "downloads are disabled by ARTLAB_OFFLINE"))
    known.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(known.url, str(known.path), hash_prefix=known.sha256_prefix, progress=progress)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; hash mismatch is a RuntimeError
        raise WeightsNotFoundError(missing_message(known, f"download failed: {exc}")) from exc
    return known.path
