"""The graph processor: message passing on the DOF graph, then deep propagation (any mesh)."""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref
from typing import Any, Literal, Mapping

import torch

from fe_operators.errors import ConfigError, SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.layers.coarse_grid import CoarseGridMixing
from fe_operators.models.layers.graph_ops import edge_features, normalized_coordinates
from fe_operators.models.layers.latent_grid import GridTransfer, LatentGridSpectral, grid_transfer
from fe_operators.models.layers.mesh_conv import MeshConv
from fe_operators.models.layers.mlp import MLP
from fe_operators.models.layers.propagation import DeepPropagation
from fe_operators.models.processors.base import ACTIVATIONS, Processor, register_processor
from fe_operators.options import dataclass_from_dict, non_negative, option, positive

__all__ = ["GNNProcessor", "GNNOptions"]


def _finite_non_negative(v: Any) -> str | None:
    """Check: finite and ``>= 0``."""
    return None if math.isfinite(v) and v >= 0 else "expected a finite number >= 0"


@dataclasses.dataclass
class GNNOptions:
    """Options of the ``gnn`` processor (see :class:`GNNProcessor`)."""

    width: int = option("Hidden feature size.", positive, default=32)
    depth: int = option("Message-passing layers (half before, half after the middle global stage).",
                        non_negative, default=2)
    latent_cells: int = option(
        "Cells per axis of the latent grid of the Fourier stage that follows each message-passing layer "
        "(0: none; else >= 2).", non_negative, default=16)
    latent_modes: int = option("Fourier modes per axis on the latent grid, 1 <= modes <= (latent_cells + 1) // 2 "
                               "(ignored when latent_cells is 0).", non_negative, default=8)
    latent_padding: float = option(
        "Zero padding of the latent grid before its FFT, as a fraction of its vertices per axis (1: twice the "
        "grid, so opposite sides of the box do not couple; 0: periodic over the box).", _finite_non_negative,
        default=1.0)
    hops: int = option("Deep-propagation hops on the training mesh (0: none).", non_negative, default=0)
    coarse_cells: int = option("Coarse-grid cells per axis of the global mixing stage (0: none).",
                               non_negative, default=0)
    hop_scaling: Literal["diffusive", "fixed"] = option("How the hops follow the mesh size on other meshes.",
                                                        default="diffusive")
    layer_norm: bool = option("LayerNorm after each residual update.", default=True)
    act: ACTIVATIONS = option("Activation.", default="gelu")

    def validate(self, key: str = "") -> None:
        """Cross-field checks, naming the key (``<key>.latent_modes``)."""
        def name(k: str) -> str:
            return f"{key}.{k}" if key else k

        if self.latent_cells:
            top = (self.latent_cells + 1) // 2
            if self.latent_cells < 2:
                raise ConfigError(name("latent_cells"), f"expected 0 (none) or >= 2, got {self.latent_cells}")
            if not 1 <= self.latent_modes <= top:
                raise ConfigError(name("latent_modes"), f"expected 1 <= latent_modes <= (latent_cells + 1) // 2 "
                                                        f"= {top}, got {self.latent_modes}")
            if self.depth < 1:
                raise ConfigError(name("depth"), "expected depth >= 1 with latent_cells (a latent stage follows "
                                                 "each message-passing layer)")


@register_processor
class GNNProcessor(Processor):
    r"""Encode nodes; message passing with global stages; decode per node.

    1. encoder MLP on node features -> width ``W``;
    2. ``depth`` :class:`MeshConv` layers (local features), each followed by a
       :class:`LatentGridSpectral` stage when ``latent_cells > 0`` (a Fourier layer on a
       grid over the bounding box: every point sees the whole domain, in every layer);
    3. after the first ``depth // 2`` layers, the middle global stage (docs/design.md §4.2):
       :class:`CoarseGridMixing` (one dense mixing on a coarse grid) and
       :class:`DeepPropagation` (``hops`` hops with learned per-hop weights), each optional;
    4. decoder MLP per node -> ``out_ncomp``; the free DOFs are returned.

    The latent Fourier stages are the strongest of the remedies on Darcy
    (``benchmarks/bench_spon.py``: 9.5 % vs 21 % relative L2 for the middle stage alone
    at equal training time); the other two stay available and compose with them.

    Node features are the input channels, the coordinates scaled to the bounding box
    (``[-1, 1]^d``) and a Dirichlet indicator (1 where any component is constrained);
    edge features are relative positions and lengths divided by the mean edge length.
    All of them are O(1) on any mesh of the domain, and aggregation is a mean, so the
    weights carry over to other meshes (pass their :class:`MeshContext`).

    Receptive field: ``depth`` layers see ``depth`` hops; the propagation adds ``hops``
    more (scaled with the mesh size, see :class:`DeepPropagation`), but diffusion
    reaches only about ``sqrt(hops)`` mesh cells; the coarse and latent grids reach the
    whole domain on any mesh (they live in physical coordinates).

    Parameters
    ----------
    in_channels
        Input channels ``C``.
    out_ncomp
        Output components per node.
    gdim
        Geometric dimension.
    width
        Hidden feature size ``W``.
    depth
        Number of message-passing layers ``L``.
    hops
        Propagation hops ``K`` on the reference mesh (0: no propagation).
    coarse_cells
        Cells per axis of the coarse grid (0: no coarse-grid mixing).
    latent_cells
        Cells per axis of the latent Fourier grid (0: no latent stages; else >= 2 and
        ``depth >= 1``).
    latent_modes
        Fourier modes per axis kept on the latent grid, ``1 <= latent_modes <=
        (latent_cells + 1) // 2``.
    latent_padding
        Zero padding of the latent grid before the FFT, a fraction of its vertices per
        axis (see :class:`LatentGridSpectral`).
    hop_scaling
        ``"diffusive"`` or ``"fixed"`` (see :class:`DeepPropagation`).
    reference_length
        Mean edge length of the mesh the model is trained on (set by
        :meth:`for_context`).
    layer_norm
        LayerNorm after each residual update.
    act
        Activation name.

    Shapes
    ------
    ``h``: ``(batch, n, C)``; output ``(batch, n_free)`` (the free DOFs of the
    context, interleaved order).
    """

    name = "gnn"
    Options = GNNOptions
    #: runs on any mesh of the domain, given its context
    mesh_agnostic = True

    # defaults and checks: GNNOptions, the one source (also of the run configuration's keys)
    def __init__(self, in_channels: int, out_ncomp: int, gdim: int, *, width: int = GNNOptions.width,
                 depth: int = GNNOptions.depth, hops: int = GNNOptions.hops, coarse_cells: int = GNNOptions.coarse_cells,
                 latent_cells: int = GNNOptions.latent_cells, latent_modes: int = GNNOptions.latent_modes,
                 latent_padding: float = GNNOptions.latent_padding, hop_scaling: str = GNNOptions.hop_scaling,
                 reference_length: float | None = None, layer_norm: bool = GNNOptions.layer_norm,
                 act: str = GNNOptions.act) -> None:
        super().__init__()
        dataclass_from_dict(GNNOptions, dict(
            width=width, depth=depth, hops=hops, coarse_cells=coarse_cells, latent_cells=latent_cells,
            latent_modes=latent_modes, latent_padding=latent_padding, hop_scaling=hop_scaling,
            layer_norm=layer_norm, act=act))
        self.in_channels, self.out_ncomp, self.gdim = int(in_channels), int(out_ncomp), int(gdim)
        self.width, self.depth, self.hops, self.coarse_cells = int(width), int(depth), int(hops), int(coarse_cells)
        self.latent_cells, self.latent_modes = int(latent_cells), int(latent_modes)
        self.latent_padding = float(latent_padding)
        self.hop_scaling, self.layer_norm, self.act = hop_scaling, bool(layer_norm), act
        self.reference_length = None if reference_length is None else float(reference_length)
        self.encoder = MLP([self.in_channels + self.gdim + 1, self.width, self.width], act)
        self.layers = torch.nn.ModuleList(
            MeshConv(self.width, self.gdim + 1, act, self.layer_norm) for _ in range(self.depth)
        )
        self.coarse = CoarseGridMixing(self.width, self.coarse_cells, self.gdim, act) if self.coarse_cells else None
        self.latent = torch.nn.ModuleList(
            LatentGridSpectral(self.width, self.latent_cells, self.latent_modes, self.gdim, act, self.latent_padding)
            for _ in range(self.depth if self.latent_cells else 0)
        )
        self.propagation = (
            DeepPropagation(self.width, self.hops, hop_scaling, self.reference_length) if self.hops else None
        )
        self.decoder = MLP([self.width, self.width, self.out_ncomp], act)
        # latent-grid transfers per context and dtype, made on first use
        self._grids: "weakref.WeakKeyDictionary[MeshContext, dict]" = weakref.WeakKeyDictionary()

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "gdim": self.gdim,
                "width": self.width, "depth": self.depth, "hops": self.hops, "coarse_cells": self.coarse_cells,
                "latent_cells": self.latent_cells, "latent_modes": self.latent_modes,
                "latent_padding": self.latent_padding,
                "hop_scaling": self.hop_scaling,
                "reference_length": self.reference_length, "layer_norm": self.layer_norm, "act": self.act}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "GNNProcessor":
        """A processor with fresh weights from :attr:`config`.

        A config stored before ``latent_padding`` existed ran its FFT on the unpadded
        grid: it gets ``latent_padding = 0``, not today's default.
        """
        return cls(**{"latent_padding": 0.0, **config})

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int,
                    options: GNNOptions) -> "GNNProcessor":
        """Sizes from ``context``; its mean edge length becomes ``reference_length``."""
        return cls(in_channels, out_ncomp, context.gdim, reference_length=float(context.length_scale()),
                   **dataclasses.asdict(options))

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless ``context`` has this geometry and output size."""
        super().check_context(context)
        if context.gdim != self.gdim or context.ncomp != self.out_ncomp:
            raise SpaceMismatchError(
                f"expected a mesh context of geometric dimension {self.gdim} with {self.out_ncomp} output "
                f"components per node, got {context.gdim} and {context.ncomp}"
            )

    def grid_transfer(self, context: MeshContext, dtype: torch.dtype) -> GridTransfer:
        """The latent grid's transfers on ``context`` (:func:`grid_transfer`), cached per context and dtype.

        The nodes are weighted by ``context.node_weights``; a context without them (stored
        before they existed) gets equal weights, with a warning: the pooling then counts
        nodes, and the stage depends on the mesh's local density.
        """
        per = self._grids.setdefault(context, {})
        if dtype not in per:
            coords = context.coords.to(torch.float64)
            x = normalized_coordinates(coords)
            weights = context.node_weights
            if weights is None:
                warnings.warn("this mesh context has no node_weights (stored by an older fe_operators): the latent "
                              "grid averages with equal node weights; rebuild the context from the mesh "
                              "(fe_operators.models.context_from_problem) for area averages", stacklevel=3)
            else:
                span = (coords.amax(0) - coords.amin(0)).clamp_min(torch.finfo(torch.float64).tiny)
                weights = weights.to(torch.float64) * (2.0 / span).prod()  # in the normalised coordinates
            per[dtype] = GridTransfer(*(m.to(dtype) for m in grid_transfer(x, self.latent_cells, weights)))
        return per[dtype]

    def _middle(self, z: torch.Tensor, x: torch.Tensor, context: MeshContext) -> torch.Tensor:
        if self.coarse is not None:
            z = self.coarse(z, x)
        if self.propagation is not None:
            z = self.propagation(z, context.indptr, context.edge_index[0], float(context.length_scale()))
        return z

    def forward(self, h: torch.Tensor, context: MeshContext) -> torch.Tensor:
        """Free DOF values ``(batch, n_free)``."""
        self.check_context(context)
        batch, n, _ = h.shape
        dtype = h.dtype
        # node-major (n, batch, F): gathers/scatters over edges move whole rows
        x = normalized_coordinates(context.coords).to(dtype)
        bc = context.mask.any(dim=1, keepdim=True).to(dtype)
        static = torch.cat([x, bc], dim=1).unsqueeze(1).expand(n, batch, self.gdim + 1)
        z = self.encoder(torch.cat([h.transpose(0, 1), static], dim=-1))
        e = edge_features(context.edge_attr).to(dtype)
        degree = context.degree()
        half = self.depth // 2
        grid = self.grid_transfer(context, dtype) if self.latent_cells else None
        for k, layer in enumerate(self.layers):
            if k == half:
                z = self._middle(z, x, context)
            z = layer(z, context.edge_index, e, degree)
            if grid is not None:
                z = self.latent[k](z, *grid)
        if self.depth == half:  # depth 0
            z = self._middle(z, x, context)
        y = self.decoder(z).transpose(0, 1).reshape(batch, n * self.out_ncomp)
        return y.index_select(1, context.free)
