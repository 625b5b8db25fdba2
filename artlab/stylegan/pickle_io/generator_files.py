"""artlab's own generator files, and :func:`load`: one entry point for every way a generator is stored.

artlab's format (:func:`save_generator`): one ``torch.save`` file (conventionally ``.pt``)
holding ``{"format": "artlab-stylegan2-generator", "version": 1, "config": <JSON text>,
"state_dict": OrderedDict}``; it loads with ``torch.load(weights_only=True)``. The JSON
config holds ``init_kwargs`` (the ``Generator`` constructor arguments), ``network``
(``"G_ema"``...) and ``weights`` (``"official" | "trained" | "random" | "unknown"``, shown
in the label). An official pickle's :class:`NetworkRecord` converts to this format without
building the network.

:func:`load` reads an official pickle (through :func:`load_network_pickle`, never
executed), an artlab file, a folder with ``state_dict.pt`` + ``config.json`` (the layout of
``testdata/stylegan2/cond32``), or the name of an official pickle (``"ffhq"``; fetched the
standard way, see ``artlab weights list``). A stored configuration is checked against the
stored tensors' shapes on torch's ``meta`` device before the network is built.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from artlab.stylegan.pickle_io.errors import PickleFormatError, UnsafePickleError, short_repr
from artlab.stylegan.pickle_io.scan import file_head
from artlab.stylegan.pickle_io.unpickle import GENERATOR_ARGS, NetworkRecord, load_network_pickle

if TYPE_CHECKING:
    from artlab.weights import Provenance

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "WEIGHT_ORIGINS", "save_generator", "load"]

FORMAT_NAME = "artlab-stylegan2-generator"
FORMAT_VERSION = 1
WEIGHT_ORIGINS = ("official", "trained", "random", "unknown")


def _origin_words(origin: str) -> str:
    return {"official": "official NVIDIA weights", "trained": "trained weights", "random": "random init",
            "unknown": "weights of unknown origin"}[origin]


def _pickle_origin(path: Path) -> tuple[str, str, Provenance | None]:
    """Whether a network pickle holds official NVIDIA weights, judged by its contents, never its name.

    Any file can be called ``ffhq.pkl``, and NVIDIA publishes no checksums to compare it
    with. So "official" needs artlab's provenance record beside the file
    (:func:`artlab.weights.provenance`, valid only while the file keeps the sha256 it pins)
    saying that artlab downloaded it from the published URL of that pickle, or that its
    contents matched a published hash. Everything else is "trained" weights: an import of
    ``ffhq.pkl`` is described as "imported as ffhq.pkl, not verified, sha256 …", and a file
    with an official name but no record as "ffhq.pkl, not verified".

    Returns (origin, the words naming the file in the label, the provenance record or None).
    """
    from artlab.stylegan.pretrained import find_official, official_file
    from artlab.weights import provenance

    record = provenance(path)
    if record is not None:
        official = find_official(record.key)
        if official is not None and (record.verified or (record.how == "downloaded"
                                                         and record.source == official_file(official.name).url)):
            return "official", path.name, record
        if record.how == "imported":
            return "trained", record.describe(), record
    return "trained", f"{path.name}, not verified" if find_official(path.name) else path.name, record


def save_generator(G: nn.Module | NetworkRecord, path: str | os.PathLike, *, weights: str | None = None) -> Path:
    """Write a generator as one ``torch.save`` file that ``torch.load(weights_only=True)`` reads.

    ``G`` is an ``artlab.stylegan.networks.Generator`` (its ``init_kwargs`` are stored) or a
    :class:`NetworkRecord` from an official pickle (converted without building the network).
    ``weights`` records their origin (one of ``WEIGHT_ORIGINS``); by default it comes from
    ``G.weights_origin`` / ``G.pretrained`` (a network with ``pretrained=False`` is ``"random"``).
    The file is written atomically; :func:`load` reads it back.
    """
    path = Path(path).expanduser()
    if isinstance(G, NetworkRecord):
        kwargs, tensors, network = G.generator_kwargs(), G.state_dict, G.name
        default = _pickle_origin(Path(G.path))[0]  # by the pickle's provenance record, not its name
        source = Path(G.path).name
    else:
        kwargs = getattr(G, "init_kwargs", None)
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{type(G).__name__} has no init_kwargs; save an artlab.stylegan Generator")
        tensors, network = G.state_dict(), getattr(G, "network", "G_ema")
        default = getattr(G, "weights_origin", None) or ("trained" if getattr(G, "pretrained", False) else "random")
        source = getattr(G, "source", "")
    origin = weights or default
    if origin not in WEIGHT_ORIGINS:
        raise ValueError(f"weights={origin!r}; expected one of {WEIGHT_ORIGINS}")
    config = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "class_name": "Generator", "network": network,
              "weights": origin, "source": str(source), "init_kwargs": dict(kwargs)}
    try:
        text = json.dumps(config, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the generator configuration is not plain JSON data: {exc}") from exc
    state = OrderedDict((k, v.detach().to("cpu").contiguous().clone()) for k, v in tensors.items())
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": text, "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _torch_load(path: Path) -> Any:
    from artlab.weights import torch_load_reason  # the reason without torch's "weights_only=False" advice

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global
        raise UnsafePickleError(f"refusing {path}: torch.load(weights_only=True) rejected it: "
                                f"{torch_load_reason(exc)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise PickleFormatError(f"{path} is not a readable torch file (truncated or corrupt?): "
                                f"{torch_load_reason(exc)}") from exc


def _check_state_dict(sd: object, where: str) -> OrderedDict[str, Tensor]:
    if not isinstance(sd, Mapping) or not all(type(k) is str and isinstance(v, Tensor) for k, v in sd.items()):
        raise PickleFormatError(f"{where}: the state dict is not a mapping of names to tensors")
    return OrderedDict(sd)


def _read_own_file(path: Path) -> tuple[dict, OrderedDict]:
    obj = _torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise PickleFormatError(
            f"{path} is a torch file but not an artlab generator file (no 'format': {FORMAT_NAME!r}). A bare "
            "state dict loads from a folder holding it as state_dict.pt next to a config.json with the init kwargs")
    if obj.get("version") != FORMAT_VERSION:
        raise PickleFormatError(f"{path}: artlab generator file version {obj.get('version')!r}; this artlab reads "
                                f"version {FORMAT_VERSION} (upgrade artlab)")
    try:
        config = json.loads(obj["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PickleFormatError(f"{path}: malformed config: {exc}") from exc
    if not isinstance(config, dict):
        raise PickleFormatError(f"{path}: the config is not a JSON object")
    return config, _check_state_dict(obj.get("state_dict"), str(path))


def _read_folder(folder: Path) -> tuple[dict, OrderedDict]:
    missing = [n for n in ("state_dict.pt", "config.json") if not (folder / n).is_file()]
    if missing:
        raise PickleFormatError(f"{folder} is a folder without {' and '.join(missing)}; a generator folder holds "
                                "state_dict.pt (torch.save of the state dict) and config.json (the init kwargs)")
    try:
        config = json.loads((folder / "config.json").read_text())
    except ValueError as exc:
        raise PickleFormatError(f"{folder / 'config.json'} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise PickleFormatError(f"{folder / 'config.json'} does not hold a JSON object")
    sd = _check_state_dict(_torch_load(folder / "state_dict.pt"), str(folder / "state_dict.pt"))
    return config, sd


def _config_kwargs(config: dict, where: str) -> dict:
    """The Generator kwargs of a config: ``init_kwargs`` (artlab files) or the top-level keys (testdata)."""
    source = config.get("init_kwargs", config)
    if not isinstance(source, dict):
        raise PickleFormatError(f"{where}: init_kwargs is not a JSON object")
    kwargs = {k: source[k] for k in (*GENERATOR_ARGS, "mapping_kwargs", "synthesis_kwargs") if k in source}
    missing = [k for k in GENERATOR_ARGS if k not in kwargs]
    if missing:
        raise PickleFormatError(f"{where}: the config lacks {missing} (the Generator constructor arguments)")
    return kwargs


def _config_origin(config: dict) -> str:
    if config.get("weights") in WEIGHT_ORIGINS:
        return config["weights"]
    if "randomization" in config or "construction_seed" in config:  # reference networks built from a seed
        return "random"
    return "unknown"


def _check_declared_shapes(kwargs: dict, state_dict: Mapping[str, Tensor], where: str) -> None:
    """Refuse a configuration whose network does not have exactly the stored tensors, before building it.

    The configuration comes from the file too: built for real, ``img_resolution=2**20``
    or ``channel_max=2**30`` would allocate (and randomly initialise) gigabytes before
    ``load_state_dict`` found that the weights do not fit. So the network is first built
    on torch's ``meta`` device (shapes only, no memory) and its state dict's names and
    shapes are compared with the stored ones; layer counts that could not possibly match
    the stored tensors are refused before even that.
    """
    from artlab.stylegan.networks import Generator

    n = len(state_dict)
    mapping = kwargs.get("mapping_kwargs")
    layers = mapping.get("num_layers") if isinstance(mapping, dict) else None
    resolution = kwargs.get("img_resolution")
    if (type(layers) is int and layers > n) or (type(resolution) is int and resolution.bit_length() > n + 2):
        raise PickleFormatError(
            f"{where}: the weights do not fit the configuration {short_repr(kwargs, 300)}: it declares more layers "
            f"(img_resolution {resolution!r}, mapping num_layers {layers!r}) than the file has tensors ({n})")
    try:
        with torch.device("meta"):
            shell = Generator(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PickleFormatError(f"{where}: artlab's Generator does not accept the stored configuration "
                                f"{short_repr(kwargs, 300)}: {exc}") from exc
    except (RuntimeError, OverflowError, MemoryError) as exc:
        raise PickleFormatError(f"{where}: the stored configuration {short_repr(kwargs, 300)} declares impossible "
                                f"shapes: {type(exc).__name__}: {short_repr(str(exc), 200)}") from exc
    declared = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state_dict.items()}
    problems = [f"missing {k}" for k in declared if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in declared]
    problems += [f"{k} is {list(stored[k])}, the configuration says {list(shape)}"
                 for k, shape in declared.items() if k in stored and stored[k] != shape]
    if problems:
        more = f" … and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise PickleFormatError(f"{where}: the weights do not fit the configuration {short_repr(kwargs, 300)}: "
                                + "; ".join(problems[:8]) + more)


def _build_generator(kwargs: dict, state_dict: Mapping[str, Tensor], where: str) -> nn.Module:
    from artlab.stylegan.networks import Generator

    _check_declared_shapes(kwargs, state_dict, where)  # nothing allocated for a configuration that cannot fit
    try:
        G = Generator(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PickleFormatError(f"{where}: artlab's Generator does not accept the stored configuration "
                                f"{short_repr(kwargs, 300)}: {exc}") from exc
    try:
        G.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise PickleFormatError(f"{where}: the weights do not fit the configuration {short_repr(kwargs, 300)}: "
                                f"{exc}") from exc
    return G


def _resolve(path: str | os.PathLike) -> Path:
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    from artlab.stylegan.pretrained import OFFICIAL_PICKLES, fetch, find_official

    if isinstance(path, str) and "/" not in path.removeprefix("stylegan2-ada/") and find_official(path):
        return Path(fetch(path))  # cached, downloaded, or WeightsNotFoundError with instructions
    raise FileNotFoundError(f"{candidate}: no such file or folder (official StyleGAN2-ADA names: "
                            f"{', '.join(OFFICIAL_PICKLES)}; see `artlab weights list`)")


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu", which: str = "G_ema") -> nn.Module:
    """The generator stored at ``path``, ready to use (eval mode, no gradients on its weights).

    ``path`` is an official network pickle (read by :func:`load_network_pickle`, never
    executed), an artlab generator file (:func:`save_generator`), a folder holding
    ``state_dict.pt`` + ``config.json``, or an official name (``"ffhq"``, ``"stylegan2-ada/ffhq"``).
    ``which`` picks the network of a pickle (``"G_ema"``, the one for generation, or ``"G"``);
    artlab files and folders hold one generator. The result is an
    ``artlab.stylegan.networks.Generator`` whose ``label`` names the file and says whether the
    weights are official, trained, random or of unknown origin; ``pretrained`` is True only for
    official or trained weights, ``weights_origin``, ``source`` and ``network`` record the rest.
    A pickle is "official" only by its contents (see :func:`_pickle_origin`: downloaded by
    artlab from NVIDIA's URL, sha256 unchanged since), never by its name; ``provenance`` holds
    its :class:`artlab.weights.Provenance` record, if any.
    """
    if which not in ("G_ema", "G"):
        raise ValueError(f"which={which!r}: only the generators 'G_ema' (for images) and 'G' can be loaded")
    source = _resolve(path)
    provenance: Provenance | None = None
    if source.is_dir():
        config, sd = _read_folder(source)
        kwargs, network, name = _config_kwargs(config, str(source)), config.get("network"), source.name + "/"
        origin = _config_origin(config)
    else:
        head = file_head(source)  # a FIFO or device is refused here, never read
        if head.startswith(b"PK\x03\x04"):
            config, sd = _read_own_file(source)
            kwargs, network, name = _config_kwargs(config, str(source)), config.get("network"), source.name
            origin = _config_origin(config)
        else:
            records = load_network_pickle(source)
            if which not in records:
                raise PickleFormatError(f"{source} holds no {which} (it has {', '.join(records)})")
            record = records[which]
            kwargs, sd, network = record.generator_kwargs(), record.state_dict, which
            origin, name, provenance = _pickle_origin(source)
    if network not in (None, which):
        raise ValueError(f"{source} holds {network}, not {which}; pass which={network!r}")
    G = _build_generator(kwargs, sd, str(source))
    G.eval().requires_grad_(False).to(device)
    if provenance is not None and origin == "official":  # the published name it was fetched as
        stem = provenance.key.rsplit("/", 1)[-1]
    else:
        stem = Path(source.name).stem
    title = f"StyleGAN2-ADA {stem}" if origin == "official" else "StyleGAN2-ADA"
    G.label = f"{title} · {_origin_words(origin)} ({name}, {network or which})"
    G.pretrained = origin in ("official", "trained")
    G.weights_origin, G.source, G.network = origin, str(source), network or which
    G.provenance = provenance  # the artlab.weights.Provenance record of a pickle, or None
    return G
