"""The DFG 2D-2 benchmark (Schäfer & Turek, 1996) for :class:`~fe_operators.problems.navier_stokes.NavierStokesCylinder`.

Re = 100 (U_max = 1.5) in the 2.2 × 0.41 channel: the Strouhal number from interpolated
zero crossings of the lift, and the largest drag and lift coefficients over the last
periods, to be compared with the reference ranges St 0.295–0.305, c_D,max 3.22–3.24,
c_L,max 0.99–1.01.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import firedrake as fd

from fe_operators.problems.navier_stokes import NavierStokesCylinder
from fe_operators.problems.timedep import StepCallback

__all__ = ["DFGResult", "dfg_2d2", "strouhal_from_lift"]


def strouhal_from_lift(times: np.ndarray, lift: np.ndarray, diameter: float,
                       mean_velocity: float, periods: int = 3) -> float:
    """Strouhal number ``St = f D / Ū`` from the last ``periods`` periods of the lift.

    ``f`` is the inverse of the mean period between upward zero crossings of
    ``c_L − mean(c_L)``, each crossing time linearly interpolated between samples.

    Raises
    ------
    ValueError
        Fewer than ``periods`` full periods in the signal.
    """
    t, c = np.asarray(times, dtype=float), np.asarray(lift, dtype=float)
    c = c - 0.5 * (c.max() + c.min())
    up = np.nonzero((c[:-1] < 0) & (c[1:] >= 0))[0]
    crossings = t[up] - c[up] * (t[up + 1] - t[up]) / (c[up + 1] - c[up])
    if len(crossings) < periods + 1:
        raise ValueError(f"expected at least {periods} periods of the lift, "
                         f"found {max(len(crossings) - 1, 0)}")
    period = (crossings[-1] - crossings[-1 - periods]) / periods
    return diameter / (period * mean_velocity)


@dataclass
class DFGResult:
    """The DFG 2D-2 quantities of a run, and what the run cost."""

    strouhal: float
    max_drag: float
    max_lift: float
    n_dofs: int
    dt: float
    steps: int
    wall_s: float
    cpu_s: float
    stats: dict[str, int] = field(default_factory=dict)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    drag: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    lift: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


def dfg_2d2(mesh: fd.MeshGeometry, dt: float = 1 / 400, end_time: float = 4.5,
            periods: int = 3, callback: StepCallback | None = None,
            **kwargs: Any) -> DFGResult:
    """Run the DFG 2D-2 benchmark (Re = 100, U_max = 1.5) and measure St, max c_D, max c_L.

    The flow starts from :meth:`NavierStokesCylinder.initial_state`; the maxima and the
    Strouhal number are taken over the last ``periods`` full periods of the lift before
    ``end_time`` (the Strouhal number from interpolated zero crossings,
    :func:`strouhal_from_lift`).  The defaults (dt = 1/400, 4.5 time units, 1800 steps)
    reach the periodic state; the docstring of :mod:`fe_operators.problems.navier_stokes`
    gives the values and their dependence on ``dt``.

    Parameters
    ----------
    mesh
        A DFG-geometry mesh (:func:`fe_operators.meshes.dfg.dfg_mesh`).
    dt, end_time
        Time step and the time simulated.
    periods
        Periods the measurements use (at the end of the run).
    callback
        Passed on to :meth:`~fe_operators.problems.timedep.TimeDependentProblem.trajectory`.
    **kwargs
        More arguments of :class:`NavierStokesCylinder`.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    problem = NavierStokesCylinder(mesh, dt=dt, **kwargs)
    params = {"Re": 100.0}
    steps = int(round(end_time / dt))
    forces = np.zeros((steps, 2))

    def record(k: int, states: Sequence[fd.Function]) -> None:
        forces[k - 1] = problem.force_coefficients(states, params)
        if callback is not None:
            callback(k, states)

    problem.trajectory(params, n_steps=0, spinup_steps=steps, callback=record)
    times = dt * np.arange(1, steps + 1)
    Ubar = problem.mean_velocity(params)
    st = strouhal_from_lift(times, forces[:, 1], problem.diameter, Ubar, periods)
    # the window of the last `periods` periods
    window = times >= times[-1] - periods * problem.diameter / (st * Ubar)
    return DFGResult(
        strouhal=st, max_drag=float(forces[window, 0].max()), max_lift=float(forces[window, 1].max()),
        n_dofs=problem.state_space.dim(), dt=dt, steps=steps,
        wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu,
        stats=dict(problem.stats), times=times, drag=forces[:, 0], lift=forces[:, 1],
    )
