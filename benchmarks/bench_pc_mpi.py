"""Run by ``bench_pc.py`` under ``mpiexec -n N``: NeuralMG's solves through
:func:`fe_operators.precond.evaluate.evaluate_preconditioners` on ``COMM_WORLD``; rank 0
prints one JSON line (the :class:`~fe_operators.precond.evaluate.SolveRow` and ``ranks``).

Usage: ``mpiexec -n 2 python benchmarks/bench_pc_mpi.py SPEC METHOD MODEL SAMPLES REPEATS``.

The log-normal Matérn family is sampled on one process only (its SPDE is factorised
serially), so the coefficients here are :class:`bench_pc_fields.FourierLogField`'s: ``exp``
of a random sum of Fourier modes, variance 2 like the training family's log field, drawn
from the same seed on every rank and interpolated in parallel — the same operators on 1
and 2 ranks. Set-up and solve times are the slowest rank's (PETSc's event times are per rank).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["main"]


def main(argv: list[str]) -> int:
    spec, method, model, samples, repeats = argv
    import torch

    torch.set_num_threads(1)
    from mpi4py import MPI

    from bench_pc_fields import FourierLogField

    from fe_operators.precond.evaluate import evaluate_preconditioners

    comm = MPI.COMM_WORLD
    rows, info = evaluate_preconditioners(spec, [method], models={method: model}, samples=int(samples),
                                          repeats=int(repeats), seed=1000, rtol=1e-8, comm=comm,
                                          problem=FourierLogField)
    row = dataclasses.asdict(rows[0])
    for key in ("setup_seconds", "solve_seconds"):
        row[key] = comm.allreduce(row[key], op=MPI.MAX)
    contrast = comm.allreduce(max(info["contrasts"]), op=MPI.MAX)
    if comm.rank == 0:
        # flushed: C-level buffers may be lost at MPI exit
        print(json.dumps({**row, "ranks": comm.size, "contrast": contrast}), flush=True)
    return 0 if rows[0].converged else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
