"""The controls of TransferLab and the :class:`~artlab.transfer.TransferSettings` they describe.

One slider or dropdown per knob of a style transfer (log ratio β/α, TV weight τ, size,
steps, content layer, optimiser, init, colour mode, one weight per style layer relative
to the network's default, and the blend of two styles); :meth:`TransferControls.settings`
reads them back as settings. Kept apart from the lab's running and drawing
(:mod:`artlab.widgets.transfer_lab`), which mixes this class in.
"""

from __future__ import annotations

import math

import ipywidgets as W

from artlab.models import default_layer_weights
from artlab.transfer import TransferSettings

__all__ = ["TransferControls", "TV_WEIGHTS"]

#: TV weights τ offered on the slider (0 = off), log-spaced. TV is a per-pixel mean (≈ 3e-3 for a photo),
#: the other terms are ≈ 1e-3 … 1 depending on the weights, so useful τ lie around 1e-3 … 10.
TV_WEIGHTS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
_SMALL = {"description_width": "initial"}


class TransferControls:
    """Mixin: the transfer controls as attributes (``ratio``, ``tv``, ``size``, ``steps``, ``content_layer``,
    ``optimizer``, ``init``, ``color``, ``layer_weights`` {layer: slider}, ``blend`` or None).

    The widget using it sets ``base`` (the starting TransferSettings, network defaults
    filled in), ``model``, ``content``, ``styles`` and ``style_layers``, then calls
    :meth:`_build_controls`.
    """

    def _build_controls(self) -> None:
        """The controls, set from ``self.base`` (their starting values)."""
        base, spec = self.base, self.model.spec
        # β/α on a log scale; with content_weight 0 there is no ratio (style only): the slider is disabled
        ratio = math.log10(base.style_weight / base.content_weight) if base.content_weight > 0 < base.style_weight \
            else 5.0
        self.ratio = W.FloatSlider(value=ratio, min=min(-2.0, ratio), max=max(10.0, ratio), step=0.25,
                                   description="log10 ratio", style=_SMALL, disabled=base.content_weight == 0,
                                   tooltip="log10 of style weight / content weight (β/α)")
        self.ratio_note = W.HTML()
        tv_options = sorted(set(TV_WEIGHTS) | {float(base.tv_weight)})
        self.tv = W.SelectionSlider(options=[("0" if v == 0 else f"{v:.0e}", v) for v in tv_options],
                                    value=float(base.tv_weight), description="TV weight", style=_SMALL)
        size = base.size if isinstance(base.size, int) else max(base.size or self.content.shape[-2:])
        self.size = W.IntSlider(value=size, min=min(32, size), max=max(1024, size), step=16,
                                description="size", style=_SMALL, tooltip="longer side of the output, px")
        self.steps = W.IntSlider(value=base.steps, min=1, max=max(1000, base.steps), description="steps", style=_SMALL)
        relus = [n for n in self.model.layer_names if n.startswith("relu") and "_" in n]
        layers = relus or list(dict.fromkeys(n for n in (*spec.inspect_layers, *spec.style_layers, spec.content_layer)
                                             if n))
        chosen = base.content_layer or spec.content_layer
        self.content_layer = W.Dropdown(options=layers + ([chosen] if chosen not in layers else []), value=chosen,
                                        description="content layer", style=_SMALL)
        self.optimizer = W.Dropdown(options=["lbfgs", "adam"], value=base.optimizer, description="optimiser",
                                    style=_SMALL)
        self.init = W.Dropdown(options=["content", "noise", "style"], description="init", style=_SMALL,
                               value=base.init if isinstance(base.init, str) else "content")
        self.color = W.Dropdown(options=["none", "luminance", "histogram"], value=base.color, description="colour",
                                style=_SMALL)
        # sliders are relative to the network's default w_l (1/n for VGG, as Gatys et al.)
        self._default_weights = default_layer_weights(self.model, self.style_layers)
        by_canonical = {self.model.resolve_layer(layer): layer for layer in self.style_layers}
        given = {}
        for layer, w in (base.layer_weights or {}).items():
            own = by_canonical.get(self.model.resolve_layer(layer), layer)
            given[own] = float(w) / self._default_weights.get(own, 1.0 / len(self.style_layers))
        self.layer_weights = {
            layer: W.FloatSlider(value=given.get(layer, 1.0), min=0.0, max=max(2.0, given.get(layer, 1.0)), step=0.05,
                                 description=layer, style=_SMALL, layout=W.Layout(width="300px"))
            for layer in self.style_layers
        }
        self.blend: W.FloatSlider | None = None
        if len(self.styles) == 2:
            a, b = (float(w) for w in base.style_blend) if base.style_blend is not None else (1.0, 1.0)
            self.blend = W.FloatSlider(value=b / (a + b) if a + b > 0 else 0.5, min=0.0, max=1.0, step=0.05,
                                       description="blend", style=_SMALL, tooltip="0: only style 1, 1: only style 2")
    def _controls_panel(self) -> W.HBox:
        """The controls laid out: weights and sizes, layers and modes, per-layer weights."""
        return W.HBox([
            W.VBox([self.ratio, self.ratio_note, self.tv, self.size, self.steps]
                   + ([self.blend] if self.blend is not None else [])),
            W.VBox([self.content_layer, self.optimizer, self.init, self.color]),
            W.VBox([W.HTML("<b>style layer weights</b> (1 = default)"), *self.layer_weights.values()]),
        ])

    def _restart_controls(self) -> list[W.Widget]:
        """Controls whose change restarts a running transfer from its current image."""
        controls = [self.ratio, self.tv, self.size, self.steps, self.content_layer, self.optimizer, self.color,
                    *self.layer_weights.values()]
        return controls + ([self.blend] if self.blend is not None else [])

    def _show_ratio(self, _change=None) -> None:
        if self.base.content_weight == 0:
            self.ratio_note.value = '<span style="color:#555">content weight 0: style only</span>'
            return
        self.ratio_note.value = (f'<span style="color:#555">style weight / content weight = '
                                 f"10<sup>{self.ratio.value:g}</sup> = {10 ** self.ratio.value:.3g}</span>")

    def settings(self) -> TransferSettings:
        """The TransferSettings the controls describe now (as the next (re)start uses them)."""
        cw = self.base.content_weight
        changes: dict = {
            "style_weight": cw * 10.0 ** self.ratio.value if cw > 0 else self.base.style_weight,
            "tv_weight": self.tv.value, "size": self.size.value, "steps": self.steps.value,
            "content_layer": self.content_layer.value, "optimizer": self.optimizer.value, "init": self.init.value,
            "color": self.color.value, "style_layers": tuple(self.style_layers),
            # the sliders are relative to the network's default w_l
            "layer_weights": {layer: s.value * self._default_weights[layer] for layer, s in self.layer_weights.items()},
        }
        if self.optimizer.value != self.base.optimizer:
            changes["lr"] = None  # the new optimiser's default learning rate
        if self.blend is not None:
            changes["style_blend"] = (1.0 - self.blend.value, self.blend.value)
        settings = self.base.replace(**changes)
        settings.check_objective(style_on=settings.style_weight > 0
                                 and any(s.value > 0 for s in self.layer_weights.values()))
        return settings
