"""Sparse products with a fixed matrix that autograd can differentiate through.

``spmm(A, X) = A @ X`` for a :class:`~fe_operators.sparse.maps.SparseMap` ``A`` (a
fixed FE operator: no gradient for it) and a dense ``X`` with many columns (nodes ×
batch·channels).  The backward product is ``Aᵀ @ G`` with the transpose stored as CSR
once (:meth:`SparseMap.transpose`), so neither direction converts formats or sorts on
the fly.

Kernels: on the CPU, scipy's CSR × dense product (float32 or float64, on the tensors'
memory, no copy); measured 4× faster than torch's sparse CSR kernel for a 2D CG1 operator
stack with 192 columns, and 9× faster for its transpose (a one-off measurement when the
kernel was chosen; no benchmark in the repository repeats it).  On CUDA, torch's sparse
CSR product.

Traced steps (:meth:`RolloutSPON.inference <fe_operators.models.rollout.RolloutSPON.inference>`):
under ``torch.jit.trace`` the CPU product is the registered op ``fe_operators::csr_mm``
(a serial compiled loop, scipy's order of operations: the same values), so the trace
records a call instead of baking the product of the tracing inputs in as a constant.
"""

from __future__ import annotations

from typing import Any

import torch

from fe_operators.sparse.maps import SparseMap

__all__ = ["spmm"]


def _product(A: SparseMap, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` without autograd, with the device's fastest kernel."""
    x = x.detach().contiguous()
    if x.device.type == "cpu":
        return torch.from_numpy(A.scipy(x.dtype) @ x.numpy())
    return A.matrix(x.dtype) @ x


class _SpMM(torch.autograd.Function):
    """``A @ X`` with ``dX = Aᵀ @ dY``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, A: SparseMap) -> torch.Tensor:
        ctx.A = A
        return _product(A, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return _product(ctx.A.transpose(), grad), None


def spmm(A: SparseMap, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` for a fixed sparse map and dense ``x``, differentiable in ``x``.

    Parameters
    ----------
    A
        ``(n_rows, n_cols)``, on ``x``'s device; used in ``x``'s dtype (its float64
        values are cast once and cached).
    x
        ``(n_cols, m)`` dense.

    Returns
    -------
    torch.Tensor
        ``(n_rows, m)``, ``x``'s dtype.
    """
    if x.ndim != 2 or x.shape[0] != A.n_cols:
        raise ValueError(f"spmm: expected x of shape ({A.n_cols}, m), got {tuple(x.shape)}")
    if A.device != x.device:
        raise ValueError(f"spmm: the map is on {A.device}, x on {x.device}")
    if not (torch.is_grad_enabled() and x.requires_grad):
        if torch.jit.is_tracing() and x.device.type == "cpu":
            from fe_operators.sparse.kernels import csr_mm  # numba loads only when a step is traced

            data = torch.from_numpy(A.scipy(x.dtype).data)  # the cached cast values, no copy
            return csr_mm(A.crow, A.col, data, x)
        return _product(A, x)
    return _SpMM.apply(x, A)
