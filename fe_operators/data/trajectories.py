"""Trajectories of a time-dependent family in memory: what a rollout surrogate trains on.

:class:`TrajectoryData` is the interface between the data side (generation and the HDF5
reader of trajectory datasets) and the model side (rollout surrogates, their training and
evaluation): arrays of states ``(n_samples, n_stored, n_dofs)`` in the order of
:meth:`fe_operators.problems.timedep.TimeDependentProblem.state_to_array`, with the
parameters of each trajectory and the time between stored states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["TrajectoryData"]


@dataclasses.dataclass(frozen=True)
class TrajectoryData:
    """Stored trajectories of one time-dependent family on one mesh.

    Attributes
    ----------
    states
        ``(n_samples, n_stored, n_dofs)`` float64: ``states[i, j]`` is trajectory ``i`` at
        stored time ``j`` (``j = 0`` is the first stored state, after the spin-up).
    params
        ``(n_samples, n_params)`` float64: the parameters of each trajectory, columns in the
        order of :attr:`param_names`.
    param_names
        The family's :attr:`~fe_operators.problems.timedep.TimeDependentProblem.parameter_names`.
    dt
        Time between two stored states (the solver's step times ``store_every``).
    problem
        The family's :meth:`~fe_operators.problems.timedep.TimeDependentProblem.description`.
    """

    states: np.ndarray
    params: np.ndarray
    param_names: Sequence[str]
    dt: float
    problem: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        states, params = np.asarray(self.states), np.asarray(self.params)
        if states.ndim != 3:
            raise ValueError(f"expected states of shape (n_samples, n_stored, n_dofs), got {states.shape}")
        if params.shape != (states.shape[0], len(self.param_names)):
            raise ValueError(f"expected params of shape {(states.shape[0], len(self.param_names))}, "
                             f"got {params.shape}")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"expected a positive finite dt, got {self.dt}")

    @property
    def n_samples(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_stored(self) -> int:
        return int(self.states.shape[1])

    @property
    def n_dofs(self) -> int:
        return int(self.states.shape[2])

    @property
    def times(self) -> np.ndarray:
        """``(n_stored,)``: times of the stored states, from 0 at the first."""
        return self.dt * np.arange(self.n_stored)

    def subset(self, index: Sequence[int] | np.ndarray) -> "TrajectoryData":
        """The trajectories ``index`` (e.g. a train/validation split)."""
        idx = np.asarray(index, dtype=np.int64)
        return dataclasses.replace(self, states=self.states[idx], params=self.params[idx])
