"""One message-passing layer on the DOF graph, with geometric edge features."""

from __future__ import annotations

import numba
import torch

from fe_operators.models.layers.graph_ops import mean_aggregate
from fe_operators.models.layers.mlp import MLP, activation

__all__ = ["MeshConv", "edge_mean"]

#: elements of one chunk of edge messages in :func:`edge_mean` (about 2 MB of float32: cache-resident)
EDGE_CHUNK_ELEMENTS = 1 << 19


@numba.njit(cache=True, nogil=True)
def _edge_sum(a, b, e, source, target, p0, p1, out):  # pragma: no cover - compiled
    # out[p - p0] = (a[target[p]] + b[source[p]]) + e[p] for the edges p0 <= p < p1 (the eager order)
    for p in range(p0, p1):
        ai = a[target[p]]
        bj = b[source[p]]
        ep = e[p]
        o = out[p - p0]
        for k in range(ai.shape[0]):
            for c in range(ai.shape[1]):
                o[k, c] = ai[k, c] + bj[k, c] + ep[c]


@numba.njit(cache=True, nogil=True)
def _segment_sum(m, indptr, r0, r1, out):  # pragma: no cover - compiled
    # out[i] = sum of m's rows of node i's edges, from zero in edge order (index_add_'s sums)
    p0 = indptr[r0]
    for i in range(r0, r1):
        oi = out[i]
        oi[:, :] = 0
        for p in range(indptr[i], indptr[i + 1]):
            mp = m[p - p0]
            for k in range(oi.shape[0]):
                for c in range(oi.shape[1]):
                    oi[k, c] += mp[k, c]


def edge_mean(a: torch.Tensor, b: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor, degree: torch.Tensor,
              act: torch.nn.Module) -> torch.Tensor:
    """``mean_aggregate(act(a[target] + b[source] + e[:, None]), target, degree)`` in cache-sized chunks.

    Without autograd on the CPU, for edges sorted by target (:class:`MeshContext`'s CSR
    order): the ``(E, batch, W)`` messages are never formed whole.  Each chunk of target
    nodes gathers its edges' sums (one compiled pass), applies ``act`` (torch's kernel) and
    sums them per node while they are in cache; at batch 10 on the beam's 169k edges the
    eager composition streamed five arrays of 216 MB per layer.  The same sums in the same
    order as :func:`~fe_operators.models.layers.graph_ops.mean_aggregate` of the eager
    messages.

    Parameters
    ----------
    a, b
        ``(n, batch, W)`` per-node parts of the target and the source.
    e
        ``(E, W)`` per-edge part.
    edge_index
        ``(2, E)`` source and target rows, sorted by target.
    degree
        ``(n,)`` in-degree.
    act
        The elementwise activation.
    """
    n = a.shape[0]
    source, target = edge_index
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(degree, 0, out=indptr[1:])
    a_, b_, e_ = (t.detach().contiguous().numpy() for t in (a, b, e))
    src, tgt, ptr = source.numpy(), target.numpy(), indptr.numpy()
    out = torch.empty(a.shape, dtype=a.dtype)
    out_ = out.numpy()
    per_edge = max(1, a.shape[1] * a.shape[2])
    budget = max(1, EDGE_CHUNK_ELEMENTS // per_edge)          # edges per chunk (at least one node's)
    r0 = 0
    while r0 < n:
        # the nodes whose edges fit the budget (at least one node)
        r1 = int(torch.searchsorted(indptr, indptr[r0] + budget, right=True)) - 1
        r1 = min(max(r1, r0 + 1), n)
        p0, p1 = int(ptr[r0]), int(ptr[r1])
        buf = torch.empty((p1 - p0, a.shape[1], a.shape[2]), dtype=a.dtype)
        _edge_sum(a_, b_, e_, src, tgt, p0, p1, buf.numpy())
        _segment_sum(act(buf).numpy(), ptr, r0, r1, out_)
        r0 = r1
    return out * (1.0 / degree.clamp_min(1).to(a.dtype)).reshape(-1, 1, 1)


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
        if self._chunked(h, edge_index):
            mean = edge_mean(self.lin_i(h), self.lin_j(h), self.lin_e(edge_attr), edge_index, degree, self.act)
        else:
            # index_select, not h[idx]: its backward is index_add_, several times faster on CPU than
            # the sorting accumulate of advanced indexing
            msg = self.message(self.lin_i(h).index_select(0, target), self.lin_j(h).index_select(0, source),
                               self.lin_e(edge_attr))
            mean = mean_aggregate(msg, target, degree)
        # φ's last layer is linear, so it commutes with the mean: apply it once per node
        # instead of once per edge (same output; about half a training step's time).
        # Its bias only reaches nodes that receive messages, as it would per edge.
        has = (degree > 0).to(mean.dtype).reshape(-1, *([1] * (mean.ndim - 1)))
        return self.update(h, torch.nn.functional.linear(mean, self.lin_m.weight) + has * self.lin_m.bias)

    def _chunked(self, h: torch.Tensor, edge_index: torch.Tensor) -> bool:
        """Whether :func:`edge_mean` runs: CPU, float, nothing needs gradients, not traced, edges sorted by target."""
        if not (h.device.type == "cpu" and h.dtype in (torch.float32, torch.float64) and h.ndim == 3
                and edge_index.device.type == "cpu" and not torch.jit.is_tracing()):
            return False
        if torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in self.parameters())):
            return False
        target = edge_index[1]
        return bool((target[1:] >= target[:-1]).all())  # the CSR order the chunks need

    def message(self, a_i: torch.Tensor, b_j: torch.Tensor, e_ij: torch.Tensor) -> torch.Tensor:
        """``φ`` on one edge up to its last (linear) layer: ``(E, batch, W)``.

        The last layer ``lin_m`` is applied after aggregation, in :meth:`forward`.
        """
        return self.act(a_i + b_j + e_ij.unsqueeze(1))

    def update(self, h: torch.Tensor, aggregated: torch.Tensor) -> torch.Tensor:
        """Residual update ``LN(h + ψ([h, a]))``."""
        return self.norm(h + self.update_mlp(torch.cat([h, aggregated], dim=-1)))
