"""The MLP processor: a dense network from all input channels to all free DOFs (one mesh)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext
from fe_operators.models.layers.mlp import MLP
from fe_operators.models.processors.base import ACTIVATIONS, Processor, register_processor
from fe_operators.options import option, sizes

__all__ = ["MLPProcessor", "MLPOptions"]


@dataclasses.dataclass
class MLPOptions:
    """Options of the ``mlp`` processor."""

    hidden: list[int] = option("Hidden layer sizes.", sizes, default_factory=lambda: [256, 256])
    act: ACTIVATIONS = option("Activation.", default="gelu")


@register_processor
class MLPProcessor(Processor):
    """Flatten the node channels, MLP to the free DOFs.

    Tied to the mesh it was built for (its layer sizes are the node and free-DOF
    counts); node coordinates are constant there and are not used.

    Parameters
    ----------
    n_nodes
        Processor nodes ``n``.
    in_channels
        Input channels ``C``.
    n_free
        Free output DOFs.
    hidden
        Hidden layer sizes.
    act
        Activation name.

    Shapes
    ------
    ``h``: ``(batch, n, C)``; output ``(batch, n_free)``.
    """

    name = "mlp"
    Options = MLPOptions
    #: runs only on the mesh it was built for
    mesh_agnostic = False

    def __init__(self, n_nodes: int, in_channels: int, n_free: int, *,
                 hidden: Sequence[int] = (256, 256), act: str = "gelu") -> None:
        super().__init__()
        self.n_nodes, self.in_channels, self.n_free = int(n_nodes), int(in_channels), int(n_free)
        self.hidden, self.act = tuple(int(s) for s in hidden), act
        self.mlp = MLP([self.n_nodes * self.in_channels, *self.hidden, self.n_free], act)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return {"n_nodes": self.n_nodes, "in_channels": self.in_channels, "n_free": self.n_free,
                "hidden": list(self.hidden), "act": self.act}

    @classmethod
    def for_context(cls, context: MeshContext, in_channels: int, out_ncomp: int,
                    options: MLPOptions) -> "MLPProcessor":
        """Sizes from ``context`` (``out_ncomp`` is implied by its free DOFs)."""
        return cls(context.n_nodes, in_channels, context.n_free, hidden=options.hidden, act=options.act)

    def check_context(self, context: MeshContext) -> None:
        """Raise :class:`SpaceMismatchError` unless ``context`` is a mesh like the one built for."""
        super().check_context(context)
        if context.n_nodes != self.n_nodes or context.n_free != self.n_free:
            raise SpaceMismatchError(
                f"an MLP processor runs only on the mesh it was built for ({self.n_nodes} nodes, "
                f"{self.n_free} free DOFs); got a mesh context with {context.n_nodes} nodes and "
                f"{context.n_free} free DOFs. Use the GNN processor to run on other meshes"
            )

    def forward(self, h: torch.Tensor, context: MeshContext) -> torch.Tensor:
        """Free DOF values ``(batch, n_free)``."""
        self.check_context(context)
        return self.mlp(h.reshape(h.shape[0], -1))
