"""Every code example in README.md runs.

The ``python`` blocks run in order in one namespace (each continues from the ones above it, as a
reader would type them), in a sandbox that has the files they name: ``monet.jpg``, ``photo.jpg``,
``~/data/paintings/<artist>/…`` (``~`` is a temporary home), a clip, a panorama and a conditional
StyleGAN2-ADA network pickle in the official layout. Only two things are scaled down so the test takes
seconds: every ``size=`` becomes 64 px and every ``steps=`` 3 steps (the fewest a three-scale transfer takes). Everything else (the calls, their
arguments and the order) runs as written, so an example that raises for a reader fails here.

The ``bash`` blocks' ``artlab …`` command lines are parsed by the real parser (nothing is started).
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import matplotlib
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
#: what the test scales down, and to what (sizes in pixels, optimisation steps)
SCALED = {r"\bsize=\d+": "size=64", r"\bsteps=\d+": "steps=3"}


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    return [body for lang, body in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == language]


def scaled(code: str) -> str:
    for pattern, replacement in SCALED.items():
        code = re.sub(pattern, replacement, code)
    return code


def test_the_readme_has_the_examples_this_test_runs():
    code = blocks("python")
    assert len(code) >= 8, "README.md lost its python examples (or this test's block pattern no longer matches)"
    assert all(re.search(p, "\n".join(code)) for p in SCALED), "the README quotes no size=/steps= any more"


def test_every_artlab_command_line_in_the_readme_parses():
    from artlab.cli import build_parser

    lines = [line.split("#")[0].strip() for body in blocks("bash") for line in body.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if re.match(r"(\.venv/bin/)?artlab\s", line)]
    assert len(commands) >= 6
    for argv in commands:
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse exits on an error after printing it
            pytest.fail(f"README command `artlab {' '.join(argv)}` does not parse (exit {exc.code})")


def _write_sandbox(home: Path, work: Path, corpus) -> None:
    """The files the README's examples name, made from the sample corpus (64 px is plenty)."""
    from artlab.images import save_image
    from artlab.video import save_mp4
    from stylegan_pickles import generator_tree, tiny_discriminator, write_network_pickle
    from artlab.stylegan import tiny_generator

    paintings = corpus.subset(domain="painting")
    photos = corpus.subset(domain="photo")
    for i in range(6):  # two "artists", three paintings each
        artist = ("van_gogh", "monet")[i % 2]
        name = "starry.jpg" if i == 0 else f"{i}.jpg"
        save_image(paintings.load(i, (64, 64)), home / "data" / "paintings" / artist / name)
    for i in range(len(photos)):
        save_image(photos.load(i, (64, 64)), home / "data" / "photos" / f"{i}.jpg")
    save_image(paintings.load(0, (64, 64)), work / "monet.jpg")
    save_image(photos.load(0, (64, 64)), work / "photo.jpg")
    save_image(paintings.load(1, (64, 64)), work / "van_gogh.jpg")
    save_image(paintings.load(2, (64, 64)), work / "matisse.jpg")
    save_image(photos.load(1, (64, 128)), work / "pano_360.jpg")
    frames = torch.stack([photos.load(2, (48, 64))[0].roll(4 * t, dims=-1) for t in range(3)])
    save_mp4(frames, work / "clip.mp4", fps=6)
    G = tiny_generator(c_dim=4, resolution=32)
    tree = generator_tree(G.state_dict(), G.init_kwargs, G=G)
    write_network_pickle(work / "network-snapshot-000800.pkl",
                         {"G": tree, "D": tiny_discriminator(), "G_ema": tree, "augment_pipe": None})


@pytest.mark.slow  # about a minute on two cores: every example of the README, scaled to 64 px
def test_every_python_example_in_the_readme_runs(corpus, tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir(parents=True)
    _write_sandbox(home, work, corpus)
    hub = Path(torch.hub.get_dir())
    monkeypatch.setenv("HOME", str(home))          # "~/data/…" and artlab's caches live in the sandbox
    monkeypatch.setenv("TORCH_HOME", str(hub.parent))  # … but the hub cache is the machine's (read only here)
    monkeypatch.setenv("ARTLAB_PROGRESS", "0")
    monkeypatch.chdir(work)
    matplotlib.use("Agg")
    from ipywidgets.widgets.widget import _instances as live_widgets

    before = set(live_widgets)
    namespace: dict = {"__name__": "readme"}
    try:
        for number, body in enumerate(blocks("python"), start=1):
            code = scaled(body)
            start = time.perf_counter()
            try:
                exec(compile(code, f"README.md python block {number}", "exec"), namespace)
            except Exception as exc:  # noqa: BLE001 - the message names the block and shows it
                raise AssertionError(f"README python block {number} fails ({type(exc).__name__}: {exc}):\n"
                                     f"{code}") from exc
            print(f"README python block {number}: {time.perf_counter() - start:.1f} s")
    finally:
        for key in set(live_widgets) - before:  # the examples' widgets (background threads stop with them)
            if key in live_widgets:
                live_widgets[key].close()
        import matplotlib.pyplot as plt

        plt.close("all")
    # the examples produced what they say (a few checks; the API's own tests check the values)
    assert namespace["model"].pretrained, "best_backbone() should give a trained network"
    assert namespace["result"].shape[1] == 3 and namespace["pano"].shape[-1] > namespace["pano"].shape[-2]
    assert (work / "clip_styled.mp4").stat().st_size > 0 and (work / "walk.mp4").stat().st_size > 0
