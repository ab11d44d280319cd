"""Where the time of a NeuralMG set-up and solve goes: PETSc events, cProfile, Python overhead per smoother call.

Usage::

    python benchmarks/experiments/profile_precond_apply.py unitsquare:8/r6 smoother.pt

Solves -div(a grad u) = 1, u = 0 (log-normal a, variance 2) with CG + NeuralMG for a
warm-up coefficient, then three times for a new one, and prints for the fastest solve
the PETSc event times as fractions of ``KSPSolve``, the top of cProfile, and the Python
overhead of one smoother application (a ``LearnedJacobi`` apply on a 10-row matrix).
"""

import cProfile
import io
import pstats
import sys
import time

import numpy as np

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.io import load_mesh
from fe_operators.precond.data import DiffusionFamily
from fe_operators.precond.smoother import LearnedJacobi, SmootherNet

SETUP_EVENTS = ("MatPtAP", "MatPtAPNumeric", "MatPtAPSymbolic", "MatLUFactorNum", "MatGetDiagonal", "MatGetRow",
                "MatAssemblyEnd")
EVENTS = ("PCApply", "MatMult", "MatResidual", "MatMultTranspose", "MatMultAdd", "VecPointwiseMult", "MatSolve",
          "VecAXPY", "VecAYPX", "VecTDot", "VecNorm")


def main(spec: str, model: str) -> None:
    fam = DiffusionFamily(load_mesh(spec))
    rng = np.random.default_rng(1000)
    a0, a1 = fam.sample_coefficient(rng), fam.sample_coefficient(rng)
    a = fd.Function(a0.function_space()).assign(a0)
    u = fd.Function(fam.V)
    params = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": 1e-8, "ksp_atol": 0,
              "ksp_norm_type": "unpreconditioned", "pc_type": "python",
              "pc_python_type": "fe_operators.precond.NeuralMG", "neuralmg_model": model}
    problem = fd.LinearVariationalProblem(fam.form(a), fam.rhs_form(), u, bcs=fam.bcs)
    solver = fd.LinearVariationalSolver(problem, solver_parameters=params)
    solver.solve()
    a.dat.data_wo[...] = a1.dat.data_ro
    PETSc.Log.begin()
    best = None
    for rep in range(3):
        stage = PETSc.Log.Stage(f"profile_{rep}")
        stage.push()
        prof = cProfile.Profile()
        prof.enable()
        u.dat.zero()
        solver.solve()
        prof.disable()
        stage.pop()
        seconds = PETSc.Log.Event("KSPSolve").getPerfInfo(stage)["time"]
        if best is None or seconds < best[0]:
            best = (seconds, stage, prof)
    ksolve, stage, prof = best
    its = solver.snes.ksp.getIterationNumber()
    setup = PETSc.Log.Event("PCSetUp").getPerfInfo(stage)["time"]
    print(f"{fam.V.dim()} DOFs, {its} CG iterations, KSPSolve {ksolve:.4f} s ({1e3 * ksolve / its:.2f} ms per "
          f"iteration), PCSetUp {setup:.4f} s")
    for ev in SETUP_EVENTS:
        info = PETSc.Log.Event(ev).getPerfInfo(stage)
        print(f"  {ev:18s} calls {info['count']:6d}  {info['time']:.4f} s  {100 * info['time'] / setup:5.1f} % "
              "of PCSetUp")
    for ev in EVENTS:
        info = PETSc.Log.Event(ev).getPerfInfo(stage)
        print(f"  {ev:18s} calls {info['count']:6d}  {info['time']:.4f} s  {100 * info['time'] / ksolve:5.1f} % "
              "of KSPSolve")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    print(out.getvalue())
    A = PETSc.Mat().createAIJ([10, 10], nnz=1, comm=PETSc.COMM_SELF)
    for i in range(10):
        A[i, i] = 2.0
    A.assemble()
    pc = PETSc.PC().create(comm=PETSc.COMM_SELF)
    pc.setOperators(A, A)
    pc.setType("python")
    pc.setPythonContext(LearnedJacobi(SmootherNet(init_s=0.5)))
    pc.setUp()
    x, y = A.createVecs()
    x.set(1.0)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        pc.apply(x, y)
    per_call = (time.perf_counter() - t0) / n
    calls = PETSc.Log.Event("VecPointwiseMult").getPerfInfo(stage)["count"]
    print(f"Python smoother call {1e6 * per_call:.1f} us (PETSc's PCApply included); {calls} calls in the solve: "
          f"{calls * per_call:.4f} s = {100 * calls * per_call / ksolve:.1f} % of KSPSolve")


if __name__ == "__main__":
    main(*sys.argv[1:3])
