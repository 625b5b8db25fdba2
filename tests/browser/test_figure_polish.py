"""artlab's figures and image slots in a real JupyterLab, as a new user sees them.

One notebook shows the widgets with plotly figures and empty image slots (ActivationExplorer in
both looks, GramInspector, EmbeddingMap, ClassifierView, NeuronAtlas, ProjectionView,
DomainShiftView). Checked in the page, once every figure has drawn its toolbar: no figure offers
plotly's "Share chart…" (upload to Plotly's cloud) button or its logo link, and plotly.js was
given ``showSendToCloud: false``; the toolbar sits above every figure's title and subplot titles
(it used to cover them); no ``<img>`` in the widgets is broken (no shown ``<img>`` lacks a picture: empty slots
show a neutral placeholder, not the browser's broken-image icon); no button label is cut off. A screenshot of
each widget goes to the test's folder, or to ``$ARTLAB_SCREENSHOTS`` when that is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import lab

EXPLORERS = """\
import torch
torch.set_num_threads(1)
from artlab.models import backbone
from artlab.widgets import ActivationExplorer

vgg = backbone("tiny_vgg", weights=None)
g = torch.Generator().manual_seed(0)
painting, photo = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g) * 0.6
ActivationExplorer(vgg, painting, photo, layers=["relu1_1", "relu3_1"])"""

MOSAIC = """\
ActivationExplorer(vgg, {"painting": painting, "photo": photo}, layers=["relu1_1", "relu3_1"], look="mosaic", k=4)"""

GRAM = """\
from artlab.widgets import GramInspector
GramInspector(vgg, painting, photo, names=("painting", "photo"), block=8)  # its texture slot is empty"""

MAP = """\
import tempfile
from artlab.data import sample_corpus
from artlab.embed import embed, linear_probe
from artlab.widgets import ClassifierView, EmbeddingMap

corpus = sample_corpus(progress=False)
emb = embed(corpus, vgg, size=64, cache_dir=tempfile.mkdtemp(), progress=False)
emap = EmbeddingMap(corpus, emb, method="pca", k=3, height=420, csv_path=tempfile.mktemp(suffix=".csv"))
assert emap.wait(60)
emap  # its "Hovered" slot is empty until a point is hovered"""

CLASSIFIER = """\
ClassifierView(linear_probe(emb, folds=3), emb, corpus, thumbnails=emap.thumbs)"""

ATLAS = """\
from pathlib import Path
from artlab.data import Collection, Item
from artlab.images import save_image
from artlab.widgets import NeuronAtlas

root, items = Path(tempfile.mkdtemp()), []
for i in range(4):
    blocks = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=(48, 48))
    for domain, image in (("painting", blocks), ("photo", torch.rand(1, 3, 48, 48, generator=g))):
        items.append(Item(save_image(image, root / f"{domain}-{i}.png"), domain, {"domain": domain}))
NeuronAtlas(backbone("tiny_efficientnet_lite", weights=None), Collection(items, root), layer="stage3", size=48,
            vis_size=32, steps=8, examples=3, output_dir=str(root / "out"))  # visualisation, strip, CAM: empty"""

PROJECTION = """\
from artlab.stylegan import tiny_generator
from artlab.stylegan.generate import generate
from artlab.widgets import ProjectionView

G = tiny_generator(c_dim=4, resolution=32)
ProjectionView(G, generate(G, seeds=[21], c=2), steps=10, perceptual="lpips-vgg-random", n_w_samples=256,
               output_dir=tempfile.mkdtemp())  # reconstruction and walk: empty"""

SHIFT = """\
import warnings
from artlab.activations import SmallSampleWarning
from artlab.widgets import DomainShiftView

warnings.simplefilter("ignore", SmallSampleWarning)  # 6 images per set, on purpose (speed)
DomainShiftView(torch.rand(6, 3, 48, 48, generator=g), torch.rand(6, 3, 48, 48, generator=g) * 0.5, vgg,
                layers=["relu1_1", "relu3_1"], size=48, n_boot=10, n_perm=20, progress=False,
                names=("bright", "dim"), channels=2, examples=2)"""

CELLS = {"activation_explorer": EXPLORERS, "activation_mosaic": MOSAIC, "gram_inspector": GRAM,
         "embedding_map": MAP, "classifier_view": CLASSIFIER, "neuron_atlas": ATLAS,
         "projection_view": PROJECTION, "domain_shift": SHIFT}
#: plotly figures the cells above show: explorer 2, gram 2, map 1, classifier 1, atlas 1, projection 1, shift 2
FIGURES = 10

#: JS: true once ``n`` plotly figures have drawn (a modebar with buttons, a plotly.js context)
DRAWN = """([panel, n]) => {
  const plots = document.querySelectorAll(`${panel} .js-plotly-plot`);
  return plots.length >= n && Array.from(plots).every(gd => gd._context && gd._fullLayout
    && gd.querySelector('.modebar .modebar-btn'));
}"""

#: JS: what each figure offers and where its toolbar and titles are
FIGURE_FACTS = """(panel) => Array.from(document.querySelectorAll(`${panel} .js-plotly-plot`)).map(gd => {
  const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const buttons = Array.from(gd.querySelectorAll('.modebar-btn'));
  const titles = Array.from(gd.querySelectorAll('.gtitle, .annotation-text'))
    .filter(t => t.textContent.trim()).map(t => ({text: t.textContent.trim(), box: box(t)}));
  return {
    title: (gd.querySelector('.gtitle') || {}).textContent || '',
    sendToCloud: gd._context.showSendToCloud, serverURL: gd._context.plotlyServerURL,
    buttons: buttons.map(b => `${b.getAttribute('data-title') || ''}|${b.getAttribute('data-attr') || ''}|`
                              + `${b.getAttribute('data-val') || ''}`),
    logo: gd.querySelectorAll('.modebar a[href], .modebar .plotlyjsicon').length,
    modebar: box(gd.querySelector('.modebar')), titles: titles,
  };
})"""

#: JS: every <img> in the notebook's widget outputs, once all of them finished loading
IMAGES = """(panel) => Array.from(document.querySelectorAll(`${panel} .jp-OutputArea-output img`)).map(img => ({
  src: (img.getAttribute('src') || '').slice(0, 40), complete: img.complete, natural: img.naturalWidth,
  visible: !!(img.offsetParent && img.getBoundingClientRect().width > 0),
  cls: img.className, width: Math.round(img.getBoundingClientRect().width)}))"""

#: JS: captions of visible buttons whose label does not fit (ipywidgets ends it with "…")
CUT_BUTTONS = """(panel) => Array.from(document.querySelectorAll(`${panel} button.jupyter-button`))
  .filter(b => b.offsetParent && b.scrollWidth > b.clientWidth + 1)
  .map(b => `${b.textContent.trim()} (${b.scrollWidth} > ${b.clientWidth} px)`)"""


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _shots() -> Path | None:
    folder = os.environ.get("ARTLAB_SCREENSHOTS", "").strip()
    return Path(folder) if folder else None


@pytest.mark.timeout(600)
def test_figures_offer_no_cloud_button_and_image_slots_are_never_broken(jupyter_server, page, console_errors,
                                                                        tmp_path):
    page.set_viewport_size({"width": 1400, "height": 2000})  # tall: a widget's screenshot shows all of it
    lab.open_code_notebook(page, jupyter_server, list(CELLS.values()), "figure_polish.ipynb",
                           run_timeout_s=420, widgets=len(CELLS))
    page.wait_for_function(DRAWN, arg=[lab.NOTEBOOK_PANEL, FIGURES], timeout=120_000)
    # the titles the widgets set after drawing (a title written later goes through the same layout)
    lab.wait_svg_text(page, ".gtitle", r"relu1_1 · painting \(left\) \| photo \(right\)")
    lab.wait_svg_text(page, ".gtitle", r"relu1_1 · gatys · channels")
    lab.wait_svg_text(page, ".gtitle", r"linear probe confusion")

    facts = page.evaluate(FIGURE_FACTS, lab.NOTEBOOK_PANEL)
    assert len(facts) >= FIGURES
    for fig in facts:
        where = f"figure {fig['title']!r}"
        assert fig["sendToCloud"] is False and fig["serverURL"] == "", f"{where}: plotly.js may upload it"
        cloud = [b for b in fig["buttons"] if re.search(r"share|cloud|chart studio|edit in", b, re.I)]
        assert cloud == [], f"{where} offers {cloud}"
        assert any("toImage" in b or "Download" in b for b in fig["buttons"]), f"{where}: no toolbar? {fig}"
        assert fig["logo"] == 0, f"{where} links to plotly's site"
        covered = [t["text"] for t in fig["titles"] if _overlaps(t["box"], fig["modebar"])]
        assert covered == [], f"{where}: the toolbar {fig['modebar']} covers {covered}"

    # images: wait until every <img> finished loading (decoded or failed), then none may be broken
    page.wait_for_function(f"(panel) => ({IMAGES})(panel).every(i => i.complete)", arg=lab.NOTEBOOK_PANEL,
                           timeout=60_000)
    images = page.evaluate(IMAGES, lab.NOTEBOOK_PANEL)
    # what a user sees: a shown <img> with no source, or one whose source is no picture (a hidden one,
    # display:none until it has a picture, draws nothing)
    broken = [i for i in images if i["visible"] and (not i["src"] or i["natural"] == 0)]
    assert broken == [], f"broken images: {broken}"
    empty_slots = [i for i in images if "artlab-empty" in i["cls"]]
    assert len(empty_slots) >= 5, f"expected the empty slots (texture, visualisation, strip, CAM, reconstruction, " \
                                  f"walk) to show placeholders; saw {images}"

    assert page.evaluate(CUT_BUTTONS, lab.NOTEBOOK_PANEL) == []

    # a screenshot of each widget, its toolbar shown (the pointer over its first figure)
    folder = _shots() or tmp_path
    cells = page.locator(f"{lab.NOTEBOOK_PANEL} .jp-CodeCell")
    assert cells.count() == len(CELLS)
    for i, name in enumerate(CELLS):
        output = cells.nth(i).locator(".jp-OutputArea-output:has(.jupyter-widgets)").last  # the cell's widget
        output.scroll_into_view_if_needed()
        plots = output.locator(".js-plotly-plot")
        if plots.count():
            box = plots.first.bounding_box()
            page.mouse.move(box["x"] + box["width"] - 60, box["y"] + 45)  # near the toolbar, off the data
        output.screenshot(path=str(folder / f"{name}.png"))
    print(f"\nscreenshots in {folder}")
    assert console_errors == []
