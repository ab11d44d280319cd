r"""The learned V-cycle of :mod:`~fe_operators.precond.mg` in torch: training and checking.

The same cycle that PETSc's ``PCMG`` runs with :class:`~fe_operators.precond.smoother.
LearnedJacobi` smoothers — same masked Galerkin operators (a
:class:`~fe_operators.multigrid.hierarchy.Hierarchy` from
:func:`~fe_operators.multigrid.galerkin.galerkin_hierarchy`), same multipliers, same order
of operations — written with differentiable sparse products
(:func:`fe_operators.sparse.spmm`, scipy kernels on the CPU), float64:

.. code-block:: text

    cycle(l, b):  l = 0: return A_0^{-1} b
                  x = 0;  repeat ν: x += m_l ⊙ (b − A_l x)
                  x += P̃_l cycle(l − 1, P̃_lᵀ (b − A_l x))
                  repeat ν: x += m_l ⊙ (b − A_l x)

With the learned polynomial smoother (``net.polynomial``) each smoothing is one step
``x += M_l (b − A_l x)`` with ``M_l v`` the ``ν`` steps ``y += ω_{l,j} m_l ⊙ (v − A_l y)``
from ``y = 0`` (:class:`~fe_operators.precond.smoother.LearnedPolynomial`'s order).

The training loss (:func:`convergence_loss`) is the energy-norm convergence factor of
the cycle as a stationary iteration, ``(‖E^k e‖_A / ‖e‖_A)^{1/k}`` with ``E = I − BA``,
on random errors: for this SPD cycle ``λ(BA) ⊂ (0, 1]`` and CG's condition number is
``1 / (1 − ρ(E))``.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from fe_operators.multigrid.hierarchy import Hierarchy, Level
from fe_operators.precond.features import csr_row_features
from fe_operators.precond.smoother import multipliers_torch
from fe_operators.sparse.spmm import spmm

__all__ = ["row_data", "coarse_inverse", "level_multipliers", "level_steps", "vcycle", "convergence_loss"]

# what the cycle derives from a level once (row features, the coarsest level's inverse), by level
_DERIVED: "weakref.WeakKeyDictionary[Level, dict]" = weakref.WeakKeyDictionary()


def row_data(level: Level) -> dict[str, torch.Tensor]:
    """The smoother's data of a level's operator, computed once per level.

    Returns
    -------
    dict
        ``features`` ``(n, 6)`` (:func:`~fe_operators.precond.features.csr_row_features`),
        ``abs_row_sum``, ``diagonal``, ``decoupled`` ``(n,)``.
    """
    derived = _DERIVED.setdefault(level, {})
    if "rows" not in derived:
        f = csr_row_features(level.block(0).to_scipy())
        derived["rows"] = {"features": torch.from_numpy(f.values), "abs_row_sum": torch.from_numpy(f.abs_row_sum),
                           "diagonal": torch.from_numpy(f.diagonal), "decoupled": torch.from_numpy(f.decoupled)}
    return derived["rows"]


def coarse_inverse(level: Level) -> torch.Tensor:
    """The dense inverse of a (coarsest) level's operator, computed once per level."""
    derived = _DERIVED.setdefault(level, {})
    if "inverse" not in derived:
        derived["inverse"] = torch.from_numpy(np.linalg.inv(level.block(0).to_scipy().toarray()))
    return derived["inverse"]


def level_multipliers(net: torch.nn.Module, hier: Hierarchy) -> list[torch.Tensor | None]:
    """The smoother diagonal of every level (None on the coarsest), differentiable in ``net``."""
    out: list[torch.Tensor | None] = [None]
    for lv in hier.levels[1:]:
        rows = row_data(lv)
        s = net(rows["features"])
        out.append(multipliers_torch(s, rows["abs_row_sum"], rows["diagonal"], rows["decoupled"]))
    return out


def level_steps(net: torch.nn.Module, hier: Hierarchy) -> list[torch.Tensor | None] | None:
    """The polynomial smoother's step weights of every level (None on the coarsest), or None
    for the plain smoother."""
    if not getattr(net, "polynomial", False):
        return None
    return [None] + net.step_weights(len(hier.levels) - 1)


def _poly(A, m: torch.Tensor, omegas: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``M v``: the weighted Richardson steps from zero (module docstring)."""
    y = omegas[0] * (m * v)
    for j in range(1, omegas.shape[0]):
        y = y + omegas[j] * (m * (v - spmm(A, y)))
    return y


def _cycle(hier: Hierarchy, mults: list[torch.Tensor | None], level: int, b: torch.Tensor,
           sweeps: int, steps: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    if level == 0:
        return coarse_inverse(hier.levels[0]) @ b
    A, P, m = hier.levels[level].operators, hier.prolongations[level - 1], mults[level][:, None]
    if steps is not None:
        x = _poly(A, m, steps[level], b)
        r = b - spmm(A, x)
        x = x + spmm(P, _cycle(hier, mults, level - 1, spmm(P.transpose(), r), sweeps, steps))
        return x + _poly(A, m, steps[level], b - spmm(A, x))
    x = m * b
    for _ in range(sweeps - 1):
        x = x + m * (b - spmm(A, x))
    r = b - spmm(A, x)
    x = x + spmm(P, _cycle(hier, mults, level - 1, spmm(P.transpose(), r), sweeps))
    for _ in range(sweeps):
        x = x + m * (b - spmm(A, x))
    return x


def vcycle(hier: Hierarchy, mults: list[torch.Tensor | None], b: torch.Tensor, sweeps: int,
           steps: list[torch.Tensor | None] | None = None) -> torch.Tensor:
    """``B b``: one V-cycle with smoother diagonals ``mults`` applied to the columns of ``b``.

    ``steps``: the polynomial smoother's step weights per level (:func:`level_steps`;
    None: ``sweeps`` plain steps).

    Shapes
    ------
    ``b`` ``(n, m)`` -> ``(n, m)``.
    """
    return _cycle(hier, mults, len(hier.levels) - 1, b, sweeps, steps)


def convergence_loss(net: torch.nn.Module, hier: Hierarchy, errors: torch.Tensor, cycles: int,
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
    steps = level_steps(net, hier)
    A = hier.finest.operators

    def energy(e: torch.Tensor) -> torch.Tensor:
        return (e * spmm(A, e)).sum(0)

    e = errors
    e0 = energy(e)
    for _ in range(cycles):
        e = e - vcycle(hier, mults, spmm(A, e), sweeps, steps)
    return 0.5 * torch.log(energy(e) / e0).mean() / cycles
