"""The per-level data of the hierarchical processor's U-Net, from a :class:`Hierarchy`.

Scaled operator stencils, Dirichlet masks, normalised coordinates, positive node weights
and the transfers between neighbouring levels (prolongation, mass-weighted restriction,
and injection where the levels are nested), precomputed once per hierarchy
(:mod:`fe_operators.models.processors.hierarchical` caches them per hierarchy and dtype).
"""

from __future__ import annotations

import dataclasses

import torch

from fe_operators.models.layers.operator_conv import OperatorPattern, operator_pattern
from fe_operators.multigrid.hierarchy import Hierarchy, block_diagonals
from fe_operators.sparse.maps import SparseMap, row_indices
from fe_operators.sparse.spmm import spmm

__all__ = ["UNetLevel", "unet_levels", "injection", "cast_levels", "node_major"]


@dataclasses.dataclass(frozen=True, eq=False)
class UNetLevel:
    """One level of the U-Net, precomputed from a :class:`Hierarchy` level.

    Attributes
    ----------
    pattern
        The level's ``K`` operators, each scaled to an O(1) stencil, and the identity, on
        their common sparsity pattern (:class:`OperatorPattern`).
    keep
        ``(n, 1, 1)``: 0 on Dirichlet nodes, 1 elsewhere.
    coords
        ``(n, gdim)``: coordinates normalised by the finest level's bounding box.
    weights
        ``(n,)`` positive node weights (the area each node stands for; sum ``|Ω|`` on
        geometric levels, the coarse space's share below).
    prolong
        ``P`` ``(n, n_coarser)`` from the next coarser level, or None on the coarsest.
    restrict
        ``R = diag(Pᵀ w)⁻¹ Pᵀ diag(w)`` ``(n_coarser, n)``: nodal values to the next coarser
        level (mass-weighted average), or None.
    restrict_dual
        ``Pᵀ``: dual vectors (residuals, load vectors) to the next coarser level, or None.
    inject
        ``(n_coarser,)``: the node of this level at each node of the next coarser level
        (nodal values to it by injection, where ``P`` interpolates: every coarse node is a
        fine node), or None.
    """

    pattern: OperatorPattern
    keep: torch.Tensor
    coords: torch.Tensor
    weights: torch.Tensor
    prolong: SparseMap | None
    restrict: SparseMap | None
    restrict_dual: SparseMap | None
    inject: torch.Tensor | None = None

    @property
    def n_nodes(self) -> int:
        return int(self.keep.shape[0])


def _abs_row_sums(ops: SparseMap, k: int, n: int) -> torch.Tensor:
    lo, hi = int(ops.crow[k * n]), int(ops.crow[(k + 1) * n])
    rows = row_indices(ops.crow[k * n:(k + 1) * n + 1] - lo)
    out = torch.zeros(n, dtype=ops.values.dtype, device=ops.device)
    return out.index_add_(0, rows, ops.values[lo:hi].abs())


def _scaled_rows(A: SparseMap, left: torch.Tensor, right: torch.Tensor) -> SparseMap:
    """``diag(left) A diag(right)``."""
    rows = row_indices(A.crow)
    return SparseMap(A.crow, A.col, A.values * left[rows] * right[A.col], A.n_cols)


def unet_levels(hierarchy: Hierarchy, start: int) -> list[UNetLevel]:
    """The :class:`UNetLevel` s of ``hierarchy.levels[start:]``, coarsest first (float64).

    Node weights: on the finest level the row sums of ``|M|`` (the lumped mass for CG1,
    positive for any Lagrange element), on each coarser level ``Pᵀ w`` of the finer one
    (clipped to stay positive), so that the restriction ``diag(Pᵀ w)⁻¹ Pᵀ diag(w)`` maps
    constants to constants.
    """
    levels = hierarchy.levels[start:]
    prolongs = [None] + list(hierarchy.prolongations[start:])
    fine = hierarchy.finest
    lo = fine.coords.amin(dim=0)
    span = (fine.coords.amax(dim=0) - lo).clamp_min(torch.finfo(fine.coords.dtype).tiny)
    # node weights, finest first
    weights: list[torch.Tensor] = [None] * len(levels)  # type: ignore[list-item]
    for i in reversed(range(len(levels))):
        lv = levels[i]
        mass_k = int(torch.nonzero(lv.operator_orders == 0)[0, 0])
        if i == len(levels) - 1:
            w = _abs_row_sums(lv.operators, mass_k, lv.n_nodes)
        else:
            P = prolongs[i + 1]
            w = spmm(P.transpose(), weights[i + 1][:, None])[:, 0]
            floor = 1e-6 * float(w.abs().mean())
            w = w.clamp_min(floor)
        weights[i] = w
    out = []
    for i, lv in enumerate(levels):
        n = lv.n_nodes
        diags = block_diagonals(lv.operators, n)
        orders = lv.operator_orders
        mass_k = int(torch.nonzero(orders == 0)[0, 0])
        m = diags[mass_k].abs().clamp_min(torch.finfo(diags.dtype).tiny)
        d = lv.stiffness_diag.abs().clamp_min(torch.finfo(diags.dtype).tiny)
        scale = torch.stack([1.0 / d if o == 2 else (1.0 / torch.sqrt(d * m) if o == 1 else 1.0 / m)
                             for o in orders.tolist()])
        P = prolongs[i]
        R = None
        if P is not None:
            Pt = P.transpose()
            R = _scaled_rows(Pt, 1.0 / weights[i - 1], weights[i])
        out.append(UNetLevel(
            pattern=operator_pattern(lv.operators, scale.reshape(-1)),
            keep=(~lv.boundary).to(d)[:, None, None],
            coords=2.0 * (lv.coords - lo) / span - 1.0,
            weights=weights[i],
            prolong=P,
            restrict=R,
            restrict_dual=None if P is None else P.transpose(),
            inject=None if P is None else injection(P),
        ))
    return out


def injection(P: SparseMap, tol: float = 1e-10) -> torch.Tensor | None:
    """The fine node at each coarse node of a prolongation ``P`` ``(n_fine, n_coarse)``, or None.

    A fine node stands at coarse node ``c`` where its row of ``P`` is ``e_c`` (one entry 1,
    the others below ``tol``): nested Lagrange levels interpolate so.  None unless every
    coarse node has one (smoothed aggregation, non-nested meshes).
    """
    rows = row_indices(P.crow)
    big = P.values.abs() > tol
    counts = torch.zeros(P.n_rows, dtype=torch.long, device=rows.device).index_add_(0, rows[big],
                                                                                      torch.ones_like(rows[big]))
    unit = big & ((P.values - 1).abs() < tol) & (counts[rows] == 1)
    idx = torch.full((P.n_cols,), -1, dtype=torch.long, device=rows.device)
    idx[P.col[unit]] = rows[unit]
    return idx if bool((idx >= 0).all()) else None


def cast_levels(levels: list[UNetLevel], dtype: torch.dtype) -> list[UNetLevel]:
    """The levels with their dense data in ``dtype`` (transfers cast on use)."""
    return [dataclasses.replace(lv, pattern=lv.pattern.to(dtype), keep=lv.keep.to(dtype),
                                coords=lv.coords.to(dtype), weights=lv.weights.to(dtype)) for lv in levels]


def node_major(A: SparseMap, x: torch.Tensor) -> torch.Tensor:
    """``A`` applied to node-major features ``(n, B, C)``."""
    n, b, c = x.shape
    return spmm(A, x.reshape(n, b * c)).reshape(A.n_rows, b, c)
