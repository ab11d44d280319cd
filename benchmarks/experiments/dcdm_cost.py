"""What one application of the DCDM network costs, against one multigrid V-cycle, on one mesh.

For a mesh spec (a level of a hierarchy) it assembles one log-normal diffusion operator
(the bench's family, ``-div(a grad u) = 1``, ``u = 0``), sets up the ``DCDM`` preconditioner
(:class:`fe_operators.precond.DCDM`, a checkpoint or an untrained network of the chosen
architecture) and Firedrake's GMG (``precond evaluate``'s ``gmg``: ``pc_type mg``,
Chebyshev(2)/Jacobi, LU coarse) on it, and prints::

    mesh <spec> dofs <n> architecture <a>
    dcdm macs_per_node <m>   (per level, coarsest first: ...)
    dcdm seconds_per_application <t>   (median of <k>, residual float64 -> float32 network -> float64)
    gmg seconds_per_vcycle <t>   (one PCApply of PCMG)
    ratio dcdm_application_vs_vcycle <t_dcdm / t_gmg>
    machine <cpu>, torch threads <k>, cores allowed <list>

The multiply-adds count the network's sparse products, its dense coarsest solve and its
MLPs (:meth:`fe_operators.precond.dcdm.DCDMNet.cost_per_level`), divided by the fine
nodes.  With ``--model`` omitted the network is untrained (same cost): ``vcycle`` with
three weight levels from the hierarchy's coarsest mesh, or the bench's ``mgno`` (width 8,
2 layers) — the architecture before issue 17.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/experiments/dcdm_cost.py --mesh unitsquare:16/r4
[--model dcdm.pt | --architecture mgno] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mesh", default="unitsquare:16/r4", help="hierarchy spec (default unitsquare:16/r4)")
    p.add_argument("--model", default=None, help="a dcdm checkpoint (default: an untrained network)")
    p.add_argument("--architecture", default="vcycle", choices=("vcycle", "mgno"),
                   help="of the untrained network (default vcycle)")
    p.add_argument("--repeats", type=int, default=5, help="timed applications (median kept; default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=1000, help="coefficient seed (default 1000)")
    return p.parse_args(argv)


def machine() -> str:
    """The CPU model (Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def untrained(architecture: str, V: object) -> object:
    """An untrained DCDM network whose coarsest level is the hierarchy's coarsest mesh."""
    import torch

    from fe_operators.precond.dcdm import DCDMNet, mesh_level_sizes

    h0 = mesh_level_sizes(V)[0]
    torch.manual_seed(0)
    net = DCDMNet(6 if V.mesh().geometric_dimension == 2 else 10, 3, h0, width=8, layers=2,
                  architecture=architecture)
    net.init_laplacian(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    return net.float().eval()


def median_seconds(fn: object, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    import firedrake as fd
    import numpy as np
    import torch

    from fe_operators.io import load_mesh
    from fe_operators.precond.data import DiffusionFamily
    from fe_operators.precond.evaluate import solver_parameters

    torch.set_num_threads(args.threads)
    mesh = load_mesh(args.mesh)
    fam = DiffusionFamily(mesh)
    a = fam.sample_coefficient(np.random.default_rng(args.seed))
    model = args.model if args.model else untrained(args.architecture, fam.V)

    def solver(method: str) -> fd.LinearVariationalSolver:
        u = fd.Function(fam.V)
        problem = fd.LinearVariationalProblem(fam.form(a), fam.rhs_form(), u, bcs=fam.bcs)
        # two iterations: enough to assemble and set everything up (an untrained mgno net needs hundreds)
        params = {**solver_parameters(method, model if method == "dcdm" else None, rtol=1e-8, max_it=2)}
        appctx = {"precond_model": model} if method == "dcdm" and not isinstance(model, str) else {}
        s = fd.LinearVariationalSolver(problem, solver_parameters=params, appctx=appctx)
        try:
            s.solve()
        except fd.ConvergenceError:
            pass
        return s

    dcdm = solver("dcdm")
    ctx = dcdm.snes.ksp.getPC().getPythonContext()
    n = fam.V.dim()
    r = np.random.default_rng(0).standard_normal(n)
    per_level = ctx.net.cost_per_level(ctx.levels)
    macs = sum(per_level) / n
    t_dcdm = median_seconds(lambda: ctx.direction(r), args.repeats)

    gmg = solver("gmg")
    pc = gmg.snes.ksp.getPC()
    x, y = pc.getOperators()[0].createVecs()
    x.array[:] = r
    t_gmg = median_seconds(lambda: pc.apply(x, y), args.repeats)

    arch = getattr(ctx.net, "architecture", "mgno")
    print(f"mesh {args.mesh} dofs {n} architecture {arch}")
    print(f"dcdm macs_per_node {macs:.1f}   (per level, coarsest first: {', '.join(str(m) for m in per_level)})")
    print(f"dcdm seconds_per_application {t_dcdm:.4g}   (median of {args.repeats}, residual float64 -> "
          f"{str(ctx.dtype).replace('torch.', '')} network -> float64)")
    print(f"gmg seconds_per_vcycle {t_gmg:.4g}   (one PCApply of PCMG, Chebyshev(2)/Jacobi, LU coarse)")
    print(f"ratio dcdm_application_vs_vcycle {t_dcdm / t_gmg:.3f}")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"machine {machine()}, torch threads {torch.get_num_threads()}, cores allowed {cores}")
    return {"macs_per_node": macs, "seconds_per_application": t_dcdm, "seconds_per_vcycle": t_gmg}


if __name__ == "__main__":
    main()
