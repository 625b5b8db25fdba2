"""Writes notebooks/08_what_a_layer_sees.ipynb (outputs empty). Edit here, re-run, commit the result.

The texts quote no measured numbers: they say what each figure is and what to look for, and the
tables and titles print the numbers of the run in front of you.
"""

from notebook_writer import code, lite0_spec, main, md, names

LITE0 = lite0_spec()
cells = [
    md("""# What a layer sees: inversions, channel visualisations, DeepDream and class activation maps

Notebook 01 looked at feature maps: how strongly each channel responds where. This lesson asks the
converse questions, each with a method from the interpretability literature:

1. **What does a layer keep of an image?** Reconstruct the image from one layer's activation alone,
   starting from noise (feature inversion, Mahendran & Vedaldi 2015), at every depth, for a painting
   and for the photo it was painted from.
2. **What does one channel respond to?** Optimise an image that excites it (feature visualisation,
   Olah et al. 2017), beside the patches of real images that excite it most, paintings and photos
   apart. The channels shown are those whose mean activation differs most between paintings and
   photos in the sample corpus.
3. **What happens when the network amplifies what it sees in a painting?** DeepDream (Mordvintsev et
   al. 2015).
4. **Where is the evidence for the network's guess?** Grad-CAM, Grad-CAM++ and LayerCAM for the
   predicted class of a photo and of a painting, beside the top-5 predictions.
5. **The neuron atlas**: all of the above for any layer and channel, in one widget.

The network is the best trained one on this machine (`best_backbone()`): VGG-19 when its ImageNet file
is cached, otherwise the bundled EfficientNet-Lite0, whose per-layer views are {inspect} (shallow to
deep; VGG-19's are its style layers `relu1_1` … `relu5_1`). The code asks the model for its layers
(`model.spec`), so it runs with either.
Every figure is stamped with the network it came from.""".format(inspect=names(LITE0.inspect_layers))),
    code("""import os
import pandas as pd
from artlab import explain as X
from artlab.data import Collection, Item, cache_root, sample_corpus
from artlab.figures import image_row
from artlab.models import best_backbone, receptive_field

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 224          # what the network sees: the channel index, the CAMs
STRIP_SIZE = 48 if QUICK else 128    # inversions are one optimisation per depth: a smaller image
INV_STEPS = 3 if QUICK else 100
VIS_SIZE = 48 if QUICK else 128
VIS_STEPS = 4 if QUICK else 256
DREAM = dict(octaves=2, steps_per_octave=2) if QUICK else dict(octaves=4, steps_per_octave=10)

model = best_backbone()      # VGG-19 if cached, else EfficientNet-Lite0 (bundled): both trained on ImageNet
print(model.note)
layers = list(model.spec.inspect_layers or model.spec.style_layers)   # VGG-19: relu1_1 … relu5_1
print("layers, shallow to deep:", layers)

corpus = sample_corpus(progress=True)   # six photographs and 30 painted versions of them (256 px)
painting = corpus.subset(style="brush", subject="astronaut").load(0, (SIZE, SIZE))
photo = corpus.subset(style="photo", subject="astronaut").load(0, (SIZE, SIZE))
pair = {"painting": painting, "photo": photo}
image_row(pair, title="The painting and its photo")"""),
    md("""## 1. What each depth keeps: inversion strips

Each row starts with an image; every other column is an image reconstructed from **that layer's
activation only**, starting from noise: the optimiser changes the pixels until the layer's response
matches the original's (plus a small smoothness prior, total variation, so the result is not made of
pixel noise). Whatever the reconstruction gets right, the layer still encodes; whatever it gets wrong
or invents, the layer has thrown away.

Compare the columns from left to right, and the painting's row with the photo's: where do the two
rows stop looking like their originals, and do the brush strokes survive longer or shorter than the
photo's fine detail?"""),
    code("""strip_layers = layers[::3] if QUICK else layers
# Adam: one forward pass per step, so every depth costs the same; L-BFGS (invert's default) line-searches and
# can take many times longer per step on a CPU
strips = {name: X.inversion_strip(model, image, strip_layers, size=STRIP_SIZE, steps=INV_STEPS, optimizer="adam",
                                  progress=True)
          for name, image in pair.items()}
X.plot_inversion_strip(pair, strips, model)"""),
    md("""## 2. Channels that tell paintings from photos

A **channel index** runs every image of the corpus through the network once and keeps, per image and
channel of one layer, the maximum activation, where it is, and the mean. From the means,
`rank_channels_by_domain` orders the channels by how differently they respond to paintings and to
photos: `effect` is the difference of the two domains' means over their pooled standard deviation
(Cohen's d; positive: stronger on paintings). The index is cached on disk by file content, so the
widget below reuses it."""),
    code("""LAYER = layers[2]   # Lite0: stage3, VGG-19: relu3_1: units that see a part of the image, not all of it
size, stride = receptive_field(model, LAYER)
print(f"{LAYER}: each unit sees {size} px of a {SIZE} px image, units {stride} px apart")
store = X.ChannelIndexStore(cache_root() / "channel-index")
index = X.channel_index(model, corpus, LAYER, size=SIZE, cache=store, progress=True)
ranking = index.rank_channels_by_domain("painting", "photo")
ranking.head(8).round(3)"""),
    md("""## 3. What those channels respond to

For the three channels at the top of the ranking: on the left, an image optimised to excite the channel
(a Fourier-parameterised image with decorrelated colours, randomly jittered, scaled and rotated at every
step so that the result is a pattern the channel responds to wherever it appears); then the three
**painting** patches and the three **photo** patches of the corpus where the channel's maximum is
highest, each cut to the channel's receptive field around that maximum, with the activation in the
caption.

A visualisation is one image that excites the channel, not a description of it; read it together with
the patches. Where the painting patches carry higher activations than the photo patches, the channel
is one that prefers paintings (a positive `effect` above), and the other way round."""),
    code("""for c in [int(c) for c in ranking.index[:3]]:
    vis = X.visualize_channel(model, LAYER, c, size=VIS_SIZE, steps=VIS_STEPS, progress=True)
    tiles = {"visualisation": vis}
    for domain in ("painting", "photo"):
        found = index.top_examples(c, k=3, domain=domain)
        for e, crop in zip(found, index.crops(found)):
            tiles[f"{domain} · {e.activation:.2f}"] = crop[None]
    display(image_row(tiles, title=f"{LAYER} channel {c} (effect {ranking.loc[c, 'effect']:+.2f})", model=model))"""),
    md("""## 4. DeepDream on a painting

DeepDream runs the optimisation the other way round from inversion: it starts from the painting itself
and changes it so that one layer's activation grows, whatever the layer already responds to in it is
amplified. It works in octaves, small to large, so patterns appear at several scales. Compare the
result with the original: the patterns it adds are what that layer looks for in this painting."""),
    code("""DREAM_LAYER = layers[3]   # Lite0: stage4; VGG-19: relu4_1
big_painting = corpus.subset(style="brush", subject="astronaut").load(0, (VIS_SIZE * 2, VIS_SIZE * 2))
dream = X.deepdream(model, big_painting, DREAM_LAYER, progress=True, **DREAM).run()
image_row({"painting": big_painting, f"DeepDream at {DREAM_LAYER}": dream.image},
          title="DeepDream", model=model, size=3.2)"""),
    md("""## 5. Where the evidence for the guess lies

For each image: the network's top-5 ImageNet classes (right), and three class activation maps of its
top-1 class at the last spatial layer (red: positions whose features raise that class's score most).
**Grad-CAM** weighs each channel by its gradient averaged over the image; **Grad-CAM++** weighs
positions so that several instances of the class all count; **LayerCAM** keeps every position's own
gradient, which stays sharper at shallow layers. The maps explain the guess, right or wrong: a photo
and a painting of the same astronaut need not get the same class, nor look for it in the same place."""),
    code("""X.plot_cams(model, {"photo": photo, "painting": painting}, k=5, size=SIZE)"""),
    md("""Grad-CAM and LayerCAM again, at the layer of sections 2 and 3, whose grid is finer (the `layer`
argument takes any spatial layer before the classifier). Compare how the two methods spread the
evidence there."""),
    code("""X.plot_cams(model, {"photo": photo, "painting": painting}, layer=LAYER, methods=("gradcam", "layercam"),
            k=5, size=SIZE)"""),
    md("""## 6. The neuron atlas

Pick a layer and a channel, or step through the channels in the order of section 2 with **next by
difference** / **prev by difference**. The atlas shows the channel's top patches from paintings and
from photos, a histogram of its maximum activation per image in each domain, and, on request:
**Visualise** (the optimised image, previewed as it runs; **Stop** keeps what it has), **Invert across
depths** (the inversion strip of the chosen image) and **Show CAM** (the chosen method at the selected
layer, for the predicted class). A layer's index is computed the first time you pick it (one pass over
the corpus) and cached."""),
    code("""from artlab.widgets import NeuronAtlas

NeuronAtlas(model, corpus, layer=LAYER, images=pair, size=SIZE, vis_size=VIS_SIZE, steps=VIS_STEPS, cache=store)"""),
    md("""## 7. For researchers: your own paintings and photos

Point `PAINTINGS` and `PHOTOS` at two folders of images (any sizes: each is resized and centre-cropped
to `SIZE`; unreadable files are skipped and listed in the index's `notes`). The cell builds one
collection with each image's domain, ranks the channels of `LAYER` and opens the atlas on it."""),
    code("""PAINTINGS = None   # e.g. "~/data/paintings"
PHOTOS = None      # e.g. "~/data/photos/landscapes"
if PAINTINGS and PHOTOS:
    mine = Collection([Item(item.path, item.label, {**item.meta, "domain": domain})
                       for domain, folder in (("painting", PAINTINGS), ("photo", PHOTOS))
                       for item in Collection.from_folder(folder)])
    my_index = X.channel_index(model, mine, LAYER, size=224, cache=store, progress=True)
    print("\\n".join(my_index.notes))
    display(my_index.rank_channels_by_domain("painting", "photo").head(8).round(3))
    display(NeuronAtlas(model, mine, layer=LAYER, size=224, cache=store))
else:
    print("Set PAINTINGS and PHOTOS to explore two folders of your own.")"""),
]

if __name__ == "__main__":
    main(cells, "08_what_a_layer_sees.ipynb")
