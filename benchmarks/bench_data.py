"""``make bench-data``: dataset generation against a naive solve loop, measured in one run.

Darcy (``darcy``, default parameters: DG0 coefficient, CG1 output) on ``unitsquare:64``:

* ``generate`` — :func:`fe_operators.data.generation.generate_dataset`, the code behind
  ``fe-operators generate``: every sample, the journal and the final HDF5 file (mesh
  checkpoint included), timed from the end of mesh and problem set-up (the whole call,
  set-up included, is printed too);
* ``naive`` — a loop with the same sampler and the same solver options that calls
  ``solve(a == L, u, bcs=...)`` per sample, writing nothing (its mesh and sampler are
  built before the clock starts, likewise).

Both run once untimed first (kernel compilation), then ``--samples`` timed samples each,
``--repeats`` times alternately (the best rate of each is kept: the machine is shared).
It prints the machine, both rates and ``ratio datagen_vs_naive <x>`` (target ≥ 3).

Usage: ``python benchmarks/bench_data.py [--samples 1000] [--repeats 2] [--n 64]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
from fe_operators.petsc_argv import import_firedrake  # noqa: E402

fd = import_firedrake()  # first, without this script's arguments (PETSc would read them)

from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_summary

from fe_operators.data import generate_dataset
from fe_operators.problems import load_problem, sample_rng

TARGET = 3.0
SEED = 0


def naive_loop(mesh_spec: str, n_samples: int, first: int = 0) -> float:
    """Seconds for ``n_samples`` naive solves (the problem object is used only to sample)."""
    problem = load_problem("darcy", mesh_spec, {}, comm=MPI.COMM_SELF)
    V = problem.output_space
    params = problem.params["solver_parameters"]
    t0 = time.perf_counter()
    for i in range(first, first + n_samples):
        a = problem.sample_inputs(sample_rng(SEED, i))["a"]
        u, v = fd.TrialFunction(V), fd.TestFunction(V)
        uh = fd.Function(V)
        bcs = fd.DirichletBC(V, 0.0, "on_boundary")
        fd.solve(fd.inner(a * fd.grad(u), fd.grad(v)) * fd.dx == fd.Constant(1.0) * v * fd.dx, uh,
                 bcs=bcs, solver_parameters=params)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1000, help="timed samples per method (default 1000, the FNO training-set size)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per method, best kept (default 2)")
    p.add_argument("--n", type=int, default=64, help="cells per side of the unit square (default 64)")
    args = p.parse_args(argv)
    mesh_spec = f"unitsquare:{args.n}"
    print(machine_summary())
    print(f"problem: darcy (defaults) on {mesh_spec}, CG1 output; {args.samples} samples per method")

    gen_rates, whole_rates, naive_rates, size = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset("darcy", mesh_spec, 2, Path(tmp) / "warm.h5", seed=SEED, progress=False)
        naive_loop(mesh_spec, 2)
        for r in range(args.repeats):  # alternate the two, keep the best of each
            out = Path(tmp) / f"bench{r}.h5"
            t0 = time.perf_counter()
            report = generate_dataset("darcy", mesh_spec, args.samples, out, seed=SEED, progress=False)
            whole_rates.append(args.samples / (time.perf_counter() - t0))
            assert report.generated == args.samples
            gen_rates.append(report.samples_per_second)
            size = out.stat().st_size
            naive_rates.append(args.samples / naive_loop(mesh_spec, args.samples))
    gen_rate, naive_rate = max(gen_rates), max(naive_rates)
    print(f"generate: {gen_rate:.1f} samples/s (HDF5 file of {size / 2**20:.1f} MiB included; whole call with "
          f"mesh and problem set-up {max(whole_rates):.1f} samples/s)")
    print(f"naive:    {naive_rate:.1f} samples/s (no I/O)")
    ratio = gen_rate / naive_rate
    print(f"ratio datagen_vs_naive {ratio:.2f}  (target >= {TARGET:g}: {'met' if ratio >= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
