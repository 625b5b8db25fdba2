"""The plotly figure of :class:`~artlab.widgets.EmbeddingMap`, built once then changed in place, and its texts.

Built for 20,000 points: one WebGL scatter of the images, two overlay traces (the
clicked point's neighbours, the query itself) and a fixed pool of legend-only traces.
Every later change (colours, a new layout, the overlays) sets trace properties; no
trace is ever added, so the page never re-sends the points. The title, the hover
caption and the selection table are HTML made here too.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from artlab.embed.browse import MAX_COLOURS, Colouring

from .kit import RED, figure_widget
from .thumbnails import ThumbnailStore, short_name, thumbnail_grid_html

__all__ = ["HOW_TO_READ", "METHOD_TITLES", "NEIGHBOURS_HINT", "OTHER_COLOUR", "PALETTE", "PREVIEW_PLACEHOLDER",
           "colour_options", "colour_points", "column_words", "highlight", "hover_caption", "map_figure", "map_title",
           "method_options", "move_points", "neighbour_grid_html", "place_overlays", "table_html"]

METHOD_TITLES = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE", "given": "given coordinates"}
#: what the layout menu offers, in words first (the method's name in brackets, for those who know it)
METHOD_LABELS = {"umap": "by similarity (UMAP)", "pca": "main contrasts (PCA)", "tsne": "by similarity (t-SNE)",
                 "given": "given coordinates"}
#: The map's "how to read it", for curators: what a point, a distance, a colour and a cluster mean.
HOW_TO_READ = (
    "Each dot is one picture of the folder. A neural network trained to recognise objects in photographs "
    "has looked at every picture and described it by the shapes, textures and colours it responds to; "
    "pictures it describes alike sit close together. Clusters are groups it finds alike, whatever their "
    "artist or title; distances across the map are only rough, and the axes have no meaning. "
    "Colour the dots by a folder level or a column of your metadata to see whether your own categories "
    "form clusters. Hover a dot to see the picture, drag a box (or lasso) to list a group and export it, "
    "click a dot to see the pictures the network finds most like it.")
NEIGHBOURS_HINT = ("<b>Most alike</b> <span style=\"color:#555\">(click a dot: the pictures the network finds "
                   "closest to it, and how many of the others each is closer than)</span>")
#: the Hovered slot before a picture is there: a neutral box, never an empty image (a broken-image icon)
PREVIEW_PLACEHOLDER = ('<div class="artlab-preview-placeholder" style="width:{side};height:{side};'
                       'border:1px dashed #ccc;border-radius:4px;background:#fafafa"></div>')


def method_options(methods: Sequence[str]) -> list[tuple[str, str]]:
    """The layout menu: (words, method) pairs."""
    return [(METHOD_LABELS.get(m, m), m) for m in methods]


def column_words(column: str) -> str:
    """A metadata column as the page names it: ``folder_2`` reads "folder level 2", others as they are."""
    column = str(column)
    return f"folder level {column[7:]}" if column.startswith("folder_") and column[7:].isdigit() else column


def colour_options(columns: Sequence[str]) -> list[tuple[str, str]]:
    """The "colour by" menu: (words, column) pairs (:func:`column_words`)."""
    return [(column_words(c), c) for c in columns]
PALETTE = (  # plotly's Dark24, then Light24's first entries: distinguishable on white
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B",
    "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
    "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)
OTHER_COLOUR = "#b0b0b0"


def map_figure(hover: Sequence[str], dims: int, height: int, size: float) -> go.FigureWidget:
    """The empty map (points placed later by :func:`move_points`): ``hover`` is each point's hover text."""
    three_d = dims == 3
    kind = go.Scatter3d if three_d else go.Scattergl
    empty = {"x": [], "y": [], **({"z": []} if three_d else {})}
    # plotly marks every trace's points unselected on a box selection: keep the overlays opaque
    opaque = {} if three_d else {"unselected": {"marker": {"opacity": 1}}}
    traces = [
        kind(**empty, mode="markers", name="images", showlegend=False, text=np.asarray(hover, dtype=object),
             hovertemplate="%{text}<extra></extra>",
             marker={"size": size, "opacity": 0.85, "line": {"width": 0}},
             **({} if three_d else {"unselected": {"marker": {"opacity": 0.12}}})),
        # WebGL open symbols are stroked in the marker colour; 3-D has no open circles: a ring outline
        kind(**empty, mode="markers", name="neighbours", showlegend=False, hoverinfo="skip",
             marker={"size": size + 8, "line": {"width": 2, "color": "black"},
                     **({"color": "rgba(0,0,0,0)"} if three_d else {"color": "black", "symbol": "circle-open"})},
             **opaque),
        kind(**empty, mode="markers", name="query", showlegend=False, hoverinfo="skip",
             marker={"size": size + 12, "color": "black",
                     "symbol": "diamond" if three_d else "star", "line": {"width": 1, "color": "white"}},
             **opaque),
    ]
    # A fixed pool of legend-only traces: recolouring renames/recolours them in place.
    none = {"x": [None], "y": [None], **({"z": [None]} if three_d else {})}
    traces += [kind(**none, mode="markers", name=" ", visible=False, hoverinfo="skip",
                    marker={"size": 10, "color": OTHER_COLOUR}) for _ in range(MAX_COLOURS)]
    layout = {
        "height": height, "autosize": True, "dragmode": "orbit" if three_d else "select",
        "margin": {"t": 50, "b": 10, "l": 10, "r": 10}, "hovermode": "closest", "clickmode": "event",
        "legend": {"itemclick": False, "itemdoubleclick": False, "font": {"size": 11}},
        "title": {"font": {"size": 13}}, "plot_bgcolor": "white",
    }
    fig = figure_widget(go.Figure(data=traces, layout=layout))
    axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "title": ""}
    if three_d:
        fig.update_scenes(xaxis=axis, yaxis=axis, zaxis=axis)
    else:
        fig.update_xaxes(**axis)
        fig.update_yaxes(**axis)
    return fig


def _discrete_scale(colours: Sequence[str]) -> list[list]:
    """A step colorscale: integer code k (of len(colours)) maps exactly to colours[k]."""
    n = len(colours)
    scale = []
    for k, colour in enumerate(colours):
        scale += [[k / n, colour], [(k + 1) / n, colour]]
    return scale


def colour_points(fig: go.FigureWidget, colouring: Colouring) -> None:
    """Colour the points as ``colouring`` says: trace properties set in place (a colour bar or a legend)."""
    points = fig.data[0]
    with fig.batch_update():
        if colouring.numbers is not None:  # continuous: a colour bar
            numbers = pd.Series(colouring.numbers)
            points.marker.color = colouring.numbers
            points.marker.colorscale = "Viridis"
            points.marker.cmin, points.marker.cmax = float(numbers.min()), float(numbers.max())
            points.marker.showscale = True
            points.marker.colorbar = {"title": {"text": column_words(colouring.column)}, "thickness": 12}
            for trace in fig.data[3:]:
                trace.visible = False
            fig.layout.showlegend = False
            return
        n = len(colouring.names)
        colours = list(PALETTE[: n - 1]) + [OTHER_COLOUR] if colouring.lumped else list(PALETTE[:n])
        points.marker.color = colouring.codes
        points.marker.colorscale = _discrete_scale(colours)
        points.marker.cmin, points.marker.cmax = -0.5, len(colours) - 0.5
        points.marker.showscale = False
        for k, trace in enumerate(fig.data[3:]):
            trace.visible = k < n
            if k < n:
                trace.name = f"{colouring.names[k]} ({colouring.sizes[k]:,})"
                trace.marker.color = colours[k]
        fig.layout.showlegend = True
        fig.layout.legend.title = {"text": column_words(colouring.column)}


def move_points(fig: go.FigureWidget, xyz: np.ndarray, neighbours: Sequence[int], query: int | None) -> None:
    """Put the points at ``xyz`` (N×2 or N×3), and the overlays with them (:func:`place_overlays`)."""
    _place(fig.data[0], xyz)
    place_overlays(fig, xyz, neighbours, query)


def place_overlays(fig: go.FigureWidget, xyz: np.ndarray, neighbours: Sequence[int], query: int | None) -> None:
    """Ring the rows ``neighbours`` and star the row ``query`` (None: no query) at their places in ``xyz``."""
    _place(fig.data[1], xyz[np.asarray(list(neighbours), dtype=int)])
    _place(fig.data[2], xyz[np.asarray([] if query is None else [query], dtype=int)])


def highlight(fig: go.FigureWidget, chosen: np.ndarray, size: float) -> None:
    """Mark the points ``chosen`` as selected: plotly's ``selectedpoints`` in 2-D; 3-D scatters have none,
    so there the chosen points are drawn 2.5× larger (``size``: the normal marker size)."""
    points = fig.data[0]
    if points.type == "scatter3d":
        sizes = np.full(len(points.x), size, dtype=float)
        sizes[chosen] *= 2.5
        points.marker.size = sizes if len(chosen) else size
    else:
        points.selectedpoints = chosen if len(chosen) else None


def _place(trace, xyz: np.ndarray) -> None:
    trace.x, trace.y = xyz[:, 0], xyz[:, 1]
    if xyz.shape[1] == 3:
        trace.z = xyz[:, 2]


# ---------------------------------------------------------------------------------------------- texts
def map_title(name: str, n: int, shown: str, waiting_for: str | None, embeddings) -> str:
    """The figure's title: collection, size, the layout ``shown`` (and the one ``waiting_for``) and the network
    (in red for random weights); the layer and pooling are details, left to the page's details."""
    what = METHOD_TITLES.get(shown, shown) + (f" (until {METHOD_TITLES[waiting_for]} is ready)" if waiting_for else "")
    label = html.escape(embeddings.model_label)
    if not getattr(embeddings, "pretrained", False):
        label = f'<span style="color:{RED}">{label} — random weights</span>'
    return f"{html.escape(str(name))} · {n:,} images · {what} · {label}"


def neighbour_grid_html(store: ThumbnailStore, query: int, found: pd.DataFrame) -> str:
    """The clicked picture, then its neighbours (``found``: :func:`artlab.embed.nearest`'s table), each captioned
    with its rank and the share of the collection it is closer than (the centred similarity in its tooltip)."""
    captions = [f'<div style="white-space:normal" title="similarity {float(r["similarity"]):.2f} (0: as alike as '
                f'two pictures here are on average; 1: the same)">#{int(r["rank"])} · closer than '
                f'{float(r["closer_than"]):.0f}% of the others</div>{html.escape(short_name(r["path"]))}'
                for _, r in found.iterrows()]
    head = thumbnail_grid_html(store, [query], [f"<b>clicked</b><br>{html.escape(short_name(store.paths[query]))}"],
                               side=store.side)
    rest = thumbnail_grid_html(store, found["index"].astype(int).tolist() if len(found) else [], captions,
                               side=store.side)
    return (f'<div style="display:flex;gap:16px;align-items:flex-start">{head}'
            f'<div style="border-left:1px solid #ccc;padding-left:12px">{rest}</div></div>')


def hover_caption(row: pd.Series, missing: str | None = None) -> str:
    """A hovered image's caption: its short name, every non-empty metadata value, the full path; ``missing``
    says why there is no preview (None when there is one)."""
    lines = [f"<b>{html.escape(short_name(row['path']))}</b>"]
    lines += [f"{html.escape(column_words(c))}: {html.escape(str(v))}" for c, v in row.items()
              if c != "path" and pd.notna(v) and str(v) != ""]
    if missing:
        lines.append(f'<i style="color:#777">{missing}</i>')
    lines.append(f'<span style="color:#777;font-size:10px;word-break:break-all">{html.escape(str(row["path"]))}'
                 "</span>")
    return "<br>".join(lines)


def table_html(frame: pd.DataFrame, total: int, limit: int) -> str:
    """The first ``limit`` rows of a selection of ``total`` as a scrolling HTML table."""
    more = (f'<div style="color:#777;font-size:11px">first {limit:,} rows of {total:,}; '
            "the CSV has them all</div>" if total > limit else "")
    return (f'<div style="max-height:320px;overflow:auto;font-size:11px">'
            f'{frame.head(limit).to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}")}</div>{more}')
