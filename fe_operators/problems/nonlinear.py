"""A quasilinear diffusion equation with a random source, solved by Newton's method.

.. math::

    -\\nabla\\cdot\\big((1 + u^2)\\nabla u\\big) = f \\ \\text{in } \\Omega, \\qquad
    u = 0 \\ \\text{on } \\Gamma_D, \\qquad
    (1 + u^2)\\,\\partial u/\\partial n = 0 \\ \\text{on } \\partial\\Omega \\setminus \\Gamma_D.

The operator is strictly monotone (with ``w = u + u³/3`` it is ``−Δw``), so the solution is
unique; Newton's method with a backtracking line search (PETSc ``newtonls``) from
``u = 0`` converges in a handful of iterations.  Each solve starts from zero, so a
sample's solution does not depend on the samples solved before it.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import firedrake as fd

from fe_operators.errors import SolveError
from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import SPARSE_LU, Markers, assign_inputs
from fe_operators.problems.base import Problem, bound_params
from fe_operators.problems.random_fields import GaussianRandomField
from fe_operators.problems.registry import register_problem

__all__ = ["NonlinearDiffusionProblem", "DEFAULT_SOLVER_PARAMETERS"]

#: Newton with backtracking line search; each Newton step is a sparse direct solve
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "bt",
    "snes_rtol": 1e-10,
    "snes_atol": 1e-12,
    "snes_stol": 0.0,
    "snes_max_it": 30,
    **SPARSE_LU,
}



@register_problem("nonlinear")
class NonlinearDiffusionProblem(Problem):
    """−∇·((1 + u²)∇u) = f, u = 0 on ``Γ_D``; input the source ``f``.

    Parameters
    ----------
    mesh
        Any Firedrake mesh (2D or 3D).
    degree
        Lagrange degree ``k`` of input and output.
    markers
        Dirichlet boundary ``Γ_D``: ``"on_boundary"`` (all of ∂Ω) or one or several
        markers (the rest of ∂Ω carries the natural no-flux condition).
    source_mean
        Constant mean of ``f``; with the defaults ``|u|`` reaches about 1 on a unit
        square, where the nonlinearity doubles the diffusivity.
    source_length_scale, source_smoothness, source_variance
        Matérn parameters of ``f − source_mean`` (smoothness ``None``: ν = 2 − d/2).
    solver_parameters
        PETSc options of the SNES (default :data:`DEFAULT_SOLVER_PARAMETERS`); merged
        over the defaults, so ``{"snes_max_it": 5}`` keeps the rest.

    Attributes
    ----------
    source_field
        The Gaussian random field of ``f``.
    newton_iterations
        Newton iterations of the last successful solve (0 before any).

    Raises
    ------
    BoundaryMarkerError
        A marker the mesh does not have.
    """

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        degree: int = 1,
        markers: Markers = "on_boundary",
        source_mean: float = 10.0,
        source_length_scale: float = 0.2,
        source_smoothness: float | None = None,
        source_variance: float = 25.0,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        check_markers(mesh, markers)
        dim = mesh.geometric_dimension
        source_smoothness = 2.0 - dim / 2 if source_smoothness is None else float(source_smoothness)
        solver_parameters = {**DEFAULT_SOLVER_PARAMETERS, **(solver_parameters or {})}
        super().__init__(mesh, **bound_params(NonlinearDiffusionProblem, locals()))
        self.markers = markers
        self.newton_iterations = 0
        self._V = fd.FunctionSpace(mesh, "CG", int(degree))
        self.source_field = GaussianRandomField(
            self._V, source_length_scale, source_smoothness, source_variance, mean=source_mean
        )
        # the solver reads these Functions; solve() assigns the inputs into them
        self._f = fd.Function(self._V, name="f")
        self._u = fd.Function(self._V, name="u")
        v = fd.TestFunction(self._V)
        F = ((1 + self._u**2) * fd.inner(fd.grad(self._u), fd.grad(v)) - self._f * v) * fd.dx
        bc = fd.DirichletBC(self._V, 0.0, markers)
        problem = fd.NonlinearVariationalProblem(F, self._u, bcs=bc)  # Jacobian by UFL derivative
        self._solver = fd.NonlinearVariationalSolver(problem, solver_parameters=solver_parameters)

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"f": CG(k)}``."""
        return {"f": self._V}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """``CG(k)``."""
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw ``f`` from its Gaussian random field."""
        return {"f": self.source_field.sample(rng)}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Newton-solve for the source ``inputs["f"]`` from ``u = 0``; return a new Function.

        Raises
        ------
        SolveError
            Newton did not converge; ``reason`` is the SNES converged reason (or the
            KSP's when the linear solve failed; ``solver`` says which), ``detail``
            Firedrake's message.
        """
        assign_inputs({"f": self._f}, inputs, self.name)
        self._u.zero()
        snes = self._solver.snes
        try:
            self._solver.solve()
        except fd.ConvergenceError as exc:
            reason, kind = snes.getConvergedReason(), "SNES"
            if reason >= 0:  # SNES itself fine: the inner linear solve failed
                reason, kind = snes.getKSP().getConvergedReason(), "KSP"
            raise SolveError(reason, detail=" ".join(str(exc).split()), solver=kind) from exc
        self.newton_iterations = int(snes.getIterationNumber())
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """``[DirichletBC(V, 0, markers)]``."""
        return [fd.DirichletBC(self._V, 0.0, self.markers)]
