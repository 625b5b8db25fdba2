"""Writes notebooks/00_start_here.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, lite0_spec, main, md, names

LITE0 = lite0_spec()
cells = [
    md("""# Start here: how does a CNN see a painting?

This notebook is the first stop in **artlab**. In five minutes on a laptop CPU you will

1. load the best **trained CNN** on this machine and see which one it is,
2. open the built-in **sample corpus** (photographs, and the same photographs painted by classic filters),
3. look at the network's **feature maps** for a painting beside the photo it was painted from.

Everything runs offline. `best_backbone()` picks the network: **VGG-19** (the network of Gatys et al.'s
style papers, with the layer names `conv1_1`, `relu3_1`, … you meet in them) when its ImageNet file is in
your torch hub cache, otherwise **EfficientNet-Lite0**, whose ImageNet weights come with artlab (layer names
`stem`, `stage1` … `stage7`, `head`). Both are real, trained networks. The first cell prints which one you
have and how to get VGG-19 (`artlab weights download vgg19` in a terminal, 548 MB).

**This notebook is your copy.** `artlab lab` opens the lessons from your own folder (`~/artlab-lessons`
unless you chose another with `--dir`), so run and change them freely: the files they save land beside
them, and a copy you changed or ran is never overwritten when artlab brings a new version (it goes beside
yours as `NN_name-new.ipynb`). `artlab lab --reset 00` brings back the original and keeps yours as
`00_start_here-yours.ipynb`."""),
    code("""import os
import torch
from artlab.data import sample_corpus
from artlab.images import load_image, image_grid, to_pil
from artlab.models import best_backbone, features
from artlab.figures import corpus_grid, feature_map_grid

# Small settings when the test suite runs this notebook headless.
QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")
SIZE = 128 if QUICK else 256

model = best_backbone()   # VGG-19 if its ImageNet file is cached, else the bundled EfficientNet-Lite0
print(model.note)"""),
    md("""## 1. The sample corpus

`sample_corpus()` builds it on first use (about half a minute) from the photographs bundled with
scikit-image, and caches it. Each photo also appears painted in five styles: k-means colour
quantisation, SLIC superpixel mosaic, pointillism, brush strokes and woodblock (flat colour + ink edges)."""),
    code("""corpus = sample_corpus(progress=True)
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
    md("""## 3. A backbone with named layers

The `model` of the first cell is an artlab **Backbone**: a torchvision-style network whose layers carry
names. It applies its own input normalisation, so you always pass plain [0, 1] images, and its `label`
(printed on every figure) says which weights it has. `features(model, images, layers)` runs the network
only as far as the deepest layer you ask for.

`model.spec` knows the network's roles for its layers, so the code below works with either network:
`style_layers` are the layers whose Gram matrices describe style (VGG: `relu1_1` … `relu5_1`;
Lite0: {lite}), and we take a shallow, a middle and a deep one.""".format(lite=names(LITE0.style_layers))),
    code("""print(model.label)
print(len(model.layer_names), "layers:", model.layer_names[:12], "…")
style = list(model.spec.style_layers)
shallow, middle, deep = style[0], style[2], style[-1]
acts = features(model, torch.cat([painting, photo]), [shallow, middle, deep])
{layer: tuple(a.shape) for layer, a in acts.items()}   # images × channels × height × width"""),
    md("""## 4. Feature maps: painting beside photo

Each row is one image at one layer: the input, then the six channels that respond most to it (bright:
strong response, each map scaled to its own range). Read the rows from top to bottom:

* **shallow** (first rows of each image): the maps still look like the picture. These channels are edge and
  colour detectors, and the painting and the photo light up much the same ones: outlines and colours survive
  the brush.
* **middle**: the maps are coarser. The photo's channels still trace the cat's eyes, nose and fur; the
  painting's turn into speckle, because its brush strokes are a texture of their own that these channels
  respond to everywhere.
* **deep**: each position now sees a large part of the image and the maps are coarse blocks. Here it
  matters *which* channels fire, not where: compare the channel numbers above the maps of the two images.

(Written from EfficientNet-Lite0's figure at the default size; with VGG-19 the layers are `relu1_1`,
`relu3_1` and `relu5_1`, and the details differ.)"""),
    code("""feature_map_grid(model, {"painting": painting, "photo": photo}, [shallow, middle, deep], channels=6)"""),
    md("""## 5. Explore interactively

Pick a layer, the number of channels and their order; both images update in place. The forward pass is
computed once and cached, so the controls respond immediately."""),
    code("""from artlab.activations import default_layers
from artlab.widgets import ActivationExplorer

viewer = ActivationExplorer(model, {"painting": painting, "photo": photo}, layers=default_layers(model), look="mosaic")
viewer"""),
    md("""## Where next

* Notebook 01: what the network *thinks* a painting is (its ImageNet guesses), and how far apart paintings
  and photos are inside it, layer by layer.
* Your own collection: `Collection.from_folder("path/to/wikiart")` reads class subfolders or a metadata CSV.
* `artlab demo` writes the whole tour as an HTML page; `artlab weights list` shows pretrained files."""),
]

if __name__ == "__main__":
    main(cells, "00_start_here.ipynb")
