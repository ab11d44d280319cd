"""The Leray projection onto exactly divergence-free velocities: set-up, apply time, divergences.

For the Navier–Stokes cylinder problem on DFG meshes (``--resolutions``, default the
coarse test mesh r = 0.5 and the validation mesh r = 1): the set-up time of
:func:`fe_operators.fem.leray.leray_projection` (Alfeld refinement, embedding, assembly,
MUMPS factorisation; Firedrake's kernels compiled beforehand on a tiny mesh), the apply
time per sample (forward, and forward + backward) at batch 1 and batch 16, and
``‖div u‖ / ‖∇u‖`` of Taylor–Hood states (the perturbed steady state and two BDF steps)
before and after the projection, with ``|v − u|_1 / |u|_1`` and the Dirichlet values'
largest change (0: copied).  Run on one CPU thread::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_divfree.py [--resolutions 0.5 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import firedrake as fd

from fe_operators.fem.leray import leray_projection
from fe_operators.io import load_mesh
from fe_operators.meshes.dfg import dfg_mesh
from fe_operators.problems.navier_stokes import NavierStokesCylinder

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import check_load, machine_summary, median_time  # noqa: E402


def _velocity_bcs(problem: NavierStokesCylinder) -> list[fd.DirichletBC]:
    V = problem.velocity_space
    return [fd.DirichletBC(V, fd.Constant((0.0, 0.0)), m) for m in (problem.inlet_marker, *problem.noslip_markers)]


def run(resolution: float, folder: str, repeats: int) -> None:
    problem = NavierStokesCylinder(load_mesh(dfg_mesh(folder, resolution)), dt=1 / 400)
    n_th = problem.state_space.dim()
    t0 = time.perf_counter()
    P = leray_projection(problem.velocity_space, _velocity_bcs(problem))
    setup = time.perf_counter() - t0
    print(f"dfg_mesh(r={resolution:g}): {n_th} Taylor-Hood DOFs; {P}", flush=True)
    print(f"  set-up {setup:.2f} s", flush=True)
    for batch in (1, 16):
        u = torch.randn(batch, P.n_coarse * 2, dtype=torch.float64)
        fwd = median_time(lambda: P(u), repeats)
        ur = u.clone().requires_grad_(True)
        both = median_time(lambda: P(ur).sum().backward(), repeats)
        print(f"  batch {batch:2d}: forward {1e3 * fwd / batch:.1f} ms/sample, forward+backward "
              f"{1e3 * both / batch:.1f} ms/sample", flush=True)
    params = {"Re": 100.0}
    states = [problem.initial_state(params)]
    states.append(problem.step(states[0], params))
    states.append(problem.step(states[1], params, [states[0]]))
    u = torch.from_numpy(np.stack([s.subfunctions[0].dat.data_ro.reshape(-1) for s in states]))
    w, v = P.embed(u), P(u)
    X = (v - w).numpy().T
    change = np.sqrt(np.einsum("ib,ib->b", X, P.stiffness @ X))
    W = w.numpy().T
    norm = np.sqrt(np.einsum("ib,ib->b", W, P.stiffness @ W))
    bc = float((v[:, P.constrained] - w[:, P.constrained]).abs().max())
    for k, (b, a, c) in enumerate(zip(P.divergence_ratio(w), P.divergence_ratio(v), change / norm)):
        print(f"  NS state {k} (Re 100): div ratio before {b:.3e}, after {a:.3e}; |v-u|_1/|u|_1 {c:.3e}", flush=True)
    print(f"  Dirichlet values: max |v - u| = {bc:g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine_summary(), flush=True)
    check_load("start")
    with tempfile.TemporaryDirectory() as folder:
        # compile Firedrake's kernels first: the set-up times are then those of a warm process
        V = fd.VectorFunctionSpace(fd.UnitSquareMesh(2, 2), "CG", 2)
        leray_projection(V, fd.DirichletBC(V, fd.Constant((0.0, 0.0)), 1))
        for r in args.resolutions:
            run(r, folder, args.repeats)
    check_load("end")


if __name__ == "__main__":
    main()
