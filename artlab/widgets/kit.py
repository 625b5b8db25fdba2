"""The plumbing every artlab widget shares: images, badges, figures, errors, files and workers.

A widget reads its controls, calls one core function and updates its view in place;
everything around that (showing an image tensor, labelling the network, reporting an
error a button callback would otherwise lose, picking a file name that never
overwrites, running a long job off the kernel's main thread with a Stop) lives here
once, so each widget is only its layout and its one call.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import threading
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go
import torch
import traitlets
from PIL import Image
from torch import Tensor

from artlab.images import to_png_bytes

__all__ = [
    "EMPTY_CLASS",
    "FIGURE_CONFIG",
    "MODEBAR_BAND",
    "RED",
    "BackgroundRun",
    "ImageSlot",
    "PrivateFigureWidget",
    "display_png",
    "error_html",
    "figure_widget",
    "free_name",
    "guarded",
    "model_badge",
    "note_html",
    "output_folder",
    "png_image",
]

#: the colour of errors and of the random-weights warning, in every widget
RED = "#c0392b"
#: the colour of secondary text (notes, paths, captions)
MUTED = "#555"


# ---------------------------------------------------------------------------------------------- text


def error_html(text: str) -> str:
    """``text`` (escaped) as a red span: how every widget shows an error."""
    return f'<span style="color:{RED}">{html.escape(str(text))}</span>'


def note_html(text: str, *, size: str = "90%") -> str:
    """``text`` (escaped) as a muted note."""
    return f'<span style="color:{MUTED};font-size:{size}">{html.escape(str(text))}</span>'


def guarded(action: Callable[[], object], note: W.HTML) -> bool:
    """Run a button's ``action``; an exception is shown in ``note`` (red) instead of being lost.

    A button callback has nowhere else to report: ipywidgets only logs it to the browser
    console. Returns whether the action succeeded.
    """
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - shown to the user, who can act on it
        note.value = error_html(str(exc))
        return False
    return True


# ---------------------------------------------------------------------------------------------- images


#: the CSS class an :class:`ImageSlot` carries while it shows its placeholder (tests and pages can wait for
#: ``img.widget-image:not(.artlab-empty)``)
EMPTY_CLASS = "artlab-empty"
#: the colour of an empty image slot: the light grey of a thumbnail that is not made yet
PLACEHOLDER_RGB = (238, 238, 238)


@functools.cache
def placeholder_bytes(fmt: str = "png") -> bytes:
    """The 1×1 light-grey picture an empty :class:`ImageSlot` shows, in ``fmt`` (an ipywidgets Image format;
    ``"url"``: a data URL of the PNG)."""
    if fmt == "url":
        return b"data:image/png;base64," + base64.b64encode(placeholder_bytes("png"))
    pil_format = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"an image slot shows png, jpeg, gif, webp, bmp or url pictures, not {fmt!r}")
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), PLACEHOLDER_RGB).save(buffer, format=pil_format)
    return buffer.getvalue()


class ImageSlot(W.Image):
    """An ipywidgets ``Image`` that never shows the browser's broken-image icon.

    A plain ``Image`` with no picture yet (``value == b""``) becomes an ``<img>`` whose source is an
    empty blob: the browser draws its broken-image icon until a picture arrives. An ImageSlot shows
    a 1×1 light-grey placeholder instead (:func:`placeholder_bytes`), which a slot of fixed width
    (``layout.width`` such as ``"200px"``) stretches to a neutral grey square; a slot of no fixed width
    hides itself while empty (``layout.display = "none"``: in a column the placeholder would stretch
    across the page). Either way it carries the CSS class :data:`EMPTY_CLASS` until it is given a
    picture; setting ``value`` to ``b""`` (or calling :meth:`clear`) empties it again.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("value", b"")  # through the validator below: the placeholder from the start
        self._hid_itself = False
        super().__init__(**kwargs)
        self.observe(self._mark_empty, names=["value", "format"])
        self._mark_empty()

    @traitlets.validate("value")
    def _placeholder_when_empty(self, proposal) -> bytes:
        value = proposal["value"]
        return value if len(value) else placeholder_bytes(self.format)

    def _mark_empty(self, _change=None) -> None:
        if self.filled:
            self.remove_class(EMPTY_CLASS)
            if self._hid_itself:  # it hid itself while empty: shown again
                self._hid_itself = False
                if self.layout.display == "none":
                    self.layout.display = None
            return
        self.add_class(EMPTY_CLASS)
        if self.layout.width in (None, "", "auto") and self.layout.display != "none":
            self.layout.display, self._hid_itself = "none", True

    @property
    def filled(self) -> bool:
        """Whether the slot shows a picture (False while it shows the placeholder)."""
        return bytes(self.value) != placeholder_bytes(self.format)

    def clear(self) -> None:
        """Show the placeholder again (the picture is dropped)."""
        self.value = b""


def png_image(images: Tensor | None = None, width: str = "auto") -> ImageSlot:
    """An :class:`ImageSlot` showing an artlab image tensor as PNG (a neutral placeholder until set)."""
    widget = ImageSlot(format="png", layout=W.Layout(width=width, max_width="100%"))
    if images is not None:
        widget.value = to_png_bytes(images)
    return widget


def display_png(images: Tensor, width: int) -> bytes:
    """PNG bytes for an on-screen view: small images are enlarged by whole pixels (nearest), so a
    32 px sample stays crisp instead of being blurred by the browser's scaling."""
    factor = max(1, width // max(images.shape[-2:]))
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    return to_png_bytes(images)


def model_badge(model) -> W.HTML:
    """The model's label (and its note: which network and how to get VGG-19); red for a random init."""
    label = html.escape(model.label)
    note = getattr(model, "note", "")
    extra = (f'<br><span style="color:#777;font-size:0.85em">{html.escape(note)}</span>'
             if note and note != f"Using {model.label}." else "")
    if getattr(model, "pretrained", False):
        return W.HTML(f'<span style="color:{MUTED}">{label}</span>{extra}')
    return W.HTML(
        f'<span style="background:{RED};color:white;padding:2px 6px;border-radius:3px">'
        f"{label} — random weights, not ImageNet features</span>{extra}"
    )


#: plotly.js settings of every artlab figure. plotly.js offers a "Share chart…" modebar button by default
#: (``showSendToCloud``) that uploads the figure, data included, to Plotly's cloud after one click: a
#: private collection must never leave the machine from a button. No logo link either.
FIGURE_CONFIG: dict = {"showSendToCloud": False, "plotlyServerURL": "", "displaylogo": False,
                       "modeBarButtonsToRemove": ["sendChartToCloud"]}
#: pixels kept free at the top of every figure for plotly's toolbar (the modebar: 2 px from the top,
#: buttons 22 px high), above the title, so the toolbar never covers a title
MODEBAR_BAND = 30


class PrivateFigureWidget(go.FigureWidget):
    """A plotly ``FigureWidget`` with :data:`FIGURE_CONFIG`: no button sends the chart anywhere.

    The config is the widget's initial state (the trait's default), so it travels in the message
    that opens the widget: plotly's view reads it once, when it draws, and a config set after the
    widget opened could reach a view drawn before it. Any config assigned later (plotly.py assigns
    ``{}`` right after opening) keeps these settings over its own: nothing can turn the button back on.
    """

    @traitlets.default("_config")
    def _private_config(self) -> dict:
        return {**FIGURE_CONFIG, "modeBarButtonsToRemove": list(FIGURE_CONFIG["modeBarButtonsToRemove"])}

    @traitlets.validate("_config")
    def _keep_private(self, proposal) -> dict:
        config = dict(proposal["value"] or {})
        removed = [*config.get("modeBarButtonsToRemove", []), *FIGURE_CONFIG["modeBarButtonsToRemove"]]
        return {**config, **FIGURE_CONFIG, "modeBarButtonsToRemove": list(dict.fromkeys(removed))}


def figure_widget(figure: go.Figure | None = None) -> PrivateFigureWidget:
    """A ``FigureWidget`` showing ``figure`` in every view, whatever order the page handles its messages in,
    without a cloud button (:class:`PrivateFigureWidget`) and with its title below the toolbar.

    ``go.FigureWidget(figure)`` sends the figure as widget state in a message after the one that
    opens the widget; a view that renders before the page has applied that state (seen in a real
    browser under CPU load) draws an empty plot and never redraws, because plotly's view ignores
    later changes of the whole-figure state. Traces and layout added to an empty widget instead
    travel as edits (``addTraces``, ``update``) that the page applies to its copy of the figure and
    to every view already drawn, so a view shows the figure whenever it renders.

    Plotly draws its toolbar over the top right of a figure, where a long title runs: here the title
    sits :data:`MODEBAR_BAND` px from the top (below the toolbar) and the figure grows by that band
    (top margin and height), so its plot keeps the size it was given and the title stays readable.
    """
    widget = PrivateFigureWidget()
    if figure is not None:
        if figure.data:
            widget.add_traces(list(figure.data))
        widget.update_layout(figure.layout.to_plotly_json())
    layout = widget.layout
    band: dict = {"margin_t": (100 if layout.margin.t is None else layout.margin.t) + MODEBAR_BAND}
    if layout.height is not None:
        band["height"] = layout.height + MODEBAR_BAND
    if layout.title.y is None:  # a figure that placed its title itself keeps it there
        band.update(title_yref="container", title_y=1, title_yanchor="top", title_pad_t=MODEBAR_BAND)
    widget.update_layout(**band)
    return widget


# ---------------------------------------------------------------------------------------------- files


def output_folder(path: str | Path) -> Path:
    """The folder a widget's "output folder" box names (``~`` expanded), created if missing."""
    folder = Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_name(folder: str | Path, stem: str, suffix: str) -> Path:
    """``folder/stem-001.suffix``, the first number not taken (nothing is ever overwritten)."""
    folder = output_folder(folder)
    for i in range(1, 10_000):
        path = folder / f"{stem}-{i:03d}{suffix}"
        if not path.exists():
            return path
    raise FileExistsError(f"{folder} has 9999 {stem} files already; choose another output folder")


# ---------------------------------------------------------------------------------------------- workers


class BackgroundRun:
    """One long job of a widget, on a daemon thread, with a Stop.

    The kernel's main thread must stay free while a transfer or an embedding runs:
    ipywidgets delivers button clicks (Stop, Pause) and slider changes there. ``start``
    runs ``target`` (no arguments) on a worker thread, or inline with ``block=True`` (tests,
    scripts); ``target`` checks :attr:`stopping` between its steps. One job at a time:
    ``start`` while one runs does nothing and returns False.
    """

    def __init__(self, name: str = "artlab-widget") -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether a job started on a worker thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called since the job started (the job should end after its step)."""
        return self._stop.is_set()

    def start(self, target: Callable[[], object], *, block: bool = False, name: str | None = None) -> bool:
        """Run ``target`` on a worker thread (inline when ``block``); False if a job is already running."""
        if self.running:
            return False
        self._stop.clear()
        if block:
            target()
            return True
        self._thread = threading.Thread(target=target, name=name or self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Ask the job to stop after its current step (what it computed so far is kept)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when no job is running any more."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in the job (a playback's frame interval), waking at once on :meth:`stop`.

        Returns :attr:`stopping`, so a loop can ``if run.pause(1 / fps): break``.
        """
        return self._stop.wait(max(0.0, seconds))
