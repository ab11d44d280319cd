r"""Per-level finite element operators of a mesh hierarchy, assembled with Firedrake.

A multigrid model on finite elements needs, on every level of a nested
``firedrake.MeshHierarchy``, a few fixed sparse operators of the level's mesh, all on the
level's node adjacency, plus the exact FE prolongations between levels.
:func:`hierarchy_operators` assembles them with Firedrake once and returns them as the
package's one multigrid hierarchy type, :class:`~fe_operators.multigrid.hierarchy.Hierarchy`
(float64 tensors; :func:`level_operators` makes one level).

The operators of a level (:func:`~fe_operators.multigrid.hierarchy.operator_names`), with
:math:`\phi_i` the level's nodal basis, ``j`` the column (trial) and ``i`` the row (test):

* ``"mass"``: :math:`M_{ij} = \int \phi_j \phi_i`;
* ``"K_aa"`` (``K_xx``, ``K_yy``, ``K_zz``): :math:`\int \partial_a\phi_j\,\partial_a\phi_i`
  (their sum is the Laplacian stiffness matrix);
* ``"K_ab"``, a < b: the symmetrised
  :math:`\int (\partial_a\phi_j\,\partial_b\phi_i + \partial_b\phi_j\,\partial_a\phi_i)`;
* ``"C_a"``: :math:`\int \partial_a\phi_j\,\phi_i`;

all float64 on one sorted pattern (explicit zeros where an operator vanishes), stacked
by rows.  The level's ``lumped_mass`` is ``assemble(TestFunction(V) * dx)`` (for CG2 on
simplices the vertex entries are zero or negative: do not divide by it there), ``h`` the
mean ``CellDiameter``, ``boundary`` the nodes on the conditions' sub-domains (any
component), ``coefficient_map`` the coefficient-stiffness map on P1 simplex levels.

Which hierarchy (:func:`find_hierarchy`):

1. the output mesh is a level of a ``MeshHierarchy`` (a ``/rK`` mesh spec,
   :func:`fe_operators.io.load_mesh`): its levels from the coarsest up to that mesh;
2. else ``mesh_spec`` (the spec the data was generated on, as recorded in a data file's
   provenance) with a ``/rK`` suffix: the hierarchy of that spec is rebuilt;
3. else ``mesh_spec`` a built-in structured spec (``unitsquare:64``): its counts are
   halved as often as they stay even and at least 2, ``MeshHierarchy(unitsquare:2, 5)``;

in cases 2 and 3 the output's nodes are matched to the finest level's nodes by their
coordinates (``to_finest``/``from_finest``, permutations).  Otherwise
:class:`~fe_operators.errors.NoHierarchyError`.

The node space of each level is the *scalar* element of the output space (CG2 for a
vector CG2 output) on that level's mesh; vector outputs use it per component.  Serial
(``COMM_SELF``-sized) meshes only, like the rest of ``fem/``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

import finat.ufl
import firedrake as fd
from firedrake.mg.utils import get_level

from fe_operators.errors import NoHierarchyError, SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem.coefficient import coefficient_stiffness_map, supports_coefficient_stiffness
from fe_operators.fem.assembly import assemble_scipy
from fe_operators.fem.transfer import prolongation_matrix
from fe_operators.multigrid.hierarchy import Hierarchy, Level, on_common_pattern, operator_names
from fe_operators.sparse.maps import SparseMap

__all__ = ["hierarchy_operators", "find_hierarchy", "level_operators", "COORDINATE_MATCH_RTOL"]

#: Tolerance of the coordinate match of output nodes to finest-level nodes, relative to
#: the diagonal of the domain's bounding box.
COORDINATE_MATCH_RTOL: float = 1e-12

_AXES = "xyz"
# Built-in structured meshes are coarsened until a side would have fewer cells than this.
_MIN_COARSE_CELLS = 2
_STRUCTURED = ("UnitSquareMesh", "RectangleMesh", "UnitCubeMesh", "BoxMesh")


# ----------------------------------------------------------------- which hierarchy


def _coarsened_builtin(source: Any) -> tuple[str, tuple[Any, ...], dict[str, Any], int]:
    """The coarsest built-in mesh a structured spec refines into, and how many times.

    Returns
    -------
    tuple
        ``(constructor, positional args, kwargs, refinements)``.
    """
    ctor, args, kwargs = source.builtin
    dim = 2 if ctor in ("UnitSquareMesh", "RectangleMesh") else 3
    counts = np.array(args[:dim], dtype=np.int64)
    k = 0
    while np.all(counts % 2 ** (k + 1) == 0) and np.all(counts // 2 ** (k + 1) >= _MIN_COARSE_CELLS):
        k += 1
    coarse = tuple(int(c) for c in counts // 2**k) + tuple(args[dim:])
    return ctor, coarse, dict(kwargs), k


def _no_hierarchy(mesh_spec: str | None, why: str = "") -> NoHierarchyError:
    base = "plate_holes"
    if mesh_spec is not None:
        from fe_operators.io.specs import resolve_mesh_spec

        try:
            base = resolve_mesh_spec(mesh_spec).base_spec
        except Exception:  # any spec we cannot read: suggest the generic example
            pass
    return NoHierarchyError(
        f"the mesh of this data has no MeshHierarchy{why}: generate the data on a refined "
        f"spec such as '{base}/r2' (fe-operators generate ... --mesh {base}/r2)"
    )


def find_hierarchy(mesh: fd.MeshGeometry, mesh_spec: str | None = None) -> tuple[Any, int]:
    """The mesh hierarchy a mesh belongs to, or the one its spec describes.

    Parameters
    ----------
    mesh
        The mesh of the data.
    mesh_spec
        The mesh spec the data was generated on (a data file's ``provenance["mesh"]``);
        used only when ``mesh`` is not itself a hierarchy level.

    Returns
    -------
    tuple
        ``(hierarchy, level)``: a ``firedrake`` ``HierarchyBase`` and the index of the
        level that corresponds to ``mesh``.  ``hierarchy[level] is mesh`` when ``mesh``
        is a level (case 1 of the module docstring); otherwise ``level`` is the finest,
        a mesh of the same domain whose nodes :func:`hierarchy_operators` matches to
        ``mesh``'s by coordinates.  Use ``hierarchy`` with Firedrake's own multigrid.

    Raises
    ------
    NoHierarchyError
        No hierarchy: ``mesh`` is not a level and ``mesh_spec`` is missing, has no
        ``/rK`` suffix and is no built-in structured spec with even cell counts.
    """
    hierarchy, level = get_level(mesh)
    if hierarchy is not None:
        if level != int(level):
            raise NoHierarchyError(f"the mesh is an intermediate refinement (level {level}) "
                                   "of a MeshHierarchy; use one of its levels")
        return hierarchy, int(level)
    if mesh_spec is None:
        raise _no_hierarchy(None)
    from fe_operators.io.readers import load_hierarchy
    from fe_operators.io.specs import resolve_mesh_spec

    source = resolve_mesh_spec(mesh_spec)
    if source.refinements is not None:
        hierarchy, _ = load_hierarchy(mesh_spec, comm=mesh.comm)
        return hierarchy, len(hierarchy) - 1
    if source.builtin is None or source.builtin[0] not in _STRUCTURED:
        raise _no_hierarchy(mesh_spec)
    ctor, args, kwargs, k = _coarsened_builtin(source)
    if k == 0:
        raise _no_hierarchy(mesh_spec, f" and {mesh_spec!r} has no even cell counts to "
                                       "coarsen")
    coarse = getattr(fd, ctor)(*args, **kwargs, comm=mesh.comm)
    hierarchy = fd.MeshHierarchy(coarse, k)
    return hierarchy, k


# ------------------------------------------------------------------ level pieces


def _scalar_element(V: Any) -> Any:
    """The scalar element of a (non-mixed) continuous Lagrange space, else raise."""
    if not isinstance(V, fd.functionspaceimpl.WithGeometryBase):
        raise TypeError(f"output_space: expected a Firedrake FunctionSpace, got {type(V).__name__}")
    if len(V) > 1:
        raise UnsupportedSpaceError(
            f"output_space: mixed spaces ({len(V)} subspaces) have no single node space; "
            "build the hierarchy operators for one subspace"
        )
    elem = V.ufl_element()
    if isinstance(elem, (finat.ufl.VectorElement, finat.ufl.TensorElement)):
        elem = elem.sub_elements[0]
    if elem.family() not in ("Lagrange", "Q"):
        raise UnsupportedSpaceError(
            f"output_space: hierarchy operators need a continuous Lagrange (CG/Q) element, "
            f"got {elem.family()!r}"
        )
    return elem


def _node_coords(V: fd.FunctionSpace) -> np.ndarray:
    """Coordinates of the nodes of the scalar Lagrange space ``V``, shape ``(n, gdim)``."""
    mesh = V.mesh()
    W = fd.VectorFunctionSpace(mesh, V.ufl_element())
    X = fd.assemble(fd.interpolate(fd.SpatialCoordinate(mesh), W))
    return np.array(X.dat.data_ro, dtype=np.float64).reshape(-1, mesh.geometric_dimension)


def _forms(V: fd.FunctionSpace) -> dict[str, Any]:
    """The bilinear forms of :func:`operator_names`, by name."""
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    d = V.mesh().geometric_dimension
    forms = {"mass": u * v * fd.dx}
    for a in range(d):
        forms[f"K_{_AXES[a]}{_AXES[a]}"] = u.dx(a) * v.dx(a) * fd.dx
    for a in range(d):
        for b in range(a + 1, d):
            forms[f"K_{_AXES[a]}{_AXES[b]}"] = (u.dx(a) * v.dx(b) + u.dx(b) * v.dx(a)) * fd.dx
    for a in range(d):
        forms[f"C_{_AXES[a]}"] = u.dx(a) * v * fd.dx
    assert tuple(forms) == operator_names(d)
    return forms


def _sub_domain(bc: fd.DirichletBC) -> Any:
    """The ``sub_domain`` of ``bc`` as ``DirichletBC`` accepts it again."""
    sub = bc.sub_domain
    if isinstance(sub, tuple) and len(sub) == 1 and isinstance(sub[0], str):
        return sub[0]  # Firedrake stores "on_boundary" as ("on_boundary",)
    return sub


def _boundary_mask(V: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC]) -> np.ndarray:
    """Nodes of ``V`` on the sub-domains of ``bcs`` (any component counts)."""
    mask = np.zeros(V.dof_dset.size, dtype=bool)
    for bc in bcs:
        mask[np.asarray(fd.DirichletBC(V, 0.0, _sub_domain(bc)).nodes, dtype=np.int64)] = True
    return mask


def level_operators(V: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC]) -> Level:
    """Assemble the :class:`~fe_operators.multigrid.hierarchy.Level` of the scalar space ``V`` (module docstring)."""
    mesh = V.mesh()
    forms = _forms(V)
    mats = dict(zip(forms, on_common_pattern([assemble_scipy(f) for f in forms.values()])))
    lumped = fd.assemble(fd.TestFunction(V) * fd.dx)
    diag = sum(mats[f"K_{a}{a}"].diagonal() for a in _AXES[: mesh.geometric_dimension])
    diam = fd.assemble(fd.interpolate(fd.CellDiameter(mesh), fd.FunctionSpace(mesh, "DG", 0)))
    pattern = mats["mass"]
    coefficient = (coefficient_stiffness_map(V, pattern.indptr, pattern.indices)
                   if supports_coefficient_stiffness(V) else None)
    return Level.from_scipy(
        mats, _boundary_mask(V, bcs),
        coords=_node_coords(V),
        lumped_mass=np.array(lumped.dat.data_ro, dtype=np.float64),
        stiffness_diag=np.asarray(diag, dtype=np.float64),
        h=float(np.mean(diam.dat.data_ro)),
        coefficient_stiffness=coefficient,
    )


def _match_nodes(x_out: np.ndarray, x_fine: np.ndarray, what: str) -> np.ndarray:
    """``perm`` with ``x_fine[perm[i]] == x_out[i]`` (to round-off), checked to be a bijection."""
    if x_out.shape != x_fine.shape:
        raise SpaceMismatchError(
            f"the output space has {x_out.shape[0]} nodes but the finest level of {what} has "
            f"{x_fine.shape[0]}: the data was not generated on this hierarchy's finest mesh"
        )
    scale = float(np.linalg.norm(x_fine.max(axis=0) - x_fine.min(axis=0))) or 1.0
    dist, perm = cKDTree(x_fine).query(x_out, k=1)
    bad = np.flatnonzero(dist > COORDINATE_MATCH_RTOL * scale)
    if bad.size or np.unique(perm).size != perm.size:
        raise SpaceMismatchError(
            f"{bad.size} of the output space's {x_out.shape[0]} nodes (first at "
            f"{x_out[bad[0]].tolist() if bad.size else '-'}) have no node at the same place "
            f"on the finest level of {what}, or two share one: the meshes differ (on a "
            "built-in spec only the vertices are shared: use CG1, or generate the data on "
            "a '/rK' spec)"
        )
    return perm.astype(np.int64)


def _check_dirichlet(bcs: Sequence[Any], V: fd.FunctionSpace) -> list[fd.DirichletBC]:
    bcs = [bcs] if isinstance(bcs, fd.DirichletBC) else list(bcs)
    for bc in bcs:
        if not isinstance(bc, fd.DirichletBC):
            raise TypeError(f"bcs: expected DirichletBC objects, got {type(bc).__name__}")
        if bc.function_space().mesh().unique() is not V.mesh().unique():
            raise SpaceMismatchError("bcs: a DirichletBC is on another mesh than output_space")
    return bcs


# ---------------------------------------------------------------------- public API


def hierarchy_operators(
    output_space: fd.FunctionSpace,
    bcs: Sequence[fd.DirichletBC] | fd.DirichletBC = (),
    *,
    levels: int | None = None,
    mesh_spec: str | None = None,
) -> Hierarchy:
    """The per-level FE operators and prolongations of the output space's mesh hierarchy.

    Parameters
    ----------
    output_space
        The (scalar, vector or tensor) continuous Lagrange space of the data; its scalar
        element is the node space of every level.
    bcs
        Dirichlet conditions on ``output_space`` (or its subspaces); their
        ``sub_domain`` markers give each level's level's ``boundary``.
    levels
        Use only the finest ``levels`` levels (default: all).
    mesh_spec
        The spec the data was generated on (``FEFile(...).provenance["mesh"]``), used
        when ``output_space``'s mesh is not a hierarchy level: see the module docstring.

    Returns
    -------
    Hierarchy
        Levels coarsest first; ``to_finest``/``from_finest`` when the output's nodes are
        matched to another mesh's.

    Raises
    ------
    NoHierarchyError
        No hierarchy for this mesh (the message says which spec to generate on).
    SpaceMismatchError
        The output's nodes do not match the finest level's (other mesh), or a
        DirichletBC on another mesh.
    UnsupportedSpaceError
        A mixed or non-Lagrange output space.
    ValueError
        ``levels`` below 1 or above the number of levels available.
    NotImplementedError
        A mesh on more than one process.

    Examples
    --------
    >>> mesh = load_mesh("plate_holes/r2")                                # doctest: +SKIP
    >>> V = FunctionSpace(mesh, "CG", 1)                                  # doctest: +SKIP
    >>> ops = hierarchy_operators(V, [DirichletBC(V, 0, "on_boundary")])  # doctest: +SKIP
    >>> [lev.n_nodes for lev in ops.levels]                               # doctest: +SKIP
    [867, 3286, 12774]
    """
    elem = _scalar_element(output_space)
    mesh = output_space.mesh().unique()
    if mesh.comm.size > 1:
        raise NotImplementedError("hierarchy operators are built on one process; use COMM_SELF meshes")
    if mesh.topological_dimension != mesh.geometric_dimension:
        raise UnsupportedSpaceError("hierarchy operators need a mesh of full dimension, "
                                    "not a manifold immersed in a higher dimension")
    bcs = _check_dirichlet(bcs, output_space)
    hierarchy, level = find_hierarchy(mesh, mesh_spec)
    meshes = list(hierarchy.meshes[: level + 1])
    if levels is not None:
        if not 1 <= int(levels) <= len(meshes):
            raise ValueError(f"levels={levels}: the hierarchy has {len(meshes)} levels up to "
                             f"this mesh; ask for 1 to {len(meshes)}")
        meshes = meshes[len(meshes) - int(levels):]
    spaces = [fd.FunctionSpace(m, elem) for m in meshes]
    same_mesh = meshes[-1] is mesh
    # Every level carries the base mesh's markers, so each condition's sub_domain applies.
    ops = tuple(level_operators(V, bcs) for V in spaces)
    prolongations = tuple(prolongation_matrix(Vc, Vf) for Vc, Vf in zip(spaces[:-1], spaces[1:]))
    to_finest = from_finest = None
    if not same_mesh:
        what = f"the hierarchy of {mesh_spec!r}"
        perm = _match_nodes(_node_coords(fd.FunctionSpace(mesh, elem)), ops[-1].coords.numpy(), what)
        if not np.array_equal(perm, np.arange(perm.size)):
            n = perm.size
            to_finest = sp.csr_matrix((np.ones(n), (perm, np.arange(n))), shape=(n, n))
            from_finest = to_finest.T.tocsr()
    maps = [None if M is None else SparseMap.from_scipy(M) for M in (to_finest, from_finest)]
    return Hierarchy(ops, tuple(SparseMap.from_scipy(P) for P in prolongations), *maps)
