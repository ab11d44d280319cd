r"""The MgNO paper's convolutional architecture on the vertex grid of a CG1 unit-square mesh.

A pinned baseline for ``bench-mgno``, beside the pinned FNO of :mod:`fno_grid`: the
architecture of *MgNO: Efficient Parameterization of Linear Operators via Multigrid*
(Liu, Xu, Zhang; arXiv 2310.19809) as its released code (``xlliu2017/MgNO``) builds it for
Darcy flow, written anew here from that description.

Layer ``i`` maps ``u`` to :math:`\sigma(W_{Mg} u + W_0 u + b)`:

* :math:`W_{Mg}` is one multi-channel V-cycle with no nonlinearity inside
  (:class:`MgVCycle`). The layer input is the data ``f`` of every level's smoothing. On the
  finest level ``u = S f`` (a zero first guess, so the first ``A`` drops out), then
  ``u <- u + S (f - A u)`` for the remaining steps; going down, the data is restricted by
  a stride-2 3×3 conv ``R`` and the current ``u`` by another one, ``Π`` (the coarse
  first guess), and smoothed the same way; going up, each level adds the stride-2
  transposed-conv prolongation of the coarser level's result. No post-smoothing. ``A``
  maps ``C`` channels to the data's channels, ``S`` back; all are bias-free 3×3 convs with
  zero padding (the only boundary condition).
* :math:`W_0 u + b` is a 1×1 conv with a bias: ``b`` is one constant per channel, not a
  learned field.
* :math:`\sigma` is GELU, also after the last layer; no separate lifting: the first
  layer's V-cycle reads the one input channel as its data (``A``: ``C -> 1``,
  ``S``: ``1 -> C``, ``R``: ``1 -> 1``), the final projection is a bias-free 1×1 conv
  ``C -> 1``. Weights keep PyTorch's default initialisation, as in the paper's code.

Levels: as many as the grid allows with the coarsest side at least 3, each side
``ceil(n / 2)`` of the one above (65, 33, 17, 9, 5, 3: 6 levels). A stride-2 3×3 conv
with padding 1 maps side ``n`` to ``ceil(n / 2)``; the transposed conv back uses kernel 3
for an odd finer side and 4 for an even one (padding 1), so sizes come back exactly, as the
paper's code does on its 211-point grid.

Pinned settings (:data:`PINNED`): 24 channels, 4 layers, one pre-smoothing step per level
and two on the coarsest. The parameter count of one layer with ``c`` input and ``C``
hidden channels, ``L`` levels, ``s`` smoothing steps in all and transposed kernels ``k_l``:
``9 c C (2 s - 1) + 9 (L - 1) (C² + c²) + C² Σ k_l² + c C + C``; plus ``C`` for the
projection: 492,021 at the pinned settings on 65×65 (the paper's 0.57 M Darcy model is
572,661: the same 4×24 network with kernel-4 transposed convs, its grids being even).

:class:`GridMgNO` takes and returns DOF tensors (float64, the file's DOF order) via
:func:`fno_grid.grid_permutation`, with the paper's Darcy normalisation: unit-Gaussian
per grid point (mean and unbiased std over the train samples, ``eps = 1e-5`` added to the
std), the input encoded, the network output decoded.

:func:`train_mgno_grid`: the paper's optimisation (Adam with L2 weight decay 1e-4, a
one-cycle schedule to ``max_lr = 5e-4``, batch 8) for a wall-clock budget, through
:func:`common.train_timed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from common import n_params, train_timed, val_fn
from fno_grid import grid_permutation

__all__ = ["PINNED", "GridMgNO", "MgNOGrid", "MgNOLayer", "MgVCycle", "OneCycle", "grid_mgno", "level_sizes",
           "train_mgno_grid"]

#: The settings pinned for the benchmark (issue 8 §3); smoothing: one step per level, two on the coarsest.
PINNED: dict[str, Any] = {"channels": 24, "layers": 4, "activation": "gelu"}

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh,
                                                    "silu": nn.SiLU}


def level_sizes(side: int, levels: int | None = None, min_side: int = 3) -> list[int]:
    """Grid sides of the multigrid levels, finest first: ``n, ceil(n/2), ...``.

    Parameters
    ----------
    side
        Points per side of the finest grid.
    levels
        Number of levels; default: as many as keep the coarsest side ``>= min_side``.
    min_side
        Smallest coarsest side of the default.

    Raises
    ------
    ValueError
        ``side < 1``, or ``levels`` would coarsen a side below 2.
    """
    if side < 1:
        raise ValueError(f"a grid side must be >= 1, got {side}")
    sizes = [int(side)]
    if levels is None:
        while (sizes[-1] + 1) // 2 >= min_side:
            sizes.append((sizes[-1] + 1) // 2)
        return sizes
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    for _ in range(levels - 1):
        if sizes[-1] < 3:
            raise ValueError(f"{levels} levels coarsen a {side}-point side below 2 points "
                             f"(sides {sizes}); use at most {len(sizes)} levels")
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class MgVCycle(nn.Module):
    """One multi-channel V-cycle, linear in its input: the :math:`W_{Mg}` of an MgNO layer.

    Parameters
    ----------
    in_channels
        Channels of the data ``f`` (the layer input).
    channels
        Channels of the iterate ``u`` (the output).
    sizes
        Grid side of every level, finest first (:func:`level_sizes`).
    smoothing
        Pre-smoothing steps per level (``smoothing[0] >= 1``).
    padding_mode
        Of the 3×3 convs (the paper's Darcy model: ``"zeros"``).

    Shapes
    ------
    ``forward``: ``(batch, in_channels, n, n)`` -> ``(batch, channels, n, n)``,
    ``n = sizes[0]``; ``down`` returns each level's ``(batch, channels, sizes[l], sizes[l])``.
    """

    def __init__(self, in_channels: int, channels: int, sizes: Sequence[int], smoothing: Sequence[int],
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        if len(smoothing) != len(sizes):
            raise ValueError(f"expected one smoothing count per level ({len(sizes)}), got {list(smoothing)}")
        if smoothing[0] < 1 or min(smoothing) < 0:
            raise ValueError(f"smoothing counts must be >= 0 with >= 1 on the finest level, got {list(smoothing)}")
        self.sizes = [int(s) for s in sizes]

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, padding_mode=padding_mode)

        self.smoothers = nn.ModuleList(nn.ModuleList(conv(in_channels, channels) for _ in range(s))
                                       for s in smoothing)
        # the finest level's first step starts from u = 0, where A u vanishes: no A for it
        self.operators = nn.ModuleList(nn.ModuleList(conv(channels, in_channels) for _ in range(s - (level == 0)))
                                       for level, s in enumerate(smoothing))
        self.restrict_data = nn.ModuleList(conv(in_channels, in_channels, 2) for _ in self.sizes[1:])
        self.restrict_state = nn.ModuleList(conv(channels, channels, 2) for _ in self.sizes[1:])
        # kernel 3 (odd finer side) or 4 (even): (m - 1) * 2 - 2 + k recovers the finer side exactly
        self.prolong = nn.ModuleList(nn.ConvTranspose2d(channels, channels, 3 if n % 2 else 4, stride=2, padding=1,
                                                        bias=False) for n in self.sizes[:-1])

    def down(self, f: torch.Tensor) -> list[torch.Tensor]:
        """The smoothed iterate of every level, finest first (the downward half of the cycle)."""
        states: list[torch.Tensor] = []
        u: torch.Tensor | None = None
        for level, (smoothers, operators) in enumerate(zip(self.smoothers, self.operators)):
            if level:
                f = self.restrict_data[level - 1](f)
                u = self.restrict_state[level - 1](u)
            skip = len(smoothers) - len(operators)
            for k, smooth in enumerate(smoothers):
                u = smooth(f) if u is None else u + smooth(f - operators[k - skip](u))
            states.append(u)
        return states

    def up(self, states: list[torch.Tensor]) -> torch.Tensor:
        """Add each coarser level's prolongated result to the finer one; the finest result."""
        u = states[-1]
        for level in range(len(states) - 2, -1, -1):
            u = states[level] + self.prolong[level](u)
        return u

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(f))


class MgNOLayer(nn.Module):
    r""":math:`\sigma(W_{Mg} u + W_0 u + b)`: a V-cycle plus a 1×1 conv with bias, then the activation.

    Shapes
    ------
    ``(batch, in_channels, n, n)`` -> ``(batch, channels, n, n)``.
    """

    def __init__(self, in_channels: int, channels: int, sizes: Sequence[int], smoothing: Sequence[int],
                 activation: str = "gelu", padding_mode: str = "zeros") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.multigrid = MgVCycle(in_channels, channels, sizes, smoothing, padding_mode)
        self.local = nn.Conv2d(in_channels, channels, 1)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.act(self.multigrid(u) + self.local(u))


class MgNOGrid(nn.Module):
    """The conv MgNO on an ``side × side`` grid: MgNO layers, then a bias-free 1×1 projection.

    Parameters
    ----------
    side
        Grid points per side (``N + 1`` for ``UnitSquareMesh(N, N)``).
    in_channels, out_channels
        Input and output fields (the paper's Darcy: 1 and 1, no coordinate channels).
    channels, layers
        Hidden channels and MgNO layers (pinned: 24 and 4).
    levels
        Multigrid levels (default: :func:`level_sizes`' maximum, 6 for 65).
    smoothing
        Pre-smoothing steps per level (default: 1 per level, 2 on the coarsest).
    activation
        ``"gelu"`` (the paper's), ``"relu"``, ``"tanh"`` or ``"silu"``.
    padding_mode
        Of the 3×3 convs (``"zeros"``).

    Shapes
    ------
    ``(batch, in_channels, side, side)`` -> ``(batch, out_channels, side, side)``.
    """

    def __init__(self, side: int, in_channels: int = 1, out_channels: int = 1, channels: int = 24, layers: int = 4,
                 levels: int | None = None, smoothing: Sequence[int] | None = None, activation: str = "gelu",
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        self.sizes = level_sizes(side, levels)
        if smoothing is None:
            smoothing = [1] * (len(self.sizes) - 1) + [2]
        self.smoothing = [int(s) for s in smoothing]
        self.layers = nn.ModuleList(
            MgNOLayer(in_channels if i == 0 else channels, channels, self.sizes, self.smoothing, activation,
                      padding_mode) for i in range(layers))
        self.projection = nn.Conv2d(channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.sizes[0], self.sizes[0]):
            raise ValueError(f"expected a {self.sizes[0]}x{self.sizes[0]} grid, got {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x)
        return self.projection(x)


class GridMgNO(nn.Module):
    """:class:`MgNOGrid` on DOF tensors: DOFs -> grid -> normalise -> MgNO -> decode -> DOFs.

    Parameters
    ----------
    mgno
        An :class:`MgNOGrid` with one input and one output channel.
    to_grid, to_dofs
        From :func:`fno_grid.grid_permutation`.
    side
        Grid points per side (``n + 1``).
    x_train, y_train
        ``(batch, n_dofs)`` physical train inputs and outputs: the per-point unit-Gaussian
        normalizers are fitted on them (mean, unbiased std, as the paper's code).
    eps
        Added to the std (the paper's 1e-5; the Dirichlet points have std 0, so the
        decoded boundary values are the train mean 0 plus ``1e-5`` times the network output).

    Shapes
    ------
    ``forward``: ``(batch, n_dofs)`` -> ``(batch, n_dofs)`` float64.
    """

    def __init__(self, mgno: nn.Module, to_grid: np.ndarray, to_dofs: np.ndarray, side: int,
                 x_train: torch.Tensor, y_train: torch.Tensor, eps: float = 1e-5) -> None:
        super().__init__()
        self.mgno, self.side = mgno, int(side)
        self.register_buffer("to_grid", torch.as_tensor(to_grid, dtype=torch.int64))
        self.register_buffer("to_dofs", torch.as_tensor(to_dofs, dtype=torch.int64))
        for name, data in (("x", self.grid(x_train.double())), ("y", self.grid(y_train.double()))):
            self.register_buffer(f"{name}_mean", data.mean(dim=0, keepdim=True))
            self.register_buffer(f"{name}_std", data.std(dim=0, keepdim=True) + eps)

    def grid(self, dofs: torch.Tensor) -> torch.Tensor:
        """``(batch, n_dofs)`` -> ``(batch, 1, side, side)`` (same dtype)."""
        return dofs.index_select(1, self.to_grid).reshape(dofs.shape[0], 1, self.side, self.side)

    def dofs(self, grid: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, side, side)`` -> ``(batch, n_dofs)`` (same dtype); inverse of :meth:`grid`."""
        return grid.reshape(grid.shape[0], -1).index_select(1, self.to_dofs)

    def forward_grid(self, x_grid: torch.Tensor) -> torch.Tensor:
        """Physical grid outputs ``(batch, 1, side, side)`` float64 of physical grid inputs."""
        z = self.mgno(((x_grid.double() - self.x_mean) / self.x_std).float())
        return z.double() * self.y_std + self.y_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Physical DOF outputs ``(batch, n_dofs)`` float64 of physical DOF inputs."""
        return self.dofs(self.forward_grid(self.grid(x)))


def grid_mgno(coords: np.ndarray, n: int, x_train: torch.Tensor, y_train: torch.Tensor,
              **options: Any) -> GridMgNO:
    """A :class:`GridMgNO` for the CG1 nodes ``coords`` of ``UnitSquareMesh(n, n)``.

    ``options`` go to :class:`MgNOGrid` (default: the pinned settings).

    Shapes
    ------
    ``coords``: ``(n_dofs, 2)``; ``x_train``, ``y_train``: ``(batch, n_dofs)``.
    """
    to_grid, to_dofs = grid_permutation(coords, n)
    return GridMgNO(MgNOGrid(n + 1, **{**PINNED, **options}), to_grid, to_dofs, n + 1, x_train, y_train)


class OneCycle:
    """torch's ``OneCycleLR`` (two phases, cosine annealing, cycled Adam ``beta1``) over a budget fraction.

    The paper's code uses ``OneCycleLR(max_lr, div_factor=2, final_div_factor=100,
    pct_start=0.2)`` with the default momentum cycling (``beta1`` from 0.95 down to 0.85 and
    back), stepped once per epoch. Here the schedule is a function of the elapsed fraction
    of a wall-clock budget, set before every batch (as :func:`common.train_timed`
    schedules), so it always ends with the budget, whatever the machine's load. Mapping
    torch's step ``t`` of ``T`` to a fraction piecewise linearly (step ``pct_start T - 1``
    to ``pct_start``, step ``T - 1`` to 1) gives torch's values at every step.

    Parameters
    ----------
    max_lr, div_factor, final_div_factor, pct_start, base_momentum, max_momentum
        As ``torch.optim.lr_scheduler.OneCycleLR``: the rate rises from
        ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of the budget,
        then falls to ``max_lr / (div_factor * final_div_factor)``.
    cycle_momentum
        Also set ``beta1`` of the groups' ``betas``.
    """

    def __init__(self, max_lr: float, *, div_factor: float = 2.0, final_div_factor: float = 100.0,
                 pct_start: float = 0.2, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 cycle_momentum: bool = True) -> None:
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start}")
        self.max_lr, self.pct_start = float(max_lr), float(pct_start)
        self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        self.cycle_momentum = cycle_momentum

    @staticmethod
    def _anneal(start: float, end: float, p: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * p) + 1.0)

    def values(self, frac: float) -> tuple[float, float]:
        """``(lr, beta1)`` at budget fraction ``frac`` (clipped to [0, 1])."""
        frac = min(max(frac, 0.0), 1.0)
        if frac <= self.pct_start:
            p = frac / self.pct_start
            return (self._anneal(self.initial_lr, self.max_lr, p),
                    self._anneal(self.max_momentum, self.base_momentum, p))
        p = (frac - self.pct_start) / (1.0 - self.pct_start)
        return self._anneal(self.max_lr, self.min_lr, p), self._anneal(self.base_momentum, self.max_momentum, p)

    def __call__(self, opt: torch.optim.Optimizer, frac: float) -> None:
        lr, beta1 = self.values(frac)
        for group in opt.param_groups:
            group["lr"] = lr
            if self.cycle_momentum:
                group["betas"] = (beta1, group["betas"][1])


def train_mgno_grid(model: GridMgNO, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                    y_val: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    budget_s: float, *, val_norm: Any, max_lr: float = 5e-4, batch: int = 8,
                    weight_decay: float = 1e-4, div_factor: float = 2.0, final_div_factor: float = 100.0,
                    pct_start: float = 0.2, seed: int = 0, val_batch: int = 20, label: str = "MgNO (grid)",
                    progress_every: float = 30.0) -> dict[str, Any]:
    """Train with the paper's optimisation for ``budget_s`` seconds; keep the best validation weights.

    Adam (L2 weight decay ``weight_decay``, coupled as in the paper's code) with
    :class:`OneCycle` over the wall-clock budget, stepped before every batch of ``batch``
    shuffled samples; after every epoch the mean relative error in ``val_norm`` on the
    validation set, and the weights of the best one are restored at the end (the paper
    selects on validation relative L2). Runs :func:`common.train_timed`.

    Parameters
    ----------
    model
        A :class:`GridMgNO` (any module mapping DOF tensors to DOF tensors works).
    x_train, y_train, x_val, y_val
        Physical DOF tensors.
    loss_fn
        ``loss_fn(pred, target)`` -> scalar, e.g. ``RelativeLoss(FENorm.h1(V), reduction="sum")``
        (the paper's relative H1 loss, summed over the batch as its code does).
    budget_s
        Wall-clock seconds of training (validation included).
    val_norm
        Has ``relative(pred, target) -> (batch,)``, e.g. ``FENorm.l2(V)``.

    Returns
    -------
    dict
        ``train_timed``'s record (``epochs``, ``steps``, ``train_s``, ``val_rel_l2``,
        ``best_epoch``) plus ``params`` and ``s_per_epoch`` (validation included).

    Shapes
    ------
    ``x_*``, ``y_*``: ``(samples, n_dofs)``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=max_lr / div_factor, weight_decay=weight_decay)
    schedule = OneCycle(max_lr, div_factor=div_factor, final_div_factor=final_div_factor, pct_start=pct_start)
    info = train_timed(model, lambda x, y: loss_fn(model(x), y), val_fn(model, x_val, y_val, val_norm, val_batch),
                       x_train, y_train, budget=budget_s, lr=max_lr, weight_decay=weight_decay, batch=batch,
                       seed=seed, label=label, progress_every=progress_every, optimizer=opt, schedule=schedule)
    info["params"] = n_params(model)
    info["s_per_epoch"] = info["train_s"] / max(info["epochs"], 1e-12)
    return info
