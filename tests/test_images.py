"""Tests for artlab.images: loading anything into N×3×H×W float32 in [0, 1], and back out.

Every test image is generated here (in tmp_path); the last few tests also read real
paintings and photos from ../shared/data and skip when that folder is absent.
"""

from __future__ import annotations

import base64
import io
import pickle
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import hostile_files as hf
from artlab.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    ensure_image_batch,
    from_numpy_hwc,
    from_pil,
    image_grid,
    load_image,
    load_images,
    save_image,
    thumbnail,
    to_data_url,
    to_numpy_hwc,
    to_pil,
    to_png_bytes,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def noise_rgb(height: int = 96, width: int = 128, seed: int = 0) -> Image.Image:
    """Random RGB noise: compresses badly, so a file cut in half really lacks pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def write(img: Image.Image, path: Path, **options) -> Path:
    img.save(path, **options)
    return path


def assert_image(t: torch.Tensor, height: int, width: int, batch: int = 1) -> None:
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (batch, 3, height, width)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def assert_load_error(excinfo: pytest.ExceptionInfo, path: Path, reason_part: str) -> None:
    err = excinfo.value
    assert type(err) is ImageLoadError
    assert isinstance(err, ValueError)
    assert err.path == str(path)
    assert reason_part in err.reason
    message = str(err)
    assert message.startswith(f"cannot load image '{path}': ")
    assert reason_part in message


def png_header_claiming(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims width×height but holds almost no data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------
# bad files: one test per way a file can be unusable
# ----------------------------------------------------------------------------------------


def test_missing_file_names_file_and_reason(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_load_error(excinfo, path, "no such file")


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "a_folder.png"
    folder.mkdir()
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(str(folder))
    assert_load_error(excinfo, folder, "is a directory")


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_load_error(excinfo, path, "empty file")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"  # the extension must not fool the loader
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_load_error(excinfo, path, "not a recognised image format")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_file_raises_instead_of_padding(tmp_path, fmt, suffix):
    whole = tmp_path / f"whole{suffix}"
    noise_rgb().save(whole, format=fmt, quality=90)
    assert load_image(whole).shape == (1, 3, 96, 128)  # control: the intact file loads
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(cut)
    assert_load_error(excinfo, cut, "truncated")


def test_over_max_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = write(noise_rgb(200, 200), tmp_path / "big.png")
    decodes = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self, *args, **kwargs):
        decodes.append(self.size)
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    assert load_image(path, max_pixels=40_000).shape == (1, 3, 200, 200)  # at the limit: fine
    assert decodes and set(decodes) == {(200, 200)}  # the spy does see decodes

    decodes.clear()
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path, max_pixels=1000)
    assert_load_error(excinfo, path, "40,000 pixels exceeds the limit of 1,000")
    assert "max_pixels=1000" in str(excinfo.value)
    assert excinfo.value.hint == "pass a larger max_pixels if you trust this file"
    assert str(excinfo.value).endswith(". Pass a larger max_pixels if you trust this file")
    assert decodes == []  # refused from the header alone


def test_png_header_claiming_huge_size_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_claiming(100_000, 100_000))
    start = time.perf_counter()
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert time.perf_counter() - start < 1.0
    assert_load_error(excinfo, path, "10,000,000,000 pixels exceeds the limit")
    assert f"max_pixels={DEFAULT_MAX_PIXELS}" in str(excinfo.value)


def test_max_pixels_is_the_authority_and_pil_globals_are_restored(tmp_path, monkeypatch):
    # PIL's own limit is process-wide; artlab must neither obey a stricter one set elsewhere
    # nor leave its own changes behind.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = write(noise_rgb(50, 50), tmp_path / "ok.png")
    assert load_image(path).shape == (1, 3, 50, 50)  # 2,500 px > 2×100, but under max_pixels
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "missing.png")
    assert Image.MAX_IMAGE_PIXELS == 100
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_image_load_error_fields_and_pickling():
    err = ImageLoadError("a/b.png", "empty file (0 bytes)", "re-create it")
    assert str(err) == "cannot load image 'a/b.png': empty file (0 bytes). Re-create it"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, copy.hint, str(copy)) == (err.path, err.reason, err.hint, str(err))
    memory = ImageLoadError(None, "bad shape", source="a numpy array")
    assert memory.path is None and str(memory) == "cannot load image from a numpy array: bad shape"


# ----------------------------------------------------------------------------------------
# PIL modes
# ----------------------------------------------------------------------------------------


def _palette_image(transparent: bool) -> Image.Image:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putpixel((0, 0), 1)  # red
    img.putpixel((1, 0), 2)  # green, or transparent
    if transparent:
        img.info["transparency"] = 2
    return img


def _image_from(mode: str, pixels: list) -> Image.Image:
    img = Image.new(mode, (len(pixels), 1))
    for x, value in enumerate(pixels):
        img.putpixel((x, 0), value)
    return img


# mode -> (2×1 image, expected RGB of pixel 0, expected RGB of pixel 1, file format, tolerance)
MODE_CASES = {
    "1": (lambda: _image_from("1", [1, 0]), (1, 1, 1), (0, 0, 0), "PNG", 1e-6),
    "L": (lambda: _image_from("L", [200, 0]), (200 / 255,) * 3, (0, 0, 0), "PNG", 1e-6),
    "LA": (lambda: _image_from("LA", [(100, 255), (100, 0)]), (100 / 255,) * 3, (1, 1, 1), "PNG", 1e-6),
    "P": (lambda: _palette_image(False), (1, 0, 0), (0, 1, 0), "PNG", 1e-6),
    "P+transparency": (lambda: _palette_image(True), (1, 0, 0), (1, 1, 1), "PNG", 1e-6),
    "RGB": (
        lambda: _image_from("RGB", [(10, 20, 30), (255, 0, 0)]),
        (10 / 255, 20 / 255, 30 / 255),
        (1, 0, 0),
        "PNG",
        1e-6,
    ),
    "RGBA": (
        lambda: _image_from("RGBA", [(10, 20, 30, 255), (10, 20, 30, 0)]),
        (10 / 255, 20 / 255, 30 / 255),
        (1, 1, 1),
        "PNG",
        1e-6,
    ),
    "CMYK": (lambda: _image_from("CMYK", [(255, 0, 0, 0), (0, 0, 0, 0)]), (0, 1, 1), (1, 1, 1), "TIFF", 1e-6),
    "YCbCr": (lambda: _image_from("YCbCr", [(255, 128, 128), (0, 128, 128)]), (1, 1, 1), (0, 0, 0), "TIFF", 2 / 255),
    "I;16": (
        lambda: Image.fromarray(np.array([[65535, 32768]], dtype=np.uint16)),
        (1, 1, 1),
        (32768 / 65535,) * 3,
        "PNG",
        1e-6,
    ),
    "I;16B": (lambda: _image_from("I;16B", [65535, 1000]), (1, 1, 1), (1000 / 65535,) * 3, "TIFF", 1e-6),
    "I": (lambda: _image_from("I", [65535, 1000]), (1, 1, 1), (1000 / 65535,) * 3, "TIFF", 1e-6),
    "F": (lambda: _image_from("F", [0.25, 1.0]), (0.25,) * 3, (1, 1, 1), "TIFF", 1e-6),
}


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_pil_mode_loads_with_known_pixels(tmp_path, case, via):
    build, first, second, fmt, tol = MODE_CASES[case]
    img = build()
    if via == "file":
        path = tmp_path / f"mode.{fmt.lower()}"
        img.save(path, format=fmt)
        with Image.open(path) as reopened:
            assert reopened.mode == img.mode  # the file really holds this mode
        src = path
    else:
        src = img
    out = load_image(src)
    assert_image(out, 1, 2)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), first, atol=tol, rtol=0)
    np.testing.assert_allclose(out[0, :, 0, 1].numpy(), second, atol=tol, rtol=0)


@pytest.mark.parametrize("via", ["memory", "file"])
def test_transparent_pixel_is_exactly_white(tmp_path, via):
    img = _image_from("RGBA", [(10, 20, 30, 0), (0, 0, 0, 0)])
    if via == "file":
        img = write(img, tmp_path / "transparent.png")
    out = load_image(img)
    assert torch.equal(out, torch.ones(1, 3, 1, 2))


def test_background_colour_is_used_for_transparency():
    img = _image_from("RGBA", [(255, 255, 255, 0), (200, 0, 0, 128)])
    out = load_image(img, background=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), (0, 0, 1), atol=0)
    a = 128 / 255
    np.testing.assert_allclose(out[0, :, 0, 1].numpy(), (200 / 255 * a, 0, 1 - a), atol=1e-6)
    with pytest.raises(ValueError, match="background"):
        load_image(img, background=(0, 0, 2))


@pytest.mark.parametrize(
    "mode, values",
    [("F", [-1.0, 3.0, 1.0]), ("I", [-100, 300_000, 149_950])],
)
def test_out_of_range_float_and_int_images_are_min_max_normalised(mode, values):
    out = load_image(_image_from(mode, values))
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [0.0, 1.0, 0.5], atol=1e-6)


def test_non_finite_float_image_is_refused():
    with pytest.raises(ImageLoadError, match="NaN or infinite"):
        load_image(_image_from("F", [0.5, float("nan")]))


# ----------------------------------------------------------------------------------------
# EXIF, 16-bit precision, tiny images, sizes
# ----------------------------------------------------------------------------------------


def _marked_landscape() -> Image.Image:
    """40 wide × 20 high, white, with a red 8×8 block in the top-left corner."""
    array = np.full((20, 40, 3), 255, dtype=np.uint8)
    array[:8, :8] = (255, 0, 0)
    return Image.fromarray(array)


def _is_red(patch: torch.Tensor) -> bool:
    r, g, b = patch.mean(dim=(-2, -1)).tolist()
    return r > 0.8 and g < 0.25 and b < 0.25


@pytest.mark.parametrize(
    "orientation, red_corner",
    [(1, "top-left"), (6, "top-right"), (8, "bottom-left")],  # 6: turn 90° clockwise; 8: counter-clockwise
)
def test_exif_orientation_is_applied(tmp_path, orientation, red_corner):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"oriented_{orientation}.jpg"
    _marked_landscape().save(path, exif=exif, quality=95)

    for src in (path, Image.open(path)):
        out = load_image(src)
        height, width = (20, 40) if orientation == 1 else (40, 20)
        assert_image(out, height, width)
        corners = {
            "top-left": out[0, :, 1:6, 1:6],
            "top-right": out[0, :, 1:6, -6:-1],
            "bottom-left": out[0, :, -6:-1, 1:6],
            "bottom-right": out[0, :, -6:-1, -6:-1],
        }
        assert [name for name, patch in corners.items() if _is_red(patch)] == [red_corner]


def test_16_bit_png_keeps_its_precision(tmp_path):
    gradient = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)  # 4096 levels
    path = write(Image.fromarray(gradient), tmp_path / "gradient16.png")
    out = load_image(path)
    assert_image(out, 64, 64)
    assert len(torch.unique(out[0, 0])) > 256
    np.testing.assert_allclose(out[0, 0].numpy(), gradient / 65535.0, atol=1e-6)
    resized = load_image(path, size=(48, 48))
    assert len(torch.unique(resized[0, 0])) > 256  # the resize path is float, not 8-bit


def test_one_pixel_image(tmp_path):
    path = write(Image.new("RGB", (1, 1), (0, 128, 255)), tmp_path / "dot.png")
    out = load_image(path)
    assert_image(out, 1, 1)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), (0, 128 / 255, 1), atol=1e-6)
    assert_image(load_image(path, size=5), 5, 5)


def test_int_size_sets_the_longer_side_keeping_aspect():
    wide = Image.new("RGB", (40, 20), (9, 9, 9))
    assert_image(load_image(wide, size=10), 5, 10)
    assert_image(load_image(wide, size=80), 40, 80)  # upscaling allowed in load_image
    tall = Image.new("RGB", (30, 91))
    assert_image(load_image(tall, size=10), 10, 3)  # 30 * 10 / 91 = 3.3 -> 3
    sliver = Image.new("RGB", (1000, 1))
    assert_image(load_image(sliver, size=10), 1, 10)  # never below 1 px


def test_tuple_size_resizes_exactly_and_antialiases():
    stripes = np.zeros((64, 64), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: sampling without antialiasing gives 0 or 1
    out = load_image(stripes, size=(8, 4))
    assert_image(out, 8, 4)
    np.testing.assert_allclose(out.numpy(), 0.5, atol=0.02)


@pytest.mark.parametrize(
    "size, error",
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("256", TypeError), (True, TypeError),
     ((10, 20, 30), ValueError), ((10, 0), ValueError), ((10.0, 20), TypeError)],
)
def test_bad_size_values_are_refused(size, error):
    with pytest.raises(error, match="size"):
        load_image(np.zeros((4, 4), dtype=np.uint8), size=size)


def test_bad_max_pixels_and_source_types():
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(np.zeros((4, 4), dtype=np.uint8), max_pixels=0)
    with pytest.raises(TypeError, match="raw bytes"):
        load_image(b"\x89PNG...")
    with pytest.raises(TypeError, match="cannot read a list"):
        load_image([[0, 1], [1, 0]])


# ----------------------------------------------------------------------------------------
# numpy and tensor inputs
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((3, 5, 3), 51, dtype=np.uint8), 0.2),
        (np.full((3, 5), 13107, dtype=np.uint16), 0.2),
        (np.full((3, 5, 1), 0.2, dtype=np.float64), 0.2),
        (np.full((3, 5, 3), 0.2, dtype=np.float32), 0.2),
        (np.ones((3, 5), dtype=bool), 1.0),
    ],
    ids=["uint8-HxWx3", "uint16-HxW", "float64-HxWx1", "float32-HxWx3", "bool-HxW"],
)
def test_numpy_inputs(array, expected):
    out = load_image(array)
    assert_image(out, 3, 5)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_numpy_rgba_is_composited_on_the_background():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest fully transparent
    out = load_image(rgba)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), (1, 0, 0), atol=0)
    np.testing.assert_allclose(out[0, :, 1, 1].numpy(), (1, 1, 1), atol=0)


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.zeros((3, 8, 8), dtype=np.uint8), "looks channels-first"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "unsupported array shape"),
        (np.zeros((8,), dtype=np.uint8), "unsupported array shape"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "is a batch"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "no pixels"),
        (np.zeros((8, 8, 3), dtype=np.int64), "unsupported array dtype int64"),
        (np.full((8, 8, 3), 255.0), "must lie in [0, 1]"),
        (np.full((8, 8), np.nan, dtype=np.float32), "NaN or infinite"),
    ],
    ids=["CHW", "2-channels", "1-D", "batch", "empty", "int64", "float-0-255", "nan"],
)
def test_bad_numpy_inputs_get_clear_errors(array, reason):
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(array)
    assert excinfo.value.path is None
    assert reason in excinfo.value.reason
    assert str(excinfo.value).startswith("cannot load image from a numpy array: ")


def test_tensor_inputs_are_validated_and_copied():
    chw = torch.rand(3, 6, 4)
    out = load_image(chw)
    assert_image(out, 6, 4)
    assert torch.equal(out[0], chw)
    out[0, 0, 0, 0] = 0.123
    assert chw[0, 0, 0] != 0.123  # the caller's tensor is never aliased
    batch_of_one = torch.rand(1, 3, 6, 4, dtype=torch.float64)
    assert_image(load_image(batch_of_one, size=3), 3, 2)


@pytest.mark.parametrize(
    "tensor, reason",
    [
        (torch.rand(2, 3, 4, 4), "holds 2 images"),
        (torch.rand(4, 5, 5), "not an RGB image"),
        (torch.rand(5, 5), "not an RGB image"),
        (torch.randint(0, 255, (3, 4, 4), dtype=torch.uint8), "floating point"),
        (torch.full((3, 4, 4), 2.0), "[0, 1]"),
    ],
    ids=["batch", "4-channels", "2-D", "uint8", "out-of-range"],
)
def test_bad_tensor_inputs_get_clear_errors(tensor, reason):
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(tensor)
    assert reason in excinfo.value.reason
    assert "a torch.Tensor" in str(excinfo.value)


# ----------------------------------------------------------------------------------------
# load_images
# ----------------------------------------------------------------------------------------


def _three_bands(width: int = 60, height: int = 20) -> np.ndarray:
    """Red | green | blue vertical thirds."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    third = width // 3
    array[:, :third, 0] = 255
    array[:, third : 2 * third, 1] = 255
    array[:, 2 * third :, 2] = 255
    return array


def test_load_images_int_scales_shorter_side_then_centre_crops(tmp_path):
    path = write(Image.fromarray(_three_bands()), tmp_path / "bands.png")
    tall = np.zeros((50, 10), dtype=np.uint8)
    batch = load_images([path, Image.new("L", (7, 7), 255), tall], 10)
    assert_image(batch, 10, 10, batch=3)
    # 60×20 -> 30×10, centre 10×10 crop = the middle (green) third, undistorted
    np.testing.assert_allclose(batch[0, :, :, 1:-1].mean(dim=(1, 2)).numpy(), (0, 1, 0), atol=0.02)
    np.testing.assert_allclose(batch[1].numpy(), 1.0, atol=1e-6)


def test_load_images_tuple_resizes_exactly(tmp_path):
    path = write(Image.fromarray(_three_bands()), tmp_path / "bands.png")
    batch = load_images([path, str(path)], (12, 30))
    assert_image(batch, 12, 30, batch=2)
    assert _is_red(batch[0, :, :, :8]) and not _is_red(batch[0, :, :, 12:18])  # all three bands kept


def test_load_images_errors(tmp_path):
    with pytest.raises(ValueError, match="empty list"):
        load_images([], 32)
    with pytest.raises(TypeError, match="single str"):
        load_images(str(tmp_path / "x.png"), 32)
    with pytest.raises(TypeError, match="size is required"):
        load_images([np.zeros((4, 4), dtype=np.uint8)], None)
    good = write(Image.new("RGB", (4, 4)), tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    with pytest.raises(ImageLoadError) as excinfo:
        load_images([good, bad], 8)
    assert_load_error(excinfo, bad, "empty file")
    assert "item 1 of the 2" in "".join(getattr(excinfo.value, "__notes__", ["item 1 of the 2"]))


# ----------------------------------------------------------------------------------------
# memory bounded by the size asked for, not by what a file claims (tests/hostile_files.py)
# ----------------------------------------------------------------------------------------


def test_load_images_keeps_memory_bounded_for_extreme_aspect_ratios(tmp_path):
    """A 1×100000 strip at 224 px used to be enlarged to 224×22,400,000 px (60 GB) to crop 224×224 of it."""
    wide = hf.solid_png(tmp_path / "wide.png", 100_000, 1, (200, 20, 20))
    tall = hf.solid_png(tmp_path / "tall.png", 1, 100_000, (20, 200, 20))
    assert wide.stat().st_size < 1000
    with hf.address_space_limit(512 << 20):
        batch = load_images([wide, tall, str(wide)], 224)
        single = load_image(wide, 224)  # longer side 224: a 1×224 strip, nothing to bound
    assert_image(batch, 224, 224, batch=3)
    np.testing.assert_allclose(batch[0].mean(dim=(1, 2)).numpy(), (200 / 255, 20 / 255, 20 / 255), atol=1e-5)
    np.testing.assert_allclose(batch[1].mean(dim=(1, 2)).numpy(), (20 / 255, 200 / 255, 20 / 255), atol=1e-5)
    assert tuple(single.shape[-2:]) == (1, 224)
    # the same centre band in memory (tensor input) gives the same result as from the file
    from_tensor = load_images([load_image(wide)], 224)
    torch.testing.assert_close(from_tensor[0], batch[0])
    # an ordinary elongated image still shows its centre, undistorted
    bands = np.zeros((10, 90, 3), dtype=np.uint8)
    bands[:, 40:50] = 255
    crop = load_images([bands], 10)[0]
    assert float(crop.mean()) > 0.9


@pytest.mark.slow  # ~3 s: writes and decodes a 12000×12000 PNG
def test_a_large_png_is_decoded_at_reduced_size_when_a_small_size_is_asked_for(tmp_path):
    """A 0.4 MB 12000×12000 PNG cost ~4 GB (float32 copies of 144 MP) and 8 s per image before."""
    big = hf.solid_png(tmp_path / "big.png", 12_000, 12_000, (40, 90, 200))
    assert big.stat().st_size < 1_000_000
    start = time.perf_counter()
    with hf.address_space_limit(900 << 20):  # the 8-bit decode (432 MB) fits, one float32 copy (1.7 GB) does not
        one = load_image(big, 64)
        batch = load_images([big], 32)
        exact = load_image(big, (48, 40))
    elapsed = time.perf_counter() - start
    assert tuple(one.shape) == (1, 3, 64, 64) and tuple(batch.shape) == (1, 3, 32, 32)
    assert tuple(exact.shape) == (1, 3, 48, 40)
    for out in (one, batch, exact):
        np.testing.assert_allclose(out.mean(dim=(0, 2, 3)).numpy(), (40 / 255, 90 / 255, 200 / 255), atol=1e-5)
    assert elapsed < 60  # measured ~3 s per load on the shared 2-core machine (it was 8 s and 4 GB)


def test_a_large_jpeg_is_drafted_and_matches_the_exact_path(tmp_path, monkeypatch):
    """JPEGs over 16.8 MP decode at 1/2–1/8 scale (libjpeg) when a small size is asked for; EXIF still applies."""
    from PIL import JpegImagePlugin

    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
    picture = Image.fromarray(small).resize((4800, 3600), Image.Resampling.BICUBIC)  # smooth: scaling is fair
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90° clockwise)
    path = write(picture, tmp_path / "big.jpg", quality=92, exif=exif)
    del picture
    drafts = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    reduced = load_image(path, (80, 60))
    assert drafts and max(drafts[0]) <= 4800 // 2  # decoded at 1/2 scale or less
    full = load_image(path)  # 17 MP: decoded whole (no size asked), 207 MB as float32
    assert tuple(full.shape[-2:]) == (4800, 3600)  # portrait after the EXIF rotation
    exact = torch.nn.functional.interpolate(full, size=(80, 60), mode="bilinear", antialias=True)
    del full
    assert tuple(reduced.shape[-2:]) == (80, 60)
    assert float((reduced - exact).abs().mean()) < 0.01


# ----------------------------------------------------------------------------------------
# output: to_pil, save_image, image_grid, thumbnail, PNG bytes
# ----------------------------------------------------------------------------------------


def test_to_pil_single_versus_list_and_rounding():
    single = to_pil(torch.full((3, 4, 5), 0.2))
    assert isinstance(single, Image.Image) and single.size == (5, 4) and single.mode == "RGB"
    assert single.getpixel((0, 0)) == (51, 51, 51)
    assert isinstance(to_pil(torch.rand(1, 3, 4, 5)), Image.Image)
    many = to_pil(torch.rand(3, 3, 4, 5))
    assert isinstance(many, list) and len(many) == 3 and all(isinstance(p, Image.Image) for p in many)
    assert to_pil(torch.full((1, 3, 1, 1), 0.499 / 255)).getpixel((0, 0)) == (0, 0, 0)
    assert to_pil(torch.full((1, 3, 1, 1), 0.501 / 255)).getpixel((0, 0)) == (1, 1, 1)


def test_from_pil_matches_load_image():
    img = _image_from("LA", [(100, 255), (100, 0)])
    assert torch.equal(from_pil(img), load_image(img))
    with pytest.raises(TypeError, match="PIL"):
        from_pil(np.zeros((2, 2)))


def test_save_load_round_trip_png_is_exact_to_one_level(tmp_path):
    images = torch.rand(1, 3, 17, 23, generator=torch.Generator().manual_seed(0))
    path = save_image(images, tmp_path / "new" / "deeper" / "out.png")  # parents created
    assert path == tmp_path / "new" / "deeper" / "out.png" and path.is_file()
    back = load_image(path)
    assert_image(back, 17, 23)
    assert float((back - images).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.equal(back, torch.round(images * 255) / 255)
    assert [p.name for p in path.parent.iterdir()] == ["out.png"]  # no temporary file left


def test_save_image_formats_grids_and_bad_extensions(tmp_path):
    save_image(torch.rand(3, 8, 8), tmp_path / "photo.JPG")
    with Image.open(tmp_path / "photo.JPG") as img:
        assert img.format == "JPEG" and img.size == (8, 8)
    grid_path = save_image(torch.rand(4, 3, 8, 8), tmp_path / "grid.png", nrow=4)
    with Image.open(grid_path) as img:
        assert img.size == (4 * 10 + 2, 12)  # one row of 4, 2 px padding
    save_image(torch.rand(4, 3, 8, 8), tmp_path / "square.png")  # nrow=None: 2×2
    with Image.open(tmp_path / "square.png") as img:
        assert img.size == (22, 22)
    for name in ("no_extension", "weird.xyz"):
        with pytest.raises(ValueError, match="extension"):
            save_image(torch.rand(3, 8, 8), tmp_path / name)
    assert not (tmp_path / "weird.xyz").exists()


def test_image_grid_layout():
    images = torch.stack([torch.full((3, 3, 4), v) for v in (0.0, 0.2, 0.4, 0.6, 0.8)])
    grid = image_grid(images, nrow=2, padding=2, pad_value=1.0)
    assert_image(grid, 3 * (3 + 2) + 2, 2 * (4 + 2) + 2)
    assert torch.all(grid[0, :, 2:5, 2:6] == 0.0)  # first image, top-left
    assert torch.all(grid[0, :, 2:5, 8:12] == 0.2)  # second image, to its right
    assert torch.all(grid[0, :, 12:15, 2:6] == 0.8)  # fifth image, third row
    assert torch.all(grid[0, :, 12:15, 8:12] == 1.0)  # empty slot is padding
    assert torch.all(grid[0, :, :2] == 1.0)
    assert tuple(image_grid(images[:1], padding=0).shape) == (1, 3, 3, 4)
    with pytest.raises(ValueError, match="nrow"):
        image_grid(images, nrow=0)


def test_thumbnail_downscales_but_never_upscales():
    big = torch.rand(2, 3, 150, 300)
    small = thumbnail(big, max_side=100)
    assert_image(small, 50, 100, batch=2)
    tiny = torch.rand(1, 3, 20, 10)
    same = thumbnail(tiny, max_side=128)
    assert same.shape == tiny.shape and torch.equal(same, tiny)
    assert same.data_ptr() != tiny.data_ptr()


def test_png_bytes_and_data_url():
    data = to_png_bytes(torch.rand(1, 3, 5, 7))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (7, 5)
    url = to_data_url(torch.rand(2, 3, 5, 7))
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert img.size == (2 * (7 + 2) + 2, 5 + 4)  # a 1×2 grid with 2 px padding


# ----------------------------------------------------------------------------------------
# the convention checker and numpy helpers
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensor, error, message",
    [
        (torch.rand(1, 4, 8, 8), ValueError, "N×3×H×W"),
        (torch.rand(8, 8), ValueError, "N×3×H×W"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ValueError, "floating point"),
        (torch.full((1, 3, 8, 8), 1.5), ValueError, "must lie in"),
        (torch.full((1, 3, 8, 8), -0.5), ValueError, "ImageNet"),
        (torch.full((1, 3, 2, 2), float("nan")), ValueError, "NaN"),
        (np.zeros((1, 3, 8, 8)), TypeError, "torch.Tensor"),
    ],
    ids=["4-channels", "2-D", "uint8", "above-1", "below-0", "nan", "numpy"],
)
def test_ensure_image_batch_errors(tensor, error, message):
    with pytest.raises(error, match=message):
        ensure_image_batch(tensor)


def test_ensure_image_batch_accepts_and_normalises():
    single = ensure_image_batch(torch.rand(3, 4, 4, dtype=torch.float64))
    assert single.shape == (1, 3, 4, 4) and single.dtype == torch.float32
    assert ensure_image_batch(torch.full((1, 3, 2, 2), 1.0005)).shape == (1, 3, 2, 2)  # rounding slack


def test_numpy_hwc_round_trip():
    images = torch.rand(2, 3, 5, 6)
    array = to_numpy_hwc(images)
    assert array.shape == (2, 5, 6, 3) and array.dtype == np.float32
    assert torch.equal(from_numpy_hwc(array), images)


# ----------------------------------------------------------------------------------------
# real paintings and photos (../shared/data; skipped where absent)
# ----------------------------------------------------------------------------------------


def _shared_files(kind: str, limit: int) -> list[Path]:
    folder = SHARED_DATA / kind
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present (only developers' machines and CI have it)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        pytest.skip(f"no images under {folder}")
    return files[:: max(1, len(files) // limit)][:limit]


@pytest.mark.parametrize("kind", ["paintings", "photos"])
def test_real_files_load(kind):
    for path in _shared_files(kind, 4):
        with Image.open(path) as img:
            width, height = img.size
        out = load_image(path)
        assert out.dtype == torch.float32 and out.shape[:2] == (1, 3)
        assert set(out.shape[-2:]) == {height, width}  # EXIF may swap them, nothing else
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        assert float(out.std()) > 0.01  # a real picture, not a flat grey pad
        resized = load_image(path, size=64)
        assert max(resized.shape[-2:]) == 64


def test_real_files_batch():
    paths = _shared_files("paintings", 3) + _shared_files("photos", 2)
    batch = load_images(paths, 64)
    assert_image(batch, 64, 64, batch=len(paths))


# --------------------------------------------------------------------------- metadata: which network made a picture


def test_saved_png_and_jpeg_carry_the_metadata_for_any_reader(tmp_path):
    import json

    from artlab.images import read_image_metadata, result_metadata

    image = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    meta = result_metadata("efficientnet_lite0 · ImageNet", kind="style transfer",
                           settings={"size": 256, "steps": 60, "style_weight": 1e4})
    assert meta["artlab:model"] == "efficientnet_lite0 · ImageNet" and meta["Software"].startswith("artlab 0.")
    assert json.loads(meta["artlab:settings"]) == {"size": 256, "steps": 60, "style_weight": 1e4}
    png = save_image(image, tmp_path / "result.png", metadata=meta)
    with Image.open(png) as opened:  # PIL alone, as any viewer would
        assert opened.text == meta
    jpg = save_image(image, tmp_path / "result.jpg", metadata=meta)
    with Image.open(jpg) as opened:
        exif = opened.getexif()
        assert exif[0x010E] == "efficientnet_lite0 - ImageNet"  # ImageDescription: ASCII only
        assert exif[0x0131] == meta["Software"]
        comment = exif.get_ifd(0x8769)[0x9286]
        assert comment.startswith(b"ASCII\0\0\0") and json.loads(comment[8:]) == meta
    webp = save_image(image, tmp_path / "result.webp", metadata=meta)
    for path in (png, jpg, webp):
        assert read_image_metadata(path) == meta
    # the pixels are what they were without metadata
    plain = save_image(image, tmp_path / "plain.png")
    np.testing.assert_array_equal(load_image(plain).numpy(), load_image(png).numpy())
    assert read_image_metadata(plain) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png", "result.jpg", "result.png", "result.webp"]


def test_metadata_beyond_latin1_survives_in_png_and_jpeg(tmp_path):
    from artlab.images import read_image_metadata

    meta = {"artlab:model": "東京 net · 3×3 → ok", "note": "ünïcødé"}
    image = torch.rand(1, 3, 8, 8)
    for name in ("u.png", "u.jpg"):
        assert read_image_metadata(save_image(image, tmp_path / name, metadata=meta)) == meta


def test_bad_metadata_is_refused_before_anything_is_written(tmp_path):
    from artlab.images import result_metadata

    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\.bmp \(BMP\) files cannot carry.*save as \.png"):
        save_image(image, tmp_path / "sub" / "x.bmp", metadata={"artlab:model": "m"})
    with pytest.raises(TypeError, match=r"metadata\['steps'\] must be text.*str\(\)"):
        save_image(image, tmp_path / "sub" / "x.png", metadata={"steps": 3})
    with pytest.raises(ValueError, match="1-79 printable Latin-1"):
        save_image(image, tmp_path / "sub" / "x.png", metadata={"": "empty name"})
    with pytest.raises(ValueError, match="1-79 printable Latin-1"):
        save_image(image, tmp_path / "sub" / "x.png", metadata={"k" * 80: "too long"})
    with pytest.raises(ValueError, match="1-79 printable Latin-1"):
        save_image(image, tmp_path / "sub" / "x.png", metadata={"line\nbreak": "v"})
    with pytest.raises(TypeError, match="dict of"):
        save_image(image, tmp_path / "sub" / "x.png", metadata=["artlab:model"])
    with pytest.raises(ValueError, match="does not fit"):
        save_image(image, tmp_path / "sub" / "x.jpg", metadata={"big": "x" * 70_000})
    with pytest.raises(ValueError, match="model.label"):
        result_metadata("", kind="texture")
    assert not (tmp_path / "sub").exists()


def test_reading_metadata_of_what_is_not_an_image_says_so(tmp_path):
    from artlab.images import read_image_metadata

    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        read_image_metadata(tmp_path / "notes.png")
    with pytest.raises(ImageLoadError, match="no such file"):
        read_image_metadata(tmp_path / "missing.png")
    bmp = save_image(torch.rand(1, 3, 8, 8), tmp_path / "plain.bmp")
    assert read_image_metadata(bmp) == {}


def test_a_latent_walks_png_contact_sheet_carries_the_generator_label(tmp_path):
    from artlab.images import read_image_metadata
    from artlab.stylegan import collect, save_walk, tiny_generator, walk_z

    G = tiny_generator()
    frames = collect(walk_z(G, seeds=[0, 1], steps_per_segment=3, loop=False))
    sheet = save_walk(frames, tmp_path / "walk.png", label=G.label)
    saved = read_image_metadata(sheet)
    assert saved["artlab:model"] == G.label and saved["artlab:kind"] == "latent walk"
    assert load_image(sheet).shape[-1] > G.img_resolution  # every frame, side by side
    with pytest.raises(ValueError, match="keep no metadata"):
        save_walk(frames, tmp_path / "walk.gif", label=G.label)
    assert not (tmp_path / "walk.gif").exists()
