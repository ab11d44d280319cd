"""The Newton solve of the hyperelastic beam: the baseline of ``ratio beam_infer_vs_newton`` (issue 16).

The ``hyperelastic_beam`` family on its default mesh (:data:`DEFAULT_MESH`, CG2), one
sample (``--seed``, ``--index``) and the hardest inputs of the sampled range (homogeneous
``E = 1`` at the corner ``a = axial_load_max``, ``b = transverse_load_max``).  For
``n = 1, 2, …`` load steps (no cut-back: ``max_load_steps = n``) it finds the fewest that
converge, then times that solve (Newton, full steps, direct LU, ``snes_rtol = 1e-8``):
one untimed solve first (kernel compilation, symbolic factorisation), then the best of
``--repeats`` solves, each from ``u = 0``, assembly included.

Usage: ``python benchmarks/beam_newton.py [--mesh SPEC] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
from fe_operators.petsc_argv import import_firedrake  # noqa: E402

fd = import_firedrake()  # first, without this script's arguments (PETSc would read them)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_summary  # noqa: E402

from fe_operators.io import load_mesh  # noqa: E402
from fe_operators.problems import sample_rng  # noqa: E402
from fe_operators.errors import SolveError  # noqa: E402
from fe_operators.problems.hyperelastic import DEFAULT_MESH, HyperelasticBeamProblem  # noqa: E402


def fewest_steps(mesh, inputs, most: int = 16) -> int:
    """The fewest equal load steps with which Newton converges for ``inputs``."""
    for n in range(1, most + 1):
        try:
            HyperelasticBeamProblem(mesh, load_steps=n, max_load_steps=n).solve(inputs)
            return n
        except SolveError:
            continue
    raise SystemExit(f"Newton did not converge with up to {most} load steps")


def timed(problem, inputs, repeats: int) -> float:
    problem.solve(inputs)  # untimed: compilation and set-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        problem.solve(inputs)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", default=DEFAULT_MESH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine_summary())
    mesh = load_mesh(args.mesh)
    ref = HyperelasticBeamProblem(mesh)
    E1 = fd.Function(ref.input_spaces["E"]).assign(1.0)
    corner = fd.Function(ref.input_spaces["load"])
    corner.dat.data_wo[...] = (np.array([-ref.params["axial_load_max"], ref.params["transverse_load_max"]])
                               * ref.reference_load(E1) / ref.height)
    cases = {f"sample seed {args.seed} index {args.index}": ref.sample_inputs(sample_rng(args.seed, args.index)),
             "hardest corner (E = 1, a = 0.5, b = 0.1)": {"E": E1, "load": corner}}
    print(f"mesh {args.mesh}: {ref.output_space.dim()} displacement DOFs (CG{ref.params['degree']})")
    for name, inputs in cases.items():
        n = fewest_steps(mesh, inputs)
        problem = HyperelasticBeamProblem(mesh, load_steps=n, max_load_steps=n)
        seconds = timed(problem, inputs, args.repeats)
        a = problem.check_load(inputs)
        print(f"{name}: axial load {a:.3f} P_ref, fewest load steps {n}, Newton iterations "
              f"{problem.newton_iterations}, solve {seconds:.3f} s (best of {args.repeats})")


if __name__ == "__main__":
    main()
