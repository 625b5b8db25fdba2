"""ProjectionView: find the latents of a StyleGAN2-ADA generator that best redraw an image.

The target (resized to the generator's resolution) sits beside the current
reconstruction; the LPIPS curve grows in place while :func:`artlab.stylegan.project`
optimises w (or one w per layer, W+), optionally with a given class or a soft class
optimised jointly. "Stop" ends the run and keeps the best latents so far. Then a
walk from the projected latents towards a chosen class shows what the generator
"thinks" the image would look like in that class.

Offline there are no ImageNet VGG16 weights for LPIPS. The view then says so in red
and uses LPIPS over a *random* VGG16 ("lpips-vgg-random"): the curve still falls,
but it is not a perceptual distance. Pass ``perceptual=`` to choose explicitly.
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

from artlab.images import image_grid, load_image
from artlab.stylegan.generate import class_label
from artlab.stylegan.perceptual import RANDOM_LPIPS_LABEL, VGG16_WEIGHTS_KEY
from artlab.stylegan.project import prepare_target, project
from artlab.stylegan.walks import save_walk, walk_to_class
from artlab.weights import cached_path, find_known

from ._common import figure_widget, png_image
from .latent_explorer import class_names, display_png, free_name, generator_badge

__all__ = ["ProjectionView", "resolve_perceptual", "walk_to_class"]

_RED = "#c0392b"
RANDOM_NOTE = RANDOM_LPIPS_LABEL


def _vgg16_cached() -> bool:
    return cached_path(find_known(VGG16_WEIGHTS_KEY)) is not None


def resolve_perceptual(perceptual) -> tuple[object, str, bool]:
    """(value for ``project(perceptual=…)``, a label, True when the metric is not a real perceptual one).

    ``None`` means "lpips-vgg" when torchvision's ImageNet VGG16 is in the torch hub cache,
    else "lpips-vgg-random" (labelled as such: never a silent stand-in).
    """
    if perceptual is None:
        perceptual = "lpips-vgg" if _vgg16_cached() else "lpips-vgg-random"
    if perceptual == "lpips-vgg-random":
        return perceptual, RANDOM_NOTE, True
    if perceptual == "lpips-vgg":
        return perceptual, "LPIPS (VGG16, ImageNet)", False
    if callable(perceptual):
        name = getattr(perceptual, "__name__", type(perceptual).__name__)
        label = getattr(perceptual, "label", None) or f"custom distance ({name})"
        return perceptual, str(label), getattr(perceptual, "pretrained", True) is False
    raise ValueError(f"perceptual={perceptual!r}; use None (automatic), 'lpips-vgg', 'lpips-vgg-random' or a "
                     "callable (images_a, images_b in [0, 1]) -> distance per image")


def _error(text: str) -> str:
    return f'<span style="color:{_RED}">{html.escape(text)}</span>'


class ProjectionView(W.VBox):
    """Project ``target`` into generator ``G``'s latent space, live, then walk to a class.

    Controls: ``steps``, ``space`` ("w" or "w+"), ``class_choice`` ("none", a class index,
    or "optimize" for a soft class optimised jointly; hidden for unconditional
    generators), ``project_button``/``stop_button``; after a run ``walk_class``,
    ``walk_frames`` and ``walk_button``. ``perceptual``: None (see
    :func:`resolve_perceptual`), "lpips-vgg", "lpips-vgg-random" or a callable; other
    keyword arguments go to :func:`artlab.stylegan.project` unchanged.

    Drive it from code as the buttons do: ``start(block=True)``, ``stop()``,
    ``walk_to_class(k)``, ``export_gif()``. State: ``history`` (one dict per step:
    step, loss, lpips), ``projection`` (the core's Projection of the last run), ``best_ws``,
    ``best_image``, ``walk`` (frames N×3×H×W of the last walk), ``saved``.
    """

    def __init__(
        self,
        G,
        target,
        *,
        perceptual=None,
        steps: int = 100,
        space: str = "w",
        seed: int = 0,
        device: str | torch.device | None = None,
        output_dir: str | Path = "stylegan-output",
        display_size: int = 192,
        walk_frames: int = 8,
        preview_every: int = 5,
        **project_kwargs,
    ) -> None:
        for attr in ("z_dim", "c_dim", "num_ws", "img_resolution", "synthesis"):
            if not hasattr(G, attr):
                raise TypeError(f"G must be an artlab StyleGAN2-ADA Generator (artlab.stylegan.load(...) or "
                                f"tiny_generator()); {type(G).__name__} has no {attr!r}")
        if space not in ("w", "w+"):
            raise ValueError(f"space={space!r}; use 'w' (one w for every layer) or 'w+' (one w per layer)")
        self.G = G
        size = G.img_resolution
        # The projection matches the generator's resolution: the target is resized (as project() does).
        self.target = prepare_target(target if isinstance(target, Tensor) else load_image(target), size)
        self.perceptual, self.perceptual_label, self.perceptual_is_random = resolve_perceptual(perceptual)
        self.seed, self.device, self.project_kwargs = int(seed), device, dict(project_kwargs)
        self.project_kwargs.setdefault("preview_every", int(preview_every))
        self.display_size = int(display_size)
        self.conditional = G.c_dim > 0
        self.class_names = class_names(G)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self.history: list[dict] = []
        self.projection = None
        self.best_ws: Tensor | None = None
        self.best_image: Tensor | None = None
        self.projected_c: Tensor | None = None
        self.walk: Tensor | None = None
        self.saved: list[Path] = []

        small = {"description_width": "initial"}
        self.steps = W.IntSlider(value=int(steps), min=1, max=max(1000, int(steps)), description="steps", style=small)
        self.space = W.ToggleButtons(options=[("W", "w"), ("W+", "w+")], value=space, description="space",
                                     style={**small, "button_width": "60px"},
                                     tooltip="W: one w for all layers; W+: one w per layer (ws row)")
        options = [("none", "none"), *zip(self.class_names, range(G.c_dim)), ("optimise soft class", "optimize")]
        self.class_choice = W.Dropdown(options=options, value="none", description="class", style=small)
        if not self.conditional:
            self.class_choice.layout.display = "none"
        self.project_button = W.Button(description="Project", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.status = W.HTML("press Project")
        colour = _RED if self.perceptual_is_random else "#555"
        note = self.perceptual_label
        if self.perceptual == "lpips-vgg-random" and perceptual is None:
            file = find_known(VGG16_WEIGHTS_KEY).filename
            note = (f"{RANDOM_NOTE}. The ImageNet VGG16 weights ({file}) are not in the torch hub cache; download "
                    f"them elsewhere and run `artlab weights import {file}` for real LPIPS.")
        self.perceptual_note = W.HTML(f'<span style="color:{colour};font-weight:bold">{html.escape(note)}</span>')
        self.target_view = png_image(width=f"{self.display_size}px")
        self.target_view.value = display_png(self.target, self.display_size)
        self.recon_view = png_image(width=f"{self.display_size}px")
        self.recon_caption = W.HTML('<span style="color:#555">reconstruction</span>')
        self.curve = figure_widget(go.Figure(layout={
            "height": 260, "width": 440, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
            "title": {"text": f"distance per step · {self.perceptual_label}",
                      "font": {"color": colour, "size": 12}},
            "xaxis": {"title": "step"}, "yaxis": {"title": "LPIPS" if "LPIPS" in self.perceptual_label else "distance"},
        }))
        self.curve.add_scatter(x=[], y=[], mode="lines", name="lpips")

        self.walk_class = W.Dropdown(options=list(zip(self.class_names, range(G.c_dim))),
                                     value=0 if self.conditional else None, description="walk to", style=small)
        self.walk_frames = W.IntSlider(value=int(walk_frames), min=2, max=60, description="walk frames", style=small)
        self.walk_button = W.Button(description="Walk to class", icon="forward", disabled=True)
        self.walk_view = png_image()
        self.output_dir = W.Text(value=str(output_dir), description="output folder", style=small,
                                 layout=W.Layout(width="420px"))
        self.gif_button = W.Button(description="Export GIF", icon="film", disabled=True)
        self.saved_note = W.HTML()
        self.walk_box = W.VBox([W.HBox([self.walk_class, self.walk_frames, self.walk_button]), self.walk_view,
                                W.HBox([self.output_dir, self.gif_button]), self.saved_note])
        if not self.conditional:
            self.walk_box.layout.display = "none"

        self.project_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.walk_button.on_click(lambda _b: self._guarded(lambda: self.walk_to_class(self.walk_class.value)))
        self.gif_button.on_click(lambda _b: self._guarded(self.export_gif))

        super().__init__([
            W.HBox([
                W.VBox([self.target_view,
                        W.HTML(f'<span style="color:#555">target, resized to {size}×{size}</span>')]),
                W.VBox([self.recon_view, self.recon_caption]),
                self.curve,
            ]),
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

    def run(self):
        """The core projection for the current settings (an iterator of steps, not started)."""
        return project(self.G, self.target, steps=self.steps.value, space=self.space.value, c=self.class_argument(),
                       seed=self.seed, device=self.device, perceptual=self.perceptual, **self.project_kwargs)

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        """True while a projection is in progress."""
        return self._running

    def start(self, *, block: bool = False) -> None:
        """Start projecting: in a background thread (the Project button), or here with ``block=True``."""
        if self._running:
            return
        self._running = True
        self._stop.clear()
        self.history = []
        self.project_button.disabled, self.stop_button.disabled = True, False
        self.walk_button.disabled = True
        self.status.value = "starting…"
        self._draw_curve()
        if block:
            self._project()
        else:
            self._thread = threading.Thread(target=self._project, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask a running projection to stop after its current step (the best latents are kept)."""
        self._stop.set()

    def _project(self) -> None:
        t0, last_draw, outcome = time.perf_counter(), 0.0, "done"
        projection, total = None, self.steps.value
        try:
            projection = self.run()
            self.projection = projection
            for step in projection:
                self.history.append({"step": int(step.step), "loss": float(step.loss), "lpips": float(step.lpips)})
                self.status.value = (f"step {step.step + 1}/{total} · loss {float(step.loss):.4g} · "
                                     f"lpips {float(step.lpips):.4g}")
                if step.image is not None:
                    self.recon_view.value = display_png(step.image.detach().cpu(), self.display_size)
                    self.recon_caption.value = f'<span style="color:#555">reconstruction, step {step.step + 1}</span>'
                now = time.perf_counter()
                if now - last_draw > 0.25:
                    self._draw_curve()
                    last_draw = now
                if self._stop.is_set():
                    outcome = "stopped · kept the best latents"
                    break
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            outcome = None
            self.status.value = _error(f"projection failed: {exc}")
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

    def _keep_result(self, projection) -> None:
        if projection.best_ws is None:  # stopped before the first step
            return
        self.best_ws, self.best_image, self.projected_c = projection.best_ws, projection.best_image, projection.best_c
        self.recon_view.value = display_png(self.best_image, self.display_size)
        self.recon_caption.value = '<span style="color:#555">reconstruction (best)</span>'
        if self.projected_c is not None and self.class_choice.value == "optimize":
            top = sorted(enumerate(self.projected_c[0].tolist()), key=lambda kv: -kv[1])[:3]
            found = ", ".join(f"{self.class_names[k]} {100 * v:.0f}%" for k, v in top)
            self.recon_caption.value += f'<br><span style="color:#555">soft class found: {html.escape(found)}</span>'

    def _draw_curve(self) -> None:
        with self.curve.batch_update():
            self.curve.data[0].x = [h["step"] for h in self.history]
            self.curve.data[0].y = [h["lpips"] for h in self.history]

    # ------------------------------------------------------------------ walk and export
    def walk_to_class(self, cls: int) -> Tensor:
        """Frames (N×3×H×W) from the projected latents towards class ``cls``, shown as a strip.

        See :func:`walk_to_class` (module level) for what the walk does.
        """
        if self.best_ws is None:
            raise ValueError("nothing projected yet: press Project first")
        self.walk = walk_to_class(self.G, self.best_ws, cls, frames=self.walk_frames.value, c_from=self.projected_c)
        factor = max(1, 96 // self.G.img_resolution)  # whole-pixel enlargement: frames stay crisp
        strip = torch.nn.functional.interpolate(self.walk, scale_factor=factor, mode="nearest") if factor > 1 \
            else self.walk
        self.walk_view.value = display_png(image_grid(strip, nrow=strip.shape[0]), 0)
        self.gif_button.disabled = False
        self.saved_note.value = (f'<span style="color:#555">{self.walk.shape[0]} frames from the projection to '
                                 f"{html.escape(self.class_names[int(cls)])} (drawn with the generator's own noise "
                                 "maps, so the first frame can differ slightly from the reconstruction)</span>")
        return self.walk

    def _guarded(self, action) -> None:
        try:
            action()
        except Exception as exc:  # a button callback has nowhere else to report
            self.saved_note.value = _error(str(exc))

    def export_gif(self, fps: float = 8.0) -> Path:
        """Write the last walk as an animated GIF into the output folder and show the path."""
        if self.walk is None:
            raise ValueError("no walk yet: project, then press 'Walk to class'")
        folder = Path(self.output_dir.value).expanduser()
        path = Path(save_walk(self.walk, free_name(folder, "projection-walk", ".gif"), fps))
        self.saved.append(path)
        self.saved_note.value = f"GIF of {self.walk.shape[0]} frames: <code>{html.escape(str(path))}</code>"
        return path
