r"""A learned multi-channel V-cycle on a mesh hierarchy: ``W_Mg`` of an MgNO layer.

The MgNO paper's layer is :math:`\sigma(W_{Mg} u + W_0 u + b)` with :math:`W_{Mg}` one
V-cycle for :math:`A u = f` whose operators are learned 3×3 convolutions.  On finite
elements (docs/design.md §4.3) every convolution becomes a learned combination of fixed FE
operators assembled on each level, and the transfers are the exact FE prolongation and
its adjoint.  With ``C`` channels, level ``l``'s operators ``Φ_k`` (mass, first-order
``∫∂_aφ_jφ_i``, stiffness ``∫∂_aφ_j∂_bφ_i``; a
:class:`~fe_operators.multigrid.hierarchy.Level`) and the diagonal ``D`` of the level's Laplacian stiffness matrix:

.. math::

    \tilde A u &= \sum_k c_k\,D^{-1}\Phi_k\,u\,W^A_k,
      \quad c_k = 1,\ h_0^{-1},\ h_0^{-2} \text{ for stiffness, first-order, mass} \\
    \tilde S r &= r\,W^S_0 + \sum_k s_k\,\Phi_k\,r\,W^S_k,
      \quad s_k = D^{-1},\ (D\,m)^{-1/2},\ m^{-1} \text{ (} m \text{ the mass diagonal)}

``Ã = D⁻¹A`` is the level's operator ``A = Σ_k c_k Φ_k W^A_k`` — one second-order
differential operator in physical units, the same on every mesh of the domain — made
dimensionless by the geometric diagonal; ``h_0`` is the model's coarsest mesh size, so
all its terms are O(1) on the coarsest level and lower-order terms fade on finer levels
as they do in the PDE.  ``S̃`` is a local, dimensionless smoothing stencil.  One cycle on
data ``f`` (nodal values on the finest level) is

.. math::

    f_L = D^{-1} M f, \qquad
    u_l \leftarrow u_l + B_l\tilde S(f_l - \tilde A u_l) \ (\nu_l \text{ times, from } u_l = 0), \qquad
    f_{l-1} = D_{l-1}^{-1} P_l^T D_l (f_l - \tilde A u_l)\,W^R, \\
    u_l \leftarrow u_l + B_l P_l u_{l-1} W^P \ \text{(coarse to fine)},

with ``B_l`` the mask that keeps Dirichlet nodes out (they stay zero: their values come
from the SPON decoder), ``P_l`` the FE prolongation and ``P_lᵀ`` its adjoint, the
restriction of dual vectors (``D_l r`` is the residual as a dual vector).  The cycle is
linear in ``f``.  With ``W^A`` the Laplacian's combination and ``W^S_0 = ω I`` it is the
classical damped-Jacobi V-cycle for the FE Poisson problem (:meth:`set_classical`).

Why this scaling: on a smooth input the finest levels' contributions are ``O(h²)``
(``D⁻¹M ~ h²``), so adding a finer level to the hierarchy changes the output only by
discretisation error, whatever the weights — a model trained on one hierarchy runs on a
finer hierarchy of the domain.  Weights are per level, counted from the model's coarsest
level; levels finer than trained reuse the finest level's ``W^A, W^S`` and pass data and
corrections through the exact FE transfers without channel mixing (a mixing there would
be an O(1) change that no trained path contains).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from fe_operators.multigrid.hierarchy import (
    Hierarchy, Level, block_diagonals, block_row_sums, block_rows, side_by_side,
)
from fe_operators.sparse.maps import SparseMap, row_indices
from fe_operators.sparse.spmm import spmm

__all__ = ["CycleLevel", "cycle_levels", "cast_levels", "LevelCoefficients", "coefficient_values", "MultigridCycle",
           "match_level", "MATCH_FACTOR"]

#: how far (factor) a hierarchy's level may be from a model's coarsest mesh size and still match it
MATCH_FACTOR = 1.5


@dataclasses.dataclass(frozen=True, eq=False)
class CycleLevel:
    """What one level of the cycle needs, precomputed for a dtype and a reference size.

    Attributes
    ----------
    a_operators, s_operators
        The level's operators side by side, ``(n, n K)`` with column ``j K + k`` the
        column ``j`` of operator ``k`` (node-major, so that ``[Φ_1 … Φ_K]`` multiplies
        channels laid out ``(n, K, batch, C)`` without a transpose), the row scales of
        ``Ã`` and of ``S̃`` folded into their values.
    d, d_inv
        ``(n, 1, 1)``: the Laplacian stiffness diagonal and its inverse.
    keep
        ``(n, 1, 1)``: 0 on Dirichlet nodes, 1 elsewhere.
    mass
        The mass block ``(n, n)`` (the data of the finest level are ``D⁻¹ M f``).
    prolong, restrict
        ``P_l`` (from the next coarser level) and ``P_lᵀ``; None on the coarsest level.
    laplacian
        ``(K,)``: the Laplacian as a combination of the blocks.
    coefficient_map
        ``(nnz, n)``: nodal coefficient -> values of its stiffness matrix on the block
        pattern (see :class:`~fe_operators.multigrid.hierarchy.Level`), or None.
    pattern_rows, pattern_cols
        ``(nnz,)`` int64: the block pattern's entries (for applying coefficient operators).
    diagonal
        ``(n,)`` int64: position of each row's diagonal entry in the block pattern.
    mass_diag
        ``(n,)``: row sums of the mass matrix (weights of the coefficient averages).
    """

    a_operators: SparseMap
    s_operators: SparseMap
    d: torch.Tensor
    d_inv: torch.Tensor
    keep: torch.Tensor
    mass: SparseMap
    prolong: SparseMap | None
    restrict: SparseMap | None
    laplacian: torch.Tensor
    coefficient_map: SparseMap | None
    pattern_rows: torch.Tensor
    pattern_cols: torch.Tensor
    diagonal: torch.Tensor
    mass_diag: torch.Tensor

    @property
    def n_nodes(self) -> int:
        """Nodes of the level."""
        return int(self.d.shape[0])


def cycle_levels(hierarchy: Hierarchy, start: int, h0: float) -> list[CycleLevel]:
    """The :class:`CycleLevel` s of ``hierarchy.levels[start:]`` (coarsest first), float64.

    Parameters
    ----------
    hierarchy
        The context's hierarchy.
    start
        First (coarsest) level used.
    h0
        The model's reference mesh size (its coarsest level's).
    """
    out = []
    for i in range(start, hierarchy.n_levels):
        lv: Level = hierarchy.levels[i]
        n = lv.n_nodes
        diags = block_diagonals(lv.operators, n)
        orders = lv.operator_orders
        mass_k = int(torch.nonzero(orders == 0)[0, 0])
        m = diags[mass_k]
        d = lv.stiffness_diag
        c = torch.where(orders == 2, 1.0, torch.where(orders == 1, 1.0 / h0, 1.0 / h0 ** 2)).to(d)
        a_scale = c[:, None] / d[None, :]
        s_scale = torch.stack([1.0 / d if o == 2 else (1.0 / torch.sqrt(d * m) if o == 1 else 1.0 / m)
                               for o in orders.tolist()])
        P = hierarchy.prolongations[i - 1] if i > start else None
        nnz = int(lv.operators.crow[n])
        out.append(CycleLevel(
            a_operators=side_by_side(lv.operators, a_scale.reshape(-1)),
            s_operators=side_by_side(lv.operators, s_scale.reshape(-1)),
            d=d[:, None, None],
            d_inv=(1.0 / d)[:, None, None],
            keep=(~lv.boundary).to(d)[:, None, None],
            mass=block_rows(lv.operators, mass_k * n, (mass_k + 1) * n),
            prolong=P,
            restrict=None if P is None else P.transpose(),
            laplacian=lv.laplacian,
            coefficient_map=lv.coefficient_map,
            pattern_rows=row_indices(lv.operators.crow[:n + 1]),
            pattern_cols=lv.operators.col[:nnz],
            diagonal=_diagonal_positions(lv.operators.crow[:n + 1], lv.operators.col[:nnz]),
            mass_diag=block_row_sums(lv.operators, mass_k, n),
        ))
    return out


def _diagonal_positions(crow: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Position of the diagonal entry of every row of a CSR pattern that has one in each row."""
    rows = row_indices(crow)
    pos = torch.nonzero(rows == col)[:, 0]
    if pos.numel() != crow.numel() - 1:
        raise ValueError("the level's operator pattern lacks diagonal entries")
    return pos


def cast_levels(levels: list[CycleLevel], dtype: torch.dtype) -> list[CycleLevel]:
    """The dense tensors of ``levels`` in ``dtype`` (sparse maps are cast on use, cached)."""
    return [dataclasses.replace(lv, d=lv.d.to(dtype), d_inv=lv.d_inv.to(dtype), keep=lv.keep.to(dtype),
                                laplacian=lv.laplacian.to(dtype), mass_diag=lv.mass_diag.to(dtype))
            for lv in levels]


@dataclasses.dataclass(frozen=True, eq=False)
class LevelCoefficients:
    """The coefficient operators of one level for a batch.

    Attributes
    ----------
    values
        ``(nnz, B, m)``: entries of ``K_{x_c} = ∫ x_c ∇φ_j·∇φ_i`` on the block pattern.
    jacobi
        ``(n, B, m)``: ``D / diag(K_{x_c})``, the Jacobi scaling of each coefficient
        operator relative to the Laplacian's (for positive coefficients).
    """

    values: torch.Tensor
    jacobi: torch.Tensor


def coefficient_values(levels: list[CycleLevel], x: torch.Tensor) -> list[LevelCoefficients | None]:
    """Per level, the stiffness operators of the (positive) coefficient channels ``x``.

    ``x`` ``(n_finest, B, m)`` nodal on the finest level is carried down by mass-weighted
    averages, ``x_{l-1} = (P_lᵀ (w_l x_l)) / (P_lᵀ w_l)`` with ``w`` the mass row sums;
    each level with a coefficient map gets its :class:`LevelCoefficients`, the others None.
    """
    out: list[LevelCoefficients | None] = [None] * len(levels)
    for j in reversed(range(len(levels))):
        lv = levels[j]
        n, b, m = x.shape
        if lv.coefficient_map is not None:
            values = spmm(lv.coefficient_map, x.reshape(n, b * m)).reshape(-1, b, m)
            out[j] = LevelCoefficients(values, lv.d / values.index_select(0, lv.diagonal))
        if j > 0:
            w = lv.mass_diag[:, None, None]
            num = _sp(lv.restrict, x * w)
            den = _sp(lv.restrict, w.expand(n, 1, 1).contiguous())
            x = num / den
    return out


def _sp(A: SparseMap, x: torch.Tensor) -> torch.Tensor:
    """``A`` applied to node-major ``(n, B, C)``."""
    n, b, c = x.shape
    return spmm(A, x.reshape(n, b * c)).reshape(A.n_rows, b, c)


class MultigridCycle(torch.nn.Module):
    """One multi-channel V-cycle with learned level operators, smoothers and transfer mixing.

    Parameters
    ----------
    channels
        ``C``.
    n_operators
        ``K``, the number of FE operators per level (6 in 2D, 10 in 3D).
    n_levels
        Number of weight sets (levels counted from the coarsest).
    pre_smoothing
        Smoothing steps per level on the way down (the coarsest level excepted).
    coarsest_smoothing
        Smoothing steps on the coarsest level.
    post_smoothing
        Smoothing steps per level on the way up (0 in the MgNO paper).
    mixing
        How channels combine in ``Ã`` and ``S̃``: ``"full"`` — a ``C × C`` matrix per
        operator, ``Σ_k (Φ_k u) W_k`` (a 3×3 convolution's analogue); ``"separable"`` —
        per-channel weights per operator, then one ``C × C`` mixing,
        ``(Σ_k (Φ_k u) diag(w_k)) W`` (a depthwise-separable convolution's; about
        ``K`` times fewer dense flops).
    n_coefficients
        Coefficient channels ``m`` whose stiffness matrices ``K_{x_c} = ∫ x_c ∇φ_j·∇φ_i``
        join the level operators, ``Ã u += Σ_c D⁻¹ K_{x_c} u W^c_c`` (0: none).  With
        them the cycle can represent a multigrid solve of ``-∇·(x ∇u)`` for the input
        ``x`` itself (Darcy's permeability), on the levels that have a coefficient map.

    Shapes
    ------
    ``forward(f, levels)``: ``f`` ``(n_finest, batch, C)`` node-major -> same shape.
    """

    def __init__(self, channels: int, n_operators: int, n_levels: int, *, pre_smoothing: int = 1,
                 coarsest_smoothing: int = 2, post_smoothing: int = 0, mixing: str = "full",
                 n_coefficients: int = 0) -> None:
        super().__init__()
        if min(channels, n_operators, n_levels) < 1 or min(pre_smoothing, coarsest_smoothing, post_smoothing) < 0:
            raise ValueError(f"expected channels, n_operators, n_levels >= 1 and smoothing steps >= 0, got "
                             f"{channels}, {n_operators}, {n_levels}, {pre_smoothing}, {coarsest_smoothing}, "
                             f"{post_smoothing}")
        if mixing not in ("full", "separable"):
            raise ValueError(f"expected mixing 'full' or 'separable', got {mixing!r}")
        self.channels, self.n_operators, self.n_levels = int(channels), int(n_operators), int(n_levels)
        self.pre, self.coarsest, self.post = int(pre_smoothing), int(coarsest_smoothing), int(post_smoothing)
        self.mixing, self.n_coefficients = mixing, int(n_coefficients)
        c, k, n = self.channels, self.n_operators, self.n_levels
        std = 0.1 / math.sqrt(c)
        eye = torch.eye(c)
        if mixing == "full":
            self.A = torch.nn.Parameter(std * torch.randn(n, k, c, c))
            self.S = torch.nn.Parameter(std * torch.randn(n, k + 1, c, c))
            with torch.no_grad():
                self.S[:, 0] += 0.5 * eye
        else:
            self.A = torch.nn.Parameter(std * torch.randn(n, k, c))
            self.S = torch.nn.Parameter(std * torch.randn(n, k + 1, c))
            self.A_mix = torch.nn.Parameter(eye + std * torch.randn(n, c, c))
            self.S_mix = torch.nn.Parameter(eye + std * torch.randn(n, c, c))
            with torch.no_grad():
                self.S[:, 0] += 0.5
        self.R = torch.nn.Parameter(eye + std * torch.randn(n, c, c))
        self.P = torch.nn.Parameter(eye + std * torch.randn(n, c, c))
        m = self.n_coefficients
        shape = (n, m, c, c) if mixing == "full" else (n, m, c)
        self.Kc = torch.nn.Parameter(std * torch.randn(*shape)) if m else None
        self.Sc = torch.nn.Parameter(std * torch.randn(*shape)) if m else None

    def _laplacian_weights(self, laplacian: torch.Tensor) -> torch.Tensor:
        lap = laplacian.to(self.A)
        if self.mixing == "full":
            return lap[None, :, None, None] * torch.eye(self.channels).to(self.A)
        return lap[None, :, None].expand(1, self.n_operators, self.channels)

    def init_coefficient_solver(self, omega: float = 0.5) -> None:
        """Start as a multigrid cycle for ``-∇·(x_0 ∇u)`` with the first coefficient channel:
        ``Ã = D⁻¹K_{x_0}``, ``S̃ = ω D / diag(K_{x_0})`` (Jacobi), plus the random weights."""
        eye = torch.eye(self.channels).to(self.A)
        with torch.no_grad():
            self.Kc[:, 0] += eye if self.mixing == "full" else 1.0
            self.Sc[:, 0] += omega * (eye if self.mixing == "full" else 1.0)
            self.S[:, 0] -= 0.5 * (eye if self.mixing == "full" else 1.0)  # no Laplacian-Jacobi part

    def init_laplacian(self, laplacian: torch.Tensor) -> None:
        """Add the Laplacian's combination to ``W^A`` (a Poisson-like prior at initialisation)."""
        with torch.no_grad():
            self.A += self._laplacian_weights(laplacian)

    def set_classical(self, laplacian: torch.Tensor, omega: float = 2.0 / 3.0) -> None:
        """Weights of the classical damped-Jacobi V-cycle for the FE Poisson problem.

        ``Ã = D⁻¹K`` (the Laplacian's combination of the blocks), ``S̃ = ω I``, transfers
        without mixing; every channel then runs the same classical cycle.
        """
        eye = torch.eye(self.channels).to(self.A)
        with torch.no_grad():
            self.A.copy_(self._laplacian_weights(laplacian).expand_as(self.A))
            self.S.zero_()
            self.S[:, 0] = omega * (eye if self.mixing == "full" else 1.0)
            if self.mixing == "separable":
                self.A_mix.copy_(eye.expand_as(self.A_mix))
                self.S_mix.copy_(eye.expand_as(self.S_mix))
            self.R.copy_(eye.expand_as(self.R))
            self.P.copy_(eye.expand_as(self.P))
            if self.Kc is not None:
                self.Kc.zero_()
                self.Sc.zero_()

    def weight_index(self, n_used: int) -> list[int]:
        """Weight set of each used level (coarsest first): its index, capped at the finest trained."""
        return [min(j, self.n_levels - 1) for j in range(n_used)]

    def _apply_blocks(self, ops: SparseMap, u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``Σ_k Φ_k u W_k`` (full: ``weights`` ``(K, C, C)``) or ``Σ_k Φ_k u diag(w_k)``
        (separable: ``(K, C)``) with ``ops`` side by side; ``u`` ``(n, B, C)``."""
        n, b, c = u.shape
        k = self.n_operators
        if self.mixing == "full":
            # (n B, C) @ (C, K C) -> (n, B, K, C) -> node-major (n, K, B, C)
            z = (u.reshape(n * b, c) @ weights.permute(1, 0, 2).reshape(c, k * c)).reshape(n, b, k, c)
            z = z.permute(0, 2, 1, 3)
        else:
            z = u.unsqueeze(1) * weights[None, :, None, :]
        return spmm(ops, z.reshape(n * k, b * c)).reshape(n, b, c)

    def _mix(self, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return u @ weight if self.mixing == "full" else u * weight

    def _apply_coefficients(self, u: torch.Tensor, level: CycleLevel, w: int,
                            coef: "LevelCoefficients") -> torch.Tensor:
        """``Σ_c D⁻¹ K_{x_c} u W^c_c`` (before the separable mixing)."""
        rows, cols = level.pattern_rows, level.pattern_cols
        out = torch.zeros_like(u)
        for c in range(self.n_coefficients):  # a handful of input channels
            z = self._mix(u, self.Kc[w, c])
            out = out.index_add(0, rows, z.index_select(0, cols) * coef.values[:, :, c:c + 1])
        return out * level.d_inv

    def apply_operator(self, u: torch.Tensor, level: CycleLevel, w: int,
                       coef: "LevelCoefficients | None" = None) -> torch.Tensor:
        """``Ã u`` on one level with weight set ``w``; ``u`` ``(n, B, C)``; ``coef``: the
        level's coefficient operators or None."""
        y = self._apply_blocks(level.a_operators, u, self.A[w])
        if coef is not None and self.Kc is not None:
            y = y + self._apply_coefficients(u, level, w, coef)
        return y @ self.A_mix[w] if self.mixing == "separable" else y

    def smooth(self, u: torch.Tensor | None, f: torch.Tensor, level: CycleLevel, w: int,
               coef: "LevelCoefficients | None" = None) -> torch.Tensor:
        """One smoothing step ``u + B S̃ (f - Ã u)`` (``u = None`` means zero)."""
        r = f if u is None else f - self.apply_operator(u, level, w, coef)
        r = r * level.keep
        S = self.S[w]
        z = self._apply_blocks(level.s_operators, r, S[1:]) + self._mix(r, S[0])
        if coef is not None and self.Sc is not None:
            for c in range(self.n_coefficients):  # Jacobi of each coefficient operator
                z = z + self._mix(r * coef.jacobi[:, :, c:c + 1], self.Sc[w, c])
        if self.mixing == "separable":
            z = z @ self.S_mix[w]
        z = z * level.keep
        return z if u is None else u + z

    def forward(self, f: torch.Tensor, levels: list[CycleLevel], *, dual: bool = False,
                coefficients: list[LevelCoefficients | None] | None = None) -> torch.Tensor:
        """The cycle's output ``u`` for data ``f`` on the finest level.

        Parameters
        ----------
        f
            ``(n, B, C)``: nodal values of a function (default), or with ``dual`` a dual
            vector (an assembled right-hand side or residual, ``M f`` for nodal ``f``).
        levels
            From :func:`cycle_levels` (cast to ``f``'s dtype), coarsest first.
        coefficients
            From :func:`coefficient_values`: per level the coefficient operators, or None.
        """
        coef = coefficients if coefficients is not None else [None] * len(levels)
        n_used = len(levels)
        widx = self.weight_index(n_used)
        fine = levels[-1]
        fs: list[torch.Tensor | None] = [None] * n_used
        us: list[torch.Tensor | None] = [None] * n_used
        fs[-1] = (f if dual else _sp(fine.mass, f)) * fine.d_inv * fine.keep
        for j in reversed(range(n_used)):
            lv, w = levels[j], widx[j]
            u = None
            for _ in range(self.coarsest if j == 0 else self.pre):
                u = self.smooth(u, fs[j], lv, w, coef[j])
            us[j] = u
            if j > 0:
                r = fs[j] if u is None else fs[j] - self.apply_operator(u, lv, w, coef[j])
                coarse = levels[j - 1]
                rc = _sp(lv.restrict, r * lv.keep * lv.d)
                if j < self.n_levels:  # levels finer than trained pass the data on unmixed
                    rc = torch.matmul(rc, self.R[w])
                fs[j - 1] = rc * coarse.d_inv * coarse.keep
        for j in range(1, n_used):
            lv, w = levels[j], widx[j]
            below = us[j - 1]
            if below is not None:
                e = _sp(lv.prolong, below)
                e = (torch.matmul(e, self.P[w]) if j < self.n_levels else e) * lv.keep
                us[j] = e if us[j] is None else us[j] + e
            for _ in range(self.post):
                us[j] = self.smooth(us[j], fs[j], lv, w, coef[j])
        out = us[-1]
        return torch.zeros_like(f) if out is None else out

    def cost_per_level(self, levels: list[CycleLevel], *, dual: bool = False,
                       coefficients: bool = False) -> list[int]:
        """Multiply-adds of one :meth:`forward` for one sample, per level (coarsest first).

        What counts: sparse products (one per stored entry and channel), channel mixings
        (``n C_in C_out``), per-channel weights of ``"separable"`` mixing (``n K C``);
        masks and diagonal scalings do not.  Transfers (``P_lᵀ``, ``P_l`` and their
        mixings) count on the finer level ``l``.  ``coefficients``: the forward gets
        coefficient operators (on the levels that have a coefficient map).
        """
        c, k, full = self.channels, self.n_operators, self.mixing == "full"

        def mix(n: int) -> int:
            return n * c * c if full else n * c

        def blocks(lv: CycleLevel) -> int:  # Σ_k Φ_k u W_k: the K operators side by side, and the weights
            return lv.a_operators.values.numel() * c + lv.n_nodes * (k * c * c if full else k * c)

        def with_coefficients(lv: CycleLevel) -> tuple[int, int]:  # (mixings, products) of Σ_c K_{x_c} u W^c
            m = self.n_coefficients if coefficients and lv.coefficient_map is not None else 0
            return m * mix(lv.n_nodes), m * lv.pattern_rows.numel() * c

        def operator(lv: CycleLevel) -> int:
            mixes, products = with_coefficients(lv)
            return blocks(lv) + mixes + products + (0 if full else lv.n_nodes * c * c)

        def smooth(lv: CycleLevel, first: bool) -> int:
            return ((0 if first else operator(lv)) + blocks(lv) + mix(lv.n_nodes) + with_coefficients(lv)[0]
                    + (0 if full else lv.n_nodes * c * c))

        n_used = len(levels)
        macs = [0] * n_used
        has = [False] * n_used  # whether u_l is non-zero (a smoothing step or a correction reached it)
        if not dual:
            macs[-1] += levels[-1].mass.values.numel() * c
        for j in reversed(range(n_used)):
            lv = levels[j]
            steps = self.coarsest if j == 0 else self.pre
            macs[j] += sum(smooth(lv, first=s == 0) for s in range(steps))
            has[j] = steps > 0
            if j > 0:
                macs[j] += (operator(lv) if has[j] else 0) + lv.restrict.values.numel() * c
                macs[j] += levels[j - 1].n_nodes * c * c if j < self.n_levels else 0
        for j in range(1, n_used):
            lv = levels[j]
            if has[j - 1]:
                macs[j] += lv.prolong.values.numel() * c + (lv.n_nodes * c * c if j < self.n_levels else 0)
                has[j] = True
            for _ in range(self.post):
                macs[j] += smooth(lv, first=not has[j])
                has[j] = True
        return macs

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, operators={self.n_operators}, levels={self.n_levels}, "
                f"smoothing=({self.pre}, coarsest {self.coarsest}, post {self.post}), mixing={self.mixing!r}, "
                f"coefficients={self.n_coefficients}")


def match_level(sizes: list[float], coarsest_h: float, who: str, hint: str) -> int:
    """Index of the mesh size in ``sizes`` closest (in ratio) to a model's ``coarsest_h``.

    A model trained on one hierarchy of a domain starts its cycles on the level of another
    hierarchy with the same mesh size; ``who`` and ``hint`` complete the error message.

    Raises
    ------
    SpaceMismatchError
        No size within a factor :data:`MATCH_FACTOR` of ``coarsest_h``.
    """
    from fe_operators.errors import SpaceMismatchError

    dist = [abs(math.log(h / coarsest_h)) for h in sizes]
    best = min(range(len(sizes)), key=dist.__getitem__)
    if dist[best] > math.log(MATCH_FACTOR):
        raise SpaceMismatchError(
            f"the {who}'s coarsest level has mesh size {coarsest_h:.4g}; the mesh hierarchy's levels have "
            f"{', '.join(f'{h:.4g}' for h in sizes)}: {hint}")
    return best
