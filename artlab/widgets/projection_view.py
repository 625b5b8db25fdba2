"""ProjectionView: find the latents of a StyleGAN2-ADA generator that best redraw an image.

The target (resized to the generator's resolution) sits beside the current
reconstruction; the distance curve grows in place while :func:`artlab.stylegan.project`
optimises w (or one w per layer, W+), optionally with a given class or a soft class
optimised jointly. "Stop" ends the run and keeps the best latents so far. Then a
walk from the projected latents towards a chosen class shows what the generator
"thinks" the image would look like in that class.

The distance is ``perceptual_loss("auto")`` unless chosen: LPIPS-VGG when its ImageNet
VGG16 weights are here, else a feature distance on the best trained network on this machine
(:class:`artlab.stylegan.perceptual.FeatureDistance`); the view shows the metric's label,
in red when it is not a trained network's, and says why "auto" chose it.
"""

from __future__ import annotations

import html
import time
import warnings
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go
import torch
from torch import Tensor

from artlab.images import image_grid, load_image
from artlab.stylegan.generate import class_label
from artlab.stylegan.perceptual import LPIPSLoss, perceptual_loss
from artlab.stylegan.project import Projection, ProjectionSettings, prepare_target
from artlab.stylegan.walks import collect, save_walk, walk_w_to_class
from artlab.stylegan.walks import walk_to_class  # noqa: F401 - re-exported before; deprecated in the core

from .kit import MUTED, RED, BackgroundRun, display_png, error_html, figure_widget, free_name, guarded, note_html
from .kit import png_image
from .stylegan_parts import SMALL, check_generator, class_choices, class_dropdown, generator_badge

__all__ = ["ProjectionView"]


def _metric_label(metric) -> str:
    """What a perceptual distance calls itself (``.label``), or "custom distance (<name>)"."""
    name = getattr(metric, "__name__", type(metric).__name__)
    return str(getattr(metric, "label", None) or f"custom distance ({name})")


def resolve_perceptual(perceptual) -> tuple[object, str, bool]:
    """Deprecated (one release): ``perceptual_loss(perceptual or "auto")``, its label, and whether it is untrained."""
    warnings.warn("resolve_perceptual is deprecated and will be removed in the next release; use "
                  "artlab.stylegan.perceptual.perceptual_loss('auto') and its .label / .pretrained",
                  DeprecationWarning, stacklevel=2)
    metric = perceptual_loss("auto" if perceptual is None else perceptual)
    return metric, _metric_label(metric), getattr(metric, "pretrained", True) is False


class ProjectionView(W.VBox):
    """Project ``target`` into generator ``G``'s latent space, live, then walk to a class.

    Controls: ``steps``, ``space`` ("w" or "w+"), ``class_choice`` ("none", a class index,
    or "optimize" for a soft class optimised jointly; hidden for unconditional
    generators), ``project_button``/``stop_button``; after a run ``walk_class``,
    ``walk_frames`` and ``walk_button``. ``perceptual``: "auto" (None means the same),
    "lpips-vgg", "lpips-vgg-random" or a callable (see
    :func:`artlab.stylegan.perceptual.perceptual_loss`); it is built once, as ``metric``.
    Other keyword arguments are :class:`artlab.stylegan.project.ProjectionSettings` fields.

    Drive it from code as the buttons do: ``start(block=True)``, ``stop()``,
    ``walk_to_class(k)``, ``export_gif()``. State: ``history`` (one dict per step:
    step, loss, lpips), ``projection`` (the core's Projection of the last run), ``best_ws``,
    ``best_image``, ``walk`` (frames N×3×H×W of the last walk), ``saved``.
    """

    def __init__(self, G, target, *, perceptual="auto", steps: int = 100, space: str = "w", seed: int = 0,
                 device: str | torch.device | None = None, output_dir: str | Path = "stylegan-output",
                 display_size: int = 192, walk_frames: int = 8, preview_every: int = 5, **project_kwargs) -> None:
        check_generator(G, ("z_dim", "c_dim", "num_ws", "img_resolution", "synthesis"))
        if space not in ("w", "w+"):
            raise ValueError(f"space={space!r}; use 'w' (one w for every layer) or 'w+' (one w per layer)")
        self.G = G
        size = G.img_resolution
        # The projection matches the generator's resolution: the target is resized (as project() does).
        self.target = prepare_target(target if isinstance(target, Tensor) else load_image(target), size)
        self.metric = perceptual_loss("auto" if perceptual is None else perceptual, seed=int(seed),
                                      device=device if device is not None else G.device)
        self.perceptual_label = _metric_label(self.metric)
        self.perceptual_is_random = getattr(self.metric, "pretrained", True) is False
        self.settings = ProjectionSettings(seed=int(seed), device=device, perceptual=self.metric,
                                           preview_every=int(preview_every)).replace(**project_kwargs)
        self.display_size = int(display_size)
        self.conditional = G.c_dim > 0
        self.class_names = class_choices(G)
        self.worker = BackgroundRun("artlab-projection")
        self._running = False
        self.history: list[dict] = []
        self.projection: Projection | None = None
        self.best_ws: Tensor | None = None
        self.best_image: Tensor | None = None
        self.projected_c: Tensor | None = None
        self.walk: Tensor | None = None
        self.saved: list[Path] = []

        self.steps = W.IntSlider(value=int(steps), min=1, max=max(1000, int(steps)), description="steps", style=SMALL)
        self.space = W.ToggleButtons(options=[("W", "w"), ("W+", "w+")], value=space, description="space",
                                     style={**SMALL, "button_width": "60px"},
                                     tooltip="W: one w for all layers; W+: one w per layer (ws row)")
        options = [("none", "none"), *zip(self.class_names, range(G.c_dim)), ("optimise soft class", "optimize")]
        self.class_choice = W.Dropdown(options=options, value="none", description="class", style=SMALL)
        if not self.conditional:
            self.class_choice.layout.display = "none"
        self.project_button = W.Button(description="Project", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.status = W.HTML("press Project")
        colour = RED if self.perceptual_is_random else MUTED
        note = html.escape(self.perceptual_label)
        if getattr(self.metric, "note", ""):  # "auto" says why it chose this metric
            note += f'<br><span style="font-weight:normal">{html.escape(self.metric.note)}</span>'
        self.perceptual_note = W.HTML(f'<span style="color:{colour};font-weight:bold">{note}</span>')
        self.target_view = png_image(width=f"{self.display_size}px")
        self.target_view.value = display_png(self.target, self.display_size)
        self.recon_view = png_image(width=f"{self.display_size}px")
        self.recon_caption = W.HTML(note_html("reconstruction", size="100%"))
        self.curve = figure_widget(go.Figure(layout={
            "height": 260, "width": 440, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
            "title": {"text": f"distance per step · {self.perceptual_label}", "font": {"color": colour, "size": 12}},
            "xaxis": {"title": "step"},
            "yaxis": {"title": "LPIPS" if isinstance(self.metric, LPIPSLoss) else "distance"},
        }))
        self.curve.add_scatter(x=[], y=[], mode="lines", name="lpips")

        self.walk_class = class_dropdown(self.class_names, 0, "walk to")
        self.walk_frames = W.IntSlider(value=int(walk_frames), min=2, max=60, description="walk frames", style=SMALL)
        self.walk_button = W.Button(description="Walk to class", icon="forward", disabled=True)
        self.walk_view = png_image()
        self.output_dir = W.Text(value=str(output_dir), description="output folder", style=SMALL,
                                 layout=W.Layout(width="420px"))
        self.gif_button = W.Button(description="Export GIF", icon="film", disabled=True)
        self.saved_note = W.HTML()
        self.walk_box = W.VBox([W.HBox([self.walk_class, self.walk_frames, self.walk_button]), self.walk_view,
                                W.HBox([self.output_dir, self.gif_button]), self.saved_note])
        if not self.conditional:
            self.walk_box.layout.display = "none"

        self.project_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.walk_button.on_click(lambda _b: guarded(lambda: self.walk_to_class(self.walk_class.value),
                                                     self.saved_note))
        self.gif_button.on_click(lambda _b: guarded(self.export_gif, self.saved_note))

        target_caption = W.HTML(note_html(f"target, resized to {size}×{size}", size="100%"))
        super().__init__([
            W.HBox([W.VBox([self.target_view, target_caption]), W.VBox([self.recon_view, self.recon_caption]),
                    self.curve]),
            W.HBox([self.steps, self.space, self.class_choice]),
            W.HBox([self.project_button, self.stop_button, self.status]),
            self.perceptual_note,
            self.walk_box,
            generator_badge(G),
        ])

    # ------------------------------------------------------------------ inputs
    def class_argument(self):
        """What ``project(c=…)`` gets: None, a one-hot label (1×c_dim) or "optimize"."""
        choice = self.class_choice.value
        if not self.conditional or choice == "none":
            return None
        if choice == "optimize":
            return "optimize"
        return class_label(self.G, int(choice))

    def run(self) -> Projection:
        """The core projection for the current settings (an iterator of steps, not started)."""
        settings = self.settings.replace(steps=self.steps.value, space=self.space.value, c=self.class_argument())
        return Projection(self.G, self.target, settings)

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True while a projection is in progress."""
        return self._running

    def start(self, *, block: bool = False) -> None:
        """Start projecting: in a background thread (the Project button), or here with ``block=True``."""
        if self._running or self.worker.running:
            return
        self._running = True
        self.history = []
        self.project_button.disabled, self.stop_button.disabled = True, False
        self.walk_button.disabled = True
        self.status.value = "starting…"
        self._draw_curve()
        self.worker.start(self._project, block=block)

    def stop(self) -> None:
        """Ask a running projection to stop after its current step (the best latents are kept)."""
        self.worker.stop()

    def _project(self) -> None:
        t0, last_draw, outcome = time.perf_counter(), 0.0, "done"
        projection, total = None, self.steps.value
        try:
            projection = self.projection = self.run()
            for step in projection:
                self.history.append({"step": int(step.step), "loss": float(step.loss), "lpips": float(step.lpips)})
                self.status.value = (f"step {step.step + 1}/{total} · loss {float(step.loss):.4g} · "
                                     f"lpips {float(step.lpips):.4g}")
                if step.image is not None:
                    self.recon_view.value = display_png(step.image.detach().cpu(), self.display_size)
                    self.recon_caption.value = note_html(f"reconstruction, step {step.step + 1}", size="100%")
                if time.perf_counter() - last_draw > 0.25:
                    self._draw_curve()
                    last_draw = time.perf_counter()
                if self.worker.stopping:
                    outcome = "stopped · kept the best latents"
                    break
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            outcome = None
            self.status.value = error_html(f"projection failed: {exc}")
        finally:
            if projection is not None:
                projection.close()
                self._keep_result(projection)
            self._draw_curve()
            self._running = False
            self.project_button.disabled, self.stop_button.disabled = False, True
            self.walk_button.disabled = self.best_ws is None or not self.conditional
        if outcome is not None:
            best = min((h["lpips"] for h in self.history), default=float("nan"))
            self.status.value = (f"{outcome} · {len(self.history)} steps in {time.perf_counter() - t0:.1f} s · "
                                 f"best lpips {best:.4g}")

    def _keep_result(self, projection: Projection) -> None:
        if projection.best_ws is None:  # stopped before the first step
            return
        self.best_ws, self.best_image, self.projected_c = projection.best_ws, projection.best_image, projection.best_c
        self.recon_view.value = display_png(self.best_image, self.display_size)
        self.recon_caption.value = note_html("reconstruction (best)", size="100%")
        if self.projected_c is not None and self.class_choice.value == "optimize":
            top = sorted(enumerate(self.projected_c[0].tolist()), key=lambda kv: -kv[1])[:3]
            found = ", ".join(f"{self.class_names[k]} {100 * v:.0f}%" for k, v in top)
            self.recon_caption.value += "<br>" + note_html(f"soft class found: {found}", size="100%")

    def _draw_curve(self) -> None:
        with self.curve.batch_update():
            self.curve.data[0].x = [h["step"] for h in self.history]
            self.curve.data[0].y = [h["lpips"] for h in self.history]

    # ------------------------------------------------------------------ walk and export
    def walk_to_class(self, cls: int) -> Tensor:
        """Frames (N×3×H×W) from the projected latents towards class ``cls``, shown as a strip.

        See :func:`artlab.stylegan.walks.walk_w_to_class` for what the walk does.
        """
        if self.best_ws is None:
            raise ValueError("nothing projected yet: press Project first")
        self.walk = collect(walk_w_to_class(self.G, self.best_ws, cls, self.walk_frames.value, c_from=self.projected_c))
        factor = max(1, 96 // self.G.img_resolution)  # whole-pixel enlargement: frames stay crisp
        strip = torch.nn.functional.interpolate(self.walk, scale_factor=factor, mode="nearest") if factor > 1 \
            else self.walk
        self.walk_view.value = display_png(image_grid(strip, nrow=strip.shape[0]), 0)
        self.gif_button.disabled = False
        self.saved_note.value = note_html(
            f"{self.walk.shape[0]} frames from the projection to {self.class_names[int(cls)]} (drawn with the "
            "generator's own noise maps, so the first frame can differ slightly from the reconstruction)", size="100%")
        return self.walk

    def export_gif(self, fps: float = 8.0) -> Path:
        """Write the last walk as an animated GIF into the output folder and show the path."""
        if self.walk is None:
            raise ValueError("no walk yet: project, then press 'Walk to class'")
        path = Path(save_walk(self.walk, free_name(self.output_dir.value, "projection-walk", ".gif"), fps))
        self.saved.append(path)
        self.saved_note.value = f"GIF of {self.walk.shape[0]} frames: <code>{html.escape(str(path))}</code>"
        return path
