"""Writes notebooks/02_gram_matrices.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, lite0_spec, main, md, names

LITE0 = lite0_spec()
cells = [
    md("""# Gram matrices: what "style" is to a CNN

Gatys, Ecker and Bethge (2015) described the *style* of an image by the correlations between a CNN's
feature channels: the **Gram matrix** of a layer. This lesson builds one by hand, compares a painting's
Grams with a photo's, shows what a Gram keeps (texture) and forgets (where things are), and finally
synthesises textures from Grams alone.

**About the layer names.** Gatys et al. used **VGG-19** and its layers `relu1_1`, `relu2_1`, … `relu5_1`;
you will meet those names in every paper on style. This notebook uses the best trained network on this
machine (`best_backbone()`): VGG-19 when its ImageNet file is cached (`artlab weights download vgg19`),
otherwise the bundled EfficientNet-Lite0, whose style layers are {lite} (block outputs from 112 px
down to 14 px at a 224 px input, chosen to play the same roles). The code asks the model for its layers
(`model.spec.style_layers`), so it runs with either; the first cell prints which network you have.""".format(lite=names(LITE0.style_layers))),
    code("""import os
import warnings
import pandas as pd
import torch
from artlab.data import sample_corpus
from artlab.models import best_backbone, features, receptive_field
from artlab.gram import ReceptiveFieldWarning, gram, compute_grams, style_distance, shuffle_patches, shuffle_experiment, texture_from
from artlab.figures import image_row, style_distance_bars

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 192
STEPS = 8 if QUICK else 150

model = best_backbone()                 # VGG-19 if cached, else EfficientNet-Lite0 (bundled); both trained
print(model.note)
style = list(model.spec.style_layers)   # VGG: relu1_1 … relu5_1; Lite0: stem, stage2 …
print("style layers:", style, "| content layer:", model.spec.content_layer)
deepest = style[-1]
print(f"one unit of {deepest} sees {receptive_field(model, deepest)[0]} px; the lesson's images are {SIZE} px")
# When that is more than the image, the layer's Gram describes the layout more than the texture, and artlab
# warns in every call. That is expected at lesson sizes, so the warning is silenced here.
warnings.filterwarnings("ignore", category=ReceptiveFieldWarning)"""),
    md("""## 1. A Gram matrix by hand

Take a feature map with C channels over H×W positions and flatten each channel into a row of length
H·W: the matrix F is C × (H·W). The Gram matrix is **G = F Fᵀ**: entry (i, j) is how strongly
channels i and j fire *together*, summed over all positions. Position is summed away, and that is
the whole point. artlab divides by C·H·W by default (`normalize="gatys"`); `"hw"` divides by H·W."""),
    code("""F = torch.tensor([[[[1., 0.], [0., 1.]],     # channel 0: a diagonal pattern
                   [[0., 1.], [1., 0.]],     # channel 1: the other diagonal
                   [[1., 1.], [1., 1.]]]])   # channel 2: on everywhere
flat = F.reshape(3, 4)
by_hand = flat @ flat.T / (3 * 4)
print(by_hand)
assert torch.allclose(by_hand, gram(F, normalize="gatys")[0])
print("channels 0 and 1 never fire together (0), each fires with channel 2 half the time.")"""),
    md("""## 2. A painting and a photo, layer by layer

The per-layer style distance is the mean squared difference between two Gram matrices (a Gatys style
loss term). Low layers compare colours and fine strokes; high layers compare larger motifs. Compare
the two columns: how far is the pointillist coffee cup from its own photo, and how far are two
unrelated photographs? (Distances of different layers have different scales: compare within a layer.)
With Lite0, at the first style layer, whose Grams record colour, the painting is almost identical to its
photo (the dots keep the colours) while the two photos differ; from the second layer on, the dots are a
texture of their own, and the painting's distance grows to between a quarter and two thirds of that
between two unrelated photographs."""),
    code("""corpus = sample_corpus(progress=True)
photo = corpus.subset(style="photo", subject="coffee").load(0, (SIZE, SIZE))
painting = corpus.subset(style="pointillism", subject="coffee").load(0, (SIZE, SIZE))
other_photo = corpus.subset(style="photo", subject="rocket").load(0, (SIZE, SIZE))
pairs = {
    "pointillist coffee vs photo": style_distance(painting, photo, model=model),
    "coffee photo vs rocket photo": style_distance(photo, other_photo, model=model),
}
pd.DataFrame({name: d.per_layer for name, d in pairs.items()})"""),
    code("""style_distance_bars({name: d.per_layer for name, d in pairs.items()}, model)"""),
    md("""## 3. The Gram inspector

Choose a layer and a normalisation; channels are ordered by hierarchical clustering of *both* Grams
together, so correlated channel groups form blocks that line up between the two heatmaps. Zoom with
the block sliders. The bars show the per-layer distances. **Synthesise texture** starts from noise
and matches the painting's Grams, previewing as it goes; **Stop** keeps the best image so far."""),
    code("""from artlab.widgets import GramInspector

inspector = GramInspector(model, painting, photo, names=("painting", "photo"), block=32)
inspector"""),
    md("""## 4. What a Gram forgets: shuffle the patches

Cut the photo into tiles and shuffle them. The *content* (the features at the content layer, VGG's
`relu4_2` or Lite0's `stage4`, compared position by position) changes a lot as the tiles get smaller;
the *style* (Grams) moves much less, because a Gram sums over positions. Only the tile borders are new
texture."""),
    code("""tiles = [SIZE // 2, SIZE // 4, SIZE // 8]
image_row({f"{t} px tiles": shuffle_patches(photo, t, seed=0) for t in tiles} | {"original": photo},
          title="Shuffled patches")"""),
    code("""print("for scale, the total style distance of section 2's pairs:",
      {name: round(d.total, 4) for name, d in pairs.items()})
pd.DataFrame(shuffle_experiment(model, photo, tiles=tiles))"""),
    md("""Read each column from top to bottom. The content distance is large already with the biggest
tiles: things are no longer where they were. The style distance starts far below that of any real pair
above and grows only as the tiles get small, because the many new tile borders are a texture of their
own (straight edges the photo did not have)."""),
    md("""## 5. What a Gram keeps: textures from Grams alone

Starting from noise, optimise an image until its Grams match the painting's at a growing set of layers
(the first style layer only, then the first two, three, and all of them: with VGG `relu1_1`, then up to
`relu2_1`, … `relu5_1`, as in Gatys et al.'s texture paper). Low layers carry colour and fine grain;
adding higher layers brings back larger structures, but never the layout of the original. With Lite0
the first layer alone gives the palette as soft blotches, the second adds the grain of the dots, and the
deeper ones bring curved strokes like pieces of the cup's rim, scattered anywhere."""),
    code("""layer_sets = {style[0]: style[:1]} | {f"…{style[k - 1]}": style[:k] for k in (2, 3, len(style))}
textures = {name: texture_from(model, painting, layers, steps=STEPS, seed=0) for name, layers in layer_sets.items()}
image_row({"painting": painting} | textures, title="Textures synthesised from Grams", model=model)"""),
    md("""## Where next

* `artlab.gram.style_distance_matrix(model, images)` compares a whole set of images.
* The style transfer lab (notebook 03) adds a content term to this texture loss."""),
]

if __name__ == "__main__":
    main(cells, "02_gram_matrices.ipynb")
