r"""The DCDM network and its loss (Kaneda et al. 2023, docs/design.md §6.5), torch only.

DCDM preconditions a flexible CG (PETSc ``fcg`` with ``mmax 2``, standard truncation) by
a nonlinear network: the search direction is :math:`q = f(r/\|r\|)`.  The network here,
:class:`DCDMNet`, is a small MgNO-like net on the problem's mesh hierarchy
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

from typing import Any

import torch

from fe_operators.sparse.maps import SparseMap
from fe_operators.models.layers.mlp import MLP, activation
from fe_operators.sparse.spmm import spmm
from fe_operators.multigrid.cycle import CycleLevel, MultigridCycle, match_level
from fe_operators.multigrid.hierarchy import Hierarchy

__all__ = ["DCDMNet", "dcdm_loss", "start_level", "coefficient_indicator"]


def start_level(hierarchy: Hierarchy, coarsest_h: float) -> int:
    """Index of the level of ``hierarchy`` whose mesh size is closest to ``coarsest_h``.

    Raises
    ------
    SpaceMismatchError
        No level within a factor 1.5 of ``coarsest_h``.
    """
    return match_level([lv.h for lv in hierarchy.levels], coarsest_h, "network",
                       "refine the base mesh it was trained on")


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
                 act: str = "gelu") -> None:
        super().__init__()
        self.n_operators, self.n_levels, self.coarsest_h = int(n_operators), int(n_levels), float(coarsest_h)
        self.width, self.layers, self.act = int(width), int(layers), act
        self.smoothing = (int(pre_smoothing), int(coarsest_smoothing), int(post_smoothing))
        c = self.width

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
                "post_smoothing": post, "act": self.act}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DCDMNet":
        """Rebuild from :attr:`config` (fresh weights)."""
        cfg = dict(config)
        return cls(cfg.pop("n_operators"), cfg.pop("n_levels"), cfg.pop("coarsest_h"), **cfg)

    def init_laplacian(self, laplacian: torch.Tensor) -> None:
        """Start every V-cycle's level operator near the Laplacian (a Poisson prior)."""
        for cyc in [self.first, *self.cycles]:
            cyc.init_laplacian(laplacian)

    def forward(self, r: torch.Tensor, c: torch.Tensor, levels: list[CycleLevel]) -> torch.Tensor:
        """Directions ``f(r)`` (see the class docstring)."""
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
        return f"coarsest_h={self.coarsest_h:.4g}, levels={self.n_levels}, width={self.width}"


def dcdm_loss(net: DCDMNet, A: SparseMap, b: torch.Tensor, c: torch.Tensor, levels: list[CycleLevel]) -> torch.Tensor:
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
