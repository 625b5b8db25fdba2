"""The Jupyter layer of artlab: thin ipywidgets views over artlab's core functions.

Each widget collects inputs, calls one core function and updates its output in
place. ``FeatureMapViewer`` is deprecated: ``ActivationExplorer(..., look="mosaic")``
shows the same.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Widgets are imported on first use (PEP 562): each pulls in its own part of the core
# (UMAP, scikit-learn, StyleGAN, ...), and an app such as ``artlab explore`` should not
# pay for all of them before its page can show anything.
_MODULES = {
    "ActivationExplorer": "activation_explorer",
    "ClassifierView": "classifier_view",
    "CuratorApp": "curator_app",
    "DomainShiftView": "domain_shift",
    "EmbeddingMap": "embedding_map",
    "FeatureMapViewer": "feature_maps",  # deprecated alias of ActivationExplorer(look="mosaic")
    "GramInspector": "gram_inspector",
    "LatentExplorer": "latent_explorer",
    "NeuronAtlas": "neuron_atlas",
    "ProjectionView": "projection_view",
    "TransferLab": "transfer_lab",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from .activation_explorer import ActivationExplorer
    from .classifier_view import ClassifierView
    from .curator_app import CuratorApp
    from .domain_shift import DomainShiftView
    from .embedding_map import EmbeddingMap
    from .feature_maps import FeatureMapViewer
    from .gram_inspector import GramInspector
    from .latent_explorer import LatentExplorer
    from .neuron_atlas import NeuronAtlas
    from .projection_view import ProjectionView
    from .transfer_lab import TransferLab


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])


__all__ = [
    "ActivationExplorer",
    "ClassifierView",
    "CuratorApp",
    "DomainShiftView",
    "EmbeddingMap",
    "FeatureMapViewer",
    "GramInspector",
    "LatentExplorer",
    "NeuronAtlas",
    "ProjectionView",
    "TransferLab",
]
