r"""Finite element norms and relative losses, batched and differentiable.

A norm here is the FE norm of a symmetric positive (semi)definite matrix ``A``:
:math:`\|u\|_A^2 = u^T A u` with ``u`` the DOF vector, e.g.

* ``A = M`` (consistent mass matrix): :math:`\|u_h\|_{L^2(\Omega)}`,
* ``A = K`` (stiffness): the :math:`H^1` seminorm :math:`|u_h|_{H^1}`,
* ``A = M + K``: the full :math:`H^1` norm,
* any assembled operator: its energy norm.

These are the norms Firedrake's ``assemble``/``errornorm`` compute, evaluated on DOF
tensors of layout ``(batch, n_nodes[, ncomp])`` without Firedrake in the loop, so that
models can be trained and evaluated in them.  Everything runs in float64; inputs in
float32 are promoted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.sparse.kernels import csr_matmul_rows, csr_quadratic, csr_quadratic_diff
from fe_operators.fem.assembly import assemble_scipy, mass_matrix, stiffness_matrix

__all__ = ["FENorm", "RelativeLoss", "ScaledLoss"]


class _QuadForm(torch.autograd.Function):
    """``q_k = x_k^T A x_k`` for symmetric ``A``; backward ``2 (A x_k) g_k`` reuses ``A x``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, norm: "FENorm") -> torch.Tensor:
        y, q = norm._quadratic(x)
        ctx.save_for_backward(y)
        return q

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (y,) = ctx.saved_tensors
        return 2.0 * g[:, None] * y, None


class _DiffQuadForm(torch.autograd.Function):
    """``(e_k^T A e_k, t_k^T A t_k)`` with ``e = u - t``, in one sweep over ``A``."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, t: torch.Tensor, norm: "FENorm") -> tuple[torch.Tensor, torch.Tensor]:
        y, qe, qt = norm._quadratic_diff(u, t)
        ctx.save_for_backward(y, t)
        ctx.norm = norm
        return qe, qt

    @staticmethod
    def backward(ctx: Any, ge: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        y, t = ctx.saved_tensors
        gu = 2.0 * ge[:, None] * y if ctx.needs_input_grad[0] else None
        gtt = None
        if ctx.needs_input_grad[1]:  # rare: a target that itself carries gradients
            gtt = -2.0 * ge[:, None] * y + 2.0 * gt[:, None] * ctx.norm.matvec(t)
        return gu, gtt, None


class FENorm:
    r"""The FE norm :math:`\|u\|_A = \sqrt{u^T A u}` of a symmetric sparse matrix.

    Parameters
    ----------
    A
        Square sparse matrix in PETSc's DOF order (interleaved for vector spaces).  It is
        symmetrised, :math:`(A + A^T)/2`, which leaves :math:`u^T A u` unchanged.
    shape
        DOF-tensor shape of one sample, ``(n_nodes,)`` or ``(n_nodes, ncomp)``; used to
        check inputs.  Default: ``(A.shape[0],)``.
    name
        For messages.

    Notes
    -----
    On the CPU the product uses a compiled numba kernel reading ``A`` once per batch; on
    CUDA a torch sparse CSR product.

    Examples
    --------
    >>> norm = FENorm.l2(V)                    # doctest: +SKIP
    >>> norm(u)                                # (batch,) L2 norms
    >>> norm.relative(pred, target).mean()     # relative L2 error
    """

    def __init__(self, A: sp.spmatrix, shape: tuple[int, ...] | None = None, name: str = "A") -> None:
        A = sp.csr_matrix(A, dtype=np.float64)
        if A.shape[0] != A.shape[1]:
            raise SpaceMismatchError(f"a norm needs a square matrix, got shape {A.shape}")
        A = sp.csr_matrix((A + A.T) * 0.5)
        A.sort_indices()
        self.name = name
        self.shape = tuple(shape) if shape is not None else (A.shape[0],)
        if int(np.prod(self.shape)) != A.shape[0]:
            raise SpaceMismatchError(f"DOF shape {self.shape} does not match a {A.shape[0]}-row matrix")
        self.A = A
        self._indptr = A.indptr.astype(np.int64)
        self._indices = A.indices.astype(np.int64)
        self._data = A.data
        self._device_cache: dict[torch.device, torch.Tensor] = {}

    # ---------------------------------------------------------------- constructors
    @classmethod
    def l2(cls, V: fd.FunctionSpace) -> "FENorm":
        """The :math:`L^2(\\Omega)` norm on ``V`` (consistent mass matrix)."""
        from fe_operators.fem.tensors import dof_shape

        return cls(mass_matrix(V), dof_shape(V), "L2")

    @classmethod
    def h1_seminorm(cls, V: fd.FunctionSpace) -> "FENorm":
        """The :math:`H^1` seminorm on ``V``, :math:`\\|\\nabla u\\|_{L^2}`."""
        from fe_operators.fem.tensors import dof_shape

        return cls(stiffness_matrix(V), dof_shape(V), "H1 seminorm")

    @classmethod
    def h1(cls, V: fd.FunctionSpace) -> "FENorm":
        """The full :math:`H^1` norm on ``V``, :math:`(\\|u\\|_{L^2}^2 + \\|\\nabla u\\|_{L^2}^2)^{1/2}`."""
        from fe_operators.fem.tensors import dof_shape

        return cls(mass_matrix(V) + stiffness_matrix(V), dof_shape(V), "H1")

    @classmethod
    def energy(cls, a: fd.Form) -> "FENorm":
        """The energy norm of a symmetric bilinear form ``a(u, v)`` on one space."""
        from fe_operators.fem.tensors import dof_shape

        V = a.arguments()[0].function_space()
        return cls(assemble_scipy(a), dof_shape(V), "energy")

    # ---------------------------------------------------------------- evaluation
    def _flat(self, u: torch.Tensor) -> torch.Tensor:
        if not isinstance(u, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(u).__name__}")
        if tuple(u.shape[1:]) != self.shape:
            raise SpaceMismatchError(
                f"{self.name} norm expects DOF tensors of shape (batch, "
                f"{', '.join(map(str, self.shape))}), got {tuple(u.shape)}"
            )
        return u.reshape(u.shape[0], -1).to(torch.float64)

    def _torch_matrix(self, device: torch.device) -> torch.Tensor:
        if device not in self._device_cache:
            from fe_operators.sparse.maps import scipy_to_torch

            self._device_cache[device] = scipy_to_torch(self.A, torch.float64, device)
        return self._device_cache[device]

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A x_k`` for a batch ``x`` of shape ``(batch, n)`` (float64, not differentiable)."""
        x = x.detach()
        if x.device.type == "cpu":
            return torch.from_numpy(csr_matmul_rows(self._indptr, self._indices, self._data, x.numpy()))
        return (self._torch_matrix(x.device) @ x.T).T.contiguous()

    def _quadratic(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach()
        if x.device.type == "cpu":
            y, q = csr_quadratic(self._indptr, self._indices, self._data, x.numpy())
            return torch.from_numpy(y), torch.from_numpy(q)
        y = self.matvec(x)
        return y, (x * y).sum(dim=1)

    def _quadratic_diff(self, u: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, t = u.detach(), t.detach()
        if u.device.type == "cpu":
            y, qe, qt = csr_quadratic_diff(self._indptr, self._indices, self._data, u.numpy(), t.numpy())
            return torch.from_numpy(y), torch.from_numpy(qe), torch.from_numpy(qt)
        e = u - t
        y = self.matvec(e)
        return y, (e * y).sum(dim=1), (t * self.matvec(t)).sum(dim=1)

    def squared(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`u_k^T A u_k` per sample, shape ``(batch,)``; differentiable."""
        return _QuadForm.apply(self._flat(u), self)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """The norm of each sample, shape ``(batch,)``; differentiable."""
        return self.squared(u).clamp_min(0.0).sqrt()

    def relative(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r"""Relative errors :math:`\|p_k - t_k\|_A / \|t_k\|_A`, shape ``(batch,)``.

        Raises
        ------
        ValueError
            A target has norm zero (the relative error is undefined).
        """
        if pred.shape != target.shape:
            raise SpaceMismatchError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        num, den = _DiffQuadForm.apply(self._flat(pred), self._flat(target), self)
        if bool((den <= 0).any()):
            bad = torch.nonzero(den <= 0).flatten().tolist()
            raise ValueError(f"relative {self.name} error undefined: targets {bad[:5]} have zero norm")
        return (num.clamp_min(0.0) / den).sqrt()


class RelativeLoss(torch.nn.Module):
    r"""Mean relative FE-norm error over a batch: :math:`\frac1B\sum_k \|p_k - t_k\|_A/\|t_k\|_A`.

    Parameters
    ----------
    norm
        An :class:`FENorm`, e.g. ``FENorm.l2(V)`` (relative L2) or ``FENorm.h1(V)``.
    reduction
        ``"mean"`` (default), ``"sum"`` or ``"none"`` (per sample).

    Shapes
    ------
    pred, target: ``(batch, n_nodes[, ncomp])``; output: scalar or ``(batch,)``.
    """

    def __init__(self, norm: FENorm, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.norm = norm
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r = self.norm.relative(pred, target)
        if self.reduction == "mean":
            return r.mean()
        if self.reduction == "sum":
            return r.sum()
        return r


class ScaledLoss(torch.nn.Module):
    r"""Squared FE-norm error over a fixed scale: :math:`\frac1B\sum_k \|p_k - t_k\|_A^2 / s`.

    One scale for every sample (``train.loss: scaled_l2`` takes the mean squared norm of the
    training outputs, :func:`fe_operators.train.losses.loss_for_file`), unlike
    :class:`RelativeLoss`, which weights each sample's gradient by ``1 / ||t_k||``: on data
    whose output norms span orders of magnitude (loads sampled down to zero) the smallest
    targets then dominate, and a fresh model can sit at ``p = 0`` (loss 1) for hundreds of
    updates; this loss is the mean squared error of the outputs in the FE norm, normalised.

    Parameters
    ----------
    norm
        An :class:`FENorm`.
    scale
        The positive scale ``s``.

    Shapes
    ------
    pred, target: ``(batch, n_nodes[, ncomp])``; output: scalar.
    """

    def __init__(self, norm: FENorm, scale: float) -> None:
        super().__init__()
        if not float(scale) > 0 or not math.isfinite(float(scale)):
            raise ValueError(f"expected a positive finite scale, got {scale!r}")
        self.norm, self.scale = norm, float(scale)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.norm.squared(pred - target).mean() / self.scale
