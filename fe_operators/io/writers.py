"""Write Firedrake Functions to VTU/VTK/XDMF through meshio, for ParaView."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fe_operators.errors import SpaceMismatchError, UnsupportedSpaceError

if TYPE_CHECKING:
    import firedrake

__all__ = ["write_fields"]

_SUFFIXES = (".vtu", ".vtk", ".xdmf")
# Firedrake cell -> (meshio cell type, local vertex order meshio expects).  Quads and
# hexes are numbered as tensor products in Firedrake and cyclically in VTK.
_CELLS = {
    "interval": ("line", [0, 1]),
    "triangle": ("triangle", [0, 1, 2]),
    "tetrahedron": ("tetra", [0, 1, 2, 3]),
    "quadrilateral": ("quad", [0, 1, 3, 2]),
    "hexahedron": ("hexahedron", [0, 4, 6, 2, 1, 5, 7, 3]),
}


def _vtk_values(values: np.ndarray, gdim: int) -> np.ndarray:
    """Pad 2D vectors/tensors to 3D, as VTK and ParaView expect; scalars stay 1D."""
    n, shape = values.shape[0], values.shape[1:]
    if len(shape) == 1 and shape[0] < 3:
        out = np.zeros((n, 3))
        out[:, : shape[0]] = values
        return out
    if len(shape) == 2 and shape[0] < 3 and shape[1] < 3:
        out = np.zeros((n, 3, 3))
        out[:, : shape[0], : shape[1]] = values
        return out.reshape(n, 9)
    return values.reshape(n, -1) if len(shape) == 2 else values


def _leaves(fields: Mapping[str, "firedrake.Function"]
            ) -> list[tuple[str, "firedrake.Function"]]:
    """Split Functions on mixed spaces into their components, named ``name[i]``."""
    out = []
    for name, f in fields.items():
        subs = f.subfunctions
        if len(subs) == 1:
            out.append((name, f))
        else:
            out += [(f"{name}[{i}]", s) for i, s in enumerate(subs)]
    return out


def _cg1(mesh: "firedrake.MeshGeometry", shape: tuple[int, ...]
         ) -> "firedrake.functionspaceimpl.WithGeometry":
    """The CG1 space on ``mesh`` with value shape ``shape``."""
    import firedrake

    if not shape:
        return firedrake.FunctionSpace(mesh, "CG", 1)
    if len(shape) == 1:
        return firedrake.VectorFunctionSpace(mesh, "CG", 1, dim=shape[0])
    return firedrake.TensorFunctionSpace(mesh, "CG", 1, shape=shape)


def write_fields(path: str | os.PathLike[str],
                 fields: "Mapping[str, firedrake.Function] | None" = None, *,
                 mesh: "firedrake.MeshGeometry | None" = None) -> Path:
    """Write Functions (and their mesh) to a ``.vtu``, ``.vtk`` or ``.xdmf`` file.

    Parameters
    ----------
    path
        Output file; the suffix picks the format (``.xdmf`` also writes an ``.h5``).
    fields
        ``{name: Function}``, all on one mesh.  Functions on mixed spaces are written
        component by component as ``name[0]``, ``name[1]``, ….
    mesh
        The mesh; needed only when ``fields`` is empty (to write the mesh alone).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        Neither fields nor mesh given, or an unsupported suffix.
    SpaceMismatchError
        Fields on different meshes, or on another mesh than ``mesh``.
    UnsupportedSpaceError
        A cell type meshio cannot express, or a parallel mesh.

    Notes
    -----
    Points are the mesh vertices, cells the mesh cells (straight-sided; curved geometry
    is written through its vertices).  Degree-0 fields (DG0) become cell data; every
    other field is interpolated into CG1 of the same value shape and written as point
    data, so higher-degree fields lose their interior detail, and discontinuous fields
    take, at each vertex, the value of one of the cells around it.  2D vectors and
    tensors are padded to 3 and 3x3 components (VTK's convention).  Serial only: use
    ``firedrake.VTKFile`` for parallel output.
    """
    import firedrake
    import meshio

    path = Path(path)
    fields = dict(fields or {})
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"expected a path ending in {', '.join(_SUFFIXES)}, "
                         f"got {str(path)!r}")
    leaves = _leaves(fields)
    if path.suffix.lower() == ".xdmf" and ":" in path.name:
        # The .xdmf refers to its .h5 as "file.h5:/dataset"; a ':' in the name breaks it.
        raise ValueError(f"an .xdmf file name must not contain ':', got {path.name!r}")
    meshes = {id(f.function_space().mesh()): f.function_space().mesh() for _, f in leaves}
    if mesh is not None:
        meshes.setdefault(id(mesh), mesh)
    if not meshes:
        raise ValueError("write_fields needs fields or a mesh, got neither")
    if len(meshes) > 1:
        names = ", ".join(f"{n!r} on {f.function_space().mesh().name!r}" for n, f in leaves)
        raise SpaceMismatchError(f"expected all fields on one mesh, got {names}"
                                 + (f" and mesh {mesh.name!r}" if mesh is not None else ""))
    (mesh,) = meshes.values()
    cell = str(mesh.ufl_cell())
    if cell not in _CELLS:
        raise UnsupportedSpaceError(f"cannot write {cell} cells; expected one of "
                                    f"{', '.join(_CELLS)}")
    if mesh.comm.size > 1:
        raise UnsupportedSpaceError("write_fields is serial; use firedrake.VTKFile for "
                                    f"a mesh on {mesh.comm.size} processes")

    gdim = mesh.geometric_dimension
    V1 = firedrake.VectorFunctionSpace(mesh, "CG", 1)
    X = mesh.coordinates
    if X.function_space().ufl_element() != V1.ufl_element():  # curved or periodic
        X = firedrake.Function(V1).interpolate(firedrake.SpatialCoordinate(mesh))
    vertex_map = X.function_space().cell_node_map().values  # (n_cells, n_vertices)
    points = np.zeros((X.dat.data_ro.shape[0], 3))
    points[:, :gdim] = X.dat.data_ro.reshape(-1, gdim)

    point_data: dict[str, np.ndarray] = {}
    cell_data: dict[str, list[np.ndarray]] = {}
    for name, f in leaves:
        V = f.function_space()
        shape = f.ufl_shape
        if V.ufl_element().embedded_superdegree == 0:  # cellwise constant: cell data
            values = f.dat.data_ro.reshape((-1, *shape))[V.cell_node_map().values[:, 0]]
            cell_data[name] = [_vtk_values(values, gdim)]
            continue
        target = _cg1(mesh, shape)
        if V.ufl_element() != target.ufl_element():
            f = firedrake.Function(target).interpolate(f)
        values = np.empty((len(points), *shape))
        # Vertex i of cell c is node vertex_map[c, i] of the output and node
        # field_map[c, i] of f: one vectorised scatter over all cells.
        field_map = f.function_space().cell_node_map().values
        values[vertex_map] = f.dat.data_ro.reshape((-1, *shape))[field_map]
        point_data[name] = _vtk_values(values, gdim)

    cell_type, order = _CELLS[cell]
    out = meshio.Mesh(points, [(cell_type, vertex_map[:, order])],
                      point_data=point_data, cell_data=cell_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    meshio.write(path, out)
    return path
