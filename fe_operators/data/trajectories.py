"""Trajectories of a time-dependent family in memory: what a rollout surrogate trains on.

:class:`TrajectoryData` is the interface between the data side (generation and the HDF5
reader of trajectory datasets) and the model side (rollout surrogates, their training and
evaluation): arrays of states ``(n_samples, n_stored, n_dofs)`` in the order of
:meth:`fe_operators.problems.timedep.TimeDependentProblem.state_to_array`, with the
parameters of each trajectory and the time between stored states.

Trajectory files
----------------
``fe-operators generate`` with a time-dependent family
(:class:`~fe_operators.problems.timedep.TimeDependentProblem`) writes a dataset file of
kind ``"trajectories"`` (:mod:`fe_operators.data.trajectory_writer`), with the journal,
resuming, provenance, per-sample digests, full-disk handling and MPI ensemble of the
steady files (:mod:`fe_operators.data.generation`)::

    /                              Firedrake CheckpointFile: the mesh and the numbering
                                   probe of the state space (at each DOF its position in
                                   a state array)
    /fe_operators                  attrs: format, format_version, kind = "trajectories",
                                   provenance (JSON: problem, params, seed, mesh, time =
                                   {n_steps, store_every, spinup_steps, dt}, numbering,
                                   solver options, description, versions, runs),
                                   param_names (JSON), mesh_name, n_samples, n_stored,
                                   n_dofs, n_done, complete
    /fe_operators/params           float64 (N, n_params), columns in param_names order
    /fe_operators/states           float64 (N, n_stored, n_dofs), n_stored =
                                   n_steps / store_every + 1; rows in the order of
                                   ``state_to_array``; HDF5 chunks of one trajectory's steps
    /fe_operators/digests          uint8 (N, 2, 16): per trajectory the digests of its
                                   params and its states (attr fields ["params", "states"])
    /fe_operators/done             uint8 (N,)
    /fe_operators/time_per_sample  float64 (N,): seconds per trajectory (spin-up included)
    /fe_operators/spaces/state     attrs: element, subspaces (JSON: element, n_nodes,
                                   block_size of each), numbering_hash, checkpoint_name

Trajectory ``i`` uses the parameters ``problem.sample_parameters(default_rng([seed, i]))``
and equals ``problem.trajectory(params, n_steps, store_every, spinup_steps)`` bitwise.
:func:`read_trajectories` reads a file into a :class:`TrajectoryData`, verifying every
trajectory against its digests; :class:`TrajectoryFile` is the reader behind it (and
rebuilds the generating problem with a checked DOF numbering, or the stored mesh and state
space alone, :meth:`TrajectoryFile.rebuild`).  The steady reader
(:class:`~fe_operators.data.h5.FEFile`) refuses a trajectory file, and this one a steady
file, each naming the reader to use.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from fe_operators.data.digests import DIGEST_SIZE, check_digests
from fe_operators.data.header import DAMAGE, damaged_file_error, read_metadata
from fe_operators.data.layout import GROUP, KIND_TRAJECTORIES, TRAJECTORY_FIELDS
from fe_operators.errors import DatasetFileError, NumberingError
from fe_operators.limits import check_allocation, format_bytes

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.problems.timedep import TimeDependentProblem

__all__ = ["TrajectoryData", "TrajectoryFile", "TrajectorySpaces", "read_trajectories"]


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

    def every(self, k: int) -> "TrajectoryData":
        """Every ``k``-th stored state from the first (a view), ``dt`` times ``k``.

        A rollout model trained on it takes steps of ``k dt``: ``k`` times fewer steps over
        the same time, so ``k`` times fewer for its one-step errors to accumulate in.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"expected a positive integer k, got {k!r}")
        return dataclasses.replace(self, states=self.states[:, ::int(k)], dt=self.dt * int(k))


@dataclasses.dataclass
class TrajectorySpaces:
    """Mesh and state space rebuilt from a trajectory file, with the stored→rebuilt DOF map.

    Attributes
    ----------
    mesh
        The mesh stored in the file (on one process).
    state_space
        The rebuilt state space (plain or mixed).
    permutation
        ``(n_dofs,)`` integers: ``rebuilt_state = stored_state[..., permutation]``, in the
        flat layout of ``state_to_array`` (sub-spaces one after the other, vector
        components interleaved per node).
    """

    mesh: Any
    state_space: Any
    permutation: np.ndarray

    def to_function(self, state: np.ndarray) -> Any:
        """A stored state ``(n_dofs,)`` as a new Function on :attr:`state_space`."""
        import firedrake as fd

        flat = np.asarray(state, dtype=np.float64).reshape(-1)[self.permutation]
        out = fd.Function(self.state_space)
        start = 0
        for sub in out.subfunctions:
            data = sub.dat.data_wo
            data[...] = flat[start:start + data.size].reshape(data.shape)
            start += data.size
        return out


class TrajectoryFile:
    """Read access to a trajectory file (no handle is kept open between calls).

    Parameters
    ----------
    path
        The file, written by ``fe-operators generate`` for a time-dependent family.

    Attributes
    ----------
    path : str
    provenance : dict
        Problem, parameters, seed, mesh spec, time settings, solver options, versions, runs.
    param_names : list of str
    n_samples, n_stored, n_dofs : int
        Rows (trajectories), states per trajectory, DOFs per state.
    done : numpy.ndarray of bool
        Which rows hold valid trajectories.
    times : numpy.ndarray
        Seconds per trajectory (NaN where not done).

    Raises
    ------
    DatasetFileError
        The file is missing, not HDF5, not an fe_operators dataset, a steady dataset (the
        message names the steady reader), of another format version, or damaged.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        read_metadata(self.path, KIND_TRAJECTORIES, self._read_metadata)

    def _read_metadata(self, g: h5py.Group) -> None:
        self.provenance: dict[str, Any] = json.loads(g.attrs["provenance"])
        self.param_names: list[str] = json.loads(g.attrs["param_names"])
        self.mesh_name = str(g.attrs["mesh_name"])
        self.numbering = str(g["spaces/state"].attrs["numbering_hash"])
        self.n_samples = int(g["done"].shape[0])
        self.n_stored, self.n_dofs = (int(n) for n in g["states"].shape[1:])
        want = {"params": (self.n_samples, len(self.param_names)),
                "states": (self.n_samples, self.n_stored, self.n_dofs),
                "digests": (self.n_samples, len(TRAJECTORY_FIELDS), DIGEST_SIZE)}
        got = {k: tuple(g[k].shape) for k in want}
        if got != want or json.loads(g["digests"].attrs["fields"]) != list(TRAJECTORY_FIELDS):
            raise DatasetFileError(
                f"{self.path} is damaged: its arrays have shapes {got}, expected {want}; generate it "
                "again (fe-operators generate ... --overwrite) or restore a good copy"
            )
        self.done: np.ndarray = g["done"][...].astype(bool)
        self.times: np.ndarray = g["time_per_sample"][...]

    # ------------------------------------------------------------------ plain data
    @property
    def complete(self) -> bool:
        """Whether every row holds a valid trajectory."""
        return bool(self.done.all())

    @property
    def mesh_spec(self) -> str:
        """The mesh spec the trajectories were generated on (as :func:`fe_operators.io.load_mesh` reads it)."""
        return str(self.provenance["mesh"])

    @property
    def time_settings(self) -> dict[str, Any]:
        """``{"n_steps", "store_every", "spinup_steps", "dt"}`` of the generating run (``dt``: the solver's step)."""
        return dict(self.provenance["time"])

    @property
    def dt(self) -> float:
        """Time between two stored states: the solver's ``dt`` times ``store_every``."""
        t = self.time_settings
        return float(t["dt"]) * int(t["store_every"])

    def check_indices(self, idx: np.ndarray) -> None:
        """Raise ``IndexError`` unless all ``idx`` are valid, done trajectories."""
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise IndexError(f"trajectory indices must lie in [0, {self.n_samples}), got {idx.min()}..{idx.max()}")
        bad = idx[~self.done[idx]]
        if bad.size:
            raise IndexError(
                f"trajectories {bad[:10].tolist()} of {self.path} are not done (generation incomplete or "
                "failed); rerun `fe-operators generate` with the same settings to complete the file"
            )

    def read(self, indices: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Parameters ``(k, n_params)`` and states ``(k, n_stored, n_dofs)`` of trajectories ``indices``.

        Default: all done ones.  Every trajectory read is checked against its digests.

        Raises
        ------
        IndexError
            An index out of range or not done.
        MemoryLimitError
            The trajectories would not fit in memory.
        DatasetFileError
            The arrays cannot be read back, or a trajectory does not match its digests
            (the message names the file and the trajectory).
        NonFiniteError
            A damaged trajectory holds NaN or infinite values.
        """
        idx = np.flatnonzero(self.done) if indices is None else np.asarray(list(indices), dtype=np.int64)
        self.check_indices(idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        row = 8 * self.n_stored * self.n_dofs
        check_allocation(2 * row * uniq.size, f"{uniq.size} trajectories of {self.path} "
                         f"({format_bytes(row)} each)", fix="read fewer trajectories at a time (indices=...)")
        if uniq.size == 0:
            return (np.empty((0, len(self.param_names))), np.empty((0, self.n_stored, self.n_dofs)))
        sel: Any = slice(int(uniq[0]), int(uniq[-1]) + 1) if uniq[-1] - uniq[0] + 1 == uniq.size else uniq
        try:
            with h5py.File(self.path, "r") as h5:
                g = h5[GROUP]
                params, states, digests = g["params"][sel], g["states"][sel], g["digests"][sel]
        except DAMAGE as exc:
            raise damaged_file_error(self.path, exc, "its trajectory arrays") from exc
        fields = [("params", params), ("states", states)]
        check_digests(self.path, uniq, fields, digests)
        if inverse.size == uniq.size and np.array_equal(inverse, np.arange(uniq.size)):
            return params, states
        return params[inverse], states[inverse]

    def check(self, block: int = 4) -> None:
        """Read every done trajectory, ``block`` at a time, and verify it against its digests."""
        idx = np.flatnonzero(self.done)
        for start in range(0, idx.size, block):
            self.read(idx[start:start + block])

    def data(self, indices: Iterable[int] | None = None) -> TrajectoryData:
        """Trajectories ``indices`` (default: all done ones) as a :class:`TrajectoryData`."""
        params, states = self.read(indices)
        return TrajectoryData(states=states, params=params, param_names=tuple(self.param_names), dt=self.dt,
                              problem=dict(self.provenance.get("description") or {}))

    # ------------------------------------------------------------------ Firedrake side
    def rebuild(self, comm: Any = None) -> TrajectorySpaces:
        """Load the stored mesh and state space with Firedrake and map stored DOFs onto them.

        Needs no mesh file and no problem class: the mesh is the one stored in the file,
        and the state space's numbering probe gives the exact permutation from stored to
        rebuilt DOFs (checked to be a permutation).

        Parameters
        ----------
        comm
            Communicator of the rebuilt mesh; it must have one process (default ``COMM_SELF``).

        Raises
        ------
        DatasetFileError
            The stored mesh or probe cannot be read back (a damaged file).
        NumberingError
            The probe is not a permutation of the state's DOFs.
        """
        import firedrake as fd
        from mpi4py import MPI

        from fe_operators.data.layout import STATE_KEY, checkpoint_name

        comm = MPI.COMM_SELF if comm is None else comm
        if comm.size != 1:
            raise ValueError(f"expected a one-process communicator, got {comm.size} processes")
        try:
            with fd.CheckpointFile(self.path, "r", comm=comm) as cf:
                mesh = cf.load_mesh(self.mesh_name)
                probe = cf.load_function(mesh, checkpoint_name(STATE_KEY))
        except Exception as exc:  # noqa: BLE001 - h5py, PETSc and Firedrake errors alike
            raise damaged_file_error(self.path, exc, "its stored mesh and state space") from exc
        values = np.concatenate([sub.dat.data_ro.reshape(-1) for sub in probe.subfunctions])
        perm = np.rint(values).astype(np.int64)
        if (values.size != self.n_dofs or not np.array_equal(values, perm.astype(np.float64))
                or not np.array_equal(np.sort(perm), np.arange(self.n_dofs))):
            raise NumberingError(f"{self.path}: the stored numbering of the state space does not map onto the "
                                 "rebuilt space one-to-one; the file is damaged or was written by another format")
        return TrajectorySpaces(mesh, probe.function_space(), perm)

    def rebuild_problem(self, comm: Any = None, problem: Any = None, *,
                        solver_parameters: Mapping[str, Any] | None = None) -> TimeDependentProblem:
        """Rebuild the generating problem from the provenance and check its DOF numbering.

        As :meth:`fe_operators.data.h5.FEFile.rebuild_problem`: a registered family is
        built from the registry, a stored ``module:Class`` only when ``problem`` names it;
        stored solver options that select a Python PETSc type are refused.  The stored
        states are then arrays of the rebuilt problem's
        :meth:`~fe_operators.problems.timedep.TimeDependentProblem.array_to_state`.

        Raises
        ------
        DatasetFileError, UsageError
            As :func:`~fe_operators.problems.registry.stored_problem_class`.
        NumberingError
            The rebuilt state space numbers its DOFs differently from the stored data.
        """
        from mpi4py import MPI

        from fe_operators.data.h5 import state_numbering_hash
        from fe_operators.petsc_options import check_stored_options
        from fe_operators.problems.registry import is_time_dependent, load_problem, stored_problem_class

        comm = MPI.COMM_SELF if comm is None else comm
        prov = self.provenance
        cls = stored_problem_class(prov.get("problem"), problem, source=f"the dataset {self.path}")
        if not is_time_dependent(cls):
            raise DatasetFileError(f"{self.path} records the steady problem {prov.get('problem')!r} for its "
                                   "trajectories; the file is damaged: regenerate it")
        params = dict(prov.get("params") or {})
        if solver_parameters is not None:
            params.pop("solver_parameters", None)
        check_stored_options(params, f"the dataset {self.path} (provenance params)")
        if solver_parameters is not None:
            params["solver_parameters"] = dict(solver_parameters)
        rebuilt = load_problem(cls, prov["mesh"], params, comm=comm)
        if state_numbering_hash(rebuilt.state_space) != self.numbering:
            mesh = str(prov["mesh"])
            raise NumberingError(
                f"the problem rebuilt from mesh {mesh[:80]!r} numbers the DOFs of its state space differently "
                f"from {self.path}: the mesh (or Firedrake) changed since the data were generated; restore it, "
                "or generate the data again (fe-operators generate ... --overwrite)"
            )
        return rebuilt


def read_trajectories(path: str | os.PathLike, indices: Iterable[int] | None = None) -> TrajectoryData:
    """Read a trajectory file into a :class:`TrajectoryData`, every trajectory checked against its digests.

    Parameters
    ----------
    path
        The file (``fe-operators generate`` of a time-dependent family).
    indices
        Which trajectories (default: all done ones, in order).

    Returns
    -------
    TrajectoryData
        ``dt`` is the time between stored states, ``problem`` the family's description.

    Raises
    ------
    DatasetFileError
        Not a trajectory file (a steady dataset is named as such), damaged, or a
        trajectory that does not match its digests (named).
    NonFiniteError
        A damaged trajectory holds NaN or infinite values.
    IndexError
        An index out of range or not done.
    """
    return TrajectoryFile(path).data(indices)
