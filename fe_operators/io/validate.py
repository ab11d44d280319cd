"""Checks of a mesh's cells as read from a file, before PETSc or Firedrake see them.

A cell that lists a vertex twice makes PETSc's DMPlex reader fail with an obscure error
(or crash: a segmentation fault was seen); a non-finite coordinate or a cell of zero
area/volume is read without a word and fails later, far from its cause (a NaN mesh
diameter, "Matrix is not positive definite", a floating-point error in the first solve).
:func:`validate_cells` refuses all of them with one line naming the file, the first bad
cell, where it is and how many cells are bad that way.

Cells listed in either orientation (counterclockwise or clockwise) are valid: only the
magnitude of a cell's measure is looked at.
"""

from __future__ import annotations

import numpy as np

from fe_operators.errors import MeshReadError

__all__ = ["validate_cells"]

# Cell type (meshio's name) -> (topological dimension, vertices per cell, a decomposition
# into simplices, as local vertex indices).  dim! x the signed measure of a cell is the sum
# of the simplices' determinants, each taken from its first vertex; the hexahedron is split
# into six tetrahedra around its diagonal 0-6 (gmsh's and VTK's vertex order: 0-3 the
# bottom face, 4-7 the top one, each counterclockwise seen from above), the quadrilateral
# into two triangles from vertex 0.
_SHAPES: dict[str, tuple[int, int, tuple[tuple[int, ...], ...]]] = {
    "triangle": (2, 3, ((0, 1, 2),)),
    "quad": (2, 4, ((0, 1, 2), (0, 2, 3))),
    "tetra": (3, 4, ((0, 1, 2, 3),)),
    "hexahedron": (3, 8, ((0, 1, 2, 6), (0, 2, 3, 6), (0, 3, 7, 6),
                          (0, 7, 4, 6), (0, 4, 5, 6), (0, 5, 1, 6))),
}
# What a user calls them in a message.
_WORDS = {"triangle": "triangle", "quad": "quadrilateral", "tetra": "tetrahedron",
          "hexahedron": "hexahedron"}

# A cell has zero measure when its determinant is at the level of its coordinates'
# round-off.  Coordinates read from a file are known to a relative precision eps, i.e. to
# eps * X for a cell whose largest |coordinate| is X; moving the vertices of a cell of
# longest edge h by that much changes dim! x its measure by at most about
# 2 * dim**1.5 * eps * X * h**(dim - 1) (under 11 eps X h^2 in 3D).  So vertices that are
# collinear (coplanar) up to the file's precision give |det| below _ROUNDOFF * X * h**(dim-1)
# with _ROUNDOFF = 1000 eps (2.2e-13), and a real cell is far above it: a cell of unit
# size near the origin is refused only if it is thinner than 2.2e-13.
# The test is relative to each cell's own size and position, not to the whole mesh's
# bounding box: a graded mesh whose smallest cells are 1e-5 of the domain (common in 3D)
# is valid, while a bounding-box test (|det| <= 1e-12 diam^dim) would refuse it.
_ROUNDOFF = 1000.0 * np.finfo(np.float64).eps

# Cells processed at once in the geometric test: bounds its temporaries to ~100 MB.
_CHUNK = 1 << 19

_FIX = "fix or regenerate the mesh"
_NUMBERING = "cells and vertices numbered from 0 in file order"


def _infer_type(gdim: int, nv: int) -> str | None:
    """The cell type of ``nv``-vertex cells with ``gdim``-dimensional points (None: unknown)."""
    return {(2, 3): "triangle", (3, 3): "triangle", (2, 4): "quad",
            (3, 4): "tetra", (3, 8): "hexahedron"}.get((gdim, nv))


def _list(values: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in values)


def _near(x: np.ndarray, cell: np.ndarray) -> str:
    """Where a cell with finite vertices is: its centroid, to find it in a mesh viewer."""
    return "near (" + ", ".join(f"{v:.4g}" for v in x[cell].mean(axis=0)) + ")"


def _first(bad: np.ndarray) -> tuple[int, int]:
    """The index of the first True entry and the number of True entries."""
    return int(np.argmax(bad)), int(np.count_nonzero(bad))


def validate_cells(points: np.ndarray, cells: np.ndarray, *, source: str,
                   cell_type: str | None = None) -> None:
    """Refuse cells that PETSc and Firedrake cannot use, naming the first bad cell.

    The checks, in order: vertex indices in range, finite coordinates of the vertices
    the cells use (points no cell uses are not looked at), no cell listing a vertex
    twice, no cell of zero area (volume in 3D) up to the round-off of its coordinates.
    Cells of either orientation are valid.  Vectorised over cells.

    Parameters
    ----------
    points
        Shape ``(n_points, gdim)``, ``gdim`` 2 or 3 (a 2D mesh's points may carry a
        ``z`` column: surface cells are measured in 3D).
    cells
        Shape ``(n_cells, vertices_per_cell)``: indices into ``points``, in file order.
    source
        The file, for messages.
    cell_type
        meshio's name, ``"triangle"``, ``"quad"``, ``"tetra"`` or ``"hexahedron"``
        (default: from ``gdim`` and the vertices per cell; 4 vertices in 3D are a
        tetrahedron).  Other cells get every check except the measure's.

    Raises
    ------
    MeshReadError
        One line: the file, the first bad cell (its index from 0 in file order), what is
        wrong with it, how many cells are bad that way, and the fix.

    Examples
    --------
    >>> validate_cells([[0, 0], [1, 0], [0, 1]], [[0, 1, 0]], source="m.msh")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fe_operators.errors.MeshReadError: bad mesh file 'm.msh': triangle 0 near (0.3333, 0) ...
    """
    x = np.asarray(points, dtype=np.float64)
    c = np.asarray(cells)
    if c.ndim != 2 or x.ndim != 2 or len(c) == 0:
        return
    c = c.astype(np.int64, copy=False)
    n_cells, nv = c.shape
    kind = cell_type or _infer_type(x.shape[1], nv)
    word = _WORDS.get(kind or "", "cell")
    where = f"bad mesh file '{source}': {word}"
    of = f"of {n_cells} {word}s"

    if c.min() < 0 or c.max() >= len(x):
        out = (c < 0) | (c >= len(x))
        bad = out.any(axis=1)
        i, count = _first(bad)
        v = int(c[i][out[i]][0])
        raise MeshReadError(
            f"{where} {i} lists vertex {v}, but the file has {len(x)} vertices "
            f"(0 to {len(x) - 1}); {count} {of} list a missing vertex ({_NUMBERING}); {_FIX}")

    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = ~finite[c].all(axis=1)
        if bad.any():
            i, count = _first(bad)
            v = int(c[i][~finite[c[i]]][0])
            coords = ", ".join(f"{value:.6g}" for value in x[v])
            raise MeshReadError(
                f"{where} {i} uses vertex {v}, whose coordinates ({coords}) are not finite; "
                f"{count} {of} use such vertices ({_NUMBERING}); {_FIX}")

    ordered = np.sort(c, axis=1)
    same = ordered[:, 1:] == ordered[:, :-1]
    bad = same.any(axis=1)
    if bad.any():
        i, count = _first(bad)
        v = int(ordered[i, 1:][same[i]][0])
        raise MeshReadError(
            f"{where} {i} {_near(x, c[i])} lists vertex {v} twice (its vertices: "
            f"{_list(c[i])}); {count} {of} list a vertex twice ({_NUMBERING}); {_FIX}")

    if kind not in _SHAPES or _SHAPES[kind][1] != nv:
        return
    dim = _SHAPES[kind][0]
    if dim > x.shape[1]:
        return  # tetrahedra with 2D points: not a mesh any reader here makes
    first, count = -1, 0
    for start in range(0, n_cells, _CHUNK):  # chunks of cells, not single cells
        zero = _zero_measure(x, c[start:start + _CHUNK], kind)
        if zero.any():
            first = first if first >= 0 else start + int(np.argmax(zero))
            count += int(np.count_nonzero(zero))
    if count:
        what = "area" if dim == 2 else "volume"
        flat = {("triangle", 2): "collinear", ("tetra", 3): "coplanar"}.get((kind, dim))
        why = f"its vertices {_list(c[first])} are {flat}" if flat else \
              f"its vertices: {_list(c[first])}"
        raise MeshReadError(
            f"{where} {first} {_near(x, c[first])} has zero {what} ({why}); {count} {of} "
            f"have zero {what} ({_NUMBERING}); {_FIX}")


def _zero_measure(x: np.ndarray, c: np.ndarray, kind: str) -> np.ndarray:
    """Which of the cells ``c`` have zero measure up to round-off (see ``_ROUNDOFF``).

    Vectorised over cells; the Python loops run over a cell's vertices and coordinates
    (at most 8 and 3), on one contiguous array of all cells per vertex and axis.
    """
    dim, nv, simplices = _SHAPES[kind]
    xt = x.T  # X[j][k]: axis j of every cell's vertex k
    X = [[xt[j][c[:, k]] for k in range(nv)] for j in range(x.shape[1])]
    E = [[X[j][k] - X[j][0] for j in range(len(X))] for k in range(nv)]  # edges from 0
    with np.errstate(over="ignore", invalid="ignore"):
        h2 = np.zeros(len(c))
        scale = np.zeros(len(c))
        for k in range(nv):
            h2 = np.maximum(h2, sum(e * e for e in E[k]))
            for j in range(len(X)):
                scale = np.maximum(scale, np.abs(X[j][k]))
        if dim == 2:  # vector area (x 2): its norm, whatever the plane the cell is in
            area = [sum(_cross(E[a], E[b])[j] for _, a, b in simplices) for j in range(3)]
            det = np.sqrt(area[0] ** 2 + area[1] ** 2 + area[2] ** 2)
        else:  # signed volume (x 6): the sum of the tetrahedra's triple products
            det = np.abs(sum(sum(u * v for u, v in zip(E[a], _cross(E[b], E[d])))
                             for _, a, b, d in simplices))
        return ~(det > _ROUNDOFF * scale * np.sqrt(h2) ** (dim - 1))  # NaN/inf: not valid


def _cross(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The cross product of vectors given by their 2 or 3 component arrays (z = 0 if 2)."""
    if len(a) == 2:
        zero = np.zeros_like(a[0])
        return zero, zero, a[0] * b[1] - a[1] * b[0]
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
