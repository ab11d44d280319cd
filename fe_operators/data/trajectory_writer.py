"""Writing a trajectory file: the layout of :mod:`fe_operators.data.trajectories` created,
trajectories written with their digests.

The file is a dataset file of kind ``"trajectories"``: the same group, the same
Firedrake ``CheckpointFile`` part (the mesh and a numbering probe of the state space),
the same ``digests``, ``done`` and ``time_per_sample`` datasets and the same safe
discarding on a full disk as the steady files of :mod:`fe_operators.data.h5_writer`,
with ``params`` and ``states`` in place of ``inputs/<name>`` and ``output``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from fe_operators.data.digests import sample_digests
from fe_operators.data.disk import disk_full, no_space, no_space_error
from fe_operators.data.h5 import state_numbering_hash
from fe_operators.data.h5_writer import DatasetWriter, create_row_records, discard_file, save_checkpoint
from fe_operators.data.layout import (
    FORMAT,
    FORMAT_VERSION,
    GROUP,
    KIND_TRAJECTORIES,
    STATE_KEY,
    TRAJECTORY_FIELDS,
    checkpoint_name,
)

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.data.trajectories import TrajectoryFile
    from fe_operators.problems.timedep import TimeDependentProblem

__all__ = ["TrajectoryWriter", "create_trajectory_file", "state_probe", "state_space_info"]

#: HDF5 chunk size of the ``states`` dataset (a chunk is part of one trajectory)
STATE_CHUNK_BYTES = 1 << 20


def state_space_info(problem: TimeDependentProblem) -> list[dict[str, Any]]:
    """The sub-spaces of a state, in the order of ``state_to_array``: element, nodes, block size."""
    import firedrake as fd

    out = []
    for sub in fd.Function(problem.state_space).subfunctions:
        V = sub.function_space()
        out.append({"element": str(V.ufl_element()), "n_nodes": int(V.dof_dset.size),
                    "block_size": int(V.block_size)})
    return out


def state_probe(problem: TimeDependentProblem) -> Any:
    """The numbering probe of the state space: at each DOF its position in ``state_to_array``."""
    import firedrake as fd

    f = fd.Function(problem.state_space, name=checkpoint_name(STATE_KEY))
    start = 0
    for sub in f.subfunctions:
        data = sub.dat.data_wo
        sub.dat.data_wo[...] = np.arange(start, start + data.size, dtype=np.float64).reshape(data.shape)
        start += data.size
    return f


def create_trajectory_file(path: str | os.PathLike, problem: TimeDependentProblem, n_stored: int,
                           provenance: Mapping[str, Any], n_samples: int) -> TrajectoryWriter:
    """Create a new trajectory file with mesh, state space and empty trajectory arrays.

    Parameters
    ----------
    path
        The file to create (truncated if it exists).
    problem
        The generating process's problem (its mesh must live on one process).
    n_stored
        States stored per trajectory.
    provenance
        JSON-able provenance, stored as the ``provenance`` attribute.
    n_samples
        Number of trajectories (rows).

    Returns
    -------
    TrajectoryWriter
        An open writer (use it as a context manager).
    """
    mesh = problem.mesh
    if mesh.comm.size != 1:
        raise ValueError(f"expected a mesh on one process, got one on {mesh.comm.size} processes")
    save_checkpoint(path, mesh, [state_probe(problem)])
    n_dofs, n_params = int(problem.n_dofs), len(problem.parameter_names)
    info, digest = state_space_info(problem), state_numbering_hash(problem.state_space)
    h5 = h5py.File(path, "a", rdcc_nbytes=0)  # no chunk cache: see create_dataset_file
    try:
        g = h5.create_group(GROUP)
        g.attrs["format"] = FORMAT
        g.attrs["format_version"] = FORMAT_VERSION
        g.attrs["kind"] = KIND_TRAJECTORIES
        g.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
        g.attrs["param_names"] = json.dumps(list(problem.parameter_names))
        g.attrs["mesh_name"] = mesh.name
        g.attrs["n_samples"] = int(n_samples)
        g.attrs["n_stored"] = int(n_stored)
        g.attrs["n_dofs"] = n_dofs
        g.attrs["n_done"] = 0
        g.attrs["complete"] = False
        sg = g.create_group(f"spaces/{STATE_KEY}")
        sg.attrs["element"] = str(problem.state_space.ufl_element())
        sg.attrs["subspaces"] = json.dumps(info)
        sg.attrs["numbering_hash"] = digest
        sg.attrs["checkpoint_name"] = checkpoint_name(STATE_KEY)
        rows = max(n_samples, 1)
        g.create_dataset("params", shape=(n_samples, n_params), maxshape=(None, n_params), dtype=np.float64,
                         chunks=(min(1024, rows), max(n_params, 1)) if n_params else None, fillvalue=np.nan)
        steps = int(np.clip(STATE_CHUNK_BYTES // (8 * max(n_dofs, 1)), 1, max(n_stored, 1)))
        g.create_dataset("states", shape=(n_samples, n_stored, n_dofs), maxshape=(None, n_stored, n_dofs),
                         dtype=np.float64, chunks=(1, steps, n_dofs), fillvalue=np.nan)
        create_row_records(g, n_samples, TRAJECTORY_FIELDS)
    except BaseException as exc:
        full = disk_full(exc, path)
        discard_file(h5, path)
        if full and not no_space(exc):
            raise no_space_error(path) from exc
        raise
    return TrajectoryWriter(h5)


class TrajectoryWriter(DatasetWriter):
    """Writes trajectories into a file made by :func:`create_trajectory_file`.

    The interface of :class:`~fe_operators.data.h5_writer.DatasetWriter` (so that a
    generation run merges either kind the same way), with one input, ``"params"``, and
    the trajectories as the output.

    Parameters
    ----------
    h5
        The file, open for writing (the writer closes it).
    """

    def __init__(self, h5: h5py.File) -> None:
        self.h5 = h5
        self.path = str(h5.filename)
        self.input_names = ["params"]
        self.group = h5[GROUP]
        # held open until the file is closed (see DatasetWriter)
        keys = [*TRAJECTORY_FIELDS, "digests", "time_per_sample", "done"]
        self.datasets: dict[str, h5py.Dataset] = {k: self.group[k] for k in keys}

    def write(self, indices: np.ndarray, inputs: Mapping[str, np.ndarray], output: np.ndarray,
              times: np.ndarray) -> None:
        """Write trajectories ``indices``: ``inputs["params"]`` ``(k, n_params)``, ``output`` ``(k, n_stored, n_dofs)``.

        The digests are taken of the values as stored, in this same call; the rows are
        marked done last.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        order = np.argsort(indices, kind="stable")
        idx, first = np.unique(indices[order], return_index=True)
        rows = order[first]
        sel: Any = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        fields = [("params", np.ascontiguousarray(np.asarray(inputs["params"])[rows], dtype="<f8")),
                  ("states", np.ascontiguousarray(np.asarray(output)[rows], dtype="<f8"))]
        ds = self.datasets
        for key, values in fields:
            ds[key][sel] = values
        ds["digests"][sel] = sample_digests(idx, fields)
        ds["time_per_sample"][sel] = np.asarray(times)[rows]
        ds["done"][sel] = 1

    def copy_from(self, other: TrajectoryFile, block: int = 4) -> None:  # type: ignore[override]
        """Copy the done trajectories of another trajectory file (same problem) into this one."""
        idx = np.flatnonzero(other.done)
        for start in range(0, idx.size, block):
            sel = idx[start:start + block]
            params, states = other.read(sel)
            self.write(sel, {"params": params}, states, other.times[sel])
