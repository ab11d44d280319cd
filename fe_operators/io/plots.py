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

__all__ = ["plot_fields", "field_values"]

#: columns whose title starts with this word get a diverging, zero-centred colour map
_ERROR_WORDS = ("error", "err")


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
        A label per row (shown on the left), e.g. ``"sample 12"``.
    shared
        Groups of column titles that share one colour range per row (e.g.
        ``[("truth", "prediction")]``).  Columns whose title starts with "error" get a
        diverging colour map centred on zero (vector errors, drawn as ``|e|``: a
        sequential one from zero).
    title
        Figure title.
    panel_size
        Inches per panel.
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.tri import Triangulation

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"expected a path ending in .png, got {str(path)!r}")
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

    fig = Figure(figsize=(panel_size * len(columns) + 0.6, panel_size * len(rows) + (0.5 if title else 0.1)),
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
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i])
            fig.colorbar(art, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
