r"""The heat equation with a sampled diffusivity and source: a cheap time-dependent family.

.. math::

    \partial_t u - \kappa \Delta u = f \ \text{in } \Omega, \qquad
    u = g(x, t) \ \text{on } \Gamma_D, \qquad
    \kappa\, \partial_n u = 0 \ \text{on } \partial\Omega \setminus \Gamma_D, \qquad
    u(0) = u_0,

on any mesh, with ``CGk`` states (:class:`~fe_operators.problems.timedep.TimeDependentProblem`).
It is the test and demo family of rollout surrogates: a step costs one small linear solve,
the Dirichlet data live on *part* of the boundary (``dirichlet_markers``) and may depend on
time, and the dynamics are autonomous (a state and the parameters fix the next state)
unless the boundary data oscillate.

Parameters of a trajectory (:attr:`HeatEquation.parameter_names`): the diffusivity
``kappa``, the source amplitude ``amplitude`` and its spatial frequency ``frequency``,

.. math:: f(x) = A \sin(k \pi x_0) \prod_{i \ge 1} \sin(\pi x_i),

each drawn uniformly from its range.  The Dirichlet data are
``g(x, t) = boundary_value · cos(boundary_frequency · t)`` (constant in time for
``boundary_frequency = 0``, the default), the initial state ``u_0 = g(x, 0)``-consistent:
zero in the interior, ``g`` on ``Γ_D``.  For tests with an exact solution, ``source``,
``boundary`` and ``initial`` take UFL callables instead.

Time schemes (``scheme``), both second order:

* ``"crank_nicolson"`` — :math:`\frac{u^{n+1}-u^n}{\Delta t} - \frac{\kappa}{2}\Delta(u^{n+1}+u^n)
  = \frac12 (f^{n+1} + f^n)`;
* ``"bdf2"`` — :math:`\frac{3u^{n+1}-4u^n+u^{n-1}}{2\Delta t} - \kappa\Delta u^{n+1} = f^{n+1}`,
  with one backward-Euler step to start (:attr:`HeatEquation.history` = 1).

One :class:`firedrake.LinearVariationalSolver` is built in ``__init__`` (sparse LU); a step
sets a few Constants and solves.  The family keeps a clock, :attr:`HeatEquation.time` ``= steps_taken · dt``:
:meth:`~HeatEquation.initial_state` and :meth:`~HeatEquation.trajectory` reset it to 0 and
every :meth:`~HeatEquation.step` advances it by one step (time-dependent sources and boundary
data are evaluated on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import firedrake as fd

from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import SPARSE_LU, Markers, json_markers, solve_or_raise
from fe_operators.problems.registry import register_problem
from fe_operators.problems.timedep import StepCallback, TimeDependentProblem

__all__ = ["HeatEquation", "SCHEMES"]

#: time schemes of :class:`HeatEquation`
SCHEMES = ("crank_nicolson", "bdf2")

#: ``source(x, t, params)``: UFL source from the spatial coordinate, the time (a Constant)
#: and the trajectory's parameters as Constants by name
SourceFn = Callable[[Any, fd.Constant, Mapping[str, fd.Constant]], Any]
#: ``boundary(x, t)``: UFL Dirichlet data
BoundaryFn = Callable[[Any, fd.Constant], Any]
#: ``initial(x, params)``: UFL initial state (floats by name)
InitialFn = Callable[[Any, Mapping[str, float]], Any]


def _range(name: str, value: Sequence[float], positive: bool = True) -> list[float]:
    low, high = (float(v) for v in value)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high and (low > 0 or not positive)):
        raise ValueError(f"expected {name} = (low, high) with {'0 < ' if positive else ''}low <= high, "
                         f"got {value!r}")
    return [low, high]


def _callable_or_none(key: str, value: Any) -> Any:
    """A UFL callable, or None for the default (also the string ``"default"`` older descriptions hold)."""
    if value is None or value == "default":
        return None
    if value == "custom":
        raise ValueError(f"heat: this description had a custom {key} (a Python callable), which a description "
                         f"cannot hold; build HeatEquation(..., {key}=<the callable>) yourself")
    if not callable(value):
        raise ValueError(f"expected {key} to be a callable or None, got {value!r}")
    return value


@register_problem("heat")
class HeatEquation(TimeDependentProblem):
    """Heat equation with Dirichlet data on part of the boundary; parameters ``kappa``, ``amplitude``, ``frequency``.

    See the module docstring for the equations and schemes.

    Parameters
    ----------
    mesh
        Any Firedrake mesh (1D to 3D).
    dt
        Time step (default 0.01).
    degree
        Polynomial degree of the ``CG`` state space (1 or 2, default 1).
    scheme
        ``"crank_nicolson"`` (default) or ``"bdf2"``.
    dirichlet_markers
        Boundary markers of ``Γ_D`` (default 1: ``x = 0`` of Firedrake's unit square and
        interval meshes; ``"on_boundary"`` for all of it); the rest is insulated.
    kappa_range, amplitude_range, frequency_range
        Ranges the parameters are drawn from (defaults (0.5, 2), (0.5, 2), (1, 3)).
    boundary_value, boundary_frequency
        ``g = boundary_value · cos(boundary_frequency · t)`` on ``Γ_D`` (defaults 0, 0).
    source, boundary, initial
        UFL callables replacing the default source, boundary data and initial state (for
        manufactured solutions; the description then records ``"custom"``, which cannot be
        rebuilt from a file).  None (or ``"default"``): the defaults.

    Raises
    ------
    ValueError
        Bad degree, scheme or ranges.
    BoundaryMarkerError
        A marker the mesh does not have.
    """

    name = "heat"
    history = 0

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        dt: float = 0.01,
        degree: int = 1,
        scheme: str = "crank_nicolson",
        dirichlet_markers: Markers = 1,
        kappa_range: Sequence[float] = (0.5, 2.0),
        amplitude_range: Sequence[float] = (0.5, 2.0),
        frequency_range: Sequence[float] = (1.0, 3.0),
        boundary_value: float = 0.0,
        boundary_frequency: float = 0.0,
        source: SourceFn | str | None = None,
        boundary: BoundaryFn | str | None = None,
        initial: InitialFn | str | None = None,
    ) -> None:
        source, boundary, initial = (_callable_or_none(k, v) for k, v in
                                     (("source", source), ("boundary", boundary), ("initial", initial)))
        if int(degree) not in (1, 2) or int(degree) != degree:
            raise ValueError(f"expected degree 1 or 2, got {degree!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"expected scheme in {SCHEMES}, got {scheme!r}")
        if not isinstance(dirichlet_markers, str):
            check_markers(mesh, dirichlet_markers)
        for key, value in (("boundary_value", boundary_value), ("boundary_frequency", boundary_frequency)):
            if not math.isfinite(float(value)):
                raise ValueError(f"expected a finite {key}, got {value!r}")
        super().__init__(
            mesh, dt, degree=int(degree), scheme=scheme, dirichlet_markers=json_markers(dirichlet_markers),
            kappa_range=_range("kappa_range", kappa_range),
            amplitude_range=_range("amplitude_range", amplitude_range, positive=False),
            frequency_range=_range("frequency_range", frequency_range, positive=False),
            boundary_value=float(boundary_value), boundary_frequency=float(boundary_frequency),
            # only what the constructor accepts back: callables are recorded as "custom", which
            # a rebuild from a file refuses with a clear message
            **{k: "custom" for k, v in (("source", source), ("boundary", boundary), ("initial", initial))
               if v is not None},
        )
        self.history = 1 if scheme == "bdf2" else 0
        self.steps_taken = 0  # the clock: time = steps_taken * dt (a product, so times are reproducible)
        self._markers = dirichlet_markers
        self._V = fd.FunctionSpace(mesh, "CG", int(degree))
        x = fd.SpatialCoordinate(mesh)
        self._x = x
        self._t_new, self._t_old = fd.Constant(0.0), fd.Constant(0.0)
        self._consts = {name: fd.Constant(1.0) for name in self.parameter_names}
        self._initial = initial

        if source is None:
            def source(x: Any, t: fd.Constant, p: Mapping[str, fd.Constant]) -> Any:
                shape = fd.sin(p["frequency"] * math.pi * x[0])
                for i in range(1, len(x)):
                    shape = shape * fd.sin(math.pi * x[i])
                return p["amplitude"] * shape
        if boundary is None:
            g0, omega = float(boundary_value), float(boundary_frequency)

            def boundary(x: Any, t: fd.Constant) -> Any:
                return fd.Constant(g0) * fd.cos(omega * t)
        self._boundary = boundary

        # c0 u + c1 u^n + c2 u^{n-1} approximates u_t; theta weighs the new level's diffusion
        self._c0, self._c1, self._c2 = fd.Constant(0.0), fd.Constant(0.0), fd.Constant(0.0)
        self._theta = fd.Constant(1.0)
        self._u = fd.Function(self._V, name="state")
        self._u1 = fd.Function(self._V, name="previous")
        self._u2 = fd.Function(self._V, name="older")
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        kappa = self._consts["kappa"]
        theta = self._theta
        f_new, f_old = source(x, self._t_new, self._consts), source(x, self._t_old, self._consts)
        a = (self._c0 * u * v + theta * kappa * fd.inner(fd.grad(u), fd.grad(v))) * fd.dx
        L = (-(self._c1 * self._u1 + self._c2 * self._u2) * v
             - (1 - theta) * kappa * fd.inner(fd.grad(self._u1), fd.grad(v))
             + (theta * f_new + (1 - theta) * f_old) * v) * fd.dx
        self._bcs_new = [fd.DirichletBC(self._V, boundary(x, self._t_new), dirichlet_markers)]
        problem = fd.LinearVariationalProblem(a, L, self._u, bcs=self._bcs_new)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=dict(SPARSE_LU))

    # -------------------------------------------------------------- contract
    @property
    def time(self) -> float:
        """The clock, ``steps_taken * dt``: the time of the state the last :meth:`step` returned."""
        return self.steps_taken * self.dt

    @property
    def state_space(self) -> fd.FunctionSpace:
        """``CGk`` on the mesh."""
        return self._V

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """``("kappa", "amplitude", "frequency")``."""
        return ("kappa", "amplitude", "frequency")

    @property
    def solver_parameters(self) -> dict[str, Any]:
        """The PETSc options of a step."""
        return dict(self._solver.parameters)

    def sample_parameters(self, rng: np.random.Generator) -> dict[str, float]:
        """Each parameter uniform in its range."""
        return {name: float(rng.uniform(*self.params[f"{name}_range"])) for name in self.parameter_names}

    def check_parameters(self, params: Mapping[str, float]) -> dict[str, float]:
        """As the base class, and ``kappa > 0``."""
        out = super().check_parameters(params)
        if out["kappa"] <= 0:
            raise ValueError(f"{self.name}: expected kappa > 0, got {out['kappa']!r}")
        return out

    def output_bcs(self, params: Mapping[str, float], time: float | None = None) -> list[fd.DirichletBC]:
        """``u = g(x, t)`` on ``Γ_D`` at ``time`` (default: the clock :attr:`time`), values fixed.

        A state stepped to ``time`` has exactly (bitwise) these values on these nodes.
        """
        t = fd.Constant(self.time if time is None else float(time))
        g = fd.Function(self._V).interpolate(self._boundary(self._x, t))
        return [fd.DirichletBC(self._V, g, self._markers)]

    def boundary_values(self, params: Mapping[str, float], times: Sequence[float]) -> np.ndarray:
        """Dirichlet data at ``times`` as states: ``(len(times), n_dofs)``, ``g`` on ``Γ_D``, 0 elsewhere.

        What a rollout needs for time-dependent data (the states a trajectory stores at
        these times have exactly these values on ``Γ_D``).
        """
        out = np.zeros((len(times), self.n_dofs))  # times j * dt give the stepped states' values bit for bit
        for j, t in enumerate(times):
            w = fd.Function(self._V)
            for bc in self.output_bcs(params, t):
                bc.apply(w)
            out[j] = self.state_to_array(w)
        return out

    def initial_state(self, params: Mapping[str, float]) -> fd.Function:
        """``u_0`` (zero, or the ``initial`` callable), with ``g(·, 0)`` on ``Γ_D``; resets the clock to 0."""
        params = self.check_parameters(params)
        self.steps_taken = 0
        out = fd.Function(self._V, name="state")
        if self._initial is not None:
            out.interpolate(self._initial(self._x, params))
        for bc in self.output_bcs(params, 0.0):
            bc.apply(out)
        return out

    def trajectory(self, params: Mapping[str, float], n_steps: int, store_every: int = 1,
                   spinup_steps: int = 0, initial: fd.Function | None = None,
                   callback: StepCallback | None = None) -> np.ndarray:
        """As :meth:`TimeDependentProblem.trajectory`, with the clock reset to 0 at the start."""
        self.steps_taken = 0
        return super().trajectory(params, n_steps, store_every, spinup_steps, initial, callback)

    def step(self, state: fd.Function, params: Mapping[str, float],
             previous: Sequence[fd.Function] = ()) -> fd.Function:
        """One step from :attr:`time` to ``time + dt``; return the new state (the clock advances)."""
        params = self.check_parameters(params)
        for name, value in params.items():
            self._consts[name].assign(value)
        dt = self.dt
        bdf2 = self.params["scheme"] == "bdf2"
        if bdf2 and previous:
            c, theta = (1.5 / dt, -2.0 / dt, 0.5 / dt), 1.0
            self._u2.assign(previous[0])
        elif bdf2:
            c, theta = (1.0 / dt, -1.0 / dt, 0.0), 1.0
        else:
            c, theta = (1.0 / dt, -1.0 / dt, 0.0), 0.5
        for const, value in zip((self._c0, self._c1, self._c2, self._theta), (*c, theta)):
            const.assign(value)
        self._u1.assign(state)
        self._t_old.assign(self.time)
        self._t_new.assign((self.steps_taken + 1) * dt)
        solve_or_raise(self._solver)
        self.steps_taken += 1
        out = self._u.copy(deepcopy=True)
        out.rename("state")
        return out
