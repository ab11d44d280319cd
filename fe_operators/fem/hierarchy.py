"""Per-level finite element operators of a mesh hierarchy, as scipy objects.

A multigrid model on finite elements needs, on every level of a nested
``firedrake.MeshHierarchy``, a few fixed sparse operators of the level's mesh (mass,
stiffness split by derivative directions, first-derivative operators), all on the
level's node adjacency, plus the exact FE prolongations between levels.
:func:`hierarchy_operators` assembles them with Firedrake once and returns plain numpy /
scipy objects (:class:`HierarchyOperators`); the torch side stacks them.

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

import dataclasses
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

__all__ = [
    "LevelOperators",
    "HierarchyOperators",
    "hierarchy_operators",
    "find_hierarchy",
    "operator_names",
    "COORDINATE_MATCH_RTOL",
]

#: Tolerance of the coordinate match of output nodes to finest-level nodes, relative to
#: the diagonal of the domain's bounding box.
COORDINATE_MATCH_RTOL: float = 1e-12

_AXES = "xyz"
# Built-in structured meshes are coarsened until a side would have fewer cells than this.
_MIN_COARSE_CELLS = 2
_STRUCTURED = ("UnitSquareMesh", "RectangleMesh", "UnitCubeMesh", "BoxMesh")


def operator_names(gdim: int) -> tuple[str, ...]:
    """The keys of :attr:`LevelOperators.operators`, in their order, for dimension ``gdim``.

    ``("mass", "K_xx", "K_yy", "K_xy", "C_x", "C_y")`` in 2D;
    ``("mass", "K_xx", "K_yy", "K_zz", "K_xy", "K_xz", "K_yz", "C_x", "C_y", "C_z")`` in 3D.
    """
    if gdim not in (1, 2, 3):
        raise ValueError(f"expected a geometric dimension 1, 2 or 3, got {gdim}")
    ax = _AXES[:gdim]
    return (("mass",) + tuple(f"K_{a}{a}" for a in ax)
            + tuple(f"K_{ax[i]}{ax[j]}" for i in range(gdim) for j in range(i + 1, gdim))
            + tuple(f"C_{a}" for a in ax))


@dataclasses.dataclass(frozen=True)
class LevelOperators:
    r"""The fixed FE operators of one hierarchy level on its scalar node space.

    With :math:`\phi_i` the level's nodal basis (scalar element of the output space),
    ``j`` the column (trial) and ``i`` the row (test) index:

    * ``"mass"``: :math:`M_{ij} = \int \phi_j \phi_i`;
    * ``"K_aa"`` (``K_xx``, ``K_yy``, ``K_zz``): :math:`\int \partial_a\phi_j\,\partial_a\phi_i`;
    * ``"K_ab"``, a < b (``K_xy``, ``K_xz``, ``K_yz``): the symmetrised
      :math:`\int (\partial_a\phi_j\,\partial_b\phi_i + \partial_b\phi_j\,\partial_a\phi_i)`;
    * ``"C_a"``: :math:`\int \partial_a\phi_j\,\phi_i`.

    The sum of the ``K_aa`` is the Laplacian stiffness matrix.  Keys are in the order
    of :func:`operator_names`.  Every operator is float64 CSR with sorted indices and
    *the same* ``indptr``/``indices`` (the level's node adjacency; explicit zeros where
    an operator vanishes), so they can be stacked as one pattern with several values.

    Attributes
    ----------
    coords
        Node coordinates.
    lumped_mass
        Row sums of the mass matrix, ``assemble(TestFunction(V) * dx)``.  For CG1 they
        are positive; for CG2 on simplices the vertex entries are zero (triangles) or
        negative (tetrahedra), so do not divide by them there.
    stiffness_diag
        The diagonal of the Laplacian stiffness matrix.
    h
        Mean over cells of the cell diameter (longest vertex distance, Firedrake's
        ``CellDiameter``); halves with each uniform refinement of a triangle mesh.
    operators
        ``{name: csr_matrix}``, see above.
    boundary
        Nodes constrained by the Dirichlet conditions on this level (a node is
        constrained if any component is).
    coefficient_stiffness
        ``H`` with ``H @ a`` the values, on the operators' pattern, of the stiffness
        matrix ``∫ a ∇φ_j·∇φ_i`` of a nodal coefficient ``a``
        (:func:`fe_operators.fem.coefficient.coefficient_stiffness_map`), for P1 levels on
        simplices; None otherwise.

    Shapes
    ------
    coords ``(n_l, gdim)``; lumped_mass, stiffness_diag, boundary ``(n_l,)``;
    each operator ``(n_l, n_l)``.
    """

    coords: np.ndarray
    lumped_mass: np.ndarray
    stiffness_diag: np.ndarray
    h: float
    operators: dict[str, sp.csr_matrix]
    boundary: np.ndarray
    coefficient_stiffness: sp.csr_matrix | None = None

    @property
    def n_nodes(self) -> int:
        """Number of nodes ``n_l`` of the level's scalar node space."""
        return int(self.coords.shape[0])

    @property
    def stiffness(self) -> sp.csr_matrix:
        """The Laplacian stiffness matrix, the sum of the ``K_aa`` (same pattern)."""
        gdim = self.coords.shape[1]
        K = self.operators["K_xx"].copy()
        for a in _AXES[1:gdim]:
            K.data += self.operators[f"K_{a}{a}"].data
        return K


@dataclasses.dataclass(frozen=True)
class HierarchyOperators:
    """Per-level operators and prolongations of a mesh hierarchy (coarsest level first).

    Attributes
    ----------
    levels
        One :class:`LevelOperators` per level, coarsest first.
    prolongations
        ``prolongations[l - 1]`` is ``P_l``, level ``l - 1`` -> level ``l``, the exact FE
        prolongation (``P @ u_coarse == firedrake.prolong(u_coarse)``); restriction of
        dual vectors (residuals) is ``P_l.T``.  ``len(levels) - 1`` matrices.
    to_finest
        Output-space nodes -> finest-level nodes (a permutation), or ``None`` when the
        finest level *is* the output's node space in the same order.  For a vector
        output apply it to each component: ``to_finest @ dofs.reshape(n_out, ncomp)``.
    from_finest
        The inverse permutation, ``to_finest.T`` (``None`` with it).

    Shapes
    ------
    prolongations[l - 1] ``(n_l, n_{l-1})``; to_finest ``(n_finest, n_out)``;
    from_finest ``(n_out, n_finest)``.
    """

    levels: tuple[LevelOperators, ...]
    prolongations: tuple[sp.csr_matrix, ...]
    to_finest: sp.csr_matrix | None
    from_finest: sp.csr_matrix | None

    @property
    def names(self) -> tuple[str, ...]:
        """The operator keys, as :func:`operator_names`."""
        return tuple(self.levels[0].operators)


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


def _on_common_pattern(mats: Sequence[sp.csr_matrix]) -> list[sp.csr_matrix]:
    """The matrices on the union of their patterns: one ``indptr``/``indices`` for all.

    Entries of the union that a matrix does not store become explicit zeros.
    """
    canon = []
    for A in mats:
        A = sp.csr_matrix(A, copy=True)
        A.sum_duplicates()  # also sorts the indices
        canon.append(A)
    n_rows, n_cols = canon[0].shape
    keys = [np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(A.indptr)) * n_cols
            + A.indices.astype(np.int64) for A in canon]
    union = np.unique(np.concatenate(keys))  # sorted: row-major, sorted columns
    rows, cols = np.divmod(union, n_cols)
    indptr = np.searchsorted(rows, np.arange(n_rows + 1)).astype(np.int64)
    out = []
    for A, key in zip(canon, keys):
        data = np.zeros(union.size)
        data[np.searchsorted(union, key)] = A.data
        B = sp.csr_matrix((data, cols.copy(), indptr.copy()), shape=(n_rows, n_cols))
        B.has_sorted_indices = True
        out.append(B)
    return out


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


def _level_operators(V: fd.FunctionSpace, bcs: Sequence[fd.DirichletBC]) -> LevelOperators:
    """Assemble the :class:`LevelOperators` of the scalar space ``V``."""
    mesh = V.mesh()
    forms = _forms(V)
    mats = dict(zip(forms, _on_common_pattern([assemble_scipy(f) for f in forms.values()])))
    lumped = fd.assemble(fd.TestFunction(V) * fd.dx)
    diag = sum(mats[f"K_{a}{a}"].diagonal() for a in _AXES[: mesh.geometric_dimension])
    diam = fd.assemble(fd.interpolate(fd.CellDiameter(mesh), fd.FunctionSpace(mesh, "DG", 0)))
    pattern = mats["mass"]
    coefficient = (coefficient_stiffness_map(V, pattern.indptr, pattern.indices)
                   if supports_coefficient_stiffness(V) else None)
    return LevelOperators(
        coords=_node_coords(V),
        lumped_mass=np.array(lumped.dat.data_ro, dtype=np.float64),
        stiffness_diag=np.asarray(diag, dtype=np.float64),
        h=float(np.mean(diam.dat.data_ro)),
        operators=mats,
        boundary=_boundary_mask(V, bcs),
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
) -> HierarchyOperators:
    """The per-level FE operators and prolongations of the output space's mesh hierarchy.

    Parameters
    ----------
    output_space
        The (scalar, vector or tensor) continuous Lagrange space of the data; its scalar
        element is the node space of every level.
    bcs
        Dirichlet conditions on ``output_space`` (or its subspaces); their
        ``sub_domain`` markers give each level's :attr:`LevelOperators.boundary`.
    levels
        Use only the finest ``levels`` levels (default: all).
    mesh_spec
        The spec the data was generated on (``FEFile(...).provenance["mesh"]``), used
        when ``output_space``'s mesh is not a hierarchy level: see the module docstring.

    Returns
    -------
    HierarchyOperators

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
    ops = tuple(_level_operators(V, bcs) for V in spaces)
    prolongations = tuple(prolongation_matrix(Vc, Vf) for Vc, Vf in zip(spaces[:-1], spaces[1:]))
    to_finest = from_finest = None
    if not same_mesh:
        what = f"the hierarchy of {mesh_spec!r}"
        perm = _match_nodes(_node_coords(fd.FunctionSpace(mesh, elem)), ops[-1].coords, what)
        if not np.array_equal(perm, np.arange(perm.size)):
            n = perm.size
            to_finest = sp.csr_matrix((np.ones(n), (perm, np.arange(n))), shape=(n, n))
            from_finest = to_finest.T.tocsr()
    return HierarchyOperators(ops, prolongations, to_finest, from_finest)
