"""The HDF5 layout of a dataset file and its reader (the writer is :mod:`~fe_operators.data.h5_writer`,
the names of the layout :mod:`~fe_operators.data.layout`).

One user-facing file holds everything (a Firedrake ``CheckpointFile`` and h5py data
side by side; the two are never open at the same time)::

    /                              Firedrake CheckpointFile: the mesh (DMPlex) and, per
                                   space, a "numbering probe" Function whose value at
                                   each DOF node is that node's index in the stored arrays
    /fe_operators                  attrs: format, format_version, kind ("steady"; unset
                                   in older files), provenance (JSON),
                                   input_names (JSON list, channel order), mesh_name,
                                   n_samples, n_done, complete
    /fe_operators/inputs/<name>    float64 (N, n_nodes) or (N, n_nodes, ncomp)
    /fe_operators/output           float64 (N, n_nodes) or (N, n_nodes, ncomp)
    /fe_operators/digests          uint8 (N, F, 16): per sample and field, a SHA-256
                                   digest (see :func:`~fe_operators.data.digests.sample_digests`); attr fields (JSON
                                   list of the F space keys: the inputs in channel order,
                                   then "output")
    /fe_operators/done             uint8 (N,): 1 once the sample's arrays are valid
    /fe_operators/time_per_sample  float64 (N,): seconds to sample and solve (NaN if not done)
    /fe_operators/spaces/inputs/<name>, /fe_operators/spaces/output
                                   attrs: info (SpaceInfo JSON), element, checkpoint_name,
                                   numbering_hash; dataset dof_coordinates (n_nodes, gdim)
                                   for Lagrange-type spaces

Files of kind ``"trajectories"`` (time-dependent families) share the group, the
checkpoint part, the digests and ``done``, with parameters and states in place of inputs
and output: their layout and reader are in :mod:`fe_operators.data.trajectories`.
:class:`FEFile` refuses them, naming the reader to use (and that reader refuses steady files).

DOF arrays are in the numbering of the generating process (the mesh built from the
provenance's mesh spec).  Rows that are not ``done`` hold NaN.

Integrity
    Every sample is written with one digest per field (:meth:`~fe_operators.data.h5_writer.DatasetWriter.write`, in
    the same call as its rows) and verified whenever it is read (:meth:`FEFile.read`,
    :meth:`FEFile.verify`): a sample whose bytes changed after it was written (a bad
    disk, a stray write, a hand edit) is refused with a
    :class:`~fe_operators.errors.DatasetFileError` naming the file, the sample and the
    field (a :class:`~fe_operators.errors.NonFiniteError` when the damage put NaN or
    infinite values there).  HDF5's own chunk checksums cannot do this: a chunk holds up
    to 1024 rows, and uncompressed chunks carry no checksum at all.  Files of format
    version 1, written before the digests, are refused when opened, with the advice to
    regenerate them (fe_operators is pre-release and ships no data files).
  A fresh process rebuilds
mesh and spaces in two checked ways:

* :meth:`FEFile.rebuild` loads the stored mesh with ``CheckpointFile`` and reads each
  space's numbering probe, which gives the exact permutation from stored to rebuilt DOFs
  (checked to be a permutation, and against the stored DOF coordinates);
* :meth:`FEFile.rebuild_problem` rebuilds the problem from the provenance (mesh spec and
  parameters) and checks that its DOF numbering hashes equal the stored ones, raising
  :class:`~fe_operators.errors.NumberingError` otherwise — never renumbering silently.

This module imports Firedrake only inside the functions that need it, so that
:class:`FEFile`'s array reading (used by the torch dataset) stays light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from fe_operators.data.digests import DIGEST_SIZE, check_digests, digest_fields
from fe_operators.data.layout import GROUP, KIND_STEADY, checkpoint_name, dof_shape, space_key
from fe_operators.data.header import DAMAGE, damaged_file_error, read_metadata
from fe_operators.errors import DatasetFileError, NumberingError

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

    from fe_operators.fem.spaces import SpaceInfo
    from fe_operators.problems.base import Problem

__all__ = ["FEFile", "FESpaces", "dof_coordinates", "numbering_hash", "state_numbering_hash"]

_LAGRANGE = {"Lagrange", "Discontinuous Lagrange", "Q", "DQ", "TensorProductElement"}


def numbering_hash(V: fd.FunctionSpace) -> str:
    """A fingerprint of the DOF numbering of ``V``.

    SHA-256 of the element, the mesh's coordinate DOFs and ``V``'s cell-node map: two
    spaces with the same hash have the same DOFs at the same places in the same order.
    """
    mesh = V.mesh()
    h = hashlib.sha256()
    h.update(str(V.ufl_element()).encode())
    h.update(np.ascontiguousarray(mesh.coordinates.dat.data_ro, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(V.cell_node_list, dtype=np.int64).tobytes())
    return h.hexdigest()


def state_numbering_hash(W: fd.FunctionSpace) -> str:
    """A fingerprint of the DOF numbering of a (plain or mixed) state space.

    SHA-256 of the :func:`numbering_hash` of each of its sub-spaces, in the order of
    :meth:`~fe_operators.problems.timedep.TimeDependentProblem.state_to_array`.
    """
    import firedrake as fd

    h = hashlib.sha256()
    for sub in fd.Function(W).subfunctions:
        h.update(numbering_hash(sub.function_space()).encode())
    return h.hexdigest()


def dof_coordinates(V: fd.FunctionSpace) -> np.ndarray | None:
    """Coordinates of the DOF nodes of a Lagrange-type space, ``(n_nodes, gdim)``.

    Returns ``None`` for other elements (e.g. Raviart–Thomas), whose DOFs are not point
    values.
    """
    import firedrake as fd

    from fe_operators.fem.spaces import space_info

    if space_info(V).family not in _LAGRANGE:
        return None
    elem = V.ufl_element()
    base = elem.sub_elements[0] if V.value_shape != () else elem
    W = fd.VectorFunctionSpace(V.mesh(), base)
    x = fd.Function(W).interpolate(fd.SpatialCoordinate(V.mesh()))
    return np.array(x.dat.data_ro, dtype=np.float64).reshape(V.dof_dset.size, -1)


# ---------------------------------------------------------------------------- reading
@dataclasses.dataclass
class FESpaces:
    """Mesh and spaces rebuilt in a fresh process, with the stored→rebuilt DOF maps.

    Attributes
    ----------
    mesh
        The rebuilt mesh (on one process).
    input_spaces
        Rebuilt input spaces by name.
    output_space
        Rebuilt output space.
    permutations
        Space key (``"inputs/<name>"``, ``"output"``) -> integer array ``p`` with
        ``rebuilt_dofs = stored_dofs[..., p, :]`` (node axis).
    """

    mesh: Any
    input_spaces: dict[str, Any]
    output_space: Any
    permutations: dict[str, np.ndarray]

    def space(self, key: str) -> Any:
        """The rebuilt space of key ``"inputs/<name>"`` or ``"output"``."""
        return self.output_space if key == "output" else self.input_spaces[key.split("/", 1)[1]]

    def to_functions(self, key: str, rows: np.ndarray) -> list:
        """Stored DOF rows of space ``key`` (batch first) -> Functions on the rebuilt space."""
        import firedrake as fd

        V = self.space(key)
        rows = np.asarray(rows, dtype=np.float64)[:, self.permutations[key]]
        shape = (V.dof_dset.size, *V.value_shape)
        return [fd.Function(V, val=np.ascontiguousarray(r).reshape(shape)) for r in rows]


def _rows(ds: h5py.Dataset, sel: Any, n: int) -> np.ndarray:
    """Rows ``sel`` (a slice or increasing indices, ``n`` of them) of dataset ``ds``."""
    if n == 0:
        return np.empty((0, *ds.shape[1:]), dtype=ds.dtype)
    return ds[sel]


class FEFile:
    """Read access to a dataset file (no handle is kept open between calls).

    Parameters
    ----------
    path
        The dataset file.

    Attributes
    ----------
    path : str
    provenance : dict
        Problem, parameters, seed, mesh spec, solver options, versions, runs.
    input_names : list of str
        Input names, in channel order.
    space_dicts : dict
        Space key -> SpaceInfo dict (see :meth:`space_info`).
    n_samples : int
        Rows of the sample arrays.
    done : numpy.ndarray of bool
        Which rows hold valid samples.
    times : numpy.ndarray
        Seconds per sample (NaN where not done).

    Raises
    ------
    DatasetFileError
        The file is missing, not HDF5, not an fe_operators dataset, damaged (its
        metadata cannot be read back), or of format version 1 (written without
        per-sample digests: regenerate it); the message names the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        read_metadata(self.path, KIND_STEADY, self._read_metadata)

    def _read_metadata(self, g: h5py.Group) -> None:
        self.provenance: dict[str, Any] = json.loads(g.attrs["provenance"])
        self.input_names: list[str] = json.loads(g.attrs["input_names"])
        self.mesh_name: str = str(g.attrs["mesh_name"])
        keys = [space_key(n) for n in self.input_names] + [space_key(None)]
        self.space_dicts: dict[str, dict[str, Any]] = {
            k: json.loads(g[f"spaces/{k}"].attrs["info"]) for k in keys
        }
        self.numbering: dict[str, str] = {
            k: str(g[f"spaces/{k}"].attrs["numbering_hash"]) for k in keys
        }
        self.n_samples = int(g["done"].shape[0])
        fields = digest_fields(self.input_names)
        digests = g["digests"]
        if (digests.shape != (self.n_samples, len(fields), DIGEST_SIZE)
                or json.loads(digests.attrs["fields"]) != fields):
            raise DatasetFileError(
                f"{self.path} is damaged: its digests have shape {digests.shape}, expected "
                f"{(self.n_samples, len(fields), DIGEST_SIZE)} for fields {fields}; generate it "
                "again (fe-operators generate ... --overwrite) or restore a good copy"
            )
        self.done: np.ndarray = g["done"][...].astype(bool)
        self.times: np.ndarray = g["time_per_sample"][...]

    # ------------------------------------------------------------------ plain data
    @property
    def complete(self) -> bool:
        """Whether every row holds a valid sample."""
        return bool(self.done.all())

    def dof_shape(self, key: str) -> tuple[int, ...]:
        """Shape of one sample of space ``key`` (``"inputs/<name>"`` or ``"output"``)."""
        return dof_shape(self.space_dicts[key])

    def space_info(self, key: str) -> SpaceInfo:
        """The :class:`~fe_operators.fem.spaces.SpaceInfo` of space ``key``."""
        from fe_operators.fem.spaces import SpaceInfo

        return SpaceInfo.from_dict(self.space_dicts[key])

    def dof_coordinates(self, key: str) -> np.ndarray | None:
        """Stored DOF-node coordinates of space ``key`` (stored numbering), or ``None``."""
        try:
            with h5py.File(self.path, "r") as h5:
                ds = h5[f"{GROUP}/spaces/{key}"].get("dof_coordinates")
                return None if ds is None else ds[...]
        except DAMAGE as exc:
            raise damaged_file_error(self.path, exc, f"the DOF coordinates of {key}") from exc

    def read(self, indices: Iterable[int] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Input and output DOF arrays of samples ``indices`` (default: all done ones).

        Returns
        -------
        inputs : dict of numpy.ndarray
            Name -> ``(k, n_nodes[, ncomp])``.
        output : numpy.ndarray
            ``(k, n_nodes[, ncomp])``.

        Every sample read is checked against its stored digests (:meth:`verify`).

        Raises
        ------
        IndexError
            An index is out of range or not a done (valid) sample.
        DatasetFileError
            The arrays cannot be read back, or a sample does not match its digests (a
            damaged file); the message names the file and the sample.
        NonFiniteError
            A damaged sample holds NaN or infinite values (named by sample and field).
        """
        idx = np.flatnonzero(self.done) if indices is None else np.asarray(list(indices), dtype=np.int64)
        self.check_indices(idx)
        uniq, inverse = np.unique(idx, return_inverse=True)
        # h5py wants increasing indices; a contiguous run is read as one slice
        sel: Any = slice(int(uniq[0]), int(uniq[-1]) + 1) if uniq.size and uniq[-1] - uniq[0] + 1 == uniq.size else uniq
        try:
            with h5py.File(self.path, "r") as h5:
                g = h5[GROUP]
                inputs = {n: _rows(g[space_key(n)], sel, uniq.size) for n in self.input_names}
                output = _rows(g["output"], sel, uniq.size)
                digests = _rows(g["digests"], sel, uniq.size)
        except DAMAGE as exc:
            raise damaged_file_error(self.path, exc, "its sample arrays") from exc
        self.verify(uniq, inputs, output, digests)
        return {n: a[inverse] for n, a in inputs.items()}, output[inverse]

    def check(self, block: int = 256) -> None:
        """Read every done sample, ``block`` at a time, and verify it against its digests.

        Raises
        ------
        DatasetFileError, NonFiniteError
            As :meth:`read`, for the first damaged sample.
        """
        idx = np.flatnonzero(self.done)
        for start in range(0, idx.size, block):
            self.read(idx[start:start + block])

    def verify(self, indices: np.ndarray, inputs: Mapping[str, np.ndarray], output: np.ndarray,
               digests: np.ndarray) -> None:
        """Check samples read from this file against their stored digests.

        Parameters
        ----------
        indices
            The samples' indices, ``(k,)``.
        inputs, output
            Their arrays as read (batch first).
        digests
            Their rows of the ``digests`` dataset, ``(k, F, DIGEST_SIZE)``.

        Raises
        ------
        NonFiniteError
            A sample does not match its digest and holds NaN or infinite values; the
            message names the file, the sample and the field.
        DatasetFileError
            A sample does not match its digest (named as above).
        """
        fields = [(space_key(n), inputs[n]) for n in self.input_names] + [(space_key(None), output)]
        check_digests(self.path, np.asarray(indices, dtype=np.int64), fields, np.asarray(digests))

    def check_indices(self, idx: np.ndarray) -> None:
        """Raise ``IndexError`` unless all ``idx`` are valid, done samples."""
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise IndexError(f"sample indices must lie in [0, {self.n_samples}), got {idx.min()}..{idx.max()}")
        bad = idx[~self.done[idx]]
        if bad.size:
            raise IndexError(
                f"samples {bad[:10].tolist()} of {self.path} are not done (generation incomplete or "
                "failed); rerun `fe-operators generate` with the same settings to complete the file"
            )

    # ------------------------------------------------------------------ Firedrake side
    def rebuild(self, comm: Any = None) -> FESpaces:
        """Load the stored mesh and spaces with Firedrake and map stored DOFs onto them.

        Parameters
        ----------
        comm
            Communicator of the rebuilt mesh; it must have one process (default
            ``COMM_SELF``).

        Returns
        -------
        FESpaces

        Raises
        ------
        NumberingError
            A numbering probe is not a permutation, or the permuted DOF coordinates differ
            from the stored ones.
        DatasetFileError
            The stored mesh or spaces cannot be read back (a damaged file).
        """
        import firedrake as fd
        from mpi4py import MPI

        comm = MPI.COMM_SELF if comm is None else comm
        if comm.size != 1:
            raise ValueError(f"expected a one-process communicator, got {comm.size} processes")
        keys = list(self.space_dicts)
        probes = {}
        try:
            with fd.CheckpointFile(self.path, "r", comm=comm) as cf:
                mesh = cf.load_mesh(self.mesh_name)
                for key in keys:
                    probes[key] = cf.load_function(mesh, checkpoint_name(key))
        except Exception as exc:  # noqa: BLE001 - h5py, PETSc and Firedrake errors alike
            raise damaged_file_error(self.path, exc, "its stored mesh and spaces") from exc
        perms = {}
        for key in keys:
            V = probes[key].function_space()
            vals = np.asarray(probes[key].dat.data_ro).reshape(V.dof_dset.size, -1)
            n = int(self.space_dicts[key]["n_nodes"])
            perm = np.rint(vals[:, 0]).astype(np.int64)
            if (
                vals.shape[0] != n
                or not np.array_equal(vals, np.broadcast_to(perm[:, None].astype(np.float64), vals.shape))
                or not np.array_equal(np.sort(perm), np.arange(n))
            ):
                raise NumberingError(
                    f"{self.path}: the stored numbering of space {key} does not map onto the rebuilt "
                    "space one-to-one; the file is damaged or was written by another format"
                )
            stored = self.dof_coordinates(key)
            if stored is not None:
                rebuilt = dof_coordinates(V)
                if rebuilt is None or not np.allclose(rebuilt, stored[perm], rtol=0, atol=1e-12):
                    raise NumberingError(
                        f"{self.path}: after renumbering, the DOF coordinates of space {key} differ "
                        "from the stored ones"
                    )
            perms[key] = perm
        out_space = probes["output"].function_space()
        inputs = {n: probes[space_key(n)].function_space() for n in self.input_names}
        return FESpaces(mesh, inputs, out_space, perms)

    def rebuild_problem(self, comm: Any = None, problem: str | type[Problem] | None = None, *,
                        solver_parameters: Mapping[str, Any] | None = None) -> Problem:
        """Rebuild the generating problem from the provenance and check its DOF numbering.

        The mesh is rebuilt from the stored mesh spec with :func:`fe_operators.io.load_mesh`
        and the problem with the stored family and parameters; stored DOF arrays then
        apply to its spaces as they are.  A refined spec (``plate_holes/r2``) gives the
        finest level of its ``MeshHierarchy`` again, ready for multigrid.

        The file decides no code that runs: a registered family is built from the
        registry; a stored ``module:Class`` is imported only when ``problem`` names it
        (see :func:`~fe_operators.problems.registry.stored_problem_class`), and stored
        solver options that select a Python PETSc type are refused
        (:func:`~fe_operators.petsc_options.check_stored_options`).

        Parameters
        ----------
        comm
            Communicator of the mesh (default ``COMM_SELF``).
        problem
            The problem as the user names it, ``"module:Class"`` or the class, needed for
            data of a problem class that is not a registered family and checked against
            the stored name (default: the one set with
            :func:`~fe_operators.problems.registry.user_problem`, if any).
        solver_parameters
            The user's own solver options, used instead of the stored ones (not checked).

        Raises
        ------
        DatasetFileError
            The stored problem is a ``module:Class`` that ``problem`` does not name, or the
            stored solver options select a Python PETSc type.
        UsageError
            ``problem`` differs from the stored problem.
        NumberingError
            The rebuilt spaces number their DOFs differently from the stored data (the
            mesh the spec names changed since the data were generated; :meth:`rebuild`
            reads the stored mesh instead).
        """
        from mpi4py import MPI

        from fe_operators.petsc_options import check_stored_options
        from fe_operators.problems.registry import load_problem, stored_problem_class

        comm = MPI.COMM_SELF if comm is None else comm
        prov = self.provenance
        cls = stored_problem_class(prov.get("problem"), problem, source=f"the dataset {self.path}")
        params = dict(prov.get("params") or {})
        if solver_parameters is not None:
            params.pop("solver_parameters", None)
        # all of params, not just solver_parameters: a class may hand options to PETSc under any key
        check_stored_options(params, f"the dataset {self.path} (provenance params)")
        if solver_parameters is not None:
            params["solver_parameters"] = dict(solver_parameters)
        rebuilt = load_problem(cls, prov["mesh"], params, comm=comm)
        got = {space_key(n): numbering_hash(V) for n, V in rebuilt.input_spaces.items()}
        got[space_key(None)] = numbering_hash(rebuilt.output_space)
        bad = sorted(k for k in self.numbering if got.get(k) != self.numbering[k])
        if bad:
            mesh = str(prov["mesh"])
            mesh = mesh if len(mesh) <= 80 else mesh[:77] + "..."
            raise NumberingError(
                f"the problem rebuilt from mesh {mesh!r} numbers the DOFs of {', '.join(bad)} differently from "
                f"{self.path}: the mesh (or Firedrake) changed since the data were generated; restore it, or "
                f"generate the data again (fe-operators generate ... --mesh {mesh} --overwrite); in Python, "
                "FEFile.rebuild() reads the mesh stored in the file and maps the DOFs"
            )
        return rebuilt

    def functions(self, indices: Iterable[int], spaces: FESpaces) -> list[tuple[dict[str, Any], Any]]:
        """Samples as Firedrake Functions on rebuilt spaces (see :meth:`rebuild`).

        Returns
        -------
        list of (dict of Function, Function)
            Inputs by name and output, one pair per index.
        """
        idx = np.asarray(list(indices), dtype=np.int64)
        inputs, output = self.read(idx)
        ins = {n: spaces.to_functions(space_key(n), inputs[n]) for n in self.input_names}
        outs = spaces.to_functions("output", output)
        return [({n: ins[n][k] for n in self.input_names}, outs[k]) for k in range(idx.size)]
