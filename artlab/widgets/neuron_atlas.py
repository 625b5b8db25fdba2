"""NeuronAtlas: what one channel of a layer responds to, seen four ways.

Pick a layer and a channel (or step through the channels whose activation differs most
between paintings and photos). The atlas shows the channel's feature visualisation
(optimised in the background, previewed in place), the dataset patches that excite it
most in each domain, its activation histogram per domain, an inversion strip of an image
across depths and a class activation map of the predicted class. Every number comes from
:mod:`artlab.explain`; this module is layout and glue.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go
import torch
from torch import Tensor

from artlab.explain import CAM_METHODS, ChannelIndex, cam_overlay, channel, channel_index, grad_cam, invert, visualize
from artlab.images import ensure_image_batch, result_metadata, save_image
from artlab.models import Backbone, best_backbone, features
from artlab.predict import imagenet_categories

from .kit import BackgroundRun, display_png, error_html, figure_widget, free_name, guarded, model_badge, png_image
from .thumbnails import short_name

__all__ = ["NeuronAtlas"]


def _strip(images: Sequence[Tensor], side: int, gap: int = 3) -> Tensor:
    """Images resized to ``side`` px and laid out left to right with white gaps (display only)."""
    tiles = [torch.nn.functional.interpolate(ensure_image_batch(im.detach().cpu())[:1], size=(side, side),
                                             mode="bilinear", align_corners=False) for im in images]
    white = torch.ones(1, 3, side, gap)
    out = [t for tile in tiles for t in (tile, white)][:-1]
    return torch.cat(out, dim=-1) if out else torch.ones(1, 3, side, side)


class NeuronAtlas(W.VBox):
    """One channel of ``model`` at a time: visualisation, top patches per domain, histograms, inversion, CAM.

    ``model`` defaults to :func:`~artlab.models.best_backbone` (the bundled ImageNet
    EfficientNet-Lite0 offline) and ``collection`` to the sample corpus; the items'
    ``meta["domain"]`` ("painting"/"photo" there, ``domains`` in general) split the examples.
    ``images`` (name -> image) are the choices for the inversion strip and the CAM (default:
    the collection's first image of each domain). ``size`` is the side the index and the CAM
    see; ``vis_size`` that of the visualisation. Long jobs (Visualise, Invert) run on a
    background thread with a Stop; ``block=True`` on their methods runs them here (tests).
    """

    def __init__(
        self,
        model: Backbone | None = None,
        collection=None,
        *,
        layer: str | None = None,
        images: Mapping[str, Tensor] | None = None,
        size: int = 224,
        vis_size: int = 128,
        steps: int = 128,
        examples: int = 6,
        domains: tuple[str, str] = ("painting", "photo"),
        cache=None,
        output_dir: str | Path = "neuron-atlas-output",
    ) -> None:
        self.model = model if model is not None else best_backbone()
        if collection is None:
            from artlab.data import sample_corpus

            collection = sample_corpus()
        self.collection, self.size, self.vis_size, self.k = collection, int(size), int(vis_size), int(examples)
        self.domains, self.cache = tuple(domains), cache
        self.layers = list(self.model.spec.inspect_layers or self.model.spec.style_layers or self.model.layer_names)
        images = images or self._default_images()
        self.images = {name: ensure_image_batch(im, name)[:1] for name, im in images.items()}
        self.indexes: dict[str, ChannelIndex] = {}
        self.ranked: list[int] = []
        self.worker = BackgroundRun("neuron-atlas")
        self.visualisation: Tensor | None = None
        self.strip: dict[str, Tensor] = {}
        self.cam = None

        if layer is not None and layer not in self.layers:
            self.model.resolve_layer(layer)  # ValueError naming the valid layers
            self.layers.append(layer)
        # default: the third view (Lite0 stage3, VGG relu3_1), whose units see parts of an image, not all of it
        self.layer = W.Dropdown(options=self.layers, value=layer or self.layers[min(2, len(self.layers) - 1)],
                                description="layer")
        self.channel = W.IntSlider(value=0, min=0, max=0, description="channel", continuous_update=False)
        wide = W.Layout(width="auto")
        self.prev_button = W.Button(description="prev by difference", icon="step-backward", layout=wide)
        self.next_button = W.Button(description="next by difference", icon="step-forward", layout=wide)
        self.rank_note = W.HTML()
        self.steps = W.IntSlider(value=steps, min=8, max=1024, step=8, description="steps")
        self.vis_button = W.Button(description="Visualise", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.save_button = W.Button(description="Save PNG", icon="save")
        self.output_dir = W.Text(value=str(output_dir), description="output folder",
                                 style={"description_width": "initial"})
        self.status = W.HTML()
        self.preview = png_image(width="192px")
        self.patches = {d: png_image(width="auto") for d in self.domains}
        self.patch_notes = {d: W.HTML() for d in self.domains}
        self.histogram = figure_widget(go.Figure(layout={
            "height": 240, "width": 460, "barmode": "overlay", "margin": {"t": 40, "b": 40, "l": 50, "r": 10},
            "title": {"text": " ", "font": {"size": 12}}, "xaxis": {"title": "max activation per image"},
            "yaxis": {"title": "images"}, "bargap": 0}))
        for d in self.domains:
            self.histogram.add_bar(x=[], y=[], name=d, opacity=0.6)
        self.image_choice = W.Dropdown(options=list(self.images), description="image")
        self.invert_button = W.Button(description="Invert across depths", icon="layer-group", layout=wide)
        self.strip_view = png_image(width="auto")
        self.strip_note = W.HTML()
        self.cam_method = W.ToggleButtons(options=[(v, k) for k, v in CAM_METHODS.items()], value="gradcam",
                                          description="CAM")
        self.cam_button = W.Button(description="Show CAM", icon="fire")
        self.cam_view = png_image(width="192px")
        self.cam_note = W.HTML()

        self.layer.observe(lambda _c: guarded(self._on_layer, self.status), names="value")
        self.channel.observe(lambda _c: guarded(self._on_channel, self.status), names="value")
        self.prev_button.on_click(lambda _b: guarded(lambda: self.step_by_difference(-1), self.status))
        self.next_button.on_click(lambda _b: guarded(lambda: self.step_by_difference(+1), self.status))
        self.vis_button.on_click(lambda _b: guarded(self.start_visualisation, self.status))
        self.stop_button.on_click(lambda _b: self.worker.stop())
        self.save_button.on_click(lambda _b: guarded(self.save, self.status))
        self.invert_button.on_click(lambda _b: guarded(self.start_inversion, self.strip_note))
        self.cam_button.on_click(lambda _b: guarded(self.show_cam, self.cam_note))
        self.cam_method.observe(lambda _c: self.cam is None or guarded(self.show_cam, self.cam_note), names="value")

        patches = [W.VBox([W.HTML(f"<b>top {html.escape(d)} patches</b>"), self.patches[d], self.patch_notes[d]],
                          layout=W.Layout(margin="0 24px 0 0"))  # a gutter: one domain's strip ran into the next
                   for d in self.domains]
        super().__init__([
            model_badge(self.model),
            W.HBox([self.layer, self.channel]),
            W.HBox([self.prev_button, self.next_button, self.rank_note]),
            W.HBox([W.VBox([W.HBox([self.vis_button, self.stop_button, self.save_button]), self.steps,
                            self.output_dir, self.status]), self.preview]),
            W.HBox(patches),
            self.histogram,
            W.HBox([self.image_choice, self.invert_button, self.cam_button]),
            self.cam_method,
            W.HBox([self.strip_view]), self.strip_note,
            W.HBox([self.cam_view, self.cam_note]),
        ])
        self._on_layer()

    # ------------------------------------------------------------------ data
    def _default_images(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for d in self.domains:
            index = next((i for i, item in enumerate(self.collection) if item.meta.get("domain") == d), None)
            if index is not None:
                out[d] = self.collection.load(index, (self.size, self.size))
        if not out and len(self.collection):
            out["image"] = self.collection.load(0, (self.size, self.size))
        return out

    def index(self, layer: str | None = None) -> ChannelIndex:
        """The :class:`~artlab.explain.ChannelIndex` of ``layer`` (default: the selected one), built once."""
        layer = layer or self.layer.value
        if layer not in self.indexes:
            self.status.value = f"indexing {html.escape(layer)} over {len(self.collection)} images …"
            self.indexes[layer] = channel_index(self.model, self.collection, layer, size=self.size, cache=self.cache,
                                                progress=False)  # the status line shows progress
            self.status.value = ""
        return self.indexes[layer]

    # ------------------------------------------------------------------ events
    def _on_layer(self) -> None:
        index = self.index()
        self.ranking = index.rank_channels_by_domain(*self.domains)
        self.ranked = [int(c) for c in self.ranking.index]
        with self.channel.hold_trait_notifications():
            self.channel.max = len(self.ranked) - 1
            self.channel.value = self.ranked[0]
        self._on_channel()

    def _on_channel(self) -> None:
        c, index = self.channel.value, self.index()
        a, b = (html.escape(d) for d in self.domains)
        self.rank_note.value = (f"channel {c}: rank {self.ranked.index(c) + 1} of {len(self.ranked)} by {a} vs {b} "
                                f"difference (Cohen's d {self.ranking.loc[c, 'effect']:+.2f}, "
                                f"stronger on {html.escape(str(self.ranking.loc[c, 'prefers']))})")
        for d in self.domains:
            found = index.top_examples(c, k=self.k, domain=d)
            self.patches[d].value = display_png(_strip(list(index.crops(found, size=96)), 96), 96) if found else b""
            self.patch_notes[d].value = "<br>".join(
                f"{html.escape(short_name(e.name))}: {e.activation:.3g}" for e in found) or "<i>no images</i>"
        with self.histogram.batch_update():
            for trace, d in zip(self.histogram.data, self.domains):
                counts, edges = index.histogram(c, d)
                trace.x, trace.y, trace.width = (edges[:-1] + edges[1:]) / 2, counts, edges[1] - edges[0]
            self.histogram.layout.title.text = f"{self.layer.value} · channel {c} · activation per domain"

    def step_by_difference(self, direction: int = +1) -> int:
        """Move to the next (``+1``) or previous (``-1``) channel in the painting/photo difference ranking."""
        c = self.channel.value
        position = self.ranked.index(c) if c in self.ranked else -1
        self.channel.value = self.ranked[(position + direction) % len(self.ranked)]
        return self.channel.value

    # ------------------------------------------------------------------ long jobs
    def _begin(self, target, block: bool) -> bool:
        if self.worker.running:
            return False
        self.vis_button.disabled = self.invert_button.disabled = True
        self.stop_button.disabled = False
        return self.worker.start(target, block=block)

    def _end(self) -> None:
        self.vis_button.disabled = self.invert_button.disabled = False
        self.stop_button.disabled = True

    def start_visualisation(self, *, block: bool = False) -> bool:
        """Optimise an image that excites the selected channel (background thread; ``block`` runs it here)."""
        run = visualize(self.model, channel(self.layer.value, self.channel.value), size=self.vis_size,
                        steps=self.steps.value, preview_every=min(16, max(1, self.steps.value // 8)), progress=False)
        title = f"{self.layer.value} · channel {self.channel.value}"

        def job() -> None:
            try:
                for step in run:
                    self.status.value = f"{html.escape(title)}: step {step.step + 1}/{self.steps.value}"
                    if step.image is not None:
                        self.preview.value = display_png(step.image[:1], 192)
                    if self.worker.stopping:
                        self.status.value += " · stopped"
                        break
                else:
                    self.status.value += " · done"
            except Exception as exc:  # shown in the widget instead of lost in a thread
                self.status.value = error_html(f"visualisation failed: {exc}")
            finally:
                run.close()
                # the final image, as visualize_channel returns: each step's score is on a random transform
                self.visualisation = run.image[:1]
                self.preview.value = display_png(self.visualisation, 192)
                self._end()

        return self._begin(job, block)

    def start_inversion(self, *, block: bool = False, steps: int | None = None) -> bool:
        """Reconstruct the chosen image from each depth's activation, left to right, shallow to deep."""
        name = self.image_choice.value
        image, steps = self.images[name], steps or max(20, self.steps.value)
        self.strip = {}

        def job() -> None:
            try:
                for layer in self.layers:
                    self.strip_note.value = f"inverting {html.escape(name)} from {html.escape(layer)} …"
                    run = invert(self.model, image, layer, steps=steps, progress=False)
                    try:
                        for _ in run:
                            if self.worker.stopping:
                                break
                    finally:
                        run.close()
                    self.strip[layer] = run.best_image
                    self.strip_view.value = display_png(_strip([image, *self.strip.values()], 112), 112)
                    if self.worker.stopping:
                        break
                shown = " | ".join(["original", *self.strip])
                self.strip_note.value = f"{html.escape(name)}: {html.escape(shown)}" + (
                    " · stopped" if self.worker.stopping else "")
            except Exception as exc:
                self.strip_note.value = error_html(f"inversion failed: {exc}")
            finally:
                self._end()

        return self._begin(job, block)

    # ------------------------------------------------------------------ quick views
    def show_cam(self) -> None:
        """The CAM (selected method, selected layer) of the model's predicted class for the chosen image."""
        logits_layer = self.model.spec.logits_layer
        if logits_layer is None:
            raise ValueError(f"{self.model.name} has no classifier head, so it predicts no class to explain")
        image = self.images[self.image_choice.value]
        with torch.no_grad():
            logits = features(self.model, image, [logits_layer])[logits_layer].flatten(1)
        target = int(logits[0].argmax())
        self.cam = grad_cam(self.model, image, self.layer.value, target, method=self.cam_method.value)
        self.cam_view.value = display_png(cam_overlay(image, self.cam), 192)
        names = imagenet_categories()
        label = names[target] if logits.shape[1] == len(names) else f"class {target}"
        self.cam_note.value = (f"{CAM_METHODS[self.cam_method.value]} at {html.escape(self.layer.value)} for the "
                               f"predicted class <b>{html.escape(label)}</b> (logit {self.cam.score:.3g})")

    def save(self) -> str:
        """Save the latest visualisation as a PNG in the output folder (never overwriting); returns its path."""
        if self.visualisation is None:
            raise ValueError("nothing to save yet: press Visualise first")
        path = free_name(self.output_dir.value, f"{self.layer.value}-ch{self.channel.value}", ".png")
        save_image(self.visualisation, path, metadata=result_metadata(
            self.model.label, kind="feature visualisation", settings={"layer": self.layer.value, "channel": self.channel.value}))
        self.status.value = f"saved {html.escape(str(path))}"
        return str(path)
