"""The ``artlab`` command: the tour, JupyterLab, the curator app, the sample corpus and pretrained files."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from artlab import __version__, lessons

__all__ = ["main", "notebooks_dir"]


def notebooks_dir() -> Path | None:
    """The shipped lessons: the ``notebooks/`` folder of the source checkout artlab runs from, if any."""
    return lessons.shipped_dir()


def _cmd_demo(args: argparse.Namespace) -> int:
    from artlab.demo import run_demo

    page = run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device)
    print(page)
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    folder = Path(args.dir).expanduser() if args.dir else lessons.default_folder()
    source = Path(args.source).expanduser() if args.source else notebooks_dir()
    try:
        changes = lessons.sync_lessons(source, folder, reset=args.reset or ())
    except (lessons.LessonsError, OSError) as exc:
        print(f"artlab lab: {exc}", file=sys.stderr)
        return 2
    for line in lessons.summary(changes, folder):
        print(f"artlab lab: {line}")
    if source is None:
        print(f"artlab lab: no shipped lessons here to compare with (not a source checkout); opening your "
              f"copies in {folder}")
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folder.resolve()}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses to start as root without it
    if args.no_browser:
        cmd.append("--no-browser")
    if args.port is not None:
        cmd.append(f"--port={args.port}")
    if args.ip:
        cmd.append(f"--ip={args.ip}")
    cmd += args.jupyter_args
    print("starting:", shlex.join(cmd))
    return subprocess.call(cmd)


def _port(text: str) -> int:
    """A TCP port number for ``--port`` (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _cmd_explore(args: argparse.Namespace) -> int:
    from artlab import explore

    try:
        options = explore.check_options(
            args.folder, model=args.model, weights=None if args.weights == "random" else args.weights,
            layer=args.layer, pooling=args.pooling, size=args.size, cache_dir=args.cache_dir,
            device=args.device, seed=args.seed, csv_path=args.csv, label=args.label,
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

    lab = sub.add_parser(
        "lab", help=f"start JupyterLab on your working copies of the lessons ({lessons.DEFAULT_DIR})",
        usage="artlab lab [--dir PATH] [--reset LESSON] [--from NOTEBOOKS] [--no-browser] [--port N] [--ip ADDR] "
              "[JUPYTER OPTIONS] [-- JUPYTER ARGS]",
        description="Opens JupyterLab on a folder of working copies of the lessons (default "
                    f"{lessons.DEFAULT_DIR}), copying the shipped lessons (the checkout's notebooks/) there on first "
                    "use, so outputs and the files the lessons write stay out of the repository. A copy you "
                    "changed or ran is never overwritten: a newer lesson goes beside it as NN_name-new.ipynb. "
                    "Every option artlab does not know is passed on to jupyter lab, as is everything after --.",
        allow_abbrev=False,  # a Jupyter option must never be taken for an abbreviation of one of ours
    )
    lab.add_argument("--dir", metavar="PATH",
                     help=f"folder of your working copies, made if missing (default: {lessons.DEFAULT_DIR})")
    lab.add_argument("--reset", action="append", metavar="LESSON",
                     help="put a lesson back as shipped: a number such as 03, a name, or all (repeatable); "
                          "a changed copy is kept as NN_name-yours.ipynb")
    lab.add_argument("--from", dest="source", metavar="NOTEBOOKS",
                     help="where the shipped lessons are (default: the checkout's notebooks/)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (jupyter lab --no-browser)")
    lab.add_argument("--port", type=_port, metavar="N", help="port of the server (jupyter lab --port)")
    lab.add_argument("--ip", metavar="ADDR", help="address to listen on (jupyter lab --ip)")
    lab.set_defaults(func=_cmd_lab, jupyter_args=[])

    explore = sub.add_parser(
        "explore", help="open a folder of images as an embedding map (a no-code Voilà app)",
        description="Embed every image of FOLDER with a CNN and open an interactive map of the collection in "
                    "the browser: select points to see the images. The pictures' descriptions and the map's "
                    "layout are cached, so the next launch on the folder opens its map in seconds.",
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
    explore.add_argument("--label", help="what the dots are coloured by at first: a folder level (1: the top "
                                         "subfolder, 2: the one below, -1: the folder each picture is in) or a "
                                         "column of metadata.csv, e.g. artist (default: the top subfolder, or the "
                                         "CSV's artist/style/label column); the page offers every level anyway")
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
    """Entry point of the ``artlab`` console script.

    ``artlab lab`` passes the options it does not know, and everything after ``--``, on to Jupyter;
    every other command rejects unknown arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] != ["lab"]:
        args = parser.parse_args(argv)
    else:
        tail: list[str] = []
        if "--" in argv:
            cut = argv.index("--")
            argv, tail = argv[:cut], argv[cut + 1:]
        args, unknown = parser.parse_known_args(argv)
        args.jupyter_args = unknown + tail
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
