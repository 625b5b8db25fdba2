"""Writes notebooks/01_how_cnns_see_art.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, md, write

cells = [
    md("""# How a CNN sees art: feature maps and the domain shift between paintings and photos

A network trained on photographs meets a painting. Does it see the same things? This lesson looks at
the **feature maps** of a painting beside the photo it was painted from, at a shallow and a deep
layer, compares two architectures (VGG-19 and ResNet-152), and then *measures* how far apart the two
domains are, layer by layer, with three statistics. It follows the "How does a CNN see art?" study
(VGG-19 and ResNet-152 activations for a Monet beside a real landscape) and goes further.

If ImageNet weights are not installed (`artlab weights list`), the networks run with a seeded random
init: every figure then says so in red, and the numbers describe the architecture's random filters,
not what a trained network has learned. Install the weights with `artlab weights import FILE`."""),
    code("""import os
import pandas as pd
from artlab.data import sample_corpus
from artlab.models import backbone
from artlab.figures import feature_map_grid
from artlab import activations as act

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 224
BOOT, PERM = (20, 50) if QUICK else (200, 500)

corpus = sample_corpus()
painting = corpus.subset(style="brush", subject="astronaut").load(0, (SIZE, SIZE))
photo = corpus.subset(style="photo", subject="astronaut").load(0, (SIZE, SIZE))
vgg = backbone("vgg19", weights="auto")
vgg.label"""),
    md("""## 1. Feature maps: painting beside photo, shallow and deep

Each row shows an input and the six channels of a layer that respond most to it. At `relu1_1` the
channels are edge and colour detectors: the painting's brush strokes light them up in short,
oriented bursts where the photo gives smooth gradients. By `relu5_1` each position sees a large patch
of the image (its *receptive field* is 156 px wide in VGG-19) and the maps are coarse blobs: what
matters there is *which* channels fire, not where."""),
    code("""feature_map_grid(vgg, {"painting": painting, "photo": photo}, ["relu1_1", "relu5_1"], channels=6)"""),
    md("""Which channels disagree most between the two images? `disagreement` compares each channel's mean
activation (a statistic per channel, so the two images may have different sizes)."""),
    code("""act.disagreement(vgg, painting, photo, "relu3_1", k=8)"""),
    md("""## 2. VGG-19 and ResNet-152

ResNet-152 reaches the same depth with skip connections and far fewer channels per stage early on.
Its stage outputs (`layer1` … `layer4`) are the natural places to look."""),
    code("""resnet = backbone("resnet152", weights="auto")
feature_map_grid(resnet, {"painting": painting, "photo": photo}, ["layer1", "layer4"], channels=6)"""),
    md("""## 3. Spectra: strokes and sensor noise

The radially averaged power spectrum of a layer's feature maps says how much energy sits at each
spatial frequency. Brush strokes put energy at mid frequencies; a photo's fine texture and sensor
noise sit at the highest ones."""),
    code("""layers = ["relu1_1", "relu2_1", "relu3_1"]
act.plot_spectra(act.layer_spectra(vgg, painting, layers), act.layer_spectra(vgg, photo, layers),
                 labels=("painting", "photo"), model=vgg)"""),
    md("""## 4. The activation explorer

Pick a layer; page through the channels or show the top-k (by activation, or by the difference
between the two images); share the colour scale or not. Click a map to see both images' map for that
channel large, with the input overlaid. The first forward pass computes every layer once; switching
layers afterwards only redraws."""),
    code("""from artlab.widgets import ActivationExplorer

ActivationExplorer(vgg, painting, photo)"""),
    md("""## 5. How far apart are paintings and photos, layer by layer?

Take two *sets* of images, pool each layer's feature maps to one vector per image (average over
positions), and compare the two clouds of vectors with three statistics:

- **Fréchet distance**: fit a Gaussian to each cloud and measure how far apart they are (the FID
  formula, per layer). With fewer images than dimensions the covariance is singular, so artlab
  shrinks it (Ledoit-Wolf) and says so in the `note` column.
- **KID / MMD**: kernel two-sample statistics that are unbiased for small sets; the permutation test
  gives a p-value for "the two sets come from the same distribution".
- **Linear-probe accuracy**: can a logistic regression tell the two sets apart from these features
  (cross-validated)? 0.5 means no, 1.0 means perfectly.

Every number comes with `n` and a bootstrap confidence interval; the seeds are fixed, so rerunning
gives the same table."""),
    code("""photos = corpus.subset(domain="photo")
paintings = corpus.subset(domain="painting")
store = act.FeatureStore()     # pooled features are reused by every call below
shift = act.domain_shift(photos, paintings, vgg, size=SIZE, n_boot=BOOT, n_perm=PERM,
                         cache=store, names=("photos", "paintings"))
shift.wide()"""),
    code("""shift.plot()"""),
    md("""**What the curve means.** Each measure asks, layer by layer, whether the network's description
of the two sets differs. Where they are near zero, the two sets look alike to the network; where they
grow (with a small MMD p-value and a probe clearly above 0.5), the network's features separate them.
With trained ImageNet weights the shift between paintings and photographs typically shows in the
texture-sensitive middle layers (brush strokes against photographic detail).

Read the table before the curve:

- **n and the note column.** With 6 photos and up to 512 channels, every covariance is singular;
  the Fréchet value is then shrunk and biased (the note says so). KID and MMD stay unbiased.
- **Negative KID or MMD** is not an error: the unbiased estimators scatter around zero when the two
  sets do not differ, and the permutation p-value is then large.
- **A probe accuracy below 0.5** means *no signal*: cross-validation on a handful of images is
  pessimistic when there is nothing to learn (each held-out image pulls the classifier away from its
  own class).
- **The sample corpus is paired**: each painting is a painted copy of one of the six photographs,
  so subject and colour, which dominate pooled features, are shared by both sets. With a random init
  that is nearly all the network sees, and the measures report little or no shift. On a real set
  (74 public-domain paintings against 30 landscape photographs) the same random network already
  separates the domains at `relu1_1` (MMD p ≈ 0.002): colour and stroke statistics differ there."""),
    code("""shift.table[["layer", "measure", "value", "ci_low", "ci_high", "p_value", "n_a", "n_b", "dim", "note"]]"""),
    md("""The same measure between two painting *styles*: pointillism against woodblock prints of the same
photographs."""),
    code("""styles = act.domain_shift(corpus.subset(style="pointillism"), corpus.subset(style="woodblock"), vgg,
                          size=SIZE, n_boot=BOOT, n_perm=PERM, cache=store, names=("pointillism", "woodblock"))
styles.wide()"""),
    md("""## 6. The domain-shift view

Curves of the three measures with their confidence bands. Click a layer to see the channels whose
mean activation differs most between the sets (Cohen's d), with example maps from each set."""),
    code("""from artlab.widgets import DomainShiftView

DomainShiftView.from_result(shift, photos, paintings, vgg)"""),
    md("""## 7. For researchers: your own two folders

Point `FOLDER_A` and `FOLDER_B` at two folders of images (any sizes; every image is resized and
centre-cropped to the same size, and unreadable files are skipped and listed in `shift.notes`).
Features are cached in `store`, so trying other measures or layers does not recompute them."""),
    code("""FOLDER_A = None   # e.g. "~/data/wikiart/impressionism"
FOLDER_B = None   # e.g. "~/data/photos/landscapes"
if FOLDER_A and FOLDER_B:
    mine = act.domain_shift(FOLDER_A, FOLDER_B, vgg, size=224, cache=store, names=("A", "B"))
    print("\\n".join(mine.notes))
    display(mine.wide(), mine.plot())
else:
    print("Set FOLDER_A and FOLDER_B to compare two folders of your own.")"""),
]

if __name__ == "__main__":
    write(cells, "01_how_cnns_see_art.ipynb")
