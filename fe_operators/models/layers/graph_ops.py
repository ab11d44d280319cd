"""Graph normalisation and aggregation as free functions (PyG's ``gcn_norm`` style).

Resolution independence: coordinates are scaled to the bounding box of the nodes
(``[-1, 1]^d``, the same on every mesh of a domain) and edge vectors to the mesh's mean
edge length ``h``, so features are O(1) on coarse and fine meshes alike; aggregation is
a mean, so node degrees (which differ between P1 and P2, interior and boundary) do not
scale messages.

Two kernels, each the faster of two measured by ``benchmarks/experiments/bench_message_passing.py``
(CPU, one thread, forward + backward, batch 4, width 32; time sparse / time scatter):

* :func:`mean_aggregate` — per-edge messages to nodes: ``index_add_`` (scatter).  A
  sparse ``(n, E)`` incidence-matrix product is 0.89 of it on 64×64 but 1.55× slower on
  256×256, so scatter is kept;
* :func:`propagate_mean` — neighbour averaging of node features with fixed weights: a
  sparse CSR product, 0.34 (64×64) and 0.25 (256×256) of gather + scatter.  With
  *learned* edge weights the CSR product's gradient for its values is 4–80× slower than
  gather + scatter, so layers with learned edge weights should scatter.
"""

from __future__ import annotations

import torch

from fe_operators.sparse.warnings import csr_beta_warning_silenced

__all__ = ["normalized_coordinates", "edge_features", "mean_aggregate", "mean_adjacency", "propagate_mean"]


def normalized_coordinates(coords: torch.Tensor) -> torch.Tensor:
    """Node coordinates mapped affinely from their bounding box to ``[-1, 1]^d``.

    Shapes
    ------
    ``(n, gdim) -> (n, gdim)``, same dtype.
    """
    lo = coords.amin(dim=0)
    span = (coords.amax(dim=0) - lo).clamp_min(torch.finfo(coords.dtype).tiny)
    return 2.0 * (coords - lo) / span - 1.0


def edge_features(edge_attr: torch.Tensor) -> torch.Tensor:
    """Relative positions and lengths divided by the mean edge length.

    Shapes
    ------
    ``(E, gdim + 1) -> (E, gdim + 1)``, same dtype.
    """
    return edge_attr / edge_attr[:, -1].mean().clamp_min(torch.finfo(edge_attr.dtype).tiny)


def mean_aggregate(messages: torch.Tensor, target: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    r"""Mean of the messages arriving at each node: :math:`\frac{1}{|N(i)|}\sum_{j\in N(i)} m_{j\to i}`.

    Parameters
    ----------
    messages
        ``(E, *F)`` one message per edge.
    target
        ``(E,)`` int64 target node of each edge.
    degree
        ``(n,)`` in-degree of each node (nodes without edges get zeros).

    Returns
    -------
    torch.Tensor
        ``(n, *F)``.
    """
    out = messages.new_zeros((degree.shape[0],) + messages.shape[1:]).index_add_(0, target, messages)
    scale = 1.0 / degree.clamp_min(1).to(messages.dtype)
    return out * scale.reshape((-1,) + (1,) * (messages.ndim - 1))


def mean_adjacency(indptr: torch.Tensor, source: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The random-walk operator with self loops, :math:`\hat A = (A + I) / (d + 1)`, in two parts.

    Parameters
    ----------
    indptr, source
        CSR row pointer ``(n + 1,)`` and column indices ``(E,)`` (``edge_index[0]`` in
        CSR order) of the adjacency without self loops.
    dtype
        Of the values.

    Returns
    -------
    adjacency
        ``(n, n)`` sparse CSR :math:`A / (d + 1)`.
    self_weight
        ``(n,)`` the diagonal :math:`1 / (d + 1)`.
    """
    n = indptr.shape[0] - 1
    degree = indptr.diff()
    inv = 1.0 / (degree + 1).to(dtype)
    values = inv.repeat_interleave(degree, output_size=source.shape[0])
    with csr_beta_warning_silenced():
        return torch.sparse_csr_tensor(indptr, source, values, (n, n), check_invariants=False), inv


def propagate_mean(x: torch.Tensor, adjacency: torch.Tensor, self_weight: torch.Tensor) -> torch.Tensor:
    r"""One hop :math:`\hat A x` of random-walk averaging (see :func:`mean_adjacency`).

    Constants are preserved (a consistent smoother: on a uniform mesh
    :math:`\hat A \approx I + c\,h^2 \Delta_h`), so ``k`` hops act like diffusion over
    a time proportional to :math:`k h^2`.

    Shapes
    ------
    ``x``: ``(n, *F) -> (n, *F)``.
    """
    flat = x.reshape(x.shape[0], -1)
    return (adjacency @ flat + flat * self_weight[:, None]).reshape(x.shape)
