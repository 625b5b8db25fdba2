"""``artlab explore FOLDER``: a folder's embedding map as a no-code Voilà app.

This module is the core side of the curator app; the page itself is
:class:`artlab.widgets.curator_app.CuratorApp`. Here we

* check what the user typed before anything starts (the folder holds readable
  images, the model, layer, pooling and size exist), so mistakes get a clear
  message instead of a broken page;
* write the app: a one-cell notebook that builds the ``CuratorApp`` with the
  options baked in as literals (Voilà runs it and strips the code, so the
  curator sees only the widgets), plus a private kernelspec whose ``argv`` is
  this very Python, so the kernel imports the same artlab whatever kernels the
  user has installed elsewhere;
* build Voilà's command line (127.0.0.1 only, a fresh token, our own port,
  sources stripped) and run it, printing the URL to open.

The image folder is data, never code or configuration (a downloaded data set
may hold anything): the server and its kernels run with a private working
directory (``-P`` on Python 3.11+, so no working directory on ``sys.path``
either), read Voilà config only from the app's own directory, get private
Jupyter/IPython config, data and runtime dirs, and an environment in which no
path variable (``PYTHONPATH``, ``PYTHONUSERBASE``, ``JUPYTER_PATH``…) points into
the folder and ``PYTHONSTARTUP`` is unset. The token reaches Voilà through a
private file (``JUPYTER_TOKEN_FILE``), not its command line (which every local
user can read), and the access log scrubs it from URLs. Kernel websockets must
speak the v1 kernel protocol; legacy-protocol clients are refused (Voilà misreads
legacy binary frames as v1 ones and then allocates without bound).

Embeddings are cached on disk by :func:`artlab.embed.embed`, so the first launch
on a folder shows a progress bar and later launches open straight on the map.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import webbrowser
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from artlab.data import Collection

__all__ = [
    "ExploreError",
    "ExploreOptions",
    "ExploreServer",
    "AppFiles",
    "KERNEL_NAME",
    "KERNEL_WS_PROTOCOL",
    "TEMPLATE_NAME",
    "app_notebook",
    "check_folder",
    "check_options",
    "check_port",
    "free_port",
    "kernel_spec",
    "serve",
    "start_server",
    "voila_command",
    "voila_env",
    "write_app",
    "write_token",
]

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
    temporary, so it must not be relative to it).
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

    def app_kwargs(self) -> dict:
        """Keyword arguments for ``CuratorApp`` (plain literals: they are written into the notebook)."""
        kwargs = asdict(self)
        folder = kwargs.pop("folder")
        kwargs = {k: (str(v) if isinstance(v, Path) else v) for k, v in kwargs.items()}
        return {"folder": str(folder), **kwargs}


# ----------------------------------------------------------------------------- checks


def check_folder(folder: str | os.PathLike) -> Collection:
    """The folder as a :class:`~artlab.data.Collection`, or an :class:`ExploreError` saying what is wrong.

    Missing, not a directory, or with fewer than two readable images (a map needs
    two points): each gets its own message naming the path and what to pass instead.
    """
    # imported here: the app's Voilà server imports this module (for V1OnlyKernelConnection), not torch
    from artlab.data import IMAGE_EXTENSIONS, Collection, CollectionError

    path = Path(folder).expanduser()
    extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
    if not path.exists():
        raise ExploreError(f"{path} does not exist; pass the folder that holds your images "
                           "(class subfolders or a metadata.csv are optional)")
    if not path.is_dir():
        raise ExploreError(f"{path} is a file, not a folder; pass the folder that contains it "
                           f"({path.parent}) or another folder of images")
    try:
        collection = Collection.from_folder(path)
    except CollectionError as exc:
        if "no readable images" in str(exc):
            raise ExploreError(f"no readable images in {path} or its subfolders (looked for {extensions}); "
                               "pass a folder with at least two images") from exc
        raise ExploreError(f"{path}: {exc}") from exc
    if len(collection) < 2:
        raise ExploreError(f"{path} holds a single readable image ({collection.paths[0].name}); "
                           "a map needs at least two: add images or pass a larger folder")
    return collection


def _layer_names(model: str) -> tuple[list[str], list[str]]:
    """(canonical layer names, aliases) of a registered backbone, without allocating its weights."""
    import torch

    from artlab.models import registered_backbones

    spec = registered_backbones()[_network_name(model)]
    # The meta device builds the module graph with no storage: the names, instantly.
    with torch.device("meta"):
        net = spec.build()
    stages, aliases = spec.stages(net)
    return [name for name, _ in stages], sorted(aliases)


def _network_name(model: str) -> str:
    """The registered network a model name stands for ("best": the one best_backbone picks here)."""
    from artlab import weights as _weights
    from artlab.models import BEST, FALLBACKS

    if model != BEST:
        return model
    return "vgg19" if _weights.cached_path(_weights.find_known("vgg19")) else FALLBACKS[0]


def _check_weights_here(model: str, weights: str | None) -> None:
    """weights='auto' loads only files already here: say what to do before the app starts, not after."""
    from artlab import weights as _weights
    from artlab.models import BEST, registered_backbones

    if model == BEST or weights != "auto":
        return
    spec = registered_backbones()[model]
    if spec.weights_file is None and spec.torchvision_name is None:
        return  # a random test twin: there is nothing to look for
    key = spec.weights_file or spec.torchvision_name
    known = _weights.find_known(key)
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
) -> ExploreOptions:
    """Check every option the way the app will use it and return them resolved (absolute paths).

    ``csv_path`` defaults to ``<current directory>/<folder name>_selection.csv``.
    """
    from artlab.embed import POOLINGS
    from artlab.models import registered_backbones

    collection = check_folder(folder)
    known = registered_backbones()
    if model not in known and model != "best":
        raise ExploreError(f"unknown model {model!r}; choose best (the best network here) or one of "
                           f"{', '.join(sorted(known))}")
    if layer is not None:
        names, aliases = _layer_names(model)
        if layer not in names and layer not in aliases:
            which = f"{_network_name(model)} (the best network here)" if model == "best" else model
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
    )


# ----------------------------------------------------------------------------- the app files


def app_notebook(options: ExploreOptions) -> dict:
    """The app notebook (nbformat 4 JSON): one hidden code cell that shows a ``CuratorApp``.

    The options are written as Python literals (``repr``), so the notebook runs
    as is, without parameters passed at request time. The cell's source is
    marked hidden for JupyterLab too; Voilà strips it anyway.
    """
    args = ",\n    ".join(f"{k}={v!r}" for k, v in options.app_kwargs().items())
    source = (
        "from artlab.widgets.curator_app import CuratorApp\n"
        "\n"
        f"app = CuratorApp(\n    {args},\n)\n"
        "app"
    )
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "curator-app",
        "metadata": {"jupyter": {"source_hidden": True}, "tags": ["hide-input"]},
        "outputs": [],
        "source": source,
    }
    return {
        "cells": [cell],
        "metadata": {
            "kernelspec": {"name": KERNEL_NAME, "display_name": "artlab (explore)", "language": "python"},
            "language_info": {"name": "python"},
            "artlab": {"app": "explore", "options": options.app_kwargs()},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


#: Voilà's "lab" page without the two Font Awesome stylesheets it links from cdn.jsdelivr.net:
#: offline they fail (console errors), and behind a firewall that drops packets they hold
#: the page's rendering until the request times out. Icons still work: Voilà bundles the
#: Font Awesome fonts in its own static files. The block keeps what the lab template adds
#: (its style script, spinner and empty-cell CSS) and then skips to the block of the
#: template the lab template extends (``super.super()``).
TEMPLATE_INDEX = """{%- extends 'lab/index.html.j2' -%}
{% import "spinner.macro.html.j2" as spinner %}
{%- block notebook_css -%}
  {% if frontend == "voila" %}
    {{ resources.include_js("static/voila-style.js") }}
  {% endif %}
  {{ spinner.css() }}
  <style>.jp-mod-noOutputs.jp-mod-noInput { display: none; }</style>
  {{ super.super() }}
{%- endblock notebook_css -%}
"""


def _interpreter_flags() -> list[str]:
    """``-P`` (Python 3.11+): no working directory or script directory first on ``sys.path``."""
    return ["-P"] if sys.version_info >= (3, 11) else []


def kernel_spec(python: str | None = None) -> dict:
    """A kernelspec running ``python`` (default: this interpreter), which has artlab installed.

    ``-P`` keeps the kernel's working directory off ``sys.path`` (Voilà starts it in the
    notebook's private directory anyway).
    """
    return {
        "argv": [python or sys.executable, *_interpreter_flags(), "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "artlab (explore)",
        "language": "python",
        "metadata": {"debugger": False},
    }


#: the one config file the app's Voilà reads (``--Voila.config_file_paths`` names its folder).
#: Tornado's logs write a request's URL, token included, for every failed request; here
#: jupyter_server's access log (which writes ``token=[secret]``) replaces tornado's, and a
#: filter scrubs ``token=``/``_xsrf=`` values from everything tornado and Voilà log.
#: ``/voila/files/`` serves nothing: the page shows its images as data URLs.
VOILA_CONFIG = r'''# Written by artlab explore; Voila reads no other config file.
import logging
import re

from jupyter_server.log import log_request

_SECRET = re.compile(r"(\b(?:token|_xsrf)=)[^&\s'\"()<>]+", re.IGNORECASE)


class ScrubSecrets(logging.Filter):
    """Replace token values in a log record's message by [secret]."""

    def filter(self, record):
        message = record.getMessage()
        scrubbed = _SECRET.sub(r"\1[secret]", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


for _name in ("tornado.access", "tornado.application", "tornado.general", "Voila"):
    logging.getLogger(_name).addFilter(ScrubSecrets())

c.Voila.tornado_settings = {"log_function": log_request}
c.VoilaConfiguration.file_allowlist = []
'''


@dataclass(frozen=True)
class AppFiles:
    """Where :func:`write_app` put the app, all under ``directory`` (private: 0700 when a temp dir).

    ``notebook`` sits alone in its folder, which is the server's and the kernel's working
    directory and Voilà's ``root_dir``; ``jupyter_path`` (first on ``JUPYTER_PATH``) holds the
    kernelspec and the Voilà template; ``config_dir`` holds the only Voilà config file read
    and is ``JUPYTER_CONFIG_DIR``; ``folder`` is the image folder (kept off every path).
    """

    directory: Path
    notebook: Path
    jupyter_path: Path
    folder: Path | None = None

    @property
    def config_dir(self) -> Path:
        return self.directory / "config"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def runtime_dir(self) -> Path:
        return self.directory / "runtime"

    @property
    def ipython_dir(self) -> Path:
        return self.directory / "ipython"

    @property
    def token_file(self) -> Path:
        return self.directory / "token"


def write_app(options: ExploreOptions, directory: str | os.PathLike) -> AppFiles:
    """Write the app notebook, its private kernelspec, Voilà template and config under ``directory``."""
    directory = Path(directory)
    jupyter_path = directory / "jupyter"
    template_dir = jupyter_path / "voila" / "templates" / TEMPLATE_NAME
    template_dir.mkdir(parents=True, exist_ok=True)
    (template_dir / "conf.json").write_text(json.dumps({"base_template": "lab"}))
    (template_dir / "index.html.j2").write_text(TEMPLATE_INDEX)
    kernel_dir = jupyter_path / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True, exist_ok=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(kernel_spec(), indent=1))
    notebook_dir = directory / "app"
    notebook_dir.mkdir(exist_ok=True)
    notebook = notebook_dir / NOTEBOOK_NAME.format(folder=options.folder.name or "images")
    notebook.write_text(json.dumps(app_notebook(options), indent=1))
    files = AppFiles(directory, notebook, jupyter_path, folder=options.folder)
    for private in (files.config_dir, files.data_dir, files.runtime_dir, files.ipython_dir):
        private.mkdir(exist_ok=True)
    (files.config_dir / "voila.py").write_text(VOILA_CONFIG)
    return files


def write_token(files: AppFiles, token: str) -> Path:
    """Write ``token`` to ``files.token_file``, readable by this user only (Voilà reads it via
    ``JUPYTER_TOKEN_FILE``: a command line is readable by every local user)."""
    path = files.token_file
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return path


# ----------------------------------------------------------------------------- Voilà

#: the kernel websocket protocol the app speaks; clients that do not offer it are refused
KERNEL_WS_PROTOCOL = "v1.kernel.websocket.jupyter.org"


def voila_command(files: AppFiles, *, port: int, python: str | None = None) -> list[str]:
    """Voilà's command line for the app in ``files``: 127.0.0.1 only, on ``port`` exactly, token auth.

    It expects the environment of :func:`voila_env` (which finds our template and
    carries the token file). No secret is on it: every local user can read a command line.

    The browser is never opened by Voilà (its URL would lack the token);
    :func:`serve` opens the tokened URL itself. Sources are stripped explicitly.
    Config comes from ``files.config_dir`` only (not the working directory nor the
    user's Jupyter dirs), Voilà serves no files (``/voila/files/``: the page shows
    images as data URLs), and kernel websockets must speak the v1 protocol
    (:class:`V1OnlyKernelConnection`).
    """
    return [
        python or sys.executable, *_interpreter_flags(), "-m", "voila", str(files.notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={int(port)}",
        "--Voila.port_retries=0",  # the URL we print must be the one it serves
        "--Voila.auto_token=True",  # the token: JUPYTER_TOKEN_FILE (see voila_env)
        "--strip_sources=True",
        f"--template={TEMPLATE_NAME}",
        "--show_tracebacks=False",
        f"--Voila.config_file_paths={files.config_dir}",
        f"--Voila.root_dir={files.notebook.parent}",
        f"--Voila.connection_dir_root={files.runtime_dir}",
        "--Voila.kernel_websocket_connection_class=artlab.explore.V1OnlyKernelConnection",
    ]


#: environment variables naming one path: dropped when they point into the image folder
_PATH_VARIABLES = ("PYTHONUSERBASE", "PYTHONPYCACHEPREFIX", "PYTHONHOME", "TORCH_HOME", "ARTLAB_CACHE",
                   "MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")
#: environment variables the app's server and kernels never get: startup code, other config and tokens
_DROPPED_VARIABLES = ("PYTHONSTARTUP", "JUPYTER_CONFIG_PATH", "JUPYTER_NO_CONFIG", "JUPYTER_TOKEN",
                      "JUPYTER_TOKEN_FILE", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except (OSError, ValueError):
        return True  # unreadable: better without it


def _safe_path(value: str, folder: Path | None, cwd: Path) -> str | None:
    """``value`` made absolute (against the launching directory, what the user meant), or None
    when empty or inside ``folder``."""
    if not value:
        return None  # an empty entry means "the working directory" to Python
    path = Path(value).expanduser()
    path = path if path.is_absolute() else cwd / path
    return None if _inside(path, folder) else str(path)


def _safe_path_list(value: str, folder: Path | None, cwd: Path) -> list[str]:
    kept = (_safe_path(part, folder, cwd) for part in value.split(os.pathsep))
    return [part for part in kept if part is not None]


def voila_env(files: AppFiles, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the server and its kernels.

    Our kernelspec and template first on ``JUPYTER_PATH``; private Jupyter config, data
    and runtime dirs and ``IPYTHONDIR`` (no user or folder config, no startup files);
    the token file (when :func:`write_token` wrote it); no ``PYTHONSTARTUP``; path
    variables made absolute, with empty entries and anything inside the image folder
    dropped; ``PYTHONSAFEPATH`` (Python 3.11+) so no Python process below puts its working
    directory first on ``sys.path``; unbuffered output.
    """
    env = dict(os.environ if base is None else base)
    cwd = Path.cwd()
    for name in _DROPPED_VARIABLES:
        env.pop(name, None)
    for name in ("PYTHONPATH", "JUPYTER_PATH"):
        kept = _safe_path_list(env.pop(name, ""), files.folder, cwd)
        if name == "JUPYTER_PATH":
            kept.insert(0, str(files.jupyter_path))
        if kept:
            env[name] = os.pathsep.join(kept)
    for name in _PATH_VARIABLES:
        if name in env:
            safe = _safe_path(env.pop(name), files.folder, cwd)
            if safe is not None:
                env[name] = safe
    env.update(
        JUPYTER_CONFIG_DIR=str(files.config_dir),
        JUPYTER_DATA_DIR=str(files.data_dir),
        JUPYTER_RUNTIME_DIR=str(files.runtime_dir),
        IPYTHONDIR=str(files.ipython_dir),
        PYTHONUNBUFFERED="1",
    )
    if files.token_file.exists():
        env["JUPYTER_TOKEN_FILE"] = str(files.token_file)
    if sys.version_info >= (3, 11):
        env["PYTHONSAFEPATH"] = "1"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's frozen-modules note on stderr
    return env


def _is_v1_frame(message) -> bool:
    """Whether ``message`` is a well-formed v1 kernel websocket frame (bytes: a little-endian
    count n, n offsets, the channel and the message parts), checked before jupyter_server
    walks its offsets (a huge count would have it loop and allocate without bound)."""
    if not isinstance(message, (bytes, bytearray, memoryview)):
        return False
    message = bytes(message)
    if len(message) < 8:
        return False
    count = int.from_bytes(message[:8], "little")
    if count < 3 or 8 * (count + 1) > len(message):
        return False
    offsets = [int.from_bytes(message[8 * (i + 1):8 * (i + 2)], "little") for i in range(count)]
    return offsets[0] == 8 * (count + 1) and all(a <= b for a, b in itertools.pairwise(offsets)) \
        and offsets[-1] <= len(message)


def _v1_only_connection_class() -> type:
    from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
    from tornado import web
    from traitlets import Unicode

    class V1OnlyKernelConnection(ZMQChannelsWebsocketConnection):
        """jupyter_server's kernel websocket connection, v1 protocol only.

        Voilà's websocket handler reads every outgoing binary frame as a v1 frame; a
        legacy-protocol client's frames (a big-endian buffer count) then read as a huge
        offset count, and the server allocates without bound and stops answering. So a
        client that does not offer the v1 subprotocol is refused before the upgrade
        (HTTP 400), and incoming frames that are not well-formed v1 frames are dropped.
        """

        kernel_ws_protocol = Unicode(KERNEL_WS_PROTOCOL, allow_none=True, config=True,
                                     help="the only kernel websocket protocol spoken")

        async def prepare(self):
            header = self.websocket_handler.request.headers.get("Sec-WebSocket-Protocol", "")
            if KERNEL_WS_PROTOCOL not in {p.strip() for p in header.split(",")}:
                self.log.warning("refused a kernel websocket that does not offer %s", KERNEL_WS_PROTOCOL)
                # Finish, not HTTPError: Voilà cannot render jupyter_server's error page (no static_path)
                handler = self.websocket_handler
                handler.set_status(400)
                handler.set_header("Content-Type", "text/plain; charset=UTF-8")
                raise web.Finish(f"this server speaks only the {KERNEL_WS_PROTOCOL} kernel websocket protocol\n")
            await super().prepare()

        def handle_incoming_message(self, incoming_msg) -> None:
            if not _is_v1_frame(incoming_msg):
                self.log.warning("dropped a kernel websocket message that is not a v1 frame")
                return
            super().handle_incoming_message(incoming_msg)

        def handle_outgoing_message(self, stream, outgoing_msg) -> None:
            if self.subprotocol != KERNEL_WS_PROTOCOL:
                return  # never reached (prepare refused the client): no legacy frames, whatever happens
            super().handle_outgoing_message(stream, outgoing_msg)

    V1OnlyKernelConnection.__qualname__ = "V1OnlyKernelConnection"
    V1OnlyKernelConnection.__module__ = __name__
    return V1OnlyKernelConnection


def __getattr__(name: str):
    # V1OnlyKernelConnection is built on first use: importing this module stays free of jupyter_server
    if name == "V1OnlyKernelConnection":
        cls = globals()[name] = _v1_only_connection_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port(port: int | None) -> int:
    """``port`` if valid and free on 127.0.0.1 (a free one when None), else an :class:`ExploreError`."""
    if port is None:
        return free_port()
    if not 1 <= int(port) <= 65535:
        raise ExploreError(f"--port must be between 1 and 65535, got {port}")
    if not _port_is_free(int(port)):
        raise ExploreError(f"port {port} on 127.0.0.1 is in use; pick another with --port N, "
                           "or leave --port out to get a free one")
    return int(port)


@dataclass
class ExploreServer:
    """A running Voilà server of the app (see :func:`start_server`); ``stop()`` ends it and its kernels."""

    url: str  #: the page to open, token included
    port: int
    token: str
    process: subprocess.Popen = field(repr=False)
    files: AppFiles
    log_path: Path | None = None
    owns_directory: bool = True

    def log_tail(self, n_lines: int = 60) -> str:
        """The end of the server log (when it goes to a file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n_lines:])

    def stop(self, timeout_s: float = 20) -> None:
        """Stop the server and every kernel it started; remove the app files it wrote.

        SIGINT first (Voilà then shuts its kernels down cleanly), SIGTERM and SIGKILL
        for a server that does not exit, and SIGKILL for any kernel still running
        (kernels live in their own process groups).
        """
        children = _descendants(self.process.pid)
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if self.process.poll() is not None:
                break
            _signal_group(self.process, sig)
            try:
                self.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            try:
                if child.is_running():  # psutil also checks the pid was not reused
                    child.kill()
            except Exception:
                pass
        if self.owns_directory:
            shutil.rmtree(self.files.directory, ignore_errors=True)

    def __enter__(self) -> ExploreServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list:
    """psutil handles of the processes below ``pid`` (kernels), or [] without psutil."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:
        return []


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """Let a child started inside see SIGINT, even where this process ignores it.

    A process started in the background by a non-interactive shell ignores SIGINT,
    and an ignored signal stays ignored across ``exec``: Voilà would then never get
    the SIGINT with which :meth:`ExploreServer.stop` asks it to shut its kernels down.
    """
    try:
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave it alone (stop() escalates to SIGTERM/SIGKILL)
        ignored = False
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_server(
    options: ExploreOptions,
    *,
    port: int | None = None,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    log: str | os.PathLike | IO | None = None,
    directory: str | os.PathLike | None = None,
    startup_timeout_s: float = 60,
) -> ExploreServer:
    """Write the app, start Voilà on 127.0.0.1 and return once it accepts connections.

    ``log``: a file path (or open file) for the server's output; None inherits the
    terminal. ``env`` replaces ``os.environ`` as the base environment (what the server
    gets of it: :func:`voila_env`). The app is written to ``directory`` (default: a
    private temp dir removed by ``stop()``; never inside the image folder). The
    notebook runs (and the embedding starts) when the page is first opened.
    """
    port = check_port(port)
    token = token or secrets.token_hex(24)
    owns = directory is None
    if not owns and _inside(Path(directory).expanduser().absolute(), options.folder):
        raise ExploreError(f"the app's directory {directory} is inside the image folder {options.folder}; "
                           "pass a directory outside it")
    directory = Path(tempfile.mkdtemp(prefix="artlab-explore-")) if owns else Path(directory)
    files = write_app(options, directory)
    write_token(files, token)
    log_path = None
    out: IO | int | None = None
    if isinstance(log, (str, os.PathLike)):
        log_path = Path(log)
        out = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    elif log is not None:
        out = log
    try:
        with _sigint_not_ignored():
            proc = subprocess.Popen(
                voila_command(files, port=port),
                cwd=files.notebook.parent,  # never the image folder: nothing in it may be imported or read as config
                env=voila_env(files, env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,  # its own process group: stop() ends it with its kernels
            )
    finally:
        if log_path is not None and out is not None:
            out.close()
    server = ExploreServer(
        url=f"http://127.0.0.1:{port}/?{urllib.parse.urlencode({'token': token})}",
        port=port, token=token, process=proc, files=files, log_path=log_path, owns_directory=owns,
    )
    deadline = time.monotonic() + startup_timeout_s
    while True:
        if proc.poll() is not None:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"voila exited with code {proc.returncode} before serving"
                               + (f"; log tail:\n{tail}" if tail else " (see its output above)"))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = server.log_tail()
            server.stop()
            raise RuntimeError(f"voila did not listen on 127.0.0.1:{port} within {startup_timeout_s:.0f}s"
                               + (f"; log tail:\n{tail}" if tail else ""))
        time.sleep(0.2)


def serve(options: ExploreOptions, *, port: int | None = None, open_browser: bool = True) -> int:
    """Run the app until Ctrl+C (what ``artlab explore`` does); returns Voilà's exit code."""
    server = start_server(options, port=port)
    print(f"artlab explore: {options.folder}")
    from artlab.embed import default_cache_dir

    network = _network_name(options.model)
    which = f"{network} (the best network here)" if options.model == "best" else network
    print(f"  model {which} ({options.weights or 'random'} weights), "
          f"embeddings cached in {options.cache_dir or default_cache_dir()}")
    print(f"  open {server.url}")
    print("  (the first visit embeds the folder, with a progress bar; press Ctrl+C here to stop)", flush=True)
    if open_browser:
        webbrowser.open(server.url)
    previous = {}
    try:
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # `kill`, a closed terminal
            if sig is not None:
                previous[sig] = signal.signal(sig, _interrupt)
    except ValueError:  # not the main thread (serve() called from a thread): Ctrl+C only
        pass
    try:
        return server.process.wait() or 0
    except KeyboardInterrupt:
        print("\nartlab explore: stopping", flush=True)
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
