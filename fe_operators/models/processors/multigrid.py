r"""The multigrid processor: MgNO layers on a Firedrake mesh hierarchy (any hierarchy of the domain).

Each layer is the MgNO paper's

.. math:: v \leftarrow \sigma\big(W_{Mg}(v)\,W_{out} + v\,W_0 + b(x)\big)

with :math:`W_{Mg}` one learned V-cycle (:class:`~fe_operators.multigrid.cycle.MultigridCycle`:
learned combinations of per-level FE operators, exact FE transfers, no nonlinearity
inside), a pointwise channel map :math:`W_0`, and a bias computed from the node
coordinates by a small MLP (a learned FE function would tie the model to one mesh).
Around the layers: a pointwise lifting of the input channels and the coordinates to
``width`` channels, and a pointwise projection to the output
components; the free DOFs are returned (SPON's decoder adds the boundary data).

The layers run on the finest level of the context's hierarchy; when its nodes are not
the output's (a hierarchy built for a structured spec such as ``unitsquare:64``), the
hierarchy's ``to_finest`` / ``from_finest`` maps carry the channels there and back.

Transfer across hierarchies of the domain: the model records its coarsest level's mesh
size ``coarsest_h``; on another hierarchy the cycle starts at the level whose size is
closest to it, and levels finer than the trained ones reuse the finest trained weights
(:mod:`~fe_operators.multigrid.cycle` explains why the output then changes only by
discretisation error).

Arithmetic: the model computes in its inputs' dtype (float32 in training); the cycles'
per-level data are cast once per hierarchy and dtype and cached, the sparse operators
once by their :class:`~fe_operators.sparse.maps.SparseMap`.  :meth:`MultigridProcessor.cost_per_level`
counts the multiply-adds of one sample per level and :meth:`~MultigridProcessor.cost_report`
formats them (``fe-operators train`` prints it).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Literal, Union

import torch

from fe_operators.errors import ConfigError, SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.layers.graph_ops import normalized_coordinates
from fe_operators.models.layers.mlp import MLP
from fe_operators.models.processors.base import ACTIVATIONS, Processor, cost_report_text, register_processor
from fe_operators.multigrid.cycle import (
    CycleLevel, MultigridCycle, cast_levels, coefficient_values, cycle_levels, match_level,
)
from fe_operators.multigrid.hierarchy import Hierarchy
from fe_operators.options import non_negative, option, optional, positive
from fe_operators.sparse.spmm import spmm

__all__ = ["MultigridOptions", "MultigridProcessor"]


@dataclasses.dataclass
class MultigridOptions:
    """Options of the ``multigrid`` processor (see :class:`MultigridProcessor`)."""

    width: int = option("Channels of every layer and of the V-cycles.", positive, default=24)
    layers: int = option("MgNO layers (one V-cycle each).", positive, default=4)
    levels: Union[int, None] = option(
        "Hierarchy levels the V-cycles use, the finest ones (null: all levels of the data's hierarchy).",
        optional(positive), default=None)
    coarsest_nodes: int = option(
        "Below the mesh hierarchy's coarsest mesh, add levels by smoothed aggregation until the coarsest level "
        "has at most this many nodes, so that the V-cycles reach across the domain (0: none).",
        non_negative, default=100)
    pre_smoothing: int = option("Smoothing steps per level on the way down (the coarsest level excepted).",
                                non_negative, default=1)
    coarsest_smoothing: int = option("Smoothing steps on the coarsest level.", non_negative, default=2)
    post_smoothing: int = option("Smoothing steps per level on the way up (0 in the MgNO paper).",
                                 non_negative, default=0)
    coefficient_operators: bool = option(
        "Add, on every mesh level, the stiffness matrices ∫ a_c ∇φ_j·∇φ_i of positive coefficients "
        "a_c = softplus(s x_c + t) of the input channels (learned s, t) to the learned level operators, and "
        "their Jacobi scalings to the smoothers (P1 outputs on simplices): the V-cycles then start as, and can "
        "stay, a multigrid solver of the diffusion problem the input coefficient defines (Darcy).",
        default=False)
    mixing: Literal["full", "separable"] = option(
        "Channel mixing of the level operators and smoothers: 'full' (a C x C matrix per FE operator, a 3x3 "
        "convolution's analogue) or 'separable' (per-channel weights per operator, then one C x C mixing).",
        default="full")
    act: ACTIVATIONS = option("Activation.", default="gelu")

    def validate(self, key: str = "") -> None:
        """Cross-field checks, naming the key."""
        if self.pre_smoothing + self.coarsest_smoothing + self.post_smoothing == 0:
            raise ConfigError(f"{key}.pre_smoothing" if key else "pre_smoothing",
                              "expected at least one smoothing step somewhere in the cycle, got none")


def _activation(name: str) -> torch.nn.Module:
    return {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}[name]()


@register_processor
class MultigridProcessor(Processor):
    r"""MgNO layers on the mesh hierarchy: lifting, ``layers`` × (V-cycle + pointwise + bias), projection.

    Parameters
    ----------
    in_channels
        Input channels.
    out_ncomp
        Output components per node.
    gdim
        Geometric dimension.
    n_operators
        FE operators per level (from the context: 6 in 2D, 10 in 3D).
    n_levels
        Levels of weights (the training hierarchy's used levels).
    coarsest_h
        Mesh size of the coarsest level the model was built for.
    width, layers, levels, coarsest_nodes, coefficient_operators, pre_smoothing, coarsest_smoothing, post_smoothing, mixing, act
        See :class:`MultigridOptions` (``levels`` is what was asked for; ``n_levels``
        what it gave).

    Shapes
    ------
    ``h``: ``(batch, n, C)``; output ``(batch, n_free)``.
    """

    name = "multigrid"
    Options = MultigridOptions
    mesh_agnostic = True
    needs_hierarchy = True

    def __init__(self, in_channels: int, out_ncomp: int, gdim: int, n_operators: int, n_levels: int,
                 coarsest_h: float, *, width: int = 24, layers: int = 4, levels: int | None = None,
                 coarsest_nodes: int = 100, coefficient_operators: bool = False,
                 pre_smoothing: int = 1, coarsest_smoothing: int = 2, post_smoothing: int = 0,
                 mixing: str = "full", act: str = "gelu") -> None:
        super().__init__()
        if not coarsest_h > 0:
            raise ValueError(f"expected a positive coarsest_h, got {coarsest_h}")
        self.in_channels, self.out_ncomp, self.gdim = int(in_channels), int(out_ncomp), int(gdim)
        self.n_operators, self.n_levels, self.coarsest_h = int(n_operators), int(n_levels), float(coarsest_h)
        self.width, self.layers, self.levels = int(width), int(layers), levels
        self.coarsest_nodes, self.coefficient_operators = int(coarsest_nodes), bool(coefficient_operators)
        self.pre_smoothing, self.coarsest_smoothing = int(pre_smoothing), int(coarsest_smoothing)
        self.post_smoothing, self.mixing, self.act = int(post_smoothing), mixing, act
        c = self.width
        self.lift = MLP([self.in_channels + self.gdim, c, c], act)
        self.cycles = torch.nn.ModuleList(
            MultigridCycle(c, self.n_operators, self.n_levels, pre_smoothing=self.pre_smoothing,
                           coarsest_smoothing=self.coarsest_smoothing, post_smoothing=self.post_smoothing,
                           mixing=mixing, n_coefficients=self.in_channels if self.coefficient_operators else 0)
            for _ in range(self.layers))
        self.mix_out = torch.nn.ModuleList(torch.nn.Linear(c, c, bias=False) for _ in range(self.layers))
        self.pointwise = torch.nn.ModuleList(torch.nn.Linear(c, c, bias=False) for _ in range(self.layers))
        self.bias = MLP([self.gdim, c, self.layers * c], act)
        self.activation = _activation(act)
        self.project = MLP([c, c, self.out_ncomp], act)
        # coefficient channels a_c = softplus(s_c x_c + t_c) > 0 of the (normalised) inputs
        m = self.in_channels if self.coefficient_operators else 0
        self.coefficient_scale = torch.nn.Parameter(torch.ones(m))
        self.coefficient_shift = torch.nn.Parameter(torch.ones(m))
        # per-context derived tensors (levels, scales), made on first use
        self._cache: "weakref.WeakKeyDictionary[Hierarchy, dict]" = weakref.WeakKeyDictionary()

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "gdim": self.gdim,
                "n_operators": self.n_operators, "n_levels": self.n_levels, "coarsest_h": self.coarsest_h,
                "width": self.width, "layers": self.layers, "levels": self.levels,
                "coarsest_nodes": self.coarsest_nodes, "coefficient_operators": self.coefficient_operators,
                "pre_smoothing": self.pre_smoothing, "coarsest_smoothing": self.coarsest_smoothing,
                "post_smoothing": self.post_smoothing, "mixing": self.mixing, "act": self.act}

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int,
                    options: MultigridOptions) -> "MultigridProcessor":
        """Levels, operators and the coarsest mesh size from the context's hierarchy.

        The V-cycles' prior is added here: ``W^A`` starts near the Laplacian's combination,
        or, with ``coefficient_operators``, the cycles start near a multigrid solve of
        ``-∇·(x_0∇u)`` for the first input channel (Jacobi smoothing of its operator).
        """
        hier = context.hierarchy
        if hier is None:
            raise SpaceMismatchError(
                "the multigrid processor needs a mesh context with levels: build it with "
                "context_from_problem(problem, **MultigridProcessor.context_options(options))")
        n_levels = hier.n_levels if options.levels is None else options.levels
        if n_levels > hier.n_levels:
            raise SpaceMismatchError(f"levels={n_levels} asked for, the mesh hierarchy has {hier.n_levels}")
        start = hier.n_levels - n_levels
        opts = dataclasses.asdict(options)
        model = cls(in_channels, out_ncomp, context.gdim, hier.levels[start].n_operators, n_levels,
                    hier.levels[start].h, **opts)
        for cycle in model.cycles:
            if options.coefficient_operators:
                cycle.init_coefficient_solver()
            else:
                cycle.init_laplacian(hier.levels[start].laplacian)
        return model

    @classmethod
    def context_options(cls, options: Any) -> dict[str, Any]:
        """A hierarchy, extended below its coarsest mesh to ``coarsest_nodes``.

        Levels ``"auto"``: the mesh's ``MeshHierarchy`` where it has one, else the mesh
        itself with aggregated levels below (every shipped mesh as it is, a user's ``.msh``).
        """
        return {"hierarchy": True, "coarsest_nodes": int(options["coarsest_nodes"]), "levels": "auto"}

    # ------------------------------------------------------------------ context
    def start_level(self, hierarchy: Hierarchy) -> int:
        """Index of the level of ``hierarchy`` that plays the model's coarsest level.

        Raises
        ------
        SpaceMismatchError
            No level within a factor 1.5 of the model's coarsest mesh size.
        """
        return match_level([lv.h for lv in hierarchy.levels], self.coarsest_h, "model",
                           "refine the same base mesh (e.g. 'plate_holes/rK')")

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless the context carries a matching hierarchy."""
        super().check_context(context)
        if context.gdim != self.gdim or context.ncomp != self.out_ncomp:
            raise SpaceMismatchError(
                f"expected a mesh context of geometric dimension {self.gdim} with {self.out_ncomp} output "
                f"components per node, got {context.gdim} and {context.ncomp}")
        k = context.hierarchy.finest.n_operators
        if k != self.n_operators:
            raise SpaceMismatchError(f"expected {self.n_operators} FE operators per level, the context has {k}")
        self.start_level(context.hierarchy)

    def cycle_levels(self, hierarchy: Hierarchy, dtype: torch.dtype) -> list[CycleLevel]:
        """The cycle's per-level data for ``hierarchy`` (cached per hierarchy and dtype)."""
        per = self._cache.setdefault(hierarchy, {})
        if None not in per:
            per[None] = cycle_levels(hierarchy, self.start_level(hierarchy), self.coarsest_h)
        if dtype not in per:
            per[dtype] = cast_levels(per[None], dtype)
        return per[dtype]

    # ------------------------------------------------------------------ forward
    def forward(self, h: torch.Tensor, context: MeshContext) -> torch.Tensor:
        """Free DOF values ``(batch, n_free)``."""
        self.check_context(context)
        hier = context.hierarchy
        batch, n, _ = h.shape
        dtype = h.dtype
        levels = self.cycle_levels(hier, dtype)
        # no Dirichlet indicator among the lifted features (the GNN has one): it is a layer of
        # width h along the boundary, not a function of the domain, so it would make the
        # output depend on the mesh; the cycles keep Dirichlet nodes out by their masks
        x = normalized_coordinates(context.coords).to(dtype)
        static = x.unsqueeze(1).expand(n, batch, self.gdim)
        hn = h.transpose(0, 1)                                               # (n, B, C_in) node-major
        v = self.lift(torch.cat([hn, static], dim=-1))                       # (n, B, C)
        if hier.to_finest is not None:
            v = spmm(hier.to_finest, v.reshape(n, -1)).reshape(-1, batch, self.width)
            hn = spmm(hier.to_finest, hn.reshape(n, -1)).reshape(-1, batch, self.in_channels)
            xf = normalized_coordinates(hier.finest.coords).to(dtype)
        else:
            xf = x
        coefficients = None
        if self.coefficient_operators:
            positive = torch.nn.functional.softplus(hn * self.coefficient_scale + self.coefficient_shift)
            coefficients = coefficient_values(levels, positive)
        bias = self.bias(xf).reshape(-1, 1, self.layers, self.width)
        for k in range(self.layers):
            u = self.cycles[k](v, levels, coefficients=coefficients)
            v = self.activation(self.mix_out[k](u) + self.pointwise[k](v) + bias[:, :, k])
        y = self.project(v)                                                 # (n_f, B, ncomp)
        if hier.from_finest is not None:
            y = spmm(hier.from_finest, y.reshape(y.shape[0], -1)).reshape(n, batch, self.out_ncomp)
        return y.transpose(0, 1).reshape(batch, n * self.out_ncomp).index_select(1, context.free)

    # ------------------------------------------------------------------ cost
    def cost_per_level(self, context: MeshContext | Hierarchy) -> list[dict[str, Any]]:
        """Multiply-adds of one sample's forward pass per level, finest first.

        Each entry: ``{"level", "nodes", "width", "macs"}``; ``level`` is the index in the
        context's hierarchy (coarsest 0).  Every layer's V-cycle counts as
        :meth:`~fe_operators.multigrid.cycle.MultigridCycle.cost_per_level` says (sparse
        products one multiply-add per stored entry and channel, channel mixings
        ``n C_in C_out``); the finest level also carries the lifting, bias and projection
        MLPs, each layer's two pointwise maps, and the ``to_finest``/``from_finest`` maps;
        the coefficient channels' operators (``coefficient_operators``) count on their level.
        """
        hier = context.hierarchy if isinstance(context, MeshContext) else context
        start = self.start_level(hier)
        levels = self.cycle_levels(hier, torch.float64)
        c, m = self.width, self.in_channels if self.coefficient_operators else 0
        macs = [0] * len(levels)
        for cycle in self.cycles:
            for j, count in enumerate(cycle.cost_per_level(levels, coefficients=m > 0)):
                macs[j] += count
        for j, lv in enumerate(levels):  # coefficient operators, and their restrictions (values and weights)
            if m and lv.coefficient_map is not None:
                macs[j] += lv.coefficient_map.values.numel() * m
            if m and j > 0:
                macs[j] += lv.restrict.values.numel() * (m + 1)
        n = levels[-1].n_nodes
        macs[-1] += n * ((self.in_channels + self.gdim) * c + c * c)              # lifting
        macs[-1] += n * (self.gdim * c + c * self.layers * c)                     # bias
        macs[-1] += self.layers * 2 * n * c * c                                   # W_out and W_0
        macs[-1] += n * (c * c + c * self.out_ncomp)                              # projection
        if hier.to_finest is not None:
            macs[-1] += hier.to_finest.values.numel() * (c + self.in_channels)
            macs[-1] += hier.from_finest.values.numel() * self.out_ncomp
        rows = [{"level": start + j, "nodes": lv.n_nodes, "width": c, "macs": int(macs[j])}
                for j, lv in enumerate(levels)]
        return rows[::-1]

    def cost_report(self, context: MeshContext | Hierarchy) -> str:
        """:meth:`cost_per_level` as lines of text (also the total)."""
        return cost_report_text(f"multigrid processor ({self.layers} V-cycles)", self.cost_per_level(context))

    def extra_repr(self) -> str:
        return f"coarsest_h={self.coarsest_h:.4g}, levels={self.n_levels}"
