"""Writes notebooks/04_embeddings.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, md, write

cells = [
    md("""# Embeddings: a whole collection on one map

A CNN layer turns each image into a long vector. Average each channel over the image and you get one
number per channel: an **embedding**. Images the network sees as alike get nearby vectors. This
lesson embeds the built-in corpus (photographs, and the same photographs painted in five styles),
draws the collection as a map, looks up an image's nearest neighbours, and trains a linear
classifier on the vectors to see which styles the network can tell apart.

Without ImageNet weights (`artlab weights list`) VGG-19 runs with a seeded random init: the red label
says so on every figure, and the map then shows what the *architecture* alone groups together."""),
    code("""import os
import pandas as pd
import torch
from artlab.data import Collection, sample_corpus
from artlab.embed import embed, linear_probe, nearest
from artlab.figures import corpus_grid, image_row
from artlab.images import load_image
from artlab.models import backbone

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
SIZE = 64 if QUICK else 224
METHOD = "pca" if QUICK else "umap"   # UMAP's first fit compiles for ~17 s: PCA keeps the quick run quick

corpus = sample_corpus()
model = backbone("vgg19", weights="auto")
print(corpus.summary())
model.label"""),
    code("""corpus_grid(corpus)"""),
    md("""## 1. One vector per image

`embed` runs every image through the network up to one layer (`relu4_2` for VGG: deep enough for
subject and composition) and pools each channel's map to its mean. Vectors are cached on disk by
file content, model and settings, so a second call (or a bigger folder that grew by ten images) only
computes what is new."""),
    code("""emb = embed(corpus, model, size=SIZE)
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
trained on photographs tends to group by subject at deep layers; the painterly filters change
colours and texture, which the deep layers are built to ignore."""),
    md("""## 3. Nearest neighbours

`nearest` ranks every image by cosine similarity to a query: an image of the collection (by index
or path), or a new image, which is embedded with the same model, layer and size."""),
    code("""query = emb.paths.index(str(corpus.subset(style="pointillism", subject="coffee")[0].path))
neighbours = nearest(emb, query, k=5)
neighbours[["rank", "path", "similarity", "label", "subject"]]"""),
    code("""row = {"query": load_image(emb.paths[query], size=96)}
row |= {f"{r.rank}. {r.label}/{r.subject}\\n{r.similarity:.3f}": load_image(r.path, size=96)
        for r in neighbours.itertuples()}
image_row(row, title="Nearest neighbours of the pointillist coffee", model=model)"""),
    code("""mirrored = torch.flip(load_image(emb.paths[query], size=SIZE), dims=[3])   # not in the collection
nearest(emb, mirrored, k=3, model=model)[["rank", "path", "similarity", "label"]]"""),
    md("""## 4. Can a linear classifier tell the styles apart?

A **linear probe** fits a logistic regression on the vectors and tests it on images it has not seen
(5-fold cross-validation). High accuracy means the styles are linearly separable at this layer.
Compare with chance (one class in six). The confusion matrix says which styles get mixed up."""),
    code("""probe = linear_probe(emb, folds=3 if QUICK else 5)
print(probe)
probe.plot_confusion()"""),
    md("""An accuracy *below* chance is possible, and telling: it happens when the vectors group by
**subject**. Each test image's closest training images then show the same subject in the *other*
styles, so the probe predicts one of those. Random weights do this readily (colour and layout
dominate); ImageNet features are more likely to carry the texture that sets the styles apart.

Click a cell of the heatmap to see the images behind it: off the diagonal, the ones the probe
got wrong (true class = row, predicted = column), with their paths."""),
    code("""from artlab.widgets import ClassifierView

ClassifierView(probe, emb, corpus, thumbnails=emap.thumbs)"""),
    md("""Style lives in the correlations between channels (notebook 02), which a channel mean throws
away. Pooling with the **Gram matrix** (`pooling="gram"`) keeps them; the same probe then sees a
different picture. And painting-versus-photo is a much easier question than which of five styles."""),
    code("""rows = []
for pooling in ("mean", "gram"):
    e = emb if pooling == "mean" else embed(corpus, model, pooling=pooling, size=SIZE)
    for question in ("label", "domain"):
        p = linear_probe(e, question, folds=3 if QUICK else 5)
        rows.append({"pooling": pooling, "predicts": question, "accuracy": p.accuracy,
                     "balanced": p.balanced_accuracy, "chance": p.chance})
pd.DataFrame(rows).round(3)"""),
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
    mine_emb = embed(mine, model, size=SIZE)
    mine_map = EmbeddingMap(mine, mine_emb, method="umap", color_by="label")
    display(mine_map)
    if len(mine.classes) >= 2:
        display(ClassifierView(linear_probe(mine_emb), mine_emb, mine, thumbnails=mine_map.thumbs))
else:
    print("Set MY_FOLDER to a folder of images to map it (nothing done).")"""),
    md("""## Where next

* `artlab.embed.project("umap" | "pca" | "tsne", emb, dims=3)` and `EmbeddingMap(..., dims=3)` for a 3-D map.
* `artlab.embed.finetune(folder)` trains a small classifier end to end instead of a linear probe.
* The StyleGAN notebook (05) walks *generated* images between classes."""),
]
write(cells, "04_embeddings.ipynb")
