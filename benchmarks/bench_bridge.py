"""``make bench-bridge``: the bridge's costs against baselines measured in the same run.

For a CG1 space with about 1M DOFs (UnitSquareMesh(1023, 1023): 1,048,576 DOFs) it prints
median-time ratios (first calls excluded, so kernel compilation is not counted):

* ``roundtrip_vs_memcpy`` — 8 Functions → one (8, n) float64 tensor → 8 new Functions,
  against two numpy copies of the same bytes (target ≤ 2);
* ``l2loss_vs_mse`` — the relative-L2 FE loss (float64, consistent mass matrix, relative
  denominator included) forward + backward on (8, n) tensors, against torch's MSE forward
  + backward on the same tensors (target ≤ 4);
* ``graph_vs_assembly`` — edge_index + CSR + DOF coordinates + edge features from the
  cell-node map, against a warm (second) assembly of the stiffness matrix (target ≤ 1).

Usage: ``python benchmarks/bench_bridge.py [--n 1023] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
from fe_operators.petsc_argv import import_firedrake  # noqa: E402

# first, without this script's options (Firedrake hands sys.argv to PETSc at import)
fd = import_firedrake()

import numpy as np  # noqa: E402
import torch  # noqa: E402


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_summary, median_time, print_ratios  # noqa: E402

from fe_operators.fem import FENorm, RelativeLoss, dof_graph, functions_to_tensor, tensor_to_functions  # noqa: E402

TARGETS = {"roundtrip_vs_memcpy": 2.0, "l2loss_vs_mse": 4.0, "graph_vs_assembly": 1.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1023, help="cells per side of the unit square (default 1023)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)  # the same cores for the baseline and for us

    mesh = fd.UnitSquareMesh(args.n, args.n)
    V = fd.FunctionSpace(mesh, "CG", 1)
    n = V.dof_dset.size
    print(machine_summary())
    print(f"space: CG1 on UnitSquareMesh({args.n}, {args.n}), {n:,} DOFs; batch 8; median of {args.repeats}")
    rng = np.random.default_rng(0)
    funcs = []
    for _ in range(8):
        f = fd.Function(V)
        f.dat.data[:] = rng.standard_normal(n)
        funcs.append(f)
    results: dict[str, tuple[float, float]] = {}

    # 1. round trip vs two memcpys of the same bytes
    src = np.stack([f.dat.data_ro for f in funcs])

    def memcpy2():
        a = src.copy()
        return a.copy()

    def roundtrip():
        return tensor_to_functions(functions_to_tensor(funcs), V)

    results["roundtrip_vs_memcpy"] = (median_time(roundtrip, args.repeats), median_time(memcpy2, args.repeats))

    # 2. relative L2 FE loss vs MSE, forward + backward
    loss = RelativeLoss(FENorm.l2(V))
    target = torch.from_numpy(src.copy())
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)

    def fe_loss():
        pred.grad = None
        loss(pred, target).backward()

    def mse():
        pred.grad = None
        torch.nn.functional.mse_loss(pred, target).backward()

    results["l2loss_vs_mse"] = (median_time(fe_loss, args.repeats), median_time(mse, args.repeats))

    # 3. graph from the cell-node map vs a warm stiffness assembly
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    a = fd.inner(fd.grad(u), fd.grad(v)) * fd.dx

    def assembly():
        return fd.assemble(a, mat_type="aij")

    results["graph_vs_assembly"] = (
        median_time(lambda: dof_graph(V), args.repeats),
        median_time(assembly, args.repeats),
    )

    print(f"{'benchmark':<22}{'ours [ms]':>12}{'baseline [ms]':>15}{'ratio':>8}{'target':>8}")
    for name, (ours, base) in results.items():
        print(f"{name:<22}{ours * 1e3:>12.1f}{base * 1e3:>15.1f}{ours / base:>8.2f}{'<= ' + str(TARGETS[name]):>8}")
    print_ratios({name: ours / base for name, (ours, base) in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
