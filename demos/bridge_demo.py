"""The Firedrake ↔ torch bridge on a generated mesh, end to end.

Solves a batch of Poisson problems with random sources on a two-level hierarchy of a
generated rectangle mesh, moves the solutions into one torch tensor, and shows that the
bridge's FE norms, sparse operators, transfers and graphs agree with Firedrake's own
numbers.  Runs in seconds:  ``python demos/bridge_demo.py [--n 24] [--batch 4]``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import firedrake as fd  # noqa: E402

from fe_operators.fem import (  # noqa: E402
    DirichletDofs, FENorm, dof_graph, functions_to_tensor, prolongation_matrix, tensor_to_functions,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=24, help="coarse cells per side")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    hierarchy = fd.MeshHierarchy(fd.RectangleMesh(2 * args.n, args.n, 2.0, 1.0), 1)
    coarse, mesh = hierarchy[0], hierarchy[-1]
    V = fd.FunctionSpace(mesh, "CG", 1)
    x, y = fd.SpatialCoordinate(mesh)
    bcs = fd.DirichletBC(V, x * y, "on_boundary")
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    f = fd.Function(V)
    uh = fd.Function(V)
    problem = fd.LinearVariationalProblem(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx, f * v * fd.dx, uh, bcs=bcs)
    solver = fd.LinearVariationalSolver(problem, solver_parameters={"ksp_type": "cg", "pc_type": "gamg",
                                                                    "ksp_rtol": 1e-10})
    sols = []
    for _ in range(args.batch):
        a, b, c = rng.uniform(-1, 1, 3)
        f.interpolate(10 * (a * fd.sin(np.pi * x) + b * fd.cos(2 * np.pi * y) + c))
        solver.solve()
        sols.append(uh.copy(deepcopy=True))
    U = functions_to_tensor(sols)
    print(f"mesh: {mesh.num_cells()} cells, CG1 with {V.dof_dset.size} DOFs; solutions -> tensor {tuple(U.shape)}")

    l2, h1 = FENorm.l2(V), FENorm.h1(V)
    err_l2 = max(abs(l2(U)[k].item() - fd.norm(s, "L2")) / fd.norm(s, "L2") for k, s in enumerate(sols))
    err_h1 = max(abs(h1(U)[k].item() - fd.norm(s, "H1")) / fd.norm(s, "H1") for k, s in enumerate(sols))
    print(f"FE norms vs firedrake.norm: max relative difference L2 {err_l2:.1e}, H1 {err_h1:.1e}")

    dd = DirichletDofs(V, bcs)
    lift = dd.lifting()
    bc_err = (U[:, dd.mask] - lift[dd.mask]).abs().max().item()
    print(f"Dirichlet DOFs: {dd.constrained.size} constrained, {dd.n_free} free; "
          f"max |u - g| on the boundary {bc_err:.1e}")

    noisy = U + 1e-2 * torch.randn_like(U)
    print(f"relative L2 error of the solutions plus 1% noise: {l2.relative(noisy, U).mean().item():.3e}")

    Vc = fd.FunctionSpace(coarse, "CG", 1)
    P = prolongation_matrix(Vc, V)
    uc = fd.Function(Vc).interpolate(fd.SpatialCoordinate(coarse)[0] ** 2)
    uf = fd.Function(V)
    fd.prolong(uc, uf)
    print(f"prolongation {P.shape}: max difference to firedrake.prolong "
          f"{np.abs(P @ uc.dat.data_ro - uf.dat.data_ro).max():.1e}")

    g = dof_graph(V)
    print(f"DOF graph: {g.num_nodes} nodes, {g.num_edges} directed edges, "
          f"mean edge length {g.edge_attr[:, -1].mean().item():.4f}")
    back = tensor_to_functions(U, V)
    print(f"tensor -> Functions round trip: max error {max(fd.errornorm(s, b) for s, b in zip(sols, back)):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
