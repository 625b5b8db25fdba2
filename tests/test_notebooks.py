"""Every notebook executes headless, top to bottom, at its default settings: what a student's Run All does.

Each run's time and the time to its first picture are recorded (``record_property``) and listed at the end
of the test session (tests/conftest.py); the lesson budget (3 min, first picture within ~20 s on a 2-core CPU)
is reported by ``benchmarks/bench_notebooks.py``, never asserted as a timing here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.notebook
@pytest.mark.timeout(1200)  # a lesson is meant to take 3 min at its defaults; a busy CI machine gets room
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_headless_at_its_defaults(path, tmp_path, record_property):
    timing = _tool("time_notebooks").time_notebook(path, quick=False, work=tmp_path, timeout=900)
    record_property("notebook_time", timing.line())
    assert timing.error is None, f"{path.name} fails: {timing.error}"
    nb = timing.notebook
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows at least one figure"
    unrendered = [o["data"]["text/plain"] for o in outputs if "data" in o and "image/png" not in o["data"]
                  and str(o["data"].get("text/plain", "")).startswith("<Figure size")]
    assert not unrendered, f"figures shown as text instead of images: {unrendered}"
    assert not list(path.parent.glob("*.pkl")), "a lesson wrote into notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: strip widget state before committing"


# --------------------------------------------------------------------------- numbers quoted in the texts
#
# Lessons 01 and 04 quote numbers from a real run (EfficientNet-Lite0, the sample corpus, the lessons'
# default settings). They live in QUOTED in tools/make_notebook_01.py and _04.py, are measured by
# tools/lesson_numbers.py, and are checked here against a fresh measurement: a change to the network, the
# corpus or the code that moves them fails a test, instead of leaving a text that describes figures that
# no longer look like that. Each check takes a few seconds on two CPU cores.


def _tool(name: str):
    """Import tools/<name>.py (the generators import notebook_writer from their own folder)."""
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "tools"))


@pytest.fixture(scope="module")
def numbers():
    return _tool("lesson_numbers")


@pytest.fixture(scope="module")
def lite0(numbers, one_torch_thread):
    return numbers.lite0()


def _check_quoted(lesson: str, measured: dict) -> None:
    generator = _tool(f"make_notebook_{lesson}")
    quoted, tolerance = generator.QUOTED, generator.TOLERANCE
    wrong = []
    for key, value in measured.items():
        if key not in quoted:
            continue
        if key in tolerance:
            if abs(value - quoted[key]) > tolerance[key]:
                wrong.append(f"{key}: text says {quoted[key]}, a real run gives {value:.4f} (± {tolerance[key]})")
        elif value != quoted[key]:
            wrong.append(f"{key}: text says {quoted[key]!r}, a real run gives {value!r}")
    assert not wrong, (f"numbers quoted in notebook {lesson} no longer match a real run; remeasure with "
                       "`python tools/lesson_numbers.py`, update QUOTED there (and the README), regenerate:\n  "
                       + "\n  ".join(wrong))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_what_their_generators_write(path):
    """The committed notebook is what tools/make_notebook_NN.py writes: its texts carry the generator's
    QUOTED numbers and the layer names of the networks' current defaults."""
    generator = _tool(f"make_notebook_{path.name[:2]}")
    committed = nbformat.read(path, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in generator.cells], \
        f"notebooks/{path.name} differs from tools/make_notebook_{path.name[:2]}.py: regenerate it"


def test_notebook_01_and_readme_state_the_quoted_confidences():
    q = _tool("make_notebook_01").QUOTED
    nb = nbformat.read(ROOT / "notebooks" / "01_how_cnns_see_art.ipynb", as_version=4)
    text = " ".join(" ".join(c.source for c in nb.cells if c.cell_type == "markdown").split())
    for phrase in (f"**{q['photo_confidence']:.2f}** for the photos",
                   f"**{q['painting_confidence']:.2f}** for the paintings",
                   f"**{q['photo_entropy']:.1f}** to **{q['painting_entropy']:.1f}** bits",
                   f"all paintings is {q['p_confidence']:.2f}", f"**{q['probe_best_layer']}**: {q['probe_best']:.2f}"):
        assert phrase in text, f"notebook 01 should say {phrase!r}"
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    sentence = (f"mean top-1 confidence is {q['photo_confidence']:.2f} for the six photographs and "
                f"{q['painting_confidence']:.2f} for their 30 painted versions")
    assert sentence in readme, f"README.md should say: {sentence}"


def test_readme_names_the_networks_current_layers():
    """The README's table of layer roles matches the registry (it is written by hand)."""
    from artlab.models import registered_backbones

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    lite, vgg = registered_backbones()["efficientnet_lite0"], registered_backbones()["vgg19"]
    for phrase in (f"Lite `{', '.join(lite.style_layers)}`", f"`content_layer` (`{vgg.content_layer}`; "
                   f"`{lite.content_layer}`)", f"Lite `{', '.join(lite.inspect_layers[:2])} … "
                   f"{', '.join(lite.inspect_layers[-2:])}`"):
        assert phrase in readme, f"README.md should say {phrase!r} (see artlab/models.py)"


def test_lesson_01_feature_map_and_prediction_numbers_match_a_real_run(numbers, lite0, corpus):
    _check_quoted("01", numbers.feature_map_numbers(lite0, corpus) | numbers.prediction_numbers(lite0, corpus))


@pytest.mark.slow  # 3-6 s on two cores
def test_lesson_01_domain_shift_numbers_match_a_real_run(numbers, lite0, corpus):
    _check_quoted("01", numbers.shift_numbers(lite0, corpus))


@pytest.mark.slow  # 3-6 s on two cores
def test_lesson_04_embedding_numbers_match_a_real_run(numbers, lite0, corpus):
    _check_quoted("04", numbers.embedding_claims(lite0, corpus, cache_dir=False))


@pytest.mark.slow  # 3-6 s on two cores
def test_lesson_01_numbers_on_the_shared_collection_match_a_real_run(numbers, lite0, shared_data):
    _check_quoted("01", numbers.shared_prediction_numbers(lite0, shared_data))


@pytest.mark.slow  # 3-6 s on two cores
def test_lesson_04_numbers_on_the_shared_collection_match_a_real_run(numbers, lite0, shared_data):
    _check_quoted("04", numbers.shared_probe_numbers(lite0, shared_data))


@pytest.mark.slow  # a few seconds: two style distances and the shuffle experiment at the lesson's size
def test_lesson_02_texts_say_what_a_real_run_shows(lite0, corpus):
    """Notebook 02's sections 2 and 4 describe their table and figure in words; the words must hold for the
    trained network at the lesson's default size (192 px), the run a reader sees."""
    from artlab.gram import ReceptiveFieldWarning, shuffle_experiment, style_distance

    size = 192
    nb = nbformat.read(ROOT / "notebooks" / "02_gram_matrices.ipynb", as_version=4)
    text = " ".join(" ".join(c.source for c in nb.cells if c.cell_type == "markdown").split())
    assert "between a quarter and two thirds of that between two unrelated photographs" in text
    assert "grows only as the tiles get small" in text and "starts far below that of any real pair" in text
    photo = corpus.subset(style="photo", subject="coffee").load(0, (size, size))
    painting = corpus.subset(style="pointillism", subject="coffee").load(0, (size, size))
    other = corpus.subset(style="photo", subject="rocket").load(0, (size, size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReceptiveFieldWarning)
        pair = style_distance(painting, photo, model=lite0)
        photos = style_distance(photo, other, model=lite0)
        shuffled = shuffle_experiment(lite0, photo, tiles=[size // 2, size // 4, size // 8])
    first, *rest = lite0.spec.style_layers
    # section 2: the first layer's Grams (colour) barely tell the painting from its photo; later ones do
    assert pair.per_layer[first] < 0.1 * photos.per_layer[first]
    for layer in rest:
        assert 0.25 <= pair.per_layer[layer] / photos.per_layer[layer] <= 2 / 3, layer
    # section 4: style starts far below the real pairs and grows as the tiles shrink; content jumps at once
    styles = [row["style_distance"] for row in shuffled]
    contents = [row["content_distance"] for row in shuffled]
    assert styles[0] < 0.1 * min(pair.total, photos.total)
    assert styles == sorted(styles) and styles[-1] > 5 * styles[0]
    assert contents[0] > 0.3 * max(contents)
