"""LatentExplorer: a StyleGAN2-ADA generator's latent space, one control at a time.

Seed and truncation ψ pick the image; for a class-conditional generator one slider per class
sets a soft label (normalised; "70/30" is a preset), and "class-aware truncation" pulls towards
the class's own mean w. Style mixing copies a range of ws rows from a second seed. "Play" runs a
walk (slerp in Z, lerp in W, or a class mix by soft label or centroids) in a background thread,
"Stop" ends it; the last walk exports as GIF or MP4, the image on show as PNG. Every image comes
from one core call (:func:`artlab.stylegan.generate.render`, or a walk of :mod:`artlab.stylegan.walks`).
"""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W
from torch import Tensor

from artlab.images import result_metadata, save_image
from artlab.stylegan.generate import Rendered, StyleMix, Truncation, as_truncation, class_label
from artlab.stylegan.generate import render as core_render
from artlab.stylegan.walks import class_mix_walk, save_walk, walk_w, walk_z

from .kit import BackgroundRun, display_png, error_html, free_name, guarded, note_html, png_image
from .stylegan_parts import SMALL, check_generator, class_choices, class_dropdown, generator_badge, seed_slider
from .stylegan_parts import deprecated_class_names as class_names  # noqa: F401 - old name, one release
from .stylegan_parts import ws_rows_note

__all__ = ["LatentExplorer"]

WALKS = (("Z slerp (seeds)", "z"), ("W lerp (seeds)", "w"), ("class mix", "class"))
CLASS_METHODS = (("soft label", "soft_label"), ("centroid", "centroid"))


class LatentExplorer(W.VBox):
    """Explore the latent space of a StyleGAN2-ADA generator ``G``.

    Controls: ``seed``, ``psi``; for conditional generators ``class_sliders`` (one weight per
    class), ``preset_button`` (70/30) and ``class_aware``; style mixing: ``mixing``, ``mix_seed``,
    ``mix_rows`` (an inclusive range of ws rows). Walks: ``walk_kind`` ("z", "w", "class"),
    ``walk_method`` ("soft_label", "centroid"), ``walk_from``/``walk_to``, ``keyframes`` (seeds of a
    Z/W walk, from ``seed`` on), ``frames_slider`` (frames per Z/W segment, or of a class walk), ``fps``.
    ``truncation`` (a :class:`~artlab.stylegan.generate.Truncation` or a ψ) sets the starting ψ and
    class-awareness; its ``cutoff`` applies throughout. Unconditional generators get no class controls.

    Drive it from code as the buttons do: ``play(block=True)``, ``stop()``, ``save_png()``, ``export_gif()``,
    ``export_mp4()``. State: ``image`` (on show, 1×3×H×W), ``ws``, ``frames`` (of the last walk), ``saved``.
    """

    def __init__(self, G, *, seed: int = 0, truncation: Truncation | float | None = None,
                 output_dir: str | Path = "stylegan-output", display_size: int = 256, noise_mode: str = "const",
                 frames: int = 12, fps: int = 12, **legacy: object) -> None:
        check_generator(G)
        self.G = G
        self._truncation = as_truncation(truncation, legacy, caller="LatentExplorer")  # truncation_psi=: deprecated
        self.noise_mode, self.display_size, self.conditional = noise_mode, int(display_size), G.c_dim > 0
        self.class_names = class_choices(G)
        self.worker = BackgroundRun("artlab-latent-walk")
        # _holding: several controls move as one change; _dirty: a control moved during a walk (redraw at its end)
        self._playing = self._holding = self._dirty = False
        self.image: Tensor | None = None  # on show, and its ws
        self.ws: Tensor | None = None
        self.frames: list[Tensor] = []
        self.walk_description, self.saved = "", []  # saved: the paths written

        small = SMALL
        self.seed, self.mix_seed = seed_slider(seed), seed_slider(int(seed) + 1, "mix seed")
        self.psi = W.FloatSlider(value=float(self._truncation.psi), min=-1.0, max=1.5, step=0.05,
                                 description="ψ (truncation)", style=small)
        self.class_sliders = [W.FloatSlider(value=float(i == 0), min=0.0, max=1.0, step=0.05, description=name,
                                            style=small) for i, name in enumerate(self.class_names)]
        self.preset_button = W.Button(description="70/30", tooltip="70 % first class, 30 % second class",
                                      disabled=G.c_dim < 2)
        self.class_aware = W.Checkbox(value=self._truncation.class_aware and self.conditional,
                                      description="class-aware truncation", indent=False)
        self.mixing = W.Checkbox(value=False, description="style mixing", indent=False)
        self.mix_rows = W.IntRangeSlider(value=(0, min(3, G.num_ws - 1)), min=0, max=G.num_ws - 1,
                                         description="ws rows from mix seed", style=small)

        kinds = [k for k in WALKS if self.conditional or k[1] != "class"]
        self.walk_kind = W.Dropdown(options=kinds, value="z", description="walk", style=small)
        self.walk_method = W.ToggleButtons(options=CLASS_METHODS, value="soft_label", description="class mix by",
                                           style=small)
        self.walk_from = class_dropdown(self.class_names, 0, "from class")
        self.walk_to = class_dropdown(self.class_names, min(1, G.c_dim - 1), "to class")
        self.keyframes = W.IntSlider(value=3, min=2, max=16, description="keyframes", style=small)
        self.frames_slider = W.IntSlider(value=int(frames), min=2, max=max(120, int(frames)), description="frames",
                                         style=small)
        self.fps = W.IntSlider(value=int(fps), min=1, max=60, description="fps", style=small)
        self.play_button = W.Button(description="Play", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.output_dir = W.Text(value=str(output_dir), description="output folder", style=small,
                                 layout=W.Layout(width="420px"))
        self.png_button = W.Button(description="Save PNG", icon="save")
        self.gif_button = W.Button(description="Export GIF", icon="film", disabled=True)
        self.mp4_button = W.Button(description="Export MP4", icon="film", disabled=True)
        self.class_note, self.mix_note, self.saved_note, self.status, self.caption = (W.HTML() for _ in range(5))
        self.view = png_image(width=f"{self.display_size}px")

        self.class_box = W.VBox([W.HTML("<b>class mix</b> (weights are normalised)"), *self.class_sliders,
                                 W.HBox([self.preset_button, self.class_aware]), self.class_note])
        self.walk_class_box = W.VBox([self.walk_method, W.HBox([self.walk_from, self.walk_to])])
        if not self.conditional:  # an unconditional generator has no classes to mix
            self.class_box.layout.display = "none"
            self.walk_class_box.layout.display = "none"

        for control in (self.seed, self.psi, self.class_aware, self.mixing, self.mix_seed, self.mix_rows,
                        *self.class_sliders):
            control.observe(self._on_change, names="value")
        self.walk_kind.observe(self._show_walk_controls, names="value")
        self.preset_button.on_click(lambda _b: self.preset_70_30())
        self.play_button.on_click(lambda _b: self.play())
        self.stop_button.on_click(lambda _b: self.stop())
        self.png_button.on_click(lambda _b: guarded(self.save_png, self.saved_note))
        self.gif_button.on_click(lambda _b: guarded(self.export_gif, self.saved_note))
        self.mp4_button.on_click(lambda _b: guarded(self.export_mp4, self.saved_note))

        mixing = W.VBox([self.mixing, self.mix_seed, self.mix_rows, self.mix_note])
        super().__init__([
            W.HBox([W.VBox([self.view, self.caption]), W.VBox([self.seed, self.psi, self.class_box, mixing])]),
            W.HBox([self.walk_kind, self.keyframes, self.frames_slider, self.fps]),
            self.walk_class_box,
            W.HBox([self.play_button, self.stop_button, self.status]),
            W.HBox([self.output_dir, self.png_button, self.gif_button, self.mp4_button]),
            self.saved_note,
            generator_badge(G),
        ])
        self._show_walk_controls()
        self.render()

    # ------------------------------------------------------------------ inputs
    def class_weights(self) -> dict[int, float]:
        """The class sliders as {class index: weight} (raw; ``class_label`` normalises them)."""
        return {i: float(s.value) for i, s in enumerate(self.class_sliders)}

    def class_vector(self) -> Tensor | None:
        """The label the controls describe (1×c_dim on the simplex), None for an unconditional G."""
        return class_label(self.G, self.class_weights()) if self.conditional else None

    def mix_layers(self) -> range:
        """The ws rows taken from the mix seed (the slider's range, both ends included)."""
        lo, hi = self.mix_rows.value
        return range(lo, hi + 1)

    def truncation(self) -> Truncation:
        """The truncation the controls describe: ψ, and the class's mean w as centre when class-aware."""
        return self._truncation.replace(psi=float(self.psi.value),
                                        class_aware=bool(self.class_aware.value) and self.conditional)

    def rendered(self) -> Rendered:
        """Image and ws the controls describe (style mixing applied): one core call."""
        mix = StyleMix(self.mix_seed.value, self.mix_layers()) if self.mixing.value else None
        return core_render(self.G, [self.seed.value], self.class_vector(), truncation=self.truncation(),
                           noise_mode=self.noise_mode, style_mix=mix)

    # ------------------------------------------------------------------ views
    def describe(self) -> str:
        """One line saying what is on show (seed, ψ, class mix, style mixing)."""
        parts = [f"seed {self.seed.value}", f"ψ {self.psi.value:.2f}"]
        weights = self.class_weights()
        total = sum(weights.values())
        if self.conditional and total > 0:
            parts.append(" / ".join(f"{100 * w / total:.0f}% {self.class_names[i]}" for i, w in weights.items() if w))
        if self.conditional and self.class_aware.value:
            parts.append("class-aware truncation")
        if self.mixing.value:
            parts.append("ws rows {}–{} from seed {}".format(*self.mix_rows.value, self.mix_seed.value))
        return " · ".join(parts)

    def _show(self, image: Tensor) -> None:
        self.image = image.detach().cpu()
        self.view.value = display_png(self.image, self.display_size)

    def _on_change(self, _change=None) -> None:
        if self._playing:  # a running walk owns the view; the change applies when it ends
            self._dirty = True
        elif not self._holding:
            self.render()

    def render(self) -> None:
        """Compute the image the controls describe and show it (errors are shown, the last image kept)."""
        self.mix_note.value = ws_rows_note(self.G, *self.mix_rows.value)
        try:
            images, ws = self.rendered()
        except ValueError as exc:  # e.g. every class weight at 0
            self.class_note.value = error_html(str(exc))
            return
        if self.conditional:
            label = self.class_vector()[0]
            shares = ", ".join(f"{self.class_names[i]} {100 * float(v):.0f}%" for i, v in enumerate(label) if v > 0)
            self.class_note.value = note_html(f"label: {shares}", size="100%")
        self.ws = ws
        self._show(images)
        self.caption.value = note_html(self.describe(), size="100%")

    def preset_70_30(self) -> None:
        """Set the class mix to 70 % of the first class and 30 % of the second (one redraw)."""
        if self.G.c_dim < 2:
            raise ValueError("the 70/30 preset needs a generator with at least two classes")
        values = [0.7, 0.3] + [0.0] * (self.G.c_dim - 2)
        self._holding = True  # one redraw, not one per slider
        try:
            for slider, value in zip(self.class_sliders, values):
                slider.value = value
        finally:
            self._holding = False
        self._on_change()

    def _show_walk_controls(self, _change=None) -> None:  # class walks: class pickers instead of keyframes
        is_class = self.walk_kind.value == "class"
        self.walk_class_box.layout.display = None if is_class and self.conditional else "none"
        self.keyframes.layout.display = "none" if is_class else None

    # ------------------------------------------------------------------ walks and export
    def walk(self):
        """The core walk the controls describe (not started): Z/W walks loop through ``keyframes`` seeds; a class
        mix goes ``walk_from`` → ``walk_to`` for the seed, truncating towards the class centroids (core default)."""
        kind, n, trunc = self.walk_kind.value, self.frames_slider.value, self.truncation()
        seeds = [self.seed.value + i for i in range(self.keyframes.value)]
        common = dict(c=self.class_vector(), truncation=trunc, noise_mode=self.noise_mode)
        if kind in ("z", "w"):
            space = "Z slerp" if kind == "z" else "W lerp"
            self.walk_description = f"{space} through seeds {seeds[0]}–{seeds[-1]}"
            return (walk_z if kind == "z" else walk_w)(self.G, seeds, n, loop=True, **common)
        if not self.conditional:
            raise ValueError("a class-mix walk needs a class-conditional generator (c_dim > 0)")
        a, b, method = self.walk_from.value, self.walk_to.value, self.walk_method.value
        if a == b:
            raise ValueError(f"choose two different classes to walk between (both are {self.class_names[a]})")
        self.walk_description = (f"class mix {self.class_names[a]} → {self.class_names[b]} by "
                                 f"{method.replace('_', ' ')}, seed {self.seed.value}")
        return class_mix_walk(self.G, classes=(a, b), mix_from=0.0, mix_to=1.0, steps=n, method=method,
                              seed=self.seed.value, truncation=trunc.replace(class_aware=True),
                              noise_mode=self.noise_mode)

    def play(self, *, block: bool = False) -> None:
        """Play the walk on a worker thread (the Play button), or here with ``block=True`` (no fps pause)."""
        if self._playing or self.worker.running:
            return
        self._playing = True
        self.play_button.disabled, self.stop_button.disabled = True, False
        self.frames, self._dirty = [], False
        self.worker.start(lambda: self._play(pause=not block), block=block)

    def stop(self) -> None:
        """Ask a playing walk to stop after the current frame (its frames so far are kept)."""
        self.worker.stop()

    def _play(self, pause: bool) -> None:
        walk = None
        try:
            walk = self.walk()
            for frame in walk:
                self.frames.append(frame.image.detach().cpu())
                self._show(frame.image)
                self.ws = frame.ws.detach().cpu()
                self.status.value = f"frame {frame.index + 1} · {html.escape(frame.label)}"
                if self.worker.stopping or (pause and self.worker.pause(1.0 / self.fps.value)):
                    self.status.value += " · stopped"
                    break
            else:
                self.status.value = f"{html.escape(self.walk_description)} · {len(self.frames)} frames · done"
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            self.status.value = error_html(f"walk failed: {exc}")
        finally:
            if walk is not None and hasattr(walk, "close"):
                walk.close()
            self._playing = False
            self.play_button.disabled, self.stop_button.disabled = False, True
            self.gif_button.disabled = self.mp4_button.disabled = not self.frames
            if self._dirty:  # the controls changed during the walk: show what they describe now
                self._dirty = False
                self.render()

    def save_png(self) -> Path:
        """Write the image on show as PNG (at the generator's resolution) and show the path."""
        if self.image is None:
            raise ValueError("nothing to save yet")
        path = save_image(self.image, free_name(self.output_dir.value, f"seed{self.seed.value}", ".png"),
                          metadata=result_metadata(self.G.label, kind="StyleGAN image", settings={"seed": self.seed.value}))
        return self._saved(path, "PNG")

    def _export(self, suffix: str) -> Path:
        if not self.frames:
            raise ValueError("no walk yet: press Play first, then export its frames")
        stem = f"walk-{self.walk_kind.value}-seed{self.seed.value}"
        path = save_walk(self.frames, free_name(self.output_dir.value, stem, suffix), self.fps.value)
        return self._saved(Path(path), f"{suffix[1:].upper()} of {len(self.frames)} frames")

    def export_gif(self) -> Path:
        """Write the last walk's frames as an animated GIF (at ``fps``) and show the path."""
        return self._export(".gif")

    def export_mp4(self) -> Path:
        """Write the last walk's frames as an H.264 MP4 (at ``fps``) and show the path."""
        return self._export(".mp4")

    def _saved(self, path: Path, what: str) -> Path:  # keep and show a written path
        self.saved.append(path)
        self.saved_note.value = f"{what}: <code>{html.escape(str(path))}</code>"
        return path
