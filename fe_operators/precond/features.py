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

__all__ = ["FEATURE_NAMES", "RowFeatures", "row_feature_values", "checked_csr", "row_parts", "row_features", "serial_row_features",
           "csr_row_features", "petsc_row_features"]

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
        ``(n, 6)``, columns as :data:`FEATURE_NAMES`: float64 (row-major), or float32 stored
        feature-major (``values.T`` C-contiguous) where the set-up asked for it.
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
def _diagonal(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int) -> np.ndarray:
    n = indptr.shape[0] - 1
    d = np.zeros(n)
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            if indices[k] == i + row_start:
                d[i] += data[k]
    return d


@numba.njit(cache=True)
def _diagonal_offdiag_abs(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int) -> tuple:
    """``(d, o)``: the diagonal and the off-diagonal abs sum, in one pass."""
    n = indptr.shape[0] - 1
    d = np.zeros(n)
    o = np.zeros(n)
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            if indices[k] == i + row_start:
                d[i] += data[k]
            else:
                o[i] += abs(data[k])
    return d, o


@numba.njit(cache=True)
def row_feature_values(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, i: int, row_start: int,
                       di: float, scaled_i: float, inv_sqrt_d: np.ndarray) -> tuple:
    """Row ``i``'s six feature values (as :data:`FEATURE_NAMES`), ``Σ_j |a_ij|`` and whether it is
    decoupled: the one definition of the features, compiled (called from compiled loops).

    Feature 4's product ``Σ_j a_ij d_j^{-1/2}`` is ``scaled_i`` when ``inv_sqrt_d`` is empty
    (several processes: a ``MatMult``), else summed here from ``inv_sqrt_d`` (square, one process).
    """
    local = inv_sqrt_d.shape[0] > 0
    o = 0.0
    total = 0.0
    positive = 0.0
    biggest = 0.0
    squares = 0.0
    product = 0.0
    for k in range(indptr[i], indptr[i + 1]):
        v = data[k]
        total += v
        if local:
            product += v * inv_sqrt_d[indices[k]]
        if indices[k] != i + row_start:
            a = abs(v)
            o += a
            squares += v * v
            if v > 0:
                positive += v
            if a > biggest:
                biggest = a
    f4 = product * inv_sqrt_d[i] if local else scaled_i / np.sqrt(di)
    f5 = squares / (o * o) if o > 0 else 0.0
    return o / di, total / di, positive / di, biggest / di, f4, f5, di + o, o == 0


@numba.njit(cache=True)
def _fill_features(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int, d: np.ndarray,
                   scaled: np.ndarray, inv_sqrt_d: np.ndarray, values: np.ndarray) -> tuple:
    """One pass over the rows: the feature columns (into ``values``, ``(n, 6)`` of any layout and
    float type), ``Σ_j |a_ij|`` and the decoupled flags (:func:`row_feature_values`; ``scaled``
    is read only when ``inv_sqrt_d`` is empty)."""
    n = indptr.shape[0] - 1
    local = inv_sqrt_d.shape[0] > 0
    abs_row_sum = np.empty(n)
    decoupled = np.empty(n, dtype=np.bool_)
    for i in range(n):
        f0, f1, f2, f3, f4, f5, total, free = row_feature_values(
            indptr, indices, data, i, row_start, d[i], 0.0 if local else scaled[i], inv_sqrt_d)
        abs_row_sum[i] = total
        decoupled[i] = free
        values[i, 0] = f0
        values[i, 1] = f1
        values[i, 2] = f2
        values[i, 3] = f3
        values[i, 4] = f4
        values[i, 5] = f5
    return abs_row_sum, decoupled


def _feature_array(n: int, dtype: Any) -> np.ndarray:
    """An uninitialised ``(n, 6)`` feature array: row-major in float64 (training), and in any other
    dtype the transpose of a C-contiguous ``(6, n)`` array, so that a network reads each feature as
    one contiguous column (:func:`~fe_operators.precond.smoother.smoother_multipliers`)."""
    if np.dtype(dtype) == np.float64:
        return np.empty((n, len(FEATURE_NAMES)))
    return np.empty((len(FEATURE_NAMES), n), dtype=dtype).T


def _check_diagonal(d: np.ndarray, row_start: int) -> None:
    if d.size and not np.all(d > 0):
        bad = int(np.flatnonzero(~(d > 0))[0])
        raise ValueError(f"expected a matrix with a positive diagonal (symmetric positive definite), row "
                         f"{bad + row_start} has diagonal {d[bad]!r}")


def _arrays(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> tuple:
    # PETSc's 32-bit indices are used as they are (numba compiles each index type once)
    return np.ascontiguousarray(indptr), np.ascontiguousarray(indices), np.ascontiguousarray(data, dtype=np.float64)


def checked_csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, row_start: int = 0) -> tuple:
    """``(indptr, indices, data, d)``: the CSR arrays as the compiled passes take them and the
    diagonal ``d`` of the local rows (global columns), checked positive.

    Raises
    ------
    ValueError
        A diagonal entry that is not positive (the matrix is not SPD).
    """
    indptr, indices, data = _arrays(indptr, indices, data)
    d = _diagonal(indptr, indices, data, int(row_start))
    _check_diagonal(d, row_start)
    return indptr, indices, data, d


def row_parts(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
              row_start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(diagonal, off-diagonal abs sum, decoupled)`` of local CSR rows (global columns).

    Raises
    ------
    ValueError
        A diagonal entry that is not positive (the matrix is not SPD).
    """
    indptr, indices, data = _arrays(indptr, indices, data)
    d, o = _diagonal_offdiag_abs(indptr, indices, data, int(row_start))
    _check_diagonal(d, row_start)
    return d, o, o == 0


def row_features(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, scaled_row_sum: np.ndarray,
                 row_start: int = 0, dtype: Any = np.float64) -> RowFeatures:
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
    dtype
        Of :attr:`RowFeatures.values` (float32: feature-major storage, see :func:`_feature_array`).

    Raises
    ------
    ValueError
        A non-positive diagonal entry.
    """
    indptr, indices, data, d = checked_csr(indptr, indices, data, row_start)
    values = _feature_array(d.shape[0], dtype)
    abs_row_sum, decoupled = _fill_features(indptr, indices, data, int(row_start), d,
                                            np.ascontiguousarray(scaled_row_sum, dtype=np.float64), np.zeros(0),
                                            values)
    return RowFeatures(values, d, abs_row_sum, decoupled)


def serial_row_features(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                        dtype: Any = np.float64) -> RowFeatures:
    """:func:`row_features` of a whole square CSR matrix on one process (all compiled, no copies).

    The arrays may be views of a PETSc matrix's own storage
    (:func:`~fe_operators.sparse.petsc.seqaij_csr`).  Two passes over the entries: the
    diagonal, then everything else (feature 4's product with :math:`D^{-1/2}` included).

    Raises
    ------
    ValueError
        A non-positive diagonal entry.
    """
    indptr, indices, data, d = checked_csr(indptr, indices, data)
    values = _feature_array(d.shape[0], dtype)
    abs_row_sum, decoupled = _fill_features(indptr, indices, data, 0, d, np.zeros(0), 1.0 / np.sqrt(d), values)
    return RowFeatures(values, d, abs_row_sum, decoupled)


def csr_row_features(A: sp.csr_matrix) -> RowFeatures:
    """:func:`row_features` of a whole scipy matrix (one process)."""
    A = sp.csr_matrix(A)
    return serial_row_features(A.indptr, A.indices, A.data)


def petsc_row_features(A: Any, dtype: Any = np.float64) -> RowFeatures:
    """:func:`row_features` of the local rows of an assembled PETSc matrix (any number of processes).

    ``dtype``: of the feature values (float32 for the networks at set-up, feature-major).

    Raises
    ------
    ValueError
        A non-positive diagonal entry, or a matrix that is not assembled (AIJ-like).
    """
    from fe_operators.sparse.petsc import seqaij_csr

    view = seqaij_csr(A)
    if view is not None:  # one process: the matrix's own arrays, no copy
        return serial_row_features(*view, dtype=dtype)
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
    out = row_features(indptr, indices, data, scaled.array_r.copy(), A.getOwnershipRange()[0], dtype)
    d_vec.destroy()
    scaled.destroy()
    return out
