"""Compiled CPU kernels for batched sparse products.

torch's float64 sparse CSR kernels were measured 4× slower than scipy/PETSc on this kind of
machine (INSTALL-NOTES §6), and scipy works on one column layout only.  The batched
product here reads the matrix once for all samples of a batch, in the DOF-tensor layout
``(batch, n)``, with numba's ``prange`` over rows.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["csr_matmul_rows"]


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_matmul_rows(indptr, indices, data, x, y):  # pragma: no cover - compiled
    m = indptr.shape[0] - 1
    b = x.shape[0]
    for i in numba.prange(m):
        start = indptr[i]
        end = indptr[i + 1]
        for k in range(b):
            s = 0.0
            for p in range(start, end):
                s += data[p] * x[k, indices[p]]
            y[k, i] = s


def csr_matmul_rows(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Compute ``y[k] = A @ x[k]`` for every sample ``k`` of a batch.

    Parameters
    ----------
    indptr, indices, data
        CSR arrays of ``A`` (shape ``(m, n)``); int64, int64, float64.
    x
        C-contiguous float64 array of shape ``(batch, n)``.
    out
        Optional C-contiguous float64 array of shape ``(batch, m)``.

    Returns
    -------
    numpy.ndarray
        ``(batch, m)`` float64.
    """
    m = indptr.shape[0] - 1
    if out is None:
        out = np.empty((x.shape[0], m), dtype=np.float64)
    _csr_matmul_rows(indptr, indices, data, np.ascontiguousarray(x), out)
    return out
