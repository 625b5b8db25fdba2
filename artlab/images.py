"""Images in one convention: float32 tensors N×3×H×W with values in [0, 1].

Every artlab function that takes or returns images uses this convention; other
libraries' conventions (PIL, uint8 arrays, HWC layouts, LPIPS's [-1, 1]) are
converted at the boundary, in the wrappers, never inside the algorithms.

This module is that boundary:

* reading: :func:`load_image` (files, PIL images, numpy arrays, tensors) and
  :func:`load_images` (several, into one batch); anything that cannot become an
  image raises :class:`ImageLoadError` naming the file and the reason;
* writing and showing: :func:`save_image` (with :func:`result_metadata`: which network
  made a picture, read back by :func:`read_image_metadata`), :func:`to_pil`, :func:`to_png_bytes`,
  :func:`to_data_url`, :func:`image_grid`, :func:`thumbnail`;
* checking: :func:`ensure_image_batch`, plus the numpy helpers
  :func:`to_numpy_hwc` / :func:`from_numpy_hwc`.

Resizing is always antialiased and done in float32 (``torch.nn.functional.interpolate``
with ``mode="bilinear", antialias=True``), so 16-bit sources keep their precision
through a resize.
"""

from __future__ import annotations

import base64
import io
import json
import math
import operator
import os
import secrets
import stat
import struct
import threading
import unicodedata
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image, PngImagePlugin
from torch import Tensor

from artlab import __version__

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "ImageSource",
    "ensure_image_batch",
    "to_numpy_hwc",
    "from_numpy_hwc",
    "load_image",
    "load_images",
    "from_pil",
    "to_pil",
    "save_image",
    "read_image_metadata",
    "result_metadata",
    "image_grid",
    "thumbnail",
    "to_png_bytes",
    "to_data_url",
    "open_regular",
    "open_image",
    "as_rgb_image",
]

#: Largest width × height :func:`load_image` decodes unless told otherwise.
#:
#: 178,956,970 pixels (about 13,400 × 13,400) is the point where PIL itself refuses
#: a file as a "decompression bomb" by default (twice ``PIL.Image.MAX_IMAGE_PIXELS``).
#: A tiny, malicious or damaged file can claim enormous dimensions in its header, so
#: larger images are refused after reading the header and before decoding. Pass
#: ``max_pixels=`` a larger number (or ``None``) for files you trust.
#:
#: Memory (measured on a 12000 × 12000 RGB PNG, 144 MP, peak RSS over the baseline):
#: at full size (``size=None``) the float32 image plus one 8-bit copy, about 15 bytes
#: per pixel (2.0 GiB there, ~2.5 GiB at this limit). When a size is asked for, an
#: image over 16.8 MP is decoded at reduced size (JPEG: libjpeg's 1/2–1/8 scaling;
#: other formats: 8-bit box reduction right after decoding, before any float copy),
#: which costs about the 8-bit image once: 0.5 GiB there instead of 4 GiB.
DEFAULT_MAX_PIXELS: int = 178_956_970

ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray, Tensor]
"""What :func:`load_image` accepts: a path, a PIL image, a numpy array or a tensor."""

SizeSpec = Union[int, Sequence[int], None]

_WHITE = (1.0, 1.0, 1.0)
_TOLERANCE = 1e-3  # how far outside [0, 1] float input may stray (rounding) before it is an error

# PIL checks pixel counts inside Image.open against the process-wide Image.MAX_IMAGE_PIXELS.
# artlab does that check itself against the caller's max_pixels, so PIL's is switched off
# for the duration of one Image.open call (header parsing only) and restored right after.
# The lock stops two artlab loads in different threads from restoring each other's value.
_PIL_OPEN_LOCK = threading.Lock()

# Errors PIL raises for damaged image data while decoding.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, IndexError, struct.error, zlib.error)


class ImageLoadError(ValueError):
    """An image could not be loaded; says which file, why, and what to do about it.

    Attributes:
        path: the file that failed, as a string, or ``None`` for in-memory input
            (a PIL image without a file name, a numpy array, a tensor).
        reason: a short description of the problem, e.g. ``"no such file"``.
        hint: what the user can do about it (may be empty).

    The message reads ``cannot load image 'path/to/x.png': <reason>. <Hint>`` (or
    ``cannot load image from a numpy array: ...`` for in-memory input).
    A subclass of ``ValueError`` so that ``except ValueError`` keeps working.
    """

    def __init__(self, path: str | None, reason: str, hint: str = "", *, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.hint = hint
        self.source = source
        where = f"'{path}'" if path is not None else f"from {source or 'memory'}"
        message = f"cannot load image {where}: {reason}"
        if hint:
            message += f". {hint[0].upper()}{hint[1:]}"
        super().__init__(message)

    def __reduce__(self):  # keep it picklable (DataLoader worker processes send errors back)
        return (_rebuild_image_load_error, (self.path, self.reason, self.hint, self.source))


def _rebuild_image_load_error(path: str | None, reason: str, hint: str, source: str | None) -> ImageLoadError:
    return ImageLoadError(path, reason, hint, source=source)


# ----------------------------------------------------------------------------------------
# The convention itself
# ----------------------------------------------------------------------------------------


def ensure_image_batch(images: Tensor, name: str = "images") -> Tensor:
    """Check that ``images`` follows artlab's convention and return it as float32.

    Accepts N×3×H×W (or a single 3×H×W image, which gets a batch axis) with values
    in [0, 1]. Anything else raises ``ValueError`` saying what was received and what
    is expected, so a wrong layout fails loudly at the boundary, not deep in a model.
    (Values up to 1e-3 outside [0, 1], e.g. from rounding, are tolerated; NaN is not.)
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape N×3×H×W in [0, 1], got {type(images).__name__}; "
            "use artlab.images.load_image() to read files, PIL images or arrays."
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{name} must have shape N×3×H×W (RGB, channels first), got {tuple(images.shape)}; "
            "use artlab.images.load_image() to convert PIL images or H×W×C arrays."
        )
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be floating point in [0, 1], got dtype {images.dtype}; "
            "divide uint8 data by 255 or use artlab.images.load_image()."
        )
    if images.numel():
        values = images.detach()  # a check, not part of any graph
        lo, hi = float(values.min()), float(values.max())
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(
                f"{name} contains NaN values; check the computation that produced them "
                "(e.g. a division by zero or an exploding optimisation)."
            )
        if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
            raise ValueError(
                f"{name} values must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]; "
                "undo any normalisation (ImageNet mean/std, [-1, 1]) before passing images to artlab."
            )
    return images.to(torch.float32) if images.dtype != torch.float32 else images


def to_numpy_hwc(images: Tensor) -> np.ndarray:
    """N×3×H×W tensor in [0, 1] -> float32 numpy array N×H×W×3 in [0, 1] (on the CPU)."""
    images = ensure_image_batch(images)
    return images.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32, copy=False)


def from_numpy_hwc(array: np.ndarray) -> Tensor:
    """N×H×W×3 (or H×W×3) float array in [0, 1] -> float32 tensor N×3×H×W."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected an N×H×W×3 array, got shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(np.clip(array, 0.0, 1.0))).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------


def _positive_int(value: object, what: str) -> int:
    """``value`` as an int ≥ 1 (numpy integers welcome), or a clear error."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a positive int, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be a positive int, got {value!r} ({type(value).__name__})") from None
    if number < 1:
        raise ValueError(f"{what} must be at least 1, got {number}")
    return number


def _check_size(size: object, *, allow_none: bool = True) -> int | tuple[int, int] | None:
    """Validate a ``size`` argument: None, an int, or a (height, width) pair of ints."""
    if size is None:
        if allow_none:
            return None
        raise TypeError("size is required: pass an int (square side) or a (height, width) tuple")
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return _positive_int(size, "size")
    if isinstance(size, (tuple, list, torch.Size)):
        if len(size) != 2:
            raise ValueError(f"size must be an int or a (height, width) pair, got {len(size)} values: {tuple(size)}")
        return (_positive_int(size[0], "size[0] (height)"), _positive_int(size[1], "size[1] (width)"))
    raise TypeError(
        f"size must be None, an int (pixels on the longer side) or a (height, width) tuple of ints, "
        f"got {size!r} ({type(size).__name__})"
    )


def _check_max_pixels(max_pixels: object) -> int | None:
    if max_pixels is None:
        return None
    return _positive_int(max_pixels, "max_pixels")


def _check_background(background: object) -> np.ndarray:
    """A background colour as a float32 array of 3 values in [0, 1]."""
    try:
        values = np.asarray(background, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(
            f"background must be an (r, g, b) tuple of floats in [0, 1], got {background!r}; "
            "e.g. (1.0, 1.0, 1.0) for white or (0.0, 0.0, 0.0) for black"
        )
    return values.astype(np.float32)


def _long_side_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the longer side ``long_side`` and the aspect ratio kept (≥ 1 px)."""
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ----------------------------------------------------------------------------------------
# Decoding: anything -> float32 H×W×3 numpy array in [0, 1]
# ----------------------------------------------------------------------------------------


def _composite(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Straight-alpha ``rgb`` (H×W×3) over a flat ``background``; alpha is H×W×1 in [0, 1]."""
    return rgb * alpha + background * (1.0 - alpha)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _normalise_float(values: np.ndarray, describe: str, path: str | None, source: str | None) -> np.ndarray:
    """Float data (PIL mode F): as is if within [0, 1], else min–max normalised to [0, 1]."""
    if not np.all(np.isfinite(values)):
        raise ImageLoadError(
            path, f"{describe} contains NaN or infinite values", "replace them before loading", source=source
        )
    lo, hi = float(values.min()), float(values.max())
    if lo >= -_TOLERANCE and hi <= 1 + _TOLERANCE:
        return np.clip(values, 0.0, 1.0)
    if hi > lo:
        return (values - lo) / (hi - lo)
    return np.clip(values, 0.0, 1.0)  # a constant image outside [0, 1]: nothing to stretch


def _pil_to_array(img: Image.Image, background: np.ndarray, path: str | None, source: str | None) -> np.ndarray:
    """A loaded PIL image in any mode -> H×W×3 array: uint8 (0–255, for 8-bit data) or float32 in [0, 1].

    8-bit data stays uint8 here (3 bytes per pixel instead of 12); :func:`_to_batch`
    divides by 255 while writing the float32 tensor, so the float image exists once.

    * 1, L, RGB, CMYK, YCbCr, LAB, HSV, P (no transparency): 8-bit, via PIL's conversion to RGB;
    * LA, La, RGBA, RGBa, PA, P/L/RGB with a transparency entry: composited on ``background``;
    * I;16, I;16L, I;16B, I;16N (16-bit): divided by 65535, precision kept;
    * I (32-bit int): treated as 16-bit data (that is what 16-bit PNGs and TIFFs decode to),
      divided by 65535; if any value lies outside [0, 65535] it is min–max normalised;
    * F (32-bit float): used as is if within [0, 1], else min–max normalised.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        gray = np.asarray(img).astype(np.float32) / 65535.0
        return _gray_to_rgb(gray)
    if mode == "I":
        values = np.asarray(img).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            gray = _normalise_float(values, "32-bit integer image", path, source)
        else:
            gray = values / 65535.0
        return _gray_to_rgb(gray.astype(np.float32))
    if mode == "F":
        return _gray_to_rgb(_normalise_float(np.asarray(img, dtype=np.float32), "float image", path, source))
    if mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.float32) / 255.0
        return _composite(_gray_to_rgb(la[:, :, 0]), la[:, :, 1:2], background)
    if mode in ("RGBA", "RGBa", "PA") or img.has_transparency_data:
        try:
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        except ValueError:
            rgba = None  # no RGBA conversion for this mode: fall through and ignore transparency
        if rgba is not None:
            return _composite(rgba[:, :, :3], rgba[:, :, 3:4], background)
    if mode == "RGB":
        return np.asarray(img)
    try:
        rgb = img.convert("RGB")
    except ValueError as err:
        raise ImageLoadError(
            path,
            f"unsupported image mode {mode!r} ({err})",
            "convert it to RGB first (e.g. with PIL: img.convert('RGB'))",
            source=source,
        ) from None
    return np.asarray(rgb)


# How a caller will resize a decoded image, so that a large one can be decoded smaller:
# ("long", s): longer side to s (load_image with an int); ("short", s): shorter side to s, then
# the centre s×s square (load_images with an int); ("exact", (h, w)): to exactly h×w.
_Fit = tuple[str, int | tuple[int, int]]

#: Images of more pixels than this are decoded at reduced size when the caller asked for a
#: smaller one (JPEG: libjpeg's DCT scaling; other formats: an 8-bit box reduction right after
#: decoding). Smaller images take the exact float32 path, so their pixels never change.
_REDUCE_ABOVE_PIXELS = 1 << 24  # 16.8 MP (4096 × 4096): 200 MB as float32 RGB

#: load_images' square crop: past this aspect ratio only the centre band is resized (see _square_crop).
_BAND_RATIO = 4

# EXIF orientation -> the transposition that undoes it (as in PIL.ImageOps.exif_transpose)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _reduction(width: int, height: int, fit: _Fit | None) -> int:
    """The integer factor a width×height image may be shrunk by before the caller's resize.

    The reduced image keeps at least twice the pixels the caller's resize needs along each
    axis (PIL's own ``reducing_gap=2`` rule), so the final antialiased resize still
    decides the result; 1 means "decode at full size". Independent of EXIF orientation.
    """
    if fit is None or width * height <= _REDUCE_ABOVE_PIXELS:
        return 1
    kind, value = fit
    if kind == "long":
        room = max(width, height) / int(value)  # type: ignore[arg-type]
    elif kind == "short":
        room = min(width, height) / int(value)  # type: ignore[arg-type]
    else:
        h, w = value  # type: ignore[misc]
        room = min(width / w, height / h, width / h, height / w)  # either orientation
    return max(1, math.floor(room / 2))


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """``img`` shrunk by an integer ``factor`` in 8 bits (box filter; alpha premultiplied by PIL).

    Modes PIL cannot reduce directly are converted first the way :func:`_pil_to_array`
    would read them (palette -> RGB/RGBA, 1 -> L, I;16 -> I). Falls back to the full-size
    image when PIL cannot reduce it at all.
    """
    if factor < 2:
        return img
    mode = img.mode
    try:
        if mode in ("P", "PA"):
            img = img.convert("RGBA" if mode == "PA" or img.has_transparency_data else "RGB")
        elif mode == "1":
            img = img.convert("L")
        elif mode.startswith("I;16"):
            img = img.convert("I")
        return img.reduce(factor)
    except (ValueError, OSError):
        return img


def _band(img: Image.Image, side: int) -> Image.Image:
    """The centre band of a very elongated image that load_images' square crop to ``side`` uses.

    Past :data:`_BAND_RATIO` only the centre square (plus the resampling filter's reach,
    :func:`_band_margin`) is kept, so a 1×100000 strip costs a 1×(1 + margin) image, not
    a 224×22,400,000 intermediate. Same region as :func:`_square_crop` keeps.
    """
    width, height = img.size
    short, long = min(width, height), max(width, height)
    if long <= _BAND_RATIO * short:
        return img
    band = min(long, short + 2 * _band_margin(short, side))
    start = (long - band) // 2
    box = (start, 0, start + band, height) if width > height else (0, start, width, start + band)
    return img.crop(box)


def _band_margin(short: int, side: int) -> int:
    """Source pixels kept beyond each edge of the centre square: the antialiasing filter's reach
    (one output pixel, ``short / side`` source pixels, when shrinking), plus one."""
    return math.ceil(short / side) + 1


def _decode_pil(
    img: Image.Image, max_pixels: int | None, background: np.ndarray, path: str | None, source: str | None,
    fit: _Fit | None = None,
) -> np.ndarray:
    """Size check, decode, EXIF orientation and mode conversion of an opened PIL image.

    ``fit`` (how the caller will resize) lets a large image be decoded smaller: JPEG
    through ``draft`` (libjpeg scales by 1/2, 1/4 or 1/8 while decoding), any format by an
    8-bit reduction right after decoding, before anything is converted to float; and for
    ``("short", s)`` only the centre band of a very elongated image is kept. Without
    ``fit`` (or for images up to :data:`_REDUCE_ABOVE_PIXELS`) the full image is decoded.
    """
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            path,
            f"{width}×{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            f"(max_pixels={max_pixels})",
            "pass a larger max_pixels if you trust this file",
            source=source,
        )
    if width < 1 or height < 1:
        raise ImageLoadError(path, f"the image has no pixels ({width}×{height})", "", source=source)
    factor = _reduction(width, height, fit)
    if factor > 1 and img.format == "JPEG":
        try:  # before load(): libjpeg decodes at 1/2, 1/4 or 1/8 (no-op for an image already loaded)
            img.draft(None, (max(1, width // factor), max(1, height // factor)))
        except (ValueError, OSError):
            pass  # decoded at full size, then reduced below
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(
            path, f"PIL refused it as a possible decompression bomb ({err})",
            "pass a larger max_pixels if you trust this file", source=source,
        ) from None
    except _DECODE_ERRORS as err:
        raise ImageLoadError(
            path,
            f"truncated or corrupt image data ({err})",
            "the file is damaged or was only partly written; re-download or re-export it",
            source=source,
        ) from None
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS + (KeyError, TypeError) as err:
        orientation = 1
        warnings.warn(
            f"could not apply the EXIF orientation of {path or source or 'an image'} ({err}); "
            "loading it as stored",
            RuntimeWarning,
            stacklevel=6,  # _decode_pil < _decode_handle < _load_file < _load_any < load_image < caller
        )
    if factor > 1:  # what draft left to do (all of it for formats other than JPEG)
        img = _reduce(img, _reduction(*img.size, fit) if img.size != (width, height) else factor)
    if orientation in _ORIENTATION:
        img = img.transpose(_ORIENTATION[orientation])
    if fit is not None and fit[0] == "short":
        img = _band(img, int(fit[1]))  # type: ignore[arg-type]
    return _pil_to_array(img, background, path, source)


def _load_file(path_like: object, max_pixels: int | None, background: np.ndarray, fit: _Fit | None = None) -> np.ndarray:
    """Open and decode a file, turning every way it can fail into an ImageLoadError.

    Only a regular file is read: the file is opened non-blocking and checked again on
    the open descriptor (``fstat``), so a FIFO (whose open would wait for a writer forever)
    or a device, even one swapped in after the first check, is refused at once.
    """
    raw = os.fspath(path_like)  # type: ignore[arg-type]
    path = os.fsdecode(raw)
    try:
        info = os.stat(raw)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(
            path, "no such file", f"check the path (relative paths start at {os.getcwd()})"
        ) from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied", "check the file's permissions") from None
    except OSError as err:
        raise ImageLoadError(path, err.strerror or str(err), "check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError(
            path,
            "is a directory, not a file",
            "pass one image file inside it, or a list of files to load_images()",
        )
    if not stat.S_ISREG(info.st_mode):
        raise ImageLoadError(path, "not a regular file", "pass the path of an image file")
    if info.st_size == 0:
        raise ImageLoadError(
            path, "empty file (0 bytes)", "the file was probably only partly downloaded or copied; re-create it"
        )

    handle = open_regular(raw, path)
    with handle:
        return _decode_handle(handle, path, max_pixels, background, fit)


def open_regular(raw: str | bytes, path: str) -> io.BufferedReader:
    """``raw`` opened for reading if it is a regular file; ImageLoadError otherwise (never blocks)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(raw, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(path, "no such file", f"check the path (relative paths start at {os.getcwd()})") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied", "check the file's permissions") from None
    except OSError as err:
        raise ImageLoadError(path, err.strerror or str(err), "check the path") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ImageLoadError(path, "not a regular file", "pass the path of an image file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def open_image(handle: IO[bytes], path: str) -> Image.Image:
    """PIL's lazy image of an open file or byte stream: the header parsed, nothing decoded yet.

    PIL's own pixel limit is lifted for the call (artlab checks ``max_pixels`` itself,
    before decoding: see ``_PIL_OPEN_LOCK``); what cannot be parsed raises
    :class:`ImageLoadError` naming ``path``, worded as :func:`load_image` words it.
    """
    try:
        with _PIL_OPEN_LOCK:
            saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # checked by _decode_pil against max_pixels instead
            try:
                return Image.open(handle)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except Image.UnidentifiedImageError:
        raise ImageLoadError(
            path,
            "not a recognised image format",
            "check that it really is an image (PNG, JPEG, TIFF, BMP, GIF, WebP, ...); "
            "the file name's extension does not decide this",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(
            path, f"PIL refused it as a possible decompression bomb ({err})",
            "pass a larger max_pixels if you trust this file",
        ) from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied", "check the file's permissions") from None
    except _DECODE_ERRORS as err:
        raise ImageLoadError(
            path, f"truncated or corrupt image header ({err})", "re-download or re-export the file"
        ) from None


def _decode_handle(
    handle: io.BufferedReader, path: str, max_pixels: int | None, background: np.ndarray, fit: _Fit | None
) -> np.ndarray:
    """Parse the header of an open image file (:func:`open_image`) and decode it."""
    with open_image(handle, path) as img:
        return _decode_pil(img, max_pixels, background, path, None, fit)


def _load_array(array: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A numpy image (H×W, H×W×1, H×W×3 or H×W×4) -> float32 H×W×3 in [0, 1]."""
    source = "a numpy array"
    shape = array.shape
    layouts = "H×W, H×W×1, H×W×3 or H×W×4 (channels last)"
    if array.ndim == 3 and shape[2] not in (1, 3, 4) and shape[0] in (1, 3, 4):
        raise ImageLoadError(
            None,
            f"array of shape {shape} looks channels-first",
            f"numpy images must be {layouts}; use array.transpose(1, 2, 0), "
            "or pass a torch tensor for channels-first data",
            source=source,
        )
    if array.ndim == 4:
        raise ImageLoadError(
            None,
            f"array of shape {shape} is a batch",
            "load_image takes one image; use artlab.images.from_numpy_hwc() for an N×H×W×3 batch",
            source=source,
        )
    if not (array.ndim == 2 or (array.ndim == 3 and shape[2] in (1, 3, 4))):
        raise ImageLoadError(None, f"unsupported array shape {shape}", f"expected {layouts}", source=source)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(None, f"the array has no pixels (shape {shape})", "", source=source)

    if array.dtype == np.bool_:
        values = array.astype(np.float32)
    elif array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise ImageLoadError(None, "array contains NaN or infinite values", "replace them first", source=source)
        lo, hi = float(values.min()), float(values.max())
        if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
            raise ImageLoadError(
                None,
                f"float array values must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]",
                "scale it first (e.g. divide 0–255 data by 255) or convert it to uint8",
                source=source,
            )
        values = np.clip(values, 0.0, 1.0)
    else:
        raise ImageLoadError(
            None,
            f"unsupported array dtype {array.dtype}",
            "use uint8 (0–255), uint16 (0–65535), bool, or float in [0, 1]; "
            "e.g. array.astype(np.uint8) for integer data in 0–255",
            source=source,
        )

    if values.ndim == 2:
        return _gray_to_rgb(values)
    channels = values.shape[2]
    if channels == 1:
        return _gray_to_rgb(values[:, :, 0])
    if channels == 3:
        return values
    return _composite(values[:, :, :3], values[:, :, 3:4], background)


def _load_tensor(tensor: Tensor) -> Tensor:
    """A 3×H×W or 1×3×H×W float tensor in [0, 1] -> 1×3×H×W float32 (same device)."""
    source = "a torch.Tensor"
    shape = tuple(tensor.shape)
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ImageLoadError(
            None,
            f"tensor of shape {shape} is not an RGB image",
            "expected 3×H×W or 1×3×H×W (channels first); for H×W×3 data use tensor.permute(2, 0, 1)",
            source=source,
        )
    if tensor.ndim == 4 and tensor.shape[0] != 1:
        raise ImageLoadError(
            None,
            f"tensor of shape {shape} holds {tensor.shape[0]} images",
            "load_image takes one image; a batch already is artlab's format (see ensure_image_batch)",
            source=source,
        )
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0:
        raise ImageLoadError(None, f"the tensor has no pixels (shape {shape})", "", source=source)
    if not tensor.is_floating_point():
        raise ImageLoadError(
            None,
            f"tensor must be floating point in [0, 1], got dtype {tensor.dtype}",
            "for 0–255 data use tensor.float() / 255",
            source=source,
        )
    try:
        batch = ensure_image_batch(tensor, "tensor")
    except ValueError as err:  # NaN or values outside [0, 1]; its message says what to do
        reason, _, hint = str(err).partition("; ")
        raise ImageLoadError(None, reason, hint.rstrip("."), source=source) from None
    return batch.clamp(0.0, 1.0)


def _resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of an N×3×H×W float batch to exactly ``size`` = (h, w)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------
# Public loading API
# ----------------------------------------------------------------------------------------


def load_image(
    src: ImageSource,
    size: SizeSpec = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[float, float, float] = _WHITE,
) -> Tensor:
    """Load one image as a 1×3×H×W float32 tensor in [0, 1], whatever it comes from.

    Why: every artlab function takes the same format, so this is the one place where
    files, PIL images and arrays are converted, checked and, if they cannot be used,
    refused with a message that says what is wrong.

    Args:
        src: one of
            * a path (``str`` or ``os.PathLike``) to an image file: EXIF orientation
              is applied; animated or multi-page files give their first frame;
            * a ``PIL.Image.Image`` in any mode (see below);
            * a numpy array H×W, H×W×1, H×W×3 or H×W×4 of dtype uint8 (÷255),
              uint16 (÷65535), bool, or float in [0, 1];
            * a torch tensor 3×H×W or 1×3×H×W, float in [0, 1] (kept on its device).
        size: ``None`` keeps the image's size; an int makes the *longer* side that many
            pixels, keeping the aspect ratio (rounded, at least 1 px per side); a
            ``(height, width)`` tuple resizes to exactly that. Resizing is antialiased
            bilinear in float32 (precision of 16-bit sources is kept). With a size, a
            file over 16.8 MP is decoded at reduced size first (still at least twice the
            requested size; see :data:`DEFAULT_MAX_PIXELS` for the memory this saves).
        max_pixels: refuse files and PIL images whose width × height exceeds this, after
            reading the header and before decoding (decompression-bomb guard; see
            :data:`DEFAULT_MAX_PIXELS`). ``None`` disables the check. This is the only
            limit: PIL's process-wide ``Image.MAX_IMAGE_PIXELS`` is lifted while the header
            is read (under a lock, restored right after), never changed for good.
        background: (r, g, b) in [0, 1] that transparent pixels are composited onto.

    Modes: 1, L, P, RGB, CMYK, YCbCr, LAB, HSV are 8-bit; LA, RGBA, PA and P/L/RGB with a
    transparency entry are composited on ``background``; I;16 (16-bit) is divided by
    65535; I (32-bit int) is treated as 16-bit data, divided by 65535 (min–max normalised
    if values fall outside [0, 65535]); F (float) is used as is if within [0, 1], else
    min–max normalised. Note that PIL reads 16-bit *colour* PNGs as 8-bit RGB.

    Raises:
        ImageLoadError: the file is missing, a directory, empty, not an image, truncated
            or corrupt, over ``max_pixels``; or an array/tensor has an unusable shape,
            dtype or value range. The message names the file and the reason.
        TypeError, ValueError: ``src`` is of an unsupported type, or ``size``,
            ``max_pixels`` or ``background`` is invalid.
    """
    wanted = _check_size(size)
    limit = _check_max_pixels(max_pixels)
    bg = _check_background(background)
    fit: _Fit | None = None if wanted is None else ("long", wanted) if isinstance(wanted, int) else ("exact", wanted)
    image = _load_any(src, limit, bg, fit)
    if wanted is None:
        return image  # always a new tensor, never the caller's (tensor input is clamped into a copy)
    height, width = image.shape[-2:]
    target = _long_side_size(height, width, wanted) if isinstance(wanted, int) else wanted
    return _resize(image, target)


def _load_any(src: ImageSource, limit: int | None, bg: np.ndarray, fit: _Fit | None) -> Tensor:
    """Any source -> 1×3×H×W float32 in [0, 1], not yet resized (``fit`` may let a large file decode smaller)."""
    if isinstance(src, Tensor):
        return _load_tensor(src)
    if isinstance(src, (str, os.PathLike)):
        array = _load_file(src, limit, bg, fit)
    elif isinstance(src, Image.Image):
        filename = getattr(src, "filename", "") or None
        path = os.fsdecode(filename) if filename else None
        array = _decode_pil(src, limit, bg, path, None if path else "a PIL image", fit)
    elif isinstance(src, np.ndarray):
        array = _load_array(src, bg)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        raise TypeError(
            "load_image got raw bytes; for encoded image data use "
            "load_image(PIL.Image.open(io.BytesIO(data))), for a file pass its path as a str"
        )
    else:
        raise TypeError(
            f"load_image cannot read a {type(src).__name__}; pass a file path (str or pathlib.Path), "
            "a PIL.Image.Image, a numpy array (H×W[×C]) or a torch tensor (3×H×W)"
        )
    return _to_batch(array)


def _to_batch(array: np.ndarray) -> Tensor:
    """H×W×3 uint8 (0–255) or float ([0, 1]) -> 1×3×H×W float32, allocating the float image once.

    The channel-first copy converts as it goes (uint8 is divided by 255 in place
    afterwards), so a large image never exists as float32 twice (H×W×3 and 3×H×W).
    """
    height, width = array.shape[:2]
    out = torch.empty((1, 3, height, width), dtype=torch.float32)
    with warnings.catch_warnings():  # PIL's arrays are read-only; this copy only reads them
        warnings.simplefilter("ignore", UserWarning)
        hwc = torch.from_numpy(np.ascontiguousarray(array))
    out[0].copy_(hwc.permute(2, 0, 1))
    if array.dtype == np.uint8:
        out.div_(255.0)
    return out


def _square_crop(image: Tensor, side: int) -> Tensor:
    """Shorter side scaled to ``side`` (aspect kept), then the centre side×side square: load_images' int size.

    Past an aspect ratio of :data:`_BAND_RATIO` the image is first cut to its centre band
    (the square that ends up in the output, plus the antialiasing filter's reach), so a
    1×100000 strip is not first enlarged to 224×22,400,000 px (60 GB) to keep 224×224 of it.
    """
    height, width = image.shape[-2:]
    short, long = min(height, width), max(height, width)
    if long > _BAND_RATIO * short:
        band = min(long, short + 2 * _band_margin(short, side))
        start = (long - band) // 2
        image = image[:, :, start : start + band, :] if height > width else image[:, :, :, start : start + band]
        height, width = image.shape[-2:]
    scale = side / short
    scaled = (max(side, round(height * scale)), max(side, round(width * scale)))
    image = _resize(image, scaled)
    top, left = (scaled[0] - side) // 2, (scaled[1] - side) // 2
    return image[:, :, top : top + side, left : left + side]


def load_images(
    srcs: Iterable[ImageSource],
    size: int | Sequence[int],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[float, float, float] = _WHITE,
) -> Tensor:
    """Load several images into one N×3×H×W float32 batch (on the CPU).

    Why: a batch needs one common size, so ``size`` is required:

    * an int ``s``: each image is scaled so its *shorter* side is ``s`` (aspect ratio
      kept), then the centre ``s``×``s`` square is cropped, so nothing is distorted.
      An image longer than 4:1 is first cut to that centre square (plus the filter's
      reach), so memory stays bounded by ``s`` for any aspect ratio: a 1×100000 strip
      gives its centre pixel enlarged, not a 224×22,400,000 intermediate;
    * a ``(height, width)`` tuple: each image is resized to exactly that (aspect ratio
      not kept).

    Each source is anything :func:`load_image` accepts; ``max_pixels`` and
    ``background`` are passed on. Raises ``ValueError`` for an empty list and
    :class:`ImageLoadError` (naming the file) for the first image that cannot be loaded.
    """
    if isinstance(srcs, (str, bytes, os.PathLike, Image.Image, np.ndarray, Tensor)):
        raise TypeError(
            f"load_images takes a list of images, got a single {type(srcs).__name__}; "
            "use load_image() for one image, or wrap it in a list"
        )
    wanted = _check_size(size, allow_none=False)
    items = list(srcs)
    if not items:
        raise ValueError("load_images got an empty list of images; pass at least one path, PIL image or array")

    limit = _check_max_pixels(max_pixels)
    bg = _check_background(background)
    fit: _Fit = ("short", wanted) if isinstance(wanted, int) else ("exact", wanted)  # type: ignore[assignment]
    batch = []
    for index, src in enumerate(items):
        try:
            image = _load_any(src, limit, bg, fit).cpu()
        except ImageLoadError as err:
            if hasattr(err, "add_note"):  # Python ≥ 3.11
                err.add_note(f"(item {index} of the {len(items)} passed to load_images)")
            raise
        image = _square_crop(image, wanted) if isinstance(wanted, int) else _resize(image, wanted)  # type: ignore[arg-type]
        batch.append(image)
    return torch.cat(batch).contiguous()


def from_pil(img: Image.Image, *, background: tuple[float, float, float] = _WHITE) -> Tensor:
    """A PIL image (any mode) -> 1×3×H×W float32 tensor in [0, 1]; same as :func:`load_image` on it.

    No pixel limit is applied: the image is already in memory.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"from_pil expects a PIL.Image.Image, got {type(img).__name__}; use load_image() instead")
    return load_image(img, max_pixels=None, background=background)


# ----------------------------------------------------------------------------------------
# Output: PIL images, files, grids, thumbnails, PNG bytes
# ----------------------------------------------------------------------------------------


def _to_uint8_hwc(image: Tensor) -> np.ndarray:
    """3×H×W float tensor in [0, 1] -> H×W×3 uint8 (rounded, not truncated)."""
    return image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def to_pil(images: Tensor) -> Image.Image | list[Image.Image]:
    """Tensor image(s) -> 8-bit RGB PIL image(s), values rounded to the nearest of 0..255.

    Returns a single image for a 3×H×W tensor or a batch of one, a list for any other
    batch size (so ``to_pil(load_image(p))`` is a PIL image, ``to_pil(batch)`` a list).
    """
    single = isinstance(images, Tensor) and images.ndim == 3
    batch = ensure_image_batch(images)
    pictures = [Image.fromarray(_to_uint8_hwc(image)) for image in batch]
    if single or len(pictures) == 1:
        return pictures[0]
    return pictures


def image_grid(images: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile a batch into one image (1×3×H×W): ``nrow`` images per row, ``padding`` px between and around.

    Why: to show or save many images as one picture. Rows are filled left to right; the
    last row may be incomplete (the rest is ``pad_value``). All images share one size,
    since they come from one N×3×H×W batch.
    """
    batch = ensure_image_batch(images)
    nrow = _positive_int(nrow, "nrow")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be an int ≥ 0, got {padding!r}")
    if not isinstance(pad_value, (int, float)) or isinstance(pad_value, bool) or not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must be a number in [0, 1], got {pad_value!r}")
    count, _, height, width = batch.shape
    if count == 0:
        raise ValueError("image_grid got an empty batch (N = 0); pass at least one image")
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    step_y, step_x = height + padding, width + padding
    grid = batch.new_full((1, 3, rows * step_y + padding, columns * step_x + padding), float(pad_value))
    for index in range(count):
        row, col = divmod(index, columns)
        top, left = padding + row * step_y, padding + col * step_x
        grid[0, :, top : top + height, left : left + width] = batch[index].clamp(0, 1)
    return grid


def _one_picture(images: Tensor, nrow: int | None) -> Tensor:
    """A batch as one 3×H×W image: the image itself for N = 1, else a grid.

    ``nrow=None`` picks a near-square grid: ceil(sqrt(N)) images per row.
    """
    batch = ensure_image_batch(images)
    if batch.shape[0] == 0:
        raise ValueError("got an empty batch (N = 0); pass at least one image")
    if batch.shape[0] == 1:
        return batch[0]
    per_row = math.ceil(math.sqrt(batch.shape[0])) if nrow is None else nrow
    return image_grid(batch, nrow=per_row)[0]


def _format_for(path: Path) -> str:
    """PIL format name from a file name's extension, or a clear error."""
    extension = path.suffix.lower()
    fmt = Image.registered_extensions().get(extension)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"cannot tell which image format to write from the extension {extension or '(none)'!r} of '{path}'; "
            "use .png (lossless), .jpg, .webp, .tif or .bmp"
        )
    return fmt


def save_image(images: Tensor, path: str | os.PathLike[str], *, nrow: int | None = None,
               metadata: Mapping[str, str] | None = None) -> Path:
    """Write image(s) to ``path`` (8-bit RGB) and return the path; the format follows the extension.

    One image (3×H×W or N = 1) is written as is; a batch is written as one grid
    (:func:`image_grid`, ``nrow`` per row; ``None`` means a near-square grid).
    Missing parent folders are created. The file appears atomically: it is written to a
    temporary file in the same folder and then renamed over ``path``, so a reader never
    sees a half-written image. JPEG and WebP are written with quality 95.

    ``metadata`` ({name: text}, e.g. :func:`result_metadata`: which network made the
    picture) is stored in the file, so a result still says where it came from when it is
    shared: PNG keeps each entry as a text chunk (tEXt, or iTXt for non-Latin-1 text);
    JPEG and WebP keep them as EXIF (``ImageDescription``: the ``artlab:model`` entry in
    ASCII, ``Software``, and every entry as JSON in ``UserComment``). Other formats cannot
    carry it: a ValueError says to use .png or .jpg. :func:`read_image_metadata` reads it back.
    """
    target = Path(path)
    fmt = _format_for(target)
    picture = Image.fromarray(_to_uint8_hwc(_one_picture(images, nrow)))
    options: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if metadata is not None:
        options.update(_metadata_options(_check_metadata(metadata), fmt, target))

    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new file.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            picture.save(handle, format=fmt, **options)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


#: EXIF tags artlab's metadata uses (JPEG, WebP): in IFD0, and UserComment in the Exif sub-IFD.
_EXIF_DESCRIPTION, _EXIF_SOFTWARE, _EXIF_IFD, _EXIF_USER_COMMENT = 0x010E, 0x0131, 0x8769, 0x9286
_EXIF_ASCII = b"ASCII\0\0\0"  # UserComment's 8-byte character-code prefix
_EXIF_LIMIT = 60_000  # an EXIF block lives in one JPEG APP1 segment (at most 65,533 bytes)


def _check_metadata(metadata: object) -> dict[str, str]:
    """``metadata`` as {name: text}; a clear error for anything a PNG text chunk could not hold."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of {{name: text}}, got {type(metadata).__name__}")
    checked = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 79 or key != key.strip() \
                or any(not (" " <= ch <= "~" or "\xa1" <= ch <= "\xff") for ch in key):
            raise ValueError(f"metadata name {key!r} must be 1-79 printable Latin-1 characters without "
                             "leading or trailing spaces (a PNG text keyword), e.g. 'artlab:model'")
        if not isinstance(value, str):
            raise TypeError(f"metadata[{key!r}] must be text, got {type(value).__name__}; "
                            "write numbers with str() and structures with json.dumps()")
        checked[key] = value
    return checked


def _ascii(text: str) -> str:
    """``text`` in printable ASCII for an EXIF ASCII tag ("·" and "×" spelled out, other accents dropped)."""
    text = text.replace("·", "-").replace("×", "x").replace("→", "->")
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if " " <= ch <= "~")


def _metadata_options(metadata: dict[str, str], fmt: str, target: Path) -> dict[str, object]:
    """PIL save options that store ``metadata`` in a ``fmt`` file (see :func:`save_image`)."""
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)  # tEXt for Latin-1 text, iTXt (UTF-8) otherwise
        return {"pnginfo": info}
    if fmt in ("JPEG", "WEBP"):
        exif = Image.Exif()
        description = metadata.get("artlab:model") or "; ".join(f"{k}: {v}" for k, v in metadata.items())
        exif[_EXIF_DESCRIPTION] = _ascii(description)
        if "Software" in metadata:
            exif[_EXIF_SOFTWARE] = _ascii(metadata["Software"])
        comment = _EXIF_ASCII + json.dumps(metadata, ensure_ascii=True).encode("ascii")
        if len(comment) > _EXIF_LIMIT:
            raise ValueError(f"metadata of {len(comment)} bytes does not fit in a {fmt} file's EXIF block "
                             f"({_EXIF_LIMIT} at most); shorten it or save as .png")
        exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = comment
        return {"exif": exif}
    raise ValueError(f"{target.suffix} ({fmt}) files cannot carry artlab's metadata; save as .png (text "
                     "chunks) or .jpg (EXIF), or leave metadata out")


def read_image_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata :func:`save_image` stored in an image file ({} when there is none).

    PNG: every text chunk before the image data (where artlab and most tools write
    them). JPEG/WebP: the JSON in EXIF ``UserComment`` that artlab writes, or else the
    ``ImageDescription`` and ``Software`` tags under those names. Only the header is
    read, never the pixels. A file that is not an image raises :class:`ImageLoadError`.
    """
    raw = os.fspath(path)
    shown = raw if isinstance(raw, str) else raw.decode(errors="replace")
    with open_regular(raw, shown) as handle, open_image(handle, shown) as image:
        if image.format == "PNG":
            return {key: str(value) for key, value in image.info.items() if isinstance(value, str)}
        try:
            exif = image.getexif()
        except _DECODE_ERRORS:
            return {}
        comment = exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
        if isinstance(comment, bytes) and comment.startswith(_EXIF_ASCII):
            try:
                stored = json.loads(comment[len(_EXIF_ASCII):].decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                stored = None
            if isinstance(stored, dict):
                return {str(k): str(v) for k, v in stored.items()}
        tags = {"ImageDescription": exif.get(_EXIF_DESCRIPTION), "Software": exif.get(_EXIF_SOFTWARE)}
        return {k: v.strip("\0 ") for k, v in tags.items() if isinstance(v, str) and v.strip("\0 ")}


def result_metadata(model_label: str, *, kind: str, settings: Mapping[str, object] | None = None) -> dict[str, str]:
    """The metadata a saved result carries: ``artlab:model`` (the network's label, e.g.
    "efficientnet_lite0 · ImageNet"), ``artlab:kind`` ("style transfer", "texture", ...),
    ``Software`` ("artlab <version>") and, when given, ``artlab:settings`` (short JSON).

    Why: a picture made with a random-weight network looks much like one made with a
    trained one; the file should say which it was. Pass it to :func:`save_image`.
    """
    if not isinstance(model_label, str) or not model_label.strip():
        raise ValueError(f"model_label must be the network's label (model.label), got {model_label!r}")
    metadata = {"artlab:model": model_label, "artlab:kind": str(kind), "Software": f"artlab {__version__}"}
    if settings is not None:
        metadata["artlab:settings"] = json.dumps(dict(settings), ensure_ascii=False, separators=(",", ":"),
                                                 default=str)
    return metadata


def as_rgb_image(src: object, name: str = "image") -> Tensor:
    """One RGB image 1×3×H×W (float32, CPU, detached) from a tensor, array, PIL image or path.

    Tensors may be H×W, 1×H×W or N×1×H×W grayscale (replicated to RGB, as
    :func:`artlab.images.load_image` does for grayscale files) or 3×H×W / 1×3×H×W RGB;
    everything else goes through :func:`artlab.images.load_image`. ``name`` is used in
    error messages (e.g. ``"frames[3]"``). A batch of several images is refused.
    """
    if isinstance(src, Tensor):
        t = src
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3 and t.shape[0] == 1:
            t = t[None]
        if t.ndim == 4 and t.shape[1] == 1:  # grayscale: replicate to RGB, as load_image does for files
            t = t.expand(-1, 3, -1, -1)
        t = ensure_image_batch(t, name)
        if t.shape[0] != 1:
            raise ValueError(f"{name} must be one image (1×3×H×W), got a batch of {t.shape[0]}")
        return t.detach().float().cpu().contiguous()
    return load_image(src)  # type: ignore[arg-type]


def thumbnail(images: Tensor, max_side: int = 128) -> Tensor:
    """Downscale a batch so its longer side is at most ``max_side`` px (antialiased; never upscales).

    Why: cheap previews for figures and widgets. Aspect ratio is kept (each side ≥ 1 px);
    images already small enough are returned unchanged (as a copy).
    """
    batch = ensure_image_batch(images)
    max_side = _positive_int(max_side, "max_side")
    height, width = batch.shape[-2:]
    if max(height, width) <= max_side or batch.shape[0] == 0:
        return batch.clamp(0, 1)
    return _resize(batch.clamp(0, 1), _long_side_size(height, width, max_side))


def to_png_bytes(images: Tensor, *, nrow: int | None = None) -> bytes:
    """Encode image(s) as PNG bytes (a grid if N > 1, ``nrow`` as in :func:`save_image`).

    Why: ipywidgets.Image and HTML want encoded bytes, not tensors.
    """
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8_hwc(_one_picture(images, nrow))).save(buffer, format="PNG")
    return buffer.getvalue()


def to_data_url(images: Tensor, *, nrow: int | None = None) -> str:
    """Image(s) as a ``data:image/png;base64,...`` URL, for ``<img src=...>`` in HTML and widgets."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(images, nrow=nrow)).decode("ascii")
