"""``artlab explore`` in a real browser: the Voilà page of a small folder shows the
embedding progress, then the map; a box selection fills the thumbnail grid, and
Export CSV writes it, refusing a path outside the folder chosen for it. On a nested
folder (paintings/<artist>/…, photos/<kind>/…) "colour by" offers every folder level and
colours by the artists; the "Hovered" slot never shows a broken image; a second launch
opens straight on the cached UMAP layout.

The server is started by :func:`artlab.explore.start_server` (what the command
runs) with private Jupyter dirs and an embedding cache under ``tmp_path``, and is
stopped at the end with its kernels. The page is opened in headless chromium
(no JupyterLab involved), with console errors collected as in the other browser
tests.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

import lab
from artlab import explore

#: the page's widget texts (see artlab/widgets/curator_app.py and artlab/widgets/embedding_map.py)
RED_LABEL = "random weights, not ImageNet features"
LABEL = "efficientnet_lite0 · ImageNet"

_PLOT_STATE_JS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout) return null;
  const images = gd._fullData[0];  // the map's points: the first trace
  const canvases = Array.from(gd.querySelectorAll('canvas')).filter(c => c.width > 0 && c.height > 0);
  const box = gd.querySelector('.nsewdrag');
  const title = gd._fullLayout.title ? gd._fullLayout.title.text || '' : '';
  return {points: images ? images._length : 0, canvases: canvases.length, title: title,
          dragbox: box ? box.getBoundingClientRect().toJSON() : null};
}"""

_PROGRESS_JS = """() => {
  const bar = document.querySelector('.artlab-curator-app .widget-hprogress');
  const status = document.querySelector('.artlab-curator-app .artlab-status');
  return {bar: !!bar && bar.offsetParent !== null, status: status ? status.innerText : null};
}"""


@pytest.fixture()
def folder(tmp_path, corpus):
    """12 images of the sample corpus in two class subfolders."""
    root = tmp_path / "collection"
    for item in [i for i in corpus.items if i.label in ("photo", "kmeans")][:12]:
        target = root / item.label / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, target)
    return root


#: A ``sitecustomize`` put on the server's PYTHONPATH (the user's environment, outside the folder, which
#: ``artlab explore`` keeps): in the app's kernel it holds the embedding after its first progress report
#: until the file ``$ARTLAB_TEST_HOLD_EMBED`` exists, so the test sees the progress state on any machine,
#: however fast, and then lets the run go on (a state created, not caught in passing).
HOLD_EMBEDDING = """\
import os
if os.environ.get("JPY_PARENT_PID") and os.environ.get("ARTLAB_TEST_HOLD_EMBED"):
    import time
    from pathlib import Path

    import artlab.embed as _embed_module

    _release, _embed = Path(os.environ["ARTLAB_TEST_HOLD_EMBED"]), _embed_module.embed

    def embed(*args, on_progress=None, **kwargs):
        def held(stage, done, total):
            if on_progress is not None:
                on_progress(stage, done, total)
            deadline = time.monotonic() + 300
            while not _release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return _embed(*args, on_progress=held, **kwargs)

    _embed_module.embed = embed
"""


def _start(folder: Path, tmp_path: Path, hold: bool = True, **options) -> explore.ExploreServer:
    """``artlab explore FOLDER --size 64`` (model "best": the bundled ImageNet EfficientNet-Lite0, since the
    server's torch hub cache is private and empty, so no VGG-19 file is found there); ``hold``: with the
    HOLD_EMBEDDING hook."""
    options = explore.check_options(folder, size=64, cache_dir=tmp_path / "embeddings",
                                    csv_path=tmp_path / "selection.csv", **options)
    # the user's Jupyter config and torch hub cache stay out of it
    server_env = {"TORCH_HOME": str(tmp_path / "torch_home")}
    if hold:
        hook = tmp_path / "hold-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(HOLD_EMBEDDING)
        server_env |= {"ARTLAB_TEST_HOLD_EMBED": str(tmp_path / "release"),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    env = lab.jupyter_server_env(tmp_path / "jupyter", server_env)
    server = explore.start_server(options, env=env, log=tmp_path / "voila.log", startup_timeout_s=120)
    server.kernels = []  # the test adds the kernel processes it sees
    return server


def _stop(server: explore.ExploreServer) -> None:
    server.stop()
    assert server.process.poll() is not None, "voila still running"
    assert not [k for k in server.kernels if k.is_running()], "kernel processes left behind"
    assert not server.files.directory.exists()


@pytest.fixture()
def explore_server(folder, tmp_path):
    pytest.importorskip("psutil")
    server = _start(folder, tmp_path)
    try:
        yield server
    finally:
        _stop(server)


@pytest.fixture()
def app_page(browser, explore_server, console_errors, request, tmp_path):
    with lab.browser_page(browser, console_errors, request, tmp_path, lambda: explore_server.log_tail(40)) as page:
        yield page


def _poll(probe, what: str, timeout_s: float):
    """Call ``probe()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise lab.LabTimeout(f"{what} not seen after {timeout_s:.0f}s")
        time.sleep(0.1)


def test_explore_page_embeds_then_maps_and_selection_fills_the_grid(app_page, explore_server, folder,
                                                                   console_errors, tmp_path):
    import psutil

    page = app_page
    t0 = time.monotonic()
    # Voilà runs the app notebook when the page is requested; the app then works in a thread.
    page.goto(explore_server.url, wait_until="domcontentloaded", timeout=180_000)
    print(f"[timing] page loaded after {time.monotonic() - t0:.1f}s")
    assert page.title() == "collection · artlab explore"
    explore_server.kernels += psutil.Process(explore_server.process.pid).children(recursive=True)
    assert explore_server.kernels, "no kernel runs under the voila server"

    # 1. progress first: the bar and a status line, no map yet (the embedding is held at its first
    # progress report until the test has seen this; see HOLD_EMBEDDING)
    def progress():
        state = page.evaluate(_PROGRESS_JS)
        held = state["bar"] and re.search(r"looking at the pictures: \d+ / 12", state["status"] or "")
        return state if held else None

    first = _poll(progress, "the progress bar at 'looking at the pictures: k / 12'", 120)
    assert page.evaluate(_PLOT_STATE_JS) is None, "a map was already there"
    print(f"[timing] progress shown after {time.monotonic() - t0:.1f}s: {first['status']!r}")
    (tmp_path / "release").touch()  # let the held embedding go on

    # 2. then the map: a WebGL scatter with one point per image, the bar gone. It opens on PCA and
    # moves its points to UMAP when the background fit is done; a box dragged while they move is
    # lost with the redraw, so the test waits for the final layout (the title says UMAP, no "until")
    def map_ready():
        plot = page.evaluate(_PLOT_STATE_JS)
        return plot if plot and plot["points"] == 12 and plot["canvases"] and plot["dragbox"] else None

    plot = _poll(map_ready, "the scatter with 12 points", 180)
    print(f"[timing] map shown after {time.monotonic() - t0:.1f}s: {plot['title']!r}")

    def final_layout():
        plot = page.evaluate(_PLOT_STATE_JS)
        settled = plot and " UMAP " in plot["title"] and "until" not in plot["title"]
        return plot if settled and plot["points"] == 12 and plot["dragbox"] else None

    plot = _poll(final_layout, "the map in its UMAP layout", 180)
    print(f"[timing] UMAP layout after {time.monotonic() - t0:.1f}s")
    final = page.evaluate(_PROGRESS_JS)
    assert not final["bar"] and "12 pictures: all looked at now" in final["status"], final

    # the model label is visible and not red: a trained network, with a note on how to get VGG-19
    labels = page.locator(f"span:has-text('{LABEL}'):visible")
    assert labels.count() >= 1
    assert labels.first.evaluate("e => getComputedStyle(e).backgroundColor") != "rgb(192, 57, 43)"
    assert page.locator(f"text={RED_LABEL}").count() == 0
    how = page.locator("text=/artlab weights download vgg19/")
    assert how.count() >= 1 and not how.first.is_visible()  # in the closed Details (opened at the end)
    # no code anywhere in the page (Voilà strips the cell's source)
    text = page.locator("body").inner_text()
    assert "CuratorApp(" not in text and "from artlab" not in text
    assert page.locator(".jp-InputArea:visible, .jp-InputArea-editor:visible").count() == 0

    # 3. a box selection over the whole plot area, dragged as a user does
    box = plot["dragbox"]
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
    page.mouse.up()
    loaded_thumbs = """() => Array.from(document.querySelectorAll('.artlab-thumb img'))
                         .filter(img => img.complete && img.naturalWidth > 0).length"""
    _poll(lambda: page.evaluate(loaded_thumbs) == 12, "12 thumbnails in the selection grid", 60)
    print(f"[timing] selection grid filled after {time.monotonic() - t0:.1f}s")
    names = page.locator(".artlab-thumb").all_inner_texts()
    # the grid captions each image as folder/file (file names repeat across class folders)
    expected = sorted(f"{p.parent.name}/{p.name}" for p in folder.rglob("*.png"))
    assert sorted(n.strip() for n in names) == expected

    # 4. Export CSV: the file name box is editable in the page, but a path outside the folder the
    # user chose (that of --csv: tmp_path) is refused with a message there; a name in it is written
    csv_box = page.locator(".artlab-curator-app .widget-text", has=page.locator("label", has_text="CSV file"))
    export = page.locator(".artlab-curator-app button", has_text="Export CSV")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    csv_box.locator("input").fill(f"../{outside.name}")
    export.click()
    _poll(lambda: page.locator("text=/export refused: .* is outside/").count(), "the refusal in the page", 30)
    assert not outside.exists()
    csv_box.locator("input").fill("picked.csv")
    export.click()
    _poll(lambda: page.locator("text=/saved 12 rows to/").count(), "the export's confirmation", 30)
    assert len((tmp_path / "picked.csv").read_text().splitlines()) == 13  # a header and the 12 rows

    # which network was chosen and how to get VGG-19: in the Details disclosure, shown when opened
    page.locator(".artlab-details .jupyter-widget-Collapse-header").click()
    how.first.wait_for(state="visible", timeout=10_000)
    how.first.scroll_into_view_if_needed()
    page.screenshot(path=str(_shots(tmp_path) / "curator_details.png"))

    assert console_errors == []


# ------------------------------------------------------------------------------------ a nested folder

#: the nested folder's painting "artists" (sample-corpus styles renamed) and photo kinds
ARTISTS = {"brush": "van_gogh", "pointillism": "seurat", "kmeans": "matisse"}

#: visible <img> elements that show nothing (a broken-image icon): no source, or loaded with naturalWidth 0
_BROKEN_IMAGES_JS = """() => Array.from(document.querySelectorAll('.artlab-curator-app img')).filter(img => {
  const box = img.getBoundingClientRect();
  const visible = img.offsetParent !== null && box.width > 0 && box.height > 0;
  return visible && (!img.getAttribute('src') || (img.complete && img.naturalWidth === 0));
}).map(img => (img.getAttribute('src') || '(no src)').slice(0, 40))"""

_POINT_PIXEL_JS = """i => { const gd = document.querySelector('.js-plotly-plot'); const L = gd._fullLayout;
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return [box.left + L.xaxis.l2p(gd._fullData[0].x[i]), box.top + L.yaxis.l2p(gd._fullData[0].y[i])]; }"""

_LEGEND_JS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  return gd ? Array.from(gd.querySelectorAll('.legend .legendtext')).map(t => t.textContent) : [];
}"""


@pytest.fixture()
def nested_folder(tmp_path, corpus):
    """paintings/<artist>/x.png (three artists) and photos/<kind>/y.png, plus one photo straight in photos/
    (a missing second level): 13 images."""
    root = tmp_path / "nested"
    items = [i for style in ARTISTS for i in corpus.subset(style=style).items[:3]] + corpus.subset(style="photo").items
    for k, item in enumerate(items[:13]):
        if item.label in ARTISTS:
            target = root / "paintings" / ARTISTS[item.label] / item.path.name
        else:
            target = root / "photos" / ("" if k == 12 else "portraits" if k % 2 else "landscapes") / item.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, target)
    return root


def _shots(tmp_path: Path) -> Path:
    """Where screenshots go: $ARTLAB_TEST_SHOTS when set (to look at them), else the test's tmp_path."""
    return Path(os.environ.get("ARTLAB_TEST_SHOTS") or tmp_path)


def _wait_for_umap_map(page, n: int, t0: float, what: str) -> tuple[dict, float]:
    """Poll until the map shows n points in its UMAP layout; (plot state, seconds since t0); also whether a
    layout other than UMAP was ever seen on the way (``plot["saw_other"]``)."""
    seen_other = False
    deadline = time.monotonic() + 240
    while True:
        plot = page.evaluate(_PLOT_STATE_JS)
        if plot and plot["points"] == n and plot["canvases"]:
            if " UMAP " in plot["title"] and "until" not in plot["title"] and plot["dragbox"]:
                plot["saw_other"] = seen_other
                return plot, time.monotonic() - t0
            seen_other = True
        if time.monotonic() > deadline:
            raise lab.LabTimeout(f"{what}: the UMAP map of {n} points not seen")
        time.sleep(0.05)


def test_nested_folder_colours_by_a_chosen_level_and_a_relaunch_opens_on_the_cached_map(
        browser, nested_folder, tmp_path, console_errors, request):
    import psutil

    shots = _shots(tmp_path)
    timings = {}
    for launch in ("first", "second"):
        server = _start(nested_folder, tmp_path, hold=False)
        try:
            with lab.browser_page(browser, console_errors, request, tmp_path,
                                  lambda s=server: s.log_tail(40)) as page:
                t0 = time.monotonic()
                page.goto(server.url, wait_until="domcontentloaded", timeout=180_000)
                server.kernels += psutil.Process(server.process.pid).children(recursive=True)
                plot, seconds = _wait_for_umap_map(page, 13, t0, launch)
                timings[launch] = seconds
                print(f"[timing] {launch} launch: the UMAP map on screen {seconds:.1f}s after the page was "
                      f"requested (a PCA layout shown first: {plot['saw_other']})")
                # the Hovered slot shows no broken image, before anything is hovered (nor anywhere else)
                assert page.evaluate(_BROKEN_IMAGES_JS) == []
                assert page.locator(".artlab-preview-placeholder").first.is_visible()
                assert page.locator("text=How to read this map").first.is_visible()
                if launch == "second":
                    # the layout came from the cache: no PCA stand-in, no compiling (checked via the status)
                    assert not plot["saw_other"], "the second launch waited for UMAP"
                    page.screenshot(path=str(shots / "curator_relaunch.png"), full_page=True)
                    continue
                page.screenshot(path=str(shots / "curator_nested_level1.png"), full_page=True)
                # "colour by" offers every folder level; choosing level 2 colours by the artists
                colour = page.locator(".artlab-curator-app .widget-dropdown",
                                      has=page.locator("label", has_text="colour by")).locator("select")
                # (ipywidgets writes an option's spaces as no-break spaces)
                options = [o.replace("\xa0", " ") for o in colour.evaluate("s => Array.from(s.options).map(o => o.text)")]
                assert {"label", "folder level 1", "folder level 2"} <= set(options), options
                colour.select_option(index=options.index("folder level 2"))

                legend = []

                def artists_in_legend(legend=legend):
                    legend[:] = page.evaluate(_LEGEND_JS)
                    names = {t.replace("\xa0", " ").split(" (")[0] for t in legend}
                    return names if set(ARTISTS.values()) <= names else None

                try:
                    names = _poll(artists_in_legend, "the artists' names in the legend", 30)
                except lab.LabTimeout:
                    print(f"[legend] {legend}; select: {colour.evaluate('s => s.value')}")
                    raise
                assert {"landscapes", "portraits", "(none)"} <= names, names  # the photos' level 2, one missing
                # hover a point: its picture replaces the neutral box, and it has loaded
                page.mouse.move(*page.evaluate(_POINT_PIXEL_JS, 0))
                page.wait_for_function("() => { const i = document.querySelector('.artlab-curator-app "
                                       "img.widget-image'); return i && i.offsetParent !== null && i.complete "
                                       "&& i.naturalWidth > 0; }", timeout=30_000)
                assert not page.locator(".artlab-preview-placeholder").first.is_visible()
                # click it: the pictures most alike, scored in words
                page.mouse.down()
                page.mouse.up()
                _poll(lambda: page.locator("text=/closer than \\d+% of the others/").count(),
                      "the neighbours with their scores", 30)
                assert page.evaluate(_BROKEN_IMAGES_JS) == []
                page.screenshot(path=str(shots / "curator_nested_level2.png"), full_page=True)
                page.locator("text=Most alike").first.scroll_into_view_if_needed()
                page.screenshot(path=str(shots / "curator_neighbours.png"))
        finally:
            _stop(server)
    print(f"[timing] first launch {timings['first']:.1f}s, second {timings['second']:.1f}s")
    assert console_errors == []
