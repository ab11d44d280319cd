"""Run by ``bench_pc.py`` under ``mpiexec -n N``: NeuralMG's solves through
:func:`fe_operators.precond.evaluate.evaluate_preconditioners` on ``COMM_WORLD``; rank 0
prints one JSON line (the :class:`~fe_operators.precond.evaluate.SolveRow` and ``ranks``).

Usage: ``mpiexec -n 2 python benchmarks/bench_pc_mpi.py SPEC METHOD MODEL SAMPLES REPEATS``.

The log-normal Matérn family is sampled on one process only (its SPDE is factorised
serially), so the coefficients here are :class:`FourierLogField`'s: ``exp`` of a random
sum of Fourier modes, variance 2 like the training family's log field, drawn from the
same seed on every rank and interpolated in parallel — the same operators on 1 and 2
ranks. Set-up and solve times are the slowest rank's (PETSc's event times are per rank).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Mapping

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import firedrake as fd  # noqa: E402

from fe_operators.problems.base import OperatorForm, Problem  # noqa: E402

__all__ = ["FourierLogField", "main"]


class FourierLogField(Problem):
    """``-div(a grad u) = 1``, ``u = 0`` on the boundary, CG1; ``a = exp(g)``, ``g`` a sum of
    ``modes``² Fourier modes of wavenumbers ``1..modes`` with random phases and amplitudes
    decaying as ``1/|k|²``, scaled to variance ``variance`` (works on any number of ranks)."""

    def __init__(self, mesh: Any, variance: float = 2.0, modes: int = 4) -> None:
        super().__init__(mesh, variance=variance, modes=modes)
        self._V = fd.FunctionSpace(mesh, "CG", 1)

    @property
    def input_spaces(self) -> dict[str, Any]:
        return {"a": self._V}

    @property
    def output_space(self) -> Any:
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        n, x = self.params["modes"], fd.SpatialCoordinate(self.mesh)
        k = np.arange(1, n + 1)
        kx, ky = np.meshgrid(k, k, indexing="ij")
        amp = rng.standard_normal((n, n)) / (kx**2 + ky**2)
        phase = rng.uniform(0, 2 * np.pi, (n, n, 2))
        amp *= np.sqrt(2 * self.params["variance"] / np.sum(amp**2))  # each mode's cos-product has variance 1/4
        g = sum(float(amp[i, j]) * fd.cos(np.pi * kx[i, j] * x[0] + phase[i, j, 0])
                * fd.cos(np.pi * ky[i, j] * x[1] + phase[i, j, 1]) for i in range(n) for j in range(n))
        return {"a": fd.Function(self._V).interpolate(fd.exp(g))}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:  # pragma: no cover - not used here
        raise NotImplementedError("FourierLogField only provides spd_operator")

    def spd_operator(self, inputs: Mapping[str, fd.Function], **overrides: float) -> OperatorForm:
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        return OperatorForm(fd.inner(inputs["a"] * fd.grad(u), fd.grad(v)) * fd.dx,
                            [fd.DirichletBC(self._V, 0.0, "on_boundary")])


def main(argv: list[str]) -> int:
    spec, method, model, samples, repeats = argv
    import torch

    torch.set_num_threads(1)
    from mpi4py import MPI

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
