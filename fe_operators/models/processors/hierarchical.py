r"""The hierarchical processor (SPON-MG): a graph U-Net on the FE hierarchy of the output's mesh.

Levels (docs/design.md §4.4, §5): the levels of the context's hierarchy from the finest
(the output's nodes) down to the first level with at most ``coarsest_nodes`` nodes —
geometric levels where the data's mesh has a ``MeshHierarchy`` (``/rK`` specs, built-in
structured specs), smoothed-aggregation levels below them and for any other mesh
(:func:`fe_operators.multigrid.levels.mesh_levels`).  Counting levels ``k = 0`` (the
coarsest) to ``L - 1`` (the finest):

* **widths** grow toward the coarsest level, ``C_k = max(width / 2^k, min_width)``, so the
  dense arithmetic per level (``n_k C_k²``, ``n_k`` shrinking by about ``2^d`` per level)
  does not grow toward the finest level;
* **local message passing** on a level is a residual block made of a *channel-wise
  operator convolution* and a pointwise MLP (a ConvNeXt block on the mesh):

  .. math:: z_c = \big(a_{0c} I + \sum_j a_{jc} S_j\big)\, u_c, \qquad
            u \leftarrow B\,\big(u + W_2\,\sigma(W_1\,\mathrm{LN}(z) + b_1)\big)

  with ``S_j`` the level's FE operators (mass, first-order ``∫∂_aφ_jφ_i``, stiffness
  ``∫∂_aφ_j∂_bφ_i``) scaled to O(1) stencils (``m⁻¹``, ``(D m)^{-1/2}``, ``D⁻¹`` with ``D`` the
  Laplacian diagonal and ``m`` the mass diagonal, as the multigrid processor's smoothers),
  ``a_j`` learned per-channel weights, ``W_1 (C→2C), W_2 (2C→C)`` and ``B`` the mask that
  keeps the output's Dirichlet nodes at zero (their values come from SPON's decoder; on the
  finest level only nodes whose components are all constrained, so that a node with a
  free component keeps its features).
  The operators share one sparsity pattern, so channel ``c``'s combination is one sparse
  matrix on it (:func:`~fe_operators.models.layers.operator_conv.channel_spmm`: one
  multiply-add per entry, sample and channel, no ``K``-fold intermediate).
  Every level finer than the coarsest gets one block on the way down and one on the way
  up: the fine levels stay light;
* **down**: exact FE restriction of nodal values, ``R = M_c^{-1} Pᵀ M_f`` with ``M_f`` the
  fine level's (positive, lumped) node weights and ``M_c = diag(Pᵀ w_f)`` — a mass-weighted
  average, so constants stay constants — then a ``C_{k+1} → C_k`` channel map and a
  learned function of the level's coordinates;
* **coarsest level** (at most ``coarsest_nodes``, default 300): ``depth`` local blocks,
  then the global mixing over all its nodes: ``spectral_layers`` (default 2)
  :class:`SpectralLayer` s — the features integrated against a cosine basis of the
  bounding box (``modes`` per axis) with the node weights as quadrature weights, a
  ``C × C`` mixing per mode and the basis evaluated back, a Fourier layer on the FE level —
  and ``global_layers`` (default 0) pre-norm transformer layers (multi-head attention with
  the node weights in the logits, ``softmax(q·k + log w)``: an integral over the domain,
  not a sum over nodes).  Both are integrals over the domain, so they mean the same on
  any hierarchy of it.  The spectral layers are the default: at equal training time on
  Darcy they reached lower errors than attention at a fraction of its cost
  (``benchmarks/experiments/sponmg_vs_gnn.py``);
* **up**: a ``C_k → C_{k+1}`` channel map on the coarse level, FE prolongation ``P``, added
  to the skip connection from the way down, then the level's blocks.

Lifting (inputs and normalised coordinates to ``C_{L-1}`` channels) and projection (to the
output components) are pointwise MLPs on the finest level.  Compute is in the inputs'
dtype (float32 in training); the FE operators are float64 in the context and cast once.

Mesh-agnostic: the weights are per level counted from the coarsest, whose mesh size
``coarsest_h`` the model records.  On another hierarchy of the domain the model starts at
the level whose size matches ``coarsest_h`` (within a factor 1.5); levels finer than the
trained ones (a finer mesh of the domain) carry no weights: the inputs are carried down
to the finest trained level (their nodal values there, by injection on nested levels; the
restriction otherwise), the trained network runs on the levels it was trained on, and its
prediction, with the exact Dirichlet data on that level's boundary nodes, is prolonged
back — the FE interpolation of the coarse solution, whose distance to the fine one is the
resolution floor.  (Lifting the fine inputs and restricting the lifted features instead
gave 3.1x the floor-limited error on ``plate_holes`` r1 -> r2, and a relative H1 error of
109 %: see ``benchmarks/bench_mgno.py --stage transfer``.)

Cost: :meth:`HierarchicalProcessor.cost_per_level` returns the multiply-adds of one
sample's forward pass per level (finest first), :meth:`cost_report` prints them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.layers.mlp import MLP
from fe_operators.models.layers.operator_conv import channel_spmm_norm
from fe_operators.multigrid.cycle import match_level
from fe_operators.multigrid.hierarchy import Hierarchy
from fe_operators.models.processors.base import ACTIVATIONS, Processor, cost_report_text, register_processor
from fe_operators.models.processors.unet_levels import UNetLevel, cast_levels, node_major, unet_levels
from fe_operators.options import non_negative, option, positive
from fe_operators.sparse.spmm import spmm

__all__ = ["HierarchicalOptions", "HierarchicalProcessor", "UNetLevel", "unet_levels", "cosine_basis"]

#: default coarsest level size (see :data:`fe_operators.multigrid.aggregation.COARSEST_NODES`)
DEFAULT_COARSEST_NODES = 300


@dataclasses.dataclass
class HierarchicalOptions:
    """Options of the ``hierarchical`` processor (see :class:`HierarchicalProcessor`)."""

    width: int = option("Channels on the coarsest level; each finer level has half as many, down to min_width.",
                        positive, default=64)
    min_width: int = option("Fewest channels on any level (the finest levels).", positive, default=16)
    depth: int = option("Local message-passing blocks on the coarsest level (every finer level has one on the "
                        "way down and one on the way up).", positive, default=1)
    global_layers: int = option("Attention layers over the coarsest level's nodes (0: none).", non_negative,
                                default=0)
    heads: int = option("Attention heads (must divide width).", positive, default=4)
    spectral_layers: int = option(
        "Spectral layers on the coarsest level (0: none): a quadrature of the features against a cosine basis "
        "of the bounding box, a channel mixing per mode, and the basis evaluated back on the nodes.",
        non_negative, default=2)
    modes: int = option("Cosine modes per axis of the spectral layers.", positive, default=6)
    coarsest_nodes: int = option(
        "Levels from the finest down to the first with at most this many nodes; below the mesh's own levels "
        "(or on a mesh without a MeshHierarchy, all of them) the levels come from smoothed aggregation.",
        positive, default=DEFAULT_COARSEST_NODES)
    geometric_levels: bool = option(
        "Use the mesh hierarchy's levels where the data has one ('/rK' specs, built-in structured specs); "
        "false: every level below the data's mesh by smoothed aggregation.", default=True)
    act: ACTIVATIONS = option("Activation.", default="gelu")

    def validate(self, key: str = "") -> None:
        """Cross-field checks, naming the key."""
        from fe_operators.errors import ConfigError

        if self.width % self.heads:
            raise ConfigError(f"{key}.heads" if key else "heads",
                              f"expected a divisor of width={self.width}, got {self.heads}")
        if self.min_width > self.width:
            raise ConfigError(f"{key}.min_width" if key else "min_width",
                              f"expected at most width={self.width}, got {self.min_width}")


# ----------------------------------------------------------------------------- blocks


class OperatorBlock(torch.nn.Module):
    """Residual block: separable operator convolution, LayerNorm, pointwise MLP (see the module docstring)."""

    def __init__(self, channels: int, n_operators: int, act: str) -> None:
        super().__init__()
        c = channels
        self.n_operators = n_operators
        self.op_weights = torch.nn.Parameter(torch.randn(n_operators, c) / math.sqrt(n_operators))
        self.self_weight = torch.nn.Parameter(torch.ones(c))
        self.norm = torch.nn.LayerNorm(c)
        self.mlp = MLP([c, 2 * c, c], act)
        #: the processor's cache of weight-only products while it is frozen (None: not frozen)
        self.frozen_cache: dict | None = None

    def matrix_values(self, level: UNetLevel) -> torch.Tensor:
        """``(nnz, C)``: channel ``c``'s matrix ``Σ_k a_kc S_k + a_0c I`` on the level's pattern.

        Once per level while frozen (:meth:`HierarchicalProcessor.frozen`): at batch 1 this
        product of the weights and the operator values costs as much as the convolution.
        """
        cache = self.frozen_cache
        key = (id(self), level.pattern)
        if cache is not None and key in cache:
            return cache[key]
        w = level.pattern.values @ torch.cat([self.op_weights, self.self_weight[None]])
        if cache is not None:
            cache[key] = w
        return w

    def forward(self, u: torch.Tensor, level: UNetLevel) -> torch.Tensor:
        z = channel_spmm_norm(level.pattern, self.matrix_values(level), u, self.norm)
        return (u + self.mlp(z)) * level.keep

    @staticmethod
    def cost(n: int, nnz: int, k: int, c: int) -> int:
        """Multiply-adds of one forward pass of one sample on a level of ``n`` nodes.

        ``nnz``: entries of the operators' common pattern (diagonal included); ``k``:
        operators.  The per-channel matrix values (``nnz (k + 1) c``, once per batch) are
        counted too, then the product (``nnz c``), LayerNorm and the residual (``5 n c``)
        and the MLP (``4 n c²``).
        """
        return nnz * (k + 1) * c + nnz * c + n * (2 * c * c + 2 * c * c) + 5 * n * c


class GlobalLayer(torch.nn.Module):
    """Pre-norm transformer layer over all nodes of a level, the node weights as quadrature weights."""

    def __init__(self, channels: int, heads: int, act: str) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(channels), torch.nn.LayerNorm(channels)
        self.qkv = torch.nn.Linear(channels, 3 * channels)
        self.out = torch.nn.Linear(channels, channels)
        self.mlp = MLP([channels, 2 * channels, channels], act)

    def forward(self, u: torch.Tensor, bias: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        n, b, c = u.shape
        hd = c // self.heads
        q, k, v = self.qkv(self.norm1(u)).reshape(n, b, 3, self.heads, hd).permute(2, 1, 3, 0, 4)
        att = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, n, hd)
        u = u + self.out(att.permute(2, 0, 1, 3).reshape(n, b, c))
        return (u + self.mlp(self.norm2(u))) * keep

    @staticmethod
    def cost(n: int, c: int) -> int:
        return n * (3 * c * c + c * c + 4 * c * c) + 2 * n * n * c


def cosine_basis(coords: torch.Tensor, modes: int) -> torch.Tensor:
    """``(n, modes^d)``: ``Π_a cos(π k_a (x_a + 1) / 2)``, ``0 <= k_a < modes``, of coordinates in ``[-1, 1]^d``."""
    k = torch.arange(modes, dtype=coords.dtype, device=coords.device)
    out = torch.ones(coords.shape[0], 1, dtype=coords.dtype, device=coords.device)
    for a in range(coords.shape[1]):
        axis = torch.cos(0.5 * math.pi * (coords[:, a:a + 1] + 1.0) * k)           # (n, modes)
        out = (out[:, :, None] * axis[:, None, :]).reshape(coords.shape[0], -1)
    return out


class SpectralLayer(torch.nn.Module):
    r"""Global mixing on a level: ``u ← B(u + Σ_m ψ_m W_m ∫ ψ_m LN(u))``, then a pointwise MLP.

    ``ψ_m`` the cosine basis of the bounding box (:func:`cosine_basis`; not periodic), the
    integral a quadrature with the level's node weights (normalised to sum 1: the same
    coefficients on any mesh of the domain), ``W_m`` a ``C × C`` mixing per mode (as a
    Fourier layer's, on the FE level instead of a grid).
    """

    def __init__(self, channels: int, modes: int, gdim: int, act: str) -> None:
        super().__init__()
        self.modes = modes
        m = modes ** gdim
        self.norm1, self.norm2 = torch.nn.LayerNorm(channels), torch.nn.LayerNorm(channels)
        self.weight = torch.nn.Parameter(torch.randn(m, channels, channels) / channels)
        self.mlp = MLP([channels, 2 * channels, channels], act)

    def forward(self, u: torch.Tensor, basis: torch.Tensor, quad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # basis (n, M), quad (n, M): the basis times the normalised node weights
        coef = torch.einsum("nm,nbc->mbc", quad, self.norm1(u))
        u = u + torch.einsum("nm,mbd->nbd", basis, torch.bmm(coef, self.weight))
        return (u + self.mlp(self.norm2(u))) * keep

    @staticmethod
    def cost(n: int, m: int, c: int) -> int:
        return 2 * n * m * c + m * c * c + 4 * n * c * c + 10 * n * c


# ----------------------------------------------------------------------------- processor


@register_processor
class HierarchicalProcessor(Processor):
    r"""A graph U-Net on the FE hierarchy (SPON-MG; see the module docstring).

    Parameters
    ----------
    in_channels
        Input channels.
    out_ncomp
        Output components per node.
    gdim
        Geometric dimension.
    n_operators
        FE operators per level (6 in 2D, 10 in 3D).
    n_levels
        Levels of weights (counted from the coarsest).
    coarsest_h
        Mesh size of the coarsest level the model was built for.
    width, min_width, depth, global_layers, heads, spectral_layers, modes, coarsest_nodes, geometric_levels, act
        See :class:`HierarchicalOptions`.

    Shapes
    ------
    ``h``: ``(batch, n, C)``; output ``(batch, n_free)``.
    """

    name = "hierarchical"
    Options = HierarchicalOptions
    mesh_agnostic = True
    needs_hierarchy = True
    uses_boundary_data = True

    def __init__(self, in_channels: int, out_ncomp: int, gdim: int, n_operators: int, n_levels: int,
                 coarsest_h: float, *, width: int = 64, min_width: int = 16, depth: int = 1,
                 global_layers: int = 0, heads: int = 4, spectral_layers: int = 2, modes: int = 6,
                 coarsest_nodes: int = DEFAULT_COARSEST_NODES,
                 geometric_levels: bool = True, act: str = "gelu") -> None:
        super().__init__()
        if not coarsest_h > 0:
            raise ValueError(f"expected a positive coarsest_h, got {coarsest_h}")
        self.in_channels, self.out_ncomp, self.gdim = int(in_channels), int(out_ncomp), int(gdim)
        self.n_operators, self.n_levels, self.coarsest_h = int(n_operators), int(n_levels), float(coarsest_h)
        self.width, self.min_width, self.depth = int(width), int(min_width), int(depth)
        self.global_layers, self.heads = int(global_layers), int(heads)
        self.spectral_layers, self.modes = int(spectral_layers), int(modes)
        self.coarsest_nodes, self.geometric_levels, self.act = int(coarsest_nodes), bool(geometric_levels), act
        L, K = self.n_levels, self.n_operators
        widths = self.widths
        self.lift = MLP([self.in_channels + self.gdim, widths[-1], widths[-1]], act)
        self.project = MLP([widths[-1], widths[-1], self.out_ncomp], act)
        self.down_blocks = torch.nn.ModuleList(
            torch.nn.ModuleList(OperatorBlock(widths[k], K, act) for _ in range(self.blocks(k)))
            for k in range(L))
        self.up_blocks = torch.nn.ModuleList(
            torch.nn.ModuleList(OperatorBlock(widths[k], K, act) for _ in range(self.blocks(k) if k else 0))
            for k in range(L))
        # transitions between level k+1 (finer) and k: channel maps and coordinate features
        self.down_maps = torch.nn.ModuleList(torch.nn.Linear(widths[k + 1], widths[k]) for k in range(L - 1))
        self.up_maps = torch.nn.ModuleList(torch.nn.Linear(widths[k], widths[k + 1]) for k in range(L - 1))
        self.position = torch.nn.ModuleList(MLP([self.gdim, widths[k], widths[k]], act) for k in range(L - 1))
        self.global_blocks = torch.nn.ModuleList(
            GlobalLayer(widths[0], self.heads, act) for _ in range(self.global_layers))
        self.spectral_blocks = torch.nn.ModuleList(
            SpectralLayer(widths[0], self.modes, self.gdim, act) for _ in range(self.spectral_layers))
        self._cache: "weakref.WeakKeyDictionary[Hierarchy, dict]" = weakref.WeakKeyDictionary()
        self._frozen: dict | None = None

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Within: the weights are constants, so what depends on them and the levels alone
        (the blocks' per-channel matrices, the coordinate features, the spectral basis) is
        computed on first use and reused (a rollout's steps at batch 1 spent a sixth of
        their time on them).  Same values as without: the same products, computed once.
        Do not change the weights inside; the cache is dropped on exit.
        """
        outer = self._frozen
        cache = {} if outer is None else outer
        blocks = [m for m in self.modules() if isinstance(m, OperatorBlock)]
        self._frozen = cache
        for b in blocks:
            b.frozen_cache = cache
        try:
            yield
        finally:
            self._frozen = outer
            for b in blocks:
                b.frozen_cache = outer

    def _constant(self, key: tuple, make: Callable[[], Any]) -> Any:
        """``make()``, once per ``key`` while frozen."""
        if self._frozen is None:
            return make()
        if key not in self._frozen:
            self._frozen[key] = make()
        return self._frozen[key]

    # ------------------------------------------------------------------ shape of the net
    @property
    def widths(self) -> list[int]:
        """Channels per level, coarsest first."""
        return [max(self.width >> k, self.min_width) for k in range(self.n_levels)]

    def blocks(self, k: int) -> int:
        """Local blocks of level ``k`` (counted from the coarsest) on the way down (and, k > 0, up)."""
        return self.depth if k == 0 else 1

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "gdim": self.gdim,
                "n_operators": self.n_operators, "n_levels": self.n_levels, "coarsest_h": self.coarsest_h,
                "width": self.width, "min_width": self.min_width, "depth": self.depth,
                "global_layers": self.global_layers, "heads": self.heads, "spectral_layers": self.spectral_layers,
                "modes": self.modes, "coarsest_nodes": self.coarsest_nodes,
                "geometric_levels": self.geometric_levels, "act": self.act}

    @classmethod
    def context_options(cls, options: Any) -> dict[str, Any]:
        """Levels for any mesh: geometric where there are some (unless turned off), aggregation below."""
        return {"hierarchy": True, "coarsest_nodes": int(options.get("coarsest_nodes", DEFAULT_COARSEST_NODES)),
                "levels": "auto" if options.get("geometric_levels", True) else "algebraic"}

    @staticmethod
    def coarsest_level(hierarchy: Hierarchy, coarsest_nodes: int) -> int:
        """Index of the finest level with at most ``coarsest_nodes`` nodes (else the coarsest, 0)."""
        small = [i for i, lv in enumerate(hierarchy.levels) if lv.n_nodes <= coarsest_nodes]
        return max(small) if small else 0

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int,
                    options: HierarchicalOptions) -> "HierarchicalProcessor":
        """Levels from the context's hierarchy: the finest down to the first with at most ``coarsest_nodes``."""
        hier = context.hierarchy
        if hier is None:
            raise SpaceMismatchError(
                "the hierarchical processor needs a mesh context with levels: build it with "
                "context_from_problem(problem, **HierarchicalProcessor.context_options(options))")
        start = cls.coarsest_level(hier, options.coarsest_nodes)
        return cls(in_channels, out_ncomp, context.gdim, hier.finest.n_operators, hier.n_levels - start,
                   hier.levels[start].h, **dataclasses.asdict(options))

    # ------------------------------------------------------------------ context
    def start_level(self, hierarchy: Hierarchy) -> int:
        """Index of the level of ``hierarchy`` that plays the model's coarsest level."""
        return match_level([lv.h for lv in hierarchy.levels], self.coarsest_h, "hierarchical processor",
                           "evaluate on a mesh of the same domain at least as fine as the training mesh")

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless the context carries matching levels."""
        super().check_context(context)
        if context.gdim != self.gdim or context.ncomp != self.out_ncomp:
            raise SpaceMismatchError(
                f"expected a mesh context of geometric dimension {self.gdim} with {self.out_ncomp} output "
                f"components per node, got {context.gdim} and {context.ncomp}")
        hier = context.hierarchy
        if hier.finest.n_operators != self.n_operators:
            raise SpaceMismatchError(f"expected {self.n_operators} FE operators per level, the context has "
                                     f"{hier.finest.n_operators}")
        used = hier.n_levels - self.start_level(hier)
        if used < self.n_levels:
            raise SpaceMismatchError(
                f"the model has {self.n_levels} levels from its coarsest (mesh size {self.coarsest_h:.4g}); this "
                f"mesh has {used} from there: evaluate on a mesh at least as fine as the training mesh")

    def levels_for(self, hierarchy: Hierarchy, dtype: torch.dtype) -> list[UNetLevel]:
        """The U-Net's per-level data for ``hierarchy`` (cached per hierarchy and dtype), coarsest first."""
        per = self._cache.setdefault(hierarchy, {})
        if None not in per:
            per[None] = unet_levels(hierarchy, self.start_level(hierarchy))
        if dtype not in per:
            per[dtype] = cast_levels(per[None], dtype)
        return per[dtype]

    # ------------------------------------------------------------------ forward
    def forward(self, h: torch.Tensor, context: MeshContext, boundary: torch.Tensor | None = None) -> torch.Tensor:
        """Free DOF values ``(batch, n_free)``.

        ``boundary``: the Dirichlet data on the output nodes in the network's units,
        ``(batch, n, ncomp)`` or ``(n, ncomp)`` (SPON passes its lifting).  It is read only on
        a hierarchy finer than the trained one, to interpolate the coarse prediction with
        its exact boundary values.
        """
        self.check_context(context)
        hier = context.hierarchy
        batch, n, _ = h.shape
        levels = self.levels_for(hier, h.dtype)
        L = self.n_levels
        hn = h.transpose(0, 1)                                                   # (n, B, C_in)
        # on the finest level, mask only the nodes whose components are all constrained: a node
        # with one free component (a roller) must keep its features (the level masks say "any")
        constrained = context.mask
        g = None
        if boundary is not None:
            g = boundary.reshape(-1, n, self.out_ncomp).expand(batch, n, self.out_ncomp).transpose(0, 1).to(h)
        if hier.to_finest is not None:
            hn = node_major(hier.to_finest, hn)
            constrained = spmm(hier.to_finest, constrained.to(h.dtype)) > 0.5
            g = None if g is None else node_major(hier.to_finest, g)
        hn, constrained, g = self._carry_down(levels, hn, constrained, g)

        def finest() -> UNetLevel:
            keep = (~constrained.all(dim=1)).to(h.dtype)[:, None, None]
            return dataclasses.replace(levels[L - 1], keep=keep)

        trained = finest() if hier.to_finest is not None or L < len(levels) else \
            self._constant(("finest", levels[L - 1], context.mask), finest)
        y = self._unet(levels[:L - 1] + [trained], hn, batch)
        y = self._carry_up(levels, y, constrained, g)
        if hier.from_finest is not None:
            y = node_major(hier.from_finest, y)
        return y.transpose(0, 1).reshape(batch, n * self.out_ncomp).index_select(1, context.free)

    def _carry_down(self, levels: list[UNetLevel], hn: torch.Tensor, constrained: torch.Tensor,
                    g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, Dirichlet mask and data of the finest level carried to the finest trained level.

        On a hierarchy finer than the trained one the extra levels carry no weights: the
        trained network runs on the level it was trained on, seeing the inputs it was trained
        on (their values at its nodes: injection, where every coarse node is a fine node, as
        on geometric levels), and :meth:`_carry_up` interpolates its prediction back.  Where
        a level has no injection, inputs are restricted (``R``) and the data dropped.
        """
        for j in range(len(levels) - 1, self.n_levels - 1, -1):
            idx = levels[j].inject
            if idx is None:
                hn = node_major(levels[j].restrict, hn)
                constrained = (levels[j - 1].keep[:, 0] == 0).expand(-1, constrained.shape[1])
                g = None
            else:
                hn, constrained = hn.index_select(0, idx), constrained.index_select(0, idx)
                g = None if g is None else g.index_select(0, idx)
        return hn, constrained, g

    def _carry_up(self, levels: list[UNetLevel], y: torch.Tensor, constrained: torch.Tensor,
                  g: torch.Tensor | None) -> torch.Tensor:
        """The prediction on the finest trained level interpolated to the finest level.

        With the boundary data, ``P`` applied to the coarse field (prediction on the free
        nodes, data on the Dirichlet ones) is its FE interpolation; without it, values are
        interpolated from the free nodes only (weights renormalised).
        """
        L = self.n_levels
        if L == len(levels):
            return y
        if g is not None:
            y = torch.where(constrained[:, None, :], g, y)
            for j in range(L, len(levels)):
                y = node_major(levels[j].prolong, y)
            return y
        keep = (~constrained.all(dim=1)).to(y.dtype)[:, None, None]
        for j in range(L, len(levels)):
            P = levels[j].prolong
            y = node_major(P, y * keep) / node_major(P, keep).clamp_min(torch.finfo(y.dtype).eps)
            keep = levels[j].keep
        return y

    def _unet(self, levels: list[UNetLevel], hn: torch.Tensor, batch: int) -> torch.Tensor:
        """Lifting, the U-Net over the trained ``levels`` (coarsest first), projection: ``(n, B, ncomp)``."""
        L = self.n_levels
        x = levels[-1].coords
        u = self.lift(torch.cat([hn, x.unsqueeze(1).expand(-1, batch, self.gdim)], dim=-1))
        u = u * levels[-1].keep
        skips: list[torch.Tensor] = [None] * L  # type: ignore[list-item]
        for k in range(L - 1, -1, -1):                # down, finest trained level first
            lv = levels[k]
            if k < L - 1:
                fine = levels[k + 1]
                position = self._constant(("position", k, lv), lambda: self.position[k](lv.coords).unsqueeze(1))
                u = self.down_maps[k](node_major(fine.restrict, u)) + position
                u = u * lv.keep
            for block in self.down_blocks[k]:
                u = block(u, lv)
            skips[k] = u
        u = self._global(levels[0], u)
        for k in range(1, L):                         # up
            lv = levels[k]
            u = (skips[k] + node_major(lv.prolong, self.up_maps[k - 1](u))) * lv.keep
            for block in self.up_blocks[k]:
                u = block(u, lv)
        return self.project(u)

    def _global(self, coarsest: UNetLevel, u: torch.Tensor) -> torch.Tensor:
        """The spectral and attention layers on the coarsest level."""
        if self.spectral_layers:
            def make() -> tuple[torch.Tensor, torch.Tensor]:
                basis = cosine_basis(coarsest.coords, self.modes)
                return basis, basis * (coarsest.weights / coarsest.weights.sum())[:, None]

            basis, quad = self._constant(("spectral", coarsest), make)
            for layer in self.spectral_blocks:
                u = layer(u, basis, quad, coarsest.keep)
        if self.global_layers:
            w = coarsest.weights
            bias = torch.log(w / w.mean()).masked_fill(coarsest.keep[:, 0, 0] == 0, float("-inf"))
            bias = bias[None, None, None, :]
            for layer in self.global_blocks:
                u = layer(u, bias, coarsest.keep)
        return u

    # ------------------------------------------------------------------ cost
    def cost_per_level(self, context: MeshContext | Hierarchy) -> list[dict[str, Any]]:
        """Multiply-adds of one sample's forward pass per level, finest first.

        Each entry: ``{"level", "nodes", "width", "blocks", "macs"}``; ``level`` is the
        index in the context's hierarchy (coarsest 0).  The finest entry includes the
        lifting and projection MLPs (on a finer hierarchy than the trained one: the finest
        trained level; the finer levels count the inputs carried down and the prediction
        prolonged); each level's transfers (restriction, prolongation,
        channel maps) count on the finer of the two levels they join, the attention on the
        coarsest.  Sparse products count one multiply-add per stored entry and column.
        """
        hier = context.hierarchy if isinstance(context, MeshContext) else context
        start = self.start_level(hier)
        levels = self.levels_for(hier, torch.float64)
        L, K, widths = self.n_levels, self.n_operators, self.widths
        rows = []
        for j, lv in enumerate(levels):
            n, k = lv.n_nodes, min(j, L - 1)
            c = widths[k]
            macs = blocks = 0
            if j < L:                                    # a trained level
                blocks = len(self.down_blocks[j]) + len(self.up_blocks[j])
                macs += blocks * OperatorBlock.cost(n, lv.pattern.nnz, K, c)
                if j == 0:
                    macs += self.global_layers * GlobalLayer.cost(n, c)
                    macs += self.spectral_layers * SpectralLayer.cost(n, self.modes ** self.gdim, c)
                else:
                    cc, nc = widths[j - 1], levels[j - 1].n_nodes
                    macs += nc * (c * cc + cc * c)                             # channel maps down and up
                    macs += nc * (self.gdim * cc + cc * cc)                    # coordinate features
            if 0 < j < L:
                macs += (lv.restrict.values.numel() + lv.prolong.values.numel()) * c   # R and P
            elif j >= L:                                 # carried inputs down, the prediction up
                macs += (lv.restrict.values.numel() if lv.inject is None else 0) * self.in_channels
                macs += lv.prolong.values.numel() * self.out_ncomp
            if j == L - 1:
                ci = self.in_channels + self.gdim
                macs += n * (ci * c + c * c) + n * (c * c + c * self.out_ncomp)      # lifting, projection
            rows.append({"level": start + j, "nodes": n, "width": c, "blocks": blocks, "macs": int(macs)})
        return rows[::-1]

    def cost_report(self, context: MeshContext | Hierarchy) -> str:
        """:meth:`cost_per_level` as lines of text (also the total)."""
        return cost_report_text("hierarchical processor", self.cost_per_level(context))

    def extra_repr(self) -> str:
        return f"coarsest_h={self.coarsest_h:.4g}, levels={self.n_levels}, widths={self.widths}"
