"""Sequences: stylised frames and videos with warm starts, and the GIF of a run's progression.

:func:`stylize_frames` carries a style through a sequence, each frame starting from the
previous result; :func:`stylize_video` does it for a video file, writing frames as they
are done, both with a progress bar over every frame's steps; :func:`progression_gif`
animates one run's previews. The GIF/MP4 writers are
:mod:`artlab.video`'s (``artlab.transfer`` re-exports ``save_gif`` and ``save_mp4``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from artlab.images import ensure_image_batch, load_image
from artlab.models import Backbone, best_backbone
from artlab.runs import progress_bar
from artlab.transfer.engine import StyleTransfer, as_styles, stylize
from artlab.transfer.settings import TransferSettings, check_count, resolve_settings
from artlab.video import even_pad, mp4_writer, save_gif, uint8_frames

__all__ = ["FrameResult", "stylize_frames", "stylize_video", "progression_gif"]


@dataclass
class FrameResult:
    """One stylised frame of :func:`stylize_frames`: its index, image (1×3×H×W CPU), last loss and status."""

    index: int
    image: Tensor
    loss: float
    status: str
    steps: int


def _frame_source(frames: object) -> Iterable[object]:
    if isinstance(frames, Tensor):
        batch = ensure_image_batch(frames, "frames")
        return (batch[i : i + 1] for i in range(batch.shape[0]))
    if isinstance(frames, (str, os.PathLike)):
        raise TypeError("frames must be a list of images or an N×3×H×W batch; for a video file use stylize_video")
    return frames  # type: ignore[return-value]


def _frame_count(frames: object) -> int | None:
    """How many frames a source holds, when that is known without consuming it (a batch, a list)."""
    if isinstance(frames, Tensor):
        return int(frames.shape[0]) if frames.ndim == 4 else 1
    try:
        return len(frames)  # type: ignore[arg-type]
    except TypeError:
        return None  # a generator (a video's frames): unknown until the end


def stylize_frames(frames: object, styles: object, settings: TransferSettings | None = None,
                   model: Backbone | None = None, *, warm_steps: int | None = None, progress: bool | None = None,
                   frame_count: int | None = None, **overrides: object) -> Iterator[FrameResult]:
    """Stylise a sequence of frames, each starting from the previous frame's result (a generator).

    frames: an N×3×H×W batch, or any iterable of images/paths (consumed lazily, so a
    video's frames need not all be in memory). The first frame starts from
    ``settings.init``; every later one from the previous output (a warm start, so
    consecutive results stay alike and need fewer steps: ``warm_steps``, default
    ``settings.steps``; one scale, as coarse-to-fine would throw the warm start's
    detail away). Departure from Ruder et al. 2016: no optical-flow warping and no
    temporal loss, only the warm start.

    Each frame is a whole transfer (seconds to minutes), so a progress bar counts the
    optimiser steps of every frame, with an ETA, the frame and its loss: ``progress=None``
    shows it in notebooks and terminals, ``False`` never (:func:`artlab.runs.wants_progress`).
    Its total is known when the number of frames is: a batch or a list, or ``frame_count``
    for a lazy iterable (a video's frames).
    """
    settings = resolve_settings(settings, overrides)
    styles_list = as_styles(styles)
    if model is None:
        # the best trained network here: ImageNet VGG-19 if cached, else the bundled EfficientNet-Lite0
        model = best_backbone(device=settings.device)
    warm = settings.replace(steps=check_count(warm_steps, "warm_steps") if warm_steps is not None else settings.steps,
                            scales=1, scale_steps=None, quick_start=0)
    count = check_count(frame_count, "frame_count") if frame_count is not None else _frame_count(frames)
    previous: Tensor | None = None
    with progress_bar(None, f"stylize frames · {model.name}", enabled=progress, unit="step") as bar:
        for index, frame in enumerate(_frame_source(frames)):
            current = settings if previous is None else warm.replace(init=previous)
            run = stylize(frame, styles_list, model, current)
            if index == 0 and count is not None:  # the first run knows its plan (scales, quick start)
                bar.reset(total=run.total_steps + (count - 1) * warm.total_steps)  # reset: a notebook bar too
            losses = []
            for step in run:
                losses.append(step.loss)
                if not bar.disable:
                    shown = f"{index + 1}/{count}" if count is not None else str(index + 1)
                    bar.set_postfix({"frame": shown, "loss": f"{step.loss:.4g}"}, refresh=False)
                bar.update(1)
            image = run.best_image
            assert image is not None
            previous = image
            yield FrameResult(index, image, losses[-1] if losses else math.nan, run.status, len(losses))


def progression_gif(transfer: StyleTransfer, path: str | os.PathLike, fps: float = 5) -> Path:
    """The previews of a run (its :attr:`StyleTransfer.frames`, coarse scales upsampled) as a GIF."""
    if not isinstance(transfer, StyleTransfer):
        raise TypeError("progression_gif takes the StyleTransfer that stylize() returned, "
                        f"got {type(transfer).__name__}")
    if not transfer.frames:
        raise ValueError("the run has no preview frames yet: iterate it first (previews come every "
                         f"preview_every={transfer.settings.preview_every} steps and on each scale's last step)")
    return save_gif(transfer.frames, path, fps)


def stylize_video(path_in: str | os.PathLike, path_out: str | os.PathLike, styles: object,
                  settings: TransferSettings | None = None, model: Backbone | None = None, *,
                  fps: float | None = None, max_frames: int | None = None, warm_steps: int | None = None,
                  progress: bool | None = None, **overrides: object) -> Path:
    """Stylise a video file frame by frame (warm starts, :func:`stylize_frames`) into an MP4 or GIF.

    Frames are read with imageio's ffmpeg reader and written as they are done
    (``path_out``'s extension decides: .gif, otherwise MP4). ``fps`` defaults to the
    input's; ``max_frames`` stops early (a preview of a long clip). A progress bar counts
    the steps of every frame (``progress=None``: in notebooks and terminals; ``False``: never).
    """
    import imageio.v2 as imageio

    path_in, path_out = Path(path_in), Path(path_out)
    if not path_in.is_file():
        raise FileNotFoundError(f"no video at {path_in}")
    reader = imageio.get_reader(path_in, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        meta_fps = float(meta.get("fps") or 10)
        count = _video_frames(meta, max_frames)

        def source() -> Iterator[Tensor]:
            for i, array in enumerate(reader):
                if max_frames is not None and i >= max_frames:
                    return
                yield load_image(np.asarray(array))

        results = stylize_frames(source(), styles, settings, model, warm_steps=warm_steps, progress=progress,
                                 frame_count=count, **overrides)
        rate = fps or meta_fps
        if path_out.suffix.lower() == ".gif":
            return save_gif([r.image for r in results], path_out, rate)
        writer = mp4_writer(path_out, rate)
        try:
            for result in results:
                writer.append_data(even_pad(uint8_frames([result.image])[0]))
        finally:
            writer.close()
        return path_out
    finally:
        reader.close()


def _video_frames(meta: dict, max_frames: int | None) -> int | None:
    """The number of frames a video will give, for the progress bar's total (None when not known)."""
    nframes = meta.get("nframes")
    known = int(nframes) if isinstance(nframes, (int, float)) and math.isfinite(nframes) and nframes > 0 else None
    if max_frames is None or isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)):
        return known
    count = min(int(max_frames), known) if known is not None else int(max_frames)
    return count if count >= 1 else None
