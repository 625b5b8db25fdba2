"""Tests for artlab.paint: the classic painterly filters and the style registry."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch
from skimage import color, data, filters, segmentation, transform

from artlab import paint as P
from artlab.images import from_numpy_hwc, to_numpy_hwc


def _photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    img = getattr(data, name)()
    return from_numpy_hwc(transform.resize(img, size, anti_aliasing=True))


@pytest.fixture(scope="module")
def astro() -> torch.Tensor:
    return _photo("astronaut", (64, 64))


@pytest.fixture(scope="module")
def astro96() -> torch.Tensor:
    return _photo("astronaut", (96, 96))


@pytest.fixture(scope="module")
def pair() -> torch.Tensor:
    return torch.cat([_photo("astronaut", (48, 64)), _photo("coffee", (48, 64))])


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def _n_colors(img: torch.Tensor) -> int:
    """Distinct RGB colours of one 1×3×H×W or 3×H×W image."""
    return len(torch.unique(img.reshape(3, -1).T, dim=0))


# Small-image parameters for each filter; the bool says whether the filter is random.
FILTERS: dict[str, tuple[Callable[..., torch.Tensor], dict, bool]] = {
    "kmeans": (P.kmeans_quantize, {"n_colors": 6}, True),
    "slic": (P.slic_mosaic, {"n_segments": 40, "outline": True}, False),
    "pointillism": (P.pointillism, {"dot_radius": 2}, True),
    "brush": (P.brush_strokes, {"brush_sizes": (6, 3), "stroke_length": 6}, True),
    "woodblock": (P.woodblock, {"n_colors": 5, "edge_sigma": 1.5}, True),
}


# --------------------------------------------------------------------- common contract


@pytest.mark.parametrize("name", list(FILTERS))
def test_shape_dtype_range_preserved(name: str, pair: torch.Tensor) -> None:
    fn, kw, _ = FILTERS[name]
    out = fn(pair, **kw)
    assert out.shape == pair.shape  # non-square 48×64 on purpose
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, pair)


@pytest.mark.parametrize("name", list(FILTERS))
def test_batch_equals_per_image(name: str, pair: torch.Tensor) -> None:
    fn, kw, _ = FILTERS[name]
    batch = fn(pair, seed=3, **kw)
    singles = torch.cat([fn(pair[i : i + 1], seed=3, **kw) for i in range(2)])
    assert torch.equal(batch, singles)


@pytest.mark.parametrize("name", list(FILTERS))
def test_deterministic_for_seed(name: str, astro: torch.Tensor) -> None:
    fn, kw, random = FILTERS[name]
    a, b = fn(astro, seed=1, **kw), fn(astro, seed=1, **kw)
    assert torch.equal(a, b)
    if random:
        assert not torch.equal(a, fn(astro, seed=2, **kw))


@pytest.mark.parametrize("name", list(FILTERS))
def test_input_validation(name: str, astro: torch.Tensor) -> None:
    fn, kw, _ = FILTERS[name]
    with pytest.raises(ValueError, match="floating point"):
        fn((astro * 255).to(torch.uint8), **kw)
    with pytest.raises(ValueError, match="N×3×H×W"):
        fn(astro.permute(0, 2, 3, 1).contiguous(), **kw)  # N×H×W×3 layout
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(astro * 2 - 1, **kw)
    with pytest.raises(ValueError, match="seed"):
        fn(astro, seed=-1, **kw)


def test_single_image_and_empty_batch(astro: torch.Tensor) -> None:
    out = P.kmeans_quantize(astro[0], n_colors=4)
    assert out.shape == (1, 3, 64, 64)
    empty = astro[:0]
    assert P.pointillism(empty).shape == empty.shape


# --------------------------------------------------------------------- kmeans


def test_kmeans_palette_size_and_error_decreases(astro: torch.Tensor) -> None:
    errors = []
    for k in (2, 4, 8, 16):
        out = P.kmeans_quantize(astro, n_colors=k)
        assert _n_colors(out[0]) <= k
        errors.append(_mse(out, astro))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]


def test_kmeans_flat_image_keeps_its_colour() -> None:
    flat = torch.full((1, 3, 16, 16), 0.25)
    flat[:, 0] = 0.7
    out = P.kmeans_quantize(flat, n_colors=8)  # more colours asked than exist
    assert torch.allclose(out, flat, atol=1e-6)


# --------------------------------------------------------------------- slic


def test_slic_is_piecewise_constant(astro: torch.Tensor) -> None:
    out = P.slic_mosaic(astro, n_segments=50, compactness=10.0)
    labels = segmentation.slic(
        to_numpy_hwc(astro)[0], n_segments=50, compactness=10.0, start_label=1, channel_axis=-1
    )
    n_seg = len(np.unique(labels))
    n_out = _n_colors(out[0])
    assert 0.8 * n_seg <= n_out <= n_seg
    assert n_out < _n_colors(astro[0]) / 20
    # each segment is one flat colour
    arr = to_numpy_hwc(out)[0]
    for lab in np.unique(labels)[:10]:
        assert np.ptp(arr[labels == lab], axis=0).max() == 0.0


def test_slic_outline_darkens_boundaries(astro: torch.Tensor) -> None:
    plain = P.slic_mosaic(astro, n_segments=50)
    lined = P.slic_mosaic(astro, n_segments=50, outline=True, outline_darkness=0.5)
    changed = (plain != lined).any(dim=1)
    assert 0.02 < float(changed.float().mean()) < 0.5  # thin lines, not whole tiles
    assert bool((lined <= plain + 1e-6).all())


# --------------------------------------------------------------------- pointillism


def test_pointillism_background_shows_at_low_density(astro: torch.Tensor) -> None:
    bg = (0.0, 0.0, 1.0)
    sparse = P.pointillism(astro, dot_radius=2, density=0.1, background=bg)
    dense = P.pointillism(astro, dot_radius=2, density=1.0, background=bg)

    def bg_fraction(img: torch.Tensor) -> float:
        return float((img[0] == torch.tensor(bg)[:, None, None]).all(dim=0).float().mean())

    assert bg_fraction(sparse) > 0.3
    assert bg_fraction(dense) < 0.2 < bg_fraction(sparse)


def test_pointillism_dots_carry_image_colour(astro96: torch.Tensor) -> None:
    out = to_numpy_hwc(P.pointillism(astro96, dot_radius=2, saturation=1.0, color_jitter=0.0))[0]
    src = to_numpy_hwc(astro96)[0]
    painted = (out != 1.0).any(axis=2)  # not the white canvas
    assert painted.mean() > 0.7
    # locally averaged colours follow the image (dots sample colours from it)
    blur = filters.gaussian(out, sigma=2, channel_axis=-1)
    ref = filters.gaussian(src, sigma=2, channel_axis=-1)
    r = np.corrcoef(blur.ravel(), ref.ravel())[0, 1]
    assert r > 0.8, r


# --------------------------------------------------------------------- brush strokes


def test_brush_approximates_image_and_finer_is_closer(astro96: torch.Tensor) -> None:
    flat = astro96.mean(dim=(2, 3), keepdim=True).expand_as(astro96)
    coarse = P.brush_strokes(astro96, brush_sizes=(8,))
    fine = P.brush_strokes(astro96, brush_sizes=(8, 4, 2))
    e_flat, e_coarse, e_fine = _mse(flat, astro96), _mse(coarse, astro96), _mse(fine, astro96)
    assert e_fine < e_coarse < e_flat, (e_fine, e_coarse, e_flat)
    assert e_fine < 0.4 * e_flat
    # order of brush_sizes does not matter: always painted coarse to fine
    assert torch.equal(P.brush_strokes(astro96, brush_sizes=[2, 8, 4]), fine)


def test_brush_strokes_are_strokes_not_copies(astro: torch.Tensor) -> None:
    out = P.brush_strokes(astro, brush_sizes=(6, 3))
    assert _n_colors(out[0]) < 0.6 * _n_colors(astro[0])


# --------------------------------------------------------------------- woodblock


def test_woodblock_flat_colours_and_ink_on_edges(astro96: torch.Tensor) -> None:
    out = P.woodblock(astro96, n_colors=5, edge_sigma=1.5, edge_width=2)
    arr = to_numpy_hwc(out)[0]
    assert _n_colors(out[0]) <= 5 + 1  # palette + ink
    ink = np.all(np.abs(arr - np.array([0.07, 0.06, 0.05])) < 2e-3, axis=2)
    assert 0.01 < ink.mean() < 0.4
    grad = filters.sobel(color.rgb2gray(to_numpy_hwc(astro96)[0]))
    assert grad[ink].mean() > 2.0 * grad[~ink].mean()
    no_ink = P.woodblock(astro96, n_colors=5, edge_width=0)
    assert _n_colors(no_ink[0]) <= 5


def test_woodblock_flat_image_has_no_ink() -> None:
    flat = torch.full((1, 3, 32, 32), 0.6)
    assert torch.allclose(P.woodblock(flat), flat, atol=1e-6)


# --------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda x: P.kmeans_quantize(x, n_colors=0), "n_colors"),
        (lambda x: P.kmeans_quantize(x, n_colors=2.5), "n_colors"),
        (lambda x: P.slic_mosaic(x, n_segments=0), "n_segments"),
        (lambda x: P.slic_mosaic(x, compactness=0.0), "compactness"),
        (lambda x: P.pointillism(x, dot_radius=-1), "dot_radius"),
        (lambda x: P.pointillism(x, density=0.0), "density"),
        (lambda x: P.pointillism(x, background=(1.0, 1.0)), "background"),
        (lambda x: P.pointillism(x, background=(2.0, 0.0, 0.0)), "background"),
        (lambda x: P.brush_strokes(x, brush_sizes=()), "brush_sizes"),
        (lambda x: P.brush_strokes(x, brush_sizes=(4, 0)), "brush_sizes"),
        (lambda x: P.brush_strokes(x, stroke_length=-1), "stroke_length"),
        (lambda x: P.brush_strokes(x, stroke_length=4, min_stroke_length=5), "min_stroke_length"),
        (lambda x: P.woodblock(x, n_colors=0), "n_colors"),
        (lambda x: P.woodblock(x, edge_sigma=-1.0), "edge_sigma"),
        (lambda x: P.woodblock(x, edge_width=-2), "edge_width"),
    ],
)
def test_bad_parameters_raise(call: Callable, param: str, astro: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=rf"{param} must be .*(\[|\(|>)"):
        call(astro)


def test_error_message_names_valid_range(astro: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"n_colors must be an integer \[1, 256\], got 0"):
        P.kmeans_quantize(astro, n_colors=0)
    with pytest.raises(ValueError, match=r"dot_radius must be an integer \[1, 64\], got -3"):
        P.pointillism(astro, dot_radius=-3)


# --------------------------------------------------------------------- registry


def test_registry_names_and_descriptions() -> None:
    names = {"kmeans", "slic", "pointillism", "brush", "woodblock"}
    assert set(P.STYLES) == names
    assert set(P.STYLE_DESCRIPTIONS) == names
    assert all(isinstance(d, str) and d for d in P.STYLE_DESCRIPTIONS.values())


@pytest.mark.parametrize("style", sorted(P.STYLES))
def test_paint_dispatches(style: str, astro: torch.Tensor) -> None:
    out = P.paint(astro, style, seed=4)
    assert out.shape == astro.shape and out.dtype == torch.float32
    assert torch.equal(out, P.STYLES[style](astro, 4))
    assert torch.equal(out, P.paint(astro, style, seed=4))


def test_paint_unknown_style_lists_valid_names(astro: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown style 'cubism'") as info:
        P.paint(astro, "cubism")
    for name in P.STYLES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="floating point"):
        P.paint((astro * 255).to(torch.uint8), "kmeans")
