"""What a generation run solves and stores: steady samples or trajectories.

The run itself (:mod:`~fe_operators.data.generation`: planning, the ranks' solve loop,
the journal, merging into the file) is the same for both kinds of family; a *source*
adapts one problem to it:

* :class:`SteadySource` — a :class:`~fe_operators.problems.base.Problem`: sample ``i`` is
  its inputs and solution (``problem.sample(seed, i)``), stored in a steady dataset file
  (:mod:`fe_operators.data.h5`);
* :class:`TrajectorySource` — a
  :class:`~fe_operators.problems.timedep.TimeDependentProblem` and the time settings
  (:class:`TimeSettings`): sample ``i`` is the parameters drawn with
  ``default_rng([seed, i])`` and the trajectory
  ``problem.trajectory(params, n_steps, store_every, spinup_steps)``, stored in a
  trajectory file (:mod:`fe_operators.data.trajectories`).

To the journal a sample is named inputs and one output array either way (a trajectory's
input is ``"params"``, its output the ``(n_stored, n_dofs)`` states).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fe_operators.data.h5 import FEFile, numbering_hash, state_numbering_hash
from fe_operators.data.layout import KIND_STEADY, KIND_TRAJECTORIES, STATE_KEY, space_key
from fe_operators.data.trajectories import TrajectoryFile
from fe_operators.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.problems.base import Problem
    from fe_operators.problems.timedep import TimeDependentProblem

__all__ = ["SteadySource", "TimeSettings", "TrajectorySource", "make_source", "source_dof_shape"]


def source_dof_shape(V: Any) -> tuple[int, ...]:
    """The DOF-tensor shape of one sample on space ``V``: ``(n_nodes,)`` or ``(n_nodes, ncomp)``."""
    n = int(V.dof_dset.size)
    return (n,) if V.value_shape == () else (n, int(V.block_size))


def _dofs(f: Any) -> np.ndarray:
    """A copy of ``f``'s DOFs in the DOF-tensor layout (:func:`source_dof_shape`)."""
    return np.array(f.dat.data_ro, dtype=np.float64).reshape(source_dof_shape(f.function_space()))


@dataclasses.dataclass(frozen=True)
class TimeSettings:
    """How a trajectory is stepped and stored (part of a run's settings and provenance).

    Attributes
    ----------
    n_steps
        Steps after the spin-up (a multiple of ``store_every``; ``>= 1``).
    store_every
        Keep every ``store_every``-th state (``>= 1``).
    spinup_steps
        Steps before the first stored state (``>= 0``).

    The time step ``dt`` is the problem's (a family parameter, ``--dt``), recorded with
    these in the provenance.
    """

    n_steps: int
    store_every: int = 1
    spinup_steps: int = 0

    def __post_init__(self) -> None:
        for key, low in (("n_steps", 1), ("store_every", 1), ("spinup_steps", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(key, f"expected an integer >= {low}, got {value!r}")
        if self.n_steps % self.store_every:
            raise ConfigError("n_steps", f"expected a multiple of store_every = {self.store_every}, got "
                                         f"{self.n_steps}")

    @classmethod
    def from_mapping(cls, time: Mapping[str, Any]) -> TimeSettings:
        """From ``{"n_steps": ..., "store_every": ..., "spinup_steps": ...}`` (unknown keys refused)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(time) - set(names))
        if unknown:
            raise ConfigError(unknown[0], f"unknown time setting; the time settings are {', '.join(names)}")
        if "n_steps" not in time:
            raise ConfigError("n_steps", "a time-dependent family needs the number of steps (--steps N)")
        return cls(**dict(time))

    @property
    def n_stored(self) -> int:
        """States stored per trajectory: ``n_steps // store_every + 1``."""
        return self.n_steps // self.store_every + 1


class SteadySource:
    """Steady samples of a :class:`~fe_operators.problems.base.Problem` (inputs -> solution)."""

    kind = KIND_STEADY

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.mesh = problem.mesh
        self.input_names = list(problem.input_spaces)

    def shapes(self) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
        """Per-sample DOF shapes: input name -> shape, and the output's (what journal chunks hold)."""
        return ({n: source_dof_shape(V) for n, V in self.problem.input_spaces.items()},
                source_dof_shape(self.problem.output_space))

    def solve(self, seed: int, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Sample ``index``: input arrays by name and the solution's array."""
        inputs, u = self.problem.sample(seed, index)
        return {n: _dofs(inputs[n]) for n in self.input_names}, _dofs(u)

    def settings(self) -> dict[str, Any]:
        """The settings beyond problem, parameters, seed and mesh that decide the samples."""
        numbering = {space_key(n): numbering_hash(V) for n, V in self.problem.input_spaces.items()}
        numbering[space_key(None)] = numbering_hash(self.problem.output_space)
        return {"numbering": numbering, "inputs": list(self.problem.input_spaces)}

    @staticmethod
    def open(path: str | Path) -> FEFile:
        """The reader of an existing output file of this kind."""
        return FEFile(path)

    def create(self, path: str | Path, provenance: Mapping[str, Any], n_samples: int) -> Any:
        """Create the output file (a :class:`~fe_operators.data.h5_writer.DatasetWriter`)."""
        from fe_operators.data.h5_writer import create_dataset_file

        p = self.problem
        return create_dataset_file(path, p.mesh, p.input_spaces, p.output_space, provenance, n_samples)

    def row_bytes(self) -> int:
        """Bytes of one stored sample's values."""
        inputs, output = self.shapes()
        return sum(8 * math.prod(s) for s in (*inputs.values(), output))

    def description(self) -> dict[str, Any]:
        return self.problem.description()


class TrajectorySource:
    """Trajectories of a :class:`~fe_operators.problems.timedep.TimeDependentProblem`.

    Parameters
    ----------
    problem
        The family on this rank's mesh.
    time
        The time settings.
    """

    kind = KIND_TRAJECTORIES

    def __init__(self, problem: TimeDependentProblem, time: TimeSettings) -> None:
        self.problem = problem
        self.time = time
        self.mesh = problem.mesh
        self.input_names = ["params"]

    def shapes(self) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...]]:
        """Per-trajectory shapes: ``{"params": (n_params,)}`` and ``(n_stored, n_dofs)``."""
        return ({"params": (len(self.problem.parameter_names),)},
                (self.time.n_stored, int(self.problem.n_dofs)))

    def parameters(self, seed: int, index: int) -> dict[str, float]:
        """The parameters of trajectory ``index``: drawn with ``default_rng([seed, index])``."""
        rng = np.random.default_rng([int(seed), int(index)])
        return self.problem.check_parameters(self.problem.sample_parameters(rng))

    def solve(self, seed: int, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Trajectory ``index``: its parameter vector and its ``(n_stored, n_dofs)`` states."""
        params = self.parameters(seed, index)
        t = self.time
        states = self.problem.trajectory(params, t.n_steps, t.store_every, t.spinup_steps)
        vector = np.array([params[k] for k in self.problem.parameter_names], dtype=np.float64)
        return {"params": vector}, states

    def settings(self) -> dict[str, Any]:
        """The settings beyond problem, parameters, seed and mesh: kind, time, numbering, parameter names."""
        return {
            "kind": KIND_TRAJECTORIES,
            "time": {**dataclasses.asdict(self.time), "dt": float(self.problem.dt)},
            "numbering": {STATE_KEY: state_numbering_hash(self.problem.state_space)},
            "inputs": list(self.problem.parameter_names),
        }

    @staticmethod
    def open(path: str | Path) -> TrajectoryFile:
        """The reader of an existing output file of this kind."""
        return TrajectoryFile(path)

    def create(self, path: str | Path, provenance: Mapping[str, Any], n_samples: int) -> Any:
        """Create the output file (a :class:`~fe_operators.data.trajectory_writer.TrajectoryWriter`)."""
        from fe_operators.data.trajectory_writer import create_trajectory_file

        return create_trajectory_file(path, self.problem, self.time.n_stored, provenance, n_samples)

    def row_bytes(self) -> int:
        """Bytes of one stored trajectory's values."""
        inputs, output = self.shapes()
        return 8 * (inputs["params"][0] + math.prod(output))

    def description(self) -> dict[str, Any]:
        return self.problem.description()


def make_source(problem: Any, time: Mapping[str, Any] | TimeSettings | None = None) -> SteadySource | TrajectorySource:
    """The source of a problem: trajectories for a time-dependent family (``time`` required), else steady.

    Raises
    ------
    ConfigError
        Time settings for a steady family, none (or bad ones) for a time-dependent one.
    """
    from fe_operators.problems.registry import is_time_dependent

    if not is_time_dependent(problem):
        if time:
            key = next(iter(time)) if isinstance(time, Mapping) else "n_steps"
            name = getattr(problem, "name", "") or type(problem).__name__
            raise ConfigError(key, f"time settings apply to time-dependent families only; {name!r} is steady")
        return SteadySource(problem)
    if time is None:
        time = {}
    settings = time if isinstance(time, TimeSettings) else TimeSettings.from_mapping(time)
    return TrajectorySource(problem, settings)
