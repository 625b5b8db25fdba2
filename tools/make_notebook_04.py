"""Writes notebooks/04_embeddings.ipynb (outputs empty). Edit here, re-run, commit the result.

What the texts say about the figures is in ``QUOTED``: EfficientNet-Lite0 on the sample corpus at the
default settings, measured by tools/lesson_numbers.py (``embedding_claims``) and checked against a real run
by tests/test_notebooks.py.
"""

from notebook_writer import code, main, md

#: measured by `python tools/lesson_numbers.py` (EfficientNet-Lite0, sample corpus, 224 px, 5 folds)
QUOTED = {
    'embed_layer': 'stage6',
    'embed_channels': 192,
    'neighbour_styles': ['pointillism', 'brush', 'pointillism', 'kmeans', 'woodblock'],
    'neighbour_subjects': ['astronaut', 'coffee', 'motorcycle', 'coffee', 'coffee'],
    'photos_taken_for_kmeans': 5,
    'kmeans_taken_for_photos': 5,
    'style_probe_accuracy': 0.5536,
    'style_probe_chance': 0.1667,
    'gram_style_probe_accuracy': 0.3857,
    'domain_probe_balanced': 0.4833,
    # the developers' set of real paintings and photographs (../shared/data, not shipped; checked when present)
    'shared_paintings': 74,
    'shared_photos': 39,
    'shared_domain_probe_balanced': 0.9615,
}
TOLERANCE = {'style_probe_accuracy': 0.01, 'style_probe_chance': 0.01, 'gram_style_probe_accuracy': 0.01,
             'domain_probe_balanced': 0.01, 'shared_domain_probe_balanced': 0.01}
Q = QUOTED
_near = list(zip(Q["neighbour_styles"], Q["neighbour_subjects"]))
CUPS = [style for style, subject in _near if subject == "coffee"]
DOTS = [subject for style, subject in _near if style == "pointillism"]
GRAM_ENTRIES = f"{Q['embed_channels'] * (Q['embed_channels'] + 1) // 2:,}".replace(",", " ")

cells = [
    md("""# Embeddings: a whole collection on one map

A CNN layer turns each image into a long vector. Average each channel over the image and you get one
number per channel: an **embedding**. Images the network sees as alike get nearby vectors. This
lesson embeds the built-in corpus (photographs, and the same photographs painted in five styles),
draws the collection as a map, looks up an image's nearest neighbours, and trains a linear
classifier on the vectors to see which styles the network can tell apart.

The network is the best trained one on this machine (`best_backbone()`): VGG-19 when its ImageNet file is
cached (`artlab weights download vgg19`), otherwise EfficientNet-Lite0, whose ImageNet weights come with
artlab. The first cell prints which; every figure carries its label."""),
    code("""import os
import pandas as pd
import torch
from artlab.embed import linear_probe
from artlab.data import Collection, sample_corpus
from artlab.embed import embed, nearest
from artlab.figures import corpus_grid, image_row
from artlab.images import load_image
from artlab.models import best_backbone

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 224
METHOD = "pca" if QUICK else "umap"   # UMAP's first fit compiles for ~17 s: PCA keeps the quick run quick

corpus = sample_corpus(progress=True)
model = best_backbone()   # VGG-19 if cached, else EfficientNet-Lite0 (bundled); both trained on ImageNet
print(model.note)
print(corpus.summary())"""),
    code("""corpus_grid(corpus)"""),
    md("""## 1. One vector per image

`embed` runs every image through the network up to one layer and pools each channel's map to its mean.
The layer is the network's embedding layer, deep enough for subject and composition: for
EfficientNet-Lite0 `{layer}` ({channels} channels), for VGG-19 `relu4_2`. `print(emb)` says which. Vectors
are cached on disk by file content, model and settings, so a second call (or a bigger folder that grew by
ten images) only computes what is new.""".format(layer=Q["embed_layer"], channels=Q["embed_channels"])),
    code("""emb = embed(corpus, model, size=SIZE, progress=True)
print(emb)
emb.to_frame().head()"""),
    md("""## 2. The map

Each point is an image; colour is its `label` (here the style: `photo` or one of the painterly
filters). Choose another column under **colour by** (`subject`, `domain`). Hover a point to see the
picture, **box or lasso select** a group to list it below (and export the list as CSV), type in
**search** to pick images by file name or metadata, and **click** a point to see its nearest
neighbours. With `method="umap"` the map opens on PCA and moves to UMAP once it is computed in the
background; the status line says when."""),
    code("""from artlab.widgets import EmbeddingMap

emap = EmbeddingMap(corpus, emb, method=METHOD, color_by="label")
emap"""),
    md("""Do the points group by **style** (all pointillist images together) or by **subject** (the coffee
cup in every style together)? Switch *colour by* between `label` and `subject` and look. A network
trained on photographs is rewarded for recognising an object whatever its colours and texture, so at
deep layers it leans towards grouping by subject; the nearest neighbours below show how far that goes
here."""),
    md("""## 3. Nearest neighbours

`nearest` ranks every image by its similarity to a query: an image of the collection (by index
or path), or a new image, which is embedded with the same model, layer and size. The *similarity* is
the cosine of the two vectors after subtracting the collection's average vector: pooled channel means
are all positive, so raw cosines sit near 1 for any two images, while centred ones read 0 for "as alike
as two images of this collection are on average". *closer_than* says what share of the collection a
neighbour is closer than."""),
    code("""query = emb.paths.index(str(corpus.subset(style="pointillism", subject="coffee")[0].path))
neighbours = nearest(emb, query, k=5)
neighbours[["rank", "path", "similarity", "closer_than", "label", "subject"]]"""),
    code("""row = {"query": load_image(emb.paths[query], size=96)}
row |= {f"{r.rank}. {r.label}/{r.subject}\\n{r.similarity:.3f}": load_image(r.path, size=96)
        for r in neighbours.itertuples()}
image_row(row, title="Nearest neighbours of the pointillist coffee", model=model)"""),
    md("""With Lite0 the nearest neighbour is the {first} in {first_style}. Of the five nearest, {ncups} are
the coffee cup in other styles ({cups}) and {ndots} are pointillist paintings of other subjects ({dots}): at
the `{layer}` layer the network keeps both, the cup as a subject and the dots as a texture of their own.
Below, a mirrored copy, which is not in the collection, finds its original first.""".format(
        first=Q["neighbour_subjects"][0], first_style=Q["neighbour_styles"][0], ncups=len(CUPS),
        cups=", ".join(CUPS), ndots=len(DOTS),
        dots=" and ".join(f"the {d}" for d in DOTS), layer=Q["embed_layer"])),
    code("""mirrored = torch.flip(load_image(emb.paths[query], size=SIZE), dims=[3])   # not in the collection
nearest(emb, mirrored, k=3, model=model)[["rank", "path", "similarity", "label"]]"""),
    md("""## 4. Can a linear classifier tell the styles apart?

A **linear probe** fits a logistic regression on the vectors and tests it on images it has not seen
(5-fold cross-validation). High accuracy means the styles are linearly separable at this layer.
Compare with chance (one class in six). The confusion matrix says which styles get mixed up."""),
    code("""probe = linear_probe(emb, folds=3 if QUICK else 5)
print(probe)
probe.plot_confusion()"""),
    md("""With Lite0 the probe gets **{acc:.2f}** of the images right against a chance of {chance:.2f}: well
above chance, far from perfect. The confusion matrix says where it fails. The rows *photo* and *kmeans*
are swapped: {pk} of the 6 photos are taken for k-means copies and {kp} of the 6 k-means copies for photos.
K-means only flattens the colours and keeps every shape, so to the network a photo and its k-means copy
are nearly the same vector; with one of each per subject, the closest training image of a held-out photo
is its own k-means copy, and the probe answers with that one's class. The filters that change the picture
more (dots, superpixels) are recognised best.

Click a cell of the heatmap to see the images behind it: off the diagonal, the ones the probe
got wrong (true class = row, predicted = column), with their paths.""".format(
        acc=Q["style_probe_accuracy"], chance=Q["style_probe_chance"], pk=Q["photos_taken_for_kmeans"],
        kp=Q["kmeans_taken_for_photos"])),
    code("""from artlab.widgets import ClassifierView

ClassifierView(probe, emb, corpus, thumbnails=emap.thumbs)"""),
    md("""Style lives in the correlations between channels (notebook 02), which a channel mean throws
away. Pooling with the **Gram matrix** (`pooling="gram"`) keeps them. And is painting-or-photo an easier
question than which of six classes? The table asks both."""),
    code("""rows = []
for pooling in ("mean", "gram"):
    e = emb if pooling == "mean" else embed(corpus, model, pooling=pooling, size=SIZE, progress=True)
    for question in ("label", "domain"):
        p = linear_probe(e, question, folds=3 if QUICK else 5)
        rows.append({"pooling": pooling, "predicts": question, "accuracy": p.accuracy,
                     "balanced": p.balanced_accuracy, "chance": p.chance})
pd.DataFrame(rows).round(3)"""),
    md("""Two results that go against intuition, and why (Lite0's numbers; the table shows yours):

* **Gram pooling does worse here** ({gram:.2f} against {mean:.2f} for the six classes). The `{layer}` layer
  has {channels} channels, so its Gram matrix has {entries} distinct entries; artlab projects them at
  random to 256 numbers, and what sets the styles apart is diluted among all the rest. The Gram matrices of a
  shallower, narrower layer are the style descriptor of notebook 02: try
  `embed(corpus, model, layer=model.spec.style_layers[2], pooling="gram")`.
* **Painting or photo is not easier.** Read the *balanced* column, the mean of the per-class hit rates:
  {dom:.2f}, no better than guessing (0.5). The raw accuracy looks better only because five images in six
  are paintings. Each photo has five painted copies, so a held-out photo's nearest training images are its
  own copies, and the probe calls it a painting. Real paintings and photographs differ in subject and colour
  too: on {sn} paintings against {sp} photographs (a set artlab's developers test with but
  do not ship), the same probe's balanced accuracy is {sdom:.2f}.""".format(
        gram=Q["gram_style_probe_accuracy"], mean=Q["style_probe_accuracy"], dom=Q["domain_probe_balanced"],
        layer=Q["embed_layer"], channels=Q["embed_channels"], entries=GRAM_ENTRIES,
        sn=Q["shared_paintings"], sp=Q["shared_photos"], sdom=Q["shared_domain_probe_balanced"])),
    md("""## 5. Your own collection

Point `MY_FOLDER` at a folder of images: class subfolders (`wikiart/Impressionism/…`, as in the
WikiArt dumps) or a folder with a `metadata.csv` (a path/file column plus artist, style, genre, year…,
as in Kaggle's WikiArt and "best artworks" sets). Unreadable files are skipped and listed. The cell
does nothing until a path is set. For a no-code page of the same map, run
`artlab explore FOLDER` in a terminal."""),
    code("""MY_FOLDER = ""   # e.g. "~/data/wikiart"

if MY_FOLDER:
    from IPython.display import display

    mine = Collection.from_folder(MY_FOLDER)
    print(mine.summary())
    mine_emb = embed(mine, model, size=SIZE, progress=True)
    mine_map = EmbeddingMap(mine, mine_emb, method="umap", color_by="label")
    display(mine_map)
    if len(mine.classes) >= 2:
        display(ClassifierView(linear_probe(mine_emb), mine_emb, mine, thumbnails=mine_map.thumbs))
else:
    print("Set MY_FOLDER to a folder of images to map it (nothing done).")"""),
    md("""## Where next

* `artlab.embed.map_points("umap" | "pca" | "tsne", emb, dims=3)` and `EmbeddingMap(..., dims=3)` for a 3-D map.
* `artlab.embed.finetune(folder)` trains a small classifier end to end instead of a linear probe.
* The StyleGAN notebook (05) walks *generated* images between classes."""),
]

if __name__ == "__main__":
    main(cells, "04_embeddings.ipynb")
