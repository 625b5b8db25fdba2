"""The official StyleGAN2-ADA (PyTorch) network pickles: their names, sizes and URLs.

:func:`official_files` gives one :class:`artlab.weights.KnownFile` per published pickle;
:mod:`artlab.catalogue` lists them with every other known file, so ``artlab weights list`` shows them and ``artlab weights download/import`` fetch or bring them
into the torch hub cache the standard way. The files keep their official names (``ffhq.pkl``
...), so a copy downloaded elsewhere is recognised by ``artlab weights import`` by its name.

NVIDIA publishes no checksums for these files, so ``sha256_prefix`` is ``None`` (nothing is
invented); the safe loader (:mod:`artlab.stylegan.pickle_io`) checks their structure instead.
The name only says where a file goes, not what it holds: a generator is labelled "official
NVIDIA weights" only when artlab downloaded the file from the URL below (its provenance record,
see :func:`artlab.weights.provenance`); an imported ``ffhq.pkl`` cannot be verified and is
labelled "imported as ffhq.pkl, not verified" with its sha256.
The weights are under NVIDIA's licence (non-commercial, research or evaluation use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artlab.weights import KnownFile, cached_path, download

__all__ = ["BASE_URL", "OfficialPickle", "OFFICIAL_PICKLES", "find_official", "official_file", "official_files", "fetch"]

BASE_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
KEY_PREFIX = "stylegan2-ada/"


@dataclass(frozen=True)
class OfficialPickle:
    """One published network pickle: its short name and what the README says it is."""

    name: str  # "ffhq" -> ffhq.pkl, registry key "stylegan2-ada/ffhq"
    resolution: int
    c_dim: int
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pkl"

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name


# The main models of the stylegan2-ada-pytorch README (design spec section 7.1).
OFFICIAL_PICKLES: dict[str, OfficialPickle] = {
    p.name: p
    for p in (
        OfficialPickle("ffhq", 1024, 0, "FFHQ faces, trained with the original StyleGAN2 config"),
        OfficialPickle("metfaces", 1024, 0, "MetFaces portraits, transfer learning from FFHQ with ADA"),
        OfficialPickle("afhqcat", 512, 0, "AFHQ Cat, from scratch with ADA"),
        OfficialPickle("afhqdog", 512, 0, "AFHQ Dog, from scratch with ADA"),
        OfficialPickle("afhqwild", 512, 0, "AFHQ Wild, from scratch with ADA"),
        OfficialPickle("brecahad", 512, 0, "BreCaHAD histology, from scratch with ADA"),
        OfficialPickle("cifar10", 32, 10, "CIFAR-10, class-conditional (c_dim = 10)"),
    )
}


def _files() -> dict[str, KnownFile]:
    files = {}
    for p in OFFICIAL_PICKLES.values():
        files[p.name] = (
            KnownFile(
                key=p.key,
                filename=p.filename,
                url=BASE_URL + p.filename,
                size_mb=None,  # not published; unknown until downloaded
                sha256_prefix=None,  # NVIDIA publishes no hashes; none is invented
                used_by=f"artlab.stylegan.pickle_io.load({p.name!r})  ({p.resolution} px, {p.description})",
            )
        )
    return files


_FILES = _files()


def official_files() -> list[KnownFile]:
    """The files of every official pickle (for :func:`artlab.catalogue.known_files`)."""
    return list(_FILES.values())


def find_official(name: str) -> OfficialPickle | None:
    """The official pickle called ``name`` (``"ffhq"``, ``"ffhq.pkl"`` or ``"stylegan2-ada/ffhq"``), else None."""
    short = name.removeprefix(KEY_PREFIX).removesuffix(".pkl")
    return OFFICIAL_PICKLES.get(short)


def official_file(name: str) -> KnownFile:
    """The registry entry of an official pickle; ``ValueError`` listing the known names otherwise."""
    found = find_official(name)
    if found is None:
        raise ValueError(f"unknown StyleGAN2-ADA pickle {name!r}; known: {', '.join(OFFICIAL_PICKLES)}")
    return _FILES[found.name]


def fetch(name: str, *, progress: bool | None = None) -> Path:
    """The cached path of an official pickle, downloading it the standard way if allowed.

    Raises :class:`artlab.weights.WeightsNotFoundError` with the usual "download it
    elsewhere, then ``artlab weights import``" message when offline.
    """
    known = official_file(name)
    return cached_path(known) or download(known, progress=progress)
