r"""The learned V-cycle of :mod:`~fe_operators.precond.mg` in torch: training and checking.

The same cycle that PETSc's ``PCMG`` runs with :class:`~fe_operators.precond.smoother.
LearnedJacobi` smoothers — same masked Galerkin operators
(:func:`~fe_operators.precond.mg.scipy_galerkin_hierarchy`), same multipliers, same order
of operations — written with differentiable sparse products
(:func:`fe_operators.sparse.spmm`, scipy kernels on the CPU), float64:

.. code-block:: text

    cycle(l, b):  l = 0: return A_0^{-1} b
                  x = 0;  repeat ν: x += m_l ⊙ (b − A_l x)
                  x += P̃_l cycle(l − 1, P̃_lᵀ (b − A_l x))
                  repeat ν: x += m_l ⊙ (b − A_l x)

The training loss (:func:`convergence_loss`) is the energy-norm convergence factor of
the cycle as a stationary iteration, ``(‖E^k e‖_A / ‖e‖_A)^{1/k}`` with ``E = I − BA``,
on random errors: for this SPD cycle ``λ(BA) ⊂ (0, 1]`` and CG's condition number is
``1 / (1 − ρ(E))``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fe_operators.sparse.maps import SparseMap
from fe_operators.sparse.spmm import spmm
from fe_operators.precond.features import csr_row_features
from fe_operators.precond.mg import ScipyHierarchy
from fe_operators.precond.smoother import multipliers_torch

__all__ = ["TorchLevel", "TorchHierarchy", "torch_hierarchy", "level_multipliers", "vcycle", "convergence_loss"]


@dataclasses.dataclass(frozen=True, eq=False)
class TorchLevel:
    """One level: operator, masked prolongation from below, and the smoother's row data.

    Shapes
    ------
    ``A`` ``(n, n)``; ``P`` ``(n, n_coarser)``; ``features`` ``(n, 6)``; the rest ``(n,)``.
    """

    A: SparseMap
    P: SparseMap | None
    features: torch.Tensor
    abs_row_sum: torch.Tensor
    diagonal: torch.Tensor
    decoupled: torch.Tensor

    @property
    def n(self) -> int:
        """Rows of the level."""
        return self.A.n_rows


@dataclasses.dataclass(frozen=True, eq=False)
class TorchHierarchy:
    """The levels (coarsest first) and the coarsest operator's inverse (dense)."""

    levels: tuple[TorchLevel, ...]
    coarse_inverse: torch.Tensor

    @property
    def n(self) -> int:
        """Rows of the finest level."""
        return self.levels[-1].n


def torch_hierarchy(h: ScipyHierarchy) -> TorchHierarchy:
    """Tensors of a :class:`~fe_operators.precond.mg.ScipyHierarchy` (row features computed here)."""
    levels = []
    for k, A in enumerate(h.operators):
        f = csr_row_features(A)
        levels.append(TorchLevel(
            A=SparseMap.from_scipy(A),
            P=SparseMap.from_scipy(h.prolongations[k - 1]) if k else None,
            features=torch.from_numpy(f.values),
            abs_row_sum=torch.from_numpy(f.abs_row_sum),
            diagonal=torch.from_numpy(f.diagonal),
            decoupled=torch.from_numpy(f.decoupled),
        ))
    inv = torch.from_numpy(np.linalg.inv(h.operators[0].toarray()))
    return TorchHierarchy(tuple(levels), inv)


def level_multipliers(net: torch.nn.Module, hier: TorchHierarchy) -> list[torch.Tensor | None]:
    """The smoother diagonal of every level (None on the coarsest), differentiable in ``net``."""
    out: list[torch.Tensor | None] = [None]
    for lv in hier.levels[1:]:
        s = net(lv.features)
        out.append(multipliers_torch(s, lv.abs_row_sum, lv.diagonal, lv.decoupled))
    return out


def _cycle(hier: TorchHierarchy, mults: list[torch.Tensor | None], level: int, b: torch.Tensor,
           sweeps: int) -> torch.Tensor:
    if level == 0:
        return hier.coarse_inverse @ b
    lv, m = hier.levels[level], mults[level][:, None]
    x = m * b
    for _ in range(sweeps - 1):
        x = x + m * (b - spmm(lv.A, x))
    r = b - spmm(lv.A, x)
    x = x + spmm(lv.P, _cycle(hier, mults, level - 1, spmm(lv.P.transpose(), r), sweeps))
    for _ in range(sweeps):
        x = x + m * (b - spmm(lv.A, x))
    return x


def vcycle(hier: TorchHierarchy, mults: list[torch.Tensor | None], b: torch.Tensor, sweeps: int) -> torch.Tensor:
    """``B b``: one V-cycle with smoother diagonals ``mults`` applied to the columns of ``b``.

    Shapes
    ------
    ``b`` ``(n, m)`` -> ``(n, m)``.
    """
    return _cycle(hier, mults, len(hier.levels) - 1, b, sweeps)


def convergence_loss(net: torch.nn.Module, hier: TorchHierarchy, errors: torch.Tensor, cycles: int,
                     sweeps: int) -> torch.Tensor:
    """Mean over the columns of ``log(‖E^k e‖_A / ‖e‖_A) / k``: the log convergence factor.

    Parameters
    ----------
    net
        The smoother network.
    hier
        The training operator's hierarchy.
    errors
        ``(n, m)`` initial errors ``e``.
    cycles
        ``k``.
    sweeps
        Smoothing sweeps per level.
    """
    mults = level_multipliers(net, hier)
    A = hier.levels[-1].A

    def energy(e: torch.Tensor) -> torch.Tensor:
        return (e * spmm(A, e)).sum(0)

    e = errors
    e0 = energy(e)
    for _ in range(cycles):
        e = e - vcycle(hier, mults, spmm(A, e), sweeps)
    return 0.5 * torch.log(energy(e) / e0).mean() / cycles
