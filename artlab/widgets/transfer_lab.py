"""TransferLab: neural style transfer (Gatys, Ecker & Bethge 2016) with live sliders.

The lab's controls are the knobs of :class:`artlab.transfer.TransferSettings` (log ratio
β/α, TV, per-layer weights, size, steps, content layer, optimiser, init, colour, blend).
It runs :func:`artlab.transfer.stylize` in a background thread and updates a preview and
the per-term loss curves in place. What makes it feel live is the engine's, so scripts
get it too: the quick start (``TransferSettings.quick_start``: a preview within about a
second) and warm restarts (:meth:`artlab.transfer.StyleTransfer.restart`: a control moved
mid-run continues from the current image). "Stop" keeps the best image; "Save PNG" and
"Export GIF" write into the output folder and show the path.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go
import torch
from torch import Tensor

from artlab.images import as_rgb_image, load_image, save_image, thumbnail, to_png_bytes
from artlab.models import Backbone, best_backbone
from artlab.transfer import StyleTransfer, TransferSettings, stylize, transfer_metadata
from artlab.video import save_gif

from .kit import (
    RED,
    BackgroundRun,
    error_html,
    figure_widget,
    free_name,
    guarded,
    model_badge,
    png_image,
)
from .transfer_controls import TransferControls

__all__ = ["TransferLab"]

#: loss terms drawn as curves: (TransferStep attribute, legend name)
TERMS = (("loss", "total"), ("content", "content"), ("style", "style"), ("tv", "TV"), ("histogram", "histogram"))


class TransferLab(TransferControls, W.VBox):
    """Style transfer of ``styles`` onto ``content`` under ``model``, with live controls.

    content: an image (1×3×H×W tensor, path, PIL image or array); styles: one image or
    a list of them; model: an artlab Backbone (default :func:`~artlab.models.best_backbone`:
    VGG-19 when its ImageNet file is cached, else the bundled EfficientNet-Lite0; the
    badge says which). ``settings`` are :class:`~artlab.transfer.TransferSettings` fields; they
    set the controls' starting values, and the fields without a control (seed, lr,
    scales, loss, panorama …) are passed on unchanged.

    output_dir: where "Save PNG" and "Export GIF" write. preview_size, quick_steps: the
    quick start (the settings' ``quick_size``, ``quick_start``; 0 steps: none). preview_seconds:
    also show the best image when this long passed since the last preview (a full-size L-BFGS
    step takes seconds on a laptop CPU). max_frames: previews kept for the GIF.

    Drive it from code as the buttons do: ``start_run(block=True)``, ``stop_run()``,
    ``save_png()``, ``export_gif()``. After a run: ``best_image`` (1×3×H×W CPU), ``history``
    (losses per step), ``segments`` (quick start, run, warm restarts), ``frames`` (the
    previews), ``first_preview_s`` (seconds to the first preview).
    """

    def __init__(self, content, styles, model: Backbone | None = None, *, output_dir: str | Path = "transfer-output",
                 preview_size: int = 128, quick_steps: int = 6, preview_seconds: float = 1.0, max_frames: int = 120,
                 **settings) -> None:
        self.model = model if model is not None else best_backbone()
        if not isinstance(self.model, Backbone):
            raise TypeError(f"model must be an artlab Backbone (artlab.models.backbone(...)), "
                            f"got {type(self.model).__name__}")
        self.content = as_rgb_image(content, "content")
        style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
        if not style_list:
            raise ValueError("give at least one style image")
        self.styles = [as_rgb_image(s, f"style {i + 1}") for i, s in enumerate(style_list)]
        # validated (unknown names are refused with the list); β defaults to the network's own
        quick = TransferSettings(quick_start=int(quick_steps), quick_size=int(preview_size))
        self.base = quick.replace(**settings).for_model(self.model)
        self.preview_seconds = float(preview_seconds)
        self.max_frames = int(max_frames)
        layers = self.base.style_layers or self.model.spec.style_layers
        self.style_layers = [layers] if isinstance(layers, str) else list(layers)

        self.worker = BackgroundRun("transfer-lab")
        self._restart = threading.Event()
        self._resume = threading.Event()  # cleared while paused
        self._resume.set()
        self._running = False
        self._transfer: StyleTransfer | None = None  # the run in progress
        self.best_image: Tensor | None = None
        self.history: list[dict] = []
        self.segments: list[dict] = []
        self.frames: list[Tensor] = []
        self.first_preview_s: float | None = None
        self.saved: list[Path] = []

        self._build_controls()
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.pause_button = W.Button(description="Pause", icon="pause", disabled=True,
                                     tooltip="hold the run after this step: look, change controls, then Resume")
        self.save_button = W.Button(description="Save PNG", icon="save", disabled=True)
        self.gif_button = W.Button(description="Export GIF", icon="film", disabled=True)
        self.output_dir = W.Text(value=str(output_dir), description="output folder",
                                 style={"description_width": "initial"}, layout=W.Layout(width="420px"))
        self.saved_note = W.HTML()
        self.status = W.HTML("press Run")
        self.preview = png_image(thumbnail(self.content, 512), width="256px")
        self.curves = figure_widget(go.Figure(layout={
            "height": 300, "width": 520, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
            "title": f"loss per term · {self.model.label}",
            "xaxis": {"title": "step"}, "yaxis": {"type": "log", "title": "weighted loss"},
            "legend": {"orientation": "h", "y": -0.2},
        }))
        for _attr, name in TERMS:
            self.curves.add_scatter(x=[], y=[], mode="lines", name=name)
        if not getattr(self.model, "pretrained", False):
            self.curves.layout.title.font.color = RED
        for control in self._restart_controls():
            control.observe(lambda _change: self._running and self._restart.set(), names="value")
        self.ratio.observe(self._show_ratio, names="value")
        self.run_button.on_click(lambda _b: self.start_run())
        self.stop_button.on_click(lambda _b: self.stop_run())
        self.pause_button.on_click(lambda _b: self.resume_run() if self.paused else self.pause_run())
        self.save_button.on_click(lambda _b: guarded(self.save_png, self.saved_note))
        self.gif_button.on_click(lambda _b: guarded(self.export_gif, self.saved_note))
        self._show_ratio()
        super().__init__([
            W.HBox([W.VBox([self.preview, self.status]), self.curves]),
            self._controls_panel(),
            W.HBox([self.run_button, self.pause_button, self.stop_button, self.save_button, self.gif_button]),
            W.HBox([self.output_dir, self.saved_note]),
            model_badge(self.model),
        ])

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True while a run is in progress (in the background thread or blocking)."""
        return self._running

    @property
    def paused(self) -> bool:
        """True while a run is held by :meth:`pause_run`."""
        return self._running and not self._resume.is_set()

    def start_run(self, *, block: bool = False) -> None:
        """Start a transfer: in a background thread (the Run button), or here with ``block=True``."""
        if self._running or self.worker.running:
            return
        self._running = True
        self._restart.clear()
        self.resume_run()
        self.history, self.segments, self.frames, self.first_preview_s = [], [], [], None
        self._t0 = self._last_preview = time.perf_counter()
        self.run_button.disabled, self.stop_button.disabled, self.pause_button.disabled = True, False, False
        self.status.value = "starting…"
        self._draw_curves()
        self.worker.start(self._loop, block=block)

    def stop_run(self) -> None:
        """Ask a running transfer to stop after its current step (the best image is kept); ends a pause too."""
        self.worker.stop()
        self._resume.set()

    def pause_run(self) -> None:
        """Hold a running transfer after its step until :meth:`resume_run` (a control changed meanwhile
        restarts it warm on resume) or :meth:`stop_run`."""
        if self._running:
            self._resume.clear()
            self.pause_button.description, self.pause_button.icon = "Resume", "play"

    def resume_run(self) -> None:
        """Let a paused transfer go on (a control changed while paused restarts it warm first)."""
        self._resume.set()
        self.pause_button.description, self.pause_button.icon = "Pause", "pause"

    def _loop(self) -> None:
        """The worker: stylize, follow the steps, restart warm whenever a control moved."""
        try:
            run = stylize(self.content, self.styles, self.model, self.settings())
            self._segment("quick start" if run.quick is not None else "run", run, run.settings.init)
            while (outcome := self._follow(run)) == "restart":
                self._restart.clear()  # before reading the controls: a later change restarts again
                run = run.restart(self.settings())
                self._segment("warm restart", run, run.settings.init)
            self._report(outcome)
        except Exception as exc:  # shown in the widget instead of lost in a thread
            self.status.value = error_html(f"transfer failed: {exc}")
        finally:
            self._transfer, self._running = None, False
            if self.best_image is not None:
                self.preview.value = to_png_bytes(self.best_image)
            self._draw_curves()
            self.resume_run()
            self.run_button.disabled, self.stop_button.disabled, self.pause_button.disabled = False, True, True
            self.save_button.disabled, self.gif_button.disabled = self.best_image is None, not self.frames

    def _segment(self, kind: str, run: StyleTransfer, init) -> None:
        self.segments.append({"kind": kind, "start_step": len(self.history), "settings": run.settings, "init": init})
        self._transfer = run

    def _follow(self, run: StyleTransfer) -> str:
        """Take the run's steps, showing each; returns "done", "stopped", "restart" or a failure status."""
        outcome, last_draw = "done", 0.0
        for update in run:
            if not update.quick and self.segments[-1]["kind"] == "quick start":
                self._segment("run", run, run.scale_start)  # the full-size start made from the quick start
            self.history.append({attr: float(getattr(update, attr)) for attr, _ in TERMS}
                                | {"step": len(self.history), "segment": len(self.segments) - 1,
                                   "size": tuple(update.size)})
            kind, done = self.segments[-1]["kind"], len(self.history) - self.segments[-1]["start_step"]
            total = run.quick.steps if update.quick else run.settings.total_steps
            self.status.value = (f"{'quick preview' if update.quick else kind} · step {done}/{total} · "
                                 f"{update.size[0]}×{update.size[1]} px · loss {update.loss:.4g}")
            now, image = time.perf_counter(), update.image
            if image is None and now - self._last_preview >= self.preview_seconds:
                image = run.best_image  # a full-size step is slow: do not wait for preview_every
            if image is not None:
                self._show(image)
            if image is not None or now - last_draw > 0.5:
                self._draw_curves()
                last_draw = now
            if update.status != "ok":
                outcome = update.status
                break
            if not self._resume.is_set():  # paused: wait here (Stop ends the wait too)
                running = self.status.value
                self.status.value = f"paused · {running}"
                self._draw_curves()
                self._resume.wait()
                self.status.value = running
            if self.worker.stopping or self._restart.is_set():
                outcome = "stopped" if self.worker.stopping else "restart"
                break
        if outcome != "restart":
            run.close()
        if run.best_image is not None:
            self.best_image = run.best_image
        return outcome

    def _show(self, image: Tensor) -> None:
        self.preview.value = to_png_bytes(image)
        self._last_preview = time.perf_counter()
        if self.first_preview_s is None:
            self.first_preview_s = self._last_preview - self._t0
        if not self.frames or not torch.equal(self.frames[-1], image):
            self.frames.append(image)
            if len(self.frames) > self.max_frames:  # keep every other frame (the first and last stay)
                self.frames = self.frames[::2] + ([image] if len(self.frames) % 2 == 0 else [])

    def _draw_curves(self) -> None:
        """Redraw the loss curves from ``history`` in place (non-positive terms are left out of the log plot)."""
        with self.curves.batch_update():
            for trace, (attr, _name) in zip(self.curves.data, TERMS):
                points = [(h["step"], h[attr]) for h in self.history if h.get(attr) is not None and h[attr] > 0]
                trace.x, trace.y = [p[0] for p in points], [p[1] for p in points]
            self.curves.layout.shapes = [
                {"type": "line", "xref": "x", "yref": "paper", "x0": s["start_step"] - 0.5, "x1": s["start_step"] - 0.5,
                 "y0": 0, "y1": 1, "line": {"dash": "dot", "color": "#888", "width": 1}}
                for s in self.segments[1:]
            ]

    def _report(self, outcome: str) -> None:
        note = {"done": "done", "stopped": "stopped · kept the best image"}.get(outcome) or error_html(outcome)
        first = f" · first preview after {self.first_preview_s:.2f} s" if self.first_preview_s is not None else ""
        restarts = sum(s["kind"] == "warm restart" for s in self.segments)
        warm = f" · {restarts} warm restart{'s' * (restarts != 1)}" if restarts else ""
        seconds = time.perf_counter() - self._t0
        self.status.value = f"{note} · {len(self.history)} steps in {seconds:.1f} s{first}{warm}"

    # ------------------------------------------------------------------ output
    def save_png(self) -> Path:
        """Write the best image so far as PNG into the output folder (the network's label and the
        settings in its metadata) and show the path."""
        if self.best_image is None:
            raise ValueError("nothing to save yet: press Run first")
        settings = self.segments[-1]["settings"] if self.segments else self.base
        path = save_image(self.best_image, free_name(self.output_dir.value, "transfer", ".png"),
                          metadata=transfer_metadata(self.model, settings))
        self.saved.append(path)
        self.saved_note.value = f"saved <code>{html.escape(str(path))}</code>"
        return path

    def export_gif(self, fps: float = 8.0) -> Path:
        """Write the progression of previews as an animated GIF into the output folder and show the path."""
        if not self.frames:
            raise ValueError("no previews yet: press Run first")
        shape = tuple(self.frames[-1].shape[-2:])
        frames = [load_image(f, shape) for f in self.frames]  # quick-start previews are smaller
        path = Path(save_gif(frames, free_name(self.output_dir.value, "progression", ".gif"), fps))
        self.saved.append(path)
        self.saved_note.value = f"GIF of {len(frames)} frames: <code>{html.escape(str(path))}</code>"
        return path
