"""The HDF5 layout of a dataset file, its writer and its reader.

One user-facing file holds everything (a Firedrake ``CheckpointFile`` and h5py data
side by side; the two are never open at the same time)::

    /                              Firedrake CheckpointFile: the mesh (DMPlex) and, per
                                   space, a "numbering probe" Function whose value at
                                   each DOF node is that node's index in the stored arrays
    /fe_operators                  attrs: format, format_version, provenance (JSON),
                                   input_names (JSON list, channel order), mesh_name,
                                   n_samples, n_done, complete
    /fe_operators/inputs/<name>    float64 (N, n_nodes) or (N, n_nodes, ncomp)
    /fe_operators/output           float64 (N, n_nodes) or (N, n_nodes, ncomp)
    /fe_operators/digests          uint8 (N, F, 16): per sample and field, a SHA-256
                                   digest (see :func:`sample_digests`); attr fields (JSON
                                   list of the F space keys: the inputs in channel order,
                                   then "output")
    /fe_operators/done             uint8 (N,): 1 once the sample's arrays are valid
    /fe_operators/time_per_sample  float64 (N,): seconds to sample and solve (NaN if not done)
    /fe_operators/spaces/inputs/<name>, /fe_operators/spaces/output
                                   attrs: info (SpaceInfo JSON), element, checkpoint_name,
                                   numbering_hash; dataset dof_coordinates (n_nodes, gdim)
                                   for Lagrange-type spaces

DOF arrays are in the numbering of the generating process (the mesh built from the
provenance's mesh spec).  Rows that are not ``done`` hold NaN.

Integrity
    Every sample is written with one digest per field (:meth:`DatasetWriter.write`, in
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

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from fe_operators.errors import DatasetFileError, NonFiniteError, NumberingError

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

    from fe_operators.fem.spaces import SpaceInfo
    from fe_operators.problems.base import Problem

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GROUP",
    "DatasetWriter",
    "FEFile",
    "FESpaces",
    "create_dataset_file",
    "damaged_file_error",
    "digest_fields",
    "dof_coordinates",
    "find_digest_mismatch",
    "no_space",
    "non_finite_error",
    "numbering_hash",
    "sample_digests",
    "space_key",
]

FORMAT = "fe_operators.dataset"
FORMAT_VERSION = 2  # 2: per-sample digests
GROUP = "fe_operators"
DIGEST_SIZE = 16  # bytes kept of a SHA-256 per sample and field
_DIGEST_PREFIX = b"fe_operators sample digest\0"
_LAGRANGE = {"Lagrange", "Discontinuous Lagrange", "Q", "DQ", "TensorProductElement"}
_ROW_CHUNK_BYTES = 1 << 16


#: errno values of a full disk or quota
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
#: a write that fails with less free space than this left on its disk failed for want of space
_FULL_BYTES = 16 << 20


def no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full.

    ``OSError`` carries the errno; HDF5 (through h5py) and PETSc may only put it in their
    message (``errno = 28``, ``No space left on device``).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return True
        text = str(exc)
        if any(f"errno = {e}," in text or os.strerror(e) in text for e in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full(exc: BaseException, path: str | os.PathLike) -> bool:
    """Whether a write to ``path`` that raised ``exc`` failed because its disk is full.

    By the error itself (:func:`no_space`), or, for PETSc's and HDF5's errors that do not
    say why a write failed, by the space left on the disk (to be asked before the failed
    file is deleted).
    """
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        return False
    if no_space(exc):
        return True
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < _FULL_BYTES
    except OSError:
        return False


def _no_space_error(path: str | os.PathLike) -> OSError:
    """``OSError(ENOSPC)`` naming ``path``."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def space_key(name: str | None) -> str:
    """The key of a space in the file: ``"inputs/<name>"`` for inputs, ``"output"`` for ``None``."""
    return "output" if name is None else f"inputs/{name}"


def _checkpoint_name(key: str) -> str:
    """Name of the numbering-probe Function of space ``key`` inside the CheckpointFile."""
    return "fe_operators_numbering_" + key.replace("/", "_")


def _dof_shape(info: Mapping[str, Any]) -> tuple[int, ...]:
    """DOF-tensor shape of one sample from a SpaceInfo dict (see :class:`SpaceInfo`)."""
    n = int(info["n_nodes"])
    return (n,) if not info["value_shape"] else (n, int(info["ncomp"]))


def digest_fields(input_names: Sequence[str]) -> list[str]:
    """The fields a sample's digests cover, in order: ``inputs/<name>`` in channel order, ``output``."""
    return [space_key(n) for n in input_names] + [space_key(None)]


def sample_digests(indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Per-sample, per-field digests of the rows of a batch.

    The digest of sample ``i``'s field ``key`` is the first 16 bytes of the SHA-256 of
    ``b"fe_operators sample digest\\0"``, ``i`` as little-endian int64, ``key`` in UTF-8
    and a NUL byte, and the sample's values as little-endian float64 (the on-disk dtype)
    in C order.  The index and the key are hashed too, so a row copied onto another
    sample, or one field's values put in another's place, do not match either.  (SHA-256
    rather than BLAKE2b: CPUs with SHA instructions hash 2-3 times faster with it.)

    Parameters
    ----------
    indices
        Sample indices, ``(k,)``.
    fields
        ``(key, array)`` pairs, each array ``(k, ...)`` (batch first).

    Returns
    -------
    numpy.ndarray
        ``(k, len(fields), DIGEST_SIZE)`` uint8.
    """
    idx = np.ascontiguousarray(indices, dtype="<i8").reshape(-1)
    rows = [(key.encode() + b"\0", np.ascontiguousarray(a, dtype="<f8").reshape(idx.size, -1))
            for key, a in fields]
    out = bytearray()
    for k in range(idx.size):  # hashlib runs over each row in C; this loop is per sample read
        head = _DIGEST_PREFIX + idx[k].tobytes()
        for key, a in rows:
            h = hashlib.sha256(head + key)
            h.update(a[k])
            out += h.digest()[:DIGEST_SIZE]
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(idx.size, len(rows), DIGEST_SIZE)


def non_finite_error(path: str, sample: int, field: str, values: np.ndarray) -> NonFiniteError:
    """The error for a stored sample with NaN or infinite values in ``field``."""
    count = int((~np.isfinite(values)).sum())
    return NonFiniteError(
        f"{path}: sample {sample} holds {count} NaN or infinite value(s) in {field}; the file is damaged "
        "(generation never stores such samples): regenerate it with fe-operators generate ... --overwrite"
    )


def find_digest_mismatch(indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]],
                         stored: np.ndarray) -> tuple[int, int] | None:
    """The first ``(row, field)`` position whose values do not hash to ``stored``, or ``None``.

    Parameters
    ----------
    indices, fields
        As for :func:`sample_digests`.
    stored
        The digests written with the rows, ``(k, len(fields), DIGEST_SIZE)`` (any other
        shape mismatches at ``(0, 0)``).
    """
    got = sample_digests(indices, fields)
    if stored.shape != got.shape:
        return (0, 0)
    bad = np.argwhere((got != stored).any(axis=2))
    return None if bad.size == 0 else (int(bad[0, 0]), int(bad[0, 1]))


def _check_digests(path: str, indices: np.ndarray, fields: Sequence[tuple[str, np.ndarray]],
                   stored: np.ndarray) -> None:
    """Raise unless the rows in ``fields`` hash to ``stored`` (see :func:`sample_digests`)."""
    found = find_digest_mismatch(indices, fields, stored)
    if found is None:
        return
    k, j = found
    key, values = fields[j][0], np.asarray(fields[j][1][k])
    sample = int(indices[k])
    if not np.isfinite(values).all():
        raise non_finite_error(path, sample, key, values)
    raise DatasetFileError(
        f"{path}: sample {sample} is damaged: its {key} values do not match the digest written with them "
        "(the file was changed after it was written); regenerate it with fe-operators generate ... "
        "--overwrite, or restore a good copy"
    )


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


# ---------------------------------------------------------------------------- writing
def create_dataset_file(
    path: str | os.PathLike,
    mesh: fd.MeshGeometry,
    input_spaces: Mapping[str, fd.FunctionSpace],
    output_space: fd.FunctionSpace,
    provenance: Mapping[str, Any],
    n_samples: int,
) -> DatasetWriter:
    """Create a new dataset file with mesh, space descriptions and empty sample arrays.

    The mesh and the numbering probes are written with Firedrake's ``CheckpointFile``
    (on the mesh's communicator, which must be a single process), which is closed before
    the h5py part is added.

    Parameters
    ----------
    path
        The file to create (truncated if it exists).
    mesh, input_spaces, output_space
        The generating process's mesh and spaces.
    provenance
        JSON-able provenance, stored as the ``provenance`` attribute.
    n_samples
        Number of rows of the sample arrays.

    Returns
    -------
    DatasetWriter
        An open writer for the sample arrays (use it as a context manager).
    """
    import firedrake as fd

    from fe_operators.fem.spaces import space_info

    if mesh.comm.size != 1:
        raise ValueError(f"expected a mesh on one process, got one on {mesh.comm.size} processes")
    spaces: dict[str, fd.FunctionSpace] = {space_key(n): V for n, V in input_spaces.items()}
    spaces[space_key(None)] = output_space
    probes = {}
    for key, V in spaces.items():
        f = fd.Function(V, name=_checkpoint_name(key))
        idx = np.arange(V.dof_dset.size, dtype=np.float64)
        f.dat.data_wo[...] = idx.reshape((-1,) + (1,) * (f.dat.data_wo.ndim - 1))
        probes[key] = f
    cf = fd.CheckpointFile(str(path), "w", comm=mesh.comm)
    try:
        cf.save_mesh(mesh)
        for f in probes.values():
            cf.save_function(f)
        cf.close()
    except BaseException as exc:
        full = _disk_full(exc, path)
        _discard_checkpoint(cf, path)
        if full and not no_space(exc):  # PETSc's error says "error code 76" only
            raise _no_space_error(path) from exc
        raise
    meta = {key: (space_info(V).to_dict(), str(V.ufl_element()), numbering_hash(V), dof_coordinates(V))
            for key, V in spaces.items()}
    # no chunk cache: a failed write (a full disk) raises in the call that made it, with nothing
    # left dirty for the closing flush but metadata (see _discard)
    h5 = h5py.File(path, "a", rdcc_nbytes=0)
    try:
        g = h5.create_group(GROUP)
        g.attrs["format"] = FORMAT
        g.attrs["format_version"] = FORMAT_VERSION
        g.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
        g.attrs["input_names"] = json.dumps(list(input_spaces))
        g.attrs["mesh_name"] = mesh.name
        g.attrs["n_samples"] = int(n_samples)
        g.attrs["n_done"] = 0
        g.attrs["complete"] = False
        for key, (info, element, digest, coords) in meta.items():
            sg = g.create_group(f"spaces/{key}")
            sg.attrs["info"] = json.dumps(info)
            sg.attrs["element"] = element
            sg.attrs["numbering_hash"] = digest
            sg.attrs["checkpoint_name"] = _checkpoint_name(key)
            if coords is not None:
                sg.create_dataset("dof_coordinates", data=coords)
            shape = _dof_shape(info)
            row_bytes = 8 * int(np.prod(shape))
            rows = int(np.clip(_ROW_CHUNK_BYTES // row_bytes, 1, 1024))
            g.create_dataset(
                key, shape=(n_samples, *shape), maxshape=(None, *shape), dtype=np.float64,
                chunks=(min(rows, max(n_samples, 1)), *shape), fillvalue=np.nan,
            )
        fields = digest_fields(list(input_spaces))
        dg = g.create_dataset("digests", shape=(n_samples, len(fields), DIGEST_SIZE),
                              maxshape=(None, len(fields), DIGEST_SIZE), dtype=np.uint8, fillvalue=0,
                              chunks=(min(1024, max(n_samples, 1)), len(fields), DIGEST_SIZE))
        dg.attrs["fields"] = json.dumps(fields)
        g.create_dataset("done", shape=(n_samples,), maxshape=(None,), dtype=np.uint8, fillvalue=0)
        g.create_dataset("time_per_sample", shape=(n_samples,), maxshape=(None,), dtype=np.float64,
                         fillvalue=np.nan)
    except BaseException as exc:
        full = _disk_full(exc, path)
        _discard(h5, path)
        if full and not no_space(exc):
            raise _no_space_error(path) from exc
        raise
    return DatasetWriter(h5, list(input_spaces))


def _discard_checkpoint(cf: Any, path: str | os.PathLike) -> None:
    """Close a ``CheckpointFile`` whose writing failed, and delete the file (as :func:`_discard`).

    Its PETSc viewer would otherwise be destroyed by the garbage collector at exit, with
    a flush that fails again after MPI has been finalised (an abort).
    """
    with contextlib.suppress(OSError):
        os.truncate(path, 0)
    with contextlib.suppress(Exception):
        if hasattr(cf, "_h5pyfile"):
            del cf._h5pyfile  # no flush through h5py: the viewer flushes as it closes
        cf.viewer.destroy()
    with contextlib.suppress(OSError):
        os.unlink(path)


def _discard(h5: h5py.File, path: str | os.PathLike) -> None:
    """Close a file whose writing failed, and delete it.

    HDF5 flushes its cached metadata when a file is closed; where the disk is full that
    flush fails half-way and leaves the library in a state that crashes the process
    later (a segmentation fault at the next close, or at exit).  The file is emptied
    first, which gives that last flush the room it needs, then closed and deleted.
    """
    with contextlib.suppress(OSError):
        os.truncate(path, 0)
    with contextlib.suppress(Exception):
        h5.close()
    with contextlib.suppress(OSError):
        os.unlink(path)


class DatasetWriter:
    """Writes sample rows into a file made by :func:`create_dataset_file`.

    Parameters
    ----------
    h5
        The file, open for writing (the writer closes it).
    input_names
        Input names in channel order.
    """

    def __init__(self, h5: h5py.File, input_names: Sequence[str]) -> None:
        self.h5 = h5
        self.path = str(h5.filename)
        self.input_names = list(input_names)
        self.group = h5[GROUP]
        # held open until the file is closed: HDF5 flushes a dataset's chunk cache when its
        # last handle goes, and a flush failing in a handle's destructor (a full disk) is
        # only printed, and leaves HDF5 in a state that crashes the process later
        keys = [*digest_fields(self.input_names), "digests", "time_per_sample", "done"]
        self.datasets: dict[str, h5py.Dataset] = {k: self.group[k] for k in keys}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(
        self,
        indices: np.ndarray,
        inputs: Mapping[str, np.ndarray],
        output: np.ndarray,
        times: np.ndarray,
    ) -> None:
        """Write samples ``indices`` (rows of the arrays) with their digests and mark them done.

        The values are stored as float64; the digests (:func:`sample_digests`) are taken
        of the values as stored, in this same call.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return
        order = np.argsort(indices, kind="stable")
        idx, first = np.unique(indices[order], return_index=True)
        rows = order[first]  # h5py fancy indexing needs increasing, unique indices
        sel: Any = slice(int(idx[0]), int(idx[-1]) + 1) if idx[-1] - idx[0] + 1 == idx.size else idx
        fields = [(space_key(n), np.ascontiguousarray(np.asarray(inputs[n])[rows], dtype="<f8"))
                  for n in self.input_names]
        fields.append((space_key(None), np.ascontiguousarray(np.asarray(output)[rows], dtype="<f8")))
        ds = self.datasets
        for key, values in fields:
            ds[key][sel] = values
        ds["digests"][sel] = sample_digests(idx, fields)
        ds["time_per_sample"][sel] = np.asarray(times)[rows]
        ds["done"][sel] = 1  # last: a row is valid only once its arrays are written

    def copy_from(self, other: FEFile, block: int = 256) -> None:
        """Copy the done samples of another dataset file (same spaces) into this one."""
        idx = np.flatnonzero(other.done)
        for start in range(0, idx.size, block):
            sel = idx[start:start + block]
            inputs, output = other.read(sel)
            self.write(sel, inputs, output, other.times[sel])

    def close(self, provenance: Mapping[str, Any] | None = None) -> int:
        """Set the summary attributes (and optionally the provenance), close; return #done."""
        if not self.h5.id.valid:
            return 0
        g = self.group
        done = self.datasets["done"][...]
        g.attrs["n_done"] = int(done.sum())
        g.attrs["complete"] = bool(done.all())
        if provenance is not None:
            g.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
        n = int(done.sum())
        self.h5.flush()  # a full disk fails here, with the file still open (see discard)
        self.h5.close()
        return n

    def discard(self, exc: BaseException | None = None) -> None:
        """Close and delete a file whose writing failed (e.g. on a full disk), freeing its space.

        Safe where a write or :meth:`close` raised ``ENOSPC``: the file is emptied before
        HDF5's closing flush, which would otherwise fail and crash the process later.

        Parameters
        ----------
        exc
            What the failed write raised: where it failed because the disk is full but
            does not say so, an ``OSError(ENOSPC)`` naming the file is raised from it.
        """
        full = exc is not None and _disk_full(exc, self.path)
        if self.h5.id.valid:
            _discard(self.h5, self.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if full and not no_space(exc):
            raise _no_space_error(self.path) from exc


# ---------------------------------------------------------------------------- reading
#: what h5py and Firedrake raise on a damaged file (bad signatures, checksums, JSON)
_DAMAGE = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def _group_or_none(h5: h5py.File) -> Any:
    """``h5[GROUP]``, or ``None`` when there is no such object (``h5.get`` also hides damage)."""
    try:
        return h5[GROUP]
    except KeyError as exc:
        if "doesn't exist" in str(exc):
            return None
        raise


def damaged_file_error(path: str, exc: BaseException, what: str) -> DatasetFileError:
    """The error for a dataset file that HDF5 (or Firedrake) cannot read back.

    Parameters
    ----------
    path
        The file.
    exc
        What the reader raised (its first line is quoted).
    what
        The part that could not be read, e.g. ``"its metadata"``.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__  # PETSc's errors go on with a traceback
    return DatasetFileError(
        f"{path} is damaged or not readable ({what}: {reason[:200]}); generate it again "
        "(fe-operators generate ... --overwrite) or restore a good copy"
    )


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
        if not os.path.isfile(self.path):
            raise DatasetFileError(f"no dataset file at {self.path}")
        try:
            h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetFileError(f"{self.path} is not a readable HDF5 file (damaged, or not HDF5: "
                                   f"{' '.join(str(exc).split())})") from exc
        try:
            with h5:
                g = _group_or_none(h5)
                if not isinstance(g, h5py.Group):
                    raise DatasetFileError(f"{self.path} is not an fe_operators dataset (no /{GROUP} group)")
                if g.attrs.get("format") != FORMAT:
                    raise DatasetFileError(
                        f"{self.path} is not an fe_operators dataset: its /{GROUP} group has format "
                        f"{g.attrs.get('format')!r:.60}, expected {FORMAT!r} (a damaged file, or "
                        "another program's)"
                    )
                version = int(g.attrs["format_version"])
                if version > FORMAT_VERSION:
                    raise DatasetFileError(
                        f"{self.path} has format version {version}; this fe_operators reads up to "
                        f"{FORMAT_VERSION}: upgrade fe_operators"
                    )
                if version < FORMAT_VERSION:  # version 1 had no digests: its samples cannot be verified
                    raise DatasetFileError(
                        f"{self.path} has format version {version}, written by an older fe_operators "
                        "without per-sample digests; regenerate it with this version (fe-operators "
                        "generate ... --overwrite)"
                    )
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
        except DatasetFileError:
            raise
        except _DAMAGE as exc:  # a bad signature, checksum, heap or attribute
            raise damaged_file_error(self.path, exc, "its metadata") from exc

    # ------------------------------------------------------------------ plain data
    @property
    def complete(self) -> bool:
        """Whether every row holds a valid sample."""
        return bool(self.done.all())

    def dof_shape(self, key: str) -> tuple[int, ...]:
        """Shape of one sample of space ``key`` (``"inputs/<name>"`` or ``"output"``)."""
        return _dof_shape(self.space_dicts[key])

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
        except _DAMAGE as exc:
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
        except _DAMAGE as exc:
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
        _check_digests(self.path, np.asarray(indices, dtype=np.int64), fields, np.asarray(digests))

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
                    probes[key] = cf.load_function(mesh, _checkpoint_name(key))
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
