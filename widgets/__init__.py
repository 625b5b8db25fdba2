"""The Jupyter layer of artlab: thin ipywidgets views over artlab's core functions.

Each widget collects inputs, calls one core function and updates its output in
place. Import as ``artlab.widgets`` (the folder is mapped onto that name).
"""

from .feature_maps import FeatureMapViewer
from .gram_inspector import GramInspector

__all__ = ["FeatureMapViewer", "GramInspector"]
