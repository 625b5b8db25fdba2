"""Two sets of images (paintings vs photos): how far apart they are at each layer of a network.

:func:`domain_shift` pools each layer's maps to one vector per image
(:mod:`artlab.activations.pooled`) and measures, layer by layer, how far apart the two
clouds of vectors are (:mod:`artlab.activations.statistics`): the Fréchet distance (the
FID formula), KID (unbiased polynomial-kernel MMD²), an RBF-kernel MMD² with a
permutation test, and the accuracy of a linear probe. Every number comes with n, the
feature dimension, an interval (Fréchet: bias-corrected from half-samples; the others: a
bootstrap) and a note when n is too small for it or when a value needs reading (a negative
KID/MMD², a probe below chance); a
:class:`~artlab.activations.SmallSampleWarning` says when n ≤ dim somewhere. The
:class:`DomainShift` result keeps the pooled features, so it can also say which channels
separate the sets and which images to show for them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from artlab.activations.inspection import check_k, layer_list
from artlab.activations.pooled import (
    FeatureStore,
    ImageSet,
    ImageSources,
    check_size,
    image_sources,
    pool_set,
    size_notes,
)
from artlab.activations.statistics import (
    MEASURES,
    MIN_PER_SET,
    SmallSampleWarning,
    measure_rows,
    reading_note,
    standardise_jointly,
)
from artlab.data import Collection
from artlab.figures import ArtlabFigure, model_tag, stamp_model
from artlab.images import ensure_image_batch, load_images
from artlab.models import Backbone, model_device, receptive_field
from artlab.runs import Progress, progress_bar

__all__ = ["DomainShift", "domain_shift", "default_layers"]


@dataclass
class DomainShift:
    """Per-layer distances between two image sets, with the features they came from.

    ``table`` is tidy: one row per (layer, measure) with value, interval (ci_low, ci_high),
    p-value (MMD only), set sizes, feature dimension and a note. ``wide()`` puts one
    row per layer; ``plot()`` draws each measure across depth; ``divergent_channels``
    says which channels separate the sets most at a layer, ``example_candidates`` which
    images can show them, and ``measured_images`` reloads a set as it was measured.
    """

    table: pd.DataFrame
    features_a: dict[str, Tensor]
    features_b: dict[str, Tensor]
    model_label: str
    pretrained: bool
    notes: list[str]
    layers: list[str]
    names: tuple[str, str] = ("A", "B")
    size: int = 224
    seed: int = 0
    sources_a: list[str] = field(default_factory=list)
    sources_b: list[str] = field(default_factory=list)

    def wide(self) -> pd.DataFrame:
        """One row per layer (depth order): n_a, n_b, dim and a column per measure (plus mmd_p)."""
        t = self.table
        frame = t.pivot_table(index=["layer", "depth"], columns="measure", values="value", sort=False)
        frame = frame.reset_index().sort_values("depth", kind="stable")
        ordered = [m for m in MEASURES if m in frame.columns]
        extra = t.groupby("layer", sort=False)[["n_a", "n_b", "dim"]].first()
        frame = frame.merge(extra, left_on="layer", right_index=True)
        columns = ["layer", "depth", "n_a", "n_b", "dim"] + ordered
        if "mmd" in ordered:
            p = t[t["measure"] == "mmd"].set_index("layer")["p_value"]
            frame["mmd_p"] = frame["layer"].map(p)
            columns.insert(columns.index("mmd") + 1, "mmd_p")
        frame = frame[columns].reset_index(drop=True)
        frame.columns.name = None
        return frame

    def _header(self) -> str:
        tag = "pretrained" if self.pretrained else "RANDOM INIT (not ImageNet features)"
        a, b = self.names
        n_a, n_b = (int(self.table[c].iloc[0]) if len(self.table) else 0 for c in ("n_a", "n_b"))
        return f"Domain shift {a} (n={n_a}) vs {b} (n={n_b}) · {self.model_label} · {tag} · {self.size} px"

    def _display_frame(self) -> pd.DataFrame:
        """Wide table with 'value [lo, hi]' cells."""
        t = self.table
        out = self.wide()[["layer", "dim"] + [c for c in ("mmd_p",) if c in self.wide().columns]]
        for measure in [m for m in MEASURES if m in set(t["measure"])]:
            rows = t[t["measure"] == measure].set_index("layer")
            out[measure] = [
                f"{rows.at[layer, 'value']:.4g} [{rows.at[layer, 'ci_low']:.3g}, {rows.at[layer, 'ci_high']:.3g}]"
                for layer in out["layer"]
            ]
        if "mmd_p" in out.columns:
            out["mmd_p"] = out["mmd_p"].map(lambda p: f"{p:.3g}")
            out = out[[c for c in out.columns if c != "mmd_p"] + ["mmd_p"]]
        return out

    def __str__(self) -> str:
        lines = [self._header(), self._display_frame().to_string(index=False)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        colour = "#555" if self.pretrained else "#c0392b"
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div><p style='color:{colour};font-weight:bold'>{html.escape(self._header())}</p>"
            f"{self._display_frame().to_html(index=False)}"
            + (f"<ul style='font-size:smaller'>{notes}</ul>" if notes else "")
            + "</div>"
        )

    def divergent_channels(self, layer: str, k: int = 8) -> pd.DataFrame:
        """Channels whose pooled activation separates the sets most at ``layer``.

        Columns channel, mean_a, mean_b, effect: Cohen's d, (mean_a − mean_b) / pooled std
        (NaN for a channel constant in both sets), sorted by |effect|.
        """
        a, b = (self._features(which, layer).double().numpy() for which in (0, 1))
        na, nb = len(a), len(b)
        pooled = np.sqrt(((na - 1) * a.var(0, ddof=1) + (nb - 1) * b.var(0, ddof=1)) / (na + nb - 2))
        diff = a.mean(0) - b.mean(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1), np.nan)
        frame = pd.DataFrame({"channel": np.arange(a.shape[1]), "mean_a": a.mean(0), "mean_b": b.mean(0),
                              "effect": effect})
        order = frame["effect"].abs().sort_values(ascending=False, kind="stable", na_position="last").index
        return frame.loc[order].head(check_k(k, len(frame))).reset_index(drop=True)

    def example_candidates(self, which: int, layer: str, channels: Iterable[int], k: int) -> list[int]:
        """The images of set ``which`` (0: A, 1: B) that can be among the ``k`` most activating
        images of any of ``channels`` at ``layer``: indices into the set, ascending.

        The pooled features already hold each image's mean activation of every channel (the
        score :func:`~artlab.activations.example_maps` ranks by), so only these images need to
        go through the network, all in one batch, to show each channel's strongest examples: a
        whole set's full-resolution maps would not fit in memory for large sets.
        """
        pooled = self._features(which, layer)
        k = min(int(k), pooled.shape[0])
        return sorted({i for c in channels for i in torch.topk(pooled[:, int(c)], k).indices.tolist()})

    def measured_images(self, which: int, images: ImageSet) -> Tensor:
        """Set ``which``'s (0: A, 1: B) images as :func:`domain_shift` measured them: size×size crops,
        one per row of its features, in their order.

        ``images`` is what was passed for that set. A tensor or a list of in-memory images is
        loaded whole (the same resize and crop); files (a folder, a Collection, paths) are
        reloaded from the paths this result lists as used, so files it skipped stay out.
        ValueError when ``images`` cannot be the set that was measured.
        """
        which = self._check_which(which)
        name, used = f"set {self.names[which]}", (self.sources_a, self.sources_b)[which]
        loaded = _reload(images, used, self.size, name)
        feats = (self.features_a, self.features_b)[which]
        n = next(iter(feats.values())).shape[0] if feats else len(loaded)
        if len(loaded) != n:
            raise ValueError(f"{name}: {len(loaded)} images given but the shift was computed on {n}; "
                             "pass the same images, in the same order, that domain_shift saw")
        return loaded

    def _check_which(self, which: int) -> int:
        if which not in (0, 1):
            raise ValueError(f"which must be 0 (set {self.names[0]}) or 1 (set {self.names[1]}), got {which!r}")
        return which

    def _features(self, which: int, layer: str) -> Tensor:
        """Set ``which``'s pooled features at ``layer`` (N×C); ValueError for a layer not measured."""
        if layer not in self.features_a:
            raise ValueError(f"no features for layer {layer!r}; this result has {', '.join(self.features_a)}")
        return (self.features_a, self.features_b)[self._check_which(which)][layer]

    def plot(self) -> ArtlabFigure:
        """One panel per measure: value across layers (depth order) with its bootstrap band."""
        t = self.table
        measures = [m for m in MEASURES if m in set(t["measure"])]
        layers = self.wide()["layer"].tolist()
        fig = ArtlabFigure(figsize=(3.3 * len(measures), 3.4))
        axes = fig.subplots(1, len(measures), squeeze=False)[0]
        for ax, measure in zip(axes, measures):
            rows = t[t["measure"] == measure].set_index("layer").loc[layers]
            x = np.arange(len(layers))
            ax.fill_between(x, rows["ci_low"], rows["ci_high"], alpha=0.25, color="#2980b9", lw=0)
            ax.plot(x, rows["value"], "o-", color="#2980b9", ms=4)
            if measure == "mmd":
                sig = rows["p_value"].to_numpy() < 0.05
                ax.plot(x[sig], rows["value"].to_numpy()[sig], "o", color="#c0392b", ms=6, label="p < 0.05")
                if sig.any():
                    ax.legend(fontsize=7)
            if measure == "probe":
                ax.axhline(0.5, color="grey", ls="--", lw=1)
            elif measure in ("kid", "mmd"):
                ax.axhline(0.0, color="grey", ls="--", lw=1)
            ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=7)
            ax.set_title(_MEASURE_TITLES[measure], fontsize=9)
            ax.tick_params(axis="y", labelsize=7)
        a, b = self.names
        fig.suptitle(f"Domain shift per layer: {a} vs {b} · {self.model_label}", fontsize=10)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return stamp_model(fig, model_tag(label=self.model_label, pretrained=self.pretrained))


def _reload(original: ImageSet, used: Sequence[str], size: int, name: str) -> Tensor:
    """The images of ``original`` that were measured, as size×size crops (see DomainShift.measured_images)."""
    if isinstance(original, Tensor):
        batch = ensure_image_batch(original, name)
        return load_images([batch[i : i + 1] for i in range(batch.shape[0])], size)
    if isinstance(original, Sequence) and not isinstance(original, str) and not all(
            isinstance(item, (str, os.PathLike)) for item in original):
        return load_images(list(original), size)
    if not used:
        raise ValueError(f"{name}: the result does not list the files it measured; pass the images as a tensor")
    if isinstance(original, Collection):
        given = {str(path) for path in original.paths}
        foreign = [path for path in used if path not in given]
        if foreign:
            raise ValueError(f"{name}: {len(foreign)} of the measured images (e.g. {foreign[0]}) are not in this "
                             "collection; pass the collection the shift was computed on")
    return load_images([Path(path) for path in used], size)


_MEASURE_TITLES = {
    "frechet": "Fréchet distance",
    "kid": "KID (unbiased MMD², poly)",
    "mmd": "MMD² (RBF), red: p < 0.05",
    "probe": "linear probe accuracy (CV)",
}


def default_layers(model: Backbone) -> list[str]:
    """The model's layers for per-layer views (``spec.inspect_layers``; else its style layers plus its
    content layer), without duplicates, in depth order."""
    names = list(model.spec.inspect_layers) or (
        list(model.spec.style_layers) + ([model.spec.content_layer] if model.spec.content_layer else []))
    if not names:
        raise ValueError(f"{model.name} has no default style layers; pass layers=[...] explicitly")
    return _unique_by_depth(model, names)


def _unique_by_depth(model: Backbone, names: Iterable[str]) -> list[str]:
    """Validate, drop names that resolve to an already listed layer, sort by depth."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(model.resolve_layer(name), name)
    return [seen[c] for c in sorted(seen, key=model.layer_names.index)]


def _check_measures(measures: Iterable[str]) -> list[str]:
    chosen = [measures] if isinstance(measures, str) else list(dict.fromkeys(measures))
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen:
        raise ValueError(f"unknown measures {unknown or chosen}; choose from {', '.join(MEASURES)}")
    return chosen


def _check_layer_sizes(model: Backbone, layers: list[str], size: int) -> list[str]:
    """Refuse a size at which a layer's maps vanish; note layers that see the whole image."""
    notes = []
    for layer in layers:
        try:
            rf, stride = receptive_field(model, layer)
        except ValueError:  # past a global pool: every unit sees the whole image by design
            continue
        if size < stride:
            raise ValueError(
                f"size {size} px is smaller than the {stride} px stride of {layer}: its maps would be empty; "
                f"use size>={stride} or leave {layer} out of layers"
            )
        if size < rf:
            notes.append(f"{layer}: receptive field {rf} px > image size {size} px, its units see the whole image")
    return notes


def _count_check(images: ImageSources, which: str, n: int | None = None) -> None:
    n = len(images.sources) if n is None else n
    if n < MIN_PER_SET:
        raise ValueError(
            f"{which} has {n} image{'' if n == 1 else 's'}; domain shift needs at least {MIN_PER_SET} per set "
            f"({images.label}). Add images, or pick a folder with more readable files."
            + (f" Notes: {' | '.join(images.notes)}" if images.notes else "")
        )


def _statistics(
    model: Backbone, feats: list[dict[str, Tensor]], layers: list[str], measures: list[str], *,
    scale: str | None, n_boot: int, n_perm: int, seed: int, progress: bool, on_progress: Progress | None,
) -> list[dict]:
    """Table rows for every layer (:func:`~artlab.activations.statistics.measure_rows` plus layer and depth)."""
    rows: list[dict] = []
    bar = progress_bar(len(layers), "domain shift statistics", enabled=progress, unit="layer")
    try:
        for i, layer in enumerate(layers):
            a, b = (f[layer].double().numpy() for f in feats)
            if scale == "std":
                a, b = standardise_jointly(a, b)
            depth = model.layer_names.index(model.resolve_layer(layer))
            rows += [{"layer": layer, "depth": depth, **row}
                     for row in measure_rows(a, b, measures, n_boot=n_boot, n_perm=n_perm, seed=seed)]
            bar.update(1)
            if on_progress is not None:
                on_progress("statistics", i + 1, len(layers))
    finally:
        bar.close()
    return rows


def domain_shift(
    set_a: ImageSet,
    set_b: ImageSet,
    model: Backbone,
    layers: Sequence[str] | None = None,
    *,
    size: int = 224,
    batch_size: int = 8,
    n_boot: int = 200,
    n_perm: int = 500,
    seed: int = 0,
    measures: Sequence[str] = MEASURES,
    cache: FeatureStore | None = None,
    progress: bool | None = None,
    names: tuple[str, str] = ("A", "B"),
    device: str | torch.device | None = None,
    on_progress: Progress | None = None,
    scale: str | None = "std",
) -> DomainShift:
    """How far apart two image sets are at each layer of ``model``: the per-layer domain shift.

    Each image is resized (shorter side) and centre-cropped to ``size``×``size``, its maps
    at ``layers`` (default :func:`default_layers`) are average-pooled to one vector per
    layer, and each layer's two clouds of vectors are compared with ``measures``:
    ``frechet`` (FID formula; Ledoit-Wolf covariances when n ≤ dim), ``kid``, ``mmd``
    (RBF, permutation p-value from ``n_perm`` relabellings) and ``probe`` (cross-validated
    linear-probe accuracy). Each value has an interval from ``n_boot`` resamples. Fréchet:
    half of each set drawn without replacement, bias-corrected (the distance is inflated at
    small n, and a bootstrap's repeated images inflated it further, so its interval lay above
    the estimate), clipped at 0 and widened to reach the estimate; see
    :func:`~artlab.activations.statistics.half_sample_ci`. kid/mmd and the probe: a bootstrap
    whose resampling keeps copies of one image from pairing with themselves or spanning train
    and test. A negative KID/MMD² or a probe below 0.5 gets a plain note in the table and in
    ``notes``: no detectable difference, not an error. A :class:`SmallSampleWarning` is
    raised when n ≤ dim at some layer. ``seed`` fixes every random choice. ``cache`` (a
    :class:`FeatureStore`) reuses features across calls. Sets with fewer than 2 readable images raise ``ValueError``.
    ``progress`` shows progress bars (default ``None``: when a person is watching, see
    :func:`artlab.runs.wants_progress`); ``on_progress(stage, done, total)`` is called after every batch
    of images and every layer's statistics (raise from it to stop).

    ``scale="std"`` (see :func:`~artlab.activations.statistics.standardise_jointly`) puts each layer's vectors in units of
    the two sets' own spread before the Fréchet distance and KID, so layers compare: a
    random network's activations shrink or grow by orders of magnitude with depth, and deep
    ones can be nearly constant across images; raw distances would mostly show that. MMD
    (median bandwidth) and the probe (standardised) do not depend on scale. ``scale=None``
    gives raw units (the FID convention). ``features_a``/``features_b`` are always raw.
    """
    measures = _check_measures(measures)
    if cache is not None and not isinstance(cache, FeatureStore):
        raise TypeError(f"cache must be an artlab.activations.FeatureStore, got {type(cache).__name__}")
    if scale not in ("std", None):
        raise ValueError(f"scale must be 'std' or None, got {scale!r}")
    layers = default_layers(model) if layers is None else _unique_by_depth(model, layer_list(layers))
    size = check_size(size)
    labels = [f"{which} ({name})" for which, name in zip(("set_a", "set_b"), names)]
    sets = [image_sources(s, label) for s, label in zip((set_a, set_b), labels)]
    for which, images in zip(("set_a", "set_b"), sets):
        _count_check(images, which)
    notes = _check_layer_sizes(model, layers, size)
    feats, sources = [], []
    for which, images in zip(("set_a", "set_b"), sets):
        images.notes += size_notes(images, size)
        pooled, used = pool_set(model, images, layers, size=size, batch_size=int(batch_size), progress=progress,
                                cache=cache, device=model_device(model, device), on_progress=on_progress)
        _count_check(images, which, len(used))
        feats.append(pooled)
        sources.append([images.names[i] for i in used])
        notes += images.notes
    rows = _statistics(model, feats, layers, measures, scale=scale, n_boot=int(n_boot), n_perm=int(n_perm),
                       seed=seed, progress=progress, on_progress=on_progress)
    if scale == "std" and {"frechet", "kid"} & set(measures):
        notes.append("frechet and kid use each layer's features centred on both sets' mean and divided by their "
                     "RMS deviation (scale='std'): values are in units of the sets' own spread, comparable "
                     "across layers of one result, not across different pairs of sets; scale=None: raw units")
    table = pd.DataFrame(rows, columns=["layer", "depth", "measure", "value", "ci_low", "ci_high", "p_value",
                                        "n_a", "n_b", "dim", "note"])
    _warn_small(table)
    notes += _reading_notes(table)
    return DomainShift(table, feats[0], feats[1], model.label, model.pretrained, notes, layers,
                       tuple(names), size, seed, sources[0], sources[1])


def _reading_notes(table: pd.DataFrame) -> list[str]:
    """One plain line per kind of value that looks wrong but is not (negative KID/MMD², a probe below
    chance), listing where it occurs."""
    where: dict[str, list[str]] = {}
    for row in table.itertuples():
        text = reading_note(row.measure, row.value)
        if text:
            where.setdefault(text, []).append(f"{row.measure} at {row.layer}")
    return [f"{', '.join(places)}: {text}" for text, places in where.items()]


def _warn_small(table: pd.DataFrame) -> None:
    per_layer = table.groupby("layer", sort=False)[["n_a", "n_b", "dim"]].first()
    small = per_layer[per_layer[["n_a", "n_b"]].min(axis=1) <= per_layer["dim"]]
    if len(small):
        listed = ", ".join(f"{layer} (dim {int(r.dim)})" for layer, r in small.iterrows())
        n = int(per_layer[["n_a", "n_b"]].min(axis=1).min())
        warnings.warn(
            f"only {n} images in the smaller set but as many or more feature dimensions at {listed}: "
            "covariances are singular there, so the Fréchet distance uses Ledoit-Wolf shrinkage and is "
            "biased; KID and the MMD test stay unbiased. Add images for tighter estimates.",
            SmallSampleWarning,
            stacklevel=3,
        )
