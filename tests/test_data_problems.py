"""Small Problem families used by the data tests (no tests here).

They are importable by a generator subprocess as ``test_data_problems:SmallPoisson`` when
``tests/`` is on ``PYTHONPATH``, so the CLI can be tested before (and besides) the
registry's families.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import firedrake as fd
import numpy as np
from firedrake.exceptions import ConvergenceError

from fe_operators.errors import SolveError
from fe_operators.problems.base import Problem

__all__ = ["SmallPoisson"]


class SmallPoisson(Problem):
    """-div(k grad u) = f on the mesh, u = 0 on the boundary; CG1 output.

    Parameters
    ----------
    mesh
        A 2D mesh.
    diffusion
        ``"const"`` (k = 1, one input ``f`` on CG1) or ``"dg0"`` (a second input ``k``,
        log-normal on DG0).
    fail_sample
        Index of a sample whose solve is forced to fail (CG without preconditioner,
        one iteration); ``None`` for none.
    """

    name = "small_poisson"

    def __init__(self, mesh: Any, diffusion: str = "const", fail_sample: int | None = None) -> None:
        if diffusion not in ("const", "dg0"):
            raise ValueError(f"expected diffusion 'const' or 'dg0', got {diffusion!r}")
        super().__init__(mesh, diffusion=diffusion, fail_sample=fail_sample)
        self._V = fd.FunctionSpace(mesh, "CG", 1)
        self._spaces = {"f": self._V}
        if diffusion == "dg0":
            self._spaces["k"] = fd.FunctionSpace(mesh, "DG", 0)
        self._f = fd.Function(self._V)
        self._k = fd.Function(self._spaces["k"]) if diffusion == "dg0" else fd.Constant(1.0)
        self._u = fd.Function(self._V)
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        a = self._k * fd.inner(fd.grad(u), fd.grad(v)) * fd.dx
        L = self._f * v * fd.dx
        self._bcs = [fd.DirichletBC(self._V, 0.0, "on_boundary")]
        lvp = fd.LinearVariationalProblem(a, L, self._u, bcs=self._bcs)
        self.solver_parameters = {"ksp_type": "preonly", "pc_type": "lu"}
        self._solver = fd.LinearVariationalSolver(lvp, solver_parameters=self.solver_parameters)
        self._bad = fd.LinearVariationalSolver(lvp, solver_parameters={
            "ksp_type": "cg", "pc_type": "none", "ksp_max_it": 1, "ksp_rtol": 1e-14,
            "ksp_error_if_not_converged": False,
        })
        self._fail_next = False

    @property
    def input_spaces(self) -> Mapping[str, fd.FunctionSpace]:
        return self._spaces

    @property
    def output_space(self) -> fd.FunctionSpace:
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        out = {"f": fd.Function(self._V, val=rng.standard_normal(self._V.dof_dset.size))}
        if "k" in self._spaces:
            K = self._spaces["k"]
            out["k"] = fd.Function(K, val=np.exp(0.3 * rng.standard_normal(K.dof_dset.size)))
        return out

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        self._f.assign(inputs["f"])
        if "k" in self._spaces:
            self._k.assign(inputs["k"])
        solver, self._fail_next = (self._bad if self._fail_next else self._solver), False
        self._u.zero()  # the solve starts from zero: samples do not depend on their order
        try:
            solver.solve()
        except ConvergenceError as exc:
            raise SolveError(solver.snes.ksp.getConvergedReason(), detail="forced failure", solver="KSP") from exc
        reason = solver.snes.ksp.getConvergedReason()
        if reason < 0:
            raise SolveError(reason, detail="KSP", solver="KSP")
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        return list(self._bcs)

    def sample(self, seed: int, index: int) -> tuple[dict[str, fd.Function], fd.Function]:
        self._fail_next = index == self.params["fail_sample"]
        return super().sample(seed, index)
