r"""The Galerkin product, and the masked Galerkin hierarchy of an assembled matrix.

:func:`galerkin_product` is the one place where a coarse operator :math:`P^T A P` is
formed: for scipy matrices (aggregated levels, the scipy mirror of the learned
preconditioner) and for PETSc matrices (``MatPtAP``, with the symbolic product reused).

:func:`galerkin_hierarchy` is the hierarchy of the SPD neural multigrid
(:mod:`fe_operators.precond.mg`, docs/design.md §6.2) for a fine SPD matrix :math:`A`
whose Dirichlet rows are identity rows, with prolongations :math:`P_l`:

* **boundary masks** — :math:`b_L` the decoupled rows of :math:`A`; on a coarser level
  :math:`b_{l-1} = [P_l^T b_l > 1/2]` (:func:`coarse_boundary`): the coarse nodes whose
  basis functions reach the fine Dirichlet nodes;
* **masked prolongations** :math:`\tilde P_l = (I - B_l) P_l (I - B_{l-1})`;
* **Galerkin operators** :math:`A_{l-1} = \tilde P_l^T A_l \tilde P_l + B_{l-1}` (the
  identity keeps coarse Dirichlet rows decoupled and the matrix non-singular).

The result is a :class:`~fe_operators.multigrid.hierarchy.Hierarchy` whose levels have the
one operator :math:`A_l`.  PETSc's version of the same construction, with in-place
updates, is :class:`fe_operators.precond.mg.GalerkinHierarchy`.  Nothing here imports
Firedrake or PETSc.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from fe_operators.multigrid.hierarchy import Hierarchy, Level
from fe_operators.sparse.maps import SparseMap

__all__ = ["BOUNDARY_THRESHOLD", "galerkin_product", "coarse_boundary", "galerkin_hierarchy"]

#: a coarse node is a Dirichlet node when ``(P^T b_fine)_c`` exceeds this
BOUNDARY_THRESHOLD = 0.5


def galerkin_product(A: Any, P: Any, result: Any = None) -> Any:
    """``Pᵀ A P``: a scipy CSR matrix for scipy inputs, a PETSc ``Mat`` for PETSc ones.

    Parameters
    ----------
    A
        ``(n, n)`` fine operator (scipy sparse, or PETSc ``Mat``).
    P
        ``(n, m)`` prolongation (same kind).
    result
        PETSc only: a previous product with the same pattern, refilled in place.
    """
    if hasattr(A, "ptap"):  # a PETSc Mat: MatPtAP, reusing the symbolic product when given one
        return A.ptap(P) if result is None else A.ptap(P, result=result)
    return sp.csr_matrix(P.T @ A @ P)


def coarse_boundary(P: sp.spmatrix, boundary: np.ndarray) -> np.ndarray:
    """The coarse Dirichlet mask ``Pᵀ b > 1/2`` of a fine mask ``b`` (see the module docstring)."""
    return (P.T @ np.asarray(boundary, dtype=np.float64)) > BOUNDARY_THRESHOLD


def galerkin_hierarchy(A: sp.spmatrix, prolongations: Sequence[sp.spmatrix]) -> Hierarchy:
    """The masked Galerkin hierarchy of the module docstring, with scipy (one process).

    Parameters
    ----------
    A
        The fine SPD matrix (Dirichlet rows as identity rows).
    prolongations
        ``P_l``, coarsest first: ``prolongations[l - 1]`` is ``(n_l, n_{l-1})``.

    Returns
    -------
    Hierarchy
        Levels with the one operator ``A_l`` (``boundary`` the masks ``b_l``), and the
        masked prolongations ``P̃_l``.
    """
    from fe_operators.precond.features import row_parts

    A = sp.csr_matrix(A, dtype=np.float64)
    A.sum_duplicates()
    ops, pros = [A], []
    diag, _, b = row_parts(A.indptr, A.indices, A.data)
    masks, diags = [b], [diag]
    for P in reversed(list(prolongations)):
        P = sp.csr_matrix(P, dtype=np.float64)
        bc = coarse_boundary(P, b)
        Pm = sp.csr_matrix(sp.diags((~b).astype(np.float64)) @ P @ sp.diags((~bc).astype(np.float64)))
        Ac = sp.csr_matrix(galerkin_product(ops[-1], Pm) + sp.diags(bc.astype(np.float64)))
        Ac.sum_duplicates()
        ops.append(Ac)
        pros.append(Pm)
        masks.append(bc)
        diags.append(Ac.diagonal())
        b = bc
    levels = tuple(Level.from_scipy({"A": Al}, bl, stiffness_diag=dl, orders=[2], laplacian=[1.0])
                   for Al, bl, dl in zip(reversed(ops), reversed(masks), reversed(diags)))
    return Hierarchy(levels, tuple(SparseMap.from_scipy(P) for P in reversed(pros)))
