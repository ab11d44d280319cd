"""PNG plots of Firedrake Functions on 2D meshes (matplotlib ``tripcolor``, Agg canvas).

:func:`plot_fields` draws a grid of panels, one row per sample and one column per field
(e.g. input | truth | prediction | error), each field coloured on the mesh's triangles.
The figure is drawn on its own Agg canvas, so no global matplotlib backend is touched
and no display is needed.

* degree-0 (DG0) scalar fields are drawn cell by cell (flat shading);
* every other field is interpolated into CG1 and drawn with Gouraud shading, so
  higher-degree fields lose their interior detail (as in :func:`~fe_operators.io.write_fields`);
* vector fields are drawn as their Euclidean magnitude ``|u|``.

Quadrilateral cells are split into two triangles.  3D meshes are not drawn
(:class:`~fe_operators.errors.UnsupportedSpaceError`); write a ``.vtu`` instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fe_operators.errors import SpaceMismatchError, UnsupportedSpaceError

if TYPE_CHECKING:  # pragma: no cover
    import firedrake
    import matplotlib.figure

__all__ = ["field_values", "fields_figure", "plot_fields"]

#: columns whose title starts with this word get a diverging, zero-centred colour map
_ERROR_WORDS = ("error", "err")
#: width a colour bar with its tick labels takes from a panel, and the space between rows
_COLORBAR_INCHES = 0.9
_ROW_PAD_INCHES = 0.35


def _vertex_triangles(mesh: "firedrake.MeshGeometry") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertex coordinates ``(n_v, 2)``, each cell's vertices, triangles ``(n_t, 3)`` and each triangle's cell."""
    cell = str(mesh.ufl_cell())
    if mesh.geometric_dimension != 2 or cell not in ("triangle", "quadrilateral"):
        raise UnsupportedSpaceError(f"plots need a 2D triangle or quadrilateral mesh, got a {cell} mesh in "
                                    f"{mesh.geometric_dimension}D; write a .vtu for ParaView instead")
    import firedrake as fd

    V1 = fd.VectorFunctionSpace(mesh, "CG", 1)
    X = mesh.coordinates
    if X.function_space().ufl_element() != V1.ufl_element():  # curved or periodic geometry
        X = fd.Function(V1).interpolate(fd.SpatialCoordinate(mesh))
    points = np.asarray(X.dat.data_ro, dtype=np.float64).reshape(-1, 2)
    cells = X.function_space().cell_node_map().values
    ids = np.arange(cells.shape[0])
    if cell == "triangle":
        return points, cells, cells, ids
    # Firedrake numbers quad vertices as a tensor product (0, 1, 3, 2 go round the cell)
    tris = np.concatenate([cells[:, [0, 1, 3]], cells[:, [0, 3, 2]]])
    return points, cells, tris, np.concatenate([ids, ids])


def field_values(f: "firedrake.Function", n_vertices: int, vertex_map: np.ndarray) -> tuple[np.ndarray, bool]:
    """Values of ``f`` for plotting: per cell (DG0) or per mesh vertex; vectors as magnitudes.

    Parameters
    ----------
    f
        A Function on a non-mixed space of the mesh.
    n_vertices
        Number of mesh vertices (rows of the coordinate array).
    vertex_map
        ``(n_cells, vertices per cell)`` vertex numbers of each cell (the coordinate
        space's cell-node map).

    Returns
    -------
    values : numpy.ndarray
        ``(n_cells,)`` when per cell, else ``(n_vertices,)``.
    per_cell : bool
    """
    import firedrake as fd

    V = f.function_space()
    if len(V) > 1:
        raise UnsupportedSpaceError("plots of Functions on mixed spaces are not supported; plot the subfunctions")
    shape = f.ufl_shape
    if V.ufl_element().embedded_superdegree == 0:
        values = np.asarray(f.dat.data_ro).reshape((-1, *shape))[V.cell_node_map().values[:, 0]]
        per_cell = True
    else:
        mesh = V.mesh()
        target = (fd.FunctionSpace(mesh, "CG", 1) if not shape else
                  fd.VectorFunctionSpace(mesh, "CG", 1, dim=shape[0]) if len(shape) == 1 else
                  fd.TensorFunctionSpace(mesh, "CG", 1, shape=shape))
        g = f if V.ufl_element() == target.ufl_element() else fd.Function(target).interpolate(f)
        data = np.asarray(g.dat.data_ro).reshape((-1, *shape))
        values = np.empty((n_vertices, *shape))
        values[vertex_map] = data[g.function_space().cell_node_map().values]
        per_cell = False
    if shape:
        values = np.sqrt((values.reshape(values.shape[0], -1) ** 2).sum(axis=1))
    return values, per_cell


def fields_figure(
    rows: Sequence[Mapping[str, "firedrake.Function"]],
    *,
    row_labels: Sequence[str] | None = None,
    shared: Sequence[Sequence[str]] = (),
    title: str | None = None,
    panel_size: float = 3.2,
    dpi: int = 110,
) -> "matplotlib.figure.Figure":
    """The figure :func:`plot_fields` saves, drawn on its own Agg canvas (see there).

    Returns
    -------
    matplotlib.figure.Figure
        Laid out and drawn once: artists' window extents are final.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.tri import Triangulation

    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("expected at least one row of fields, got none")
    columns = list(rows[0])
    for k, r in enumerate(rows):
        if list(r) != columns:
            raise ValueError(f"row {k} has columns {list(r)}, row 0 has {columns}")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"expected {len(rows)} row labels, got {len(row_labels)}")
    meshes = {f.function_space().mesh().unique() for r in rows for f in r.values()}
    if len(meshes) != 1:
        raise SpaceMismatchError(f"expected all fields on one mesh, got {len(meshes)} meshes")
    (mesh,) = meshes
    points, vertex_map, tris, tri_cells = _vertex_triangles(mesh)
    triangulation = Triangulation(points[:, 0], points[:, 1], tris)
    group_of = {c: tuple(g) for g in shared for c in g}

    # rows as tall as the domain needs (a wide domain gets low rows, a tall one high rows)
    extent = np.ptp(points, axis=0)
    aspect = float(np.clip(extent[1] / extent[0], 0.4, 2.0)) if extent[0] > 0 else 1.0
    row_height = (panel_size - _COLORBAR_INCHES) * aspect + _ROW_PAD_INCHES
    labels = None if row_labels is None else [_wrap(label) for label in row_labels]
    fig = Figure(figsize=(panel_size * len(columns) + (1.4 if labels else 0.2),
                          row_height * len(rows) + (0.8 if title else 0.5)),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(rows), len(columns), squeeze=False))
    for i, r in enumerate(rows):
        values = {c: field_values(f, points.shape[0], vertex_map) for c, f in r.items()}
        for j, c in enumerate(columns):
            v, per_cell = values[c]
            ax = axes[i, j]
            group = group_of.get(c, (c,))
            lo = min(float(np.min(values[g][0])) for g in group)
            hi = max(float(np.max(values[g][0])) for g in group)
            cmap = "viridis"
            if c.lower().startswith(_ERROR_WORDS):
                m = max(abs(lo), abs(hi)) or 1.0
                # a signed error: diverging map around 0; a vector error (drawn as |e|): from 0
                lo, hi, cmap = (0.0, m, "magma") if r[c].ufl_shape else (-m, m, "RdBu_r")
            if hi <= lo:
                hi = lo + 1.0
            if per_cell:
                art = ax.tripcolor(triangulation, facecolors=v[tri_cells], cmap=cmap, vmin=lo, vmax=hi)
            else:
                art = ax.tripcolor(triangulation, v, shading="gouraud", cmap=cmap, vmin=lo, vmax=hi)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(c)
            if j == 0 and labels is not None:
                # horizontal, left of the row: an axis label is as long as the axes are high
                # and was cut off on wide domains; an annotation is part of the layout
                ax.annotate(labels[i], xy=(0.0, 0.5), xycoords="axes fraction", xytext=(-6, 0),
                            textcoords="offset points", ha="right", va="center")
            fig.colorbar(art, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.draw_without_rendering()
    return fig


def _wrap(label: str) -> str:
    """A row label broken into lines at ``", "`` (``"sample 3, rel L2 1.2%"`` -> two lines)."""
    return "\n".join(part.strip() for part in label.split(", "))


def plot_fields(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, "firedrake.Function"]],
    *,
    row_labels: Sequence[str] | None = None,
    shared: Sequence[Sequence[str]] = (),
    title: str | None = None,
    panel_size: float = 3.2,
    dpi: int = 110,
) -> Path:
    """Draw Functions on their 2D mesh into a PNG grid: one row per sample, one column per field.

    Parameters
    ----------
    path
        Output ``.png`` file (folders are created).
    rows
        One mapping ``column title -> Function`` per row; every row has the same titles,
        and all Functions live on one mesh.  Vector fields are drawn as ``|u|``.
    row_labels
        A label per row, written left of the row and broken into lines at ``", "``
        (e.g. ``"sample 12, rel L2 3.1%"``).
    shared
        Groups of column titles that share one colour range per row (e.g.
        ``[("truth", "prediction")]``).  Columns whose title starts with "error" get a
        diverging colour map centred on zero (vector errors, drawn as ``|e|``: a
        sequential one from zero).
    title
        Figure title.
    panel_size
        Inches per panel's width (panel and colour bar); the height follows the
        domain's aspect ratio.
    dpi
        Resolution.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        No rows, rows with different columns, or a path not ending in ``.png``.
    SpaceMismatchError
        Functions on different meshes.
    UnsupportedSpaceError
        A 3D mesh or a cell type other than triangles and quadrilaterals.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"expected a path ending in .png, got {str(path)!r}")
    fig = fields_figure(rows, row_labels=row_labels, shared=shared, title=title, panel_size=panel_size,
                        dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
