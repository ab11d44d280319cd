"""The graph processor: message passing on the DOF graph, then deep propagation (any mesh)."""

from __future__ import annotations

from typing import Any

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.coarse_grid import CoarseGridMixing
from fe_operators.models.context import MeshContext
from fe_operators.models.graph_ops import edge_features, normalized_coordinates
from fe_operators.models.mesh_conv import MeshConv
from fe_operators.models.mlp import MLP
from fe_operators.models.propagation import DeepPropagation

__all__ = ["GNNProcessor"]


class GNNProcessor(torch.nn.Module):
    r"""Encode nodes; message passing; a global stage; message passing; decode per node.

    1. encoder MLP on node features -> width ``W``;
    2. ``depth // 2`` :class:`MeshConv` layers (local features);
    3. global stage (DESIGN.md §4b): :class:`CoarseGridMixing` (multiscale: every point
       sees the whole domain) and :class:`DeepPropagation` (``hops`` hops with learned
       per-hop weights), each optional;
    4. the other ``depth - depth // 2`` layers (local corrections of the global part);
    5. decoder MLP per node -> ``out_ncomp``; the free DOFs are returned.

    Node features are the input channels, the coordinates scaled to the bounding box
    (``[-1, 1]^d``) and a Dirichlet indicator (1 where any component is constrained);
    edge features are relative positions and lengths divided by the mean edge length.
    All of them are O(1) on any mesh of the domain, and aggregation is a mean, so the
    weights carry over to other meshes (pass their :class:`MeshContext`).

    Receptive field: ``depth`` layers see ``depth`` hops; the propagation adds ``hops``
    more (scaled with the mesh size, see :class:`DeepPropagation`), but diffusion
    reaches only about ``sqrt(hops)`` mesh cells; the coarse grid reaches the whole
    domain on any mesh.

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

    #: runs on any mesh of the domain, given its context
    mesh_agnostic = True

    def __init__(self, in_channels: int, out_ncomp: int, gdim: int, *, width: int = 64, depth: int = 4,
                 hops: int = 8, coarse_cells: int = 8, hop_scaling: str = "diffusive",
                 reference_length: float | None = None, layer_norm: bool = True, act: str = "gelu") -> None:
        super().__init__()
        if depth < 0 or hops < 0 or width < 1 or coarse_cells < 0:
            raise ValueError(f"expected width >= 1, depth, hops, coarse_cells >= 0; got {width}, {depth}, {hops}, "
                             f"{coarse_cells}")
        self.in_channels, self.out_ncomp, self.gdim = int(in_channels), int(out_ncomp), int(gdim)
        self.width, self.depth, self.hops, self.coarse_cells = int(width), int(depth), int(hops), int(coarse_cells)
        self.hop_scaling, self.layer_norm, self.act = hop_scaling, bool(layer_norm), act
        self.reference_length = None if reference_length is None else float(reference_length)
        self.encoder = MLP([self.in_channels + self.gdim + 1, self.width, self.width], act)
        self.layers = torch.nn.ModuleList(
            MeshConv(self.width, self.gdim + 1, act, self.layer_norm) for _ in range(self.depth)
        )
        self.coarse = CoarseGridMixing(self.width, self.coarse_cells, self.gdim, act) if self.coarse_cells else None
        self.propagation = (
            DeepPropagation(self.width, self.hops, hop_scaling, self.reference_length) if self.hops else None
        )
        self.decoder = MLP([self.width, self.width, self.out_ncomp], act)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"in_channels": self.in_channels, "out_ncomp": self.out_ncomp, "gdim": self.gdim,
                "width": self.width, "depth": self.depth, "hops": self.hops, "coarse_cells": self.coarse_cells,
                "hop_scaling": self.hop_scaling,
                "reference_length": self.reference_length, "layer_norm": self.layer_norm, "act": self.act}

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int, **options: Any) -> "GNNProcessor":
        """Sizes from ``context``; its mean edge length becomes ``reference_length``."""
        options.setdefault("reference_length", float(context.length_scale()))
        return cls(in_channels, out_ncomp, context.gdim, **options)

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless ``context`` has this geometry and output size."""
        if context.gdim != self.gdim or context.ncomp != self.out_ncomp:
            raise SpaceMismatchError(
                f"expected a mesh context of geometric dimension {self.gdim} with {self.out_ncomp} output "
                f"components per node, got {context.gdim} and {context.ncomp}"
            )

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
        for layer in self.layers[:half]:
            z = layer(z, context.edge_index, e, degree)
        if self.coarse is not None:
            z = self.coarse(z, x)
        if self.propagation is not None:
            z = self.propagation(z, context.indptr, context.edge_index[0], float(context.length_scale()))
        for layer in self.layers[half:]:
            z = layer(z, context.edge_index, e, degree)
        y = self.decoder(z).transpose(0, 1).reshape(batch, n * self.out_ncomp)
        return y.index_select(1, context.free)
