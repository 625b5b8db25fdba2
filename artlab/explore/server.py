"""Running the app: Voilà's command line and environment, a free port, start, serve and stop.

The server listens on 127.0.0.1 only, with a fresh token passed through a private file, a
private working directory and an environment in which no path points into the image folder.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from artlab.explore.app import AppFiles, interpreter_flags, write_app, write_token
from artlab.explore.options import TEMPLATE_NAME, ExploreError, ExploreOptions, network_name

__all__ = ["ExploreServer", "check_port", "free_port", "serve", "start_server", "voila_command", "voila_env"]

# ----------------------------------------------------------------------------- the command and its environment



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
        python or sys.executable, *interpreter_flags(), "-m", "voila", str(files.notebook),
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
        "--Voila.kernel_websocket_connection_class=artlab.explore.connection.V1OnlyKernelConnection",
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

    network = network_name(options.model)
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
