"""A corpus of hostile inputs, run through artlab's entry points under an address-space limit.

The issue (Hardening, item 2): memory must be bounded by what the user asked for, not
by what a file claims. Folders of bad images (extreme aspect ratios, a 12000×12000
solid PNG, a truncated JPEG, a PNG claiming 10**10 pixels, an empty file, text named
.jpg, a FIFO named .jpg), hostile network pickles (a zero-stride tensor view, a zip
storage blob, a sparse 10 GB file, a configuration declaring 10 GB of layers, a 1 TiB
length field, a FIFO named .pkl) and optimisations whose inputs claim too much
(texture synthesis at 8000 px, a 1×100000 style image) go through ``embed`` (folder,
Collection and cache), ``pooled_features``, ``load_image``, ``pickle_io.load``,
``synthesize_texture`` and ``stylize``.

The work runs in a subprocess (:func:`_worker`) under ``RLIMIT_AS``. torch alone maps
about 3.4 GiB of address space (CUDA libraries), so the limit is measured, not fixed:
the worker first imports everything and embeds the good images (a normal run), then
sets the limit to its address space at that point plus :data:`MARGIN`. Without the
fixes, the strips need 4.9 GB, the 12000² PNG 4 GB and the zero-stride view 1 GiB
more than that, and the FIFOs block forever (caught by the subprocess timeout).

Every bad input must be skipped or refused with a reason matching the corpus entry;
good images must all be embedded; a second run must find every vector already
computed in the cache (nothing lost). The worker reports, per input, what happened
and ``ru_maxrss`` after it; the test prints the counts and the worst peak (run with
``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 1 << 30  # address space allowed above a normal run's (torch, the model, a small embed)
TIMEOUT_S = 300  # a FIFO that blocks shows up as a timeout, not a hung suite
SIZE = 32  # embedding size: small, so the corpus is about the inputs, not the network


def _mib(n_kib: int) -> int:
    return n_kib // 1024


def _worker(root: Path) -> dict:
    """Build the corpus under ``root``, run it under the limit, return what happened (JSON-able)."""
    import resource
    import warnings

    import torch

    torch.set_num_threads(1)
    import hostile_files as hf

    from artlab.activations import pooled_features
    from artlab.data import Collection, Item
    from artlab.embed import embed
    from artlab import gram
    from artlab.gram import synthesize_texture
    from artlab.images import ImageLoadError, load_image
    from artlab.models import backbone
    from artlab.stylegan import pickle_io as pio
    from artlab.transfer import TransferTooLarge, stylize

    warnings.simplefilter("ignore")
    good, bad = hf.image_folder(root / "images")
    (root / "pickles").mkdir()
    pickles = {name: build(root / "pickles" / name) for name, (build, _) in hf.BAD_PICKLES.items()}
    cache = root / "cache"

    def rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    def vm(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    model = backbone("tiny_vgg", weights=None, seed=0)
    embed(good, model, size=SIZE, cache_dir=False, progress=False)  # a normal run: what the limit is measured on
    normal_rss, normal_vm = rss(), vm("VmPeak")
    limit = vm("VmSize") + MARGIN
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out: dict = {"normal_rss_kib": normal_rss, "normal_vm": normal_vm, "limit": limit, "trials": []}

    def trial(kind: str, name: str, outcome: str, reason: str, seconds: float) -> None:
        out["trials"].append({"kind": kind, "name": name, "outcome": outcome, "reason": reason,
                              "seconds": round(seconds, 2), "rss_kib": rss()})

    def run(kind: str, name: str, fn, expected: tuple[type[BaseException], ...]) -> None:
        start = time.time()
        try:
            fn()
        except expected as exc:
            trial(kind, name, "refused", str(exc), time.time() - start)
        except Exception as exc:  # noqa: BLE001 - recorded: the test fails on it with the message
            trial(kind, name, "crashed", f"{type(exc).__name__}: {exc}", time.time() - start)
        else:
            trial(kind, name, "loaded", "", time.time() - start)

    def embed_trial(kind: str, source) -> None:
        start = time.time()
        try:
            emb = embed(source, model, size=SIZE, cache_dir=cache, progress=False)
        except Exception as exc:  # noqa: BLE001
            trial(kind, "*", "crashed", f"{type(exc).__name__}: {exc}", time.time() - start)
            return
        seconds = time.time() - start
        kept = {Path(p).name for p in emb.paths}
        skipped = {Path(p).name: why for p, why in emb.skipped}
        for file in [*good, *bad.values()]:
            if file.name in kept:
                trial(kind, file.name, "embedded", "", seconds)
            else:
                trial(kind, file.name, "skipped" if file.name in skipped else "missing", skipped.get(file.name, ""),
                      seconds)
        out.setdefault("embed_counts", {})[kind] = {"rows": len(emb), "n_cached": emb.n_cached,
                                                    "n_computed": emb.n_computed, "skipped": len(emb.skipped)}

    everything = [*good, *bad.values()]
    # 1. a folder (Collection.from_folder), twice: the second run must compute nothing
    embed_trial("embed folder", root / "images")
    embed_trial("embed folder again", root / "images")
    # 2. a Collection listing every file (no folder scan in front: embed's own checks)
    embed_trial("embed collection", Collection([Item(p) for p in everything], None, "corpus"))
    # 3. the per-image feature loop of artlab.activations (its size notes open headers)
    start = time.time()
    notes: list[str] = []
    try:
        feats = pooled_features(model, everything, ["relu1_1"], size=SIZE, progress=False, notes=notes)
        n = int(feats["relu1_1"].shape[0])
        trial("pooled_features", "*", f"{n} rows", " | ".join(notes), time.time() - start)
    except Exception as exc:  # noqa: BLE001
        trial("pooled_features", "*", "crashed", f"{type(exc).__name__}: {exc}", time.time() - start)
    # 4. each bad image on its own
    for name, path in bad.items():
        run("load_image", name, lambda p=path: load_image(p, 64), (ImageLoadError,))
    # 5. hostile network pickles through the one loader
    for name, path in pickles.items():
        run("stylegan load", name, lambda p=path: pio.load(p), (pio.PickleFormatError,))
    # 6. optimisations whose size or inputs claim too much
    target = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    too_large = getattr(gram, "TextureTooLarge", TransferTooLarge)  # so that older code runs the corpus too
    run("synthesize_texture", "size=8000", lambda: synthesize_texture(model, target, size=8000, steps=1),
        (too_large,))
    strip = torch.rand(1, 3, 1, 100_000, generator=torch.Generator().manual_seed(1))
    run("stylize", "style 1x100000", lambda: stylize(target, strip, model, size=48, steps=1).result(),
        (TransferTooLarge,))
    out["peak_rss_kib"] = rss()
    return out


@pytest.mark.slow
def test_hostile_corpus_is_skipped_or_refused_under_a_memory_limit(tmp_path):
    import hostile_files as hf

    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]  # an explicit one wins
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *inherited, str(ROOT)]),
           "OMP_NUM_THREADS": "1"}
    started = time.time()
    try:
        done = subprocess.run([sys.executable, __file__, str(tmp_path / "corpus")], capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the corpus run did not finish in {TIMEOUT_S} s: something blocked (a FIFO opened?)")
    assert done.returncode == 0, f"the corpus run died (rc {done.returncode}):\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    trials = report["trials"]

    crashed = [t for t in trials if t["outcome"] in ("crashed", "missing")]
    assert not crashed, "\n".join(f"{t['kind']} {t['name']}: {t['outcome']} {t['reason'][:300]}" for t in crashed)
    for t in trials:
        if t["kind"].startswith("embed"):
            want = "embedded" if t["name"].startswith("good_") else hf.BAD_IMAGES[t["name"]][1]
            if want == "embedded":
                assert t["outcome"] == "embedded", t
            else:
                assert t["outcome"] == "skipped" and re.search(want, t["reason"]), t
        elif t["kind"] == "load_image":
            want = hf.BAD_IMAGES[t["name"]][1]
            if want == "embedded":  # decoded within bounds, at the size asked for
                assert t["outcome"] == "loaded", t
            else:
                assert t["outcome"] == "refused" and re.search(want, t["reason"]), t
        elif t["kind"] == "stylegan load":
            assert t["outcome"] == "refused" and re.search(hf.BAD_PICKLES[t["name"]][1], t["reason"]), t
        elif t["kind"] == "synthesize_texture":
            assert t["outcome"] == "refused" and "largest size that fits" in t["reason"], t
        elif t["kind"] == "stylize":
            assert t["outcome"] == "refused" and "so elongated" in t["reason"] and "crop it" in t["reason"], t
        elif t["kind"] == "pooled_features":
            n_ok = len([n for n, (_, w) in hf.BAD_IMAGES.items() if w == "embedded"]) + 3
            assert t["outcome"] == f"{n_ok} rows", t
            entries = re.split(r"(?:; |: )(?=/)", t["reason"])  # the note lists "path (reason)" entries
            listed = {Path(entry.split(" (", 1)[0]).name: entry for entry in entries}
            for name, (_, want) in hf.BAD_IMAGES.items():
                if want != "embedded":
                    assert name in listed and re.search(want, listed[name]), (name, t["reason"])
    counts = report["embed_counts"]
    rows = counts["embed folder"]["rows"]
    assert rows == 3 + sum(w == "embedded" for _, w in hf.BAD_IMAGES.values())
    again = counts["embed folder again"]
    assert again["rows"] == rows and again["n_computed"] == 0 and again["n_cached"] == rows  # nothing was lost

    inputs = len(hf.BAD_IMAGES) + len(hf.BAD_PICKLES) + 2
    handled = len({(t["kind"], t["name"]) for t in trials})
    steps = [{"rss_kib": report["normal_rss_kib"]}, *trials]  # ru_maxrss only grows: each rise is one step's
    worst = max((b["rss_kib"] - a["rss_kib"], b["kind"] if b["kind"].startswith("embed") else f"{b['kind']} {b['name']}")
                for a, b in zip(steps, steps[1:]))  # an embed call's rows share one measurement
    print(f"\nhostile corpus: {inputs} hostile inputs ({len(hf.BAD_IMAGES)} images, {len(hf.BAD_PICKLES)} pickles, "
          f"2 optimisations) + 3 good images, {handled} trials, all skipped/refused/handled; "
          f"limit {report['limit'] / 2**30:.2f} GiB of address space (a normal run peaked at "
          f"{report['normal_vm'] / 2**30:.2f} GiB); ru_maxrss {_mib(report['normal_rss_kib'])} MiB after the normal "
          f"run, {_mib(report['peak_rss_kib'])} MiB at the end (worst step: +{_mib(worst[0])} MiB, {worst[1]}); "
          f"{time.time() - started:.0f} s")
    assert _mib(report["peak_rss_kib"] - report["normal_rss_kib"]) < 900


if __name__ == "__main__":  # the subprocess: python tests/test_hostile_inputs.py <folder>
    print(json.dumps(_worker(Path(sys.argv[1]))))
