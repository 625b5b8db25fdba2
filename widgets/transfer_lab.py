"""TransferLab: neural style transfer (Gatys, Ecker & Bethge 2016) with live sliders.

The lab collects the knobs of :class:`artlab.transfer.TransferSettings` (the
style/content ratio on a log scale, total variation, one weight per style layer,
size, steps, content layer, optimiser, start image, colour mode and, with two
styles, their blend), runs :func:`artlab.transfer.stylize` in a background thread
and updates a preview image and the per-term loss curves in place.

Two things make it feel live on a laptop CPU:

* **quick start** (coarse to fine): a fresh run first takes a few Adam steps at
  ``preview_size`` px (one step there costs a fraction of a full-size L-BFGS
  step), so a preview appears within about a second; the full-size run then
  starts from that result (its *change* is upsampled and added to the sharp
  full-size start image, so no detail is lost);
* **warm restarts**: moving a control during a run does not start over; the run
  restarts from the current image with the new settings (``init=<image>``).

"Stop" ends the run after the current step and keeps the best image; "Save PNG"
and "Export GIF" (the progression of previews) write into the output folder and
show the path.
"""

from __future__ import annotations

import html
import math
import threading
import time
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go
import torch
from torch import Tensor

from artlab.images import ensure_image_batch, load_image, save_image, thumbnail, to_png_bytes
from artlab.models import Backbone, best_backbone, default_layer_weights
from artlab.transfer import TransferSettings, save_gif, stylize

from ._common import figure_widget, model_badge, png_image

__all__ = ["TransferLab"]

#: loss terms drawn as curves: (TransferStep attribute, legend name)
TERMS = (("loss", "total"), ("content", "content"), ("style", "style"), ("tv", "TV"), ("histogram", "histogram"))
#: TV weights τ offered on the slider (0 = off), log-spaced. TV is a per-pixel mean (≈ 3e-3 for a photo),
#: the other terms are ≈ 1e-3 … 1 depending on the weights, so useful τ lie around 1e-3 … 10.
TV_WEIGHTS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
_RED = "#c0392b"


def _as_image(src, what: str) -> Tensor:
    """One image 1×3×H×W in [0, 1] from a tensor, path, PIL image or array."""
    if isinstance(src, Tensor):
        image = ensure_image_batch(src, what)
        if image.shape[0] != 1:
            raise ValueError(f"{what} must be one image (1×3×H×W), got a batch of {image.shape[0]}; "
                             "pass a list of images for several styles")
        return image.detach().cpu()
    return load_image(src)


class TransferLab(W.VBox):
    """Style transfer of ``styles`` onto ``content`` under ``model``, with live controls.

    content: an image (1×3×H×W tensor, path, PIL image or array); styles: one image or
    a list of them; model: an artlab Backbone (default :func:`~artlab.models.best_backbone`:
    VGG-19 when its ImageNet file is cached, else the bundled EfficientNet-Lite0; the
    badge says which). ``settings`` are :class:`~artlab.transfer.TransferSettings` fields; they
    set the controls' starting values, and the fields without a control (seed, lr,
    scales, loss, panorama …) are passed on unchanged.

    output_dir: where "Save PNG" and "Export GIF" write (editable in the widget).
    preview_size, quick_steps: the quick start (see the module docstring); runs at
    ``size <= preview_size`` or with ``quick_steps=0`` skip it.
    preview_seconds: besides the core's previews (every ``preview_every`` steps), show
    the best image whenever this long has passed since the last preview (a full-size
    L-BFGS step takes seconds on a laptop CPU). max_frames: previews kept for the GIF.

    Stopping during the quick start keeps its (small) image. Drive it from code as
    the buttons do: ``start_run(block=True)``, ``stop_run()``, ``save_png()``,
    ``export_gif()``. After a run: ``best_image`` (1×3×H×W CPU),
    ``history`` (one dict of losses per step), ``segments`` (one dict per stylize
    call: quick start, main run, warm restarts), ``frames`` (the previews) and
    ``first_preview_s`` (seconds from start to the first preview).
    """

    def __init__(
        self,
        content,
        styles,
        model: Backbone | None = None,
        *,
        output_dir: str | Path = "transfer-output",
        preview_size: int = 128,
        quick_steps: int = 6,
        preview_seconds: float = 1.0,
        max_frames: int = 120,
        **settings,
    ) -> None:
        self.model = model if model is not None else best_backbone()
        if not isinstance(self.model, Backbone):
            raise TypeError(f"model must be an artlab Backbone (artlab.models.backbone(...)), "
                            f"got {type(self.model).__name__}")
        self.content = _as_image(content, "content")
        style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        if not style_list:
            raise ValueError("give at least one style image")
        self.styles = [_as_image(s, f"style {i + 1}") for i, s in enumerate(style_list)]
        # validated (unknown names are refused with the list); β defaults to the network's own
        self.base = TransferSettings().replace(**settings).for_model(self.model)
        self.preview_size = int(preview_size)
        self.quick_steps = int(quick_steps)
        self.preview_seconds = float(preview_seconds)
        self.max_frames = int(max_frames)
        layers = self.base.style_layers or self.model.spec.style_layers
        self.style_layers = [layers] if isinstance(layers, str) else list(layers)

        self._stop = threading.Event()
        self._restart = threading.Event()
        self._resume = threading.Event()  # cleared while paused
        self._resume.set()
        self._thread: threading.Thread | None = None
        self._transfer = None  # the StyleTransfer of the running segment
        self._shapes: dict[int, tuple[int, int]] = {}
        self.best_image: Tensor | None = None
        self.history: list[dict] = []
        self.segments: list[dict] = []
        self.frames: list[Tensor] = []
        self.first_preview_s: float | None = None
        self.saved: list[Path] = []

        self._build_controls(output_dir)
        self._build_views()
        for control in self._restart_controls():
            control.observe(self._on_change, names="value")
        self.ratio.observe(self._show_ratio, names="value")
        self.run_button.on_click(lambda _b: self.start_run())
        self.stop_button.on_click(lambda _b: self.stop_run())
        self.pause_button.on_click(lambda _b: self.resume_run() if self.paused else self.pause_run())
        self.save_button.on_click(lambda _b: self._guarded(self.save_png))
        self.gif_button.on_click(lambda _b: self._guarded(self.export_gif))
        self._show_ratio()

        super().__init__([
            W.HBox([W.VBox([self.preview, self.status]), self.curves]),
            W.HBox([
                W.VBox([self.ratio, self.ratio_note, self.tv, self.size, self.steps]
                       + ([self.blend] if self.blend is not None else [])),
                W.VBox([self.content_layer, self.optimizer, self.init, self.color]),
                W.VBox([W.HTML("<b>style layer weights</b> (1 = default)"), *self.layer_weights.values()]),
            ]),
            W.HBox([self.run_button, self.pause_button, self.stop_button, self.save_button, self.gif_button]),
            W.HBox([self.output_dir, self.saved_note]),
            model_badge(self.model),
        ])

    # ------------------------------------------------------------------ controls
    def _build_controls(self, output_dir: str | Path) -> None:
        base, small = self.base, {"description_width": "initial"}
        # β/α on a log scale; with content_weight 0 there is no ratio (style only): the slider is disabled
        ratio = math.log10(base.style_weight / base.content_weight) if base.content_weight > 0 < base.style_weight \
            else 5.0
        self.ratio = W.FloatSlider(value=ratio, min=min(-2.0, ratio), max=max(10.0, ratio), step=0.25,
                                   description="log10 ratio", style=small, disabled=base.content_weight == 0,
                                   tooltip="log10 of style weight / content weight (β/α)")
        self.ratio_note = W.HTML()
        tv_options = sorted(set(TV_WEIGHTS) | {float(base.tv_weight)})
        self.tv = W.SelectionSlider(options=[(self._tv_label(v), v) for v in tv_options],
                                    value=float(base.tv_weight), description="TV weight", style=small)
        size = base.size if isinstance(base.size, int) else max(base.size or self.content.shape[-2:])
        self.size = W.IntSlider(value=size, min=min(32, size), max=max(1024, size), step=16,
                                description="size", style=small, tooltip="longer side of the output, px")
        self.steps = W.IntSlider(value=base.steps, min=1, max=max(1000, base.steps), description="steps", style=small)
        content_layers = self._content_layer_options()
        chosen_content = base.content_layer or self.model.spec.content_layer
        if chosen_content not in content_layers:
            content_layers.append(chosen_content)
        self.content_layer = W.Dropdown(options=content_layers, value=chosen_content, description="content layer",
                                        style=small)
        self.optimizer = W.Dropdown(options=["lbfgs", "adam"], value=base.optimizer, description="optimiser",
                                    style=small)
        self.init = W.Dropdown(options=["content", "noise", "style"],
                               value=base.init if isinstance(base.init, str) else "content", description="init",
                               style=small)
        self.color = W.Dropdown(options=["none", "luminance", "histogram"], value=base.color, description="colour",
                                style=small)
        # sliders are relative to the network's default w_l (1/n for VGG, as Gatys et al.)
        self._default_weights = default_layer_weights(self.model, self.style_layers)
        by_canonical = {self.model.resolve_layer(layer): layer for layer in self.style_layers}
        given = {}
        for layer, w in (base.layer_weights or {}).items():
            own = by_canonical.get(self.model.resolve_layer(layer), layer)
            given[own] = float(w) / self._default_weights.get(own, 1.0 / len(self.style_layers))
        self.layer_weights = {
            layer: W.FloatSlider(value=given.get(layer, 1.0), min=0.0, max=max(2.0, given.get(layer, 1.0)), step=0.05,
                                 description=layer, style=small, layout=W.Layout(width="300px"))
            for layer in self.style_layers
        }
        self.blend: W.FloatSlider | None = None
        if len(self.styles) == 2:
            share = 0.5
            if base.style_blend is not None:
                a, b = (float(w) for w in base.style_blend)
                share = b / (a + b) if a + b > 0 else 0.5
            self.blend = W.FloatSlider(value=share, min=0.0, max=1.0, step=0.05, description="blend",
                                       style=small, tooltip="0: only style 1, 1: only style 2")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True,
                                     tooltip="hold the run after this step: look, change controls, then Resume")
        self.save_button = W.Button(description="Save PNG", icon="save", disabled=True)
        self.gif_button = W.Button(description="Export GIF", icon="film", disabled=True)
        self.output_dir = W.Text(value=str(output_dir), description="output folder", style=small,
                                 layout=W.Layout(width="420px"))
        self.saved_note = W.HTML()
        self.status = W.HTML("press Run")

    def _content_layer_options(self) -> list[str]:
        names = self.model.layer_names
        relus = [n for n in names if n.startswith("relu") and "_" in n]
        spec = self.model.spec
        return relus or list(dict.fromkeys(n for n in (*spec.inspect_layers, *spec.style_layers, spec.content_layer)
                                           if n))

    @staticmethod
    def _tv_label(value: float) -> str:
        return "0" if value == 0 else f"{value:.0e}"

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

    # ------------------------------------------------------------------ views
    def _build_views(self) -> None:
        self.preview = png_image(width="256px")
        self.preview.value = to_png_bytes(thumbnail(self.content, 512))
        self.curves = figure_widget(go.Figure(layout={
            "height": 300, "width": 520, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
            "title": f"loss per term · {self.model.label}",
            "xaxis": {"title": "step"}, "yaxis": {"type": "log", "title": "weighted loss"},
            "legend": {"orientation": "h", "y": -0.2},
        }))
        for _attr, name in TERMS:
            self.curves.add_scatter(x=[], y=[], mode="lines", name=name)
        if not getattr(self.model, "pretrained", False):
            self.curves.layout.title.font.color = _RED

    def _draw_curves(self) -> None:
        """Redraw the loss curves from ``history`` in place (non-positive terms are left out of the log plot)."""
        with self.curves.batch_update():
            for trace, (attr, _name) in zip(self.curves.data, TERMS):
                points = [(h["step"], h[attr]) for h in self.history if h.get(attr) is not None and h[attr] > 0]
                trace.x = [p[0] for p in points]
                trace.y = [p[1] for p in points]
            self.curves.layout.shapes = [
                {"type": "line", "xref": "x", "yref": "paper", "x0": s["start_step"] - 0.5, "x1": s["start_step"] - 0.5,
                 "y0": 0, "y1": 1, "line": {"dash": "dot", "color": "#888", "width": 1}}
                for s in self.segments[1:]
            ]

    def _show(self, image: Tensor) -> None:
        self.preview.value = to_png_bytes(image)
        self._last_preview = time.perf_counter()
        if self.first_preview_s is None:
            self.first_preview_s = time.perf_counter() - self._t0
        if not self.frames or not torch.equal(self.frames[-1], image):
            self.frames.append(image)
            if len(self.frames) > self.max_frames:  # keep every other frame (the first and last stay)
                self.frames = self.frames[::2] + ([image] if len(self.frames) % 2 == 0 else [])

    # ------------------------------------------------------------------ settings
    def settings(self) -> TransferSettings:
        """The TransferSettings the controls describe now (as the next (re)start uses them)."""
        cw = self.base.content_weight
        style_weight = cw * 10.0 ** self.ratio.value if cw > 0 else self.base.style_weight
        changes: dict = {
            "style_weight": style_weight, "tv_weight": self.tv.value, "size": self.size.value,
            "steps": self.steps.value, "content_layer": self.content_layer.value, "optimizer": self.optimizer.value,
            "init": self.init.value, "color": self.color.value, "style_layers": tuple(self.style_layers),
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

    def _shape(self, size: int) -> tuple[int, int]:
        """(height, width) of the output at ``size`` (longer side), as the content is resized."""
        if size not in self._shapes:
            self._shapes[size] = tuple(load_image(self.content, size).shape[-2:])
        return self._shapes[size]

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True while a run is in progress (in the background thread or blocking)."""
        return self._running

    _running = False

    def start_run(self, *, block: bool = False) -> None:
        """Start a transfer: in a background thread (the Run button), or here with ``block=True``."""
        if self._running:
            return
        self._running = True
        self._stop.clear()
        self._restart.clear()
        self.resume_run()
        self.history, self.segments, self.frames = [], [], []
        self.first_preview_s = None
        self._t0 = self._last_preview = time.perf_counter()
        self.run_button.disabled, self.stop_button.disabled, self.pause_button.disabled = True, False, False
        self.status.value = "starting…"
        self._draw_curves()
        if block:
            self._run()
        else:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def stop_run(self) -> None:
        """Ask a running transfer to stop after its current step (the best image is kept); ends a pause too."""
        self._stop.set()
        self._resume.set()

    @property
    def paused(self) -> bool:
        """True while a run is held by :meth:`pause_run`."""
        return self._running and not self._resume.is_set()

    def pause_run(self) -> None:
        """Hold a running transfer after its current step, until :meth:`resume_run` (or :meth:`stop_run`).

        While paused the controls can be changed: a change made then restarts the run
        warm as soon as it resumes. The status says ``paused · … step n/N``.
        """
        if self._running:
            self._resume.clear()
            self.pause_button.description, self.pause_button.icon = "Resume", "play"

    def resume_run(self) -> None:
        """Let a paused transfer go on (a control changed while paused restarts it warm first)."""
        self._resume.set()
        self.pause_button.description, self.pause_button.icon = "Pause", "pause"

    def _on_change(self, _change) -> None:
        if self._running:
            self._restart.set()  # picked up after the current step: several changes make one restart

    def _run(self) -> None:
        init: Tensor | None = None  # the next segment's start image (None: the init the controls ask for)
        coarse: Tensor | None = None  # the quick start's result, upsampled for the full-size run
        kind = "quick start" if self.quick_steps > 0 and self.size.value > self.preview_size else "run"
        try:
            while True:
                self._restart.clear()  # before reading the controls: a later change restarts again
                settings = self.settings()
                if coarse is not None:
                    init, coarse = self._upsample_start(coarse, settings), None
                elif init is not None:
                    init = load_image(init, self._shape(settings.size))  # the size may have changed
                if kind == "quick start":
                    seg = settings.replace(size=self.preview_size, steps=self.quick_steps, optimizer="adam", lr=None,
                                           preview_every=1, scales=1, scale_steps=None)
                else:
                    seg = settings if init is None else settings.replace(init=init)
                outcome, transfer = self._segment(kind, seg)
                if outcome == "restart":
                    current = getattr(transfer, "current_image", None)
                    init = current if current is not None else transfer.best_image
                    kind = "warm restart"
                    continue
                if outcome == "done" and kind == "quick start":
                    coarse, kind = transfer.best_image, "run"
                    continue
                self._finish(outcome)
                break
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            self.status.value = f'<span style="color:{_RED}">transfer failed: {html.escape(str(exc))}</span>'
        finally:
            self._transfer = None
            self._running = False
            if self.best_image is not None:
                self.preview.value = to_png_bytes(self.best_image)
            self._draw_curves()
            self.resume_run()
            self.run_button.disabled, self.stop_button.disabled, self.pause_button.disabled = False, True, True
            self.save_button.disabled = self.best_image is None
            self.gif_button.disabled = not self.frames

    def _segment(self, kind: str, settings: TransferSettings):
        """Run one stylize call; returns (outcome, transfer): "done", "stopped", "restart" or a status text."""
        start_step = len(self.history)
        self.segments.append({"kind": kind, "start_step": start_step, "settings": settings,
                              "init": settings.init})
        transfer = stylize(self.content, self.styles, self.model, settings)
        self._transfer = transfer
        outcome = "done"
        last_draw = 0.0
        try:
            for update in transfer:
                row = {attr: float(getattr(update, attr)) for attr, _ in TERMS}
                row.update(step=len(self.history), segment=len(self.segments) - 1, size=tuple(update.size))
                self.history.append(row)
                label = "quick preview" if kind == "quick start" else kind
                self.status.value = (f"{label} · step {update.step + 1}/{settings.steps} · "
                                     f"{update.size[0]}×{update.size[1]} px · loss {update.loss:.4g}")
                now = time.perf_counter()
                image = update.image
                if image is None and now - self._last_preview >= self.preview_seconds:
                    image = transfer.best_image  # a full-size step is slow: do not wait for preview_every
                if image is not None:
                    self._show(image)
                if image is not None or now - last_draw > 0.5:
                    self._draw_curves()
                    last_draw = now
                if update.status != "ok":
                    outcome = update.status
                    break
                if not self._resume.is_set():
                    self._hold(self.status.value)
                if self._stop.is_set():
                    outcome = "stopped"
                    break
                if self._restart.is_set():
                    outcome = "restart"
                    break
        finally:
            transfer.close()
        best = transfer.best_image
        if best is not None:
            self.best_image = best
        return outcome, transfer

    def _upsample_start(self, coarse: Tensor, settings: TransferSettings) -> Tensor:
        """Full-size start from the quick-start result: with init="content", the content plus the upsampled
        change the quick start made (keeps the content's fine detail); otherwise the upsampled result."""
        shape = self._shape(settings.size)
        if settings.init == "content":
            small = load_image(self.content, tuple(coarse.shape[-2:]))
            delta = torch.nn.functional.interpolate(coarse - small, size=shape, mode="bilinear", align_corners=False)
            return (load_image(self.content, shape) + delta).clamp(0.0, 1.0)
        return load_image(coarse, shape)

    def _finish(self, outcome: str) -> None:
        total = len(self.history)
        if outcome == "done":
            note = "done"
        elif outcome == "stopped":
            note = "stopped · kept the best image"
        else:
            note = f'<span style="color:{_RED}">{html.escape(outcome)}</span>'
        seconds = time.perf_counter() - self._t0
        first = f" · first preview after {self.first_preview_s:.2f} s" if self.first_preview_s is not None else ""
        restarts = sum(s["kind"] == "warm restart" for s in self.segments)
        warm = f" · {restarts} warm restart{'s' * (restarts != 1)}" if restarts else ""
        self.status.value = f"{note} · {total} steps in {seconds:.1f} s{first}{warm}"

    def _hold(self, running_status: str) -> None:
        """Wait here (in the run's thread) while paused; Stop ends the wait too."""
        self.status.value = f"paused · {running_status}"
        self._draw_curves()
        self._resume.wait()
        self.status.value = running_status

    # ------------------------------------------------------------------ output
    def _folder(self) -> Path:
        folder = Path(self.output_dir.value).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _guarded(self, action) -> None:
        try:
            action()
        except Exception as exc:  # a button callback has nowhere else to report
            self.saved_note.value = f'<span style="color:{_RED}">{html.escape(str(exc))}</span>'

    def _free_name(self, stem: str, suffix: str) -> Path:
        folder = self._folder()
        for i in range(1, 10_000):
            path = folder / f"{stem}-{i:03d}{suffix}"
            if not path.exists():
                return path
        raise FileExistsError(f"{folder} has 9999 {stem} files already; choose another output folder")

    def save_png(self) -> Path:
        """Write the best image so far as PNG into the output folder and show the path."""
        if self.best_image is None:
            raise ValueError("nothing to save yet: press Run first")
        path = save_image(self.best_image, self._free_name("transfer", ".png"))
        self.saved.append(path)
        self.saved_note.value = f"saved <code>{html.escape(str(path))}</code>"
        return path

    def export_gif(self, fps: float = 8.0) -> Path:
        """Write the progression of previews as an animated GIF into the output folder and show the path."""
        if not self.frames:
            raise ValueError("no previews yet: press Run first")
        shape = tuple(self.frames[-1].shape[-2:])
        frames = [load_image(f, shape) for f in self.frames]  # quick-start previews are smaller
        path = Path(save_gif(frames, self._free_name("progression", ".gif"), fps))
        self.saved.append(path)
        self.saved_note.value = f"GIF of {len(frames)} frames: <code>{html.escape(str(path))}</code>"
        return path
