"""Barycentric (Alfeld) refinement of a triangle mesh and the exact embedding of P2 into it.

The Alfeld split joins every triangle's vertices to its barycentre: each cell becomes
three, no edge of the original mesh is split, so the original boundary edges (and their
markers) are boundary edges of the refined mesh.  It is the mesh on which the
Scott–Vogelius pair (continuous P2 velocity, discontinuous P1 pressure) is inf-sup
stable and ``div`` maps the velocity space *into* the pressure space
(:mod:`fe_operators.fem.leray`).

Refinement: PETSc's DMPlex transform ``refine_alfeld`` applied to the mesh's own plex
(the route Firedrake uses for its ``diagonal="crossed"`` quadrilateral splits), so the
``Face Sets`` labels (boundary markers) travel with the facets; then
``firedrake.Mesh(plex)``.

Embedding: a P2 function on a triangle is a P2 function on each of its three
sub-triangles, so the P2 space of the mesh is a subspace of the P2 space of the refined
mesh, and interpolation into the refined space is the identity on it.  Its matrix
(:func:`p2_embedding`) is Firedrake's cross-mesh interpolation matrix with its entries
snapped to the exact values, which are multiples of 1/9 (a P2 Lagrange basis function at
the barycentre is ``-1/9`` (vertex) or ``4/9`` (edge), at the midpoint of a new edge
``2/9, -1/9, 4/9`` or ``1/9``): the rows of the refined nodes that are nodes of the
original mesh (every vertex and edge midpoint) become unit rows, so copying values through
them is exact to the bit, and every other entry carries only the rounding of ``k/9``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.errors import UnsupportedSpaceError
from fe_operators.fem.transfer import interpolation_matrix

__all__ = ["alfeld_refine", "P2Embedding", "p2_embedding"]

#: entries of the snapped embedding are integer multiples of this
_UNIT = 1.0 / 9.0
#: the largest distance of an interpolation entry from a multiple of 1/9 that is round-off
_SNAP_TOL = 1e-8

#: labels Firedrake derives from a plex itself (those of the parent would be wrong for the child)
_DERIVED_LABELS = ("exterior_facets", "interior_facets", "pyop2_core", "pyop2_owned", "pyop2_ghost")


def alfeld_refine(mesh: fd.MeshGeometry, name: str | None = None) -> fd.MeshGeometry:
    """The barycentric (Alfeld) refinement of a 2D triangle mesh, boundary markers kept.

    Parameters
    ----------
    mesh
        A serial 2D mesh of triangles with affine coordinates.
    name
        Name of the new mesh (default: ``"<mesh name>_alfeld"``).

    Returns
    -------
    firedrake.MeshGeometry
        Three triangles per cell; vertices: the original ones and one per cell (its
        barycentre); the exterior facets are the original ones with their markers.

    Raises
    ------
    UnsupportedSpaceError
        Not a 2D triangle mesh, curved coordinates, or more than one process.
    """
    cell = mesh.ufl_cell().cellname
    if cell != "triangle" or mesh.geometric_dimension != 2:
        raise UnsupportedSpaceError(f"the Alfeld refinement here needs a 2D triangle mesh, got {cell} cells in "
                                    f"{mesh.geometric_dimension}D (Scott–Vogelius P2 is stable on Alfeld splits "
                                    "of triangles only)")
    if mesh.coordinates.function_space().ufl_element().degree() != 1:
        raise UnsupportedSpaceError("the Alfeld refinement needs affine (degree-1) coordinates; the mesh is curved")
    if mesh.comm.size != 1:
        raise UnsupportedSpaceError(f"the Alfeld refinement runs on one process; the mesh is distributed over "
                                    f"{mesh.comm.size}")
    plex = mesh.topology_dm
    tr = PETSc.DMPlexTransform().create(comm=plex.comm)
    tr.setType(PETSc.DMPlexTransformType.REFINEALFELD)
    tr.setDM(plex)
    tr.setUp()
    refined = tr.apply(plex)
    tr.destroy()
    for label in _DERIVED_LABELS:
        if refined.hasLabel(label):
            refined.removeLabel(label)
    return fd.Mesh(refined, name=name or f"{mesh.name}_alfeld", reorder=False)


@dataclasses.dataclass(frozen=True, eq=False)
class P2Embedding:
    """P2 of a mesh inside P2 of its Alfeld refinement (scalar node maps).

    Attributes
    ----------
    matrix
        ``(n_fine, n_coarse)`` CSR float64: the nodal values on the refined mesh of a P2
        function of the mesh (scalar nodes; apply per component).  Entries are multiples of
        1/9; the rows of :attr:`coarse_of_fine` nodes are unit rows.
    fine_of_coarse
        ``(n_coarse,)`` int64: the refined node at each original node (every original P2
        node is one: vertices and edge midpoints).
    """

    matrix: sp.csr_matrix
    fine_of_coarse: np.ndarray

    @property
    def n_coarse(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def n_fine(self) -> int:
        return int(self.matrix.shape[0])

    def vector(self, ncomp: int) -> sp.csr_matrix:
        """The embedding of a vector field with ``ncomp`` components on interleaved DOFs."""
        return sp.csr_matrix(sp.kron(self.matrix, sp.identity(ncomp, format="csr"), format="csr"))

    def vector_index(self, ncomp: int) -> np.ndarray:
        """:attr:`fine_of_coarse` on interleaved DOFs: ``(n_coarse * ncomp,)`` int64."""
        return (self.fine_of_coarse[:, None] * ncomp + np.arange(ncomp)[None, :]).reshape(-1)


def p2_embedding(V: fd.FunctionSpace, V_fine: fd.FunctionSpace) -> P2Embedding:
    """The exact embedding of scalar P2 on a mesh into scalar P2 on its Alfeld refinement.

    Parameters
    ----------
    V
        Scalar ``CG2`` on the mesh.
    V_fine
        Scalar ``CG2`` on :func:`alfeld_refine` of it.

    Returns
    -------
    P2Embedding

    Raises
    ------
    UnsupportedSpaceError
        The spaces are not scalar P2, or the interpolation matrix is not one of an Alfeld
        split (an entry further than round-off from a multiple of 1/9, or an original node
        that is not a refined node).
    """
    for W in (V, V_fine):
        el = W.ufl_element()
        if W.block_size != 1 or el.family() not in ("Lagrange", "Q") or el.degree() != 2:
            raise UnsupportedSpaceError(f"p2_embedding needs scalar CG2 spaces, got {el}")
    E = sp.csr_matrix(interpolation_matrix(V, V_fine))
    k = np.rint(E.data / _UNIT)
    off = float(np.abs(E.data - k * _UNIT).max(initial=0.0))
    if off > _SNAP_TOL:
        raise UnsupportedSpaceError(f"the P2 interpolation into the refined mesh has an entry {off:.3g} away from a "
                                    "multiple of 1/9: the fine mesh is not the Alfeld refinement of the coarse one")
    E.data = np.where(k == 9, 1.0, k * _UNIT)  # 9/9 as exactly 1
    E.eliminate_zeros()
    E.sort_indices()
    nnz = np.diff(E.indptr)
    rows = np.flatnonzero(nnz == 1)
    unit_rows = rows[E.data[E.indptr[rows]] == 1.0]
    cols = E.indices[E.indptr[unit_rows]]
    fine_of_coarse = np.full(E.shape[1], -1, dtype=np.int64)
    fine_of_coarse[cols] = unit_rows
    if (fine_of_coarse < 0).any() or np.unique(cols).size != cols.size:
        raise UnsupportedSpaceError("some P2 nodes of the mesh are not nodes of the refined mesh: it is not an Alfeld "
                                    "refinement of it")
    return P2Embedding(E, fine_of_coarse)
