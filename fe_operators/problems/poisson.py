"""Poisson's equation with a random source and random Dirichlet data.

.. math::

    -\\Delta u = f \\ \\text{in } \\Omega, \\qquad u = g \\ \\text{on } \\Gamma_D,

in ``CG(k)``; both ``f`` and ``g`` are inputs.  ``f`` is a Matérn field; ``g`` a
smoother, longer-range Matérn field of which only the boundary values matter.
Where ``Γ_D`` is a part of ``∂Ω`` the rest carries the natural condition
``∂u/∂n = 0``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import firedrake as fd

from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import SPARSE_CHOLESKY, Markers, assign_inputs, solve_or_raise
from fe_operators.problems.base import Problem, bound_params
from fe_operators.problems.random_fields import GaussianRandomField
from fe_operators.problems.registry import register_problem

__all__ = ["PoissonProblem", "DEFAULT_SOLVER_PARAMETERS"]

#: sparse direct solve.  The operator does not change between samples, so it is
#: factorised once and every sample costs a pair of triangular solves; PETSc's own
#: factorisation is several times faster per solve than MUMPS on one process.
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = dict(SPARSE_CHOLESKY)

@register_problem("poisson")
class PoissonProblem(Problem):
    """−Δu = f in Ω, u = g on the Dirichlet boundary; inputs ``f`` and ``g``.

    Parameters
    ----------
    mesh
        Any Firedrake mesh (2D or 3D).
    degree
        Lagrange degree ``k`` of inputs and output.
    markers
        Dirichlet boundary: ``"on_boundary"`` (all of ∂Ω) or one or several boundary
        markers of the mesh (the rest of ∂Ω is natural, ``∂u/∂n = 0``).
    source_length_scale, source_smoothness, source_variance
        Matérn parameters of ``f`` (see :class:`GaussianRandomField`; smoothness
        ``None``: ν = 2 − d/2).
    boundary_length_scale, boundary_smoothness, boundary_variance
        Matérn parameters of the field whose boundary trace is ``g`` (smoothness
        ``None``: ν = 4 − d/2, twice as many derivatives as the default source).
        Because of the field's reflecting boundary, the variance of ``g`` on ∂Ω is
        about twice ``boundary_variance``.
    solver_parameters
        PETSc options of the linear solve (default :data:`DEFAULT_SOLVER_PARAMETERS`,
        sparse Cholesky; e.g. ``{"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10}``
        for large 3D meshes).

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
        source_length_scale: float = 0.2,
        source_smoothness: float | None = None,
        source_variance: float = 1.0,
        boundary_length_scale: float = 0.5,
        boundary_smoothness: float | None = None,
        boundary_variance: float = 1.0,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        check_markers(mesh, markers)
        dim = mesh.geometric_dimension
        source_smoothness = 2.0 - dim / 2 if source_smoothness is None else float(source_smoothness)
        boundary_smoothness = 4.0 - dim / 2 if boundary_smoothness is None else float(boundary_smoothness)
        solver_parameters = dict(
            DEFAULT_SOLVER_PARAMETERS if solver_parameters is None else solver_parameters
        )
        super().__init__(mesh, **bound_params(PoissonProblem, locals()))
        self.markers = markers
        self._V = fd.FunctionSpace(mesh, "CG", int(degree))
        self.source_field = GaussianRandomField(
            self._V, source_length_scale, source_smoothness, source_variance
        )
        self.boundary_field = GaussianRandomField(
            self._V, boundary_length_scale, boundary_smoothness, boundary_variance
        )
        # the solver reads these Functions; solve() assigns the inputs into them
        self._f = fd.Function(self._V, name="f")
        self._g = fd.Function(self._V, name="g")
        self._u = fd.Function(self._V, name="u")
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        a = fd.inner(fd.grad(u), fd.grad(v)) * fd.dx
        L = self._f * v * fd.dx
        bc = fd.DirichletBC(self._V, self._g, markers)
        # the operator does not depend on the inputs: assemble and factorise it once
        problem = fd.LinearVariationalProblem(a, L, self._u, bcs=bc, constant_jacobian=True)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=solver_parameters)

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"f": CG(k), "g": CG(k)}``."""
        return {"f": self._V, "g": self._V}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """``CG(k)``."""
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw ``f`` then ``g`` from their Gaussian random fields."""
        return {"f": self.source_field.sample(rng), "g": self.boundary_field.sample(rng)}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for the inputs ``f`` and ``g``; return a new Function on ``CG(k)``."""
        assign_inputs({"f": self._f, "g": self._g}, inputs, self.name)
        # start from zero, not the previous sample: results independent of history
        self._u.dat.zero()
        solve_or_raise(self._solver)
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """``[DirichletBC(V, inputs["g"], markers)]``."""
        return [fd.DirichletBC(self._V, inputs["g"], self.markers)]
