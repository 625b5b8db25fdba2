"""LatentExplorer: a StyleGAN2-ADA generator's latent space, one control at a time.

Seed and truncation ψ pick the image; for a class-conditional generator one slider
per class sets a soft label (the weights are normalised, "70/30" is a preset), and
"class-aware truncation" pulls towards the class's own mean w instead of the global
one. Style mixing copies a range of ws rows (the per-layer styles) from a second
seed. "Play" runs a walk (slerp in Z, lerp in W, or a class-mix walk by soft label or
by class centroids) in a background thread; "Stop" ends it. The frames of the last
walk export as GIF or MP4, the image on show as PNG, into the output folder.

Every image comes from the core (:mod:`artlab.stylegan.generate`,
:mod:`artlab.stylegan.walks`); the widget only collects inputs and shows results.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

import ipywidgets as W
import torch
from torch import Tensor

from artlab.images import save_image, to_png_bytes
from artlab.stylegan.generate import class_label, map_to_ws, style_mix, synthesize
from artlab.stylegan.generate import class_names as core_class_names
from artlab.stylegan.walks import class_mix_walk, save_walk, walk_w, walk_z

from ._common import png_image

__all__ = ["LatentExplorer", "generator_badge", "class_names", "display_png"]

_RED = "#c0392b"
WALKS = (("Z slerp (seeds)", "z"), ("W lerp (seeds)", "w"), ("class mix", "class"))
CLASS_METHODS = (("soft label", "soft_label"), ("centroid", "centroid"))


# ---------------------------------------------------------------------------------------------- shared helpers


def generator_badge(G) -> W.HTML:
    """The generator's label; a red banner when its weights are not a trained network.

    ``_common.model_badge`` words its warning for ImageNet backbones; a GAN with random
    weights needs its own words: its images show the architecture, not learned content.
    """
    label = html.escape(str(getattr(G, "label", type(G).__name__)))
    if getattr(G, "pretrained", False):
        return W.HTML(f'<span style="color:#555">{label}</span>')
    return W.HTML(
        f'<span style="background:{_RED};color:white;padding:2px 6px;border-radius:3px">'
        f"{label} — random weights: the images show the architecture, not a trained model</span>"
    )


def class_names(G) -> list[str]:
    """Display names of the generator's classes: ``G.class_names`` when set, else "class 0", "class 1"…"""
    names = core_class_names(G)
    named = getattr(G, "class_names", None) is not None and len(G.class_names) == G.c_dim
    return names if named else [f"class {n}" for n in names]


def display_png(images: Tensor, width: int) -> bytes:
    """PNG bytes for an on-screen view: small images are enlarged by whole pixels (nearest), so a
    32 px sample stays crisp instead of being blurred by the browser's scaling."""
    factor = max(1, width // max(images.shape[-2:]))
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    return to_png_bytes(images)


def free_name(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem-001.suffix``, the first number not taken (nothing is ever overwritten)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = folder / f"{stem}-{i:03d}{suffix}"
        if not path.exists():
            return path
    raise FileExistsError(f"{folder} has 9999 {stem} files already; choose another output folder")


def _error(text: str) -> str:
    return f'<span style="color:{_RED}">{html.escape(text)}</span>'


# ---------------------------------------------------------------------------------------------- the widget


class LatentExplorer(W.VBox):
    """Explore the latent space of a StyleGAN2-ADA generator ``G``.

    Controls: ``seed``, ``psi`` (truncation ψ); for conditional generators one slider per
    class in ``class_sliders`` (weights, normalised when used), the ``preset_button``
    ("70/30": 70 % of the first class, 30 % of the second) and ``class_aware`` (truncate
    towards the class mean w); style mixing: ``mixing`` (on/off), ``mix_seed`` and
    ``mix_rows`` (an inclusive range of ws rows taken from the mix seed). Walks:
    ``walk_kind`` ("z", "w", "class"), ``walk_method`` (class mix: "soft_label" or
    "centroid"), ``walk_from``/``walk_to`` (classes), ``keyframes`` (seeds visited by Z/W
    walks, starting at ``seed``), ``frames_slider`` (frames per segment of a Z/W walk, all frames
    of a class walk), ``fps``.

    Drive it from code as the buttons do: ``play(block=True)``, ``stop()``, ``save_png()``,
    ``export_gif()``, ``export_mp4()``. State: ``image`` (on show, 1×3×H×W in [0, 1]),
    ``ws`` (its latents), ``frames`` (the last walk's images), ``saved`` (written paths).
    Unconditional generators (``c_dim == 0``) get no class controls.
    """

    def __init__(
        self,
        G,
        *,
        seed: int = 0,
        truncation_psi: float = 1.0,
        output_dir: str | Path = "stylegan-output",
        display_size: int = 256,
        noise_mode: str = "const",
        frames: int = 12,
        fps: int = 12,
    ) -> None:
        for attr in ("z_dim", "c_dim", "num_ws", "mapping", "synthesis"):
            if not hasattr(G, attr):
                raise TypeError(f"G must be an artlab StyleGAN2-ADA Generator (artlab.stylegan.load(...) or "
                                f"tiny_generator()); {type(G).__name__} has no {attr!r}")
        self.G = G
        self.noise_mode = noise_mode
        self.display_size = int(display_size)
        self.conditional = G.c_dim > 0
        self.class_names = class_names(G)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._playing = False
        self._holding = False  # True while several controls move as one change
        self._dirty = False  # a control moved during a walk: redraw when it ends
        self.image: Tensor | None = None
        self.ws: Tensor | None = None
        self.frames: list[Tensor] = []
        self.walk_description = ""
        self.saved: list[Path] = []

        small = {"description_width": "initial"}
        self.seed = W.IntSlider(value=int(seed), min=0, max=max(9999, int(seed)), description="seed", style=small)
        self.psi = W.FloatSlider(value=float(truncation_psi), min=-1.0, max=1.5, step=0.05,
                                 description="ψ (truncation)", style=small)
        self.class_sliders = [
            W.FloatSlider(value=1.0 if i == 0 else 0.0, min=0.0, max=1.0, step=0.05, description=name, style=small)
            for i, name in enumerate(self.class_names)
        ]
        self.preset_button = W.Button(description="70/30", tooltip="70 % first class, 30 % second class",
                                      disabled=G.c_dim < 2)
        self.class_aware = W.Checkbox(value=False, description="class-aware truncation", indent=False)
        self.class_note = W.HTML()
        self.mixing = W.Checkbox(value=False, description="style mixing", indent=False)
        self.mix_seed = W.IntSlider(value=int(seed) + 1, min=0, max=max(9999, int(seed) + 1), description="mix seed",
                                    style=small)
        self.mix_rows = W.IntRangeSlider(value=(0, min(3, G.num_ws - 1)), min=0, max=G.num_ws - 1,
                                         description="ws rows from mix seed", style=small)
        self.mix_note = W.HTML()

        kinds = [k for k in WALKS if self.conditional or k[1] != "class"]
        self.walk_kind = W.Dropdown(options=kinds, value="z", description="walk", style=small)
        self.walk_method = W.ToggleButtons(options=CLASS_METHODS, value="soft_label", description="class mix by",
                                           style=small)
        classes = list(zip(self.class_names, range(G.c_dim)))
        self.walk_from = W.Dropdown(options=classes, value=0 if classes else None, description="from class",
                                    style=small)
        self.walk_to = W.Dropdown(options=classes, value=min(1, G.c_dim - 1) if classes else None,
                                  description="to class", style=small)
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
        self.saved_note = W.HTML()
        self.status = W.HTML()
        self.caption = W.HTML()
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
        self.png_button.on_click(lambda _b: self._guarded(self.save_png))
        self.gif_button.on_click(lambda _b: self._guarded(self.export_gif))
        self.mp4_button.on_click(lambda _b: self._guarded(self.export_mp4))

        super().__init__([
            W.HBox([
                W.VBox([self.view, self.caption]),
                W.VBox([self.seed, self.psi, self.class_box,
                        W.VBox([self.mixing, self.mix_seed, self.mix_rows, self.mix_note])]),
            ]),
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
        if not self.conditional:
            return None
        return class_label(self.G, self.class_weights())

    def mix_layers(self) -> range:
        """The ws rows taken from the mix seed (the slider's range, both ends included)."""
        lo, hi = self.mix_rows.value
        return range(lo, hi + 1)

    def latents(self, seed: int, c: Tensor | None) -> Tensor:
        """ws (1×num_ws×w_dim) of ``seed`` under the current ψ, truncated towards the global mean
        w, or towards the class's mean w when class-aware truncation is on."""
        return map_to_ws(self.G, [int(seed)], None, c, truncation_psi=float(self.psi.value),
                         class_aware_truncation=self.class_aware.value and c is not None)

    def current_ws(self) -> Tensor:
        """ws of the image the controls describe (style mixing applied)."""
        c = self.class_vector()
        ws = self.latents(self.seed.value, c)
        if self.mixing.value:
            ws = style_mix(self.G, ws, self.latents(self.mix_seed.value, c), self.mix_layers())
        return ws

    # ------------------------------------------------------------------ views
    def describe(self) -> str:
        """One line saying what is on show (seed, ψ, class mix, style mixing)."""
        parts = [f"seed {self.seed.value}", f"ψ {self.psi.value:.2f}"]
        if self.conditional:
            weights = self.class_weights()
            total = sum(weights.values())
            if total > 0:
                mix = [f"{100 * w / total:.0f}% {self.class_names[i]}" for i, w in weights.items() if w > 0]
                parts.append(" / ".join(mix))
            if self.class_aware.value:
                parts.append("class-aware truncation")
        if self.mixing.value:
            lo, hi = self.mix_rows.value
            parts.append(f"ws rows {lo}–{hi} from seed {self.mix_seed.value}")
        return " · ".join(parts)

    def _rows_note(self) -> str:
        """Which synthesis resolutions read the chosen ws rows (coarse rows: pose and layout; fine: colour)."""
        lo, hi = self.mix_rows.value
        slices = self.G.synthesis.block_ws_slices()
        res = [r for r, sl in slices.items() if sl.start <= hi and lo < sl.stop]
        shown = f"{res[0]}–{res[-1]} px" if len(res) > 1 else (f"{res[0]} px" if res else "none")
        return f'<span style="color:#555">rows {lo}–{hi} of {self.G.num_ws} feed the {shown} blocks</span>'

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
        self.mix_note.value = self._rows_note()
        try:
            with torch.no_grad():
                ws = self.current_ws()
                image = synthesize(self.G, ws, noise_mode=self.noise_mode)
        except ValueError as exc:  # e.g. every class weight at 0
            self.class_note.value = _error(str(exc))
            return
        if self.conditional:
            label = self.class_vector()[0]
            shares = ", ".join(f"{self.class_names[i]} {100 * float(v):.0f}%" for i, v in enumerate(label) if v > 0)
            self.class_note.value = f'<span style="color:#555">label: {html.escape(shares)}</span>'
        self.ws = ws.detach().cpu()
        self._show(image)
        self.caption.value = f'<span style="color:#555">{html.escape(self.describe())}</span>'

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

    def _show_walk_controls(self, _change=None) -> None:
        is_class = self.walk_kind.value == "class"
        self.walk_class_box.layout.display = None if is_class and self.conditional else "none"
        self.keyframes.layout.display = "none" if is_class else None

    # ------------------------------------------------------------------ walks
    def walk(self):
        """The walk the controls describe, as the core's frame generator (not started).

        Z and W walks visit ``keyframes`` seeds from ``seed`` on and loop back, with the current
        class mix and ψ. A class-mix walk goes from ``walk_from`` to ``walk_to`` for the current
        seed and ψ (truncating towards the class centroids, the core's default).
        """
        kind, n = self.walk_kind.value, self.frames_slider.value
        c, psi = self.class_vector(), float(self.psi.value)
        aware = self.class_aware.value and c is not None
        seeds = [self.seed.value + i for i in range(self.keyframes.value)]
        common = dict(c=c, truncation_psi=psi, class_aware_truncation=aware, noise_mode=self.noise_mode)
        if kind == "z":
            self.walk_description = f"Z slerp through seeds {seeds[0]}–{seeds[-1]}"
            return walk_z(self.G, seeds, n, loop=True, **common)
        if kind == "w":
            self.walk_description = f"W lerp through seeds {seeds[0]}–{seeds[-1]}"
            return walk_w(self.G, seeds, n, loop=True, **common)
        if not self.conditional:
            raise ValueError("a class-mix walk needs a class-conditional generator (c_dim > 0)")
        a, b, method = self.walk_from.value, self.walk_to.value, self.walk_method.value
        if a == b:
            raise ValueError(f"choose two different classes to walk between (both are {self.class_names[a]})")
        self.walk_description = (f"class mix {self.class_names[a]} → {self.class_names[b]} by "
                                 f"{method.replace('_', ' ')}, seed {self.seed.value}")
        return class_mix_walk(self.G, classes=(a, b), mix_from=0.0, mix_to=1.0, steps=n, method=method,
                              seed=self.seed.value, truncation_psi=psi, noise_mode=self.noise_mode)

    def play(self, *, block: bool = False) -> None:
        """Play the walk: in a background thread (the Play button), or here with ``block=True``
        (as fast as it computes, without the fps pause: for scripts and tests)."""
        if self._playing:
            return
        self._stop.clear()
        self._playing = True
        self.play_button.disabled, self.stop_button.disabled = True, False
        self.frames = []
        self._dirty = False
        if block:
            self._play(pause=False)
        else:
            self._thread = threading.Thread(target=self._play, kwargs={"pause": True}, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask a playing walk to stop after the current frame (its frames so far are kept)."""
        self._stop.set()

    def _play(self, pause: bool) -> None:
        walk = None
        try:
            walk = self.walk()
            for frame in walk:
                self.frames.append(frame.image.detach().cpu())
                self._show(frame.image)
                self.ws = frame.ws.detach().cpu()
                self.status.value = f"frame {frame.index + 1} · {html.escape(frame.label)}"
                if self._stop.is_set() or (pause and self._stop.wait(1.0 / self.fps.value)):
                    self.status.value += " · stopped"
                    break
            else:
                self.status.value = f"{html.escape(self.walk_description)} · {len(self.frames)} frames · done"
        except Exception as exc:  # show the reason in the widget instead of losing it in a thread
            self.status.value = _error(f"walk failed: {exc}")
        finally:
            if walk is not None and hasattr(walk, "close"):
                walk.close()
            self._playing = False
            self.play_button.disabled, self.stop_button.disabled = False, True
            self.gif_button.disabled = self.mp4_button.disabled = not self.frames
            if self._dirty:  # the controls changed during the walk: show what they describe now
                self._dirty = False
                self.render()

    # ------------------------------------------------------------------ export
    def _folder(self) -> Path:
        return Path(self.output_dir.value).expanduser()

    def _guarded(self, action) -> None:
        try:
            action()
        except Exception as exc:  # a button callback has nowhere else to report
            self.saved_note.value = _error(str(exc))

    def save_png(self) -> Path:
        """Write the image on show as PNG (at the generator's resolution) and show the path."""
        if self.image is None:
            raise ValueError("nothing to save yet")
        path = save_image(self.image, free_name(self._folder(), f"seed{self.seed.value}", ".png"))
        return self._saved(path, "PNG")

    def _export(self, suffix: str) -> Path:
        if not self.frames:
            raise ValueError("no walk yet: press Play first, then export its frames")
        stem = f"walk-{self.walk_kind.value}-seed{self.seed.value}"
        path = save_walk(torch.cat(self.frames), free_name(self._folder(), stem, suffix), self.fps.value)
        return self._saved(Path(path), f"{suffix[1:].upper()} of {len(self.frames)} frames")

    def export_gif(self) -> Path:
        """Write the last walk's frames as an animated GIF (at ``fps``) and show the path."""
        return self._export(".gif")

    def export_mp4(self) -> Path:
        """Write the last walk's frames as an H.264 MP4 (at ``fps``) and show the path."""
        return self._export(".mp4")

    def _saved(self, path: Path, what: str) -> Path:
        self.saved.append(path)
        self.saved_note.value = f"{what}: <code>{html.escape(str(path))}</code>"
        return path
