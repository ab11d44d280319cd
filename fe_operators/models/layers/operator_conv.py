r"""Channel-wise operator convolution on a mesh level: ``z_c = (Σ_k a_{kc} S_k) u_c``.

A level's ``K`` fixed FE operators ``S_k`` share one sparsity pattern (the level's node
adjacency).  A per-channel combination of them is one sparse matrix per channel on that
pattern, with values ``W = V a`` (``V``: ``(nnz, K)`` operator values, ``a``: ``(K, C)``
learned weights).  Applying it costs one multiply-add per stored entry, sample and
channel — ``K`` times less than applying the ``K`` operators and mixing afterwards, and
without the ``(n K, B C)`` intermediate that made the hierarchical processor's blocks
memory-bound (the forward and backward passes then spent most of their time in
broadcast multiplications and reductions of that tensor).

Kernels: on the CPU, compiled loops (numba, rows in parallel) for the product, its
transpose (the gradient for ``u``) and the gradient for ``W``; on other devices the same
with torch's gather and ``index_add_``.  :func:`channel_spmm` is differentiable in ``u``
and ``W``.  Under ``torch.jit.trace`` (no autograd) the CPU product is the registered op
``fe_operators::channel_conv``, so a traced step records the call (the same kernel).
:func:`channel_spmm_norm` is the product followed by a LayerNorm over the channels, fused
into the kernel where nothing needs gradients (op ``fe_operators::channel_conv_norm``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numba
import numpy as np
import torch

from fe_operators.sparse.maps import SparseMap, row_indices

__all__ = ["OperatorPattern", "operator_pattern", "channel_spmm", "channel_spmm_norm"]


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _forward(indptr, indices, w, u, z):  # pragma: no cover - compiled
    # z[i, b, c] = sum_p w[p, c] u[indices[p], b, c] over row i's entries p, summed into z's own
    # row from zero (no per-row accumulator array: numba allocates one on the heap per row, which
    # cost a third of the product at batch 1 on the cylinder's 2783 nodes; same sums, same order)
    m = indptr.shape[0] - 1
    nb = u.shape[1]
    nc = u.shape[2]
    for i in numba.prange(m):
        zi = z[i]
        zi[:, :] = 0
        for p in range(indptr[i], indptr[i + 1]):
            wp = w[p]
            uj = u[indices[p]]
            for b in range(nb):
                zb = zi[b]
                ub = uj[b]
                for c in range(nc):
                    zb[c] += wp[c] * ub[c]


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _forward_norm(indptr, indices, w, u, gamma, beta, consts, z):  # pragma: no cover - compiled
    # _forward, then every (i, b) row layer-normalised over its channels (two passes, biased
    # variance, as torch.nn.LayerNorm): z = (z - mean) / sqrt(var + eps) * gamma + beta.
    # consts = [eps, 1 / channels] in z's dtype: every scalar stays in that dtype (mixing in
    # float64 literals and an integer division made the normalisation cost twice torch's own)
    m = indptr.shape[0] - 1
    nb = u.shape[1]
    nc = u.shape[2]
    eps = consts[0]
    inv = consts[1]
    _forward(indptr, indices, w, u, z)
    for i in numba.prange(m):
        for b in range(nb):
            zb = z[i, b]
            mean = inv * 0
            for c in range(nc):
                mean += zb[c]
            mean *= inv
            var = inv * 0
            for c in range(nc):
                d = zb[c] - mean
                var += d * d
            r = 1 / np.sqrt(var * inv + eps)
            for c in range(nc):
                zb[c] = (zb[c] - mean) * r * gamma[c] + beta[c]


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _weight_grad(indptr, indices, g, u, dw):  # pragma: no cover - compiled
    # dw[p, c] = sum_b g[i, b, c] u[indices[p], b, c] for p in row i
    m = indptr.shape[0] - 1
    nb = u.shape[1]
    nc = u.shape[2]
    for i in numba.prange(m):
        gi = g[i]
        for p in range(indptr[i], indptr[i + 1]):
            uj = u[indices[p]]
            acc = np.zeros(nc, dtype=dw.dtype)
            for b in range(nb):
                for c in range(nc):
                    acc[c] += gi[b, c] * uj[b, c]
            dw[p] = acc


@dataclasses.dataclass(frozen=True, eq=False)
class OperatorPattern:
    """The common pattern of a level's operators, both ways, and their values on it.

    Attributes
    ----------
    crow, col
        CSR arrays ``(n + 1,)``, ``(nnz,)`` of the pattern (int64).
    rows
        ``(nnz,)`` row of every entry (int64).
    t_crow, t_col, t_perm
        The transposed pattern; entry ``q`` of the transpose is entry ``t_perm[q]``.
    values
        ``(nnz, K)``: operator ``k``'s value of every entry, in the pattern's dtype.
    """

    crow: torch.Tensor
    col: torch.Tensor
    rows: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    t_perm: torch.Tensor
    values: torch.Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.crow.shape[0]) - 1

    @property
    def nnz(self) -> int:
        return int(self.col.shape[0])

    def to(self, dtype: torch.dtype) -> "OperatorPattern":
        """The same pattern with the values in ``dtype``."""
        return dataclasses.replace(self, values=self.values.to(dtype))


def operator_pattern(ops: SparseMap, scale: torch.Tensor | None = None, identity: bool = True) -> OperatorPattern:
    """The :class:`OperatorPattern` of a row-stacked ``(K n, n)`` operator.

    Parameters
    ----------
    ops
        The level's operators stacked by rows (block ``k`` = rows ``k n : (k+1) n``).
    scale
        Optional ``(K n,)`` row scaling (``diag(scale) ops``).
    identity
        Append the identity as operator ``K`` (the pattern gets the diagonal if it lacks it).

    The pattern is the union of the blocks' patterns (they are the same for a level's FE
    operators, which live on its node adjacency).
    """
    n = ops.n_cols
    k = ops.n_rows // max(n, 1)
    rows = row_indices(ops.crow)
    vals = ops.values if scale is None else ops.values * scale[rows]
    block, row = rows // n, rows % n
    key = row * n + ops.col
    if identity:
        diag = torch.arange(n, dtype=key.dtype, device=key.device)
        key = torch.cat([key, diag * n + diag])
        block = torch.cat([block, torch.full((n,), k, dtype=block.dtype, device=block.device)])
        vals = torch.cat([vals, torch.ones(n, dtype=vals.dtype, device=vals.device)])
        k += 1
    uniq, inverse = torch.unique(key, return_inverse=True)       # sorted: row-major CSR order
    values = torch.zeros(uniq.numel(), k, dtype=vals.dtype, device=vals.device)
    values.index_put_((inverse, block), vals, accumulate=True)
    prow, pcol = uniq // n, uniq % n
    crow = torch.zeros(n + 1, dtype=torch.int64, device=ops.device)
    crow[1:] = torch.cumsum(torch.bincount(prow, minlength=n), 0)
    t_perm = torch.argsort(pcol * n + prow)
    t_crow = torch.zeros(n + 1, dtype=torch.int64, device=ops.device)
    t_crow[1:] = torch.cumsum(torch.bincount(pcol, minlength=n), 0)
    return OperatorPattern(crow, pcol, prow, t_crow, prow[t_perm], t_perm, values)


#: serial twins of the kernels (prange runs as range): below :data:`PARALLEL_WORK` multiply-adds a
#: parallel region costs more than it saves, and far more on a loaded machine (threads wait at its barrier)
_forward_serial = numba.njit(cache=True, nogil=True, fastmath=True)(_forward.py_func)
_forward_norm_serial = numba.njit(cache=True, nogil=True, fastmath=True)(_forward_norm.py_func)
_weight_grad_serial = numba.njit(cache=True, nogil=True, fastmath=True)(_weight_grad.py_func)
PARALLEL_WORK = 1 << 22


def _numba_product(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    z = torch.empty(crow.shape[0] - 1, u.shape[1], u.shape[2], dtype=u.dtype)
    kernel = _forward if col.shape[0] * u.shape[1] * u.shape[2] >= PARALLEL_WORK else _forward_serial
    kernel(crow.numpy(), col.numpy(), w.detach().contiguous().numpy(), u.detach().contiguous().numpy(), z.numpy())
    return z


def _torch_product(rows: torch.Tensor, col: torch.Tensor, w: torch.Tensor, u: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, u.shape[1], u.shape[2], dtype=u.dtype, device=u.device)
    return out.index_add_(0, rows, u.index_select(0, col) * w[:, None, :])


def _numba_product_norm(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, u: torch.Tensor,
                        gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    z = torch.empty(crow.shape[0] - 1, u.shape[1], u.shape[2], dtype=u.dtype)
    work = col.shape[0] * u.shape[1] * u.shape[2]
    kernel = _forward_norm if work >= PARALLEL_WORK else _forward_norm_serial
    consts = np.array([eps, 1.0 / max(u.shape[2], 1)], dtype=z.numpy().dtype)
    kernel(crow.numpy(), col.numpy(), w.detach().contiguous().numpy(), u.detach().contiguous().numpy(),
           gamma.detach().to(u.dtype).contiguous().numpy(), beta.detach().to(u.dtype).contiguous().numpy(), consts,
           z.numpy())
    return z


#: the CPU products as registered ops (a plain ``Library`` fragment with a CPU kernel: a traced step
#: calls them through the dispatcher for about 15 µs, ``torch.library.custom_op`` took 40 µs)
_LIB = torch.library.Library("fe_operators", "FRAGMENT")
_LIB.define("channel_conv(Tensor crow, Tensor col, Tensor w, Tensor u) -> Tensor")
_LIB.define("channel_conv_norm(Tensor crow, Tensor col, Tensor w, Tensor u, Tensor gamma, Tensor beta, "
            "float eps) -> Tensor")
_LIB.impl("channel_conv", lambda crow, col, w, u: _numba_product(crow, col, w, u), "CPU")
_LIB.impl("channel_conv_norm", lambda crow, col, w, u, gamma, beta, eps:
          _numba_product_norm(crow, col, w, u, gamma, beta, eps), "CPU")


def channel_conv(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The CPU product as the registered op ``fe_operators::channel_conv``, no autograd: what a traced step records."""
    return torch.ops.fe_operators.channel_conv(crow, col, w, u)


def channel_conv_norm(crow: torch.Tensor, col: torch.Tensor, w: torch.Tensor, u: torch.Tensor, gamma: torch.Tensor,
                      beta: torch.Tensor, eps: float) -> torch.Tensor:
    """The fused CPU product and LayerNorm as the registered op ``fe_operators::channel_conv_norm``, no autograd."""
    return torch.ops.fe_operators.channel_conv_norm(crow, col, w, u, gamma, beta, eps)


class _ChannelSpMM(torch.autograd.Function):
    """CPU: ``z = conv(W, u)`` with the compiled kernels for both gradients."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, w: torch.Tensor, pattern: OperatorPattern) -> torch.Tensor:
        ctx.pattern = pattern
        ctx.save_for_backward(u, w)
        return _numba_product(pattern.crow, pattern.col, w, u)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        u, w = ctx.saved_tensors
        pat: OperatorPattern = ctx.pattern
        grad = grad.contiguous()
        du = dw = None
        if ctx.needs_input_grad[0]:
            du = _numba_product(pat.t_crow, pat.t_col, w.detach().index_select(0, pat.t_perm), grad)
        if ctx.needs_input_grad[1]:
            dw = torch.empty_like(w)
            kernel = _weight_grad if dw.numel() * u.shape[1] >= PARALLEL_WORK else _weight_grad_serial
            kernel(pat.crow.numpy(), pat.col.numpy(), grad.numpy(), u.detach().contiguous().numpy(), dw.numpy())
        return du, dw, None


def channel_spmm(pattern: OperatorPattern, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``z[i, b, c] = Σ_j W_c[i, j] u[j, b, c]``: one sparse matrix per channel on ``pattern``.

    Parameters
    ----------
    pattern
        The level's :class:`OperatorPattern` (on ``u``'s device).
    w
        ``(nnz, C)``: channel ``c``'s matrix values on the pattern (e.g. ``pattern.values @ a``).
    u
        ``(n, B, C)`` node-major features.

    Returns
    -------
    torch.Tensor
        ``(n, B, C)``; differentiable in ``u`` and ``w``.
    """
    n = pattern.n_nodes
    if u.ndim != 3 or u.shape[0] != n or w.shape != (pattern.nnz, u.shape[2]):
        raise ValueError(f"channel_spmm: expected u ({n}, B, C) and w ({pattern.nnz}, C), got {tuple(u.shape)} "
                         f"and {tuple(w.shape)}")
    if u.device.type != "cpu" or u.dtype not in (torch.float32, torch.float64) or w.dtype != u.dtype:
        return _torch_product(pattern.rows, pattern.col, w, u, n)
    if not torch.is_grad_enabled() or not (u.requires_grad or w.requires_grad):
        if torch.jit.is_tracing():
            return channel_conv(pattern.crow, pattern.col, w, u)
        return _numba_product(pattern.crow, pattern.col, w, u)
    return _ChannelSpMM.apply(u, w, pattern)


def channel_spmm_norm(pattern: OperatorPattern, w: torch.Tensor, u: torch.Tensor,
                      norm: torch.nn.LayerNorm) -> torch.Tensor:
    """``norm(channel_spmm(pattern, w, u))``, fused into one pass where nothing needs gradients.

    Without autograd on the CPU (evaluation, a rollout's steps, a traced step) the LayerNorm of
    each row is taken by the product's kernel while the row is in cache: at batch 1 on the
    cylinder's finest level torch's LayerNorm over 16 channels cost half as much as the
    product itself.  Equal to the unfused composition to rounding (a sum of ``C`` terms in
    another order), and the same function whether traced or not (the traced step is checked
    bit for bit against the plain one).  Elsewhere (gradients, other devices and dtypes): the
    composition.

    Parameters
    ----------
    pattern, w, u
        As :func:`channel_spmm`.
    norm
        A ``torch.nn.LayerNorm`` over the ``C`` channels, with its affine parameters.
    """
    fused = (u.device.type == "cpu" and u.dtype in (torch.float32, torch.float64) and w.dtype == u.dtype
             and norm.elementwise_affine and norm.weight is not None and norm.bias is not None
             and tuple(norm.normalized_shape) == (u.shape[-1],) and u.ndim == 3
             and w.shape == (pattern.nnz, u.shape[2]) and u.shape[0] == pattern.n_nodes
             and not (torch.is_grad_enabled() and (u.requires_grad or w.requires_grad or norm.weight.requires_grad
                                                   or norm.bias.requires_grad)))
    if not fused:
        return norm(channel_spmm(pattern, w, u))
    if torch.jit.is_tracing():
        return channel_conv_norm(pattern.crow, pattern.col, w, u, norm.weight, norm.bias, float(norm.eps))
    return _numba_product_norm(pattern.crow, pattern.col, w, u, norm.weight, norm.bias, norm.eps)
