"""Figures of "what a layer sees" (artlab.explain) on real paintings and photographs, with a real network.

    .venv/bin/python tools/make_explain_figures.py [--paintings DIR] [--photos DIR] [--out docs]

Defaults: ../shared/data/paintings (74 paintings by six artists) and ../shared/data/photos/landscapes
(30 photographs), and ``best_backbone()`` (the bundled ImageNet EfficientNet-Lite0 offline). Writes:

* ``explain_inversion.jpg``: one painting and one photograph reconstructed from each depth;
* ``explain_channels.jpg``: the three channels of ``--layer`` whose activation differs most between the
  paintings and the photographs (Cohen's d over the whole folders), each as its feature visualisation beside
  its top four patches among the paintings and among the photographs;
* ``explain_cams.jpg``: Grad-CAM, Grad-CAM++ and LayerCAM for the top-1 class of a painting and a photo;
* ``explain_dream.jpg``: the painting before and after DeepDream at ``--layer``.

Prints the numbers each figure rests on (channel effects and per-domain means, top-1 classes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from make_readme_figures import to_jpeg  # noqa: E402

from artlab.data import Collection  # noqa: E402
from artlab.explain import (  # noqa: E402
    channel_index,
    deepdream,
    inversion_strip,
    plot_cams,
    plot_inversion_strip,
    visualize_channel,
)
from artlab.figures import ArtlabFigure, save_figure, stamp_model  # noqa: E402
from artlab.images import load_image, to_numpy_hwc  # noqa: E402
from artlab.models import best_backbone  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _show(ax, image, title: str = "") -> None:
    ax.imshow(to_numpy_hwc(image)[0])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paintings", type=Path, default=SHARED / "paintings")
    parser.add_argument("--photos", type=Path, default=SHARED / "photos" / "landscapes")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--layer", default="stage5", help="layer for the channels and the dream (default stage5)")
    parser.add_argument("--size", type=int, default=128, help="side of the optimised images (default 128)")
    args = parser.parse_args(argv)
    if not args.paintings.is_dir() or not args.photos.is_dir():
        parser.error(f"need folders of paintings and photos ({args.paintings}, {args.photos})")
    model = best_backbone()
    print(f"network: {model.label}")
    paintings, photos = Collection.from_folder(args.paintings), Collection.from_folder(args.photos)
    painting_path = next(p for p in paintings.paths if "van_gogh" in str(p))
    painting, photo = load_image(painting_path, args.size), load_image(photos.paths[0], args.size)
    images = {"painting": painting, "photo": photo}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="artlab-explain-"))

    t0 = time.perf_counter()
    strips = {name: inversion_strip(model, image, steps=150, progress=True) for name, image in images.items()}
    fig = plot_inversion_strip(images, strips, model)
    to_jpeg(save_figure(fig, tmp / "inversion.png"), args.out / "explain_inversion.jpg")
    print(f"inversion strips: {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    sources = list(paintings.paths) + list(photos.paths)
    domains = ["painting"] * len(paintings) + ["photo"] * len(photos)
    index = channel_index(model, sources, args.layer, size=224, domains=domains, progress=True)
    ranking = index.rank_channels_by_domain("painting", "photo")
    print(ranking.head(6).to_string())
    chosen = [int(c) for c in ranking.index[:3]]  # the index is the channel
    fig = ArtlabFigure(figsize=(13, 2.0 * len(chosen) + 0.6))
    grid = fig.add_gridspec(len(chosen), 9, wspace=0.05, hspace=0.3)
    for r, ch in enumerate(chosen):
        vis = visualize_channel(model, args.layer, ch, size=args.size, steps=256)
        row = ranking.loc[ch]
        _show(fig.add_subplot(grid[r, 0]), vis, f"{args.layer} #{ch}  d={row['effect']:+.2f}")
        for d, domain in enumerate(("painting", "photo")):
            crops = index.crops(index.top_examples(ch, k=4, domain=domain), size=96)
            for j in range(crops.shape[0]):
                _show(fig.add_subplot(grid[r, 1 + 4 * d + j]), crops[j : j + 1], f"{domain}s" if j == 0 else "")
    fig.suptitle(f"channels of {args.layer} that respond most differently to paintings and photographs", fontsize=10)
    stamp_model(fig, model)
    to_jpeg(save_figure(fig, tmp / "channels.png"), args.out / "explain_channels.jpg")
    print(f"channels: {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    fig = plot_cams(model, {"painting": load_image(painting_path), "photo": load_image(photos.paths[0])})
    to_jpeg(save_figure(fig, tmp / "cams.png"), args.out / "explain_cams.jpg")
    print(f"CAMs: {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    dream = deepdream(model, load_image(painting_path, 256), args.layer, progress=True).run()
    fig = ArtlabFigure(figsize=(7, 3.8))
    _show(fig.add_subplot(1, 2, 1), load_image(painting_path, 256), "painting")
    _show(fig.add_subplot(1, 2, 2), dream.image, f"DeepDream at {args.layer}")
    stamp_model(fig, model)
    to_jpeg(save_figure(fig, tmp / "dream.png"), args.out / "explain_dream.jpg")
    print(f"DeepDream: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
