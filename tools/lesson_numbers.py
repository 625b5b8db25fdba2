"""The numbers the lesson texts quote, measured the way the lessons measure them.

    .venv/bin/python tools/lesson_numbers.py

prints them in the form of ``QUOTED`` in tools/make_notebook_01.py: paste, regenerate the
notebook (and update the README sentence that repeats them). tests/test_notebooks.py measures
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


def prediction_numbers(model, corpus) -> dict:
    """Section 5 of notebook 01: what the network thinks photos and paintings are."""
    from artlab.predict import confidence_table, predict

    photos = predict(model, corpus.subset(domain="photo"))
    paintings = predict(model, corpus.subset(domain="painting"))
    table = confidence_table({"photos": photos, "paintings": paintings}).set_index("set")
    by_style = {s: predict(model, corpus.subset(style=s)) for s in PAINT_STYLES}
    # each painting against the photo it was painted from (the same subject)
    subject_of = {str(item.path): item.meta["subject"] for item in corpus}
    photo_of = {subject_of[n]: (top1, conf) for n, top1, conf in
                zip(photos.names, photos.top1(), photos.confidence.tolist())}
    kept = lower = 0
    for preds in by_style.values():
        for name, top1, conf in zip(preds.names, preds.top1(), preds.confidence.tolist()):
            photo_top1, photo_conf = photo_of[subject_of[name]]
            kept += top1 == photo_top1
            lower += conf < photo_conf
    style_conf = {s: float(p.confidence.mean()) for s, p in by_style.items()}
    slic_top = Counter(by_style["slic"].top1()).most_common(1)[0]
    woodblock_top = Counter(by_style["woodblock"].top1()).most_common(1)[0]
    return {
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


def measure() -> dict:
    from artlab.data import sample_corpus

    model, corpus = lite0(), sample_corpus(progress=False)
    return prediction_numbers(model, corpus) | shift_numbers(model, corpus)


if __name__ == "__main__":
    import time

    start = time.perf_counter()
    numbers = measure()
    print("QUOTED = {")
    for key, value in numbers.items():
        print(f"    {key!r}: {round(value, 4) if isinstance(value, float) else value!r},")
    print("}")
    print(f"# measured in {time.perf_counter() - start:.1f} s")
