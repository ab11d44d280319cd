"""Sparse products with a fixed matrix that autograd can differentiate through.

``spmm(A, X) = A @ X`` for a :class:`~fe_operators.models.context.SparseMap` ``A`` (a
fixed FE operator: no gradient for it) and a dense ``X`` with many columns (nodes ×
batch·channels).  The backward product is ``Aᵀ @ G`` with the transpose stored as CSR
once (:meth:`SparseMap.transpose`), so neither direction converts formats or sorts on
the fly.  The kernel is torch's sparse CSR × dense product on every device
(``benchmarks/bench_multigrid.py`` measures it against scipy's on the CPU).
"""

from __future__ import annotations

from typing import Any

import torch

from fe_operators.models.context import SparseMap

__all__ = ["spmm"]


class _SpMM(torch.autograd.Function):
    """``A @ X`` with ``dX = Aᵀ @ dY``; ``A`` and ``Aᵀ`` come in as sparse CSR tensors."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, a: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        ctx.at = at
        return a @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return ctx.at @ grad.contiguous(), None, None


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
    a = A.matrix(x.dtype)
    if not x.requires_grad:
        return a @ x.contiguous()
    return _SpMM.apply(x.contiguous(), a, A.transpose().matrix(x.dtype))
