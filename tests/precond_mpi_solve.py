"""Run under mpiexec by test_precond_mpi.py: one diffusion solve with a learned PC, print a JSON line."""

import json
import sys

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.io import load_mesh


def solve(spec: str, model: str, method: str) -> dict:
    """Solve with ``method`` (``neural_mg``, ``neural_mg_rediscretise`` or ``neural_amg``); iterations,
    residual, sizes."""
    mesh = load_mesh(spec)
    V = fd.FunctionSpace(mesh, "CG", 1)
    x, y = fd.SpatialCoordinate(mesh)
    a = fd.Function(V).interpolate(fd.exp(2.5 * fd.sin(3 * fd.pi * x) * fd.cos(2 * fd.pi * y)))  # contrast ~150
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    uh = fd.Function(V)
    bcs = [fd.DirichletBC(V, 0.0, "on_boundary")]
    name = {"neural_mg": "NeuralMG", "neural_mg_rediscretise": "NeuralMG", "neural_amg": "NeuralAMG"}[method]
    params = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": 1e-8, "ksp_atol": 0.0,
              "ksp_norm_type": "unpreconditioned", "pc_type": "python",
              "pc_python_type": f"fe_operators.precond.{name}", f"{name.lower()}_model": model}
    if method == "neural_mg_rediscretise":
        params["neuralmg_coarse"] = "rediscretise"
    problem = fd.LinearVariationalProblem(fd.inner(a * fd.grad(u), fd.grad(v)) * fd.dx, v * fd.dx, uh, bcs=bcs)
    solver = fd.LinearVariationalSolver(problem, solver_parameters=params)
    solver.solve()
    ksp = solver.snes.ksp
    A, _ = ksp.getOperators()
    b, xs = ksp.getRhs(), ksp.getSolution()
    r = b.duplicate()
    A.mult(xs, r)
    r.aypx(-1.0, b)
    out = {"ranks": mesh.comm.size, "its": ksp.getIterationNumber(), "reason": ksp.getConvergedReason(),
           "residual": r.norm() / b.norm(), "local_rows": A.getLocalSize()[0], "rows": A.getSize()[0],
           "u_norm": fd.norm(uh), "method": method}
    return out


if __name__ == "__main__":
    spec, model, *methods = sys.argv[1:]
    for method in methods:
        result = solve(spec, model, method)
        if PETSc.COMM_WORLD.getRank() == 0:
            print(json.dumps(result), flush=True)  # flushed: C-level buffers may be lost at MPI exit
