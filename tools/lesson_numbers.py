"""The numbers the lesson texts quote, measured the way the lessons measure them.

    .venv/bin/python tools/lesson_numbers.py

prints them in the form of ``QUOTED`` in tools/make_notebook_01.py and tools/make_notebook_04.py
(each takes the keys its texts use): paste, regenerate the notebooks (and update the README sentence
that repeats the confidences). tests/test_notebooks.py measures
them again with these functions and fails when the text and a real run disagree.

Every number is EfficientNet-Lite0's (the ImageNet weights bundled with artlab, so every machine
has the same network) on the built-in sample corpus (so no data needs to be downloaded). With
VGG-19 cached the lessons run on VGG-19 and show its own numbers in their tables; the texts say so.
"""

from __future__ import annotations

from collections import Counter

PAINT_STYLES = ("brush", "kmeans", "pointillism", "slic", "woodblock")
#: notebook 01's domain-shift settings at default size (the values do not depend on n_boot: only
#: their confidence intervals do, so the test asks for 2 bootstrap rounds)
SHIFT_SIZE, SHIFT_PERM = 224, 500


def lite0():
    """The network the quoted numbers are measured with (never VGG-19, even when it is cached)."""
    from artlab.models import backbone

    return backbone("efficientnet_lite0", weights="imagenet", download=False, device="cpu")


def feature_map_numbers(model, corpus) -> dict:
    """Section 2 of notebook 01: cosine similarity of the channel means at the deepest style layer, between
    the brush-stroke astronaut and its photo and between the astronaut and rocket photos, for the trained
    network and for the same architecture with random weights (224 px, the lesson's default size)."""
    import torch

    from artlab.models import backbone, features

    size = 224
    images = torch.cat([corpus.subset(style=style, subject=subject).load(0, (size, size))
                        for style, subject in (("brush", "astronaut"), ("photo", "astronaut"), ("photo", "rocket"))])
    deep = model.spec.style_layers[-1]
    out = {}
    for which, net in (("trained", model), ("random", backbone(model.name, weights=None, device="cpu"))):
        pooled = torch.nn.functional.normalize(features(net, images, [deep])[deep].mean(dim=(2, 3)), dim=1)
        out[f"{which}_similarity_painting_photo"] = float(pooled[0] @ pooled[1])
        out[f"{which}_similarity_photo_rocket"] = float(pooled[1] @ pooled[2])
    return out


def prediction_numbers(model, corpus) -> dict:
    """Section 5 of notebook 01: what the network thinks photos and paintings are."""
    from artlab.predict import confidence_table, predict

    photos = predict(model, corpus.subset(domain="photo"))
    paintings = predict(model, corpus.subset(domain="painting"))
    table = confidence_table({"photos": photos, "paintings": paintings}).set_index("set")
    # each painting against the photo it was painted from (the same subject)
    meta = {str(item.path): item.meta for item in corpus}
    photo_of = {meta[n]["subject"]: (top1, conf) for n, top1, conf in
                zip(photos.names, photos.top1(), photos.confidence.tolist())}
    kept = lower = 0
    confs: dict[str, list[float]] = {s: [] for s in PAINT_STYLES}
    top1s: dict[str, list[str]] = {s: [] for s in PAINT_STYLES}
    for name, top1, conf in zip(paintings.names, paintings.top1(), paintings.confidence.tolist()):
        photo_top1, photo_conf = photo_of[meta[name]["subject"]]
        kept += top1 == photo_top1
        lower += conf < photo_conf
        confs[meta[name]["style"]].append(conf)
        top1s[meta[name]["style"]].append(top1)
    style_conf = {s: sum(c) / len(c) for s, c in confs.items()}
    slic_top = Counter(top1s["slic"]).most_common(1)[0]
    woodblock_top = Counter(top1s["woodblock"]).most_common(1)[0]
    cat = {meta[n]["style"]: (top1, conf) for preds in (photos, paintings)
           for n, top1, conf in zip(preds.names, preds.top1(), preds.confidence.tolist())
           if meta[n]["subject"] == "chelsea"}
    unsure = min(range(len(photos)), key=lambda i: float(photos.confidence[i]))
    return {
        "cat_top1": {style: top1 for style, (top1, _) in sorted(cat.items())},
        "unsure_photo": meta[photos.names[unsure]]["subject"],
        "unsure_photo_top1": photos.top1()[unsure],
        "unsure_photo_confidence": float(photos.confidence[unsure]),
        "photo_confidence": float(photos.confidence.mean()),
        "painting_confidence": float(paintings.confidence.mean()),
        "photo_entropy": float(photos.entropy.mean()),
        "painting_entropy": float(paintings.entropy.mean()),
        "p_confidence": float(table.loc["paintings", "p (confidence vs photos)"]),
        "lower_than_own_photo": int(lower),
        "kept_top1": int(kept),
        "least_sure_style": min(style_conf, key=style_conf.get),
        "least_sure_confidence": min(style_conf.values()),
        "surest_style": max(style_conf, key=style_conf.get),
        "surest_confidence": max(style_conf.values()),
        "slic_top1": slic_top[0], "slic_top1_count": int(slic_top[1]),
        "woodblock_top1": woodblock_top[0], "woodblock_top1_count": int(woodblock_top[1]),
    }


def shift_numbers(model, corpus) -> dict:
    """Section 6 of notebook 01: the domain shift, photos against paintings and between two styles."""
    import warnings

    from artlab import activations as act

    store = act.FeatureStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", act.SmallSampleWarning)
        kw = dict(size=SHIFT_SIZE, n_boot=2, n_perm=SHIFT_PERM, measures=("mmd", "probe"), cache=store,
                  progress=False)
        shift = act.domain_shift(corpus.subset(domain="photo"), corpus.subset(domain="painting"), model, **kw)
        styles = act.domain_shift(corpus.subset(style="pointillism"), corpus.subset(style="woodblock"), model, **kw)
    w, s = shift.wide().set_index("layer"), styles.wide().set_index("layer")
    deep_layers = [layer for layer in s.index if layer != s.index[0]]
    return {
        "probe_best_layer": str(w["probe"].idxmax()),
        "probe_best": float(w["probe"].max()),
        "probe_first_layer": float(w["probe"].iloc[0]),
        "mmd_p_min": float(w["mmd_p"].min()),
        "styles_mmd_p_first_layer": float(s["mmd_p"].iloc[0]),
        "styles_mmd_p_max_deeper": float(s.loc[deep_layers, "mmd_p"].max()),
    }


def embedding_claims(model, corpus, cache_dir=None) -> dict:
    """Notebook 04's statements about EfficientNet-Lite0's embeddings (default size 224, 5 folds), as facts
    to check: who the pointillist coffee's neighbours are, what the probe confuses, how pooling compares."""
    from artlab.embed import embed, linear_probe, nearest

    kw = dict(size=224, progress=False, cache_dir=cache_dir)
    emb = embed(corpus, model, **kw)
    gram = embed(corpus, model, pooling="gram", **kw)
    query = emb.paths.index(str(corpus.subset(style="pointillism", subject="coffee")[0].path))
    near = nearest(emb, query, k=5)
    probe = linear_probe(emb, folds=5)
    conf = probe.confusion
    i = {c: k for k, c in enumerate(probe.classes)}
    return {
        # the name the text uses (an alias such as stage6) when it is the layer embed() used
        "embed_layer": (model.spec.embed_layer if model.spec.embed_layer
                        and model.resolve_layer(model.spec.embed_layer) == emb.layer else emb.layer),
        "embed_channels": int(emb.vectors.shape[1]),
        "neighbour_styles": list(near["label"]),
        "neighbour_subjects": list(near["subject"]),
        "photos_taken_for_kmeans": int(conf[i["photo"], i["kmeans"]]),
        "kmeans_taken_for_photos": int(conf[i["kmeans"], i["photo"]]),
        "style_probe_accuracy": float(probe.accuracy),
        "style_probe_chance": float(probe.chance),
        "gram_style_probe_accuracy": float(linear_probe(gram, folds=5).accuracy),
        "domain_probe_balanced": float(linear_probe(emb, "domain", folds=5).balanced_accuracy),
    }


def _shared_sets(data):
    from pathlib import Path

    from artlab.data import Collection

    return tuple(Collection.from_folder(Path(data) / name) for name in ("paintings", "photos"))


def shared_prediction_numbers(model, data) -> dict:
    """Notebook 01 also quotes the developers' set of real paintings and photographs (``../shared/data``:
    paintings in artist folders, photographs in topic folders; not shipped with artlab, so the tests that
    check these numbers skip without it)."""
    from artlab.predict import confidence_table, predict

    paintings, photos = _shared_sets(data)
    p_paint, p_photo = predict(model, paintings), predict(model, photos)
    table = confidence_table({"photos": p_photo, "paintings": p_paint}).set_index("set")
    return {
        "shared_paintings": len(p_paint), "shared_photos": len(p_photo),
        "shared_photo_confidence": float(p_photo.confidence.mean()),
        "shared_painting_confidence": float(p_paint.confidence.mean()),
        "shared_p_confidence": float(table.loc["paintings", "p (confidence vs photos)"]),
    }


def shared_probe_numbers(model, data) -> dict:
    """Notebook 04: the painting-or-photo probe on the developers' set (see shared_prediction_numbers)."""
    from artlab.embed import embed, linear_probe

    paintings, photos = _shared_sets(data)
    emb = embed([*paintings.paths, *photos.paths], model, size=224, progress=False, cache_dir=False)
    probe = linear_probe(emb, ["painting"] * len(paintings) + ["photo"] * len(photos), folds=5)
    return {"shared_paintings": len(paintings), "shared_photos": len(photos),
            "shared_domain_probe_balanced": float(probe.balanced_accuracy)}


def measure(shared: str | None = None) -> dict:
    from artlab.data import sample_corpus

    model, corpus = lite0(), sample_corpus(progress=False)
    numbers = (feature_map_numbers(model, corpus) | prediction_numbers(model, corpus) | shift_numbers(model, corpus)
               | embedding_claims(model, corpus, cache_dir=False))
    if shared:
        numbers |= shared_prediction_numbers(model, shared) | shared_probe_numbers(model, shared)
    return numbers


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    numbers = measure(str(shared) if (shared / "paintings").is_dir() else None)
    print("QUOTED = {")
    for key, value in numbers.items():
        print(f"    {key!r}: {round(value, 4) if isinstance(value, float) else value!r},")
    print("}")
    print(f"# measured in {time.perf_counter() - start:.1f} s")
