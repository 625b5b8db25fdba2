"""Feature maps as plotly tiles: the figures a widget shows them in, and the maps made ready for them.

A widget that compares feature maps lays them out as square heatmap tiles, one block per
image, and shows one channel large over the picture. Building those figures and preparing
the maps for them (shrunk for transport, upsampled for the overlay, given colour ranges under
a scale mode) is display work, the same for every such view; it lives here once, so a widget
is only its controls and its updates. Nothing here runs a network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import Tensor

from artlab.images import to_data_url

__all__ = ["HOVER", "SCALES", "colour_ranges", "overlay_figure", "shrink_map", "tile_grid", "upsample_map"]

#: the hover text of a map tile: position and value
HOVER = "x %{x}, y %{y}: %{z:.3g}<extra></extra>"
#: colour-scale modes of :func:`colour_ranges`
SCALES = ("map", "channel", "shared")


def shrink_map(fmap: Tensor, max_side: int) -> np.ndarray:
    """An H×W map shrunk (area average) so its longer side is at most ``max_side``, as float32 numpy.

    Display only: a tile is ~100 px on screen, and 256×256 maps for 32 tiles would make every
    update megabytes of JSON for no visible gain. Smaller maps are returned as they are.
    """
    fmap = fmap.detach().float().cpu()
    h, w = fmap.shape
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        fmap = F.adaptive_avg_pool2d(fmap[None, None], (max(1, round(h * scale)), max(1, round(w * scale))))[0, 0]
    return fmap.numpy().astype(np.float32)


def upsample_map(fmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    """An H×W map bilinearly resized to ``size`` (the picture it is laid over), as float32 numpy."""
    fmap = fmap.detach().float().cpu()
    return F.interpolate(fmap[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _span(*maps: np.ndarray) -> tuple[float, float]:
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    return lo, hi if hi > lo else lo + 1e-6  # a constant map still gets a valid range


def colour_ranges(maps: Sequence[Sequence[np.ndarray]], scale: str) -> list[list[tuple[float, float]]]:
    """(zmin, zmax) for each tile of ``maps`` (per image, its tiles; tile i of every image shows one channel).

    ``scale``: ``"map"``, each tile its own range; ``"channel"``, tile i shares one range across
    the images (a channel compared between them); ``"shared"``, one range for every tile.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    if scale == "map" or not maps or not maps[0]:
        return [[_span(m) for m in tiles] for tiles in maps]
    if scale == "channel":
        return [[_span(*column) for column in zip(*maps)] for _ in maps]
    whole = _span(*(m for tiles in maps for m in tiles))
    return [[whole] * len(tiles) for tiles in maps]


def _square_pixels(fig: go.Figure, traces: Sequence) -> None:
    """Each trace's y axis anchored to its x axis: a map keeps its aspect ratio."""
    for trace in traces:
        fig.layout[trace.yaxis.replace("y", "yaxis")].scaleanchor = trace.xaxis


def tile_grid(blocks: int, tiles: int, columns: int) -> tuple[go.Figure, list[int]]:
    """A figure of ``blocks`` side-by-side blocks (one per image) of ``tiles`` heatmap tiles each,
    ``columns`` tiles to a row, a narrow empty column between blocks.

    Trace ``b * tiles + t`` is tile t of block b (blank until its ``z`` is set). Returns the figure
    and, per trace, the index of the layout annotation that titles it.
    """
    rows = math.ceil(tiles / columns)
    fig = make_subplots(rows=rows, cols=blocks * (columns + 1) - 1,
                        specs=[(([{}] * columns + [None]) * blocks)[:-1] for _ in range(rows)],
                        column_widths=(([1] * columns + [0.3]) * blocks)[:-1], horizontal_spacing=0.01,
                        vertical_spacing=0.06, subplot_titles=[" "] * (blocks * rows * columns))
    cells = [(r, c) for r in range(rows) for c in range(columns)][:tiles]
    titles = []  # annotation i titles the i-th cell, row-major across all blocks
    for block in range(blocks):
        for r, c in cells:
            fig.add_heatmap(z=[[0.0]], colorscale="Viridis", showscale=False, zauto=False, zmin=0, zmax=1,
                            hovertemplate=HOVER, row=r + 1, col=c + 1 + block * (columns + 1))
            titles.append(r * blocks * columns + block * columns + c)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed", constrain="domain")
    _square_pixels(fig, fig.data)
    fig.update_layout(height=120 * rows + 90, margin={"t": 60, "b": 10, "l": 10, "r": 70},
                      title={"font": {"size": 13}}, plot_bgcolor="white")
    fig.update_annotations(font_size=10)
    return fig, titles


def overlay_figure(pictures: Sequence[Tensor], names: Sequence[str], *, opacity: float = 0.6) -> go.Figure:
    """One panel per picture (1×3×H×W): the picture, and over it a blank H×W heatmap at ``opacity``.

    Trace ``2 * i`` is picture i, trace ``2 * i + 1`` its map (set its ``z``, ``zmin``, ``zmax``); the
    last map carries the colour bar.
    """
    fig = make_subplots(rows=1, cols=len(pictures), subplot_titles=list(names), horizontal_spacing=0.08)
    for i, picture in enumerate(pictures):
        fig.add_image(source=to_data_url(picture), hoverinfo="skip", row=1, col=i + 1)
        fig.add_heatmap(z=np.zeros(tuple(picture.shape[-2:]), np.float32), colorscale="Viridis", opacity=opacity,
                        zauto=False, zmin=0, zmax=1, showscale=i == len(pictures) - 1, colorbar={"len": 0.9},
                        hovertemplate=HOVER, row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    _square_pixels(fig, fig.data[1::2])
    fig.update_layout(height=340, margin={"t": 60, "b": 10, "l": 10, "r": 10}, title={"font": {"size": 13}})
    return fig
