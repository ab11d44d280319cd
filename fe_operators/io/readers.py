"""Load a Firedrake mesh from a shipped name, a built-in spec, or any file meshio reads.

Spec grammar (:func:`load_mesh`)
--------------------------------
``NAME``
    A mesh shipped with fe_operators (:func:`shipped_meshes`), e.g. ``plate_holes``.
``unitsquare:N`` | ``unitsquare:NxM`` [``:quad``]
    ``UnitSquareMesh(N, N)`` / ``UnitSquareMesh(N, M)``; ``:quad`` for quadrilaterals.
``rectangle:LX,LY:N`` | ``rectangle:LX,LY:NxM`` [``:quad``]
    ``RectangleMesh(N, M, LX, LY)``.
``unitcube:N`` | ``unitcube:NxMxK``
    ``UnitCubeMesh(N, N, N)`` / ``UnitCubeMesh(N, M, K)``.
``box:LX,LY,LZ:N`` | ``box:LX,LY,LZ:NxMxK``
    ``BoxMesh(N, M, K, LX, LY, LZ)``.
``PATH``
    A file.  Gmsh ``.msh`` files of version 2.2 or 4.1 are read by ``firedrake.Mesh``
    directly; any other format meshio reads (``.vtu``, ``.vtk``, ``.xdmf``, ``.med``,
    ``.mesh``, older ``.msh`` …) is read by meshio and converted.  In every format the
    cells must be linear (curved, higher-order cells such as ``triangle6`` are refused:
    export linear elements), and a 2D mesh must lie in a plane ``z = const`` (a tilted
    or curved surface in 3D is refused rather than flattened onto the xy-plane).
``SPEC/rK``
    Any of the above refined uniformly ``K`` times (``K >= 0``): the finest mesh of
    ``firedrake.MeshHierarchy(load_mesh(SPEC), K)``, e.g. ``plate_holes/r2``,
    ``unitsquare:8/r3``, ``path/to/file.msh/r1``.  The mesh is a level of that hierarchy
    (``firedrake.mg.utils.get_level(mesh)`` gives it and the level; ``/r0`` is the base
    mesh as a one-level hierarchy), which is what multigrid needs.  Each refinement
    splits a triangle into 4 and a tetrahedron into 8; new vertices lie on the coarse
    cells' straight edges, so a curved boundary keeps the base mesh's polygon.  A path
    to an existing file is always that file, even if it ends in ``/rK``.

Validation: before PETSc reads a file, its cells are checked
(:func:`fe_operators.io.validate.validate_cells`): a vertex index out of range, a
non-finite coordinate of a vertex a cell uses, a cell that lists a vertex twice or a cell
of zero area (volume in 3D) is refused with a :class:`MeshReadError` naming the file and
the first such cell.  Cells of either orientation are valid.

Size limit: a spec whose estimated cell count (the built-in counts, or the base file's
cells, times ``4**K`` in 2D and ``8**K`` in 3D) exceeds :data:`MAX_CELLS` (2e7 cells,
some 10-20 GB of memory in Firedrake) is refused with a :class:`MeshReadError`: a
built-in spec before any mesh is built, a file with ``/rK`` after reading the base file
and before refining it (a file without suffix is read as it is).  Set the environment
variable ``FE_OPERATORS_MAX_CELLS`` to another limit to change it.

Boundary markers of the built-in specs are Firedrake's: 1 left (x = 0), 2 right, 3 bottom
(y = 0), 4 top in 2D; 1 left (x = 0), 2 right, 3 front (y = 0), 4 back, 5 bottom (z = 0),
6 top in 3D.  The shipped meshes follow the same convention where it applies.

Tags of converted files are taken from the first of the cell-data arrays
``gmsh:physical``, ``medit:ref``, ``CellEntityIds``, ``cell_tags`` present on the facet
cells (and on the cells, which become Firedrake's cell subdomain ids); names from meshio's
``field_data`` (gmsh physical names).  Formats that carry no facet cells (most ``.vtu``
files not written from a tagged mesh) give a mesh without boundary markers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from fe_operators.io.mesh_files import (
    _PETSC_GMSH_VERSIONS,
    _default_comm,
    _gmsh_version,
    _mesh_kwargs,
    _read_gmsh,
    _read_meshio,
    physical_names,
)
from fe_operators.io.specs import MeshSource, _check_size, _refinement_factor, resolve_mesh_spec

if TYPE_CHECKING:  # Firedrake is imported lazily: it is slow to import.
    import firedrake

__all__ = ["load_mesh", "load_hierarchy"]


def _load(spec: str | os.PathLike[str], comm: Any = None, name: str | None = None
          ) -> tuple["firedrake.MeshGeometry", MeshSource, dict[int, str]]:
    """Load a mesh; also return its source and ``{boundary marker: name}``.

    With a ``/rK`` suffix the mesh is the finest level of a ``MeshHierarchy``.
    """
    source = resolve_mesh_spec(spec)
    comm = _default_comm() if comm is None else comm
    if source.refinements is None:
        mesh, names = _load_base(source, comm, name)
        return mesh, source, names
    base_name = name if name is None or source.refinements == 0 else f"{name}_level0"
    base, names = _load_base(source, comm, base_name)
    hierarchy = _refine(base, source, name)
    return hierarchy[-1], source, names


def _local_cells(mesh: "firedrake.MeshGeometry") -> int:
    """Cells of the mesh's DMPlex on this rank, without building Firedrake's numbering."""
    start, end = mesh.topology_dm.getHeightStratum(0)
    return end - start


def _refine(base: "firedrake.MeshGeometry", source: MeshSource, name: str | None) -> Any:
    """``MeshHierarchy(base, K)``, refused first if the finest level is past the limit.

    With ``name``, the finest mesh is called ``name`` and level ``i`` ``{name}_level{i}``
    (Firedrake's default names otherwise).
    """
    import firedrake

    k = int(source.refinements or 0)
    if source.estimated_cells is None:  # a file: count the base cells, before refining
        dm = base.topology_dm
        cells = base.comm.allreduce(_local_cells(base))  # halo cells, if any, overcount
        _check_size(source.spec, cells * _refinement_factor(dm.getDimension(), k))
    builder = firedrake.Mesh
    if name is not None:
        levels = iter(range(1, k + 1))

        def builder(plex: Any, **kwargs: Any) -> "firedrake.MeshGeometry":
            level = next(levels)
            return firedrake.Mesh(plex, name=name if level == k else f"{name}_level{level}",
                                  **kwargs)
    return firedrake.MeshHierarchy(base, k, mesh_builder=builder)


def _load_base(source: MeshSource, comm: Any, name: str | None
               ) -> tuple["firedrake.MeshGeometry", dict[int, str]]:
    """Load the (unrefined) mesh a source points to, with ``{boundary marker: name}``."""
    import firedrake

    if source.builtin is not None:
        ctor, args, kwargs = source.builtin
        mesh = getattr(firedrake, ctor)(*args, **kwargs, **_mesh_kwargs(comm, name))
        return mesh, dict(source.names)
    path = source.path
    assert path is not None  # resolve_mesh_spec gives a path for non-builtins
    version = None
    if path.suffix.lower() == ".msh":
        version = _gmsh_version(path)
    if version in _PETSC_GMSH_VERSIONS:
        mesh = _read_gmsh(path, comm, name)
        all_names = physical_names(path)
    else:
        mesh, all_names = _read_meshio(path, comm, name)
    fdim = mesh.topological_dimension - 1
    names = {pid: n for (d, pid), n in sorted(all_names.items()) if d == fdim}
    return mesh, names


def load_mesh(spec: str | os.PathLike[str], *, comm: Any = None,
              name: str | None = None) -> "firedrake.MeshGeometry":
    """Load a Firedrake mesh from a shipped name, a built-in spec or a mesh file.

    Parameters
    ----------
    spec
        ``"plate_holes"`` (a shipped mesh, :func:`shipped_meshes`), ``"unitsquare:64"``,
        ``"unitsquare:64x32:quad"``, ``"rectangle:2,1:32x16"``, ``"unitcube:8"``,
        ``"box:1,1,2:4x4x8"``, or a path to a gmsh file or any file meshio reads; any
        of them with a refinement suffix ``/rK`` (``"plate_holes/r2"``) for the finest
        mesh of a ``MeshHierarchy``.  A :class:`os.PathLike` is always taken as a path.
        See the module docstring.
    comm
        MPI communicator (default: ``firedrake.COMM_WORLD``).  Files are read on rank 0
        and distributed.
    name
        The Firedrake mesh name (default: Firedrake's).

    Returns
    -------
    firedrake.MeshGeometry
        Physical facet ids of the file (gmsh physical groups) are its boundary markers,
        ``mesh.exterior_facets.unique_markers``.

    Raises
    ------
    MeshReadError
        Unknown name, malformed spec, missing file, or a file that is corrupt or of an
        unsupported format or cell type, or whose cells are invalid (a vertex listed
        twice, a non-finite coordinate, zero area or volume: the message names the
        first such cell); the one-line message names the file and the reason, and the
        original exception is chained.  Also a spec whose estimated
        cell count is past :func:`max_cells`, before anything is built.

    Examples
    --------
    >>> mesh = load_mesh("channel_cylinder")                      # doctest: +SKIP
    >>> sorted(mesh.exterior_facets.unique_markers)               # doctest: +SKIP
    [1, 2, 3, 4]
    """
    return _load(spec, comm, name)[0]


def load_hierarchy(spec: str | os.PathLike[str], *, comm: Any = None,
                   name: str | None = None) -> tuple[Any, "firedrake.MeshGeometry"]:
    """The ``MeshHierarchy`` of a refined spec, and its finest mesh.

    Parameters
    ----------
    spec
        As :func:`load_mesh`.  ``"plate_holes/r2"`` gives a three-level hierarchy; a spec
        without suffix is taken as ``/r0`` (its mesh as a one-level hierarchy).
    comm, name
        As :func:`load_mesh` (``name`` is the finest mesh's).

    Returns
    -------
    tuple
        ``(hierarchy, finest)``: ``hierarchy[0]`` is the base mesh, ``hierarchy[-1] is
        finest``; ``finest`` is what ``load_mesh(spec)`` returns for a ``/rK`` spec.
        Use the hierarchy with Firedrake's own multigrid (``"pc_type": "mg"``) or
        :func:`fe_operators.fem.hierarchy.hierarchy_operators`.

    Raises
    ------
    MeshReadError
        As :func:`load_mesh`.
    """
    from firedrake.mg.utils import get_level

    source = resolve_mesh_spec(spec)
    if source.refinements is None:
        source = dataclasses.replace(source, refinements=0)
        comm = _default_comm() if comm is None else comm
        base, _ = _load_base(source, comm, name)
        finest = _refine(base, source, name)[-1]
    else:
        finest = _load(spec, comm, name)[0]
    return get_level(finest)[0], finest
