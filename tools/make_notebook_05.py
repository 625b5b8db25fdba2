"""Writes notebooks/05_stylegan.ipynb (outputs empty). Edit here, re-run, commit the result."""

from notebook_writer import code, main, md

cells = [
    md("""# StyleGAN2-ADA: latent spaces, class mixes and projection

A StyleGAN generator turns a random vector into an image in two stages. The **mapping network** turns
z (512 Gaussian numbers, drawn from a seed) and, for a class-conditional model, a class label c into a
vector **w**. The **synthesis network** grows an image from 4×4 pixels up to full size; at every layer
a copy of w (one row of **ws**) sets the *style*, scaling that layer's feature channels.

This lesson loads a network safely, samples from it, trades variety for typicality with **truncation**,
mixes classes two different ways, walks through the latent space, and **projects** a painting into it:
finding the latent whose image looks most like the painting.

**About the weights.** Trained StyleGAN2-ADA networks are NVIDIA's pickles (FFHQ faces, MetFaces, AFHQ,
CIFAR-10 …); they are large, under a non-commercial licence, and need a download. So this notebook builds
its own *randomly initialised* class-conditional generator with artlab. Its pictures are colourful noise,
not paintings: they show what each operation *does*, not what a trained model has learned. Section 2
shows how to load a real network when you have one."""),
    code("""import os
import pickle
from pathlib import Path

import pandas as pd
import torch

from artlab.data import sample_corpus
from artlab.figures import RANDOM_COLOUR, ArtlabFigure
from artlab.images import to_numpy_hwc
from artlab.stylegan import (Truncation, class_label, class_mix_walk, collect, generate, lerp, map_to_ws,
                             project, save_walk, style_mix_grid, synthesize, tiny_generator)
from artlab.stylegan.pickle_io import UnsafePickleError, list_globals, load, save_generator

QUICK = os.environ.get("ARTLAB_QUICK", "") not in ("", "0")   # small settings when the suite runs this
RES = 32 if QUICK else 64              # image size of our random generator (px)
STEPS = 12 if QUICK else 100           # projection steps
FRAMES = 5 if QUICK else 9             # frames per class-mix walk
OUT = Path("stylegan-output")          # where GIFs and PNGs go
if QUICK:  # tiny networks: one CPU thread beats several that wait on each other (much faster on a busy machine)
    torch.set_num_threads(1)


def show(rows, title, G, columns=None, size=1.3):
    \"\"\"A table of images: one row per entry of ``rows`` (name -> N×3×H×W), stamped with G's label.\"\"\"
    n = max(len(images) for images in rows.values())
    fig = ArtlabFigure(figsize=(size * n + 1.2, size * len(rows) + 0.9))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(to_numpy_hwc(images[c : c + 1])[0])
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and columns is not None:
                ax.set_title(columns[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    random = not getattr(G, "pretrained", False)
    note = f"{G.label}" + (" — RANDOM WEIGHTS: shows the mechanism, not a trained model" if random else "")
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="white" if random else "#555",
             weight="bold" if random else "normal",
             bbox={"facecolor": RANDOM_COLOUR, "edgecolor": "none", "pad": 3} if random else None)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig"""),
    md("""## 1. Loading a network safely

A network pickle is not data in the ordinary sense. Python's `pickle` format is a small program: to
rebuild an object it may call *any* function the file names. Loading an untrusted pickle with
`pickle.load` can therefore run anything on your machine. NVIDIA's StyleGAN pickles go further: they
carry the Python *source code* of the networks, and NVIDIA's loader executes it.

`artlab.stylegan.load` never runs anything from the file. It first reads the pickle's instructions
without executing them and refuses any function that the StyleGAN2-ADA format does not need; then it
rebuilds the tensors with a restricted unpickler whose only allowed names are harmless stand-ins; finally it
builds artlab's own generator (written from the published design, not from NVIDIA's code) and copies the
weights in. `list_globals` shows which functions a pickle *asks* for, without loading anything.

Here is a harmless pickle that prints a line when loaded, the way a malicious one would do something worse:"""),
    code("""class Sneaky:
    def __reduce__(self):   # "to rebuild me, call print(...)": pickle obeys
        return (print, ("  >> this line was printed by LOADING the pickle: loading ran code",))

payload = pickle.dumps({"G_ema": Sneaky()}, protocol=4)
Path("sneaky.pkl").write_bytes(payload)
print("functions the pickle names:", [g.dotted for g in list_globals(payload)])
print("plain pickle.loads:")
pickle.loads(payload)
print("artlab.stylegan.load:")
try:
    load("sneaky.pkl")
except UnsafePickleError as error:
    print("  refused:", error)"""),
    md("""### An artlab-built generator, saved and loaded back

`tiny_generator(c_dim=4)` builds a small class-conditional StyleGAN2-ADA generator (4 classes) with seeded
random weights; its `label` says so and every figure below carries it in red. `save_generator` writes
artlab's own file format: one `torch.save` file that `torch.load(weights_only=True)` can read, which only
ever names tensor-rebuilding functions (listed below). `load` reads it back."""),
    code("""G_built = tiny_generator(c_dim=4, resolution=RES, seed=0)
path = save_generator(G_built, OUT / "random-cond.pt")

import zipfile
with zipfile.ZipFile(path) as archive:   # a torch.save file is a zip archive around one pickle
    inner = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
print("functions artlab's own file names:", sorted({g.dotted for g in list_globals(inner)}))

G = load(path)
print("label:", G.label, "| pretrained:", G.pretrained)
print(f"z_dim {G.z_dim}, classes (c_dim) {G.c_dim}, w_dim {G.w_dim}, {G.img_resolution} px, "
      f"ws rows (num_ws) {G.num_ws}")
assert torch.equal(generate(G, seeds=[0], c=0), generate(G_built, seeds=[0], c=0)), "same weights, same image\""""),
    md("""## 2. Real pretrained networks

artlab knows the official StyleGAN2-ADA pickles (`artlab weights list` in a terminal lists them with
everything else). They are not downloaded automatically. On a machine with internet,
`artlab weights download stylegan2-ada/cifar10` fetches one into the torch hub cache; offline, download the
file elsewhere and run `artlab weights import cifar10.pkl`. Then `load("cifar10")` reads it safely.
The cell below lists them and uses the CIFAR-10 model (32 px, 10 classes) when it is present."""),
    code("""from artlab.stylegan.generate import CIFAR10_CLASSES
from artlab.stylegan.pretrained import OFFICIAL_PICKLES, official_file
from artlab.weights import cached_path

pd.DataFrame([{"name": official_file(p.name).key, "file": p.filename, "px": p.resolution, "classes": p.c_dim,
               "status": "cached" if cached_path(official_file(p.name)) else "missing", "what": p.description}
              for p in OFFICIAL_PICKLES.values()])"""),
    code("""if cached_path(official_file("cifar10")):
    G_cifar = load("cifar10")                    # never executes the pickle
    G_cifar.class_names = list(CIFAR10_CLASSES)
    display(show({name: generate(G_cifar, seeds=range(6), c=name, truncation=0.7)
                  for name in ("cat", "horse", "ship")}, "CIFAR-10 StyleGAN2-ADA samples", G_cifar))
else:
    print("cifar10.pkl is not cached, so this lesson continues with the random generator.\\n"
          "To use it: artlab weights download stylegan2-ada/cifar10 (online), or download it elsewhere and run "
          "artlab weights import cifar10.pkl; then G = load('cifar10') and re-run the notebook with it.")"""),
    md("""## 3. Sampling: seeds, classes, style mixing

A seed fixes z (artlab follows the official seed convention, so seed 42 here is seed 42 in NVIDIA's
`generate.py`). The class goes in as a one-hot label c."""),
    code("""seeds = list(range(6))
show({f"class {k}": generate(G, seeds=seeds, c=k) for k in range(G.c_dim)}, "Seeds (columns) × classes (rows)",
     G, columns=[f"seed {s}" for s in seeds])"""),
    md("""**Style mixing.** The rows of ws feed the synthesis layers from coarse (4×4) to fine (full size).
Taking some rows from another seed mixes their attributes: coarse rows carry layout and large shapes,
fine rows colour and texture. Below, each cell is its row's seed with the first four ws rows (the coarse
layers) taken from its column's seed."""),
    code("""grid = style_mix_grid(G, row_seeds=[10, 11, 12], col_seeds=[20, 21, 22, 23], layers=(0, 4), c=0)
show({"": grid}, "Style mixing: rows 0-3 of ws from the column seed (top row); left column: row seeds", G,
     size=4.5)"""),
    md("""## 4. Truncation: variety against typicality

The mapping network keeps a running average ŵ of all the w it produced in training. **Truncation**
moves every w towards it: w' = ŵ + ψ·(w − ŵ). ψ = 1 leaves w alone (all the variety, also the odd
samples); ψ = 0 gives the same "average" image for every seed; ψ around 0.5-0.7 is the usual trade-off.
For a conditional model ŵ is an average over all classes, so strong truncation also washes the class out;
`Truncation(psi, class_aware=True)` moves towards the class's own mean w instead (`class_w_mean`, estimated by
sampling). Every function that truncates takes one such `truncation=` setting (a bare number means ψ)."""),
    code("""psis = [0.0, 0.25, 0.5, 0.75, 1.0]
rows = {f"seed {s}": torch.cat([generate(G, seeds=[s], c=1, truncation=psi) for psi in psis]) for s in (0, 1, 2)}
rows["seed 0, class-aware"] = torch.cat([generate(G, seeds=[0], c=1, truncation=Truncation(psi, class_aware=True))
                                         for psi in psis])
show(rows, "Truncation ψ (class 1)", G, columns=[f"ψ = {psi}" for psi in psis])"""),
    md("""## 5. 70% class 0, 30% class 1: two ways to mix classes

A class-conditional generator was trained on one-hot labels only. There are two reasonable meanings of
"70% of class 0 and 30% of class 1":

* **soft label**: feed c = (0.7, 0.3, 0, 0) to the mapping network. Its first layer (the class embedding)
  is linear, so it gets 70/30 of the two classes' embeddings; but the rest of the mapping network is
  nonlinear, and it never saw such a label in training. The result can be anything from a smooth blend to a
  third, unrelated picture, and a walk from 0% to 100% can jump.
* **centroid**: map the seed with each class separately (w₀, w₁), truncate each towards its class's
  own centre in W (the class centroids μ₀, μ₁ from `class_w_mean`), and take 0.7·w₀ + 0.3·w₁. Everything
  stays in W, where StyleGAN interpolates smoothly; the seed keeps its offset from a centre that moves
  in a straight line from μ₀ to μ₁.

Both agree at 0% and 100%. They differ in between:"""),
    code("""PSI, SEEDS = 0.7, [0, 1, 2, 3]
TRUNC = Truncation(PSI, class_aware=True)   # towards each class's own centre
soft = generate(G, seeds=SEEDS, c={0: 0.7, 1: 0.3}, truncation=TRUNC)
w0 = map_to_ws(G, SEEDS, None, 0, truncation=TRUNC)
w1 = map_to_ws(G, SEEDS, None, 1, truncation=TRUNC)
centroid = synthesize(G, lerp(w0, w1, 0.3))
w_soft = map_to_ws(G, SEEDS, None, {0: 0.7, 1: 0.3}, truncation=TRUNC)
gap = ((w_soft - lerp(w0, w1, 0.3)).norm(dim=-1).mean() / (w1 - w0).norm(dim=-1).mean()).item()
print(f"soft-label w is {gap:.0%} of the class-0-to-class-1 distance away from the centroid mix")
print("label fed to the mapping network:", class_label(G, {0: 0.7, 1: 0.3}).tolist())
show({"class 0": generate(G, seeds=SEEDS, c=0, truncation=TRUNC),
      "70/30 soft label": soft, "70/30 centroid": centroid,
      "class 1": generate(G, seeds=SEEDS, c=1, truncation=TRUNC)},
     f"70% class 0 / 30% class 1, ψ = {PSI}", G, columns=[f"seed {s}" for s in SEEDS])"""),
    md("""The same as walks from class 0 to class 1 (`class_mix_walk`, one seed). Walks are generators of
frames, so they can be played, stopped, collected (`collect`) or saved as GIF/MP4 (`save_walk`)."""),
    code("""walks = {method: collect(class_mix_walk(G, classes=(0, 1), steps=FRAMES, method=method, seed=0,
                                       truncation=PSI))
         for method in ("soft_label", "centroid")}
shares = torch.linspace(0, 1, FRAMES).tolist()
for method, frames in walks.items():
    print("saved", save_walk(frames, OUT / f"class-walk-{method}.gif", fps=6))
show({m.replace("_", " "): f for m, f in walks.items()}, "Class-mix walk, class 0 → class 1 (seed 0)", G,
     columns=[f"{100 - 100 * t:.0f}/{100 * t:.0f}" for t in shares])"""),
    md("""## 6. The latent explorer

Everything above in one widget: seed and ψ, one slider per class (normalised; **70/30** is a preset),
class-aware truncation, style mixing with a range of ws rows from a second seed, and **Play** for walks
(Z slerp or W lerp through seeds, or a class-mix walk by soft label or centroid); **Stop** ends a walk.
**Export GIF / MP4** writes the last walk, **Save PNG** the image on show, into the output folder."""),
    code("""from artlab.widgets import LatentExplorer

explorer = LatentExplorer(G, seed=0, truncation=0.7, output_dir=OUT)
explorer"""),
    md("""## 7. Projection: which latent draws this painting?

**Projection** (GAN inversion) searches for the latent whose image is closest to a target, by gradient
descent on w. "Closest" is measured with **LPIPS**, a perceptual distance built on VGG16 feature maps
(see below for what this notebook does without them).
artlab follows the StyleGAN2-ADA projector: start at the average w, add exploration noise that fades,
learning rate ramped up then down, and optimise the per-layer noise maps too (penalised so they stay noise).
`space="w"` searches one w for all layers (the official choice); `space="w+"` one w per ws row, which
fits more but leaves the generator's "natural" space. With `c="optimize"` the class is searched as well,
as a soft label. The target is centre-cropped and resized to the generator's resolution.

LPIPS needs torchvision's ImageNet VGG16 weights (`vgg16-397923af.pth`, 528 MB: `artlab weights download
vgg16`). When they are not here, artlab *could* run LPIPS on a random VGG16, but that distance is **not a
perceptual metric**. So `perceptual_loss("auto")` uses a trained network instead: the same recipe as LPIPS
(feature maps at several layers, each position's channel vector scaled to length 1, squared differences
averaged over positions, summed over layers) on the network of the other lessons, `best_backbone()`, without
LPIPS's learned per-channel weights (`FeatureDistance`). It is not calibrated against human judgements as
LPIPS is, but its features are an ImageNet-trained network's. The metric's `label` says which distance it is,
and its `note` why "auto" chose it. And with a random generator, do not expect a likeness: it cannot draw
paintings."""),
    code("""from artlab.stylegan.perceptual import LPIPSLoss, perceptual_loss
from artlab.stylegan.project import prepare_target

METRIC = perceptual_loss("auto")   # LPIPS-VGG when its weights are here, else a labelled feature distance
print("perceptual distance:", METRIC.label)
if getattr(METRIC, "note", ""):
    print(METRIC.note)
painting = prepare_target(sample_corpus(progress=True).subset(style="brush", subject="chelsea").load(0), RES)  # crop, resize
results, curves = {}, {}
for space in ("w", "w+"):
    run = project(G, painting, steps=STEPS, space=space, c="optimize", perceptual=METRIC, seed=0)
    curves[space] = [step.lpips for step in run]          # one ProjectionStep per step; break or run.close() stops
    results[space] = run.result()
print(run.label)   # which generator and which distance
for space, result in results.items():
    found = ", ".join(f"class {k} {100 * v:.0f}%" for k, v in enumerate(result.c[0].tolist()))
    print(f"{space}: best distance {min(curves[space]):.4f} at step {result.step}; soft class found: {found}")
show({"": torch.cat([painting, results["w"].image, results["w+"].image])},
     "Projection of a painting", G, columns=["target (brush-stroke cat)", "W", "W+"], size=1.8)"""),
    code("""fig = ArtlabFigure(figsize=(5, 2.8))
ax = fig.subplots()
for space, values in curves.items():
    ax.plot(values, label=space.upper())
ax.set_xlabel("step")
ax.set_ylabel("LPIPS" if isinstance(METRIC, LPIPSLoss) else "feature distance")
ax.legend()
ax.set_title(f"Perceptual distance per step: {METRIC.label}", fontsize=8)
fig.tight_layout()
fig"""),
    md("""Do not expect a smooth descent here. The projector adds exploration noise to w during the first
part of the run, and a random generator has nothing resembling the painting to find, so the distance dips
early and then wanders; `run.result()` keeps the best step (printed above)."""),
    md("""A projected latent is an ordinary latent: walk from it. `walk_w_to_class` keeps the latent's offset
from the centre of the class it was projected with and moves that centre to another class's centroid, in a
straight line in W (the centroid method of section 5, for a latent that has no seed). Like every walk it is a
generator of frames; `collect` stacks their images."""),
    code("""from artlab.stylegan.walks import walk_w_to_class

best = results["w"]
to_class = {k: collect(walk_w_to_class(G, best.ws, k, FRAMES, c_from=best.c)) for k in range(G.c_dim)}
show({f"→ class {k}": frames for k, frames in to_class.items()}, "From the projection (left) towards each class",
     G, columns=[f"t = {t:.2f}" for t in torch.linspace(0, 1, FRAMES).tolist()])"""),
    md("""### The projection view

The same interactively: choose steps, W or W+, the class (none, one class, or optimise a soft class),
press **Project** and watch the distance curve (the same distance as above) and the reconstruction update beside the target; **Stop** keeps
the best latents so far. Then walk from the projection to a class of your choice."""),
    code("""from artlab.widgets import ProjectionView

ProjectionView(G, painting, perceptual=METRIC, steps=STEPS, output_dir=OUT)   # the view shows METRIC.label"""),
    md("""## 8. How this relates to the activations and Gram lessons

* **LPIPS is built from the feature maps of notebook 01.** It runs both images through VGG16, takes the
  activations at five layers (relu1_2 … relu5_3), normalises each position's channel vector, and
  compares them *position by position* with learned per-channel weights. Projection therefore matches what
  is where, across scales: early layers for edges and colour, deep layers for larger parts.
* **Gram matrices (notebook 02) sum positions away.** A Gram loss only asks that channels co-occur as in
  the target: it reproduces texture, not layout. LPIPS keeps the layout; that is why projection uses it
  and texture synthesis uses Grams.
* **StyleGAN's "style" is the same notion, turned around.** Each ws row is turned (by an affine layer) into
  one scale per input channel of a convolution, which sets the strength of that layer's feature channels:
  exactly the channel statistics a Gram matrix or AdaIN (Huang & Belongie 2017, the operation of the first
  StyleGAN) measure as style. Choosing which ws rows to mix is like choosing which VGG layers' Grams to match
  in notebook 02's texture synthesis: low resolutions decide the large structure, high ones colour and grain.
  The table shows which synthesis block reads which ws row."""),
    code("""slices = G.synthesis.block_ws_slices()
pd.DataFrame([{"block": f"{res}×{res}", "ws rows": f"{sl.start}–{sl.stop - 1}",
               "what mixing these rows changes": "layout, large shapes" if res <= 8 else
               ("mid-sized features" if res <= 32 else "colour, fine texture")}
              for res, sl in slices.items()])"""),
    md("""## Where next

* `generate(G, seeds, c, truncation=Truncation(…))`, `render` (one call: class mix, truncation, noise and
  style mixing, as the explorer draws), `style_mix_grid`, `walk_z` / `walk_w` / `class_mix_walk`,
  `project(G, image, ProjectionSettings(…))`: all in `artlab.stylegan`, all returning images in artlab's [0, 1]
  convention.
* With a real network (section 2), re-run sections 3-7: the same code, meaningful pictures."""),
]

if __name__ == "__main__":
    main(cells, "05_stylegan.ipynb")
