"""Stokes flow through a channel with a random inflow profile (Taylor–Hood P2–P1).

.. math::

    -\\Delta u + \\nabla p = 0, \\quad \\nabla\\cdot u = 0 \\ \\text{in } \\Omega, \\qquad
    u = g\\, d \\ \\text{on } \\Gamma_{in}, \\qquad
    u = 0 \\ \\text{on } \\Gamma_{wall}, \\qquad
    \\partial u/\\partial n - p\\, n = 0 \\ \\text{on the rest (the outlet)}.

The input is the inflow speed ``g``, a scalar ``CG2`` Function; ``d`` is the unit inward
normal of the (straight) inlet.  With ``s ∈ [0, 1]`` the arc-length coordinate along the
inlet, a sample is

.. math::

    g(s) = U\\, 4s(1-s)\\,\\Big(1 + \\sum_{j=1}^{J} a_j P_j(2s-1)\\Big),
    \\qquad a_j \\sim N(0, \\delta^2),

a parabola (vanishing where the inlet meets the walls) times a random low-order Legendre
perturbation.  The field is extended into Ω as constant along ``d`` (only its inlet trace
enters the problem; the extension gives a smooth field to learn from).

The output is the velocity on the (non-mixed) vector ``CG2`` space.  The kinematic
viscosity is 1: with the do-nothing outlet the velocity does not depend on it (the
pressure scales with it).  For a parabolic inflow on a straight channel without
obstacles the solution is Poiseuille flow, which Taylor–Hood reproduces exactly.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

import firedrake as fd

from fe_operators.errors import UnsupportedSpaceError
from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import assign_inputs, solve_or_raise
from fe_operators.problems.base import Problem, bound_params
from fe_operators.problems.registry import register_problem

__all__ = ["StokesProblem", "DEFAULT_SOLVER_PARAMETERS"]

#: sparse LU with pivoting (MUMPS): the saddle-point matrix has a zero pressure block.
#: The operator never changes, so it is factorised once for all samples.
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "mat_type": "aij",
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

WallMarkers = int | Sequence[int]


@register_problem("stokes")
class StokesProblem(Problem):
    """Stokes flow, random inflow profile on ``Γ_in``, no-slip walls, do-nothing outlet.

    See the module docstring for the equations and the inflow sampler.

    Parameters
    ----------
    mesh
        A 2D mesh whose inlet is a straight segment, e.g. the shipped
        ``channel_cylinder``.
    inlet_marker
        Marker of the inlet ``Γ_in`` (default 1, ``inlet`` of ``channel_cylinder``).
    noslip_markers
        Markers of the no-slip walls (default ``(3, 4)``: ``walls`` and ``cylinder``).
        All other boundary parts carry the do-nothing condition.
    max_velocity
        ``U``, the peak speed of the unperturbed parabola (0.3 as in the DFG 2D-1 benchmark).
    n_modes
        ``J``, the number of Legendre modes of the perturbation.
    perturbation
        ``δ``, the standard deviation of each mode's coefficient (0: plain parabola).
    solver_parameters
        PETSc options of the linear solve (default :data:`DEFAULT_SOLVER_PARAMETERS`).

    Attributes
    ----------
    inflow_direction
        ``d``, the unit inward normal of the inlet (numpy array).
    inlet_coordinate
        ``s`` on the ``CG2`` space: the normalised coordinate along the inlet (0 and 1
        at its ends), extended into Ω.

    Raises
    ------
    BoundaryMarkerError
        A marker the mesh does not have.
    UnsupportedSpaceError
        A mesh that is not 2D.
    ValueError
        The inlet is not a straight segment, or bad ``n_modes``/``perturbation``.
    """

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        inlet_marker: int = 1,
        noslip_markers: WallMarkers = (3, 4),
        max_velocity: float = 0.3,
        n_modes: int = 3,
        perturbation: float = 0.3,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        if mesh.geometric_dimension != 2:
            raise UnsupportedSpaceError(
                "StokesProblem needs a 2D mesh (its inflow profile is a curve), "
                f"got a {mesh.geometric_dimension}D mesh"
            )
        check_markers(mesh, inlet_marker)
        check_markers(mesh, noslip_markers)
        if int(n_modes) < 0 or not perturbation >= 0:
            raise ValueError(
                f"expected n_modes >= 0 and perturbation >= 0, got {n_modes!r} and {perturbation!r}"
            )
        solver_parameters = dict(DEFAULT_SOLVER_PARAMETERS if solver_parameters is None else solver_parameters)
        super().__init__(mesh, **bound_params(StokesProblem, locals()))
        self.inlet_marker = int(inlet_marker)
        self.noslip_markers = noslip_markers
        self._V = fd.VectorFunctionSpace(mesh, "CG", 2)
        self._Q = fd.FunctionSpace(mesh, "CG", 1)
        self._G = fd.FunctionSpace(mesh, "CG", 2)
        self._W = self._V * self._Q
        self.inflow_direction, self.inlet_coordinate = self._inlet_geometry()
        self._d = fd.Constant(self.inflow_direction)

        # the solver reads these Functions; solve() assigns the inputs into them
        self._g = fd.Function(self._G, name="inflow")
        self._u_in = fd.Function(self._V, name="u_in")
        self._w = fd.Function(self._W, name="w")
        u, p = fd.TrialFunctions(self._W)
        v, q = fd.TestFunctions(self._W)
        # −Δu in gradient form: its natural condition is the do-nothing ∂u/∂n − pn = 0
        a = (fd.inner(fd.grad(u), fd.grad(v)) - p * fd.div(v) - q * fd.div(u)) * fd.dx
        L = fd.inner(fd.Constant((0.0, 0.0)), v) * fd.dx
        bcs = [fd.DirichletBC(self._W.sub(0), self._u_in, self.inlet_marker),
               fd.DirichletBC(self._W.sub(0), fd.Constant((0.0, 0.0)), noslip_markers)]
        # only the boundary values change between samples: factorise once
        problem = fd.LinearVariationalProblem(a, L, self._w, bcs=bcs, constant_jacobian=True)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=solver_parameters)

    def _inlet_geometry(self) -> tuple[np.ndarray, fd.Function]:
        """Inward normal of the inlet and the normalised inlet coordinate ``s`` on CG2."""
        X = fd.Function(fd.VectorFunctionSpace(self.mesh, "CG", 2)).interpolate(
            fd.SpatialCoordinate(self.mesh)).dat.data_ro
        nodes = fd.DirichletBC(self._G, 0.0, self.inlet_marker).nodes
        pts = X[nodes]
        centre = pts.mean(axis=0)
        vt = np.linalg.svd(pts - centre, full_matrices=False)[2]
        rough = vt[0] * np.sign(vt[0][np.argmax(np.abs(vt[0]))])  # a fixed orientation
        # the chord between the end points: exact for an axis-aligned inlet, so that d·g
        # reproduces g without round-off
        ends = pts[np.argmin(pts @ rough)], pts[np.argmax(pts @ rough)]
        tangent = (ends[1] - ends[0]) / np.linalg.norm(ends[1] - ends[0])
        normal = np.array([-tangent[1], tangent[0]])
        proj = (X - centre) @ tangent
        t = proj[nodes]  # the same numbers as in s below: s is exactly 0 and 1 at the ends
        bend = np.abs((pts - centre) @ normal).max()
        if bend > 1e-8 * np.ptp(t):
            raise ValueError(
                f"the inlet (marker {self.inlet_marker}) must be a straight segment; its points "
                f"deviate from a line by {bend:.3g} over a length {np.ptp(t):.3g}"
            )
        # inward: pointing from the inlet towards the mesh's interior
        if normal @ (X.mean(axis=0) - centre) < 0:
            normal = -normal
        s = np.clip((proj - t.min()) / (t.max() - t.min()), 0.0, 1.0)
        return normal, fd.Function(self._G, val=s, name="s")

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"inflow": CG2}`` (scalar: the speed along the inward normal)."""
        return {"inflow": self._G}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """Vector ``CG2`` (the velocity)."""
        return self._V

    @property
    def mixed_space(self) -> fd.FunctionSpace:
        """The Taylor–Hood space ``CG2² × CG1`` of the solve."""
        return self._W

    def inflow_profile(self, coefficients: Sequence[float]) -> fd.Function:
        """``g = U 4s(1−s)(1 + Σ_j a_j P_j(2s−1))`` on CG2 for Legendre coefficients ``a_1 … a_J``."""
        s = self.inlet_coordinate.dat.data_ro
        series = np.polynomial.legendre.legval(2 * s - 1, np.concatenate([[1.0], coefficients]))
        return fd.Function(self._G, val=self.params["max_velocity"] * 4 * s * (1 - s) * series,
                           name="inflow")

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw the ``J`` Legendre coefficients and return the inflow speed ``g``."""
        coefficients = self.params["perturbation"] * rng.standard_normal(self.params["n_modes"])
        return {"inflow": self.inflow_profile(coefficients)}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for the inflow speed ``inputs["inflow"]``; return the velocity (a new Function)."""
        assign_inputs({"inflow": self._g}, inputs, self.name)
        self._u_in.interpolate(self._d * self._g)
        # Firedrake solves A δ = b − A u_prev: start from zero so that a sample's
        # solution is bitwise independent of the sample solved before it
        self._w.zero()
        solve_or_raise(self._solver)
        return fd.Function(self._V, name="u").assign(self._w.subfunctions[0])

    def solve_mixed(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """As :meth:`solve`, but return ``(u, p)`` on :attr:`mixed_space` (a new Function)."""
        self.solve(inputs)
        return self._w.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """Inflow ``u = g d`` on the inlet and ``u = 0`` on the no-slip walls.

        The inflow is the UFL expression ``d g`` (Firedrake interpolates it as
        :meth:`solve` does), so :meth:`dirichlet_map` reads it as a linear map of ``g``.
        """
        return [fd.DirichletBC(self._V, self._d * inputs["inflow"], self.inlet_marker),
                fd.DirichletBC(self._V, fd.Constant((0.0, 0.0)), self.noslip_markers)]
