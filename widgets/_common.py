"""Small pieces every artlab widget shares."""

from __future__ import annotations

import html

import ipywidgets as W
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
