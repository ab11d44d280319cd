"""One message-passing layer on the DOF graph, with geometric edge features."""

from __future__ import annotations

import torch

from fe_operators.models.layers.graph_ops import mean_aggregate
from fe_operators.models.layers.mlp import MLP, activation

__all__ = ["MeshConv"]


class MeshConv(torch.nn.Module):
    r"""Edge-MLP message passing with mean aggregation and a residual update.

    .. math::

        m_{j\to i} &= \phi\big([h_i, h_j, e_{ij}]\big), \qquad
        a_i = \frac{1}{|N(i)|}\sum_{j \in N(i)} m_{j\to i}, \\
        h_i' &= \mathrm{LN}\big(h_i + \psi([h_i, a_i])\big)

    with two-layer MLPs :math:`\phi, \psi` and optional LayerNorm.  The first linear
    layer of :math:`\phi` is split into per-node and per-edge parts, so the products with
    :math:`h` cost O(n) instead of O(E).

    Parameters
    ----------
    width
        Node feature size ``W``.
    edge_dim
        Edge feature size (``gdim + 1``: relative position and length, scaled by the
        mean edge length).
    act
        Activation name.
    layer_norm
        Normalise the updated features.

    Shapes
    ------
    ``h``: ``(n, batch, W)`` (node-major, so gathers and scatters move contiguous rows);
    ``edge_index``: ``(2, E)``; ``edge_attr``: ``(E, edge_dim)``; ``degree``: ``(n,)``;
    output ``(n, batch, W)``.
    """

    def __init__(self, width: int, edge_dim: int, act: str = "gelu", layer_norm: bool = True) -> None:
        super().__init__()
        self.lin_i = torch.nn.Linear(width, width)
        self.lin_j = torch.nn.Linear(width, width, bias=False)
        self.lin_e = torch.nn.Linear(edge_dim, width, bias=False)
        self.act = activation(act)
        self.lin_m = torch.nn.Linear(width, width)
        self.update_mlp = MLP([2 * width, width, width], act)
        self.norm = torch.nn.LayerNorm(width) if layer_norm else torch.nn.Identity()

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor, degree: torch.Tensor
    ) -> torch.Tensor:
        """Message, aggregate, update."""
        source, target = edge_index
        # index_select, not h[idx]: its backward is index_add_, several times faster on CPU than
        # the sorting accumulate of advanced indexing
        msg = self.message(self.lin_i(h).index_select(0, target), self.lin_j(h).index_select(0, source),
                           self.lin_e(edge_attr))
        # φ's last layer is linear, so it commutes with the mean: apply it once per node
        # instead of once per edge (same output; about half a training step's time).
        # Its bias only reaches nodes that receive messages, as it would per edge.
        mean = mean_aggregate(msg, target, degree)
        has = (degree > 0).to(mean.dtype).reshape(-1, *([1] * (mean.ndim - 1)))
        return self.update(h, torch.nn.functional.linear(mean, self.lin_m.weight) + has * self.lin_m.bias)

    def message(self, a_i: torch.Tensor, b_j: torch.Tensor, e_ij: torch.Tensor) -> torch.Tensor:
        """``φ`` on one edge up to its last (linear) layer: ``(E, batch, W)``.

        The last layer ``lin_m`` is applied after aggregation, in :meth:`forward`.
        """
        return self.act(a_i + b_j + e_ij.unsqueeze(1))

    def update(self, h: torch.Tensor, aggregated: torch.Tensor) -> torch.Tensor:
        """Residual update ``LN(h + ψ([h, a]))``."""
        return self.norm(h + self.update_mlp(torch.cat([h, aggregated], dim=-1)))
