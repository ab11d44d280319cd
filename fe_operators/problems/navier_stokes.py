"""Unsteady incompressible Navier–Stokes flow past a cylinder in a channel (DFG geometry).

.. math::

    \\partial_t u + (u\\cdot\\nabla) u - \\nu \\Delta u + \\nabla p = 0, \\quad
    \\nabla\\cdot u = 0 \\ \\text{in } \\Omega, \\qquad
    u = U(y)\\, e_x \\ \\text{on } \\Gamma_{in}, \\qquad
    u = 0 \\ \\text{on the walls and the cylinder}, \\qquad
    \\nu\\, \\partial_n u - p\\, n = 0 \\ \\text{on } \\Gamma_{out},

with density ρ = 1, the parabolic inflow ``U(y) = 4 U_max y (H − y) / H²`` (H = 0.41 the
channel height) and the do-nothing outflow (the natural condition of the gradient form
``ν ∇u : ∇v`` used here).  The sampled parameter is the Reynolds number
``Re = Ū D / ν`` with the mean inflow velocity ``Ū = 2 U_max / 3`` and the cylinder
diameter D = 0.1, so ``U_max = 1.5 Re ν / D``; ν = 1e-3 by default (DFG 2D-2:
Re = 100, U_max = 1.5).  A state is the Taylor–Hood pair ``(u, p)`` on
``CG2² × CG1`` (:class:`~fe_operators.problems.timedep.TimeDependentProblem`).

Time scheme
-----------
BDF2 with a linearly extrapolated advecting velocity (a semi-implicit, "Oseen" scheme):

.. math::

    \\frac{3u^{n+1} - 4u^n + u^{n-1}}{2\\Delta t}
    + (u^*\\cdot\\nabla) u^{n+1} - \\nu\\Delta u^{n+1} + \\nabla p^{n+1} = 0, \\quad
    \\nabla\\cdot u^{n+1} = 0, \\qquad u^* = 2u^n - u^{n-1},

and BDF1 with ``u^* = u^n`` for the first step of a trajectory (one step of first order
does not spoil the global second order).  Why this scheme: it is second order, A-stable
in its implicit part and, unlike explicit convection, free of a convective CFL limit on
the small cells around the cylinder; unlike Crank–Nicolson with Newton it needs one
linear solve per step, not one per Newton iteration; and the pressure is that of the
new time level (no half-step pressure), so a stored state is a consistent ``(u, p)``.

Linear solver: the Oseen matrix changes with ``u^*`` at every step, but slowly.  Each
step is solved by right-preconditioned GMRES (relative tolerance
:data:`DEFAULT_SOLVER_PARAMETERS` ``ksp_rtol``, from the extrapolated initial guess
``2(u, p)^n − (u, p)^{n−1}``) preconditioned by a sparse LU factorisation (MUMPS) of
an earlier step's matrix, which is refactorised when a solve needs more than
``refactor_iterations`` iterations, when the time-derivative coefficient changes
(BDF1 → BDF2) and at the first step of every trajectory.  So a trajectory is a
deterministic function of its parameters and initial state, independent of what the
solver did before; a step costs one assembly, a few triangular solves and, now and
then, a factorisation (instead of a factorisation every step).

Forces
------
Drag and lift by the volume-integral (test-function) method: with ``φ`` the ``CG2``
function equal to 1 on the cylinder's nodes and 0 at all others, the force on the
cylinder in direction ``e`` is minus the discrete momentum residual tested with
``φ e``,

.. math::

    F\\cdot e = -\\Big[\\int_\\Omega \\Big(\\frac{3u^{n+1} - 4u^n + u^{n-1}}{2\\Delta t}
    + (u^*\\cdot\\nabla)u^{n+1}\\Big)\\cdot\\varphi e
    + \\nu \\nabla u^{n+1} : \\nabla(\\varphi e) - p^{n+1}\\, \\nabla\\cdot(\\varphi e)\\Big],

(the residual of the scheme that produced the state; for a steady state the steady
residual).  It equals ``−∫_S (ν ∂_n u − p n)·e ds`` for smooth solutions, depends only
on ``φ``'s values on the cylinder (the discrete equations hold for every test function
that vanishes there) and converges faster than the surface integral, which differentiates
the discrete velocity on the boundary.  Coefficients ``c_D = 2 F_D / (ρ Ū² D)``,
``c_L = 2 F_L / (ρ Ū² D)``.  Check: the steady DFG 2D-1 case (Re = 20) gives
``c_D = 5.5782``, ``c_L = 0.010604`` on ``dfg_mesh(r=1)`` (references 5.57954 and
0.010619; the surface integral gives 5.5706).

Initial state
-------------
:meth:`NavierStokesCylinder.initial_state` is the steady, symmetric Navier–Stokes
solution (unstable at the Reynolds numbers of the family), computed by Newton's method
from the Stokes solution, plus an antisymmetric perturbation: the velocity of one vortex,
``curl ψ`` with ``ψ = A exp(−|x − x_v|² / σ²)`` centred 2D behind the cylinder on its
axis, ``σ = D/2``, scaled so that its largest speed is ``perturbation · Ū``
(default 1) and set to the exact values on the Dirichlet boundary.  The vortex has the
symmetry of the shedding mode (``u_x`` odd, ``u_y`` even about the axis), so shedding
grows from it at once instead of from round-off; no inflow ramp is needed.  At Re = 100
the lift oscillation is periodic to 1e-3 after about 4 time units (12 periods) with the
default, against about 6 with ``perturbation = 0.2``; the limit cycle does not depend on
it.  Spin-up steps
(:meth:`~fe_operators.problems.timedep.TimeDependentProblem.trajectory`) then skip the
transient.

Boundary markers default to those of the shipped ``channel_cylinder`` mesh and of
:func:`fe_operators.meshes.dfg.dfg_mesh`: 1 inlet, 2 outlet, 3 walls, 4 cylinder.

Validation
----------
:func:`fe_operators.problems.dfg_benchmark.dfg_2d2` runs the DFG 2D-2 benchmark (``tests/test_navier_stokes.py``, marked
slow).  Measured on ``dfg_mesh(r=1)`` (46,716 DOFs), over 3 periods of the periodic
state (values of the limit cycle, reached to 1e-3 by t = 4):

=========  ========  ==========  ==========
dt         St        max c_D     max c_L
=========  ========  ==========  ==========
1/400      0.3022    3.2292      0.9908
1/800      0.3019    3.2270      0.9869
→ 0        0.3018    3.2263      0.9856
=========  ========  ==========  ==========

(the last row by Richardson extrapolation for the second-order scheme).  Meshes of 90k
and 105k DOFs change these by less than 5e-4 at dt = 1/400, so the space error is
small; the lift's maximum is the sensitive number: at dt = 1/400 it lies 0.0008 above the
benchmark's lower bound 0.99, at dt = 1/800 and in the limit slightly below it, while
St and max c_D stay inside their windows (0.295–0.305, 3.22–3.24).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import firedrake as fd
from mpi4py import MPI

from fe_operators.errors import SolveError, UnsupportedSpaceError
from fe_operators.fem.bcs import check_markers
from fe_operators.fem.divergence import discrete_divergence, divergence_ratio
from fe_operators.problems._common import json_markers
from fe_operators.problems.registry import register_problem
from fe_operators.problems.timedep import TimeDependentProblem

__all__ = ["DEFAULT_SOLVER_PARAMETERS", "NavierStokesCylinder", "STEADY_SOLVER_PARAMETERS"]

#: one time step: GMRES on the true residual, preconditioned by a (lagged) MUMPS LU;
#: ``snes_lag_preconditioner: -2`` (build once, then reuse) leaves refactorising to the problem
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "snes_type": "ksponly",
    "snes_lag_preconditioner": -2,
    "mat_type": "aij",
    "ksp_type": "gmres",
    "ksp_pc_side": "right",
    "ksp_gmres_restart": 100,
    "ksp_rtol": 1e-6,
    "ksp_atol": 1e-13,
    "ksp_max_it": 100,
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

#: the steady state: Newton with a sparse LU (MUMPS) per iteration
STEADY_SOLVER_PARAMETERS: dict[str, Any] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "basic",
    "snes_rtol": 1e-10,
    "snes_atol": 1e-12,
    "snes_max_it": 30,
    "mat_type": "aij",
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "mumps",
}

Markers = int | Sequence[int]


@register_problem("navier_stokes")
class NavierStokesCylinder(TimeDependentProblem):
    """Flow past a cylinder in a channel; the parameter is the Reynolds number ``Re``.

    See the module docstring for the equations, the scheme, the forces and the initial
    state.

    Parameters
    ----------
    mesh
        A 2D mesh of a channel ``[0, L] × [0, H]`` with an obstacle, e.g.
        :func:`fe_operators.meshes.dfg.dfg_mesh` or the shipped ``channel_cylinder``.
    dt
        The time step (default 1/400: 132 steps per shedding period at Re = 100, about
        66 at Re = 200).
    reynolds_range
        ``(low, high)``: :meth:`sample_parameters` draws ``Re`` uniformly from it.
    viscosity
        ``ν`` (default 1e-3).
    diameter
        ``D``, the length of the Reynolds number (default 0.1).
    channel_height
        ``H`` of the inflow profile (default 0.41); the inlet must be the segment
        ``x = const, 0 ≤ y ≤ H``.
    inlet_marker, wall_markers, cylinder_marker
        Boundary markers (defaults 1, 3, 4); every other boundary part is a do-nothing
        outflow.  Walls and cylinder are no-slip; forces are computed on the cylinder.
    perturbation
        Largest speed of the initial vortex relative to ``Ū`` (0: none).
    refactor_iterations
        Refactorise the LU preconditioner after a step that took more GMRES iterations
        than this.
    solver_parameters
        PETSc options of a time step (default :data:`DEFAULT_SOLVER_PARAMETERS`).  Keep
        ``snes_lag_preconditioner: -2`` with a Krylov method (the problem then decides
        when to refactorise), or give ``snes_lag_preconditioner: 1`` (PETSc's default)
        for a new preconditioner at every step; ``ksp_type: preonly`` with a lagged LU
        would solve with an earlier step's matrix.

    Attributes
    ----------
    stats
        Counters since construction: ``steps``, ``iterations`` (GMRES, summed),
        ``factorisations``.

    Raises
    ------
    UnsupportedSpaceError
        The mesh is not 2D.
    BoundaryMarkerError
        A marker the mesh does not have.
    ValueError
        Bad numbers, or an inlet that is not the segment ``x = const, 0 ≤ y ≤ H``.
    """

    name = "navier_stokes"
    history = 1
    diagnostic_fields = (1,)  # the pressure: determined by the velocity (rollouts predict it)

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        dt: float = 1 / 400,
        reynolds_range: Sequence[float] = (80.0, 200.0),
        viscosity: float = 1e-3,
        diameter: float = 0.1,
        channel_height: float = 0.41,
        inlet_marker: int = 1,
        wall_markers: Markers = 3,
        cylinder_marker: int = 4,
        perturbation: float = 1.0,
        refactor_iterations: int = 4,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        if mesh.geometric_dimension != 2:
            raise UnsupportedSpaceError(
                f"NavierStokesCylinder needs a 2D mesh, got a {mesh.geometric_dimension}D mesh")
        for m in (inlet_marker, wall_markers, cylinder_marker):
            check_markers(mesh, m)
        low, high = (float(r) for r in reynolds_range)
        if not (0 < low <= high < math.inf):
            raise ValueError(f"expected 0 < low <= high for reynolds_range, got {reynolds_range!r}")
        for key, value in (("viscosity", viscosity), ("diameter", diameter),
                           ("channel_height", channel_height)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"expected a positive {key}, got {value!r}")
        if not (math.isfinite(perturbation) and perturbation >= 0):
            raise ValueError(f"expected perturbation >= 0, got {perturbation!r}")
        if int(refactor_iterations) < 1:
            raise ValueError(f"expected refactor_iterations >= 1, got {refactor_iterations!r}")
        solver_parameters = dict(DEFAULT_SOLVER_PARAMETERS if solver_parameters is None
                                 else solver_parameters)
        super().__init__(
            mesh, dt, reynolds_range=[low, high], viscosity=float(viscosity),
            diameter=float(diameter), channel_height=float(channel_height),
            inlet_marker=int(inlet_marker), wall_markers=json_markers(wall_markers),
            cylinder_marker=int(cylinder_marker), perturbation=float(perturbation),
            refactor_iterations=int(refactor_iterations), solver_parameters=solver_parameters,
        )
        self.nu, self.diameter, self.height = float(viscosity), float(diameter), float(channel_height)
        self.inlet_marker, self.cylinder_marker = int(inlet_marker), int(cylinder_marker)
        walls = [int(m) for m in np.atleast_1d(wall_markers)]
        self.noslip_markers = tuple(walls + [self.cylinder_marker])
        self.stats = {"steps": 0, "iterations": 0, "factorisations": 0}

        self._V = fd.VectorFunctionSpace(mesh, "CG", 2)
        self._Q = fd.FunctionSpace(mesh, "CG", 1)
        self._W = self._V * self._Q
        self._check_inlet()

        self._umax = fd.Constant(0.0)
        self._w = fd.Function(self._W, name="state")      # the new state (the unknown)
        self._w1 = fd.Function(self._W, name="previous")  # time level n
        self._w2 = fd.Function(self._W, name="older")     # time level n - 1
        self._c0, self._c1, self._c2 = fd.Constant(0.0), fd.Constant(0.0), fd.Constant(0.0)
        self._e1, self._e2 = fd.Constant(1.0), fd.Constant(0.0)
        u, p = fd.split(self._w)
        u1, u2 = fd.split(self._w1)[0], fd.split(self._w2)[0]
        v, q = fd.TestFunctions(self._W)
        ustar = self._e1 * u1 + self._e2 * u2
        nu = fd.Constant(self.nu)

        def momentum(test: Any, advecting: Any, transient: bool) -> Any:
            form = (fd.inner(fd.dot(fd.grad(u), advecting), test)
                    + nu * fd.inner(fd.grad(u), fd.grad(test)) - p * fd.div(test)) * fd.dx
            if transient:
                form += fd.inner(self._c0 * u + self._c1 * u1 + self._c2 * u2, test) * fd.dx
            return form

        F = momentum(v, ustar, True) - q * fd.div(u) * fd.dx
        bcs = self._bcs(self._W.sub(0), self._umax)
        problem = fd.NonlinearVariationalProblem(F, self._w, bcs=bcs, J=fd.derivative(F, self._w))
        self._solver = fd.NonlinearVariationalSolver(problem, solver_parameters=solver_parameters)
        self._factored_c0: float | None = None
        self._refactor = True

        # the steady problem (for the initial state and steady forces), built on first use
        self._F_steady = momentum(v, u, False) - q * fd.div(u) * fd.dx
        self._bcs_steady = bcs
        self._steady_solver: fd.NonlinearVariationalSolver | None = None
        self._stokes_solver: fd.LinearVariationalSolver | None = None

        # forces: minus the momentum residual tested with φ e_x and φ e_y
        phi = fd.Function(fd.FunctionSpace(mesh, "CG", 2), name="phi")
        fd.DirichletBC(phi.function_space(), 1.0, self.cylinder_marker).apply(phi)
        self._force_forms = {
            transient: tuple(-momentum(phi * fd.as_vector(e), ustar if transient else u, transient)
                             for e in ((1.0, 0.0), (0.0, 1.0)))
            for transient in (True, False)
        }
        n = fd.FacetNormal(mesh)
        traction = nu * fd.dot(fd.grad(u), n) - p * n
        ds_cyl = fd.ds(self.cylinder_marker)
        self._surface_forms = tuple(-traction[i] * ds_cyl for i in range(2))

    # -------------------------------------------------------------- contract
    @property
    def state_space(self) -> fd.FunctionSpace:
        """The Taylor–Hood space ``CG2² × CG1`` of ``(u, p)``."""
        return self._W

    @property
    def velocity_space(self) -> fd.FunctionSpace:
        """Vector ``CG2``, the velocity part of :attr:`state_space`."""
        return self._V

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """``("Re",)``."""
        return ("Re",)

    @property
    def solver_parameters(self) -> dict[str, Any]:
        """``{"step": options of a time step, "steady": options of the steady Newton solve}``."""
        return {"step": dict(self._solver.parameters), "steady": dict(STEADY_SOLVER_PARAMETERS)}

    def sample_parameters(self, rng: np.random.Generator) -> dict[str, float]:
        """``{"Re": Re}`` with ``Re`` uniform in ``reynolds_range``."""
        low, high = self.params["reynolds_range"]
        return {"Re": float(rng.uniform(low, high))}

    def check_parameters(self, params: Mapping[str, float]) -> dict[str, float]:
        """As the base class, and ``Re > 0``."""
        out = super().check_parameters(params)
        if out["Re"] <= 0:
            raise ValueError(f"{self.name}: expected Re > 0, got {out['Re']!r}")
        return out

    def mean_velocity(self, params: Mapping[str, float]) -> float:
        """``Ū = Re ν / D``."""
        return self.check_parameters(params)["Re"] * self.nu / self.diameter

    def max_velocity(self, params: Mapping[str, float]) -> float:
        """``U_max = 1.5 Ū``, the peak of the inflow parabola."""
        return 1.5 * self.mean_velocity(params)

    def output_bcs(self, params: Mapping[str, float]) -> list[fd.DirichletBC]:
        """Parabolic inflow on the inlet, ``u = 0`` on walls and cylinder (on ``W.sub(0)``).

        A stepped state has exactly (bitwise) these values on these nodes.
        """
        return self._bcs(self._W.sub(0), fd.Constant(self.max_velocity(params)))

    def initial_state(self, params: Mapping[str, float]) -> fd.Function:
        """The steady state plus the antisymmetric vortex (see the module docstring)."""
        params = self.check_parameters(params)
        state = self.steady_state(params)
        amplitude = self.params["perturbation"] * self.mean_velocity(params)
        if amplitude > 0:
            x = fd.SpatialCoordinate(self.mesh)
            centre = fd.as_vector(self._vortex_centre())
            sigma = self.diameter / 2
            r2 = fd.inner(x - centre, x - centre) / sigma**2
            # |curl ψ| of ψ = A exp(-r²/σ²) peaks at r = σ/√2 with 2A/σ · e^{-1/2}/√2
            A = amplitude * sigma / (math.sqrt(2) * math.exp(-0.5))
            psi_grad = -2 * A * fd.exp(-r2) * (x - centre) / sigma**2
            vortex = fd.Function(self._V).interpolate(fd.as_vector((psi_grad[1], -psi_grad[0])))
            u = state.subfunctions[0]
            u.dat.data[...] += vortex.dat.data_ro
            for bc in self.output_bcs(params):
                bc.apply(state)
        return state

    def step(self, state: fd.Function, params: Mapping[str, float],
             previous: Sequence[fd.Function] = ()) -> fd.Function:
        """One BDF2 step (BDF1 without ``previous``); return the new ``(u, p)``.

        Raises
        ------
        SolveError
            GMRES did not converge, even after refactorising the preconditioner.
        """
        params = self.check_parameters(params)
        self._umax.assign(self.max_velocity(params))
        self._w1.assign(state)
        if previous:
            self._w2.assign(previous[0])
            coefficients = (1.5, -2.0, 0.5, 2.0, -1.0)
            # initial guess: the extrapolation 2 w^n - w^{n-1}
            self._w.assign(2 * self._w1 - self._w2)
        else:
            self._w2.assign(state)
            coefficients = (1.0, -1.0, 0.0, 1.0, 0.0)
            self._w.assign(self._w1)
            self._refactor = True  # a trajectory starts: independent of earlier solves
        c0, c1, c2, e1, e2 = coefficients
        for const, value in ((self._c0, c0 / self.dt), (self._c1, c1 / self.dt),
                             (self._c2, c2 / self.dt), (self._e1, e1), (self._e2, e2)):
            const.assign(value)
        if self._factored_c0 != c0:
            self._refactor = True
        self._solve()
        self._factored_c0 = c0
        self.stats["steps"] += 1
        out = self._w.copy(deepcopy=True)
        out.rename("state")
        return out

    def _solve(self) -> None:
        """Solve a step, refactorising first if asked and once more if GMRES fails."""
        ksp = self._solver.snes.getKSP()
        guess = self._w.copy(deepcopy=True)
        for attempt in range(2):
            if self._refactor:
                ksp.getPC().reset()
                self.stats["factorisations"] += 1
            try:
                self._solver.solve()
            except fd.ConvergenceError as exc:
                self.stats["iterations"] += ksp.getIterationNumber()
                if attempt == 0 and not self._refactor:
                    self._refactor = True
                    self._w.assign(guess)
                    continue
                raise SolveError(ksp.getConvergedReason(), detail=" ".join(str(exc).split()),
                                 solver="KSP") from exc
            its = ksp.getIterationNumber()
            self.stats["iterations"] += its
            self._refactor = its > self.params["refactor_iterations"]
            return

    # -------------------------------------------------------------- steady states
    def stokes_state(self, params: Mapping[str, float]) -> fd.Function:
        """The Stokes solution (no convection) with this inflow, as ``(u, p)`` (a new Function)."""
        params = self.check_parameters(params)
        if self._stokes_solver is None:
            u, p = fd.TrialFunctions(self._W)
            v, q = fd.TestFunctions(self._W)
            a = (self.nu * fd.inner(fd.grad(u), fd.grad(v)) - p * fd.div(v) - q * fd.div(u)) * fd.dx
            L = fd.inner(fd.Constant((0.0, 0.0)), v) * fd.dx
            self._stokes_w = fd.Function(self._W)
            problem = fd.LinearVariationalProblem(a, L, self._stokes_w, bcs=self._bcs_steady,
                                                  constant_jacobian=True)
            self._stokes_solver = fd.LinearVariationalSolver(problem, solver_parameters={
                k: v for k, v in STEADY_SOLVER_PARAMETERS.items() if not k.startswith("snes")})
        self._umax.assign(self.max_velocity(params))
        self._stokes_w.zero()
        self._stokes_solver.solve()
        return self._stokes_w.copy(deepcopy=True)

    def steady_state(self, params: Mapping[str, float]) -> fd.Function:
        """The steady Navier–Stokes solution by Newton's method from the Stokes solution.

        Continuation in ``Re`` (halving the step) if Newton fails from Stokes: each try
        starts from the last converged state, or from the Stokes solution of the tried
        inflow (Stokes is linear in it) before any; a start from a state of a larger
        inflow diverges (ν is fixed, so its velocities are too fast for the tried ``Re``).

        Raises
        ------
        SolveError
            Newton did not converge even with continuation.
        """
        params = self.check_parameters(params)
        if self._steady_solver is None:
            problem = fd.NonlinearVariationalProblem(self._F_steady, self._w, bcs=self._bcs_steady)
            self._steady_solver = fd.NonlinearVariationalSolver(
                problem, solver_parameters=STEADY_SOLVER_PARAMETERS)
        target = params["Re"]
        stokes = self.stokes_state({"Re": target})
        converged = None
        reached, trial = 0.0, target
        while True:
            if converged is None:
                self._w.assign(stokes)
                self._w *= trial / target
            else:
                self._w.assign(converged)
            self._umax.assign(self.max_velocity({"Re": trial}))
            try:
                self._steady_solver.solve()
            except fd.ConvergenceError as exc:
                if trial - reached < target / 64:
                    snes = self._steady_solver.snes
                    raise SolveError(snes.getConvergedReason(), detail=" ".join(str(exc).split()),
                                     solver="SNES") from exc
                trial = reached + (trial - reached) / 2
                continue
            if trial == target:
                return self._w.copy(deepcopy=True)
            converged = self._w.copy(deepcopy=True)
            reached, trial = trial, target

    # -------------------------------------------------------------- forces
    def force_coefficients(self, states: Sequence[fd.Function], params: Mapping[str, float],
                           dt: float | None = None) -> tuple[float, float]:
        """``(c_D, c_L)`` of a state by the volume-integral method.

        Parameters
        ----------
        states
            The state alone (a steady state: the steady residual), or the state and the
            one before it (a BDF1 step), or the state and the two before it (a BDF2
            step); as :meth:`trajectory` passes them to its callback.
        params
            The trajectory's parameters (for ``Ū``).
        dt
            Time between the states (default: the solver's step), e.g. of every ``k``-th state.
        """
        params = self.check_parameters(params)
        if not 1 <= len(states) <= 3:
            raise ValueError(f"expected 1 to 3 states, got {len(states)}")
        self._umax.assign(self.max_velocity(params))
        self._w.assign(states[0])
        if len(states) == 1:
            forms = self._force_forms[False]
        else:
            forms = self._force_forms[True]
            self._w1.assign(states[1])
            self._w2.assign(states[2] if len(states) == 3 else states[1])
            c0, c1, c2, e1, e2 = ((1.5, -2.0, 0.5, 2.0, -1.0) if len(states) == 3
                                  else (1.0, -1.0, 0.0, 1.0, 0.0))
            h = self.dt if dt is None else float(dt)
            for const, value in ((self._c0, c0 / h), (self._c1, c1 / h), (self._c2, c2 / h),
                                 (self._e1, e1), (self._e2, e2)):
                const.assign(value)
        scale = 2.0 / (self.mean_velocity(params) ** 2 * self.diameter)
        return tuple(scale * float(fd.assemble(f)) for f in forms)  # type: ignore[return-value]

    def surface_force_coefficients(self, state: fd.Function, params: Mapping[str, float]
                                   ) -> tuple[float, float]:
        """``(c_D, c_L)`` from the surface integral ``−∫_S (ν ∂_n u − p n) ds`` (less accurate)."""
        self._w.assign(state)
        scale = 2.0 / (self.mean_velocity(params) ** 2 * self.diameter)
        return tuple(scale * float(fd.assemble(f)) for f in self._surface_forms)  # type: ignore[return-value]

    def divergence_ratio(self, state: fd.Function) -> float:
        """``‖div u‖_L2 / ‖∇u‖_L2`` of a state's velocity (:func:`fe_operators.fem.divergence.divergence_ratio`).

        Taylor–Hood velocities are not pointwise divergence-free: this is the
        discretisation's level (about 3e-2 on ``dfg_mesh(r=0.5)``, decreasing with ``h²``
        for smooth flows), not a solver tolerance.  See :meth:`discrete_divergence`.
        """
        return divergence_ratio(state.subfunctions[0])

    def discrete_divergence(self, state: fd.Function) -> float:
        """The discrete divergence ``(∫ q_i div u)_i`` relative to ``(∫ q_i |∇u|)_i`` (2-norms).

        ``q_i`` the ``CG1`` pressure basis: the continuity equation the scheme solves,
        so this is round-off for a stepped or steady state (the divergence block of the
        Oseen matrix does not change, so the lagged LU preconditioner solves it exactly).
        """
        return discrete_divergence(state.subfunctions[0], self._Q)

    # -------------------------------------------------------------- helpers
    def _bcs(self, space: fd.FunctionSpace, umax: fd.Constant) -> list[fd.DirichletBC]:
        """Inflow parabola with peak ``umax`` and no-slip, on a velocity space."""
        y = fd.SpatialCoordinate(self.mesh)[1]
        H = self.height
        inflow = fd.as_vector((4 * umax * y * (H - y) / H**2, 0.0))
        return [fd.DirichletBC(space, inflow, self.inlet_marker),
                fd.DirichletBC(space, fd.Constant((0.0, 0.0)), self.noslip_markers)]

    def _check_inlet(self) -> None:
        """Raise ValueError unless the inlet is the segment ``x = const, 0 ≤ y ≤ H``."""
        X = fd.Function(self._V).interpolate(fd.SpatialCoordinate(self.mesh)).dat.data_ro
        pts = X[fd.DirichletBC(self._V, 0.0, self.inlet_marker).nodes]
        if len(pts) == 0:  # another process holds the inlet
            return
        H, tol = self.height, 1e-8 * self.height
        if np.ptp(pts[:, 0]) > tol or pts[:, 1].min() < -tol or pts[:, 1].max() > H + tol:
            raise ValueError(
                f"the inlet (marker {self.inlet_marker}) must be the segment x = const, "
                f"0 <= y <= {H:g}; its nodes span x in [{pts[:, 0].min():.4g}, "
                f"{pts[:, 0].max():.4g}], y in [{pts[:, 1].min():.4g}, {pts[:, 1].max():.4g}]")

    def _vortex_centre(self) -> tuple[float, float]:
        """Two diameters behind the cylinder's centre (its nodes' bounding-box centre)."""
        X = fd.Function(self._V).interpolate(fd.SpatialCoordinate(self.mesh)).dat.data_ro
        pts = X[fd.DirichletBC(self._V, 0.0, self.cylinder_marker).nodes]
        lo = self.mesh.comm.allreduce(pts.min(axis=0) if len(pts) else np.full(2, np.inf),
                                      op=MPI.MIN)
        hi = self.mesh.comm.allreduce(pts.max(axis=0) if len(pts) else np.full(2, -np.inf),
                                      op=MPI.MAX)
        centre = (lo + hi) / 2
        return float(centre[0] + 2 * self.diameter), float(centre[1])
