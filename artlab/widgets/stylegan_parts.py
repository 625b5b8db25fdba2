"""What the two StyleGAN widgets share: the generator check, its badge and its class names for display.

:class:`~artlab.widgets.latent_explorer.LatentExplorer` and
:class:`~artlab.widgets.projection_view.ProjectionView` both take a StyleGAN2-ADA
generator, say in red when its weights are random, and list its classes in dropdowns and
sliders. Neither widget imports the other; both import this.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Iterable

import ipywidgets as W

from artlab.stylegan.generate import class_names

from .kit import MUTED, RED

__all__ = ["SMALL", "check_generator", "generator_badge", "class_choices", "class_dropdown", "seed_slider",
           "ws_rows_note"]

#: the style of every labelled control: the label takes the width it needs
SMALL = {"description_width": "initial"}


def check_generator(G, attrs: Iterable[str] = ("z_dim", "c_dim", "num_ws", "mapping", "synthesis")) -> None:
    """TypeError unless ``G`` looks like an artlab StyleGAN2-ADA generator (has every one of ``attrs``)."""
    for attr in attrs:
        if not hasattr(G, attr):
            raise TypeError(f"G must be an artlab StyleGAN2-ADA Generator (artlab.stylegan.load(...) or "
                            f"tiny_generator()); {type(G).__name__} has no {attr!r}")


def generator_badge(G) -> W.HTML:
    """The generator's label; a red banner when its weights are not a trained network.

    ``kit.model_badge`` words its warning for ImageNet backbones; a GAN with random
    weights needs its own words: its images show the architecture, not learned content.
    """
    label = html.escape(str(getattr(G, "label", type(G).__name__)))
    if getattr(G, "pretrained", False):
        return W.HTML(f'<span style="color:{MUTED}">{label}</span>')
    return W.HTML(
        f'<span style="background:{RED};color:white;padding:2px 6px;border-radius:3px">'
        f"{label} — random weights: the images show the architecture, not a trained model</span>"
    )


def class_choices(G) -> list[str]:
    """Display names of the generator's classes: ``G.class_names`` when set, else "class 0", "class 1"…

    (:func:`artlab.stylegan.generate.class_names` gives the bare names, "0", "1"…, that
    ``class_label`` accepts.)
    """
    names = class_names(G)
    named = getattr(G, "class_names", None) is not None and len(G.class_names) == G.c_dim
    return names if named else [f"class {n}" for n in names]


def deprecated_class_names(G) -> list[str]:
    """Deprecated alias of :func:`class_choices`, importable as ``artlab.widgets.latent_explorer.class_names``
    for one release (that name shadowed :func:`artlab.stylegan.generate.class_names`)."""
    warnings.warn("artlab.widgets.latent_explorer.class_names is deprecated and will be removed in the next release; "
                  "use artlab.widgets.stylegan_parts.class_choices", DeprecationWarning, stacklevel=2)
    return class_choices(G)


def ws_rows_note(G, lo: int, hi: int) -> str:
    """A muted note: which synthesis blocks read ws rows ``lo``…``hi`` (coarse: pose and layout; fine: colour)."""
    slices = G.synthesis.block_ws_slices()
    res = [r for r, sl in slices.items() if sl.start <= hi and lo < sl.stop]
    shown = f"{res[0]}–{res[-1]} px" if len(res) > 1 else (f"{res[0]} px" if res else "none")
    return f'<span style="color:{MUTED}">rows {lo}–{hi} of {G.num_ws} feed the {shown} blocks</span>'


def seed_slider(value: int, description: str = "seed") -> W.IntSlider:
    """A slider over seeds 0…9999 (further when ``value`` is larger)."""
    return W.IntSlider(value=int(value), min=0, max=max(9999, int(value)), description=description, style=SMALL)


def class_dropdown(names: list[str], value: int | None, description: str) -> W.Dropdown:
    """A dropdown of the classes ``names`` (display names, valued by index); empty for an unconditional G."""
    return W.Dropdown(options=list(zip(names, range(len(names)))), value=value if names else None,
                      description=description, style=SMALL)
