"""Writes notebooks/01_how_cnns_see_art.ipynb (outputs empty). Edit here, re-run, commit the result.

The numbers the texts quote are in ``QUOTED``: measured with EfficientNet-Lite0 on the sample corpus
by tools/lesson_numbers.py (run it to remeasure), and checked against a real run by
tests/test_notebooks.py, so the text cannot drift away from what the figures show.
"""

from notebook_writer import code, main, md

#: measured by `python tools/lesson_numbers.py` (EfficientNet-Lite0, sample corpus, default sizes)
QUOTED = {
    'trained_similarity_painting_photo': 0.8594,
    'trained_similarity_photo_rocket': 0.3224,
    'random_similarity_painting_photo': 0.9998,
    'random_similarity_photo_rocket': 0.9312,
    'cat_top1': {'brush': 'puffer', 'kmeans': 'Egyptian cat', 'photo': 'Egyptian cat', 'pointillism': 'electric ray',
                 'slic': 'jigsaw puzzle', 'woodblock': 'shower cap'},
    'unsure_photo': 'hubble_deep_field',
    'unsure_photo_top1': 'nematode',
    'unsure_photo_confidence': 0.066,
    'photo_confidence': 0.4481,
    'painting_confidence': 0.2827,
    'photo_entropy': 4.181,
    'painting_entropy': 5.9085,
    'p_confidence': 0.2502,
    'lower_than_own_photo': 20,
    'kept_top1': 9,
    'least_sure_style': 'pointillism',
    'least_sure_confidence': 0.1674,
    'surest_style': 'kmeans',
    'surest_confidence': 0.3643,
    'slic_top1': 'jigsaw puzzle',
    'slic_top1_count': 3,
    'woodblock_top1': 'comic book',
    'woodblock_top1_count': 2,
    'probe_best_layer': 'stage3',
    'probe_best': 0.8333,
    'probe_first_layer': 0.3,
    'mmd_p_min': 0.1277,
    'styles_mmd_p_first_layer': 0.8962,
    'styles_mmd_p_max_deeper': 0.0479,
    # the developers' set of real paintings and photographs (../shared/data, not shipped; checked when present)
    'shared_paintings': 74,
    'shared_photos': 39,
    'shared_photo_confidence': 0.375,
    'shared_painting_confidence': 0.2442,
    'shared_p_confidence': 0.0016,
}
#: how far a fresh measurement may be from QUOTED (numbers are printed with 2 decimals, entropies with 1;
#: counts and class names must match exactly)
TOLERANCE = {
    'trained_similarity_painting_photo': 0.01, 'trained_similarity_photo_rocket': 0.01,
    'random_similarity_painting_photo': 0.01, 'random_similarity_photo_rocket': 0.01,
    'unsure_photo_confidence': 0.01, 'photo_confidence': 0.01, 'painting_confidence': 0.01,
    'photo_entropy': 0.1, 'painting_entropy': 0.1, 'p_confidence': 0.02,
    'least_sure_confidence': 0.01, 'surest_confidence': 0.01,
    'probe_best': 0.02, 'probe_first_layer': 0.02, 'mmd_p_min': 0.02,
    'styles_mmd_p_first_layer': 0.02, 'styles_mmd_p_max_deeper': 0.005,
    'shared_photo_confidence': 0.01, 'shared_painting_confidence': 0.01, 'shared_p_confidence': 0.001,
}
Q = QUOTED

cells = [
    md("""# How a CNN sees art: feature maps, guesses, and the domain shift between paintings and photos

A network trained on photographs meets a painting. Does it see the same things? This lesson looks at
the **feature maps** of a painting beside the photo it was painted from, at a shallow and a deep
layer; compares a **trained** network with the same architecture left **random**; asks the network
what it **thinks** each image is (its ImageNet guesses, and how sure it is); and then *measures* how far
apart the two domains are inside the network, layer by layer, with three statistics. It follows the
"How does a CNN see art?" study (VGG-19 and ResNet-152 activations for a Monet beside a real landscape)
and goes further.

The network is the best trained one on this machine (`best_backbone()`): VGG-19 when its ImageNet file
is cached, otherwise EfficientNet-Lite0, whose ImageNet weights come with artlab. The first cell prints
which. **The texts were written from EfficientNet-Lite0's results**, and the numbers they quote are
Lite0's on the sample corpus at the default sizes (the test suite checks them against a real run). With
VGG-19 your figures and tables show VGG-19's own numbers."""),
    code("""import os
import pandas as pd
from artlab.data import sample_corpus
from artlab.models import best_backbone, receptive_field
from artlab.figures import feature_map_grid
from artlab import activations as act

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 224
BOOT, PERM = (20, 50) if QUICK else (200, 500)

model = best_backbone()        # VGG-19 if cached, else EfficientNet-Lite0 (bundled): both trained on ImageNet
print(model.note)
style = list(model.spec.style_layers)   # shallow to deep (VGG: relu1_1 … relu5_1; Lite0: stem, stage2 …)
shallow, middle, deep = style[0], style[2], style[-1]

corpus = sample_corpus(progress=True)
painting = corpus.subset(style="brush", subject="astronaut").load(0, (SIZE, SIZE))
photo = corpus.subset(style="photo", subject="astronaut").load(0, (SIZE, SIZE))"""),
    md("""## 1. Feature maps: painting beside photo, shallow and deep

Each row shows an input and the six channels of a layer that respond most to it. At the shallow layer
the channels are edge and colour detectors: one draws the outlines like an etching, another picks out
the orange suit, and the painting and the photo use the same ones. At the deep layer each position sees
a large patch of the image (its *receptive field*, printed below) and the maps are coarse blocks: what
matters there is *which* channels fire, not where: read the channel numbers above the maps."""),
    code("""print(f"one unit of {deep} sees {receptive_field(model, deep)[0]} px of the input; the image is {SIZE} px")
feature_map_grid(model, {"painting": painting, "photo": photo}, [shallow, deep], channels=6)"""),
    md("""Which channels disagree most between the two images? `disagreement` compares each channel's mean
activation (a statistic per channel, so the two images may have different sizes)."""),
    code("""act.disagreement(model, painting, photo, middle, k=8)"""),
    md("""## 2. Trained or random?

What does ImageNet training add? Below is the same architecture with **random weights**
(`best_backbone(model.name, random=True)`), labelled in red. A random convolution is already a crude
filter, so its shallow channels respond to colour and brightness, but as soft blotches rather than the
trained network's crisp, oriented edges. At the deep layer its maps are smooth blobs, and it sees the
painting and the photo alike.

A number for "alike": average each channel's map to one value per channel, and take the cosine
similarity of the two images' vectors (1: the same direction). With Lite0 at the default size, the
trained network finds the painting close to its photo ({tp:.2f}) and the astronaut far from a rocket
photo ({tr:.2f}). The random one finds everything alike: {rp:.2f} and {rr:.2f}. To an untrained network
almost any two pictures look the same at depth. (Random features are still a useful baseline: they show
what the architecture alone does.)""".format(
        tp=Q["trained_similarity_painting_photo"], tr=Q["trained_similarity_photo_rocket"],
        rp=Q["random_similarity_painting_photo"], rr=Q["random_similarity_photo_rocket"])),
    code("""untrained = best_backbone(model.name, random=True)   # random weights, on purpose: the comparison
feature_map_grid(untrained, {"painting": painting, "photo": photo}, [shallow, deep], channels=6)"""),
    code("""import torch
from artlab.models import features

def similarity(net, a, b, layer=deep):
    \"\"\"Cosine similarity of the two images' channel means at ``layer``.\"\"\"
    fa, fb = (features(net, x, [layer])[layer].mean(dim=(2, 3)) for x in (a, b))
    return float(torch.nn.functional.cosine_similarity(fa, fb))

rocket = corpus.subset(style="photo", subject="rocket").load(0, (SIZE, SIZE))
pd.DataFrame({name: {"brush-stroke astronaut vs its photo": similarity(net, painting, photo),
                     "astronaut photo vs rocket photo": similarity(net, photo, rocket)}
              for name, net in (("trained", model), ("random", untrained))}).round(2)"""),
    md("""The study this lesson follows also compared VGG-19 with **ResNet-152**, which reaches the same depth
with skip connections. Its ImageNet file is not bundled: the cell shows it when it is cached
(`artlab weights download resnet152`) and otherwise prints what `best_backbone` chose instead."""),
    code("""resnet = best_backbone("resnet152")   # ResNet-152 when its file is cached, else the same fallback as above
if resnet.name == "resnet152":
    display(feature_map_grid(resnet, {"painting": painting, "photo": photo}, ["layer1", "layer4"], channels=6))
else:
    print(resnet.note)"""),
    md("""## 3. Spectra: strokes and fine detail

The radially averaged power spectrum of a layer's feature maps says how much energy sits at each
spatial frequency (left: large structures, right: fine detail). With Lite0 the painting's and the
photo's curves coincide at the stem except at the finest scales, where the photo keeps a little more
(detail the brush smoothed away); at the next two layers the photo's maps carry more power at every
frequency: these channels find less to respond to in the brush strokes than in the photo."""),
    code("""layers = style[:3]
act.plot_spectra(act.layer_spectra(model, painting, layers), act.layer_spectra(model, photo, layers),
                 labels=("painting", "photo"), model=model)"""),
    md("""## 4. The activation explorer

Pick a layer; page through the channels or show the top-k (by activation, or by the difference
between the two images); share the colour scale or not. Click a map to see both images' map for that
channel large, with the input overlaid. The first forward pass computes every layer once; switching
layers afterwards only redraws."""),
    code("""from artlab.widgets import ActivationExplorer

ActivationExplorer(model, painting, photo)"""),
    md("""## 5. What does a network trained on photographs think a painting is?

The network's last layer scores the 1000 ImageNet classes: cats, cups, rockets, and also things like
*comic book* and *jigsaw puzzle*, but no "painting of a cat". `predict` turns the scores into
probabilities and gives the top five per image, the **confidence** (the top-1 probability) and the
**entropy** of the whole 1000-way guess in bits: 0 when the network is certain, 9.97 when every class is
equally likely. Here is Chelsea the cat, photographed and painted in five styles."""),
    code("""from artlab.predict import compare_confidence, confidence_table, predict

STYLES = ["photo", "brush", "woodblock", "kmeans", "slic", "pointillism"]
cat = predict(model, [corpus.subset(style=s, subject="chelsea").paths[0] for s in STYLES], k=5)
cat.names = STYLES          # title each picture by its style rather than its file name
cat.plot(columns=3)"""),
    md("""With Lite0 the photo is an *{photo}* and so is the k-means version, which keeps every shape and only
flattens the colours. The brush strokes make it a *{brush}* fish, the dots an *{pointillism}*, the flat
colour and ink edges of the woodblock a *{woodblock}*, and the superpixel mosaic a *{slic}*: when the
textures it relies on are gone, the network names the texture it sees instead. Now every subject in
every style (top-1 class and its probability):""".format(**Q["cat_top1"])),
    code("""meta = {str(item.path): item.meta for item in corpus}
photos = predict(model, corpus.subset(domain="photo"))
paintings = predict(model, corpus.subset(domain="painting"))
guesses = pd.DataFrame([{"subject": meta[n]["subject"], "style": meta[n]["style"], "top-1": f"{label} ({p:.2f})"}
                        for preds in (photos, paintings)
                        for n, label, p in zip(preds.names, preds.top1(), preds.confidence.tolist())])
guesses.pivot(index="subject", columns="style", values="top-1")[STYLES]"""),
    md("""Only {kept} of the 30 paintings keep their photo's top-1 class. Some answers name the medium rather
than the subject: the SLIC mosaics are *{slic}* {slic_n} times out of 6 and the woodblocks *{wood}*
{wood_n} times: ImageNet has photographs of those things, and these filters make pictures that look like
them. Not every photo is easy either: the Hubble deep field gets *{unsure_top1}* at {unsure:.2f}.

**How sure is it?** The histograms put the confidence and the entropy of the 6 photos beside those of
the 30 paintings; the table adds each style, with a Mann–Whitney test of each set against the photos.""".format(
        kept=Q["kept_top1"], slic=Q["slic_top1"], slic_n=Q["slic_top1_count"], wood=Q["woodblock_top1"],
        wood_n=Q["woodblock_top1_count"], unsure_top1=Q["unsure_photo_top1"], unsure=Q["unsure_photo_confidence"])),
    code("""compare_confidence({"paintings": paintings, "photos": photos})"""),
    code("""by_style = {s: predict(model, corpus.subset(style=s)) for s in STYLES[1:]}
confidence_table({"photos": photos, "all paintings": paintings} | by_style).round(3)"""),
    md("""**What you see.** With Lite0 the mean confidence falls from **{pc:.2f}** for the photos to
**{ac:.2f}** for the paintings, and the entropy rises from **{pe:.1f}** to **{ae:.1f}** bits: the network
is less sure, and spreads its guess over more classes, when it looks at a painting. It is the
output-space face of the domain shift that section 6 measures inside the network. Pair each painting
with the photo it was painted from and the painting gets the lower confidence in {lower} of the 30 pairs.
The styles differ: *{least}* leaves the network least sure (mean confidence {lc:.2f}), since its dots
break up the edges and textures the network was trained on; *{most}* the most ({mc:.2f}), since it keeps
the photo's shapes.

Read the test before the means: the Mann–Whitney p-value for photos against all paintings is
{p:.2f}. Six photos are too few to call the difference significant; one hard photo (the Hubble deep
field) pulls the photos' mean down, and a few paintings get confident answers about their medium. The
direction is consistent, the evidence thin. On more images it holds: on {sn} paintings
(Constable, Van Gogh, Seurat and others) against {sp} photographs, which artlab's developers test with
but do not ship, Lite0's mean confidence is {spc:.2f} for the photos and {sac:.2f} for the paintings,
p = {spp:.3f}. The cell below runs the same comparison on folders of your own.""".format(
        sn=Q["shared_paintings"], sp=Q["shared_photos"], spc=Q["shared_photo_confidence"],
        sac=Q["shared_painting_confidence"], spp=Q["shared_p_confidence"],
        pc=Q["photo_confidence"], ac=Q["painting_confidence"], pe=Q["photo_entropy"], ae=Q["painting_entropy"],
        lower=Q["lower_than_own_photo"], least=Q["least_sure_style"], lc=Q["least_sure_confidence"],
        most=Q["surest_style"], mc=Q["surest_confidence"], p=Q["p_confidence"])),
    code("""PAINTINGS = None   # e.g. "~/data/paintings" (class subfolders such as artists are fine)
PHOTOS = None      # e.g. "~/data/photos"
if PAINTINGS and PHOTOS:
    mine = {"paintings": predict(model, PAINTINGS, progress=True), "photos": predict(model, PHOTOS, progress=True)}
    for name, preds in mine.items():
        if preds.skipped:
            print(f"{name}: skipped {len(preds.skipped)} unreadable files, e.g. {preds.skipped[0]}")
    display(compare_confidence(mine), confidence_table(mine).round(3), mine["paintings"].plot())
else:
    print("Set PAINTINGS and PHOTOS to two folders of your own to compare them.")"""),
    md("""## 6. How far apart are paintings and photos, layer by layer?

Take two *sets* of images, pool each layer's feature maps to one vector per image (average over
positions), and compare the two clouds of vectors with three statistics:

- **Fréchet distance**: fit a Gaussian to each cloud and measure how far apart they are (the FID
  formula, per layer). With fewer images than dimensions the covariance is singular, so artlab
  shrinks it (Ledoit-Wolf) and says so in the `note` column.
- **KID / MMD**: kernel two-sample statistics that are unbiased for small sets; the permutation test
  gives a p-value for "the two sets come from the same distribution".
- **Linear-probe accuracy**: can a logistic regression tell the two sets apart from these features
  (cross-validated)? 0.5 means no, 1.0 means perfectly.

Every number comes with `n` and a 95% confidence interval; the seeds are fixed, so rerunning
gives the same table. (At the default settings this section takes under a minute on a laptop CPU;
the progress bar shows the layers as they are done.)"""),
    code("""photo_set = corpus.subset(domain="photo")
painting_set = corpus.subset(domain="painting")
store = act.FeatureStore()     # pooled features are reused by every call below
shift = act.domain_shift(photo_set, painting_set, model, size=SIZE, n_boot=BOOT, n_perm=PERM,
                         cache=store, names=("photos", "paintings"), progress=True)
shift.wide()"""),
    code("""shift.plot()"""),
    md("""**What the curve means.** Each measure asks, layer by layer, whether the network's description
of the two sets differs. Where they are near zero, the two sets look alike to the network; where they
grow (with a small MMD p-value and a probe clearly above 0.5), the network's features separate them.
With Lite0 at the default size the probe tells photos from paintings best in the middle of the network
(**{pbl}**: {pb:.2f}), where the channels respond to texture: brush strokes against photographic detail.
At the stem it is at {pf:.2f}, no signal: edges and colours are shared. But no MMD p-value is below
{pm:.2f}: with six photos this is a hint, not a finding.

Read the table before the curve:

- **n and the note column.** With 6 photos and dozens to hundreds of channels, every covariance is
  singular; the Fréchet value is then shrunk and biased (the note says so). KID and MMD stay unbiased.
- **The Fréchet interval** is for the distance itself, not for the inflated estimate: it comes from
  halves of each set (no image drawn twice) and is corrected for the bias. With fewer images than
  channels it often starts at 0 and ends at the estimate: the data say "somewhere below this value".
- **Negative KID or MMD** is not an error: an unbiased estimate of a difference that is really about 0
  scatters around 0, so a small negative value means *no detectable difference* (and the permutation
  p-value is then large).
- **A probe accuracy below 0.5** means *no signal*: the probe found nothing to learn, and the
  cross-validated accuracy of a classifier without a signal scatters around chance (on a handful of
  images it is even pessimistic: each held-out image pulls the classifier away from its own class).
- **The sample corpus is paired**: each painting is a painted copy of one of the six photographs,
  so subject and colour, which dominate pooled features, are shared by both sets. That hides much of
  the shift; real paintings against real photographs (section 9) differ in subject and colour too.""".format(
        pbl=Q["probe_best_layer"], pb=Q["probe_best"], pf=Q["probe_first_layer"], pm=Q["mmd_p_min"])),
    code("""shift.table[["layer", "measure", "value", "ci_low", "ci_high", "p_value", "n_a", "n_b", "dim", "note"]]"""),
    md("""## 7. Two painting styles

The same measures between two painting *styles*: pointillism against woodblock prints of the same
photographs. Here the network has no doubt. With Lite0 the MMD p-value is {sf:.2f} at the stem (the
same photos, the same colours) and at most {sd:.2f} at every later layer: dots and flat colour with
ink edges are different textures, and texture is what the middle and deep channels respond to.""".format(
        sf=Q["styles_mmd_p_first_layer"], sd=Q["styles_mmd_p_max_deeper"])),
    code("""styles = act.domain_shift(corpus.subset(style="pointillism"), corpus.subset(style="woodblock"), model,
                          size=SIZE, n_boot=BOOT, n_perm=PERM, cache=store, names=("pointillism", "woodblock"),
                          progress=True)
styles.wide()"""),
    md("""## 8. The domain-shift view

Curves of the three measures with their confidence bands. Click a layer to see the channels whose
mean activation differs most between the sets (Cohen's d), with example maps from each set."""),
    code("""from artlab.widgets import DomainShiftView

DomainShiftView.from_result(shift, photo_set, painting_set, model)"""),
    md("""## 9. For researchers: your own two folders

Point `FOLDER_A` and `FOLDER_B` at two folders of images (any sizes; every image is resized and
centre-cropped to the same size, and unreadable files are skipped and listed in `shift.notes`).
Features are cached in `store`, so trying other measures or layers does not recompute them."""),
    code("""FOLDER_A = None   # e.g. "~/data/wikiart/impressionism"
FOLDER_B = None   # e.g. "~/data/photos/landscapes"
if FOLDER_A and FOLDER_B:
    mine = act.domain_shift(FOLDER_A, FOLDER_B, model, size=224, cache=store, names=("A", "B"), progress=True)
    print("\\n".join(mine.notes))
    display(mine.wide(), mine.plot())
else:
    print("Set FOLDER_A and FOLDER_B to compare two folders of your own.")"""),
]

if __name__ == "__main__":
    main(cells, "01_how_cnns_see_art.ipynb")
