"""Message passing on CPU: sparse matrix products against gather/scatter, measured in one run.

For CG1 DOF graphs of UnitSquareMesh(64, 64) and (256, 256) it times forward + backward
(median of warm runs) of the two graph kernels of the GNN processor, each in both
implementations, checks that they agree, and prints one line per case::

    ratio sparse_vs_scatter <time sparse / time scatter> op=<op> mesh=<N>x<N>

(< 1: the sparse product is faster).  The ops:

* ``aggregate`` — mean of per-edge messages ``(E, B, W) -> (n, B, W)`` (MeshConv):
  ``index_add_`` (scatter) vs an ``(n, E)`` CSR incidence matrix times the messages;
* ``propagate`` — one hop ``(A + I) x / (d + 1)`` of node features (DeepPropagation):
  CSR adjacency times ``x`` vs gathering ``x[source]`` and ``index_add_``;
* ``propagate_learned`` — the same with learned per-edge weights (gradient for the
  weights too), the form of an adjacency with learned edge weights (docs/design.md §4.2);
  only up to ``--learned-max-size`` (the CSR product's gradient for its values is slow).

The package keeps the faster kernel of each op (:mod:`fe_operators.models.layers.graph_ops`);
the slower one lives only here.

Usage: ``python benchmarks/experiments/bench_message_passing.py [--sizes 64 256] [--batch 4]
[--width 32] [--threads 1] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import firedrake as fd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from common import machine_summary, median_time  # noqa: E402

from fe_operators.fem import dof_graph  # noqa: E402
from fe_operators.models.layers.graph_ops import mean_adjacency, mean_aggregate, propagate_mean  # noqa: E402


# ------------------------------------------------------------- the kernels not kept
def aggregate_sparse(messages: torch.Tensor, indptr: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """Mean aggregation as an ``(n, E)`` CSR incidence matrix (values 1/d) times the messages."""
    n, e = indptr.shape[0] - 1, messages.shape[0]
    values = (1.0 / degree.clamp_min(1).to(messages.dtype)).repeat_interleave(degree, output_size=e)
    S = torch.sparse_csr_tensor(indptr, torch.arange(e), values, (n, e), check_invariants=False)
    return (S @ messages.reshape(e, -1)).reshape((n,) + messages.shape[1:])


def propagate_scatter(x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, w: torch.Tensor,
                      self_weight: torch.Tensor) -> torch.Tensor:
    """One weighted hop by gather + ``index_add_``."""
    msg = x[source] * w.reshape((-1,) + (1,) * (x.ndim - 1))
    out = torch.zeros_like(x).index_add_(0, target, msg)
    return out + x * self_weight.reshape((-1,) + (1,) * (x.ndim - 1))


def propagate_sparse_learned(x: torch.Tensor, indptr: torch.Tensor, source: torch.Tensor, w: torch.Tensor,
                             self_weight: torch.Tensor) -> torch.Tensor:
    """One weighted hop with (differentiable) edge weights as a CSR product."""
    n = x.shape[0]
    A = torch.sparse_csr_tensor(indptr, source, w, (n, n), check_invariants=False)
    flat = x.reshape(n, -1)
    return (A @ flat + flat * self_weight[:, None]).reshape(x.shape)


def run_size(N: int, batch: int, width: int, repeats: int, learned_max: int) -> list[tuple[str, float, float]]:
    """(op, scatter seconds, sparse seconds) on the CG1 graph of UnitSquareMesh(N, N)."""
    g = dof_graph(fd.FunctionSpace(fd.UnitSquareMesh(N, N), "CG", 1))
    source, target = g.edge_index
    indptr = torch.from_numpy(g.indptr.copy())
    degree = indptr.diff()
    n, e = g.num_nodes, g.num_edges
    print(f"mesh {N}x{N}: {n} nodes, {e} edges, features (batch {batch}, width {width})")
    gen = torch.Generator().manual_seed(0)
    results = []

    # aggregate: messages (E, B, W) -> nodes
    msg = torch.randn(e, batch, width, generator=gen, requires_grad=True)
    ref = mean_aggregate(msg, target, degree)
    torch.testing.assert_close(aggregate_sparse(msg, indptr, degree), ref, rtol=1e-5, atol=1e-6)
    t_scatter = median_time(lambda: mean_aggregate(msg, target, degree).sum().backward(), repeats)
    t_sparse = median_time(lambda: aggregate_sparse(msg, indptr, degree).sum().backward(), repeats)
    results.append(("aggregate", t_scatter, t_sparse))

    # propagate: fixed mean weights (the operator is built once per forward, as in the model)
    x = torch.randn(n, batch, width, generator=gen, requires_grad=True)
    adjacency, self_weight = mean_adjacency(indptr, source, x.dtype)
    w = self_weight.repeat_interleave(degree, output_size=e)
    ref = propagate_mean(x, adjacency, self_weight)
    torch.testing.assert_close(propagate_scatter(x, source, target, w, self_weight), ref, rtol=1e-5, atol=1e-6)
    t_scatter = median_time(lambda: propagate_scatter(x, source, target, w, self_weight).sum().backward(), repeats)
    t_sparse = median_time(
        lambda: propagate_mean(x, *mean_adjacency(indptr, source, x.dtype)).sum().backward(), repeats)
    results.append(("propagate", t_scatter, t_sparse))

    # propagate_learned: edge weights with gradients (the CSR product's gradient for its
    # values is very slow: 8x slower at 64x64, 80x at 256x256, so larger sizes are skipped)
    if N > learned_max:
        return results
    wl = w.clone().requires_grad_(True)
    torch.testing.assert_close(propagate_sparse_learned(x, indptr, source, wl, self_weight),
                               propagate_scatter(x, source, target, wl, self_weight), rtol=1e-5, atol=1e-6)
    t_scatter = median_time(lambda: propagate_scatter(x, source, target, wl, self_weight).sum().backward(), repeats)
    t_sparse = median_time(
        lambda: propagate_sparse_learned(x, indptr, source, wl, self_weight).sum().backward(), repeats)
    results.append(("propagate_learned", t_scatter, t_sparse))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="cells per side (default 64 256)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--learned-max-size", type=int, default=64,
                   help="largest mesh for propagate_learned (default 64: the sparse path takes ~50 s at 256)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    summary = machine_summary()
    # after machine_summary: numba's threading layer start-up resets OpenMP's thread count
    torch.set_num_threads(args.threads)
    print(summary)
    print(f"torch threads {torch.get_num_threads()}; forward + backward, median of {args.repeats} warm runs")
    for N in args.sizes:
        for op, t_scatter, t_sparse in run_size(N, args.batch, args.width, args.repeats, args.learned_max_size):
            print(f"  {op:18s} scatter {1e3 * t_scatter:9.2f} ms   sparse {1e3 * t_sparse:9.2f} ms")
            print(f"ratio sparse_vs_scatter {t_sparse / t_scatter:.3f} op={op} mesh={N}x{N}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
