"""Transfer operators between finite element spaces as sparse matrices.

Three operators, each assembled by Firedrake itself (so they agree with its
``interpolate``/``prolong``/``restrict`` to round-off) and returned as ``scipy.sparse.csr_matrix`` (float64); the ``*_torch`` variants return the
same matrix as a torch sparse CSR tensor (through
:func:`fe_operators.sparse.scipy_to_torch`).

* :func:`interpolation_matrix` — ``I`` with ``I @ u_src == interpolate(u_src, V_dst)``,
  on one mesh or between two meshes covering the same domain.
* :func:`prolongation_matrix` — ``P`` with ``P @ u_coarse == prolong(u_coarse)`` between
  levels of a :func:`firedrake.MeshHierarchy`.
* :func:`restriction_matrix` — ``R = P.T``, which is what :func:`firedrake.restrict`
  does to dual vectors (assembled right-hand sides, residuals).

Rows and columns follow PETSc's numbering of the spaces, interleaved for vector and
tensor spaces: index ``node * ncomp + component``, the flattening of
``Function.dat.data_ro`` and of the DOF-tensor layout ``(n_nodes, ncomp)``.

Only serial (``COMM_SELF``-sized) meshes are supported, like the rest of ``fem/``;
the exception is :func:`level_prolongations`, PETSc matrices of a hierarchy's
prolongations on any number of processes (for PETSc's multigrid).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import finat.ufl
import firedrake as fd
from firedrake.mg import utils as mg_utils
from firedrake.mg.interface import assemble_prolongation_aij

from fe_operators.errors import PointsOutsideMeshError, SpaceMismatchError, UnsupportedSpaceError
from fe_operators.sparse import petsc_to_scipy, scipy_to_torch

__all__ = [
    "DEFAULT_TOLERANCE",
    "interpolation_matrix",
    "interpolation_matrix_torch",
    "prolongation_matrix",
    "prolongation_matrix_torch",
    "restriction_matrix",
    "restriction_matrix_torch",
    "level_prolongations",
]

#: Default cell-location tolerance of cross-mesh interpolation, in Firedrake's units (the
#: L1 distance from the reference cell, in reference coordinates).  Only round-off slack:
#: a point on the source boundary is found, a point outside it by any visible amount is not.
#: (Firedrake's own default, ``mesh.tolerance == 0.5``, silently extrapolates up to about
#: half a cell outside the source mesh.)
DEFAULT_TOLERANCE: float = 1e-8

# How many outside points an error message lists.
_N_REPORTED_POINTS = 5

# Relative size (to the row's largest) below which a prolongation entry is round-off: the
# transfer kernel's values for coarse basis functions vanishing at a fine node reach 3.8e-14
# on unitsquare:16/r4 (point location's round-off), while a nested Lagrange weight is a
# rational of order one (1/2, 3/8, -1/8, ...).
_ROUNDOFF_RTOL = 1e-12


# --------------------------------------------------------------------------- checks


def _check_space(V: Any, name: str) -> None:
    """Raise unless ``V`` is a non-mixed, non-``Real`` Firedrake function space.

    Parameters
    ----------
    V
        The object to check.
    name
        The argument's name, for the message.
    """
    if not isinstance(V, fd.functionspaceimpl.WithGeometryBase):
        raise TypeError(f"{name}: expected a Firedrake FunctionSpace, got {type(V).__name__}")
    if isinstance(V, fd.functionspaceimpl.FiredrakeDualSpace):
        raise TypeError(f"{name}: expected a primal FunctionSpace, got the dual space {V}; pass V.dual()")
    if len(V) > 1:
        raise UnsupportedSpaceError(
            f"{name}: mixed function spaces ({len(V)} subspaces) are not supported; "
            "build one operator per subspace"
        )
    if V.ufl_element().family() == "Real":
        raise UnsupportedSpaceError(f"{name}: 'Real' spaces have no transfer matrix worth building")


def _primal(V: Any) -> Any:
    """The primal space of ``V`` (``V`` itself unless it is a dual space)."""
    return V.dual() if isinstance(V, fd.functionspaceimpl.FiredrakeDualSpace) else V


def _check_shapes(V_a: Any, V_b: Any, what: str) -> None:
    """Raise :class:`SpaceMismatchError` unless both spaces have the same value shape."""
    if V_a.value_shape != V_b.value_shape:
        raise SpaceMismatchError(
            f"{what}: value shapes differ, {tuple(V_a.value_shape)} vs {tuple(V_b.value_shape)}"
        )


# ------------------------------------------------------------------ interpolation


def _dof_points(V: Any) -> np.ndarray:
    """Physical coordinates of the point-evaluation DOFs Firedrake uses for ``V``.

    Mirrors ``CrossMeshInterpolator``: a target without point-evaluation DOFs is reached
    through its quadrature space, so those are the points located in the source mesh.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_nodes, gdim)``.
    """
    if not V.finat_element.has_pointwise_dual_basis:
        V = V.quadrature_space()
    elem = V.ufl_element()
    if isinstance(elem, (finat.ufl.VectorElement, finat.ufl.TensorElement)):
        elem = elem.sub_elements[0]
    mesh = V.mesh().unique()
    W = fd.VectorFunctionSpace(mesh, elem)
    X = fd.assemble(fd.interpolate(mesh.coordinates, W))
    return np.array(X.dat.data_ro, dtype=np.float64).reshape(-1, mesh.geometric_dimension)


def interpolation_matrix(
    V_src: fd.FunctionSpace,
    V_dst: fd.FunctionSpace,
    *,
    allow_missing: bool = False,
    tolerance: float | None = None,
) -> sp.csr_matrix:
    """The interpolation operator from ``V_src`` into ``V_dst`` as a sparse matrix.

    ``I @ u.dat.data_ro.ravel()`` equals
    ``Function(V_dst).interpolate(u).dat.data_ro.ravel()`` for every ``u`` in ``V_src``.

    Parameters
    ----------
    V_src
        Source space (scalar, vector or tensor; not mixed).
    V_dst
        Target space, with the same value shape; on the same mesh as ``V_src`` or on
        another mesh of the same domain.  Across meshes, ``V_dst``'s DOFs are evaluated
        at points (its nodes, or its quadrature points if its DOFs are not point
        evaluations) located in the source mesh.
    allow_missing
        Across meshes: allow target points outside the source mesh.  They contribute
        zero (no extrapolation): for a nodal ``V_dst`` their rows of ``I`` are zero;
        for a non-nodal one, the missing quadrature points count as zero values.
    tolerance
        Across meshes: how far (L1 distance in reference-cell coordinates, Firedrake's
        ``mesh.tolerance`` units) a target point may be outside the source mesh and
        still be evaluated, by extrapolating the polynomial of the nearest source cell.
        ``None`` means :data:`DEFAULT_TOLERANCE` (round-off slack only).  The source
        mesh's ``tolerance`` attribute is left as it was.

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, shape ``(dim V_dst, dim V_src)``, PETSc (interleaved) ordering.

    Raises
    ------
    PointsOutsideMeshError
        Across meshes: target points further than ``tolerance`` from the source mesh,
        and ``allow_missing`` is False.  The message gives their number and the first
        few coordinates.
    SpaceMismatchError
        The value shapes differ, or the meshes have different geometric dimensions.
    UnsupportedSpaceError
        A mixed or ``Real`` space.

    Notes
    -----
    Both cases assemble Firedrake's own operator,
    ``assemble(interpolate(TrialFunction(V_src), V_dst), mat_type="aij")``: on one mesh
    it is the dual evaluation kernel; across meshes Firedrake (2026.10) builds it as a
    point evaluation on a ``VertexOnlyMesh`` immersed in the source mesh.
    ``allow_missing`` and ``tolerance`` are ignored on one mesh.
    """
    _check_space(V_src, "V_src")
    _check_space(V_dst, "V_dst")
    _check_shapes(V_src, V_dst, "interpolation")
    src_mesh = V_src.mesh().unique()
    dst_mesh = V_dst.mesh().unique()
    expr = fd.TrialFunction(V_src)
    if src_mesh is dst_mesh:
        return petsc_to_scipy(fd.assemble(fd.interpolate(expr, V_dst), mat_type="aij").petscmat)

    if src_mesh.geometric_dimension != dst_mesh.geometric_dimension:
        raise SpaceMismatchError(
            f"interpolation between meshes of geometric dimension {src_mesh.geometric_dimension} "
            f"and {dst_mesh.geometric_dimension}"
        )
    tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    if not tol >= 0:
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    saved_tolerance = src_mesh.tolerance
    try:
        # Firedrake locates points with the source mesh's tolerance (it has no argument
        # for it), so set ours for the duration of the build, then put theirs back.
        src_mesh.tolerance = tol
        points = _dof_points(V_dst)
        cells, _, _ = src_mesh.locate_cells_ref_coords_and_dists(points, tol)
        missing = np.flatnonzero(cells < 0)
        if missing.size and not allow_missing:
            shown = np.array2string(points[missing[:_N_REPORTED_POINTS]], precision=6, separator=", ")
            raise PointsOutsideMeshError(
                f"{missing.size} of the {len(points)} target points of V_dst lie outside the "
                f"source mesh (further than tolerance={tol:g} in reference-cell L1 distance); "
                f"the first {min(missing.size, _N_REPORTED_POINTS)}: {shown}. Pass "
                "allow_missing=True to give them zero rows, or a larger tolerance to "
                "extrapolate from the nearest cell."
            )
        interp = fd.interpolate(expr, V_dst, allow_missing_dofs=bool(missing.size))
        A = petsc_to_scipy(fd.assemble(interp, mat_type="aij").petscmat)
    finally:
        if saved_tolerance is None:
            src_mesh._tolerance = None  # the public setter refuses None
        else:
            src_mesh.tolerance = saved_tolerance
    return A


def interpolation_matrix_torch(
    V_src: fd.FunctionSpace,
    V_dst: fd.FunctionSpace,
    *,
    allow_missing: bool = False,
    tolerance: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """:func:`interpolation_matrix` as a torch sparse CSR tensor of the given dtype/device."""
    A = interpolation_matrix(V_src, V_dst, allow_missing=allow_missing, tolerance=tolerance)
    return scipy_to_torch(A, dtype, device)


# ------------------------------------------------------------ hierarchy transfers


def _check_levels(V_coarse: Any, V_fine: Any) -> tuple[Any, int, int]:
    """Validate a coarse/fine pair as ``firedrake.mg.interface.check_arguments`` does.

    Returns
    -------
    tuple
        ``(hierarchy, index of the coarse mesh, index of the fine mesh)``, indices into
        ``hierarchy._meshes`` (which counts the intermediate refinements when
        ``refinements_per_level > 1``).
    """
    _check_space(V_coarse, "V_coarse")
    _check_space(V_fine, "V_fine")
    hierarchy, level_c = mg_utils.get_level(V_coarse.mesh().unique())
    if hierarchy is None:
        raise SpaceMismatchError("V_coarse: its mesh is not a level of a MeshHierarchy")
    fhierarchy, level_f = mg_utils.get_level(V_fine.mesh().unique())
    if fhierarchy is None:
        raise SpaceMismatchError("V_fine: its mesh is not a level of a MeshHierarchy")
    if fhierarchy is not hierarchy:
        raise SpaceMismatchError("V_coarse and V_fine are on meshes of two different hierarchies")
    if level_c >= level_f:
        raise SpaceMismatchError(
            f"V_coarse (level {level_c}) must be on a coarser level than V_fine (level {level_f})"
        )
    _check_shapes(V_coarse, V_fine, "prolongation")
    rpl = hierarchy.refinements_per_level
    return hierarchy, int(level_c * rpl), int(level_f * rpl)


def _roundoff_kept(indptr: np.ndarray, data: np.ndarray, rtol: float = _ROUNDOFF_RTOL) -> np.ndarray:
    """Which entries of a CSR matrix are above ``rtol`` times the largest magnitude in their row."""
    mag = np.abs(data)
    counts = np.diff(indptr)
    row_max = np.zeros(counts.size)
    rows = counts > 0
    row_max[rows] = np.maximum.reduceat(mag, indptr[:-1][rows]) if mag.size else 0.0
    return mag > rtol * np.repeat(row_max, counts)


def _drop_roundoff(A: sp.csr_matrix, rtol: float = _ROUNDOFF_RTOL) -> sp.csr_matrix:
    """Remove entries at or below ``rtol`` times the largest magnitude in their row.

    Firedrake's transfer kernels store the whole coarse-cell stencil of each fine node;
    coarse basis functions that vanish at the node give zeros or round-off (~1e-16) that
    only cost memory and flops downstream (for CG1 on triangles, 1.75 of a row's 3
    entries are kept).
    """
    A = sp.csr_matrix(A, copy=True)
    A.sum_duplicates()
    A.data[~_roundoff_kept(A.indptr, A.data, rtol)] = 0.0
    A.eliminate_zeros()
    return A


def _drop_roundoff_aij(P: Any, rtol: float = _ROUNDOFF_RTOL) -> Any:
    """:func:`_drop_roundoff` of a PETSc AIJ matrix (each process its own rows): a new matrix of
    the same row and column layouts."""
    from firedrake.petsc import PETSc

    indptr, indices, data = P.getValuesCSR()
    keep = _roundoff_kept(indptr, data, rtol)
    n = indptr.size - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    new_indptr = np.zeros_like(indptr)
    np.cumsum(np.bincount(rows[keep], minlength=n), out=new_indptr[1:])
    out = PETSc.Mat().createAIJ(size=P.getSizes(), csr=(new_indptr, indices[keep], data[keep]), comm=P.comm)
    out.assemble()
    return out


def prolongation_matrix(V_coarse: fd.FunctionSpace, V_fine: fd.FunctionSpace) -> sp.csr_matrix:
    """The prolongation operator between two levels of a mesh hierarchy.

    ``P @ uc.dat.data_ro.ravel()`` equals ``firedrake.prolong(uc, uf).dat.data_ro.ravel()``
    for every ``uc`` in ``V_coarse``.

    Parameters
    ----------
    V_coarse
        A space on a level of a :func:`firedrake.MeshHierarchy`.
    V_fine
        A space of the same value shape on a finer level of the same hierarchy (any
        number of levels finer).

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, shape ``(dim V_fine, dim V_coarse)``, PETSc (interleaved) ordering.
        Entries below ``1e-12`` times their row's largest (the zeros and round-off of
        coarse basis functions that vanish at a fine node) are not stored.  Several
        levels apart, it is the product of the one-level matrices, as
        ``prolong`` itself goes level by level (intermediate levels use ``V_fine``'s
        element).

    Raises
    ------
    TypeError
        An argument is not a Firedrake function space.
    SpaceMismatchError
        A space not on a hierarchy level, spaces on two hierarchies, ``V_coarse`` not
        on a coarser level than ``V_fine``, or different value shapes.
    UnsupportedSpaceError
        A mixed or ``Real`` space.

    Notes
    -----
    Each level is ``firedrake.mg.interface.assemble_prolongation_aij(Vc, Vf)``
    (Firedrake 2026.10): the same point-location and dual-evaluation kernel as
    ``prolong``, assembled into a matrix, so each fine node is evaluated in the same
    coarse cell as ``prolong`` picks (this matters for discontinuous spaces, where a
    cross-mesh :func:`interpolation_matrix` could pick the neighbouring cell).  Fine
    spaces without point-evaluation DOFs go through a quadrature space, as in
    ``prolong``.
    """
    hierarchy, i_c, i_f = _check_levels(V_coarse, V_fine)
    meshes = hierarchy._meshes  # every refinement, as prolong walks them
    P = None
    Vc = V_coarse
    for i in range(i_c + 1, i_f + 1):
        Vf = V_fine if i == i_f else V_fine.reconstruct(mesh=meshes[i])
        step = petsc_to_scipy(assemble_prolongation_aij(Vc, Vf).petscmat)
        P = step if P is None else (step @ P).tocsr()
        Vc = Vf
    return _drop_roundoff(P)


def level_prolongations(V: fd.FunctionSpace, levels: int | None = None) -> list[Any]:
    """The prolongations between consecutive levels of ``V``'s mesh hierarchy, as PETSc matrices.

    Unlike the scipy functions of this module, this works on distributed meshes (any
    number of processes): each matrix is an AIJ ``petsc4py.PETSc.Mat`` with the rows
    and columns of the spaces' own layouts, for PETSc's multigrid.

    Parameters
    ----------
    V
        A space on a level of a ``MeshHierarchy`` (e.g. on ``load_mesh("unitsquare:16/r4")``).
    levels
        Use the finest ``levels`` levels up to ``V``'s (default: all from the coarsest).

    Returns
    -------
    list of petsc4py.PETSc.Mat
        ``P_l`` from level ``l - 1`` to level ``l``, coarsest first (``levels - 1`` of
        them); ``P_l`` times a coarse Function's vector is ``prolong`` of it.  As in
        :func:`prolongation_matrix`, entries below ``1e-12`` times their row's largest are
        not stored (for CG1 on triangles that halves the entries, and with them the cost of
        every Galerkin product and grid transfer built on these matrices).

    Raises
    ------
    NoHierarchyError
        ``V``'s mesh is not a level of a ``MeshHierarchy``.
    ValueError
        ``levels`` below 1 or above the levels available.
    """
    from fe_operators.errors import NoHierarchyError

    _check_space(V, "V")
    hierarchy, level = mg_utils.get_level(V.mesh().unique())
    if hierarchy is None or level != int(level):
        raise NoHierarchyError(
            "the space's mesh is not a level of a MeshHierarchy: use a mesh spec with /rK refinements "
            "(--mesh unitsquare:16/r4 on the command line, load_mesh('unitsquare:16/r4') in Python), or build "
            "it with firedrake.MeshHierarchy(base, k)[-1]")
    level = int(level)
    n = level + 1 if levels is None else int(levels)
    if not 1 <= n <= level + 1:
        raise ValueError(f"levels={levels}: the hierarchy has {level + 1} levels up to this mesh; "
                         f"ask for 1 to {level + 1}")
    rpl = hierarchy.refinements_per_level
    meshes = hierarchy._meshes  # every refinement (refinements_per_level > 1 adds intermediate ones)
    out = []
    for lev in range(level - n + 2, level + 1):
        P = None
        Vc = V.reconstruct(mesh=meshes[(lev - 1) * rpl])
        for i in range((lev - 1) * rpl + 1, lev * rpl + 1):
            Vf = V.reconstruct(mesh=meshes[i])
            step = assemble_prolongation_aij(Vc, Vf).petscmat
            P = step if P is None else step.matMult(P)
            Vc = Vf
        out.append(_drop_roundoff_aij(P))
    return out


def prolongation_matrix_torch(
    V_coarse: fd.FunctionSpace,
    V_fine: fd.FunctionSpace,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """:func:`prolongation_matrix` as a torch sparse CSR tensor of the given dtype/device."""
    return scipy_to_torch(prolongation_matrix(V_coarse, V_fine), dtype, device)


def restriction_matrix(V_fine: fd.FunctionSpace, V_coarse: fd.FunctionSpace) -> sp.csr_matrix:
    """The restriction of dual vectors between two levels of a mesh hierarchy.

    ``R = prolongation_matrix(V_coarse, V_fine).T``: ``R @ rf.dat.data_ro.ravel()`` equals
    ``firedrake.restrict(rf, rc).dat.data_ro.ravel()`` for every Cofunction ``rf`` on
    ``V_fine.dual()`` (an assembled right-hand side or residual).  Argument order follows
    ``firedrake.restrict(fine_dual, coarse_dual)``.

    Parameters
    ----------
    V_fine, V_coarse
        As for :func:`prolongation_matrix` (primal spaces, or their duals).

    Returns
    -------
    scipy.sparse.csr_matrix
        float64, shape ``(dim V_coarse, dim V_fine)``, exactly the transpose of the
        prolongation matrix.

    Raises
    ------
    TypeError, SpaceMismatchError, UnsupportedSpaceError
        As :func:`prolongation_matrix`.
    """
    return prolongation_matrix(_primal(V_coarse), _primal(V_fine)).T.tocsr()


def restriction_matrix_torch(
    V_fine: fd.FunctionSpace,
    V_coarse: fd.FunctionSpace,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """:func:`restriction_matrix` as a torch sparse CSR tensor of the given dtype/device."""
    return scipy_to_torch(restriction_matrix(V_fine, V_coarse), dtype, device)
