"""Measure, on the real paintings and photos in ../shared/data, what ImageNet training changes.

Run from the repository root (takes ~5-15 min on a 2-core CPU, most of it random VGG-19)::

    .venv/bin/python tools/measure_real_networks.py            # everything
    .venv/bin/python tools/measure_real_networks.py --skip-vgg # Lite0 only, ~1-2 min

Everything goes through artlab's public API (``domain_shift``, ``embed`` + ``linear_probe``,
``transfer``, ``texture_from``, ``style_distance``, ``predict``) and prints markdown tables:

1. per-layer domain shift (MMD permutation p and linear-probe accuracy) for
   paintings vs photos, photos vs photos and paintings vs paintings, under
   EfficientNet-Lite0 with its ImageNet weights, the same network randomly initialised
   (seed 0, plus a one-line summary for seeds 1-3) and a random VGG-19 (seed 0);
2. a 6-artist linear probe on all 74 paintings (cross-validated, balanced accuracy);
3. one Gatys style transfer and a texture synthesis per network, with timings and the
   style loss (Gram distance to the style image, ``style_distance``) before and after,
   judged by every network; images go to ``--out`` (default /tmp/science);
4. the ImageNet top-3 of a CC0 photo of an espresso cup.

Nothing is written into the repository and nothing is copied out of ../shared.

The image sets (fixed; the choice is deterministic, by sorted file name):

* **Photos**: the 30 landscape photos sorted by name; half A = even positions, half B =
  odd positions (the names are timestamps, so this interleaves them).
* **Landscape paintings**: 30 landscapes by five artists whose folders are (almost) all
  landscapes, split so that each half has the same artist mix (4 Constable, 3 Rousseau,
  3 Lucien Pissarro, 3 Matisse, 2 Seurat): within each artist, sorted by name, even
  positions go to half A, odd to half B.
    - constable: all 8 (every one is a landscape);
    - theodore_rousseau: all 6;
    - lucien_pissarro: the first 6 by name, leaving out ``lucien-pissarro-brookleton-
      yulgreave.jpg`` (295×350 px, far smaller than the rest; it would be upsampled);
    - matisse: the first 6 by name after leaving out ``woman_with_a_hat_1905.jpg`` (a
      portrait) and ``not-identified-11.jpg`` (another reproduction of the same painting
      as ``1917-henri-matisse-olive-trees-renoir-s-garden-in-cagnes-1917.jpg``: a near
      duplicate would make the two painting halves look alike);
    - seurat: the first 4 by name.
  Van Gogh is left out: his 32 files are 256 px CycleGAN crops of mixed subjects.
* "paintings vs photos" = painting half A vs photo half A (15 vs 15), repeated with the
  B halves; "photos vs photos" = photo half A vs B; "paintings vs paintings" = painting
  half A vs B. The painting halves are stratified by artist, so they are *more* alike
  than a random split, and the permutation test is conservative for them (p near 1).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from artlab.activations import FeatureStore, domain_shift
from artlab.data import Collection
from artlab.embed import embed, linear_probe
from artlab.gram import style_distance, texture_from
from artlab.images import image_grid, load_image, save_image
from artlab.models import backbone
from artlab.predict import predict
from artlab.transfer import transfer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"

CONTENT = "photos/landscapes/flickr_2013-11-17_09_05_09.jpg"
STYLE = "paintings/van_gogh/cyclegan_vangogh2photo_trainA_00440.jpg"  # The Starry Night
TEXTURE_SOURCE = STYLE
COFFEE = "photos/misc/skimage_coffee.png"

LEFT_OUT = {
    "lucien_pissarro": {"lucien-pissarro-brookleton-yulgreave.jpg"},
    "matisse": {"woman_with_a_hat_1905.jpg", "not-identified-11.jpg"},
}
PER_ARTIST = {"constable": 8, "theodore_rousseau": 6, "lucien_pissarro": 6, "matisse": 6, "seurat": 4}


def image_sets(data: Path) -> dict[str, list[Path]]:
    """{'paintings_a', 'paintings_b', 'photos_a', 'photos_b'}: the four 15-image sets described above."""
    photos = sorted((data / "photos" / "landscapes").glob("*.jpg"))
    sets: dict[str, list[Path]] = {"paintings_a": [], "paintings_b": [],
                                   "photos_a": photos[0::2], "photos_b": photos[1::2]}
    for artist, n in PER_ARTIST.items():
        files = [p for p in sorted((data / "paintings" / artist).glob("*.jpg")) if p.name not in LEFT_OUT.get(artist, ())]
        chosen = files[:n]
        sets["paintings_a"] += chosen[0::2]
        sets["paintings_b"] += chosen[1::2]
    return sets


PAIRS = {
    "paintings A vs photos A": ("paintings_a", "photos_a"),
    "paintings B vs photos B": ("paintings_b", "photos_b"),
    "photos A vs photos B": ("photos_a", "photos_b"),
    "paintings A vs paintings B": ("paintings_a", "paintings_b"),
}


def networks(skip_vgg: bool) -> dict[str, object]:
    nets = {
        "Lite0 ImageNet": lambda: backbone("efficientnet_lite0"),
        "Lite0 random (seed 0)": lambda: backbone("efficientnet_lite0", weights=None, seed=0),
    }
    if not skip_vgg:
        nets["VGG-19 random (seed 0)"] = lambda: backbone("vgg19", weights=None, seed=0)
    return nets


def _fmt_p(p: float) -> str:
    return f"{p:.3f}"


def measure_domain_shift(data: Path, nets: dict, n_perm: int, extra_seeds: list[int]) -> None:
    sets = image_sets(data)
    print("## 1. Domain shift per layer (domain_shift, 224 px, MMD RBF permutation test "
          f"with {n_perm} permutations; p floor {1 / (n_perm + 1):.4f})\n")
    for make in nets.values():
        model = make()
        store = FeatureStore()
        t0 = time.perf_counter()
        results = {}
        for pair, (a, b) in PAIRS.items():
            results[pair] = domain_shift(sets[a], sets[b], model, measures=("mmd", "probe"), n_perm=n_perm,
                                         n_boot=20, seed=0, cache=store, progress=False, names=(a, b)).wide()
        layers = list(results[next(iter(PAIRS))]["layer"])
        print(f"### {model.label} ({time.perf_counter() - t0:.0f} s)\n")
        print("| pair | " + " | ".join(layers) + " |")
        print("|---|" + "---|" * len(layers))
        for pair, wide in results.items():
            print(f"| {pair}: MMD p | " + " | ".join(_fmt_p(p) for p in wide["mmd_p"]) + " |")
        for pair, wide in results.items():
            if "photos" in pair and "paintings" in pair:
                print(f"| {pair}: probe acc | " + " | ".join(f"{v:.2f}" for v in wide["probe"]) + " |")
        print()
    if extra_seeds:
        print("### Lite0 random init, other seeds: MMD p per layer (paintings vs photos)\n")
        for seed in extra_seeds:
            model = backbone("efficientnet_lite0", weights=None, seed=seed)
            store = FeatureStore()
            rows = []
            for pair in ("paintings A vs photos A", "paintings B vs photos B", "photos A vs photos B"):
                a, b = PAIRS[pair]
                wide = domain_shift(sets[a], sets[b], model, measures=("mmd",), n_perm=n_perm, n_boot=1, seed=0,
                                    cache=store, progress=False).wide()
                rows.append(f"{pair}: " + " ".join(_fmt_p(p) for p in wide["mmd_p"])
                            + f" ({int((wide['mmd_p'] <= 0.05).sum())}/{len(wide)} layers p ≤ 0.05)")
            print(f"- seed {seed}: " + "; ".join(rows))
        print()


def measure_artist_probe(data: Path, nets: dict, seeds: range) -> None:
    coll = Collection.from_folder(data / "paintings")
    counts = {c: sum(1 for it in coll.items if it.label == c) for c in sorted({it.label for it in coll.items})}
    print(f"## 2. Artist probe: {len(coll)} paintings, {len(counts)} artists {counts}; embed (224 px, mean pooling) "
          f"+ linear_probe, 5-fold CV, mean ± sd over CV seeds {list(seeds)}; balanced chance 1/6 = 0.167, "
          f"majority chance {max(counts.values()) / len(coll):.3f}\n")
    print("| network | layer | dim | accuracy | balanced accuracy | seconds (embed) |")
    print("|---|---|---|---|---|---|")
    extra = {"Lite0 ImageNet": ["stage6", "stage7"], "Lite0 random (seed 0)": [], "VGG-19 random (seed 0)": []}
    for label, make in nets.items():
        model = make()
        for layer in [None, *extra.get(label, [])]:
            t0 = time.perf_counter()
            emb = embed(coll, model, layer, cache_dir=False, progress=False)
            seconds = time.perf_counter() - t0
            probes = [linear_probe(emb, seed=s) for s in seeds]
            acc = np.array([p.accuracy for p in probes])
            bal = np.array([p.balanced_accuracy for p in probes])
            print(f"| {model.label} | {emb.layer}{' (default)' if layer is None else ''} | {emb.vectors.shape[1]} | "
                  f"{acc.mean():.3f} ± {acc.std():.3f} | {bal.mean():.3f} ± {bal.std():.3f} | {seconds:.0f} |")
    print()


def _save_row(images: list[torch.Tensor], path: Path) -> None:
    size = images[0].shape[-2:]
    row = torch.cat([load_image(img, tuple(size)) for img in images])
    save_image(image_grid(row, nrow=len(images), padding=4), path)
    print(f"saved {path} ({len(images)} panels)")


def measure_optimisation(data: Path, nets: dict, out: Path, size: int, steps: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    content = load_image(data / CONTENT, size)
    style = load_image(data / STYLE, size)
    judges = {label: make() for label, make in nets.items()}
    names = list(judges)

    def distances(image: torch.Tensor) -> list[float]:
        return [style_distance(image, style, model=j).total for j in judges.values()]

    start = {"photo (content)": distances(content)}
    noise = torch.rand(1, 3, *content.shape[-2:], generator=torch.Generator().manual_seed(0))
    start["uniform noise (seed 0)"] = distances(noise)
    print(f"## 3. Style transfer and texture synthesis ({size} px, {steps} L-BFGS steps, default settings: "
          "init = content for transfer, β = the network's default)\n")
    print(f"content {CONTENT}, style {STYLE} (The Starry Night). Style loss = style_distance(image, style).total "
          "under each judge network's default style layers (Gram distance, 'gatys' normalisation).\n")
    print("| image | seconds | " + " | ".join(f"style loss under {n}" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    for what, d in start.items():
        print(f"| {what} | – | " + " | ".join(f"{v:.3g}" for v in d) + " |")
    results: dict[str, torch.Tensor] = {}
    for label, model in judges.items():
        t0 = time.perf_counter()
        result = transfer(content, style, model, size=size, steps=steps)
        seconds = time.perf_counter() - t0
        results[label] = result
        d = distances(result)
        print(f"| transfer with {label} | {seconds:.1f} | "
              + " | ".join(f"{v:.3g} ({s / v:.1f}× lower)" for v, s in zip(d, start["photo (content)"])) + " |")
    textures: dict[str, torch.Tensor] = {}
    for label, model in judges.items():
        for init_name, init in (("noise", None), ("photo", content)):
            t0 = time.perf_counter()
            result = texture_from(model, style, steps=steps, init=init, seed=0)
            seconds = time.perf_counter() - t0
            textures[f"{label} from {init_name}"] = result
            base = start["uniform noise (seed 0)" if init is None else "photo (content)"]
            d = distances(result)
            print(f"| texture with {label}, from {init_name} | {seconds:.1f} | "
                  + " | ".join(f"{v:.3g} ({s / v:.1f}× lower)" for v, s in zip(d, base)) + " |")
    print()
    trained = judges["Lite0 ImageNet"]
    print("Per style layer under Lite0 ImageNet (unweighted Gram distance; every layer has weight 1/5):\n")
    print("| image | " + " | ".join(trained.spec.style_layers) + " |")
    print("|---|" + "---|" * len(trained.spec.style_layers))
    for what, image in (("photo (content)", content), ("transfer with Lite0 ImageNet", results["Lite0 ImageNet"]),
                        ("texture with Lite0 ImageNet, from noise", textures["Lite0 ImageNet from noise"])):
        per = style_distance(image, style, model=trained).per_layer
        print(f"| {what} | " + " | ".join(f"{per[layer]:.3g}" for layer in trained.spec.style_layers) + " |")
    print()
    print("Panels, left to right:")
    print("- transfer.png: content, style, " + ", ".join(f"transfer with {n}" for n in names))
    _save_row([content, style, *results.values()], out / "transfer.png")
    print("- texture.png: style, " + ", ".join(textures))
    _save_row([style, *textures.values()], out / "texture.png")
    print()


def measure_prediction(data: Path) -> None:
    print(f"## 4. ImageNet prediction of {COFFEE}\n")
    for model in (backbone("efficientnet_lite0"), backbone("efficientnet_lite0", weights=None, seed=0)):
        pred = predict(model, data / COFFEE, k=3)
        top = ", ".join(f"{name} {p:.3f}" for name, p in zip(pred.labels[0], pred.probs[0].tolist()))
        print(f"- {model.label}: {top}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/science"), help="where the images go")
    parser.add_argument("--skip-vgg", action="store_true", help="leave out random VGG-19 (the slow part)")
    parser.add_argument("--n-perm", type=int, default=500, help="MMD permutations")
    parser.add_argument("--size", type=int, default=192, help="transfer/texture size (longer side)")
    parser.add_argument("--steps", type=int, default=60, help="L-BFGS steps for transfer and texture")
    parser.add_argument("--only", choices=["shift", "probe", "optim", "predict"], action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    if not (args.data / "paintings").is_dir():
        print(f"{args.data} has no paintings/ folder; pass --data", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")  # SmallSampleWarning / ReceptiveFieldWarning: discussed in the report
    torch.manual_seed(0)
    nets = networks(args.skip_vgg)
    parts = args.only or ["shift", "probe", "optim", "predict"]
    print(f"# artlab on real data: trained vs random networks (torch threads: {torch.get_num_threads()})\n")
    sets = image_sets(args.data)
    for key, files in sets.items():
        print(f"- {key} ({len(files)}): " + ", ".join(f"{p.parent.name}/{p.name}" for p in files))
    print()
    if "shift" in parts:
        measure_domain_shift(args.data, nets, args.n_perm, extra_seeds=[1, 2, 3])
    if "probe" in parts:
        measure_artist_probe(args.data, nets, range(5))
    if "optim" in parts:
        measure_optimisation(args.data, nets, args.out, args.size, args.steps)
    if "predict" in parts:
        measure_prediction(args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
