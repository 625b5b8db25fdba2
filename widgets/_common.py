"""Small pieces every artlab widget shares."""

from __future__ import annotations

import html

import ipywidgets as W
import plotly.graph_objects as go
from torch import Tensor

from artlab.images import to_png_bytes


def png_image(images: Tensor | None = None, width: str = "auto") -> W.Image:
    """An ipywidgets Image showing an artlab image tensor (or empty until set)."""
    widget = W.Image(format="png", layout=W.Layout(width=width, max_width="100%"))
    if images is not None:
        widget.value = to_png_bytes(images)
    return widget


def model_badge(model) -> W.HTML:
    """The model's label (and its note: which network and how to get VGG-19); red for a random init."""
    label = html.escape(model.label)
    note = getattr(model, "note", "")
    extra = (f'<br><span style="color:#777;font-size:0.85em">{html.escape(note)}</span>'
             if note and note != f"Using {model.label}." else "")
    if getattr(model, "pretrained", False):
        return W.HTML(f'<span style="color:#555">{label}</span>{extra}')
    return W.HTML(
        f'<span style="background:#c0392b;color:white;padding:2px 6px;border-radius:3px">'
        f"{label} — random weights, not ImageNet features</span>{extra}"
    )


def figure_widget(figure: go.Figure | None = None) -> go.FigureWidget:
    """A ``FigureWidget`` showing ``figure`` in every view, whatever order the page handles its messages in.

    ``go.FigureWidget(figure)`` sends the figure as widget state in a message after the one that
    opens the widget; a view that renders before the page has applied that state (seen in a real
    browser under CPU load) draws an empty plot and never redraws, because plotly's view ignores
    later changes of the whole-figure state. Traces and layout added to an empty widget instead
    travel as edits (``addTraces``, ``update``) that the page applies to its copy of the figure and
    to every view already drawn, so a view shows the figure whenever it renders.
    """
    widget = go.FigureWidget()
    if figure is not None:
        if figure.data:
            widget.add_traces(list(figure.data))
        widget.update_layout(figure.layout.to_plotly_json())
    return widget
