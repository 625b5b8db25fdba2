"""The artlab tour: figures from each part of the kit, written to one HTML page.

``artlab demo`` runs every registered section on the built-in sample corpus and
writes ``index.html`` beside the PNGs. Sections are small functions registered with
:func:`section`; each later feature (Grams, style transfer, embeddings, StyleGAN)
adds its own, so the tour grows with the kit.
"""

from __future__ import annotations

import html
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from artlab import __version__

__all__ = ["DemoContext", "DemoFigure", "section", "run_demo"]


@dataclass
class DemoFigure:
    """One PNG of the tour and what it shows."""

    title: str
    filename: str
    caption: str


@dataclass
class DemoContext:
    """What every section gets: the output folder, quick mode, the corpus and a model."""

    out_dir: Path
    quick: bool = False
    seed: int = 0
    device: str = "cpu"
    log: Callable[[str], None] = print
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Working image size: small in quick mode."""
        return 128 if self.quick else 224

    @cached_property
    def corpus(self):
        from artlab.data import sample_corpus

        return sample_corpus(seed=self.seed, progress=True)  # the demo is an app: it shows its progress

    @cached_property
    def model(self):
        """The best trained network here: VGG-19 when its ImageNet file is cached, else the bundled
        EfficientNet-Lite0 (``model.note`` says which, and the page repeats it)."""
        from artlab.models import best_backbone

        return best_backbone(device=self.device, seed=self.seed)

    def depths(self) -> list[str]:
        """A shallow, a middle and a deep layer of the model (VGG: relu1_1, relu3_1, relu5_1)."""
        style = list(self.model.spec.style_layers)
        return [style[0], style[len(style) // 2], style[-1]]


Section = Callable[[DemoContext], list[DemoFigure]]
_SECTIONS: list[tuple[str, Section]] = []


def section(name: str) -> Callable[[Section], Section]:
    """Register a tour section (run in registration order)."""

    def register(fn: Section) -> Section:
        _SECTIONS[:] = [(n, f) for n, f in _SECTIONS if n != name] + [(name, fn)]
        return fn

    return register


@section("corpus")
def _corpus(ctx: DemoContext) -> list[DemoFigure]:
    from artlab.figures import corpus_grid, save_figure
    from artlab.paint import STYLE_DESCRIPTIONS

    corpus = ctx.corpus
    save_figure(corpus_grid(corpus), ctx.out_dir / "corpus.png")
    styles = "; ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in STYLE_DESCRIPTIONS.items())
    return [
        DemoFigure(
            "The sample corpus",
            "corpus.png",
            f"{len(corpus)} images: scikit-image's bundled photographs, each also painted by artlab's classic "
            f"filters ({styles}). Built offline on first use and cached at <code>{html.escape(str(corpus.root))}</code>.",
        )
    ]


@section("feature maps")
def _feature_maps(ctx: DemoContext) -> list[DemoFigure]:
    from artlab.figures import feature_map_grid, save_figure

    corpus = ctx.corpus
    photo = corpus.subset(style="photo", subject="chelsea")
    painting = corpus.subset(style="brush", subject="chelsea")
    images = {"painting": painting.load(0, (ctx.size, ctx.size)), "photo": photo.load(0, (ctx.size, ctx.size))}
    layers = ctx.depths()
    fig = feature_map_grid(ctx.model, images, layers, channels=5 if ctx.quick else 7)
    save_figure(fig, ctx.out_dir / "feature_maps.png")
    return [
        DemoFigure(
            "How a CNN sees a painting and a photo",
            "feature_maps.png",
            f"{html.escape(ctx.model.label)}: the most active channels at a shallow ({layers[0]}), middle "
            f"({layers[1]}) and deep ({layers[2]}) layer for the brush-stroke painting of Chelsea the cat and the "
            "photograph it was painted from. Shallow layers respond to edges and colour; deeper ones to larger "
            "patterns.",
        )
    ]


@section("domain shift")
def _domain_shift(ctx: DemoContext) -> list[DemoFigure]:
    from artlab.activations import SmallSampleWarning, domain_shift
    from artlab.figures import save_figure

    warnings.simplefilter("ignore", SmallSampleWarning)  # the caption says so
    corpus = ctx.corpus
    boot, perm = (20, 50) if ctx.quick else (100, 200)
    shift = domain_shift(corpus.subset(domain="photo"), corpus.subset(domain="painting"), ctx.model,
                         size=ctx.size, n_boot=boot, n_perm=perm, seed=ctx.seed, progress=False,
                         names=("photos", "paintings"))
    save_figure(shift.plot(), ctx.out_dir / "domain_shift.png")
    return [
        DemoFigure(
            "Domain shift between photos and paintings, layer by layer",
            "domain_shift.png",
            f"{html.escape(ctx.model.label)}: Fréchet distance (Ledoit-Wolf shrinkage where there are fewer "
            "images than channels), KID/MMD with a permutation test, and cross-validated linear-probe accuracy "
            "between the corpus's 6 photographs and their 30 painted versions, with 95% intervals (for the "
            "Fréchet distance corrected for its small-sample bias, so its band can start at 0). Few images: "
            "read the intervals before the curve. A KID or MMD below 0 (the dashed line) means no detectable "
            "difference, not an error: an unbiased estimate of a difference that is really about 0 scatters "
            "around 0. A probe below chance (0.5) found nothing to learn.",
        )
    ]


@section("grams")
def _grams(ctx: DemoContext) -> list[DemoFigure]:
    from artlab.figures import image_row, save_figure, style_distance_bars
    from artlab.gram import ReceptiveFieldWarning, style_distance, texture_from

    # the tour's small images are below VGG's deepest receptive field on purpose (speed)
    warnings.simplefilter("ignore", ReceptiveFieldWarning)

    corpus, size = ctx.corpus, ctx.size

    def pick(style: str, subject: str):
        return corpus.subset(style=style, subject=subject).load(0, (size, size))

    photo, painting, other = pick("photo", "coffee"), pick("pointillism", "coffee"), pick("photo", "rocket")
    pairs = {
        "pointillist coffee vs photo": style_distance(painting, photo, model=ctx.model).per_layer,
        "coffee photo vs rocket photo": style_distance(photo, other, model=ctx.model).per_layer,
    }
    save_figure(style_distance_bars(pairs, ctx.model), ctx.out_dir / "style_distances.png")
    style = list(ctx.model.spec.style_layers)
    layer_sets = {style[0]: style[:1], f"{style[0]} … {style[2]}": style[:3], f"{style[0]} … {style[-1]}": style}
    tex_size, steps = (64, 10) if ctx.quick else (128, 60)
    target = corpus.subset(style="pointillism", subject="coffee").load(0, (tex_size, tex_size))
    textures = {name: texture_from(ctx.model, target, layers, size=tex_size, steps=steps, seed=ctx.seed)
                for name, layers in layer_sets.items()}
    save_figure(image_row({"painting": target} | textures, title="Textures from Grams", model=ctx.model),
                ctx.out_dir / "textures.png")
    return [
        DemoFigure(
            "Style as a CNN sees it: Gram matrices",
            "style_distances.png",
            f"{html.escape(ctx.model.label)}: per-layer Gram (style) distance between the pointillist coffee and "
            "its photograph, and between two different photographs. Gram matrices record which channels fire "
            "together, summed over positions.",
        ),
        DemoFigure(
            "What a Gram keeps: textures synthesised from Grams alone",
            "textures.png",
            f"Starting from noise, {steps} L-BFGS steps match the painting's Grams at growing sets of layers "
            "(Gatys et al.'s texture synthesis). Colour and grain survive; the layout does not.",
        ),
    ]


def _page(ctx: DemoContext, figures: list[tuple[str, DemoFigure]], total: float) -> str:
    model = ctx.model
    banner = (
        f'<p class="note">{html.escape(model.note)}</p>'
        if model.pretrained
        else '<p class="warn">The network uses <b>random weights</b>, as asked: '
        "its feature maps show structure from the architecture alone, not what ImageNet training taught it.</p>"
    )
    body = "\n".join(
        f'<section id="{html.escape(name)}"><h2>{html.escape(f.title)}</h2>'
        f'<img src="{html.escape(f.filename)}" alt="{html.escape(f.title)}"><p>{f.caption}</p>'
        f'<p class="time">{html.escape(name)}: {ctx.timings.get(name, 0):.1f} s</p></section>'
        for name, f in figures
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>artlab tour</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.warn {{ background: #fdecea; border-left: 4px solid #c0392b; padding: .6em 1em; }}
.note {{ background: #f4f6f8; border-left: 4px solid #4c72b0; padding: .6em 1em; }}
.time {{ color: #888; font-size: .85em; }}
code {{ background: #f4f4f4; padding: 0 .2em; }}
</style></head><body>
<h1>artlab tour</h1>
<p>How convolutional networks see art: artlab {__version__}, model <b>{html.escape(model.label)}</b>,
{"quick" if ctx.quick else "full"} mode, {total:.1f} s on {html.escape(ctx.device)}.</p>
{banner}
{body}
</body></html>
"""


def run_demo(out_dir: str | Path = "artlab-demo", *, quick: bool = False, seed: int = 0,
             device: str = "cpu", log: Callable[[str], None] = print) -> Path:
    """Run every section, write the PNGs and ``index.html`` into ``out_dir``; return the page's path."""
    ctx = DemoContext(Path(out_dir).expanduser().resolve(), quick=quick, seed=seed, device=device, log=log)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(f"[artlab demo] {ctx.model.note}")
    figures: list[tuple[str, DemoFigure]] = []
    for name, fn in list(_SECTIONS):
        t0 = time.perf_counter()
        log(f"[artlab demo] {name} …")
        with warnings.catch_warnings():  # a section may silence warnings it expects; keep that local
            figures += [(name, f) for f in fn(ctx)]
        ctx.timings[name] = time.perf_counter() - t0
    page = ctx.out_dir / "index.html"
    page.write_text(_page(ctx, figures, time.perf_counter() - start), encoding="utf-8")
    return page


@section("predictions")
def _predictions(ctx: DemoContext) -> list[DemoFigure]:
    from artlab.figures import save_figure
    from artlab.predict import compare_confidence, predict

    if ctx.model.spec.logits_layer is None:
        return []
    corpus = ctx.corpus
    photos, paintings = corpus.subset(domain="photo"), corpus.subset(domain="painting")
    p_photos = predict(ctx.model, photos, k=5)
    p_paint = predict(ctx.model, paintings, k=5)
    pairs = [(subject, style) for subject in ("chelsea", "coffee") for style in ("photo", "brush", "woodblock")]
    chosen = [corpus.subset(style=style, subject=subject).paths[0] for subject, style in pairs]
    shown = predict(ctx.model, chosen, k=5)
    shown.names = [f"{subject} · {style}" for subject, style in pairs]  # the files are all called chelsea.png …
    save_figure(shown.plot(columns=3), ctx.out_dir / "predictions.png")
    save_figure(compare_confidence({"paintings": p_paint, "photos": p_photos}), ctx.out_dir / "confidence.png")
    c_photo, c_paint = float(p_photos.confidence.mean()), float(p_paint.confidence.mean())
    e_photo, e_paint = float(p_photos.entropy.mean()), float(p_paint.entropy.mean())
    return [
        DemoFigure(
            "What does a network trained on photographs think a painting is?",
            "predictions.png",
            f"{html.escape(ctx.model.label)}: the five most likely ImageNet classes of two photographs and of "
            "their brush-stroke and woodblock paintings. The network never saw a painting labelled as one: it "
            "answers with photo classes, and is less sure.",
        ),
        DemoFigure(
            "How sure it is: confidence and entropy, photos against paintings",
            "confidence.png",
            f"Over the corpus's {len(p_photos)} photographs and {len(p_paint)} paintings, the top-1 probability "
            f"averages {c_photo:.2f} for photos and {c_paint:.2f} for paintings, and the entropy of the "
            f"1000-way prediction {e_photo:.1f} against {e_paint:.1f} bits: the output-space face of the domain "
            "shift.",
        ),
    ]
