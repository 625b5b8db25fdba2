"""``artlab explore FOLDER`` treats the folder as data, never as code or configuration.

A downloaded data set may hold anything. Each planted file below would, if Python,
Voilà, jupyter_server or IPython ran or obeyed it, write a marker file (or widen what
the server serves); the real server (:func:`artlab.explore.start_server`) is started on
a folder holding it and the page is requested, so the kernel runs too; then no marker
may exist and the config must have had no effect. Also: the token is on no command
line and in no log, legacy-protocol kernel websockets are refused, and the page's CSV
export stays inside the folder the user chose.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
import textwrap
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from artlab import explore

needs_server = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("voila", "psutil", "tornado"))
    or not Path("/proc/self/cmdline").exists(),
    reason="needs voila, psutil and tornado (and Linux's /proc) to run the real server",
)

PCA = {"method": "pca"}  # no UMAP compilation thread left running after a test


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40, 40), (60 * i, 120, 200 - 50 * i)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture()
def folder(tmp_path) -> Path:
    """Three tiny images: a map the app computes in a moment."""
    return _images(tmp_path / "downloaded dataset")


@pytest.fixture()
def markers(tmp_path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


# ------------------------------------------------------------------------------ planted files


def _mark(markers: Path, name: str) -> str:
    """Python that leaves a marker named ``name`` (with how it ran) in ``markers``."""
    return (f"import os as _os\n"
            f"with open(_os.path.join({str(markers)!r}, {name!r}), 'a') as _f:\n"
            f"    _f.write(repr(__name__) + '\\n')\n")


def _handing_over(module: str) -> str:
    """Python that, run in place of ``module``, loads the real one (so the server still works and the
    marker, not a crash, shows what happened)."""
    return textwrap.dedent(f"""
        import sys as _sys
        _here = _os.path.dirname(_os.path.abspath(__file__))
        _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
        if __name__ == "__main__":  # run as `python -m {module}`
            import runpy
            runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
        elif "get_config" not in globals():  # imported in place of the real module
            del _sys.modules[{module!r}]
            import importlib
            _real = importlib.import_module({module!r})
            _sys.modules[{module!r}] = _real
            globals().update({{k: v for k, v in vars(_real).items() if not k.startswith("__")}})
    """)


WIDEN = textwrap.dedent("""
    if "get_config" in globals():  # read as a config file: serve every file on the machine
        c = get_config()
        c.Voila.root_dir = "/"
        c.VoilaConfiguration.file_allowlist = [".*"]
        c.VoilaConfiguration.file_denylist = []
        c.ServerApp.root_dir = "/"
""")


def _plant(kind: str, folder: Path, markers: Path) -> None:
    """Put the planted file(s) of ``kind`` into ``folder``."""
    if kind == "voila.py":  # `python -m voila` with the folder first on sys.path, or Voilà's config file
        (folder / "voila.py").write_text(_mark(markers, kind) + WIDEN + _handing_over("voila"))
    elif kind == "traitlets.py":  # imported by Voilà and by ipykernel
        (folder / "traitlets.py").write_text(_mark(markers, kind) + _handing_over("traitlets"))
    elif kind == "voila.json":  # Voilà reads voila.json from its working directory
        (folder / "voila.json").write_text(json.dumps({
            "Voila": {"root_dir": "/", "show_tracebacks": True},
            "VoilaConfiguration": {"file_allowlist": [".*"], "file_denylist": []},
        }))
    elif kind == "jupyter_server_config.py":
        (folder / "jupyter_server_config.py").write_text(_mark(markers, kind) + WIDEN)
        (folder / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"root_dir": "/"}}))
    elif kind == ".pth":  # executed by `site` if the folder were a site directory
        (folder / "zz_planted.pth").write_text(
            f"import os; open(os.path.join({str(markers)!r}, '.pth'), 'a').write('ran\\n')\n")
    elif kind == "sitecustomize.py":  # imported by `site` from anywhere on sys.path at startup
        (folder / "sitecustomize.py").write_text(_mark(markers, kind))
        (folder / "usercustomize.py").write_text(_mark(markers, "usercustomize.py"))
    elif kind == "kernel startup files":  # what ipykernel/IPython would run or read in their cwd
        (folder / "ipykernel_launcher.py").write_text(_mark(markers, "ipykernel_launcher.py")
                                                      + _handing_over("ipykernel_launcher"))
        for name in ("ipython_config.py", "ipython_kernel_config.py"):
            (folder / name).write_text(_mark(markers, name))
        startup = folder / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-planted.py").write_text(_mark(markers, "ipython startup"))
        (folder / "matplotlibrc").write_text("backend: planted_backend_that_does_not_exist\n")
    else:
        raise AssertionError(kind)


PLANTED = ["voila.py", "traitlets.py", "voila.json", "jupyter_server_config.py", ".pth", "sitecustomize.py",
           "kernel startup files"]


# ------------------------------------------------------------------------------ the real server


@contextmanager
def _server(folder: Path, tmp_path: Path, env: dict | None = None):
    options = explore.check_options(folder, model="tiny_vgg", weights=None, size=32,
                                    cache_dir=tmp_path / "cache", csv_path=tmp_path / "exports" / "sel.csv")
    server = explore.start_server(options, env=env, log=tmp_path / "voila.log", startup_timeout_s=120)
    try:
        yield server
    finally:
        server.stop()


def _get(server, path: str, token: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """(status, body) of a GET with ``token`` (default: the server's) in the query; no redirects."""
    sep = "&" if "?" in path else "?"
    url = f"http://127.0.0.1:{server.port}{path}{sep}token={server.token if token is None else token}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _open_page(server) -> str:
    """Request the page (Voilà starts a kernel and runs the app notebook in it); the kernel's id."""
    status, page = _get(server, "/")
    assert status == 200, f"the page answered {status}; log:\n{server.log_tail()}"
    found = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page)
    assert found, "no kernel id in the page"
    assert "artlab-curator-app" in page or "application/vnd.jupyter.widget-view+json" in page
    return found.group(1)


def _processes(server) -> list:
    """psutil handles of the server and everything below it (its kernels)."""
    import psutil

    top = psutil.Process(server.process.pid)
    return [top, *top.children(recursive=True)]


def _outside_file_refused(server, tmp_path: Path) -> None:
    """A file outside the app's directory is not served, whatever route or config (/voila/files/ and /files/)."""
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("not for the page")
    for route in ("/voila/files", "/files"):  # Voilà redirects /files/... to /voila/files/...
        status, body = _get(server, f"{route}{secret}")
        assert status in (302, 403, 404) and "not for the page" not in body, f"{route} answered {status}"


def _assert_isolated(proc, folder: Path) -> None:
    """Neither the working directory nor any path variable of ``proc`` is in the folder."""
    real = Path(os.path.realpath(folder))
    assert not Path(proc.cwd()).is_relative_to(real), f"{proc.cmdline()} runs in the folder"
    env = proc.environ()
    assert "PYTHONSTARTUP" not in env
    for name in ("PYTHONPATH", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "PYTHONUSERBASE", "IPYTHONDIR",
                 "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"):
        for part in env[name].split(os.pathsep) if name in env else []:
            assert part, f"{name} has an empty entry (the working directory): {env.get(name)!r}"
            assert not Path(os.path.realpath(part)).is_relative_to(real), f"{name}={env[name]!r}"


@pytest.mark.parametrize("kind", PLANTED)
@pytest.mark.slow
@needs_server
def test_planted_files_neither_run_nor_configure(folder, markers, tmp_path, kind):
    _plant(kind, folder, markers)
    with _server(folder, tmp_path) as server:
        _open_page(server)
        processes = _processes(server)
        assert len(processes) >= 2, "no kernel started for the page"
        for proc in processes:
            _assert_isolated(proc, folder)
        _outside_file_refused(server, tmp_path)
    assert sorted(p.name for p in markers.iterdir()) == [], "planted code ran"
    log = (tmp_path / "voila.log").read_text()
    assert "planted_backend" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.slow
@needs_server
def test_the_users_environment_cannot_point_into_the_folder(folder, markers, tmp_path):
    """PYTHONPATH with the folder and an empty entry (the working directory), PYTHONSTARTUP and
    IPYTHONDIR inside it, JUPYTER_PATH/JUPYTER_CONFIG_DIR on it, a JUPYTER_TOKEN: none takes effect."""
    _plant("sitecustomize.py", folder, markers)
    _plant("voila.json", folder, markers)
    (folder / "startup.py").write_text(_mark(markers, "PYTHONSTARTUP"))
    ipython = folder / ".ipython" / "profile_default"
    (ipython / "startup").mkdir(parents=True)
    (ipython / "startup" / "00-planted.py").write_text(_mark(markers, "IPYTHONDIR startup"))
    (ipython / "ipython_kernel_config.py").write_text(_mark(markers, "IPYTHONDIR config"))
    kernel = folder / "kernels" / explore.KERNEL_NAME
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", _mark(markers, "planted kernelspec"), "{connection_file}"],
        "display_name": "planted", "language": "python"}))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(folder), "", str(folder / "profile_default")]),
        PYTHONSTARTUP=str(folder / "startup.py"),
        IPYTHONDIR=str(folder / ".ipython"),
        JUPYTER_PATH=str(folder),
        JUPYTER_CONFIG_DIR=str(folder),
        JUPYTER_CONFIG_PATH=str(folder),
        JUPYTER_TOKEN="weak",
    )
    with _server(folder, tmp_path, env=env) as server:
        assert _get(server, "/", token="weak")[0] in (302, 403), "the environment's JUPYTER_TOKEN opened the page"
        _open_page(server)
        for proc in _processes(server):
            _assert_isolated(proc, folder)
        _outside_file_refused(server, tmp_path)
    assert sorted(p.name for p in markers.iterdir()) == [], "planted code ran"


# ------------------------------------------------------------------------------ one clean server


@pytest.fixture(scope="module")
def clean_server(tmp_path_factory):
    """A server on a folder with nothing planted, its page opened (so a kernel runs)."""
    if needs_server.args[0]:
        pytest.skip(needs_server.kwargs["reason"])
    tmp_path = tmp_path_factory.mktemp("clean")
    with _server(_images(tmp_path / "images"), tmp_path) as server:
        server.kernel_id = _open_page(server)
        yield server


@pytest.mark.slow
def test_token_is_on_no_command_line_and_in_no_log(clean_server):
    server, token = clean_server, clean_server.token.encode()
    # a failed request (tornado logs those with their URL) and the websocket route, token in the query
    assert _get(server, "/voila/files/nothing-here.png")[0] in (403, 404)
    assert _get(server, f"/api/kernels/{server.kernel_id}/channels?session_id=logged")[0] == 400
    processes = _processes(server)
    assert len(processes) >= 2, "no kernel runs under the server"
    for proc in processes:  # what `ps` shows every local user
        assert token not in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), proc.cmdline()
        assert "JUPYTER_TOKEN" not in proc.environ()
    token_file = Path(processes[0].environ()["JUPYTER_TOKEN_FILE"])
    assert token_file.stat().st_mode & 0o077 == 0 and token_file.parent.stat().st_mode & 0o077 == 0
    log = server.log_path.read_text()
    assert "token=[secret]" in log  # the failed requests were logged, scrubbed
    assert server.token not in log


def _ws_url(server, session: str) -> str:
    return (f"ws://127.0.0.1:{server.port}/api/kernels/{server.kernel_id}/channels"
            f"?session_id={session}&token={server.token}")


def _handshake(url: str, subprotocols: list[str] | None):
    """Run :func:`_ws_connect` on an event loop of its own thread: a browser test earlier in the
    session (Playwright's sync API) may leave a loop registered as running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(_ws_connect(url, subprotocols))).result()


async def _ws_connect(url: str, subprotocols: list[str] | None):
    """(HTTP status, selected subprotocol) of a websocket handshake."""
    from tornado.httpclient import HTTPClientError
    from tornado.websocket import websocket_connect

    try:
        conn = await asyncio.wait_for(websocket_connect(url, subprotocols=subprotocols), 30)
    except HTTPClientError as exc:
        return exc.code, None
    try:
        return 101, conn.selected_subprotocol
    finally:
        conn.close()


@pytest.mark.slow
def test_legacy_kernel_websockets_are_refused_and_the_server_stays_well(clean_server):
    import psutil

    server = clean_server
    rss = psutil.Process(server.process.pid).memory_info().rss
    # the legacy protocol (no subprotocol, or only others), while the app computes and sends its map
    for i, offered in enumerate([None, [], ["legacy"], ["v2.kernel.websocket.jupyter.org"]] * 3):
        status, selected = _handshake(_ws_url(server, f"legacy-{i}"), offered)
        assert status == 400 and selected is None, (offered, status, selected)
    # the page's own client offers v1 and is accepted
    assert _handshake(_ws_url(server, "v1"), [explore.KERNEL_WS_PROTOCOL]) == (
        101, explore.KERNEL_WS_PROTOCOL)
    assert _get(server, "/voila/files/x.png", timeout=10)[0] in (403, 404)  # still answering at once
    grown = psutil.Process(server.process.pid).memory_info().rss - rss
    assert grown < 100e6, f"the server grew by {grown / 1e6:.0f} MB"


# ------------------------------------------------------------------------------ no server needed


@needs_server
def test_malformed_v1_frames_are_recognised():
    from jupyter_server.services.kernels.connection.base import serialize_binary_message, serialize_msg_to_ws_v1

    parts = [b'{"msg_type": "comm_msg"}', b"{}", b"{}", b"{}", b"\x00" * 100]
    assert explore.connection.is_v1_frame(serialize_msg_to_ws_v1(parts, "shell"))
    legacy = serialize_binary_message({"header": {}, "parent_header": {}, "metadata": {}, "content": {},
                                       "buffers": [b"\x00" * 100]})
    assert not explore.connection.is_v1_frame(legacy)  # its big-endian count reads as a huge v1 count
    huge = (2**62).to_bytes(8, "little") + b"\x00" * 64
    assert not explore.connection.is_v1_frame(huge)
    assert not explore.connection.is_v1_frame('{"channel": "shell"}') and not explore.connection.is_v1_frame(b"")


def test_server_environment_keeps_the_folder_off_every_path(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(folder)  # relative entries would have meant the folder
    files = explore.write_app(explore.check_options(folder, model="tiny_vgg", weights=None), tmp_path / "app")
    explore.write_token(files, "t0ken")
    base = {"PATH": "/bin", "PYTHONPATH": os.pathsep.join([str(folder), "", ".", "/opt/lib", str(folder / "sub")]),
            "PYTHONSTARTUP": "startup.py", "JUPYTER_PATH": f"/elsewhere{os.pathsep}{folder}",
            "JUPYTER_CONFIG_PATH": "/etc/other", "JUPYTER_TOKEN": "weak", "IPYTHONDIR": ".ipython",
            "PYTHONUSERBASE": str(folder), "TORCH_HOME": "/home/me/.torch"}
    env = explore.voila_env(files, base)
    assert env["PYTHONPATH"] == "/opt/lib"
    assert env["JUPYTER_PATH"].split(os.pathsep) == [str(files.jupyter_path), "/elsewhere"]
    for name in ("PYTHONSTARTUP", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "PYTHONUSERBASE"):
        assert name not in env
    assert env["IPYTHONDIR"] == str(files.ipython_dir) and env["JUPYTER_CONFIG_DIR"] == str(files.config_dir)
    assert env["JUPYTER_TOKEN_FILE"] == str(files.token_file) and files.token_file.read_text() == "t0ken"
    assert files.token_file.stat().st_mode & 0o777 == 0o600
    assert env["TORCH_HOME"] == "/home/me/.torch"
    cmd = explore.voila_command(files, port=8123)
    assert not any("t0ken" in c for c in cmd)
    assert f"--Voila.config_file_paths={files.config_dir}" in cmd
    assert f"--Voila.root_dir={files.notebook.parent}" in cmd
    assert list(files.notebook.parent.iterdir()) == [files.notebook]  # the working directory holds nothing else
    with pytest.raises(explore.ExploreError, match="inside the image folder"):
        explore.start_server(explore.check_options(folder, model="tiny_vgg", weights=None),
                             directory=folder / "app")


# ------------------------------------------------------------------------------ CSV export


@pytest.fixture()
def curator_map(folder, tmp_path):
    from artlab.widgets.curator_app import CuratorApp

    app = CuratorApp(folder, model="tiny_vgg", weights=None, size=32, cache_dir=tmp_path / "cache",
                     csv_path=tmp_path / "exports" / "sel.csv", map_options=PCA, start=False, warm_up=False)
    app.run()
    assert app.stage == "ready", app.status.value
    app.map.select([0, 1])
    return app.map


def _export(emap, value: str) -> str:
    emap.csv_file.value = value
    emap.export_button.click()  # what the page's button does
    return emap.export_status.value


def test_csv_export_stays_in_the_chosen_folder(curator_map, tmp_path):
    emap = curator_map
    exports, elsewhere = tmp_path / "exports", tmp_path / "elsewhere"
    exports.mkdir(exist_ok=True)
    elsewhere.mkdir()
    (exports / "link.csv").symlink_to(elsewhere / "x.csv")
    (exports / "out").symlink_to(elsewhere, target_is_directory=True)
    for value in ["../../x.csv", "../elsewhere/x.csv", str(elsewhere / "x.csv"), "link.csv", "out/x.csv",
                  "~/artlab-explore-test-x.csv"]:
        status = _export(emap, value)
        assert "export refused" in status and "outside" in status and str(exports) in status, (value, status)
    for value in ["notes.txt", str(exports / ".bashrc"), ""]:
        assert "export refused" in _export(emap, value), value
    assert list(elsewhere.iterdir()) == [] and not (Path.home() / "artlab-explore-test-x.csv").exists()
    # inside the folder: a plain name (relative to it, not to the kernel's working directory) and a subfolder
    assert "saved 2 rows" in _export(emap, "picked.csv") and (exports / "picked.csv").is_file()
    assert "saved 2 rows" in _export(emap, str(exports / "sub" / "more.csv")) and (exports / "sub" / "more.csv").is_file()
    with pytest.raises(ValueError, match="outside"):
        emap.export_csv(elsewhere / "y.csv")


@needs_server
def test_the_server_imports_the_connection_class_without_torch():
    """Voilà imports ``artlab.explore.connection.V1OnlyKernelConnection`` at startup: that must stay light."""
    import subprocess

    code = ("import sys, artlab.explore as e; cls = e.V1OnlyKernelConnection; "
            "print(cls.__module__, cls.__qualname__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["artlab.explore.connection", "V1OnlyKernelConnection", "False"]
