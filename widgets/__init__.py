"""The Jupyter layer of artlab: thin ipywidgets views over artlab's core functions.

Each widget collects inputs, calls one core function and updates its output in
place. Import as ``artlab.widgets`` (the folder is mapped onto that name).
"""

from .activation_explorer import ActivationExplorer
from .classifier_view import ClassifierView
from .curator_app import CuratorApp
from .domain_shift import DomainShiftView
from .embedding_map import EmbeddingMap
from .feature_maps import FeatureMapViewer
from .gram_inspector import GramInspector
from .latent_explorer import LatentExplorer
from .projection_view import ProjectionView
from .transfer_lab import TransferLab

__all__ = [
    "ActivationExplorer",
    "ClassifierView",
    "CuratorApp",
    "DomainShiftView",
    "EmbeddingMap",
    "FeatureMapViewer",
    "GramInspector",
    "LatentExplorer",
    "ProjectionView",
    "TransferLab",
]
