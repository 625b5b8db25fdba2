"""Remake the README's pictures from a real run: docs/feature_maps.jpg, docs/predictions.jpg, docs/style_transfer.jpg.

    .venv/bin/python tools/make_readme_figures.py

Both come from the demo's sections (artlab/demo.py) on the built-in sample corpus, with the network the
demo uses, ``best_backbone()``: VGG-19 when its ImageNet file is cached, else the bundled
EfficientNet-Lite0 (the script prints which; the label is on each picture). They are saved as modest
JPEGs (at most MAX_WIDTH px wide, under MAX_BYTES) so the repository stays small. docs/corpus.jpg is the
demo's corpus figure and can be remade the same way (``--corpus``).

docs/style_transfer.jpg is not the demo's: it is Gatys transfer with the same settings on two networks,
the bundled ImageNet EfficientNet-Lite0 and a random-init VGG-19 (what every figure showed before artlab
bundled trained weights), so the README shows what training gives a style transfer (``--no-transfer``
skips it: the random VGG-19 takes about half a minute).
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parents[1] / "docs"
MAX_WIDTH = 900
MAX_BYTES = 300_000


def to_jpeg(png: Path, out: Path) -> Path:
    """``png`` as a JPEG at ``out``, at most MAX_WIDTH px wide and under MAX_BYTES (quality lowered as needed)."""
    image = Image.open(png).convert("RGB")
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    for quality in (88, 84, 80, 75, 70, 65, 60):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
        if buffer.tell() <= MAX_BYTES:
            break
    out.write_bytes(buffer.getvalue())
    print(f"wrote {out} ({image.width}×{image.height} px, {buffer.tell() / 1000:.0f} kB, quality {quality})")
    return out


def predictions_png(ctx, path: Path) -> Path:
    """The demo's predictions figure (two photos and their brush and woodblock paintings, top 5), with each
    picture titled by subject and style instead of its file name."""
    from artlab.figures import save_figure
    from artlab.predict import predict

    pairs = [(subject, style) for subject in ("chelsea", "coffee") for style in ("photo", "brush", "woodblock")]
    chosen = [ctx.corpus.subset(style=style, subject=subject).paths[0] for subject, style in pairs]
    preds = predict(ctx.model, chosen, k=5)
    preds.names = [f"{subject} · {style}" for subject, style in pairs]
    return save_figure(preds.plot(columns=3), path)


def transfer_png(path: Path, size: int = 192, steps: int = 60) -> Path:
    """The chelsea photo in the style of the brush-painted coffee cup (both from the sample corpus), 60 L-BFGS
    steps at 192 px with each network's default layers and weights: ImageNet EfficientNet-Lite0 vs VGG-19 with
    random weights (labelled as such)."""
    import time

    from artlab.data import sample_corpus
    from artlab.figures import image_row, save_figure
    from artlab.images import load_image
    from artlab.models import backbone
    from artlab.transfer import transfer

    corpus = sample_corpus()
    content = load_image(corpus.subset(style="photo", subject="chelsea").paths[0])
    style = load_image(corpus.subset(style="brush", subject="coffee").paths[0])
    images = {"content (photo)": content, "style (brush painting)": style}
    for model in (backbone("efficientnet_lite0"), backbone("vgg19", weights=None)):
        t0 = time.perf_counter()
        images[model.label.replace("random init (seed 0)", "RANDOM weights")] = transfer(
            content, style, model, size=size, steps=steps)
        print(f"{model.label}: {steps} steps at {size} px in {time.perf_counter() - t0:.1f} s")
    fig = image_row(images, title=f"Gatys style transfer, {steps} L-BFGS steps at {size} px, same settings")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    from artlab import demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="store_true", help="also remake docs/corpus.jpg")
    parser.add_argument("--no-transfer", action="store_true", help="do not remake docs/style_transfer.jpg")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = demo.DemoContext(Path(tmp), quick=False, device="cpu")
        print(ctx.model.note)
        demo._feature_maps(ctx)
        to_jpeg(Path(tmp) / "feature_maps.png", DOCS / "feature_maps.jpg")
        to_jpeg(predictions_png(ctx, Path(tmp) / "predictions.png"), DOCS / "predictions.jpg")
        if not args.no_transfer:
            to_jpeg(transfer_png(Path(tmp) / "style_transfer.png"), DOCS / "style_transfer.jpg")
        if args.corpus:
            demo._corpus(ctx)
            to_jpeg(Path(tmp) / "corpus.png", DOCS / "corpus.jpg")


if __name__ == "__main__":
    main()
