"""Compiled CPU kernels for batched sparse products and quadratic forms.

torch's float64 sparse CSR kernels were measured 4× slower than scipy/PETSc on the CPUs
this package was developed on (a one-off measurement; no benchmark in the repository
repeats it, while ``make bench-bridge`` times the FE-norm loss these kernels serve
against torch's MSE).  These kernels work in the DOF-tensor layout ``(batch, n)``, read
the matrix once for a whole batch (``prange`` over blocks of rows), and fuse the
quadratic forms ``x_k^T A x_k`` into the same pass, so an FE-norm loss costs one sweep
over the matrix instead of a product plus separate elementwise passes.

:func:`csr_mm` is the other layout, ``(n, columns)``: the registered op
``fe_operators::csr_mm`` that a traced rollout step records in place of
:func:`~fe_operators.sparse.spmm.spmm` (serial, in scipy's order of operations, so the
traced step is bit for bit the plain one).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = ["csr_matmul_rows", "csr_quadratic", "csr_quadratic_diff", "csr_mm"]


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


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_quadratic(indptr, indices, data, x, y, partial):  # pragma: no cover - compiled
    # partial[c, k]: block c's share of x_k^T A x_k (prange cannot reduce into arrays)
    m = indptr.shape[0] - 1
    b = x.shape[0]
    nblocks = partial.shape[0]
    for c in numba.prange(nblocks):
        lo = c * m // nblocks
        hi = (c + 1) * m // nblocks
        for i in range(lo, hi):
            start = indptr[i]
            end = indptr[i + 1]
            for k in range(b):
                s = 0.0
                for p in range(start, end):
                    s += data[p] * x[k, indices[p]]
                y[k, i] = s
                partial[c, k] += x[k, i] * s


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_quadratic_diff(indptr, indices, data, u, t, y, part_e, part_t):  # pragma: no cover
    # e = u - t formed on the fly: y = A e, part_e -> e^T A e, part_t -> t^T A t
    m = indptr.shape[0] - 1
    b = u.shape[0]
    nblocks = part_e.shape[0]
    for c in numba.prange(nblocks):
        lo = c * m // nblocks
        hi = (c + 1) * m // nblocks
        for i in range(lo, hi):
            start = indptr[i]
            end = indptr[i + 1]
            for k in range(b):
                se = 0.0
                st = 0.0
                for p in range(start, end):
                    j = indices[p]
                    a = data[p]
                    tj = t[k, j]
                    se += a * (u[k, j] - tj)
                    st += a * tj
                y[k, i] = se
                part_e[c, k] += (u[k, i] - t[k, i]) * se
                part_t[c, k] += t[k, i] * st


def _nblocks(m: int) -> int:
    return max(1, min(m, 16 * numba.get_num_threads()))


def csr_matmul_rows(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Compute ``y[k] = A @ x[k]`` for every sample ``k`` of a batch.

    Parameters
    ----------
    indptr, indices, data
        CSR arrays of ``A`` (shape ``(m, n)``); int64, int64, float64.
    x
        float64 array of shape ``(batch, n)``.
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


def csr_quadratic(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``y_k = A x_k`` and ``q_k = x_k^T A x_k`` in one pass (square ``A``).

    Returns
    -------
    y : numpy.ndarray
        ``(batch, n)``.
    q : numpy.ndarray
        ``(batch,)``.
    """
    x = np.ascontiguousarray(x)
    m = indptr.shape[0] - 1
    y = np.empty_like(x)
    partial = np.zeros((_nblocks(m), x.shape[0]))
    _csr_quadratic(indptr, indices, data, x, y, partial)
    return y, partial.sum(axis=0)


def csr_quadratic_diff(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, u: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With ``e = u - t``: ``y_k = A e_k``, ``e_k^T A e_k`` and ``t_k^T A t_k`` in one pass.

    Returns
    -------
    y : numpy.ndarray
        ``(batch, n)``, ``A (u_k - t_k)``.
    qe, qt : numpy.ndarray
        ``(batch,)`` each.
    """
    u = np.ascontiguousarray(u)
    t = np.ascontiguousarray(t)
    m = indptr.shape[0] - 1
    y = np.empty_like(u)
    nb = _nblocks(m)
    part_e = np.zeros((nb, u.shape[0]))
    part_t = np.zeros((nb, u.shape[0]))
    _csr_quadratic_diff(indptr, indices, data, u, t, y, part_e, part_t)
    return y, part_e.sum(axis=0), part_t.sum(axis=0)


@numba.njit(cache=True, nogil=True)
def _csr_rows(indptr, indices, data, x, y):  # pragma: no cover - compiled
    # y[i] = sum_p data[p] x[indices[p]] in row order, from zero: scipy's csr_matvecs, term by term
    for i in range(indptr.shape[0] - 1):
        for c in range(x.shape[1]):
            y[i, c] = 0
        for p in range(indptr[i], indptr[i + 1]):
            a, j = data[p], indices[p]
            for c in range(x.shape[1]):
                y[i, c] += a * x[j, c]


def _csr_mm_cpu(indptr: torch.Tensor, indices: torch.Tensor, data: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = torch.empty(indptr.shape[0] - 1, x.shape[1], dtype=x.dtype)
    _csr_rows(indptr.numpy(), indices.numpy(), data.numpy(), x.contiguous().numpy(), y.numpy())
    return y


#: a plain ``Library`` fragment with a CPU kernel: a traced step calls it through the dispatcher
#: for about 15 µs (``torch.library.custom_op`` took 40 µs)
_LIB = torch.library.Library("fe_operators", "FRAGMENT")
_LIB.define("csr_mm(Tensor indptr, Tensor indices, Tensor data, Tensor x) -> Tensor")
_LIB.impl("csr_mm", _csr_mm_cpu, "CPU")


def csr_mm(indptr: torch.Tensor, indices: torch.Tensor, data: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` of CSR arrays on the CPU, no autograd: the op ``fe_operators::csr_mm`` a traced step records."""
    return torch.ops.fe_operators.csr_mm(indptr, indices, data, x)
