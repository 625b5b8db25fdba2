"""The ``artlab`` command: the tour, JupyterLab, the curator app, the sample corpus and pretrained files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from artlab import __version__

__all__ = ["main", "notebooks_dir"]


def notebooks_dir() -> Path | None:
    """The repository's ``notebooks/`` folder next to the package (source checkouts), if any."""
    candidate = Path(__file__).resolve().parent.parent / "notebooks"
    return candidate if candidate.is_dir() else None


def _cmd_demo(args: argparse.Namespace) -> int:
    from artlab.demo import run_demo

    page = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device)
    print(page)
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    folder = Path(args.dir).expanduser() if args.dir else notebooks_dir()
    if folder is None or not folder.is_dir():
        print(
            "artlab lab: no notebooks folder found next to the package; pass --dir PATH "
            "(the notebooks/ folder of an artlab checkout).",
            file=sys.stderr,
        )
        return 2
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folder}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses to start as root without it
    cmd += args.jupyter_args
    print("starting:", " ".join(cmd))
    return subprocess.call(cmd)


def _cmd_explore(args: argparse.Namespace) -> int:
    from artlab import explore

    try:
        options = explore.check_options(
            args.folder, model=args.model, weights=None if args.weights == "random" else args.weights,
            layer=args.layer, pooling=args.pooling, size=args.size, cache_dir=args.cache_dir,
            device=args.device, seed=args.seed, csv_path=args.csv,
        )
        port = explore.check_port(args.port)
    except explore.ExploreError as exc:
        print(f"artlab explore: {exc}", file=sys.stderr)
        return 2
    return explore.serve(options, port=port, open_browser=not args.no_browser)


def _cmd_corpus(args: argparse.Namespace) -> int:
    from artlab.data import sample_corpus

    corpus = sample_corpus(rebuild=args.rebuild, progress=True)
    print(corpus.summary())
    print(corpus.root)
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from artlab import catalogue, weights

    if args.action == "where":
        print(weights.cache_dir())
        return 0
    if args.action == "list":
        def status(known: weights.KnownFile) -> str:
            """cached (in the hub cache), bundled (inside its installed pip package) or missing."""
            path = weights.cached_path(known)
            if path is None:
                return "missing"
            return "cached" if path == known.path else "bundled"

        rows = [
            (f.key, f"{f.size_mb:.0f} MB" if f.size_mb else "?", f.filename, status(f))
            for f in catalogue.known_files()
        ]
        header = ("name", "size", "file", "status")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print(f"\ncache directory: {weights.cache_dir()}")
        print("offline? download a file elsewhere, then: artlab weights import FILE")
        return 0
    try:
        if args.action == "import":
            print(f"imported -> {catalogue.import_file(args.file, overwrite=args.force)}")
        elif args.action == "download":
            print(weights.download(catalogue.find_known(args.name), progress=True))
    except weights.WeightsError as exc:
        print(f"artlab weights {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from artlab.embed import verify_cache

    report = verify_cache(args.cache_dir, repair=args.action == "repair", rehash=not args.quick)
    print(report.summary())
    return 0 if report.ok or report.repaired else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(prog="artlab", description="Explore how convolutional networks see art.")
    parser.add_argument("--version", action="version", version=f"artlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the tour on the built-in corpus and write index.html")
    demo.add_argument("--out", default="artlab-demo", help="output folder (default: ./artlab-demo)")
    demo.add_argument("--quick", action="store_true", help="small sizes, for a fast look or CI")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    demo.set_defaults(func=_cmd_demo)

    lab = sub.add_parser("lab", help="start JupyterLab on the notebooks")
    lab.add_argument("--dir", help="notebooks folder (default: the checkout's notebooks/)")
    lab.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="passed on to jupyter lab")
    lab.set_defaults(func=_cmd_lab)

    explore = sub.add_parser(
        "explore", help="open a folder of images as an embedding map (a no-code Voilà app)",
        description="Embed every image of FOLDER with a CNN (cached, so the next launch is instant) and open "
                    "an interactive map of the collection in the browser: select points to see the images.",
    )
    explore.add_argument("folder", help="folder of images (class subfolders and a metadata.csv are optional)")
    explore.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    explore.add_argument("--no-browser", action="store_true", help="print the URL but do not open a browser")
    explore.add_argument("--model", default="best",
                         help="'best' (VGG-19 if its ImageNet file is cached, else the bundled EfficientNet-Lite0) "
                              "or a backbone, e.g. vgg19, efficientnet_lite0, resnet50 (default: best)")
    explore.add_argument("--weights", default="auto",
                         help="'auto' (the ImageNet weights on this machine), 'imagenet' (download if missing), "
                              "'random' (a labelled random init) or a .pth file (default: auto)")
    explore.add_argument("--layer", help="layer to embed (default: the model's usual one)")
    explore.add_argument("--pooling", default="mean", help="mean, mean+std or gram (default: mean)")
    explore.add_argument("--size", type=int, default=224, help="image side in pixels (default: 224)")
    explore.add_argument("--cache-dir", help="embedding cache (default: ~/.cache/artlab/embeddings)")
    explore.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    explore.add_argument("--seed", type=int, default=0, help="seed of a random init and of the map")
    explore.add_argument("--csv", help="where the page's Export CSV button writes "
                                       "(default: ./FOLDERNAME_selection.csv); the page may change the "
                                       "file name, but exports stay in this file's folder")
    explore.set_defaults(func=_cmd_explore)

    corpus = sub.add_parser("corpus", help="build (if needed) and describe the built-in sample corpus")
    corpus.add_argument("--rebuild", action="store_true")
    corpus.set_defaults(func=_cmd_corpus)

    w = sub.add_parser("weights", help="pretrained files: list, import, download, where")
    wsub = w.add_subparsers(dest="action", required=True)
    wsub.add_parser("list", help="every known pretrained file: cached, bundled (in an installed package) or missing")
    wsub.add_parser("where", help="print the cache directory")
    imp = wsub.add_parser("import", help="check a downloaded file and copy it into the cache")
    imp.add_argument("file")
    imp.add_argument("--force", action="store_true", help="replace a cached file with different contents")
    dl = wsub.add_parser("download", help="download a known file into the cache (needs internet); "
                                          "prints its path, resumes a cut-off download, checks the sha256")
    dl.add_argument("name", help="a name from `artlab weights list`, e.g. vgg19/IMAGENET1K_V1")
    w.set_defaults(func=_cmd_weights)

    cache = sub.add_parser(
        "cache", help="check (verify) or fix (repair) the embedding cache",
        description="verify: check every cached shard (checksum, layout, NaN/inf rows) and every entry of "
                    "file-hashes.json (signature, and the sha256 of each file whose stat still matches); changes "
                    "nothing, exit status 1 if something is bad. repair: the same, then remove what is bad (its "
                    "images are computed again when next embedded).",
    )
    cache.add_argument("action", choices=("verify", "repair"))
    cache.add_argument("--cache-dir", help="embedding cache (default: ~/.cache/artlab/embeddings)")
    cache.add_argument("--quick", action="store_true",
                       help="do not re-read the image files listed in file-hashes.json")
    cache.set_defaults(func=_cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``artlab`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
