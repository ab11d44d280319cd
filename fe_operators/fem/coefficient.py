r"""Stiffness matrices of a coefficient field as a linear map of the field's nodal values.

For a P1 space on a simplex mesh and a P1 coefficient :math:`a = \sum_m a_m \psi_m`,

.. math:: (K_a)_{ij} = \int a\,\nabla\phi_j\cdot\nabla\phi_i
          = \sum_{T \ni i, j} |T|\,\nabla\lambda_j\cdot\nabla\lambda_i\big|_T\;\bar a_T,
   \qquad \bar a_T = \frac{1}{d + 1}\sum_{m \in T} a_m ,

exactly (the gradients are constant on each cell).  The entries of :math:`K_a` are
therefore a fixed linear map of the nodal values, ``values = H @ a``, with ``H`` of shape
``(nnz, n)`` on a given sparsity pattern; :func:`coefficient_stiffness_map` builds ``H``
vectorised over cells (no loop over cells or DOFs).  A model can then form
:math:`K_a` for a batch of coefficients with one sparse product and apply it with a
gather/scatter — the FE operator "assembled from UFL with the input as coefficient"
without calling Firedrake at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from fe_operators.errors import UnsupportedSpaceError

__all__ = ["coefficient_stiffness_map", "supports_coefficient_stiffness"]


def supports_coefficient_stiffness(V: Any) -> bool:
    """Whether ``V`` is a scalar P1 space on a simplex mesh (what :func:`coefficient_stiffness_map` handles)."""
    elem = V.ufl_element()
    cell = V.mesh().ufl_cell()
    return (V.value_shape == () and elem.family() in ("Lagrange", "CG", "Q") and elem.degree() == 1
            and cell.is_simplex)


def coefficient_stiffness_map(V: Any, indptr: np.ndarray, indices: np.ndarray) -> sp.csr_matrix:
    """``H`` with ``(K_a).data == H @ a`` on the pattern ``(indptr, indices)`` (see the module docstring).

    Parameters
    ----------
    V
        A scalar P1 space on a simplex mesh (serial).
    indptr, indices
        A CSR pattern of ``(n, n)`` that contains the node adjacency of ``V`` (e.g. the
        pattern of its assembled stiffness matrix).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(nnz, n)`` float64.

    Raises
    ------
    UnsupportedSpaceError
        ``V`` is not P1 on simplices.
    ValueError
        The pattern misses an entry of the node adjacency.
    """
    if not supports_coefficient_stiffness(V):
        raise UnsupportedSpaceError(f"coefficient stiffness maps need a scalar P1 space on simplices, got "
                                    f"{V.ufl_element()} on {V.mesh().ufl_cell()}")
    import firedrake as fd

    mesh = V.mesh()
    d = mesh.geometric_dimension
    cells = np.asarray(V.cell_node_map().values, dtype=np.int64)         # (n_cells, d + 1)
    X = fd.Function(fd.VectorFunctionSpace(mesh, V.ufl_element())).interpolate(fd.SpatialCoordinate(mesh))
    coords = np.asarray(X.dat.data_ro, dtype=np.float64).reshape(-1, d)
    verts = coords[cells]                                                 # (n_cells, d + 1, d)
    J = verts[:, 1:, :] - verts[:, :1, :]                                 # rows: edge vectors
    Jinv = np.linalg.inv(J)                                               # (n_cells, d, d)
    # gradients of the barycentric coordinates: λ_1..λ_d from J⁻¹, λ_0 = 1 - Σ
    grads = np.concatenate([-Jinv.sum(axis=2, keepdims=True), Jinv], axis=2).transpose(0, 2, 1)
    volume = np.abs(np.linalg.det(J)) / np.prod(np.arange(1, d + 1))
    local = np.einsum("tad,tbd->tab", grads, grads) * volume[:, None, None] / (d + 1)  # per node of T
    k = d + 1
    i = np.repeat(cells, k, axis=1).reshape(-1, k, k)                     # row node of entry (a, b)
    j = np.tile(cells, (1, k)).reshape(-1, k, k)                           # column node
    rows = np.broadcast_to(i[:, :, :, None], (len(cells), k, k, k)).ravel()
    cols = np.broadcast_to(j[:, :, :, None], (len(cells), k, k, k)).ravel()
    nodes = np.broadcast_to(cells[:, None, None, :], (len(cells), k, k, k)).ravel()
    vals = np.broadcast_to(local[:, :, :, None], (len(cells), k, k, k)).ravel()
    n = V.dof_dset.size
    row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    keys = row_of * n + np.asarray(indices, dtype=np.int64)
    entry = np.searchsorted(keys, rows * n + cols)
    if entry.max(initial=0) >= keys.size or not np.array_equal(keys[np.minimum(entry, keys.size - 1)],
                                                                rows * n + cols):
        raise ValueError("the sparsity pattern misses entries of the mesh's node adjacency")
    H = sp.csr_matrix((vals, (entry, nodes)), shape=(keys.size, n))
    H.sum_duplicates()
    return H
