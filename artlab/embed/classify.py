"""Classifiers of a collection's labels: a linear probe on embeddings, or a network fine-tuned end to end.

"Does the network tell Constable from Rousseau?" has two answers of different cost:

* :func:`linear_probe` measures how well a linear classifier on the vectors of
  :func:`artlab.embed.embed` predicts a label (artist, style), cross-validated: seconds,
  and it says what the embedding already holds.
* :func:`finetune` trains a small network (EfficientNet-Lite0 or torchvision's
  MobileNetV2) end to end instead: a :class:`Finetune` run of :class:`FinetuneStep`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from artlab.activations.pooled import check_size
from artlab.data import Collection
from artlab.efficientnet import LITE_MEAN, LITE_STD
from artlab.embed.embeddings import Embeddings, as_collection, is_missing, skipped_note
from artlab.embed.maps import as_matrix
from artlab.figures import ArtlabFigure, model_tag, stamp_model
from artlab.images import ImageLoadError, ensure_image_batch, load_images
from artlab.models import IMAGENET_MEAN, IMAGENET_STD, load_state_dict_file
from artlab.runs import Run

__all__ = ["Finetune", "FinetuneStep", "FinetunedClassifier", "ProbeResult", "finetune", "linear_probe"]


# --------------------------------------------------------------------------- linear probe


@dataclass
class ProbeResult:
    """Cross-validated linear classifier on embeddings: how well the vectors predict a label.

    ``accuracy`` (mean over folds) ± ``accuracy_std``, ``fold_accuracies``;
    ``balanced_accuracy`` (mean per-class recall of the out-of-fold predictions, robust to
    unequal class sizes); ``confusion`` (rows true, columns predicted, in ``classes``
    order); ``report`` (scikit-learn's classification report as a table); ``predictions``
    (out-of-fold predicted label per image of the embeddings, None for images left out);
    ``misclassified`` (their row indices); ``chance`` (the majority-class rate to beat).
    """

    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    balanced_accuracy: float
    classes: list[str]
    confusion: np.ndarray
    report: pd.DataFrame
    predictions: np.ndarray
    misclassified: list[int]
    labels: np.ndarray
    folds: int
    chance: float
    notes: list[str] = field(default_factory=list)
    model_label: str = ""
    pretrained: bool = False
    layer: str = ""
    pooling: str = ""
    paths: list[str] = field(default_factory=list)

    @property
    def accuracy_mean(self) -> float:
        return self.accuracy

    def to_frame(self) -> pd.DataFrame:
        """One row per image used: index, path, label, predicted, correct."""
        used = [i for i, p in enumerate(self.predictions) if p is not None]
        return pd.DataFrame({
            "index": used,
            "path": [self.paths[i] for i in used] if self.paths else None,
            "label": [self.labels[i] for i in used],
            "predicted": [self.predictions[i] for i in used],
            "correct": [self.labels[i] == self.predictions[i] for i in used],
        })

    def __str__(self) -> str:
        return (f"linear probe ({self.model_label}, {self.layer}, {self.pooling}): accuracy "
                f"{self.accuracy:.3f} ± {self.accuracy_std:.3f} over {self.folds} folds, balanced "
                f"{self.balanced_accuracy:.3f}, chance {self.chance:.3f}, {len(self.classes)} classes")

    def plot_confusion(self, normalize: bool = True) -> ArtlabFigure:
        """The confusion matrix as a heatmap (rows: true label, normalised per row unless told not to)."""
        counts = self.confusion.astype(float)
        shown = counts / np.maximum(counts.sum(1, keepdims=True), 1) if normalize else counts
        k = len(self.classes)
        side = 2.2 + 0.55 * k
        fig = ArtlabFigure(figsize=(side + 1.2, side + 0.6))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        ax.set_xticks(range(k), self.classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), self.classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "#222222")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of row" if normalize else "images")
        ax.set_title(f"linear probe {self.layer} ({self.pooling}): accuracy {self.accuracy:.2f} ± "
                     f"{self.accuracy_std:.2f}, chance {self.chance:.2f}", fontsize=9)
        fig.subplots_adjust(bottom=0.25)
        return stamp_model(fig, model_tag(label=self.model_label, pretrained=self.pretrained))


def _probe_labels(emb: Embeddings, labels: Sequence[Any] | str | None) -> np.ndarray:
    if labels is None:
        labels = "label"
    if isinstance(labels, str):
        if labels not in emb.meta.columns:
            raise ValueError(f"no metadata column {labels!r}; available: {', '.join(map(str, emb.meta.columns))}")
        labels = list(emb.meta[labels])
    labels = list(labels)
    if len(labels) != len(emb):
        raise ValueError(f"labels has {len(labels)} entries for {len(emb)} images")
    return np.array([None if is_missing(v) else str(v) for v in labels], dtype=object)


def linear_probe(emb: Embeddings, labels: Sequence[Any] | str | None = None, *, folds: int = 5, seed: int = 0,
                 C: float = 1.0) -> ProbeResult:
    """How well a linear classifier on the vectors predicts ``labels``, cross-validated.

    ``labels``: one per image, or a metadata column name; default ``meta["label"]``.
    Standardised features, multinomial logistic regression with L2 strength ``1/C``,
    stratified ``folds``-fold cross-validation shuffled by ``seed``. Exact duplicates are
    kept in the same fold (grouped), so an image never meets its own copy in training.
    Images without a label and classes with a single image are left out (noted); if a
    class has fewer than ``folds`` images the number of folds is reduced (noted). Fewer
    than two classes raises ``ValueError``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(folds, bool) or int(folds) < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    y_all = _probe_labels(emb, labels)
    notes: list[str] = []
    unlabelled = [i for i, v in enumerate(y_all) if v is None]
    if unlabelled:
        notes.append(f"{len(unlabelled)} image(s) without a label left out")
    counts = pd.Series([v for v in y_all if v is not None]).value_counts()
    singles = sorted(counts[counts < 2].index)
    if singles:
        notes.append("class(es) with a single image left out (cannot be both trained and tested): "
                     + ", ".join(singles))
    classes = sorted(counts[counts >= 2].index)
    if len(classes) < 2:
        found = ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
        raise ValueError(
            f"a linear probe needs at least two classes with two or more images each; found {found}. "
            "Label the images (class subfolders or a metadata column) or pass labels=..."
        )
    used = np.array([i for i, v in enumerate(y_all) if v in set(classes)])
    x = as_matrix(emb.vectors[used])
    y = y_all[used].astype(str)
    smallest = int(counts[classes].min())
    n_folds = min(int(folds), smallest)
    if n_folds < int(folds):
        notes.append(f"the smallest class has {smallest} images: {n_folds}-fold instead of {folds}-fold "
                     "cross-validation")
    groups = np.array([emb.hashes[i] for i in used]) if emb.hashes and emb.duplicates else None
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(x, y, groups))
    else:
        splits = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y))
    predicted = np.empty(len(y), dtype=object)
    fold_acc = []
    for train, test in splits:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000))
        clf.fit(x[train], y[train])
        predicted[test] = clf.predict(x[test])
        fold_acc.append(float(np.mean(predicted[test] == y[test])))
    pred = predicted.astype(str)
    report = pd.DataFrame(classification_report(y, pred, labels=classes, output_dict=True, zero_division=0)).T
    predictions = np.full(len(emb), None, dtype=object)
    predictions[used] = pred
    return ProbeResult(
        accuracy=float(np.mean(fold_acc)), accuracy_std=float(np.std(fold_acc)), fold_accuracies=fold_acc,
        balanced_accuracy=float(balanced_accuracy_score(y, pred)), classes=classes,
        confusion=confusion_matrix(y, pred, labels=classes), report=report, predictions=predictions,
        misclassified=[int(i) for i, p, t in zip(used, pred, y) if p != t], labels=y_all, folds=n_folds,
        chance=float(counts[classes].max() / counts[classes].sum()), notes=notes, model_label=emb.model_label,
        pretrained=emb.pretrained, layer=emb.layer, pooling=emb.pooling, paths=list(emb.paths),
    )


# --------------------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneStep:
    """One optimiser step of :func:`finetune`.

    ``val_accuracy`` is set on the last step of each epoch (after evaluating on the
    held-out images), None otherwise; ``model`` is set on the very last step.
    """

    epoch: int
    step: int
    train_loss: float
    val_accuracy: float | None = None
    model: FinetunedClassifier | None = None


class FinetunedClassifier(nn.Module):
    """A torchvision classifier for artlab images ([0, 1], normalised inside) with class names and a label."""

    def __init__(self, net: nn.Module, classes: Sequence[str], *, label: str, pretrained: bool,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.net = net
        self.classes = list(classes)
        self.label = label
        self.pretrained = pretrained
        self.register_buffer("mean", torch.tensor(tuple(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tuple(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """Logits N×K of a batch of artlab images."""
        return self.net((images.to(self.mean.device) - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[str]:
        """The predicted class name of each image (evaluation mode)."""
        was = self.training
        self.eval()
        try:
            return [self.classes[i] for i in self(ensure_image_batch(images)).argmax(1).tolist()]
        finally:
            self.train(was)


class Finetune(Run[FinetuneStep]):
    """What :func:`finetune` returns: a :class:`~artlab.runs.Run` of :class:`FinetuneStep`, one per batch.

    Iterate it to train (``break`` and :meth:`close` whenever you like); ``model`` is the
    network being trained, usable after a stop, with ``classes``, ``label``,
    ``n_train``/``n_val`` and ``notes`` beside it.
    """

    def __init__(self, model: FinetunedClassifier, data: Tensor, target: Tensor, train_idx: list[int],
                 val_idx: list[int], notes: list[str], *, epochs: int, batch_size: int, lr: float, seed: int,
                 device: torch.device) -> None:
        self.model = model
        self.classes = model.classes
        self.label = model.label
        self.n_train, self.n_val, self.notes = len(train_idx), len(val_idx), notes
        self._data, self._target = data, target  # images as uint8 (a quarter of float32's memory)
        self._train_idx, self._val_idx = train_idx, val_idx
        self._epochs, self._batch_size, self._lr, self._seed, self._device = epochs, batch_size, lr, seed, device

    def _batch(self, indices: Sequence[int]) -> Tensor:
        return self._data[list(indices)].to(self._device, torch.float32) / 255

    def _steps(self) -> Iterator[FinetuneStep]:
        model, dev, seed, size = self.model, self._device, self._seed, self._batch_size
        optimizer = torch.optim.Adam(model.parameters(), lr=self._lr)
        g = torch.Generator().manual_seed(seed)
        step = 0
        for epoch in range(self._epochs):
            model.train()
            order = [self._train_idx[i] for i in torch.randperm(len(self._train_idx), generator=g).tolist()]
            chunks = [order[s : s + size] for s in range(0, len(order), size)]
            if len(chunks) > 1 and len(chunks[-1]) == 1:  # batch norm cannot train on one image
                chunks[-2] += chunks.pop()
            for n, chunk in enumerate(chunks):
                x = self._batch(chunk)
                flip = torch.rand(len(chunk), generator=g) < 0.5
                x = torch.where(flip.to(dev).view(-1, 1, 1, 1), x.flip(-1), x)
                # Dropout draws from torch's global generator: seed it per step inside fork_rng,
                # so runs are reproducible and the caller's RNG state is left as it was.
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    torch.manual_seed(seed * 1_000_003 + step)
                    loss = nn.functional.cross_entropy(model(x), self._target[chunk].to(dev))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                step += 1
                last = n == len(chunks) - 1
                accuracy = _val_accuracy(model, self._batch, self._val_idx, self._target, size) if last else None
                done = last and epoch == self._epochs - 1
                yield FinetuneStep(epoch, step, float(loss), accuracy, model if done else None)


def _split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified train/validation indices: ``val_fraction`` of each class (at least one) held out."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in sorted(set(labels)):
        members = [i for i, v in enumerate(labels) if v == cls]
        rng.shuffle(members)
        n_val = max(1, round(val_fraction * len(members))) if val_fraction > 0 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def _mobilenet(classes: int, weights: Any, seed: int) -> tuple[nn.Module, str, bool]:
    """MobileNetV2 with a ``classes``-way head; (net, label, pretrained)."""
    import torchvision

    from artlab import weights as _weights

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG's state
        torch.manual_seed(seed)
        net = torchvision.models.mobilenet_v2(weights=None)
        head = nn.Linear(net.classifier[1].in_features, classes)
    label, pretrained = f"mobilenet_v2 · random init (seed {seed})", False
    if isinstance(weights, (str, os.PathLike)) and str(weights).lower() not in ("none", "random"):
        choice = str(weights)
        if choice.lower() in ("auto", "imagenet"):
            entry = torchvision.models.MobileNet_V2_Weights.DEFAULT
            filename = entry.url.rsplit("/", 1)[-1]
            known = _weights.KnownFile(f"mobilenet_v2/{entry.name}", filename, entry.url,
                                       sha256_prefix=_weights.hash_prefix_from_name(filename),
                                       used_by="artlab.embed.finetune")
            path = _weights.cached_path(known)
            if path is None and choice.lower() == "imagenet":
                raise _weights.WeightsNotFoundError(_weights.missing_message(known, "finetune never downloads"))
            if path is None:
                warnings.warn(
                    f"mobilenet_v2: ImageNet weights ({filename}) are not in {_weights.cache_dir()}; training from a "
                    f"random init (seed {seed}), which needs far more images and epochs. The label says so.",
                    stacklevel=3,
                )
            else:
                net.load_state_dict(load_state_dict_file(path))
                label, pretrained = f"mobilenet_v2 · ImageNet ({entry.name}), fine-tuned", True
        else:
            path = Path(choice).expanduser()
            net.load_state_dict(load_state_dict_file(path))
            label, pretrained = f"mobilenet_v2 · weights from {path.name}, fine-tuned", True
    elif weights is not None and str(weights).lower() not in ("none", "random"):
        raise TypeError(f"weights must be 'auto', 'imagenet', None or a path, got {type(weights).__name__}")
    net.classifier[1] = head  # torchvision's 1000-way ImageNet head replaced by ours
    return net, label, pretrained


def _lite0(classes: int, weights: Any, seed: int) -> tuple[nn.Module, str, bool]:
    """EfficientNet-Lite0 (ImageNet weights bundled with artlab) with a ``classes``-way head."""
    from artlab.models import backbone

    text = None if weights is None else str(weights)
    choice = None if text is None or text.lower() in ("none", "random") else (
        "imagenet" if text.lower() in ("auto", "imagenet") else weights)
    built = backbone("efficientnet_lite0", weights=choice, seed=seed, download=False)
    net = built.net.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net._fc = nn.Linear(net._fc.in_features, classes)  # the 1000-way ImageNet head replaced by ours
    label = f"{built.label}, fine-tuned" if built.pretrained else built.label
    return net, label, built.pretrained


#: finetune's architectures: builder and input normalisation
_ARCHS = {
    "efficientnet_lite0": (_lite0, LITE_MEAN, LITE_STD),
    "mobilenet_v2": (_mobilenet, IMAGENET_MEAN, IMAGENET_STD),
}


def finetune(
    folder_or_collection: str | os.PathLike | Collection,
    *,
    arch: str = "efficientnet_lite0",
    epochs: int = 3,
    val_fraction: float = 0.2,
    seed: int = 0,
    weights: str | os.PathLike | None = "auto",
    batch_size: int = 16,
    size: int = 160,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
) -> Finetune:
    """Train a classifier of the collection's labels end to end; iterate the returned run to train it.

    ``arch``: EfficientNet-Lite0 (default: its ImageNet weights come with artlab, so
    every machine starts from a trained network) or torchvision's MobileNetV2, with the
    classifier replaced by a K-way linear layer; every layer is trained with Adam at
    ``lr``. ``weights="auto"`` starts from ImageNet weights (MobileNetV2: if they are in
    the torch hub cache, otherwise from a seeded random init with a warning; ``label``
    says which); ``"imagenet"`` requires them; None forces random. A stratified
    ``val_fraction`` of each class is held out and evaluated after every epoch. Images are loaded once at size×size (centre crop) and
    flipped left-right at random (seeded) while training. The returned :class:`Finetune`
    yields one :class:`FinetuneStep` per batch and exposes ``model``.
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; finetune supports {', '.join(map(repr, _ARCHS))}")
    if isinstance(epochs, bool) or int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not 0 <= float(val_fraction) < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    size = check_size(size)
    collection = as_collection(folder_or_collection)
    notes = list(collection.notes)
    images, labels, skipped = [], [], []
    for item in collection.items:
        if item.label is None:
            skipped.append((str(item.path), "no label"))
            continue
        try:  # kept as uint8: a quarter of the memory of float32
            images.append((load_images([item.path], size)[0] * 255).round().to(torch.uint8))
        except ImageLoadError as exc:
            skipped.append((str(item.path), exc.reason))
            continue
        labels.append(str(item.label))
    if skipped:
        notes.append(skipped_note(skipped))
    counts = pd.Series(labels, dtype=object).value_counts()
    if len(counts) < 2 or (val_fraction > 0 and counts.min() < 2):
        raise ValueError(
            "finetune needs at least two labelled classes with two or more images each (one goes to validation); "
            f"found {dict(counts) or 'no labelled images'}"
        )
    classes = sorted(counts.index)
    target = torch.tensor([classes.index(v) for v in labels])
    train_idx, val_idx = _split(labels, float(val_fraction), seed)
    build, mean, std = _ARCHS[arch]
    net, label, pretrained = build(len(classes), weights, seed)
    model = FinetunedClassifier(net, classes, label=label, pretrained=pretrained, mean=mean, std=std)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model.to(dev)
    return Finetune(model, torch.stack(images), target, train_idx, val_idx, notes, epochs=int(epochs),
                    batch_size=int(batch_size), lr=lr, seed=seed, device=dev)


@torch.no_grad()
def _val_accuracy(model: FinetunedClassifier, batch_of: Callable[[Sequence[int]], Tensor], val_idx: list[int],
                  target: Tensor, batch_size: int) -> float | None:
    if not val_idx:
        return None
    model.eval()
    correct = 0
    for s in range(0, len(val_idx), batch_size):
        chunk = val_idx[s : s + batch_size]
        correct += int((model(batch_of(chunk)).argmax(1).cpu() == target[chunk]).sum())
    model.train()
    return correct / len(val_idx)
