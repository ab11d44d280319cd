"""One message-passing layer on the DOF graph, with geometric edge features."""

from __future__ import annotations

from typing import Any

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


@numba.njit(parallel=True, cache=True, nogil=True)
def _edge_sum_parallel(a, b, e, source, target, p0, p1, out):  # pragma: no cover - compiled
    # _edge_sum with the edges shared among numba's threads (each output row written once)
    for q in numba.prange(p1 - p0):
        p = p0 + q
        ai = a[target[p]]
        bj = b[source[p]]
        ep = e[p]
        o = out[q]
        for k in range(ai.shape[0]):
            for c in range(ai.shape[1]):
                o[k, c] = ai[k, c] + bj[k, c] + ep[c]


@numba.njit(parallel=True, cache=True, nogil=True)
def _segment_sum_parallel(m, indptr, r0, r1, out):  # pragma: no cover - compiled
    # _segment_sum with the nodes shared among numba's threads (the same sums per node)
    p0 = indptr[r0]
    for q in numba.prange(r1 - r0):
        i = r0 + q
        oi = out[i]
        oi[:, :] = 0
        for p in range(indptr[i], indptr[i + 1]):
            mp = m[p - p0]
            for k in range(oi.shape[0]):
                for c in range(oi.shape[1]):
                    oi[k, c] += mp[k, c]


def _kernels() -> tuple[Any, Any]:
    """The serial kernels on one thread (a parallel region costs more than a chunk's work
    there), numba's parallel ones where torch and numba both have several threads."""
    if torch.get_num_threads() > 1 and numba.get_num_threads() > 1:
        return _edge_sum_parallel, _segment_sum_parallel
    return _edge_sum, _segment_sum


def _chunks(indptr: torch.Tensor, per_edge: int) -> list[tuple[int, int, int, int]]:
    """``(r0, r1, p0, p1)``: consecutive target nodes whose edges fill about :data:`EDGE_CHUNK_ELEMENTS`."""
    n = indptr.shape[0] - 1
    budget = max(1, EDGE_CHUNK_ELEMENTS // max(1, per_edge))   # edges per chunk (at least one node's)
    out, r0 = [], 0
    while r0 < n:
        r1 = int(torch.searchsorted(indptr, indptr[r0] + budget, right=True)) - 1
        r1 = min(max(r1, r0 + 1), n)
        out.append((r0, r1, int(indptr[r0]), int(indptr[r1])))
        r0 = r1
    return out


def _indptr(degree: torch.Tensor) -> torch.Tensor:
    indptr = torch.zeros(degree.shape[0] + 1, dtype=torch.int64)
    torch.cumsum(degree, 0, out=indptr[1:])
    return indptr


def edge_mean(a: torch.Tensor, b: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor, degree: torch.Tensor,
              act: torch.nn.Module) -> torch.Tensor:
    """``mean_aggregate(act(a[target] + b[source] + e[:, None]), target, degree)`` in cache-sized chunks.

    On the CPU, for edges sorted by target (:class:`MeshContext`'s CSR order): the
    ``(E, batch, W)`` messages are never formed whole.  Each chunk of target nodes gathers
    its edges' sums (one compiled pass), applies ``act`` (torch's kernel) and sums them per
    node while they are in cache; at batch 10 on the beam's 169k edges the eager
    composition streamed five arrays of 216 MB per layer.  The same sums in the same order
    as :func:`~fe_operators.models.layers.graph_ops.mean_aggregate` of the eager messages.
    Differentiable in ``a``, ``b`` and ``e`` (once): the backward pass recomputes each
    chunk's sums and takes ``act``'s derivative there, also without the whole messages.

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
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or e.requires_grad):
        return _EdgeMean.apply(a, b, e, edge_index, degree, act)
    return _edge_mean(a, b, e, edge_index, degree, act)


def _edge_mean(a: torch.Tensor, b: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor, degree: torch.Tensor,
               act: torch.nn.Module) -> torch.Tensor:
    source, target = edge_index
    indptr = _indptr(degree)
    a_, b_, e_ = (t.detach().contiguous().numpy() for t in (a, b, e))
    src, tgt, ptr = source.numpy(), target.numpy(), indptr.numpy()
    out = torch.empty(a.shape, dtype=a.dtype)
    out_ = out.numpy()
    gather, segment = _kernels()
    for r0, r1, p0, p1 in _chunks(indptr, a.shape[1] * a.shape[2]):
        buf = torch.empty((p1 - p0, a.shape[1], a.shape[2]), dtype=a.dtype)
        gather(a_, b_, e_, src, tgt, p0, p1, buf.numpy())
        segment(act(buf).numpy(), ptr, r0, r1, out_)
    return out * (1.0 / degree.clamp_min(1).to(a.dtype)).reshape(-1, 1, 1)


class _EdgeMean(torch.autograd.Function):
    """:func:`edge_mean` with a chunked backward pass (the sums recomputed per chunk)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor,
                degree: torch.Tensor, act: torch.nn.Module) -> torch.Tensor:
        ctx.save_for_backward(a, b, e, edge_index, degree)
        ctx.act = act
        return _edge_mean(a, b, e, edge_index, degree, act)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        a, b, e, edge_index, degree = ctx.saved_tensors
        source, target = edge_index
        indptr = _indptr(degree)
        # d mean_i / d m_p = 1 / deg_i for the edges p into i
        g = (grad * (1.0 / degree.clamp_min(1).to(grad.dtype)).reshape(-1, 1, 1)).contiguous()
        a_, b_, e_ = (t.detach().contiguous().numpy() for t in (a, b, e))
        src, tgt, ptr = source.numpy(), target.numpy(), indptr.numpy()
        da = torch.empty(a.shape, dtype=a.dtype)
        db = torch.zeros(b.shape, dtype=b.dtype)
        de = torch.empty(e.shape, dtype=e.dtype)
        gather, segment = _kernels()
        for r0, r1, p0, p1 in _chunks(indptr, a.shape[1] * a.shape[2]):
            pre = torch.empty((p1 - p0, a.shape[1], a.shape[2]), dtype=a.dtype)
            gather(a_, b_, e_, src, tgt, p0, p1, pre.numpy())
            gm = g.index_select(0, target[p0:p1])
            with torch.enable_grad():
                pre.requires_grad_(True)
                (dpre,) = torch.autograd.grad(ctx.act(pre), pre, gm)
            segment(dpre.numpy(), ptr, r0, r1, da.numpy())
            db.index_add_(0, source[p0:p1], dpre)
            de[p0:p1] = dpre.sum(1)
        return da, db, de, None, None, None


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
        if self._chunked(h, edge_index, degree):
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

    def _chunked(self, h: torch.Tensor, edge_index: torch.Tensor, degree: torch.Tensor) -> bool:
        """Whether :func:`edge_mean` runs: CPU, float, not traced, edges in the CSR order of ``degree``."""
        if not (h.device.type == "cpu" and h.dtype in (torch.float32, torch.float64) and h.ndim == 3
                and edge_index.device.type == "cpu" and not torch.jit.is_tracing()
                and degree.dtype in (torch.int32, torch.int64) and degree.shape == (h.shape[0],)
                and int(degree.sum()) == edge_index.shape[1]):
            return False
        # the chunks read node i's edges at cumsum(degree)[i]: the targets must be sorted, with these counts
        nodes = torch.arange(h.shape[0], dtype=edge_index.dtype)
        return torch.equal(torch.repeat_interleave(nodes, degree), edge_index[1])

    def message(self, a_i: torch.Tensor, b_j: torch.Tensor, e_ij: torch.Tensor) -> torch.Tensor:
        """``φ`` on one edge up to its last (linear) layer: ``(E, batch, W)``.

        The last layer ``lin_m`` is applied after aggregation, in :meth:`forward`.
        """
        return self.act(a_i + b_j + e_ij.unsqueeze(1))

    def update(self, h: torch.Tensor, aggregated: torch.Tensor) -> torch.Tensor:
        """Residual update ``LN(h + ψ([h, a]))``."""
        return self.norm(h + self.update_mlp(torch.cat([h, aggregated], dim=-1)))
