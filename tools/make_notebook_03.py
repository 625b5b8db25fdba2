"""Writes notebooks/03_style_transfer.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, lite0_spec, main, md, names

LITE0 = lite0_spec()

cells = [
    md("""# Style transfer: content of one image, style of another

Gatys, Ecker and Bethge (2016) painted a photograph in the style of a painting by *optimising the pixels*
of an image until two things hold at once: a CNN sees the same **content** as in the photo (its feature maps
at a deep layer match), and the same **style** as in the painting (its Gram matrices, notebook 02, match at
several layers). This lesson builds the two losses by hand, adds them up, turns the α/β knob that trades one
for the other, keeps the photo's colours, blends two styles, wraps a panorama without a seam, and ends with
the live **style transfer lab**.

**About the network.** Gatys et al. used **VGG-19**: content at `relu4_2`, style at `relu1_1` … `relu5_1`,
the names used below when the formulas follow the paper. The lesson runs on the best trained network on
this machine (`best_backbone()`): VGG-19 when its ImageNet file is cached (`artlab weights download vgg19`),
otherwise the bundled EfficientNet-Lite0, with content at `{content}` and style at {style}. The code takes
the layers from the model (`model.spec.content_layer`,
`model.spec.style_layers`), so it runs with either; the first cell prints which one you have. VGG-19 is
the classic network for style transfer, and the one to use for your best pictures; Lite0 is a trained
network too, and its results show the same trade-offs (the texts describe Lite0's figures).""".format(
        content=LITE0.content_layer, style=names(LITE0.style_layers))),
    code("""import os
import warnings
import torch
import pandas as pd
from artlab.data import sample_corpus
from artlab.models import best_backbone, features, receptive_field
from artlab.gram import ReceptiveFieldWarning, style_distance
from artlab.figures import ArtlabFigure, image_row, stamp_model
from artlab.transfer import stylize, transfer, plot_ratio_sweep, seam_error

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Output size (longer side, px) and optimiser steps per transfer. On a laptop CPU one 128 px transfer takes
# a few seconds with EfficientNet-Lite0 and about half a minute with VGG-19; on a GPU use 384-512 px and 300 steps.
SIZE = 64 if QUICK else (384 if DEVICE == "cuda" else 128)
STEPS = 3 if QUICK else (300 if DEVICE == "cuda" else 80)

model = best_backbone(device=DEVICE)   # VGG-19 if its ImageNet file is cached, else EfficientNet-Lite0 (bundled)
print(model.note)
print("content layer:", model.spec.content_layer, "| style layers:", list(model.spec.style_layers),
      "| default β:", model.spec.style_weight)
# The deepest style layer sees more than the whole lesson image (printed below) and artlab warns about it
# in every transfer; at lesson sizes that is expected, so the warning is silenced here.
deepest = model.spec.style_layers[-1]
print(f"receptive field of {deepest}: {receptive_field(model, deepest)[0]} px; lesson size: {SIZE} px")
warnings.filterwarnings("ignore", category=ReceptiveFieldWarning)

corpus = sample_corpus(progress=True)
photo = corpus.subset(style="photo", subject="chelsea").load(0, SIZE)          # the content: a cat
painting = corpus.subset(style="woodblock", subject="astronaut").load(0, SIZE)  # the style: a woodblock print
second = corpus.subset(style="pointillism", subject="coffee").load(0, SIZE)     # a second style, for blends
image_row({"content (photo)": photo, "style (woodblock)": painting, "second style (pointillism)": second},
          title="The images of this lesson")"""),
    md("""## 1. Content loss: the same things in the same places

Run the photo *p* and the image being made *x* through the network and compare their feature maps at one
deep layer ℓ (`model.spec.content_layer`: VGG's `relu4_2`, as in the paper; Lite0's `stage4`), position by
position:

  **L_content(x, p) = mean over channels and positions of (F_ℓ(x) − F_ℓ(p))²**

(the paper sums and halves; a mean only rescales α). Deep features describe *what is where*, not exact pixels:
a painted version of the same photo stays close, a different photo is far."""),
    code("""layer = model.spec.content_layer
def content_loss(x, p):
    with torch.no_grad():
        fx, fp = features(model, x, [layer])[layer], features(model, p, [layer])[layer]
    return float((fx - fp).square().mean())

cat_painted = corpus.subset(style="kmeans", subject="chelsea").load(0, SIZE)
other_photo = corpus.subset(style="photo", subject="rocket").load(0, SIZE)
pd.Series({"the photo itself": content_loss(photo, photo),
           "the same cat, colour-quantised": content_loss(cat_painted, photo),
           "the woodblock astronaut": content_loss(painting, photo),
           "a rocket photo": content_loss(other_photo, photo)}, name=f"content loss at {layer}")"""),
    md("""## 2. Style loss: the same textures anywhere

Style compares **Gram matrices** G = F Fᵀ (notebook 02): which channels fire together, summed over all
positions, so *where* is thrown away. At each style layer ℓ (`model.spec.style_layers`: VGG's relu1_1 …
relu5_1; Lite0's {style}):

  **E_ℓ = mean of (G_ℓ(x) − G_ℓ(a))²**,  **L_style(x, a) = Σ_ℓ w_ℓ E_ℓ**

with w_ℓ = 1/5 for VGG's five layers, as in the paper. EfficientNet-Lite's Grams differ in size by two
orders of magnitude from layer to layer, so artlab weights its layers to count about equally instead
(`TransferSettings.layer_weights` sets your own).

Low layers carry colour and fine strokes, high layers larger motifs. Any image with the painting's textures
scores well, wherever they are.""".format(style=names(LITE0.style_layers))),
    code("""distances = {
    "photo vs woodblock painting": style_distance(photo, painting, model=model).per_layer,
    "woodblock astronaut vs woodblock cat": style_distance(
        corpus.subset(style="woodblock", subject="chelsea").load(0, SIZE), painting, model=model).per_layer,
}
pd.DataFrame(distances)"""),
    md("""## 3. The total loss, and optimising the pixels

  **L(x) = α · L_content(x, p) + β · L_style(x, a) + γ · TV(x)**

TV (total variation) penalises differences between neighbouring pixels: a little smooths the speckle
that high-frequency style terms can leave. Starting from the photo (`init="content"`), an optimiser
(L-BFGS, as in the paper, or Adam) changes the pixels to lower L. `stylize` is a generator: each step reports
every term, so you can watch them trade off."""),
    code("""run = stylize(photo, painting, model, size=SIZE, steps=STEPS, preview_every=max(1, STEPS // 3))
steps = list(run)
terms = pd.DataFrame([{"step": s.step, "total": s.loss, "content (α·)": s.content, "style (β·)": s.style,
                       "TV (γ·)": s.tv} for s in steps]).set_index("step")
result = run.best_image
fig = ArtlabFigure(figsize=(6, 3))
ax = fig.subplots()
for column in ("total", "content (α·)", "style (β·)"):
    ax.plot(terms.index, terms[column], label=column)
ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("weighted loss"); ax.legend(fontsize=8)
fig.suptitle(f"Loss terms during the transfer · {model.label}", fontsize=10)
fig.tight_layout(rect=(0, 0.08, 1, 1))
stamp_model(fig, model)"""),
    code("""image_row({"content": photo, "style": painting, f"result after {STEPS} steps": result},
          title="Style transfer", model=model)"""),
    md("""What to look for: the cat keeps its eyes, nose and stripes where they were (the content term), and
takes on the woodblock's palette of orange, grey and black in flat patches with dark edges (the style
terms). The loss curves above show the trade: the style term falls steadily, while the content term
rises from 0 (the start is the photo itself) as the picture moves away from the photo, then levels off."""),
    md("""## 4. What α/β does

Only the ratio β/α matters for *where* the optimum lies (scaling both only rescales the loss). Small β/α:
the photo barely changes; large: the painting's palette and textures take over more and more of the
picture. artlab's
`TransferSettings.style_weight` is β with α = `content_weight` = 1. Its default (None) means the network's
own β, `model.spec.style_weight` (printed in the first cell), tuned together with the network's style
layers and their weights (with artlab's Gram normalisation, divided by C·H·W, notebook 02). The sweep
below runs one short transfer per ratio, around the network's default."""),
    code("""beta = model.spec.style_weight   # the default ratio for this network
ratios = [beta / 1e3, beta * 10] if QUICK else [beta / 1e4, beta / 1e2, beta, beta * 1e2]
plot_ratio_sweep(photo, painting, model, ratios, steps=STEPS, size=SIZE)"""),
    md("""## 5. Keeping the photo's colours

Style transfer copies the painting's *palette* along with its strokes. Two fixes from Gatys et al. (2017):

* `color="luminance"`: transfer style on brightness only (luma), then put the photo's colour (chroma) back;
* `color="histogram"`: first recolour the style image to the photo's colour statistics, then transfer."""),
    code("""colours = {mode: transfer(photo, painting, model, size=SIZE, steps=STEPS, color=mode)
           for mode in ("luminance", "histogram")}
image_row({"content": photo, 'color="none" (section 3)': result}
          | {f'color="{m}"': img for m, img in colours.items()}, title="Colour modes", model=model)"""),
    md("""Both fixes keep the cat's own browns; the woodblock now shows only in the flat patches and edges.
`"luminance"` keeps the photo's colours exactly; `"histogram"` lets the style's light and shade through a
little more."""),
    md("""## 6. Blending two styles

With two style images the style loss is a weighted mix of the two Gram losses (`style_blend`, normalised to
sum 1): (1, 0) is the woodblock alone, (0, 1) the pointillism alone, (1, 1) half of each. A weighted sum of
squared distances to two Grams has the same gradient as the distance to their weighted *average* Gram, so
a blend costs no more than one style."""),
    code("""mixed = {
    "(1, 0): woodblock (section 3)": result,
    "(1, 1)": transfer(photo, [painting, second], model, size=SIZE, steps=STEPS, style_blend=(1, 1)),
    "(0, 1): pointillism": transfer(photo, [painting, second], model, size=SIZE, steps=STEPS, style_blend=(0, 1)),
}
image_row(mixed, title="Blending two styles", model=model)"""),
    md("""## 7. A 360° panorama without a seam

An equirectangular panorama wraps around: its left and right edges are neighbours. Ordinary convolutions pad
with zeros, so nothing ties the two edges together and a seam appears where they meet. `panorama=True` pads
*circularly* left-right in every convolution and pooling layer, so the network sees the two edges as
neighbours. `seam_error` compares the jump across the wrap with the typical jump between neighbouring
columns: about 1 is seamless, more is a visible seam.

First we make a content that wraps (a strip of the Hubble deep field whose first columns are cross-faded
with the columns that follow its end), then run from noise, so that nothing but the network ties the edges
together. Each result is rolled by half its width so the wrap sits in the middle, where your eye can judge it."""),
    code("""sky = corpus.subset(style="photo", subject="hubble_deep_field").load(0, SIZE)
strip = sky[:, :, SIZE // 4 : SIZE // 4 + SIZE // 2, :]      # a wide strip
k = SIZE // 8                                               # cross-fade this many columns
width = strip.shape[-1] - k
fade = torch.linspace(0, 1, k)
pano = strip[..., :width].clone()
pano[..., :k] = strip[..., width:] * (1 - fade) + strip[..., :k] * fade   # now column width-1 meets column 0

plain = transfer(pano, painting, model, size=None, steps=STEPS, init="noise", panorama=False)
wrapped = transfer(pano, painting, model, size=None, steps=STEPS, init="noise", panorama=True)
pd.Series({"content": seam_error(pano), "plain transfer": seam_error(plain),
           "panorama=True": seam_error(wrapped)}, name="seam error (≈1: seamless)").round(2)"""),
    code("""roll = lambda image: torch.roll(image, image.shape[-1] // 2, dims=-1)   # bring the wrap to the middle
image_row({"content, rolled": roll(pano), "plain, rolled": roll(plain), "panorama=True, rolled": roll(wrapped)},
          title="Does the wrap show?", model=model, size=3.0)"""),
    md("""## 8. The style transfer lab

Every knob above, live. **Run** starts; the preview and the per-term loss curves update as it goes (a quick
start at a small size shows the first preview within about a second). Move a slider *during* a run and it
restarts from the current image with the new setting (a dotted line on the curves), rather than from
scratch. **Stop** keeps the best image; **Save PNG** and **Export GIF** (the progression) write into the
output folder and show the path. With two styles a **blend** slider appears."""),
    code("""from artlab.widgets import TransferLab

TransferLab(photo, [painting, second], model, size=SIZE, steps=STEPS * 2, output_dir="transfer-output")"""),
    md("""## Where next

* `artlab.transfer.stylize_frames` / `stylize_video` carry a style through a video, each frame warm-started
  from the previous result.
* `artlab.transfer.suggest_styles` ranks a collection's paintings by deep-patch similarity to a photo:
  which painting would suit it?
* Try `loss="gram+histogram"` (Risser et al. 2017), which also matches each layer's activation
  histograms and keeps the painting's contrast better."""),
]

if __name__ == "__main__":
    main(cells, "03_style_transfer.ipynb")
