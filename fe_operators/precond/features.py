r"""Local, dimensionless features of the rows of an assembled SPD matrix.

The learned smoother (:mod:`~fe_operators.precond.smoother`) sees each row ``i`` of a
level's matrix :math:`A` only through numbers that do not change when the matrix is
scaled, the mesh refined or the problem's units changed.  With :math:`d_i = a_{ii}`,
:math:`o_i = \sum_{j \ne i} |a_{ij}|` and :math:`p_i = \sum_{j \ne i} \max(a_{ij}, 0)`:

=====  ================================================================  ========================
index  feature                                                           on a Laplacian stencil
=====  ================================================================  ========================
0      :math:`o_i / d_i`                                                 1 (interior)
1      :math:`\sum_j a_{ij} / d_i` (row sum)                             0 (interior)
2      :math:`p_i / d_i` (positive off-diagonals)                        0 (M-matrix)
3      :math:`\max_{j \ne i} |a_{ij}| / d_i`                             1/4 (P1, 2D, structured)
4      :math:`\sum_j a_{ij} / \sqrt{d_i d_j}` (neighbour scaling)        0 (constant coefficient)
5      :math:`\sum_{j \ne i} a_{ij}^2 / o_i^2` (0 if :math:`o_i = 0`)     1/4 (P1, 2D, structured)
=====  ================================================================  ========================

Every feature is a continuous function of the entries (no counts of non-zeros, which
round-off in a Galerkin product can change).  Feature 4 needs the neighbours'
diagonals: it is one product :math:`A D^{-1/2} 1` (a
``MatMult`` in parallel).  Rows with no non-zero off-diagonal entry (Dirichlet rows that
Firedrake stores as identity rows, "decoupled" rows) are flagged: the smoother solves them
exactly.

Every function works on CSR arrays of *local* rows with *global* column indices, as
``Mat.getValuesCSR()`` returns them on each process, so features are computed where the
rows live, with no communication but the one product.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["FEATURE_NAMES", "RowFeatures", "row_parts", "row_features", "csr_row_features", "petsc_row_features"]

#: names of the feature columns, in order (stored with trained models, checked on load)
FEATURE_NAMES: tuple[str, ...] = (
    "offdiag_abs_sum", "row_sum", "positive_offdiag_sum", "max_offdiag", "scaled_row_sum", "offdiag_concentration",
)


@dataclasses.dataclass(frozen=True)
class RowFeatures:
    """Features of the local rows of a matrix, and the row quantities the smoother needs.

    Attributes
    ----------
    values
        ``(n, 6)`` float64, columns as :data:`FEATURE_NAMES`.
    diagonal
        ``(n,)`` the diagonal ``d``.
    abs_row_sum
        ``(n,)`` ``Σ_j |a_ij|`` (diagonal included).
    decoupled
        ``(n,)`` bool: rows whose off-diagonal entries are all zero.
    """

    values: np.ndarray
    diagonal: np.ndarray
    abs_row_sum: np.ndarray
    decoupled: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of local rows."""
        return int(self.diagonal.shape[0])


@numba.njit(cache=True)
def _row_sums(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int) -> tuple:
    """One pass over the rows: diagonal, Σ|off|, Σ off, Σ max(off, 0), max |off|, Σ off²."""
    n = indptr.shape[0] - 1
    d, o, total = np.zeros(n), np.zeros(n), np.zeros(n)
    positive, biggest, squares = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            total[i] += v
            if indices[k] == i + row_start:
                d[i] += v
            else:
                a = abs(v)
                o[i] += a
                squares[i] += v * v
                if v > 0:
                    positive[i] += v
                if a > biggest[i]:
                    biggest[i] = a
    return d, o, total, positive, biggest, squares


def _checked(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int) -> tuple:
    sums = _row_sums(np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64),
                     np.asarray(data, dtype=np.float64), int(row_start))
    d = sums[0]
    if d.size and not np.all(d > 0):
        bad = int(np.flatnonzero(~(d > 0))[0])
        raise ValueError(f"expected a matrix with a positive diagonal (symmetric positive definite), row "
                         f"{bad + row_start} has diagonal {d[bad]!r}")
    return sums


def row_parts(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
              row_start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(diagonal, off-diagonal abs sum, decoupled)`` of local CSR rows (global columns).

    Raises
    ------
    ValueError
        A diagonal entry that is not positive (the matrix is not SPD).
    """
    d, o = _checked(indptr, indices, data, row_start)[:2]
    return d, o, o == 0


def row_features(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, scaled_row_sum: np.ndarray,
                 row_start: int = 0) -> RowFeatures:
    """The :class:`RowFeatures` of local CSR rows (one compiled pass over the entries).

    Parameters
    ----------
    indptr, indices, data
        CSR arrays of the local rows; ``indices`` are global column indices.
    scaled_row_sum
        ``(n,)`` the product ``(A D^{-1/2} 1)_i`` (local rows); feature 4 is it times
        ``d_i^{-1/2}``.
    row_start
        Global index of the first local row.

    Raises
    ------
    ValueError
        A non-positive diagonal entry.
    """
    d, o, total, positive, biggest, squares = _checked(indptr, indices, data, row_start)
    values = np.empty((d.shape[0], len(FEATURE_NAMES)))
    values[:, 0] = o / d
    values[:, 1] = total / d
    values[:, 2] = positive / d
    values[:, 3] = biggest / d
    values[:, 4] = np.asarray(scaled_row_sum, dtype=np.float64) / np.sqrt(d)
    np.divide(squares, o * o, out=values[:, 5], where=o > 0)
    values[o == 0, 5] = 0.0
    return RowFeatures(values, d, d + o, o == 0)


def csr_row_features(A: sp.csr_matrix) -> RowFeatures:
    """:func:`row_features` of a whole scipy matrix (one process)."""
    A = sp.csr_matrix(A)
    d = A.diagonal()
    if A.shape[0] and not np.all(d > 0):
        row_parts(A.indptr, A.indices, A.data)  # raises with the row named
    scaled = A @ (1.0 / np.sqrt(d))
    return row_features(A.indptr, A.indices, A.data, scaled)


def petsc_row_features(A: Any) -> RowFeatures:
    """:func:`row_features` of the local rows of an assembled PETSc matrix (any number of processes).

    Raises
    ------
    ValueError
        A non-positive diagonal entry, or a matrix that is not assembled (AIJ-like).
    """
    try:
        indptr, indices, data = A.getValuesCSR()
    except Exception as exc:  # a matrix-free (python, shell) matrix has no rows to read
        raise ValueError(f"expected an assembled (AIJ) matrix, got type {A.getType()!r} "
                         f"({type(exc).__name__}); assemble the operator with mat_type aij") from None
    d_vec = A.getDiagonal()
    if d_vec.getLocalSize() and not np.all(d_vec.array_r > 0):
        row_parts(indptr, indices, data, A.getOwnershipRange()[0])  # raises with the row named
    d_vec.sqrtabs()
    d_vec.reciprocal()
    scaled = A.createVecLeft()
    A.mult(d_vec, scaled)
    out = row_features(indptr, indices, data, scaled.array_r.copy(), A.getOwnershipRange()[0])
    d_vec.destroy()
    scaled.destroy()
    return out
