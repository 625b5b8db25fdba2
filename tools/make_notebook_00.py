"""Writes notebooks/00_start_here.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, md, write
cells = [
    md("""# Start here: how does a CNN see a painting?

This notebook is the first stop in **artlab**. In five minutes on a laptop CPU you will

1. open the built-in **sample corpus** (photographs, and the same photographs painted by classic filters),
2. load a **CNN backbone** (VGG-19) with the layer names from the papers (`conv1_1`, `relu3_1`, …),
3. look at its **feature maps** for a painting beside the photo it was painted from.

Everything runs offline. If ImageNet weights are not in your torch hub cache the network uses a *random
init*, and every figure says so in red: run `artlab weights list` in a terminal to see which file to fetch."""),
    code("""import os
import torch
from artlab.data import sample_corpus
from artlab.images import load_image, image_grid, to_pil
from artlab.models import backbone, features
from artlab.figures import corpus_grid, feature_map_grid

# Small settings when the test suite runs this notebook headless.
QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")
SIZE = 128 if QUICK else 256"""),
    md("""## 1. The sample corpus

`sample_corpus()` builds it on first use (about half a minute) from the photographs bundled with
scikit-image, and caches it. Each photo also appears painted in five styles: k-means colour
quantisation, SLIC superpixel mosaic, pointillism, brush strokes and woodblock (flat colour + ink edges)."""),
    code("""corpus = sample_corpus()
print(corpus.summary())
corpus_grid(corpus)"""),
    md("""## 2. A painting and a photo

Every image in artlab is a float32 tensor of shape N×3×H×W with values in [0, 1]. `load_image` accepts a
path, a PIL image or a numpy array, fixes EXIF orientation and odd colour modes, and refuses broken files
with a clear message. Try your own: `load_image("path/to/painting.jpg", size=SIZE)`."""),
    code("""painting = corpus.subset(style="brush", subject="chelsea").load(0, (SIZE, SIZE))
photo = corpus.subset(style="photo", subject="chelsea").load(0, (SIZE, SIZE))
print(painting.shape, painting.dtype, float(painting.min()), float(painting.max()))
to_pil(image_grid(torch.cat([painting, photo]), nrow=2))"""),
    md("""## 3. A backbone with the layer names you know

`backbone("vgg19", weights="auto")` uses ImageNet weights when they are cached and a seeded random init
otherwise. The ImageNet normalisation happens inside the model, so you always pass plain [0, 1] images.
`features(model, images, layers)` runs the network only as far as the deepest layer you ask for."""),
    code("""model = backbone("vgg19", weights="auto")
print(model.label)
print(model.layer_names[:12], "…")
acts = features(model, torch.cat([painting, photo]), ["relu1_1", "relu3_1", "relu5_1"])
{layer: tuple(a.shape) for layer, a in acts.items()}"""),
    md("""## 4. Feature maps: painting beside photo

Shallow layers (`relu1_1`) respond to edges and colour; deeper layers (`relu5_1`) to larger, more abstract
patterns at coarser resolution. Compare where the brush strokes light up channels that the photo leaves dark."""),
    code("""feature_map_grid(model, {"painting": painting, "photo": photo}, ["relu1_1", "relu3_1", "relu5_1"], channels=6)"""),
    md("""## 5. Explore interactively

Pick a layer, the number of channels and their order; both images update in place. The forward pass is
computed once and cached, so the controls respond immediately."""),
    code("""from artlab.widgets import FeatureMapViewer

viewer = FeatureMapViewer(model, {"painting": painting, "photo": photo},
                          layers=[n for n in model.layer_names if n.startswith("relu")])
viewer"""),
    md("""## Where next

* Your own collection: `Collection.from_folder("path/to/wikiart")` reads class subfolders or a metadata CSV.
* `artlab demo` writes the whole tour as an HTML page; `artlab weights list` shows pretrained files."""),
]
write(cells, "00_start_here.ipynb")
