r"""The DCDM network and its loss (Kaneda et al. 2023, docs/design.md §6.5), torch only.

DCDM preconditions a flexible CG (PETSc ``fcg`` with ``mmax 2``, standard truncation) by
a nonlinear network: the search direction is :math:`q = f(r/\|r\|)`.  :class:`DCDMNet` has
two architectures (``architecture``, :data:`ARCHITECTURES`).

``vcycle`` (the default; cost): one V-cycle on the operator's own masked Galerkin
hierarchy, one channel on every level, damped-Jacobi smoothing with per-level weights,
the coarsest level solved exactly, and a small pointwise MLP correction (``width``
channels) on the ``nonlinear_levels`` levels above the coarsest (:class:`DCDMVCycle`).
The coarse operators, the level data and the weight-only products are computed once per
coefficient (the preconditioner's set-up, with PETSc's PtAP); an application is float32
and costs ~46 multiply-adds per fine node in 2D P1 (:meth:`DCDMNet.cost_per_level`;
``benchmarks/experiments/dcdm_cost.py`` prints it against one GMG V-cycle), about one
V-cycle's work, where the ``mgno`` net costs ~12,000.  The fine levels run only the linear
cycle, so FCG's iteration count stays flat under refinement (14 at 66k and at 1.05M DOFs
on the bench's family).

``mgno``: a small MgNO-like net on the problem's mesh hierarchy
(:class:`~fe_operators.multigrid.cycle.MultigridCycle`, docs/design.md §4.3):

1. :math:`\hat r = E\, r / \mathrm{rms}(r)` with :math:`E = \mathrm{diag}(e^{-c_i/2})`, where
   :math:`c_i = \log(a_{ii} / k_{ii})` is the local coefficient indicator (the operator's
   diagonal over the Laplacian's; 0 on Dirichlet rows): the scale-free input, symmetrically
   scaled so that for a slowly varying coefficient :math:`a` the Laplacian-like cycles
   below see :math:`a^{-1/2} r` (:math:`A^{-1} \approx E K^{-1} E`);
2. one linear multi-channel V-cycle on :math:`\hat r` as *dual* data (a residual is a
   dual vector), ``C`` channels, then normalised by its root mean square, so the rest of
   the network sees O(1) values on any level count;
3. ``layers`` residual nonlinear layers
   :math:`u \leftarrow u + \sigma(W_{Mg}(u) W + u W_0 + b(c))`, where :math:`b(c)` is a
   per-node bias from :math:`c` — with :math:`E`, what tells the network the coefficient
   it is preconditioning;
4. a pointwise projection to one channel, scaled by :math:`E` again; Dirichlet rows stay
   zero.

Its unsupervised, scale-free loss (:func:`dcdm_loss`) is, over unit-norm training
right-hand sides ``b``, the mean of :math:`\|b - \alpha(b) A f(b)\|^2` with
:math:`\alpha(b) = (f \cdot b)/(f \cdot A f)`: the residual after one exact line search
along :math:`f(b)` from zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from fe_operators.sparse.maps import SparseMap
from fe_operators.models.layers.mlp import MLP, activation
from fe_operators.sparse.spmm import spmm
from fe_operators.multigrid.cycle import CycleLevel, MultigridCycle, match_level
from fe_operators.multigrid.hierarchy import Hierarchy

__all__ = ["DCDMNet", "dcdm_loss", "start_level", "coefficient_indicator", "ARCHITECTURES", "VCycleLevel",
           "vcycle_levels", "DCDMVCycle", "mesh_level_sizes"]

#: the network architectures of :class:`DCDMNet` (``dcdm.architecture``)
ARCHITECTURES = ("vcycle", "mgno")


def start_level(hierarchy: Hierarchy, coarsest_h: float) -> int:
    """Index of the level of ``hierarchy`` whose mesh size is closest to ``coarsest_h``.

    Raises
    ------
    SpaceMismatchError
        No level within a factor 1.5 of ``coarsest_h``.
    """
    return match_level([lv.h for lv in hierarchy.levels], coarsest_h, "network",
                       "refine the base mesh it was trained on")


def mesh_level_sizes(V: Any) -> list[float]:
    """Mesh sizes (mean cell diameter) of the levels of ``V``'s ``MeshHierarchy`` up to ``V``'s mesh,
    coarsest first: measured on the coarsest mesh, halved per refinement (uniform refinement
    halves every cell), so nothing is assembled on the fine meshes.

    Raises
    ------
    NoHierarchyError
        ``V``'s mesh is not a level of a ``MeshHierarchy``.
    """
    import firedrake as fd
    from firedrake.mg import utils as mg_utils

    from fe_operators.errors import NoHierarchyError

    hierarchy, level = mg_utils.get_level(V.mesh().unique())
    if hierarchy is None or level != int(level):
        raise NoHierarchyError("the space's mesh is not a level of a MeshHierarchy: use a mesh spec with /rK "
                               "refinements (e.g. unitsquare:16/r4)")
    coarse = hierarchy[0]
    diam = fd.assemble(fd.interpolate(fd.CellDiameter(coarse), fd.FunctionSpace(coarse, "DG", 0)))
    h0 = float(np.mean(diam.dat.data_ro))
    rpl = hierarchy.refinements_per_level
    return [h0 / 2.0 ** (lev * rpl) for lev in range(int(level) + 1)]


def coefficient_indicator(diagonal: torch.Tensor, laplacian_diagonal: torch.Tensor,
                          decoupled: torch.Tensor) -> torch.Tensor:
    """``c_i = log(a_ii / k_ii)``, 0 on decoupled (Dirichlet) rows; ``(n,)``."""
    c = torch.log(diagonal / laplacian_diagonal)
    return torch.where(decoupled, torch.zeros_like(c), c)


class DCDMNet(torch.nn.Module):
    """``z = f(r)``: the DCDM search direction for residuals ``r`` (module docstring).

    Parameters
    ----------
    n_operators
        FE operators per level (6 in 2D).
    n_levels
        Levels of weights (the training hierarchy's).
    coarsest_h
        Mesh size of the coarsest training level (picks the start level on another
        hierarchy of the domain, see :func:`start_level`).
    width, layers, pre_smoothing, coarsest_smoothing, post_smoothing, act
        See :class:`~fe_operators.precond.config.DCDMSection`.

    Shapes
    ------
    ``forward(r, c, levels)``: ``r`` ``(n, B)`` residuals (dual vectors), ``c`` ``(n,)``
    coefficient indicator -> ``(n, B)``.
    """

    def __init__(self, n_operators: int, n_levels: int, coarsest_h: float, *, width: int = 8, layers: int = 2,
                 pre_smoothing: int = 1, coarsest_smoothing: int = 2, post_smoothing: int = 1,
                 act: str = "gelu", architecture: str = "vcycle", nonlinear_levels: int = 2) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
        self.n_operators, self.n_levels, self.coarsest_h = int(n_operators), int(n_levels), float(coarsest_h)
        self.width, self.layers, self.act = int(width), int(layers), act
        self.smoothing = (int(pre_smoothing), int(coarsest_smoothing), int(post_smoothing))
        self.architecture, self.nonlinear_levels = architecture, int(nonlinear_levels)
        c = self.width
        if architecture == "vcycle":
            self.vcycle = DCDMVCycle(self.n_levels, width=c, layers=self.layers, pre_smoothing=self.smoothing[0],
                                     post_smoothing=self.smoothing[2], nonlinear_levels=self.nonlinear_levels,
                                     act=act)
            return

        def cycle() -> MultigridCycle:
            return MultigridCycle(c, self.n_operators, self.n_levels, pre_smoothing=self.smoothing[0],
                                  coarsest_smoothing=self.smoothing[1], post_smoothing=self.smoothing[2])

        self.lift = torch.nn.Parameter(torch.linspace(0.5, 1.5, c))
        self.first = cycle()
        self.cycles = torch.nn.ModuleList(cycle() for _ in range(self.layers))
        self.mix = torch.nn.ModuleList(torch.nn.Linear(c, c, bias=False) for _ in range(self.layers))
        self.pointwise = torch.nn.ModuleList(torch.nn.Linear(c, c, bias=False) for _ in range(self.layers))
        self.bias = MLP([1, c, max(self.layers, 1) * c], act)
        self.activation = activation(act)
        self.project = torch.nn.Linear(c, 1, bias=False)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        pre, coarsest, post = self.smoothing
        return {"n_operators": self.n_operators, "n_levels": self.n_levels, "coarsest_h": self.coarsest_h,
                "width": self.width, "layers": self.layers, "pre_smoothing": pre, "coarsest_smoothing": coarsest,
                "post_smoothing": post, "act": self.act, "architecture": self.architecture,
                "nonlinear_levels": self.nonlinear_levels}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DCDMNet":
        """Rebuild from :attr:`config` (fresh weights); a config without ``architecture``
        (a checkpoint from before it existed) is the ``mgno`` network."""
        cfg = dict(config)
        cfg.setdefault("architecture", "mgno")
        return cls(cfg.pop("n_operators"), cfg.pop("n_levels"), cfg.pop("coarsest_h"), **cfg)

    def init_laplacian(self, laplacian: torch.Tensor) -> None:
        """Start every V-cycle's level operator near the Laplacian (a Poisson prior; ``mgno`` only:
        the ``vcycle`` network's operators are the problem's own)."""
        if self.architecture != "mgno":
            return
        for cyc in [self.first, *self.cycles]:
            cyc.init_laplacian(laplacian)

    def forward(self, r: torch.Tensor, c: torch.Tensor | None, levels: list, multipliers: list | None = None
                ) -> torch.Tensor:
        """Directions ``f(r)`` (see the class docstring).

        ``mgno``: ``levels`` the mesh hierarchy's :class:`~fe_operators.multigrid.cycle.CycleLevel` s,
        ``c`` the coefficient indicator.  ``vcycle``: ``levels`` the operator's
        :class:`VCycleLevel` s (:func:`vcycle_levels`), ``c`` unused (None), ``multipliers``
        optionally :meth:`DCDMVCycle.multipliers` computed once per coefficient.
        """
        if self.architecture == "vcycle":
            return self.vcycle(r, levels, multipliers)
        n, b = r.shape
        keep = levels[-1].keep.reshape(n, 1)
        scale = torch.exp(-0.5 * c.to(r.dtype))[:, None]                         # E
        rms = torch.sqrt((r * r).mean(0, keepdim=True)).clamp_min(torch.finfo(r.dtype).tiny)
        x = (scale * r / rms)[:, :, None] * self.lift                           # (n, B, C) dual data
        u = self.first(x, levels, dual=True)
        u = u / torch.sqrt((u * u).mean((0, 2), keepdim=True)).clamp_min(torch.finfo(r.dtype).tiny)
        bias = self.bias(c[:, None].to(r.dtype)).reshape(n, 1, -1, self.width)
        for k in range(self.layers):
            w = self.cycles[k](u, levels)
            u = u + self.activation(self.mix[k](w) + self.pointwise[k](u) + bias[:, :, k])
        return self.project(u).squeeze(-1) * (scale * keep)

    def extra_repr(self) -> str:
        return (f"architecture={self.architecture!r}, coarsest_h={self.coarsest_h:.4g}, levels={self.n_levels}, "
                f"width={self.width}")

    def cost_per_level(self, levels: list) -> list[int]:
        """Multiply-adds per level of one application to one residual (coarsest first).

        ``vcycle``: :meth:`DCDMVCycle.cost_per_level`; ``mgno``: its V-cycles'
        :meth:`~fe_operators.multigrid.cycle.MultigridCycle.cost_per_level` (the pointwise
        layers not counted).
        """
        if self.architecture == "vcycle":
            return self.vcycle.cost_per_level(levels)
        per = self.first.cost_per_level(levels, dual=True)
        for cyc in self.cycles:
            per = [a + b for a, b in zip(per, cyc.cost_per_level(levels))]
        return per


def dcdm_loss(net: DCDMNet, A: SparseMap, b: torch.Tensor, c: torch.Tensor | None, levels: list) -> torch.Tensor:
    """Mean over the columns of ``‖b − α A f(b)‖²``, ``α = (f·b)/(f·A f)`` (scale-free).

    Shapes
    ------
    ``b`` ``(n, B)`` right-hand sides (unit norm); ``c`` ``(n,)``.
    """
    f = net(b, c, levels)
    Af = spmm(A, f)
    alpha = (f * b).sum(0) / (f * Af).sum(0)
    res = b - alpha * Af
    return (res * res).sum(0).mean()


# --------------------------------------------------------------------------------------------
# The ``vcycle`` architecture: a V-cycle on the operator's own Galerkin hierarchy with learned
# smoothing weights on every level and a small nonlinear network on a few coarse levels.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class VCycleLevel:
    """One level of the ``vcycle`` architecture, computed once per coefficient (set-up).

    Attributes
    ----------
    operator
        ``A_l``: the masked Galerkin operator (identity rows on decoupled rows).
    prolong, restrict
        The masked prolongation ``P̃_l`` from the next coarser level and ``P̃_lᵀ``; None
        on the coarsest level.
    d_inv
        ``(n, 1)``: ``1 / a_ii`` on the free rows, 0 on decoupled (Dirichlet) rows.
    rho
        ``(n, 1)``: ``Σ_{j≠i} |a_ij| / a_ii`` (1 for the P1 Laplacian's interior rows): the
        coefficient-dependent feature of the nonlinear levels.
    inverse
        ``(n, n)`` dense ``A_0⁻¹`` on the coarsest level, else None.
    """

    operator: SparseMap
    prolong: SparseMap | None
    restrict: SparseMap | None
    d_inv: torch.Tensor
    rho: torch.Tensor
    inverse: torch.Tensor | None

    @property
    def n_nodes(self) -> int:
        """Rows of the level."""
        return int(self.d_inv.shape[0])


def _map(A: "sp.spmatrix", dtype: torch.dtype) -> SparseMap:
    """A scipy matrix as a :class:`SparseMap` whose values are stored in ``dtype`` already."""
    A = sp.csr_matrix(A)  # any column order within rows: the products do not need sorted indices
    return SparseMap(torch.from_numpy(np.asarray(A.indptr, dtype=np.int64)),
                     torch.from_numpy(np.asarray(A.indices, dtype=np.int64)),
                     torch.from_numpy(np.array(A.data, dtype=np.float32 if dtype == torch.float32 else np.float64)
                                      ).to(dtype), int(A.shape[1]))


def vcycle_levels(operators: Sequence["sp.spmatrix"], prolongations: Sequence["sp.spmatrix"],
                  dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                  restrictions: Sequence["sp.spmatrix"] | None = None) -> list[VCycleLevel]:
    """The :class:`VCycleLevel` s of a masked Galerkin hierarchy (coarsest first).

    Parameters
    ----------
    operators
        ``A_l`` as scipy CSR, coarsest first (the last is the fine operator), float64.
    prolongations
        ``P̃_l`` as scipy CSR, coarsest first: ``prolongations[l - 1]`` is ``(n_l, n_{l-1})``.
    dtype, device
        Of the tensors (the network's).
    restrictions
        ``P̃_lᵀ`` as CSR when the caller has them (reused across coefficients), else computed.
    """
    out = []
    for i, A in enumerate(operators):
        A = sp.csr_matrix(A)
        d = A.diagonal()
        if not np.all(d > 0):
            bad = int(np.flatnonzero(~(d > 0))[0])
            raise ValueError(f"level {i}: diagonal entry {d[bad]:.3g} of row {bad} is not positive (not an SPD "
                             "operator)")
        # Σ_j |a_ij| by one sparse product (scipy's compiled kernel), minus the diagonal
        off = sp.csr_matrix((np.abs(A.data), A.indices, A.indptr), shape=A.shape) @ np.ones(A.shape[1]) - d
        dec = off == 0  # decoupled (Dirichlet) rows: the diagonal is the row's only entry
        inv = None
        if i == 0:
            inv = torch.from_numpy(np.linalg.inv(A.toarray())).to(dtype=dtype, device=device)
        P = prolongations[i - 1] if i else None
        R = None if P is None else (restrictions[i - 1] if restrictions is not None else sp.csr_matrix(P.T))
        out.append(VCycleLevel(
            operator=_map(A, dtype).to(device),
            prolong=None if P is None else _map(P, dtype).to(device),
            restrict=None if R is None else _map(R, dtype).to(device),
            d_inv=torch.from_numpy(np.where(dec, 0.0, 1.0 / d)[:, None]).to(dtype=dtype, device=device),
            rho=torch.from_numpy((off / d)[:, None]).to(dtype=dtype, device=device),
            inverse=inv))
    return out


class DCDMVCycle(torch.nn.Module):
    r"""The ``vcycle`` architecture of :class:`DCDMNet` (module docstring, "cost").

    One V-cycle on the operator's masked Galerkin hierarchy (:class:`VCycleLevel`), one
    channel on every level, the coarsest solved exactly:

    .. code-block:: text

        down, l = L..1:  u_l = 0;  ν_pre times: u_l += ω_{l,s} D_l⁻¹ (f_l − A_l u_l);
                         f_{l-1} = P̃_lᵀ (f_l − A_l u_l)
        coarsest:        u_0 = A_0⁻¹ f_0
        up, l = 1..L:    u_l += P̃_l u_{l-1};
                         on the nonlinear levels: u_l += σ_l g_l(x_l, D_l⁻¹ A_l x_l, ρ_l),
                             x_l = D_l⁻¹ r_l / σ_l, r_l = f_l − A_l u_l, σ_l = rms(D_l⁻¹ r_l)
                         ν_post times: u_l += ω'_{l,s} D_l⁻¹ (f_l − A_l u_l)

    ``g_l`` is a pointwise MLP (``width`` channels, ``layers`` hidden layers, last layer
    zero at initialisation: the untrained network is the V-cycle) on levels ``1 …
    nonlinear_levels`` counted from the coarsest: the fine levels, where the work is,
    run the linear cycle only, so the cost per node does not grow and the iteration
    count stays that of a multigrid-preconditioned method under refinement.  The
    direction is positively homogeneous of degree one in ``r``.  Weights are per level
    counted from the coarsest (levels finer than trained reuse the finest trained ones).
    """

    def __init__(self, n_levels: int, *, width: int = 8, layers: int = 2, pre_smoothing: int = 1,
                 post_smoothing: int = 1, nonlinear_levels: int = 2, act: str = "gelu", omega: float = 0.6) -> None:
        super().__init__()
        self.n_levels, self.width, self.layers = int(n_levels), int(width), int(layers)
        self.pre, self.post = int(pre_smoothing), int(post_smoothing)
        self.nonlinear_levels = max(0, min(int(nonlinear_levels), self.n_levels - 1))
        self.omega_pre = torch.nn.Parameter(torch.full((self.n_levels, self.pre), float(omega)))
        self.omega_post = torch.nn.Parameter(torch.full((self.n_levels, self.post), float(omega)))
        self.nets = torch.nn.ModuleList()
        for _ in range(self.nonlinear_levels):
            mlp = MLP([3] + [self.width] * max(self.layers, 1) + [1], act)
            with torch.no_grad():
                last = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1]
                last.weight.zero_()
                if last.bias is not None:
                    last.bias.zero_()
            self.nets.append(mlp)

    def weight_index(self, n_used: int) -> list[int]:
        """Weight set of each used level (coarsest first), capped at the finest trained."""
        return [min(j, self.n_levels - 1) for j in range(n_used)]

    def multipliers(self, levels: list[VCycleLevel]) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """Per level the smoothing multipliers ``ω_{l,s} D_l⁻¹`` (pre, post): the weight-only
        products, computed once per coefficient in a preconditioner's set-up."""
        out = []
        for j, w in enumerate(self.weight_index(len(levels))):
            d = levels[j].d_inv
            out.append(([self.omega_pre[w, s] * d for s in range(self.pre)],
                        [self.omega_post[w, s] * d for s in range(self.post)]))
        return out

    def _correction(self, k: int, r: torch.Tensor, lv: VCycleLevel) -> torch.Tensor:
        x = lv.d_inv * r
        sigma = torch.sqrt((x * x).mean(0, keepdim=True)).clamp_min(torch.finfo(r.dtype).tiny)
        x = x / sigma
        t = lv.d_inv * spmm(lv.operator, x)
        n, b = x.shape
        feats = torch.stack([x, t, lv.rho.expand(n, b)], dim=-1)
        return self.nets[k](feats).squeeze(-1) * sigma * (lv.d_inv != 0).to(r.dtype)

    def forward(self, r: torch.Tensor, levels: list[VCycleLevel],
                multipliers: list | None = None) -> torch.Tensor:
        """The direction for residuals ``r`` ``(n, B)`` on ``levels`` (finest last)."""
        mults = self.multipliers(levels) if multipliers is None else multipliers
        n_used = len(levels)
        fs: list[torch.Tensor] = [r] * n_used
        us: list[torch.Tensor | None] = [None] * n_used
        for j in range(n_used - 1, 0, -1):
            lv, f = levels[j], fs[j]
            u = None
            for m in mults[j][0]:
                u = m * f if u is None else u + m * (f - spmm(lv.operator, u))
            us[j] = u
            fs[j - 1] = spmm(lv.restrict, f if u is None else f - spmm(lv.operator, u))
        us[0] = levels[0].inverse @ fs[0]
        for j in range(1, n_used):
            lv, f = levels[j], fs[j]
            e = spmm(lv.prolong, us[j - 1])
            u = e if us[j] is None else us[j] + e
            if j <= self.nonlinear_levels:
                u = u + self._correction(j - 1, f - spmm(lv.operator, u), lv)
            for m in mults[j][1]:
                u = u + m * (f - spmm(lv.operator, u))
            us[j] = u
        return us[-1]

    def cost_per_level(self, levels: list[VCycleLevel]) -> list[int]:
        """Multiply-adds of one :meth:`forward` for one right-hand side, per level (coarsest first).

        What counts: sparse products (one per stored entry), the coarsest level's dense
        solve (``n_0²``), the nonlinear levels' MLPs (one per weight, per node); diagonal
        scalings and vector updates do not (as in
        :meth:`~fe_operators.multigrid.cycle.MultigridCycle.cost_per_level`).  Transfers
        count on the finer level.
        """
        out = [levels[0].n_nodes ** 2]
        for j in range(1, len(levels)):
            lv = levels[j]
            nnz = int(lv.operator.values.numel())
            macs = self.pre * nnz  # the pre steps after the first (which is D⁻¹ f) and the residual
            macs += int(lv.restrict.values.numel()) + int(lv.prolong.values.numel())
            macs += self.post * nnz
            if j <= self.nonlinear_levels:
                mlp = sum(m.weight.numel() for m in self.nets[j - 1].modules() if isinstance(m, torch.nn.Linear))
                macs += 2 * nnz + lv.n_nodes * mlp  # its residual and D⁻¹A x, and the MLP
            out.append(macs)
        return out
