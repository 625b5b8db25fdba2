"""``artlab explore``: option checks, the app notebook, Voilà's command line, the server's
life cycle, and the CuratorApp widget driven step by step (the browser test is
tests/browser/test_curator_app.py)."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from artlab import explore
from artlab.cli import build_parser, main


@pytest.fixture()
def folder(tmp_path, corpus) -> Path:
    """12 images of the sample corpus in two class subfolders, plus a file that is not an image."""
    root = tmp_path / "paintings"
    for item in [i for i in corpus.items if i.label in ("photo", "brush")][:12]:
        target = root / item.label / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, target)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def no_server(monkeypatch):
    """Fail the test if anything tries to start a server."""

    def refuse(*args, **kwargs):
        raise AssertionError("a server was started although the options were wrong")

    monkeypatch.setattr(explore, "serve", refuse)
    monkeypatch.setattr(explore, "start_server", refuse)


# ------------------------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: (tmp / "a.png").write_bytes(b"x") and tmp / "a.png", "is a file, not a folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no readable images"),
    ],
    ids=["missing", "file", "empty"],
)
def test_bad_folder_exits_2_with_a_clear_message(tmp_path, capsys, no_server, make, expected):
    path = make(tmp_path)
    assert main(["explore", str(path), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("artlab explore: ") and expected in err and str(path) in err


def test_folder_of_broken_images_is_refused(tmp_path, capsys, no_server):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    assert main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no readable images" in err and "pass a folder with at least two images" in err


def test_a_single_image_is_not_a_map(tmp_path, capsys, no_server, corpus):
    shutil.copy(corpus.paths[0], tmp_path / "only.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["explore", str(tmp_path)]) == 2
    assert "holds a single readable image (only.png); a map needs at least two" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "vgg91"], "unknown model 'vgg91'; choose best (the best network here) or one of"),
        (["--model", "vgg19"], "vgg19's ImageNet weights (vgg19-dcbb9e9d.pth) are not on this machine"),
        (["--weights", "/nowhere/vgg.pth", "--model", "vgg19"], "weights file /nowhere/vgg.pth does not exist"),
        (["--model", "tiny_vgg", "--layer", "relu9_9"], "tiny_vgg has no layer 'relu9_9'; valid layers: conv1_1"),
        (["--pooling", "max"], "unknown pooling 'max'; choose one of mean, mean+std, gram"),
        (["--size", "8"], "--size must be at least 32 pixels"),
        (["--weights", "/nowhere/vgg.pth"], "weights file /nowhere/vgg.pth does not exist"),
        (["--port", "70000"], "--port must be between 1 and 65535"),
        (["--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    ],
)
def test_bad_options_exit_2_before_any_server(folder, capsys, no_server, args, expected):
    assert main(["explore", str(folder), *args]) == 2
    assert expected in capsys.readouterr().err


def test_busy_port_is_refused(folder, capsys, no_server):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["explore", str(folder), "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_layer_aliases_are_accepted_without_building_weights(folder):
    options = explore.check_options(folder, model="resnet50", weights=None, layer="layer3")
    assert options.layer == "layer3"


def test_cli_passes_checked_options_to_serve(folder, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(explore, "serve", lambda options, **kw: calls.append((options, kw)) or 0)
    monkeypatch.chdir(tmp_path)
    port = explore.free_port()
    argv = ["explore", str(folder), "--no-browser", "--port", str(port), "--model", "tiny_vgg", "--layer",
            "relu3_1", "--size", "64", "--pooling", "gram", "--weights", "random", "--cache-dir", "cache"]
    assert main(argv) == 0
    (options, kwargs), = calls
    assert kwargs == {"port": port, "open_browser": False}
    assert options.folder == folder.resolve() and options.folder.is_absolute()
    assert (options.model, options.layer, options.size, options.pooling) == ("tiny_vgg", "relu3_1", 64, "gram")
    assert options.weights is None  # "random" -> backbone(weights=None)
    assert options.cache_dir == (tmp_path / "cache").resolve()
    assert options.csv_path == tmp_path / "paintings_selection.csv"  # never inside the temporary app dir


def test_defaults_are_the_best_network_here(folder, hub_cache):
    args = build_parser().parse_args(["explore", str(folder)])
    assert (args.model, args.weights, args.port, args.no_browser) == ("best", "auto", None, False)
    options = explore.check_options(folder)
    assert (options.model, options.weights, options.layer) == ("best", "auto", None)
    # "best" names a real network: layers are checked against the one best_backbone picks here
    assert explore.check_options(folder, layer="stage3").layer == "stage3"  # bundled EfficientNet-Lite0
    with pytest.raises(explore.ExploreError, match="has no layer 'relu3_1'"):
        explore.check_options(folder, layer="relu3_1")


def test_a_weights_file_needs_its_network(folder, tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(b"x")
    with pytest.raises(explore.ExploreError, match="pass --model too"):
        explore.check_options(folder, weights=str(path))


def test_parser_lists_explore():
    assert "explore" in build_parser().format_help()


# ------------------------------------------------------------------------------------ the app files


def _app_call(source: str) -> ast.Call:
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "CuratorApp"]
    assert len(calls) == 1
    return calls[0]


def test_app_notebook_hides_its_code_and_carries_the_options(folder, tmp_path):
    options = explore.check_options(folder, model="tiny_vgg", size=64, cache_dir=tmp_path / "c", seed=3)
    nb = nbformat.from_dict(explore.app_notebook(options))
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 1 and all(c.cell_type in ("code", "markdown") for c in nb.cells)
    cell = code[0]
    assert cell.metadata["jupyter"]["source_hidden"] is True and cell.outputs == []
    # the options are literals in the call, exactly what the checks resolved
    call = _app_call(cell.source)
    passed = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert passed == options.app_kwargs()
    assert passed["folder"] == str(folder.resolve()) and passed["model"] == "tiny_vgg" and passed["seed"] == 3
    # ... and the widget accepts every one of them
    from artlab.widgets.curator_app import CuratorApp

    inspect.signature(CuratorApp).bind(**passed)
    # the last line displays the app (Voilà shows outputs only)
    assert cell.source.strip().splitlines()[-1] == "app"
    assert nb.metadata.kernelspec.name == explore.KERNEL_NAME


def test_write_app_gives_a_kernel_on_this_python_and_a_template(folder, tmp_path):
    files = explore.write_app(explore.check_options(folder), tmp_path / "app")
    assert files.notebook.is_file() and files.notebook.name == "paintings · artlab explore.ipynb"
    spec = json.loads((files.jupyter_path / "kernels" / explore.KERNEL_NAME / "kernel.json").read_text())
    # the interpreter running this test, which imports this checkout's artlab (not whatever "python" is on PATH)
    assert spec["argv"][0] == sys.executable and "{connection_file}" in spec["argv"]
    template = files.jupyter_path / "voila" / "templates" / explore.TEMPLATE_NAME
    assert json.loads((template / "conf.json").read_text()) == {"base_template": "lab"}
    index = (template / "index.html.j2").read_text()
    assert "extends 'lab/index.html.j2'" in index and "cdn." not in index and "https://" not in index
    env = explore.voila_env(files, {"JUPYTER_PATH": "/elsewhere", "PATH": "/bin"})
    assert env["JUPYTER_PATH"].split(":") == [str(files.jupyter_path), "/elsewhere"]


def test_voila_command_line(folder, tmp_path):
    files = explore.write_app(explore.check_options(folder), tmp_path / "app")
    cmd = explore.voila_command(files, port=8123)
    # -P (Python 3.11+): the working directory is not put first on sys.path (tests/test_explore_security.py)
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    assert cmd[:4 + len(safe_path)] == [sys.executable, *safe_path, "-m", "voila", str(files.notebook)]
    for flag in ("--no-browser", "--Voila.ip=127.0.0.1", "--port=8123", "--Voila.port_retries=0",
                 "--Voila.auto_token=True", "--strip_sources=True", f"--template={explore.TEMPLATE_NAME}"):
        assert flag in cmd
    assert not any("allow-root" in c or "0.0.0.0" in c for c in cmd)
    # the token is not on it (every local user can read a command line): Voilà reads JUPYTER_TOKEN_FILE
    assert not any(c.startswith(("--token", "--Voila.token", "--IdentityProvider.token")) for c in cmd)


# ------------------------------------------------------------------------------------ serving


class _FakeServer:
    url = "http://127.0.0.1:1234/?token=abc"

    def __init__(self, interrupt: bool = False):
        self.stopped = False
        self.interrupt = interrupt
        self.process = self

    def wait(self):
        if self.interrupt:
            raise KeyboardInterrupt
        return 0

    def stop(self):
        self.stopped = True


@pytest.mark.parametrize("open_browser", [False, True])
def test_serve_prints_the_url_and_stops_the_server(folder, monkeypatch, capsys, open_browser):
    server = _FakeServer(interrupt=True)
    opened = []
    monkeypatch.setattr(explore.server, "start_server", lambda options, port=None: server)
    monkeypatch.setattr(explore.server.webbrowser, "open", opened.append)
    assert explore.serve(explore.check_options(folder), open_browser=open_browser) == 0
    out = capsys.readouterr().out
    assert server.url in out and "Ctrl+C" in out
    assert opened == ([server.url] if open_browser else [])
    assert server.stopped


def test_server_listens_on_loopback_with_a_token_and_stops_clean(folder, tmp_path):
    psutil = pytest.importorskip("psutil")
    options = explore.check_options(folder, model="tiny_vgg", size=64, cache_dir=tmp_path / "cache")
    server = explore.start_server(options, log=tmp_path / "voila.log", startup_timeout_s=90)
    try:
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=") and len(server.token) >= 32
        listening = [c for c in psutil.Process(server.process.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
        # without the token the page is refused (no kernel starts for it)
        no_redirect = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as refused:
            no_redirect.open(f"http://127.0.0.1:{server.port}/", timeout=30)
        assert refused.value.code in (302, 403)
        assert server.files.notebook.is_file()
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not server.files.directory.exists()
    assert "Traceback" not in (tmp_path / "voila.log").read_text()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# ------------------------------------------------------------------------------------ the widget

PCA = {"method": "pca"}  # no UMAP thread (numba compiles for ~20 s) left running after a test


def test_curator_app_shows_progress_then_the_map(folder, tmp_path):
    from artlab.widgets.curator_app import CuratorApp
    from artlab.widgets.embedding_map import EmbeddingMap

    app = CuratorApp(folder, model="tiny_vgg", size=64, batch_size=4, cache_dir=tmp_path / "cache",
                     csv_path=tmp_path / "sel.csv", map_options=PCA, start=False, warm_up=False)
    assert app.stage == "created" and app.body.children == ()
    events = []
    app.progress.observe(lambda ch: events.append(("progress", ch["new"])), names="value")
    app.body.observe(lambda ch: events.append(("map", len(ch["new"]))), names="children")

    app.load()
    assert app.stage == "loading" and len(app.collection) == 12
    assert "random weights" in app.badge.value and "#c0392b" in app.badge.value  # the red label, at once
    app.compute()
    assert app.stage == "embedding" and len(app.embeddings) == 12
    assert events == [("progress", 4), ("progress", 8), ("progress", 12)]
    assert app.embeddings.n_computed == 12 and "12 pictures: all looked at now" in app.status.value
    assert "12 computed" in app.details_html.value and "relu4_2" in app.details_html.value
    assert app.progress.layout.display != "none"

    app.show_map()
    assert app.stage == "ready" and events[-1] == ("map", 2)  # how to read it, and the map
    assert isinstance(app.map, EmbeddingMap) and app.body.children == (app.how_to_read, app.map)
    assert app.map.n == 12 and app.map.csv_file.value == str(tmp_path / "sel.csv")
    assert app.progress.layout.display == "none"
    app.map.select([0, 1, 2])  # what a box selection does
    assert len(app.map.selection) == 3

    # a second launch reads everything from the cache and gets the same vectors
    again = CuratorApp(folder, model="tiny_vgg", size=64, cache_dir=tmp_path / "cache", start=False, warm_up=False)
    again.load()
    again.compute()
    assert (again.embeddings.n_computed, again.embeddings.n_cached) == (0, 12)
    assert "all remembered from an earlier launch" in again.status.value
    np.testing.assert_array_equal(again.embeddings.vectors, app.embeddings.vectors)


def test_curator_app_speaks_plainly_and_keeps_the_technical_details_behind_a_disclosure(folder, tmp_path):
    import ipywidgets as W

    from artlab.widgets.curator_app import CuratorApp

    app = CuratorApp(folder, model="tiny_vgg", size=64, cache_dir=tmp_path / "cache", csv_path=tmp_path / "s.csv",
                     map_options=PCA, start=False, warm_up=False)
    app.run()
    assert app.stage == "ready" and app.body.children == (app.how_to_read, app.map)
    assert "How to read this map" in app.how_to_read.value and "Each dot is one picture" in app.how_to_read.value

    def main_view(widget) -> str:  # every text shown outside the Details disclosure
        if widget is app.details or not isinstance(widget, W.DOMWidget) or widget is app.map.figure:
            return ""
        own = widget.value if isinstance(getattr(widget, "value", None), str) else ""
        layout = getattr(widget, "layout", None)
        if isinstance(layout, W.Layout) and layout.display == "none":
            return ""
        return own + " ".join(main_view(c) for c in getattr(widget, "children", ()))

    shown = main_view(app) + app.map.figure.layout.title.text
    for technical in ("relu4_2", "mean pooling", " · mean", "cosine", "embedding space", str(tmp_path / "cache"),
                      "hub", ".pth"):
        assert technical not in shown, technical
    details = app.details_html.value
    assert app.details.selected_index is None  # closed until the curator opens it
    for technical in ("relu4_2", "mean pooling", "64 px", str(tmp_path / "cache"), "tiny_vgg"):
        assert technical in details, technical


def test_a_relaunch_opens_on_the_cached_layout_without_fitting_umap(folder, tmp_path, monkeypatch):
    """The second launch on a folder reads the embeddings and the UMAP layout from the cache: the map opens in
    its final layout at once, and no warm-up or fit is started (the first launch's fit is a stand-in here)."""
    from artlab.embed import maps
    from artlab.widgets.curator_app import CuratorApp

    calls = []
    fake = np.random.default_rng(0).normal(size=(12, 2))
    monkeypatch.setattr(maps, "warm_up_umap", lambda **kw: calls.append("warm-up"))
    monkeypatch.setattr(maps, "compile_umap", lambda: calls.append("compile") or False)
    monkeypatch.setattr(maps, "map_points", lambda method, *a, **k: calls.append(method) or fake)
    kw = {"model": "tiny_vgg", "size": 64, "batch_size": 4, "cache_dir": tmp_path / "cache",
          "csv_path": tmp_path / "s.csv"}
    first = CuratorApp(folder, start=False, **kw)
    first.run()
    assert first.map.wait(30) and first.map.shown_method == "umap"
    assert calls[:1] == ["warm-up"] and calls[-3:] == ["pca", "compile", "umap"]  # warm-up while embedding
    assert len(list((tmp_path / "cache" / "layouts").glob("*.npy"))) == 1  # kept next to the embeddings
    calls.clear()
    again = CuratorApp(folder, start=False, **kw)
    again.run()
    assert again.stage == "ready" and again.map.shown_method == "umap" and calls == []
    np.testing.assert_allclose(again.map.coords, fake, rtol=1e-6)
    assert "UMAP layout read from" in again.details_html.value


def test_label_chooses_the_folder_level_or_column_the_map_is_coloured_by(tmp_path, corpus, monkeypatch):
    """paintings/<artist>/x.png and photos/<place>/y.png: --label 2 colours by artist; every level is offered."""
    from artlab.widgets.curator_app import CuratorApp

    root = tmp_path / "nested"
    for k, item in enumerate([i for i in corpus.items if i.label in ("photo", "brush")][:8]):
        sub = ("paintings", f"artist{k % 2}") if item.label == "brush" else ("photos", f"place{k % 2}")
        (root / sub[0] / sub[1]).mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, root / sub[0] / sub[1] / item.path.name)
    calls = []
    monkeypatch.setattr(explore, "serve", lambda options, **kw: calls.append(options) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["explore", str(root), "--no-browser", "--model", "tiny_vgg", "--weights", "random",
                 "--label", "2"]) == 0
    options, = calls
    assert options.label == "2" and options.app_kwargs()["label"] == "2"
    app = CuratorApp(start=False, warm_up=False, map_options=PCA, cache_dir=tmp_path / "cache",
                     **{k: v for k, v in options.app_kwargs().items() if k not in ("cache_dir",)})
    app.run()
    m = app.map
    assert sorted(set(m.meta["label"])) == ["artist0", "artist1", "place0", "place1"]
    assert ("folder level 1", "folder_1") in m.color.options and ("folder level 2", "folder_2") in m.color.options
    assert m.figure.layout.legend.title.text == "label"
    m.color.value = "folder_1"
    assert m.figure.layout.legend.title.text == "folder level 1"
    assert sorted(t.name.split(" (")[0] for t in m.figure.data[3:] if t.visible) == ["paintings", "photos"]
    m.select(range(8))
    saved = pd.read_csv(m.export_csv(tmp_path / "s.csv"))
    assert {"label", "folder_1", "folder_2"} <= set(saved.columns)


@pytest.mark.parametrize(("label", "expected"), [("4", "deepest image .* 2 folder"), ("0", "label_level must be"),
                                                 ("artist", "'artist' is not a metadata column")])
def test_a_label_the_folder_does_not_have_is_refused_before_any_server(tmp_path, corpus, capsys, no_server, label,
                                                                       expected):
    root = tmp_path / "nested"
    for item in corpus.items[:3]:
        (root / "a" / item.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, root / "a" / item.label / item.path.name)
    assert main(["explore", str(root), "--label", label]) == 2
    assert re.search(expected, capsys.readouterr().err)


def test_curator_app_runs_in_a_thread(folder, tmp_path):
    from artlab.widgets.curator_app import CuratorApp

    app = CuratorApp(folder, model="tiny_vgg", size=64, cache_dir=tmp_path / "cache", map_options=PCA,
                     warm_up=False)
    app.join(timeout=240)
    assert app.error is None and app.stage == "ready" and app.map in app.body.children


def test_curator_app_cancel_keeps_what_was_computed(folder, tmp_path):
    from artlab.widgets.curator_app import CuratorApp

    app = CuratorApp(folder, model="tiny_vgg", size=64, batch_size=4, cache_dir=tmp_path / "cache",
                     start=False, warm_up=False)
    app.stop_button.click()  # what the page's Stop button does
    app.run()
    assert app.stage == "cancelled" and app.map is None and "stopped" in app.status.value
    assert app.stop_button.layout.display == "none"
    again = CuratorApp(folder, model="tiny_vgg", size=64, batch_size=4, cache_dir=tmp_path / "cache",
                       start=False, warm_up=False)
    again.compute()
    assert again.embeddings.n_cached == 4 and again.embeddings.n_computed == 8


def test_curator_app_shows_errors_in_the_page(tmp_path):
    from artlab.widgets.curator_app import CuratorApp

    (tmp_path / "empty").mkdir()
    app = CuratorApp(tmp_path / "empty", model="tiny_vgg", start=False, warm_up=False)
    app.run()
    assert app.stage == "failed" and app.error is not None
    assert "could not continue" in app.status.value and "no readable images" in app.status.value
    assert app.progress.bar_style == "danger"


def test_core_module_imports_no_widget_library():
    for path in Path(explore.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(ipywidgets|plotly)", path.read_text(), re.M), path
