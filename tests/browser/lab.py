"""Helpers for real-browser tests: a throw-away JupyterLab server and the
Playwright interactions the widget tests need.

Everything here is plain functions/classes so that tests (and the fixtures in
``conftest.py``) can import them directly. pytest puts this folder (it has no
``__init__.py``) on ``sys.path``, so::

    from lab import open_notebook, run_all_cells, output_summary

Selectors were checked against JupyterLab 4 (4.6) and ipywidgets 8
(@jupyter-widgets/jupyterlab-manager 5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import nbformat

# --------------------------------------------------------------------------
# Browser settings
# --------------------------------------------------------------------------

#: Debian's chromium (installed by .ci/ensure-chromium.sh). Playwright never
#: downloads a browser in this project.
CHROMIUM_PATH = Path("/usr/bin/chromium")
ENSURE_CHROMIUM_SCRIPT = ".ci/ensure-chromium.sh"

#: Flags for a quiet, offline, headless chromium. ``--disable-dev-shm-usage``
#: guards against the tiny /dev/shm of many containers (chromium crashes
#: rendering large pages otherwise). Playwright picks its own temporary
#: ``--user-data-dir`` for every ``launch()``, so each run gets a fresh profile.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

VIEWPORT = {"width": 1400, "height": 900}

#: the repository root (tests/browser/../..)
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# --------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------

#: User settings written into the server's private settings dir.
#: * no "Would you like to get notified about official Jupyter news?" toast
#:   (it covers the lower right of the notebook) and no update check;
#: * ``windowingMode: none`` attaches every cell to the DOM, so output
#:   counts/selectors see the whole notebook, not just the cells in view.
LAB_USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
    },
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(path: Path, n_lines: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:  # pragma: no cover - diagnostics only
        return f"<could not read {path}: {exc}>"
    return "\n".join(lines[-n_lines:])


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` on loopback (see :func:`start_jupyter_server`)."""

    url: str  #: base URL with trailing slash, e.g. ``http://127.0.0.1:8899/``
    token: str
    root_dir: Path  #: the server's root; tests copy notebooks in here
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    # -- URLs and REST -----------------------------------------------------
    def notebook_url(self, relpath: str, workspace: str | None = None) -> str:
        """URL opening ``relpath`` in a fresh workspace (``?reset``), so no
        saved layout from an earlier test interferes."""
        workspace = workspace or f"pytest-{uuid.uuid4().hex[:12]}"
        path = urllib.parse.quote(Path(relpath).as_posix())
        query = urllib.parse.urlencode({"token": self.token})
        return f"{self.url}lab/workspaces/{workspace}/tree/{path}?reset&{query}"

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
        """Call the server's REST API (token in the Authorization header)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path.lstrip("/"),
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict]:
        return self.api("api/sessions")

    def session_for(self, relpath: str) -> dict | None:
        want = Path(relpath).as_posix()
        for sess in self.sessions():
            if sess.get("path") == want:
                return sess
        return None

    def shutdown_kernels(self) -> None:
        """Delete every session (and so its kernel); used between tests."""
        for sess in self.sessions():
            try:
                self.api(f"api/sessions/{sess['id']}", method="DELETE", timeout=30)
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise

    # -- notebooks in the root ------------------------------------------------
    def add_notebook(
        self, src: str | os.PathLike, relpath: str | None = None, kernel_name: str = "python3"
    ) -> str:
        """Copy a notebook into the server root and return its relative path.

        The copy's kernelspec is set to ``kernel_name`` (the only kernel this
        server knows), so Lab never asks "Select Kernel"."""
        nb = nbformat.read(os.fspath(src), as_version=4)
        return self.write_notebook(nb, relpath or Path(src).name, kernel_name=kernel_name)

    def write_notebook(
        self, nb: nbformat.NotebookNode, relpath: str, kernel_name: str = "python3"
    ) -> str:
        """Write ``nb`` into the server root (as ``relpath``) and return ``relpath``."""
        nb.metadata["kernelspec"] = {
            "name": kernel_name,
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        dest = self.root_dir / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, os.fspath(dest))
        return Path(relpath).as_posix()

    def add_files(self, *paths: str | os.PathLike, subdir: str = "") -> list[str]:
        """Copy auxiliary files (images, data) into the root (or ``subdir``)."""
        dest_dir = self.root_dir / subdir
        dest_dir.mkdir(parents=True, exist_ok=True)
        out = []
        for src in paths:
            shutil.copy2(src, dest_dir / Path(src).name)
            out.append((Path(subdir) / Path(src).name).as_posix())
        return out

    def read_notebook(self, relpath: str) -> nbformat.NotebookNode:
        """The notebook as saved on disk (after :func:`save_notebook`)."""
        return nbformat.read(os.fspath(self.root_dir / relpath), as_version=4)

    # -- diagnostics -------------------------------------------------------
    def log_tail(self, n_lines: int = 60) -> str:
        return _tail(self.log_path, n_lines)

    def stop(self, timeout_s: float = 20) -> None:
        stop_jupyter_server(self, timeout_s)


def jupyter_server_env(base_dir: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an isolated server: private config/runtime/data/IPython
    dirs so the developer's own setup (user kernels, lab settings, startup
    files) cannot interfere. Lab extensions (ipywidgets' manager, plotly) are
    still found: they live in ``sys.prefix/share/jupyter``, which Jupyter
    searches whatever ``JUPYTER_DATA_DIR`` says."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime", "ipython"):
        (base_dir / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(base_dir / "config"),
        JUPYTER_DATA_DIR=str(base_dir / "data"),
        JUPYTER_RUNTIME_DIR=str(base_dir / "runtime"),
        IPYTHONDIR=str(base_dir / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_PREFER_ENV_PATH="1",
        PYTHONUNBUFFERED="1",
        # debugpy complains on stderr about frozen modules otherwise
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.pop("JUPYTERLAB_SETTINGS_DIR", None)
    env.pop("JUPYTERLAB_WORKSPACES_DIR", None)
    if extra_env:
        env.update(extra_env)
    return env


def _write_lab_settings(settings_dir: Path) -> None:
    for rel, values in LAB_USER_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def start_jupyter_server(
    root_dir: Path,
    base_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 60,
    attempts: int = 3,
) -> JupyterServer:
    """Start ``jupyter lab`` on 127.0.0.1 with token auth and wait for it.

    ``root_dir`` is served; ``base_dir`` holds the private Jupyter dirs,
    workspaces, settings and the server log. Retries on another port if the
    chosen one got taken in between (rare)."""
    root_dir.mkdir(parents=True, exist_ok=True)
    env = jupyter_server_env(base_dir, extra_env)
    workspaces = base_dir / "workspaces"
    settings = base_dir / "user-settings"
    workspaces.mkdir(parents=True, exist_ok=True)
    _write_lab_settings(settings)

    last_error = ""
    for attempt in range(1, attempts + 1):
        port = free_port()
        token = uuid.uuid4().hex
        log_path = base_dir / f"jupyter-server-{attempt}.log"
        cmd = [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            # quiet and offline
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.workspaces_dir={workspaces}",
            f"--LabApp.user_settings_dir={settings}",
        ]
        log_file = open(log_path, "wb")
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=root_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: easy to clean up
            )
        finally:
            log_file.close()
        server = JupyterServer(
            url=f"http://127.0.0.1:{port}/", token=token, root_dir=root_dir,
            log_path=log_path, process=proc,
        )
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                server.api("api/status", timeout=2)
                return server
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                time.sleep(0.25)
        tail = server.log_tail()
        if proc.poll() is None:
            stop_jupyter_server(server)
            raise RuntimeError(
                f"jupyter lab did not answer {server.url}api/status within "
                f"{startup_timeout_s:.0f}s. Server log ({log_path}) tail:\n{tail}"
            )
        last_error = f"jupyter lab exited with code {proc.returncode}. Log ({log_path}) tail:\n{tail}"
        if "already in use" not in tail.lower():
            break
    raise RuntimeError(last_error)


def stop_jupyter_server(server: JupyterServer, timeout_s: float = 20) -> None:
    """Shut the server down with its kernels: REST shutdown (which stops the
    kernels cleanly), then SIGTERM, then SIGKILL for anything left over,
    including kernel processes (they run in their own process groups)."""
    proc = server.process
    children: list = []
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing or process already gone
        pass
    if proc.poll() is None:
        try:
            server.api("api/shutdown", method="POST", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
    for child in children:
        try:
            if child.is_running():
                child.kill()
        except Exception:
            pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------
# Console errors
# --------------------------------------------------------------------------

#: Console errors that are not failures. Each entry is (regex on the message,
#: regex on the source URL or None, why). Keep this list precise.
HARMLESS_CONSOLE_ERRORS: list[tuple[str, str | None, str]] = [
    # Empty on purpose: JupyterLab 4.6 + ipywidgets 8.1 + chromium 156 log no
    # console errors (nor warnings) while opening, running and saving the
    # harness notebooks. Add an entry only for noise seen and understood,
    # e.g. (r"^Failed to load resource: .* 404", r"/favicon\.ico$", "why").
]


def is_harmless_console_error(text: str, url: str = "") -> bool:
    for text_re, url_re, _why in HARMLESS_CONSOLE_ERRORS:
        if re.search(text_re, text) and (url_re is None or re.search(url_re, url or "")):
            return True
    return False


def collect_console_errors(page, sink: list[str]) -> None:
    """Append console ``error`` messages and uncaught page errors of ``page``
    to ``sink`` (minus :data:`HARMLESS_CONSOLE_ERRORS`)."""

    def on_console(msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        if not is_harmless_console_error(msg.text, url):
            sink.append(f"console.error: {msg.text} (at {url or '?'})")

    def on_page_error(exc) -> None:
        sink.append(f"pageerror: {exc}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


# --------------------------------------------------------------------------
# Lab interactions
# --------------------------------------------------------------------------

#: the notebook panel currently shown in the main area
NOTEBOOK_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


class LabTimeout(AssertionError):
    """A wait on the Lab UI ran out of time."""


def _dialog_text(page) -> str | None:
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        return dialog.first.inner_text()
    return None


def open_notebook(page, server: JupyterServer, relpath: str, timeout_s: float = 60) -> None:
    """Open ``relpath`` (already in ``server.root_dir``) in a fresh workspace,
    wait for the notebook panel, for its kernel session on the server and for
    the kernel to be idle in the UI."""
    if not (server.root_dir / relpath).exists():
        raise FileNotFoundError(f"{relpath} is not in the server root {server.root_dir}")
    deadline = time.monotonic() + timeout_s
    page.goto(server.notebook_url(relpath), wait_until="domcontentloaded", timeout=timeout_s * 1000)
    page.locator(f"{NOTEBOOK_PANEL} .jp-Notebook").wait_for(
        state="visible", timeout=max(1.0, deadline - time.monotonic()) * 1000
    )
    # The server side: a session for this path whose kernel is idle and has
    # the browser's websocket attached. (The toolbar's execution indicator
    # says "idle" even before a kernel exists, so it alone is not enough.)
    while True:
        sess = server.session_for(relpath)
        kernel = (sess or {}).get("kernel") or {}
        if kernel.get("execution_state") == "idle" and kernel.get("connections", 0) > 0:
            break
        dialog = _dialog_text(page)
        if dialog:
            raise AssertionError(f"unexpected dialog while opening {relpath}: {dialog!r}")
        if time.monotonic() > deadline:
            raise LabTimeout(
                f"kernel for {relpath} not idle+connected after {timeout_s:.0f}s "
                f"(session: {sess!r}). Server log tail:\n{server.log_tail(30)}"
            )
        time.sleep(0.25)
    wait_kernel_idle(page, timeout_s=max(5.0, deadline - time.monotonic()))


_KERNEL_STATE_JS = """
(panelSel) => {
  const panel = document.querySelector(panelSel);
  if (!panel) return {ok: false, why: 'no notebook panel'};
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const indicator = ind ? ind.getAttribute('data-status') : null;
  const prompts = Array.from(panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
      .map(p => p.textContent.trim());
  const running = prompts.filter(p => p.includes('*')).length;
  // status bar item "Python 3 (ipykernel) | Idle" (absent in some layouts)
  const sb = document.querySelector('#jp-main-statusbar [title^="Change kernel"]');
  const statusbar = sb ? sb.textContent.trim() : null;
  const sbIdle = statusbar === null || /\\|\\s*Idle$/.test(statusbar);
  return {ok: indicator === 'idle' && running === 0 && sbIdle,
          indicator, running, statusbar, prompts};
}
"""


def kernel_state(page) -> dict:
    """Snapshot of the visible notebook's execution state (for messages)."""
    return page.evaluate(_KERNEL_STATE_JS, NOTEBOOK_PANEL)


def wait_kernel_idle(page, timeout_s: float = 60, settle_s: float = 0.5) -> dict:
    """Wait until the visible notebook's kernel is idle: the toolbar's
    execution indicator says idle, the status bar says "| Idle" and no cell
    shows ``[*]`` -- continuously for ``settle_s`` (guards against the short
    idle blips between queued cells)."""
    deadline = time.monotonic() + timeout_s
    idle_since: float | None = None
    state: dict = {}
    while True:
        state = kernel_state(page)
        now = time.monotonic()
        if state.get("ok"):
            idle_since = idle_since if idle_since is not None else now
            if now - idle_since >= settle_s:
                return state
        else:
            idle_since = None
        if now > deadline:
            raise LabTimeout(f"kernel not idle after {timeout_s:.0f}s: {state}")
        time.sleep(0.1)


def click_menu(page, menu: str, item: str) -> None:
    """Click main menu ``menu`` (e.g. "Run") then its entry ``item``
    (e.g. "Run All Cells"), both matched by exact label."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    entry = page.locator(
        ".lm-Menu:not(.lm-mod-hidden) .lm-Menu-item",
        has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")),
    )
    entry.first.click()


def _code_cells_state(page) -> dict:
    return page.evaluate(
        """(panelSel) => {
          const panel = document.querySelector(panelSel);
          const cells = panel ? Array.from(panel.querySelectorAll('.jp-CodeCell')) : [];
          return {n: cells.length,
                  prompts: cells.map(c => {
                    const p = c.querySelector('.jp-InputPrompt');
                    return p ? p.textContent.trim() : '';
                  })};
        }""",
        NOTEBOOK_PANEL,
    )


def run_all_cells(page, timeout_s: float = 120, clear_outputs: bool = True) -> dict:
    """Run → Run All Cells through the menu and wait until execution is over.

    With ``clear_outputs`` (default) Edit → Clear Outputs of All Cells runs
    first, so every output seen afterwards comes from this run and "done"
    is unambiguous: some cell got a number, none shows ``[*]`` and the kernel
    is idle. (If a cell raises, Lab stops there; the rest stay ``[ ]``.)
    Without clearing, "started" means a ``[*]`` was seen or the prompts
    changed -- weaker if the saved counts happen to equal the new ones.
    Returns the final :func:`kernel_state`."""
    if _code_cells_state(page)["n"] == 0:
        return kernel_state(page)
    if clear_outputs:
        click_menu(page, "Edit", "Clear Outputs of All Cells")
        page.wait_for_function(
            """(panelSel) => Array.from(document.querySelectorAll(
                 panelSel + ' .jp-CodeCell .jp-InputPrompt'))
                 .every(p => !/\\d/.test(p.textContent))""",
            arg=NOTEBOOK_PANEL,
            timeout=10_000,
        )
    before = _code_cells_state(page)["prompts"]
    click_menu(page, "Run", "Run All Cells")
    deadline = time.monotonic() + timeout_s
    seen_running = False
    while True:
        prompts = _code_cells_state(page)["prompts"]
        running = any("*" in p for p in prompts)
        seen_running = seen_running or running
        if (seen_running or prompts != before) and not running:
            break
        if time.monotonic() > deadline:
            raise LabTimeout(f"Run All Cells not finished after {timeout_s:.0f}s; prompts: {prompts}")
        dialog = _dialog_text(page)
        if dialog:
            raise AssertionError(f"unexpected dialog during Run All Cells: {dialog!r}")
        time.sleep(0.2)
    return wait_kernel_idle(page, timeout_s=max(5.0, deadline - time.monotonic()))


def save_notebook(page, server: JupyterServer, relpath: str, timeout_s: float = 30) -> nbformat.NotebookNode:
    """Save the visible notebook (Ctrl+S) and return it as read from disk,
    e.g. to check ``output_type == "error"`` exactly."""
    path = server.root_dir / relpath
    before = path.stat().st_mtime_ns if path.exists() else 0
    page.locator(f"{NOTEBOOK_PANEL} .jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != before:
            try:
                return server.read_notebook(relpath)
            except Exception:  # caught mid-write
                pass
        time.sleep(0.2)
    raise LabTimeout(f"{relpath} was not saved within {timeout_s:.0f}s")


def saved_error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` for every ``error`` output in a saved notebook."""
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return errors


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------

STDERR_MIME = "application/vnd.jupyter.stderr"
WIDGET_FALLBACK_TEXTS = ("Loading widget...", "Error displaying widget")
#: IPython traceback signatures. In the DOM, error outputs and stderr streams
#: look the same (both rendered as the stderr mime type); a traceback has
#: one of these.
_TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\s*Cell In\[\d+\], line \d+", re.M)


@dataclass
class OutputSummary:
    """What the visible notebook's output areas show (see :func:`output_summary`)."""

    stdout: list[str]
    stderr: list[str]  #: stderr streams *and* tracebacks
    images: list[dict]  #: ``{"naturalWidth", "naturalHeight", "mime"}`` per ``<img>``
    rendered_images: int  #: count of ``.jp-RenderedImage`` outputs
    widget_views: int  #: rendered ipywidgets views (``.jupyter-widgets``)
    widget_fallbacks: list[str]  #: "Loading widget..." / "Error displaying widget..." texts
    texts: list[str] = field(default_factory=list)  #: every output's text

    @property
    def errors(self) -> list[str]:
        """Tracebacks among the stderr outputs."""
        return [t for t in self.stderr if _TRACEBACK_RE.search(t)]

    @property
    def loaded_images(self) -> list[dict]:
        return [im for im in self.images if im["naturalWidth"] > 0 and im["naturalHeight"] > 0]


def output_summary(page) -> OutputSummary:
    """Collect the rendered outputs of the visible notebook in one go."""
    raw = page.evaluate(
        """(panelSel) => {
          const panel = document.querySelector(panelSel);
          const outs = panel ? Array.from(panel.querySelectorAll('.jp-OutputArea-output')) : [];
          const text = e => (e.innerText || e.textContent || '');
          return {
            stdout: outs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stdout').map(text),
            stderr: outs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr').map(text),
            texts: outs.map(text),
            images: outs.flatMap(o => Array.from(o.querySelectorAll('img')).map(img => ({
              naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
              complete: img.complete, mime: o.dataset.mimeType || null}))),
            rendered_images: panel ? panel.querySelectorAll('.jp-OutputArea-output.jp-RenderedImage').length : 0,
            widget_views: panel ? panel.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length : 0,
          };
        }""",
        NOTEBOOK_PANEL,
    )
    fallbacks = [t.strip() for t in raw["texts"] if t.strip().startswith(WIDGET_FALLBACK_TEXTS)]
    return OutputSummary(
        stdout=raw["stdout"],
        stderr=raw["stderr"],
        images=raw["images"],
        rendered_images=raw["rendered_images"],
        widget_views=raw["widget_views"],
        widget_fallbacks=fallbacks,
        texts=raw["texts"],
    )


# short aliases used by tests
cell_outputs = output_summary


def error_outputs(page) -> list[str]:
    """Traceback texts shown in the visible notebook."""
    return output_summary(page).errors


def wait_images_loaded(page, minimum: int = 1, timeout_s: float = 30) -> list[dict]:
    """Wait until at least ``minimum`` output images have decoded (non-zero
    natural size) and return them."""
    deadline = time.monotonic() + timeout_s
    while True:
        loaded = output_summary(page).loaded_images
        if len(loaded) >= minimum:
            return loaded
        if time.monotonic() > deadline:
            raise LabTimeout(f"only {len(loaded)} of {minimum} output images loaded after {timeout_s:.0f}s")
        time.sleep(0.2)


def wait_widgets_rendered(page, minimum: int = 1, timeout_s: float = 30) -> OutputSummary:
    """Wait until ``minimum`` ipywidgets views rendered and none shows the
    "Loading widget..." fallback; fail at once on "Error displaying widget"."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = output_summary(page)
        broken = [t for t in summary.widget_fallbacks if t.startswith("Error displaying widget")]
        if broken:
            raise AssertionError(f"widget failed to render: {broken}")
        if summary.widget_views >= minimum and not summary.widget_fallbacks:
            return summary
        if time.monotonic() > deadline:
            raise LabTimeout(
                f"{summary.widget_views} widget views (wanted {minimum}), "
                f"fallbacks {summary.widget_fallbacks} after {timeout_s:.0f}s"
            )
        time.sleep(0.2)


# --------------------------------------------------------------------------
# ipywidgets
# --------------------------------------------------------------------------


def widget(page, description: str, kind: str = ""):
    """Locator of the ipywidgets view whose description label is exactly
    ``description``; ``kind`` narrows by class, e.g. "widget-dropdown",
    "widget-slider". Must match exactly one view."""
    label = page.locator("label.widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    css = f"{NOTEBOOK_PANEL} .jupyter-widgets{'.' + kind if kind else ''}"
    loc = page.locator(css).filter(has=label)
    # the innermost match: a Box containing the widget would match as well
    loc = loc.filter(has_not=page.locator(".jupyter-widgets", has=label))
    count = loc.count()
    if count != 1:
        raise AssertionError(f"{count} widgets{' of kind ' + kind if kind else ''} described {description!r}")
    return loc


def select_dropdown(page, description: str, option: str) -> None:
    """Choose ``option`` (by its visible label) in the Dropdown described
    ``description``, the way a user does."""
    widget(page, description, "widget-dropdown").locator("select").select_option(label=option)


def hold_after_code(module: str, stop_button: str, after: int = 10, delay_s: float = 0.3) -> str:
    """Kernel code that slows a run down deterministically, so a test can see it running and stop it.

    After its first ``after`` calls, every forward call of ``module`` (an expression naming a
    ``torch.nn.Module`` in the kernel) waits ``delay_s``, until ``stop_button`` (an expression
    naming an ipywidgets Button) is clicked. A run of N steps then lasts at least
    (N - after) * delay_s on any machine, however fast, and ends promptly once Stop is pressed,
    so the "running" state a test waits for is created rather than caught in passing."""
    return f"""
import itertools as _hold_it, threading as _hold_th
_hold_released, _hold_calls = _hold_th.Event(), _hold_it.count()
def _hold(_module, _args):
    if next(_hold_calls) >= {int(after)}:
        _hold_released.wait({float(delay_s)})
{module}.register_forward_pre_hook(_hold)
{stop_button}.on_click(lambda _b: _hold_released.set())
"""


def dropdown_options(page, description: str) -> list[str]:
    """The visible labels of the Dropdown described ``description``, in order."""
    select = widget(page, description, "widget-dropdown").locator("select")
    return select.evaluate("s => Array.from(s.options).map(o => o.text)")


def dropdown_value(page, description: str) -> str:
    select = widget(page, description, "widget-dropdown").locator("select")
    return select.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''")


def set_slider(page, description: str, value: float | int | str) -> None:
    """Set an Int/Float slider by typing into its editable readout + Enter
    (what a user does for exact values); checks the readout accepted it."""
    readout = widget(page, description, "widget-slider").locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")
    try:
        want = float(value)
    except ValueError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if abs(float(readout.inner_text()) - want) < 1e-9 + 1e-6 * abs(want):
                return
        except ValueError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"slider {description!r} shows {readout.inner_text()!r}, wanted {value!r}")


def slider_value(page, description: str) -> str:
    return widget(page, description, "widget-slider").locator(".widget-readout").inner_text()


def click_button(page, text: str, timeout_s: float = 30) -> None:
    """Click the ipywidgets Button whose caption is exactly ``text`` (waiting for it: a caption
    such as Pause/Resume changes only once the kernel has handled the previous click)."""
    buttons = page.locator(f"{NOTEBOOK_PANEL} button.jupyter-button:not([disabled])").filter(
        has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")
    )
    deadline = time.monotonic() + timeout_s
    while buttons.count() != 1:
        if time.monotonic() > deadline:
            raise AssertionError(f"{buttons.count()} enabled buttons captioned {text!r} after {timeout_s:.0f} s")
        time.sleep(0.05)
    buttons.click()


def widget_label_texts(page) -> list[str]:
    """Texts of all ipywidgets ``Label`` views (not descriptions)."""
    return page.locator(f"{NOTEBOOK_PANEL} div.jupyter-widgets.widget-label").all_inner_texts()


def wait_for_text(page, locator_css: str, expected: str | re.Pattern, timeout_s: float = 15) -> str:
    """Wait until some element matching ``locator_css`` in the notebook has
    text ``expected`` (exact string or regex); returns that text."""
    pattern = expected if isinstance(expected, re.Pattern) else re.compile(rf"^\s*{re.escape(expected)}\s*$")
    deadline = time.monotonic() + timeout_s
    texts: list[str] = []
    while True:
        texts = page.locator(f"{NOTEBOOK_PANEL} {locator_css}").all_inner_texts()
        for t in texts:
            if pattern.search(t):
                return t
        if time.monotonic() > deadline:
            raise LabTimeout(f"no {locator_css!r} with text {pattern.pattern!r}; saw {texts}")
        time.sleep(0.1)


@contextmanager
def browser_page(browser, console_errors: list[str], request, tmp_path: Path, server_log: Any):
    """A fresh page in its own browser context, closed afterwards. When the test failed
    (setup or call), prints a screenshot path, the console errors and ``server_log()``."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    collect_console_errors(page, console_errors)
    try:
        yield page
    finally:
        if any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")):
            try:
                print(f"\n[browser] failure screenshot: {screenshot(page, tmp_path / 'failure.png')}")
            except Exception as exc:  # the page may be gone
                print(f"\n[browser] no failure screenshot: {exc}")
            print(f"[browser] console errors: {console_errors}")
            print(f"[browser] server log tail:\n{server_log()}")
        context.close()


def wait_svg_text(page, css: str, pattern: str, timeout_s: float = 30) -> str:
    """Like :func:`wait_for_text` for SVG text (plotly titles, tick labels), which has
    no innerText: wait until an element matching ``css`` in the notebook has a text
    content matching the regex ``pattern``; returns that text."""
    deadline = time.monotonic() + timeout_s
    while True:
        texts = page.locator(f"{NOTEBOOK_PANEL} {css}").all_text_contents()
        for text in texts:
            if re.search(pattern, text):
                return text
        if time.monotonic() > deadline:
            raise LabTimeout(f"no {css!r} matching {pattern!r}; saw {texts}")
        time.sleep(0.1)


def open_code_notebook(page, server: JupyterServer, sources: str | list[str], name: str, *,
                       run_timeout_s: float = 150, widgets: int = 1) -> str:
    """Write a notebook of code cells, open it, run all cells and wait until ``widgets``
    widget views rendered with no error output; returns its path relative to the server."""
    cells = [nbformat.v4.new_code_cell(src) for src in ([sources] if isinstance(sources, str) else sources)]
    relpath = server.write_notebook(nbformat.v4.new_notebook(cells=cells), name)
    open_notebook(page, server, relpath, timeout_s=90)
    run_all_cells(page, timeout_s=run_timeout_s)
    wait_widgets_rendered(page, minimum=widgets)
    assert error_outputs(page) == []
    return relpath


# --------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------


def screenshot(page, path: str | os.PathLike) -> Path:
    """Screenshot the page to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=os.fspath(path))
    return path
