"""The Helmholtz equation with a random wave speed and an impedance (absorbing) boundary.

.. math::

    -\\Delta u - k(x)^2 u = f \\ \\text{in } \\Omega, \\qquad
    \\frac{\\partial u}{\\partial n} - i k(x)\\, u = 0 \\ \\text{on } \\Gamma_I, \\qquad
    \\frac{\\partial u}{\\partial n} = 0 \\ \\text{on } \\partial\\Omega \\setminus \\Gamma_I,

with ``k(x) = ω / c(x)``.  The input is the wave speed ``c``; the source ``f`` is fixed
(a normalised Gaussian pulse).  The impedance condition is the first-order absorbing
(Sommerfeld) condition for time dependence ``e^{-iωt}``: it lets waves leave the domain
and makes the problem uniquely solvable for every ``ω``, which a real Robin condition
``∂u/∂n + βu = 0`` would not (that problem still has resonances).

Complex arithmetic on a real build
----------------------------------
The Firedrake build is real, so ``u = u_r + i u_i`` is computed as the two-component
real field ``(u_r, u_i)`` on ``VectorFunctionSpace(mesh, "CG", k, dim=2)``.  Testing the
complex weak form with real test functions and splitting real and imaginary parts gives,
for all ``(v_r, v_i)``,

.. math::

    \\int_\\Omega \\nabla u_r\\cdot\\nabla v_r - k^2 u_r v_r
        + \\int_{\\Gamma_I} k\\, u_i v_r = \\int_\\Omega f_r v_r, \\\\
    \\int_\\Omega \\nabla u_i\\cdot\\nabla v_i - k^2 u_i v_i
        - \\int_{\\Gamma_I} k\\, u_r v_i = \\int_\\Omega f_i v_i,

one real, non-symmetric, indefinite system, solved by sparse LU (MUMPS, with pivoting).
The output's DOF tensor is ``(n_nodes, 2)``: component 0 is ``Re u``, component 1 ``Im u``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

import firedrake as fd

from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import COEFFICIENT_SPACES, Markers, assign_inputs, boundary_measure, solve_or_raise
from fe_operators.problems.base import Problem, bound_params
from fe_operators.problems.random_fields import GaussianRandomField
from fe_operators.problems.registry import register_problem

__all__ = ["HelmholtzProblem", "DEFAULT_SOLVER_PARAMETERS"]

#: sparse LU with pivoting: the system is indefinite and non-symmetric, where PETSc's
#: own (non-pivoting) LU may meet a zero pivot
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "mat_type": "aij",
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

@register_problem("helmholtz")
class HelmholtzProblem(Problem):
    """−Δu − (ω/c)²u = f with an impedance boundary; input the wave speed ``c``.

    See the module docstring for the equations and the real/imaginary splitting.

    Parameters
    ----------
    mesh
        Any Firedrake mesh (2D or 3D).
    degree
        Lagrange degree ``k`` of the output ``(Re u, Im u)``.
    omega
        Angular frequency ``ω``; the wavenumber is ``ω/c`` between ``ω/c_max`` and
        ``ω/c_min``.  Keep ``ω h / c_min`` small (about 0.5 for CG1) or the solution is
        dominated by pollution error.
    c_min, c_max
        Range of the wave speed: ``c = c_min + (c_max − c_min)·σ(g)`` with ``σ`` the
        logistic sigmoid and ``g`` a Matérn field, so ``c_min < c < c_max`` everywhere.
    markers
        Boundary ``Γ_I`` carrying the impedance condition: ``"on_boundary"`` (all of ∂Ω)
        or one or several markers; the rest of ∂Ω is sound-hard, ``∂u/∂n = 0``.
    coefficient_space
        Space of the input ``c``: ``"CG1"`` (nodal values) or ``"DG0"`` (one value per
        cell, the CG1 field at the cell centroid).
    length_scale, smoothness, variance
        Matérn parameters of ``g`` (see :class:`GaussianRandomField`; smoothness
        ``None``: ν = 2 − d/2).
    source_center
        Centre ``x₀`` of the source; ``None``: the mesh vertex nearest to the mean of
        the vertices (a point of the mesh even for non-convex domains).
    source_width
        Width ``w`` of the source; ``None``: 5 % of the bounding-box diagonal.
    source_amplitude
        Total strength ``A``: ``f = A (2πw²)^{-d/2} exp(−|x − x₀|²/(2w²))`` (real),
        so ``∫f ≈ A``.
    solver_parameters
        PETSc options of the linear solve (default :data:`DEFAULT_SOLVER_PARAMETERS`).

    Attributes
    ----------
    source
        The fixed source ``(f_r, f_i)``, a Function on :attr:`output_space` read by the
        solver: assigning into it changes every later solve.
    speed_field
        The Gaussian random field ``g``.

    Raises
    ------
    BoundaryMarkerError
        A marker the mesh does not have.
    ValueError
        ``c_min``/``c_max``/``omega`` not positive or out of order, or an unknown
        ``coefficient_space``.
    """

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        degree: int = 1,
        omega: float = 5.0,
        c_min: float = 1.0,
        c_max: float = 2.0,
        markers: Markers = "on_boundary",
        coefficient_space: str = "CG1",
        length_scale: float = 0.3,
        smoothness: float | None = None,
        variance: float = 1.0,
        source_center: Sequence[float] | None = None,
        source_width: float | None = None,
        source_amplitude: float = 1.0,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        check_markers(mesh, markers)
        if not 0 < c_min < c_max:
            raise ValueError(f"expected 0 < c_min < c_max, got c_min={c_min!r}, c_max={c_max!r}")
        if not omega > 0:
            raise ValueError(f"expected omega > 0, got {omega!r}")
        if coefficient_space not in COEFFICIENT_SPACES:
            raise ValueError(
                f"expected coefficient_space in {sorted(COEFFICIENT_SPACES)}, got {coefficient_space!r}"
            )
        dim = mesh.geometric_dimension
        coords = np.asarray(mesh.coordinates.dat.data_ro).reshape(-1, dim)
        if source_center is None:
            mean = coords.mean(axis=0)
            source_center = coords[np.argmin(((coords - mean) ** 2).sum(axis=1))]
        source_center = [float(x) for x in source_center]
        if len(source_center) != dim:
            raise ValueError(f"expected a source_center with {dim} coordinates, got {source_center}")
        if source_width is None:
            source_width = 0.05 * float(np.linalg.norm(coords.max(axis=0) - coords.min(axis=0)))
        smoothness = 2.0 - dim / 2 if smoothness is None else float(smoothness)
        solver_parameters = dict(DEFAULT_SOLVER_PARAMETERS if solver_parameters is None else solver_parameters)
        super().__init__(mesh, **bound_params(HelmholtzProblem, locals()))
        self.markers = markers
        self._CG1 = fd.FunctionSpace(mesh, "CG", 1)
        self._C = fd.FunctionSpace(mesh, *COEFFICIENT_SPACES[coefficient_space])
        self._V = fd.VectorFunctionSpace(mesh, "CG", int(degree), dim=2)
        self.speed_field = GaussianRandomField(self._CG1, length_scale, smoothness, variance)

        x = fd.SpatialCoordinate(mesh)
        r2 = sum((x[i] - source_center[i]) ** 2 for i in range(dim))
        w = float(source_width)
        pulse = float(source_amplitude) * (2 * np.pi * w**2) ** (-dim / 2) * fd.exp(-r2 / (2 * w**2))
        self.source = fd.Function(self._V, name="f").interpolate(fd.as_vector([pulse, 0.0]))

        # the solver reads these Functions; solve() assigns the inputs into them
        self._c = fd.Function(self._C, name="c")
        self._u = fd.Function(self._V, name="u")
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        k = fd.Constant(float(omega)) / self._c
        a = (fd.inner(fd.grad(u), fd.grad(v)) - k**2 * fd.inner(u, v)) * fd.dx
        # −i k u on Γ_I, split: +k u_i in the real row, −k u_r in the imaginary row
        a += k * (u[1] * v[0] - u[0] * v[1]) * boundary_measure(markers)
        L = fd.inner(self.source, v) * fd.dx
        problem = fd.LinearVariationalProblem(a, L, self._u)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=solver_parameters)

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"c": CG1 or DG0}``."""
        return {"c": self._C}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """``VectorFunctionSpace(mesh, "CG", k, dim=2)``: ``(Re u, Im u)``."""
        return self._V

    def wave_speed(self, g: fd.Function) -> fd.Function:
        """The wave speed ``c_min + (c_max − c_min)·σ(g)`` of a CG1 field ``g``, on the input space."""
        c_min, c_max = self.params["c_min"], self.params["c_max"]
        vals = c_min + (c_max - c_min) / (1.0 + np.exp(-np.asarray(g.dat.data_ro)))
        c = fd.Function(self._CG1, val=vals, name="c")
        if self._C == self._CG1:
            return c
        # DG0: the value at the centroid (mean of the vertex values), still in range
        return fd.Function(self._C, name="c").interpolate(c)

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw ``c`` from the sigmoid-transformed Gaussian random field."""
        return {"c": self.wave_speed(self.speed_field.sample(rng))}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for the wave speed ``inputs["c"]``; return ``(Re u, Im u)`` as a new Function."""
        assign_inputs({"c": self._c}, inputs, self.name)
        # Firedrake solves A δ = b − A u_prev: start from zero so that a sample's
        # solution is bitwise independent of the sample solved before it
        self._u.zero()
        solve_or_raise(self._solver)
        return self._u.copy(deepcopy=True)
