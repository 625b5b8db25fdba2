"""Animated GIF and H.264 MP4 export of image sequences, one writer for all of artlab.

Style transfer's progressions and stylised videos (:mod:`artlab.transfer`) and
StyleGAN's latent walks (:mod:`artlab.stylegan.walks`) all end as a list of artlab
images (1×3×H×W in [0, 1]) that should become a file. This module is that last step:

* :func:`uint8_frames`: a sequence of images, of any sizes, as H×W×3 uint8 arrays of
  one size (what encoders take);
* :func:`save_gif` (Pillow via imageio) and :func:`save_mp4` (imageio-ffmpeg, H.264 in
  yuv420p, so :func:`even_pad` pads odd sides), and :func:`mp4_writer` for callers that
  write frames one at a time as they are computed (:func:`artlab.transfer.stylize_video`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from artlab.images import as_rgb_image, ensure_image_batch, load_image, to_numpy_hwc

__all__ = ["uint8_frames", "even_pad", "check_fps", "mp4_writer", "save_gif", "save_mp4"]


def uint8_frames(frames: Tensor | Iterable[object], size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Images (an N×3×H×W batch, or a list of images of any sizes) as H×W×3 uint8 arrays, all at one size.

    ``size`` (height, width) defaults to the last frame's: in a progression the last
    frame is the final, largest one, and earlier (coarser) frames are upsampled to it
    (antialiased bilinear, as :func:`artlab.images.load_image` resizes).
    """
    if isinstance(frames, Tensor):
        batch = ensure_image_batch(frames, "frames")
        images = [batch[i : i + 1] for i in range(batch.shape[0])]
    else:
        images = [as_rgb_image(f, f"frames[{i}]") for i, f in enumerate(frames)]
    if not images:
        raise ValueError("no frames to write")
    size = size or tuple(images[-1].shape[-2:])
    out = []
    for image in images:
        if tuple(image.shape[-2:]) != tuple(size):
            image = load_image(image, tuple(size))
        out.append(np.round(to_numpy_hwc(image)[0] * 255).astype(np.uint8))
    return out


def check_fps(fps: object) -> float:
    """``fps`` as a float; ValueError unless it is a finite number > 0."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise ValueError(f"fps must be a number, got {fps!r}")
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    return value


def even_pad(array: np.ndarray) -> np.ndarray:
    """An H×W×C array padded to even height and width (edge pixels repeated): H.264 in yuv420p needs even sides."""
    h, w = array.shape[:2]
    return np.pad(array, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def mp4_writer(path: str | os.PathLike, fps: float) -> Any:
    """An imageio-ffmpeg writer for an H.264 MP4 at ``path`` (folders created); ``append_data`` even-padded
    H×W×3 uint8 frames (:func:`even_pad`), then ``close()`` it.

    For writing frames as they are computed, without holding the whole video in memory;
    :func:`save_mp4` writes a finished list.
    """
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return imageio.get_writer(path, format="FFMPEG", mode="I", fps=check_fps(fps), codec="libx264",
                              pixelformat="yuv420p", macro_block_size=2, quality=8)


def save_gif(frames: Tensor | Iterable[object], path: str | os.PathLike, fps: float = 10, *, loop: int = 0) -> Path:
    """Write frames (N×3×H×W, or a list of images of any sizes: resized to the last one's) as an animated GIF.

    Pillow merges consecutive identical frames (their durations add up). ``loop=0``
    repeats forever.
    """
    import imageio.v3 as iio

    arrays = uint8_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(arrays), extension=".gif", duration=1000.0 / check_fps(fps), loop=loop)
    return path


def save_mp4(frames: Tensor | Iterable[object], path: str | os.PathLike, fps: float = 10) -> Path:
    """Write frames as an H.264 MP4 (imageio-ffmpeg); odd sides are padded to even by repeating the edge."""
    arrays = uint8_frames(frames)
    path = Path(path)
    writer = mp4_writer(path, fps)
    try:
        for array in arrays:
            writer.append_data(even_pad(array))
    finally:
        writer.close()
    return path
