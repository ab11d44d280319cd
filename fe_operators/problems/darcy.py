"""Darcy flow with a random piecewise-constant or log-normal permeability.

.. math::

    -\\nabla\\cdot(a \\nabla u) = 1 \\ \\text{in } \\Omega, \\qquad u = 0 \\ \\text{on } \\partial\\Omega,

the benchmark of the FNO and MgNO papers: ``a = a_high`` where a Gaussian random field
``ψ ~ N(0, (−Δ + 9I)^{-2})`` is ≥ 0 and ``a_low`` elsewhere (``a_high = 12``,
``a_low = 3`` as in the FNO paper; its generator script uses 4).  The field here is the
SPDE Matérn field of :mod:`~fe_operators.problems.random_fields` with ``α = 2``,
``κ = 3``; its Neumann conditions make it, on the unit square, the FE counterpart of the
FNO generator's cosine expansion.  That generator drops the constant mode, so by default
the field's spatial mean is subtracted (``zero_mean``); the threshold is scale-free, so
``variance`` only matters for the log-normal variant.

Three coefficients (the input ``"a"``):

* ``"dg0"`` (default): ``a`` in DG0, the field thresholded at cell midpoints;
* ``"cg1"``: ``a`` in CG1 with nodal values in ``{a_low, a_high}`` (the field
  thresholded at vertices, as the FNO data on grid points: on
  ``UnitSquareMesh(64, 64)`` the 65×65 vertex values carry exactly that information);
* ``"lognormal"``: ``a = exp(ψ)`` in CG1 (nodal values).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

import firedrake as fd

from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import SPARSE_CHOLESKY, assign_inputs, solve_or_raise
from fe_operators.problems.base import OperatorForm, Problem, bound_params
from fe_operators.problems.random_fields import GaussianRandomField
from fe_operators.problems.registry import register_problem

__all__ = ["DarcyProblem", "COEFFICIENTS", "DEFAULT_SOLVER_PARAMETERS"]

#: the coefficient variants
COEFFICIENTS = ("dg0", "cg1", "lognormal")

#: sparse direct Cholesky (the operator is SPD).  It changes every sample, so each
#: solve refactorises (the symbolic factorisation is reused: the sparsity is fixed).
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = dict(SPARSE_CHOLESKY)

#: κ = 3 of the FNO field N(0, (−Δ + 9I)^{-2}), as a length scale for ν = 1
FNO_LENGTH_SCALE = math.sqrt(8.0) / 3.0


@register_problem("darcy")
class DarcyProblem(Problem):
    """−∇·(a∇u) = 1, u = 0 on ∂Ω; input the random permeability ``a``.

    Parameters
    ----------
    mesh
        Any Firedrake mesh (2D or 3D).
    coefficient
        ``"dg0"`` (cell-wise threshold), ``"cg1"`` (vertex threshold) or
        ``"lognormal"`` (``exp`` of the field, CG1).
    a_high, a_low
        Values of the thresholded coefficient where the field is ≥ 0 / < 0.
    length_scale
        Matérn length scale of the field; default ``√8/3`` gives ``κ = 3`` for ``ν = 1``
        (the FNO field on the unit square).
    smoothness
        Matérn ``ν`` (``None``: ν = 2 − d/2, i.e. ``α = 2``).
    variance
        Marginal variance of the field (matters only for ``"lognormal"``).
    zero_mean
        Subtract the field's spatial mean ``∫ψ/|Ω|`` before use, as the FNO generator
        drops its constant mode.
    degree
        Lagrange degree of the output.
    markers
        Dirichlet boundary (``"on_boundary"`` or boundary markers); ``u = 0`` there.
    solver_parameters
        PETSc options of the linear solve (default :data:`DEFAULT_SOLVER_PARAMETERS`).

    Raises
    ------
    ValueError
        Unknown ``coefficient``.
    BoundaryMarkerError
        A marker the mesh does not have.
    """

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        coefficient: str = "dg0",
        a_high: float = 12.0,
        a_low: float = 3.0,
        length_scale: float = FNO_LENGTH_SCALE,
        smoothness: float | None = None,
        variance: float = 1.0,
        zero_mean: bool = True,
        degree: int = 1,
        markers: str | int | Sequence[int] = "on_boundary",
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        if coefficient not in COEFFICIENTS:
            raise ValueError(f"expected coefficient in {COEFFICIENTS}, got {coefficient!r}")
        check_markers(mesh, markers)
        smoothness = 2.0 - mesh.geometric_dimension / 2 if smoothness is None else float(smoothness)
        solver_parameters = dict(
            DEFAULT_SOLVER_PARAMETERS if solver_parameters is None else solver_parameters
        )
        super().__init__(mesh, **bound_params(DarcyProblem, locals()))
        self.coefficient = coefficient
        self.a_high, self.a_low = float(a_high), float(a_low)
        self.zero_mean = bool(zero_mean)
        self.markers = markers
        self.field = GaussianRandomField(mesh, length_scale, smoothness, variance, degree=1)
        self._A = fd.FunctionSpace(mesh, "DG", 0) if coefficient == "dg0" else self.field.space
        self._V = fd.FunctionSpace(mesh, "CG", int(degree))
        # ∫ψ dx = w·ψ with w = ∫φ_i dx
        weights = fd.assemble(fd.TestFunction(self.field.space) * fd.dx).dat.data_ro
        self._mean_weights = weights / weights.sum()
        # cell midpoint value of a CG1 field = mean of its vertex values (affine and
        # bilinear cells alike); DG0 DOF of each cell
        self._cell_vertices = self.field.space.cell_node_map().values
        self._cell_dof = self._A.cell_node_map().values[:, 0]
        self._psi = fd.Function(self.field.space)

        self._a = fd.Function(self._A, name="a")
        self._u = fd.Function(self._V, name="u")
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        form = fd.inner(self._a * fd.grad(u), fd.grad(v)) * fd.dx
        rhs = fd.Constant(1.0) * v * fd.dx
        self._bcs = [fd.DirichletBC(self._V, 0.0, markers)]
        problem = fd.LinearVariationalProblem(form, rhs, self._u, bcs=self._bcs)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=solver_parameters)

    def spd_operator(self, inputs: Mapping[str, fd.Function], **overrides: float) -> OperatorForm:
        """``∫ a ∇u·∇v`` with ``inputs["a"]`` and ``u = 0`` on the markers (:meth:`Problem.spd_operator`)."""
        if overrides:
            raise TypeError(f"darcy: no parameter of the operator can be overridden, got {sorted(overrides)}")
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        form = fd.inner(inputs["a"] * fd.grad(u), fd.grad(v)) * fd.dx
        return OperatorForm(form, [fd.DirichletBC(self._V, 0.0, self.markers)])

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"a": DG0}`` (``"dg0"``) or ``{"a": CG1}`` (``"cg1"``, ``"lognormal"``)."""
        return {"a": self._A}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """``CG(degree)``."""
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw the field ``ψ`` and map it to the coefficient ``a``."""
        psi = self.field.sample(rng, out=self._psi).dat.data_ro
        if self.zero_mean:
            psi = psi - self._mean_weights @ psi
        a = fd.Function(self._A, name="a")
        if self.coefficient == "dg0":
            mid = psi[self._cell_vertices].mean(axis=1)
            a.dat.data_wo[self._cell_dof] = np.where(mid >= 0.0, self.a_high, self.a_low)
        elif self.coefficient == "cg1":
            a.dat.data_wo[:] = np.where(psi >= 0.0, self.a_high, self.a_low)
        else:
            a.dat.data_wo[:] = np.exp(psi)
        return {"a": a}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for the coefficient ``inputs["a"]``; return a new Function on ``CG(degree)``."""
        assign_inputs({"a": self._a}, inputs, self.name)
        # start from zero, not the previous sample: results independent of history
        self._u.dat.zero()
        solve_or_raise(self._solver)
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """``[DirichletBC(V, 0, markers)]``."""
        return [fd.DirichletBC(self._V, 0.0, self.markers)]
