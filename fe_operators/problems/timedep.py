"""The contract of time-dependent problem families: parameters and an initial state → states.

A *time-dependent problem* is a mesh, a state space, a fixed time step ``dt``, a few
scalar parameters drawn by a sampler, and a reusable Firedrake solver that advances a
state by one step.  It is the unsteady counterpart of
:class:`~fe_operators.problems.base.Problem`, and deliberately as small:

* :attr:`TimeDependentProblem.state_space` — the space of one state (a plain or mixed
  Firedrake space, e.g. Taylor–Hood velocity and pressure),
* :attr:`TimeDependentProblem.parameter_names` and
  :meth:`TimeDependentProblem.sample_parameters` — the scalar parameters of one
  trajectory (``{"Re": 123.4}``), drawn from a numpy ``Generator``,
* :meth:`TimeDependentProblem.initial_state` — the state a trajectory starts from,
* :meth:`TimeDependentProblem.step` — one time step of size :attr:`dt`, with solver
  structures built once and reused (the cost of a step includes its assembly),
* :meth:`TimeDependentProblem.trajectory` — spin-up, then states at fixed steps as a
  ``(n_stored, n_dofs)`` float64 array,
* :meth:`TimeDependentProblem.output_bcs` — the Dirichlet conditions every state
  satisfies (for an exact lifting of the boundary data by a surrogate),
* :meth:`TimeDependentProblem.description` — JSON-able family name and parameters.

Multistep schemes (BDF2, …) need earlier states besides the current one: a family says
how many in :attr:`TimeDependentProblem.history`, and :meth:`step` takes them as
``previous`` (most recent first).  With fewer than :attr:`history` earlier states (the
first steps of a trajectory) the scheme starts at lower order.  :meth:`trajectory`
keeps that history itself, so a caller only sees states.

Nothing here knows about datasets: storing trajectories (sample × step × DOFs) is the
data generator's business.  The arrays hold the process's owned DOFs of the state, in
the order of :meth:`state_to_array` (the sub-spaces of a mixed space one after the other,
the components of a vector space interleaved per node, as in ``Function.dat``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import firedrake as fd

__all__ = ["StepCallback", "TimeDependentProblem"]

#: ``callback(k, states)`` after step ``k`` (1-based, spin-up included); ``states`` is
#: the new state followed by the states the step was computed from, most recent first
#: (at most :attr:`TimeDependentProblem.history` ``+ 2`` states in all)
StepCallback = Callable[[int, Sequence[fd.Function]], None]


class TimeDependentProblem(abc.ABC):
    """A family of time-dependent PDE problems on one mesh, stepped with a fixed ``dt``.

    Subclasses set :attr:`name` and :attr:`history`, build spaces, forms and a reusable
    solver in ``__init__``, and implement :attr:`state_space`, :attr:`parameter_names`,
    :meth:`sample_parameters`, :meth:`initial_state`, :meth:`step` and (when the states
    carry Dirichlet conditions) :meth:`output_bcs`.

    Parameters
    ----------
    mesh
        The Firedrake mesh.
    dt
        The time step (a positive finite number).
    **params
        Family-specific parameters (documented by each subclass); they must be JSON-able.

    Raises
    ------
    ValueError
        ``dt`` is not a positive finite number.
    """

    #: registry name of the family, e.g. ``"navier_stokes"``
    name: str = ""

    #: number of states before the current one that :meth:`step` uses (0: one-step)
    history: int = 0

    #: indices of the state's sub-spaces that the equations determine at each time rather
    #: than evolve (no time derivative: the pressure of incompressible flow); rollout
    #: surrogates predict them from the evolved fields (:mod:`fe_operators.models.rollout`)
    diagnostic_fields: tuple[int, ...] = ()

    def __init__(self, mesh: fd.MeshGeometry, dt: float, **params: Any) -> None:
        dt = float(dt)
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"expected a positive time step dt, got {dt!r}")
        self.mesh = mesh
        self.dt = dt
        self.params: dict[str, Any] = {"dt": dt, **params}

    # -------------------------------------------------------------- spaces and parameters
    @property
    @abc.abstractmethod
    def state_space(self) -> fd.FunctionSpace:
        """The space of one state (plain or mixed)."""

    @property
    @abc.abstractmethod
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the scalar parameters of a trajectory, in a fixed order."""

    @abc.abstractmethod
    def sample_parameters(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw the parameters of one trajectory (keys :attr:`parameter_names`)."""

    def check_parameters(self, params: Mapping[str, float]) -> dict[str, float]:
        """``params`` as a dict of finite floats with exactly the keys :attr:`parameter_names`.

        Raises
        ------
        KeyError
            A missing or unknown parameter (the message lists the expected names).
        ValueError
            A value that is not a finite number.
        """
        names = tuple(self.parameter_names)
        missing, unknown = set(names) - set(params), set(params) - set(names)
        if missing or unknown:
            raise KeyError(
                f"{self.name}: expected the parameters {list(names)}, got {sorted(params)}"
            )
        out: dict[str, float] = {}
        for key in names:
            try:
                value = float(params[key])
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{self.name}: parameter {key!r} must be a finite number, "
                                 f"got {params[key]!r}")
            out[key] = value
        return out

    # -------------------------------------------------------------- stepping
    @abc.abstractmethod
    def initial_state(self, params: Mapping[str, float]) -> fd.Function:
        """The state a trajectory with these parameters starts from (a new Function)."""

    @abc.abstractmethod
    def step(self, state: fd.Function, params: Mapping[str, float],
             previous: Sequence[fd.Function] = ()) -> fd.Function:
        """Advance ``state`` by one time step :attr:`dt`; return a new Function.

        Parameters
        ----------
        state
            The state at time ``t``, on :attr:`state_space`.
        params
            The trajectory's parameters.
        previous
            The states at ``t - dt``, ``t - 2 dt``, … (most recent first; at most
            :attr:`history` are used).  Fewer than :attr:`history`: the scheme starts
            at lower order.  Ignored by one-step schemes.

        Raises
        ------
        SolveError
            The solver did not converge.
        """

    def output_bcs(self, params: Mapping[str, float]) -> list[fd.DirichletBC]:
        """Dirichlet conditions on :attr:`state_space` that every stepped state satisfies.

        Default: none.  The values :meth:`step` returns on these conditions' nodes are
        exactly (bitwise) the conditions' values for the same parameters.
        """
        return []

    def trajectory(self, params: Mapping[str, float], n_steps: int, store_every: int = 1,
                   spinup_steps: int = 0, initial: fd.Function | None = None,
                   callback: StepCallback | None = None) -> np.ndarray:
        """Spin up, then step ``n_steps`` times and return the stored states.

        Starting from ``initial`` (default :meth:`initial_state`), the solver takes
        ``spinup_steps`` steps that are not stored; the state reached is the first stored
        one, ``s_0``, followed by ``s_m, s_2m, …`` (``m = store_every``) up to
        ``s_{n_steps}``.

        Parameters
        ----------
        params
            The trajectory's parameters (keys :attr:`parameter_names`).
        n_steps
            Steps after the spin-up (``>= 0``; a multiple of ``store_every``).
        store_every
            Keep every ``store_every``-th state (``>= 1``).
        spinup_steps
            Steps taken before ``s_0`` (``>= 0``).
        initial
            The state to start from (default: :meth:`initial_state` of ``params``).
        callback
            Called as ``callback(k, states)`` after every step ``k = 1, 2, …`` (spin-up
            included), ``states`` being the new state followed by the states the step
            was computed from (the current one and up to :attr:`history` earlier ones),
            most recent first.

        Returns
        -------
        numpy.ndarray
            ``(n_steps // store_every + 1, n_dofs)`` float64, rows in the order of
            :meth:`state_to_array`.

        Raises
        ------
        ValueError
            Bad step counts.
        SolveError
            A step did not converge.
        """
        n_steps, store_every, spinup_steps = int(n_steps), int(store_every), int(spinup_steps)
        if n_steps < 0 or spinup_steps < 0 or store_every < 1 or n_steps % store_every:
            raise ValueError(
                "expected n_steps >= 0 a multiple of store_every >= 1 and spinup_steps >= 0, "
                f"got n_steps={n_steps}, store_every={store_every}, spinup_steps={spinup_steps}"
            )
        params = self.check_parameters(params)
        state = self.initial_state(params) if initial is None else initial
        states: list[fd.Function] = [state]
        out = np.empty((n_steps // store_every + 1, self.n_dofs), dtype=np.float64)
        if spinup_steps == 0:
            out[0] = self.state_to_array(state)
        for k in range(1, spinup_steps + n_steps + 1):
            new = self.step(states[0], params, states[1:])
            if callback is not None:
                callback(k, (new, *states))
            states = [new, *states[: self.history]]
            j = k - spinup_steps
            if j >= 0 and j % store_every == 0:
                out[j // store_every] = self.state_to_array(new)
        return out

    # -------------------------------------------------------------- arrays
    @property
    def n_dofs(self) -> int:
        """Number of (owned) DOFs of a state: the length of :meth:`state_to_array`."""
        return sum(s.dat.data_ro.size for s in fd.Function(self.state_space).subfunctions)

    def state_to_array(self, state: fd.Function) -> np.ndarray:
        """The owned DOF values of a state as a flat float64 array (a copy)."""
        return np.concatenate([s.dat.data_ro.reshape(-1) for s in state.subfunctions]
                              ).astype(np.float64, copy=False)

    def array_to_state(self, array: np.ndarray) -> fd.Function:
        """A new Function on :attr:`state_space` from a flat array of :meth:`state_to_array`.

        Raises
        ------
        ValueError
            ``array`` has the wrong length.
        """
        array = np.asarray(array, dtype=np.float64).reshape(-1)
        out = fd.Function(self.state_space)
        sizes = [s.dat.data_ro.size for s in out.subfunctions]
        if array.size != sum(sizes):
            raise ValueError(f"expected {sum(sizes)} values for a state, got {array.size}")
        start = 0
        for sub, size in zip(out.subfunctions, sizes):
            sub.dat.data_wo[...] = array[start:start + size].reshape(sub.dat.data_ro.shape)
            start += size
        return out

    # -------------------------------------------------------------- helpers
    @property
    def solver_parameters(self) -> dict[str, Any] | None:
        """The PETSc options a step really uses, Firedrake's defaults included.

        As :attr:`fe_operators.problems.base.Problem.solver_parameters`: read from the
        Firedrake variational solvers held as attributes (``{attribute: options}`` with
        several), ``None`` when there are none; for the provenance of stored data.
        """
        solvers = {k: v for k, v in vars(self).items()
                   if isinstance(v, fd.NonlinearVariationalSolver)}
        if not solvers:
            return None
        if len(solvers) == 1:
            return dict(next(iter(solvers.values())).parameters)
        return {k: dict(v.parameters) for k, v in sorted(solvers.items())}

    def description(self) -> dict[str, Any]:
        """JSON-able description: family name, parameters (``dt`` included) and parameter names."""
        return {"problem": self.name, "params": dict(self.params),
                "parameter_names": list(self.parameter_names)}
