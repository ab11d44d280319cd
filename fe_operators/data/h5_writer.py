"""Writing a dataset file: its layout (:mod:`fe_operators.data.h5`) created, rows written
with their digests, and a failed file discarded without a flush on a full disk.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from fe_operators.data.digests import DIGEST_SIZE, digest_fields, sample_digests
from fe_operators.data.disk import disk_full, no_space, no_space_error
from fe_operators.data.h5 import dof_coordinates, numbering_hash
from fe_operators.data.layout import FORMAT, FORMAT_VERSION, GROUP, ROW_CHUNK_BYTES, checkpoint_name, dof_shape, space_key

if TYPE_CHECKING:  # pragma: no cover
    import firedrake as fd

    from fe_operators.data.h5 import FEFile

__all__ = ["DatasetWriter", "create_dataset_file", "create_row_records", "discard_file", "save_checkpoint"]


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
    probes = []
    for key, V in spaces.items():
        f = fd.Function(V, name=checkpoint_name(key))
        idx = np.arange(V.dof_dset.size, dtype=np.float64)
        f.dat.data_wo[...] = idx.reshape((-1,) + (1,) * (f.dat.data_wo.ndim - 1))
        probes.append(f)
    save_checkpoint(path, mesh, probes)
    meta = {key: (space_info(V).to_dict(), str(V.ufl_element()), numbering_hash(V), dof_coordinates(V))
            for key, V in spaces.items()}
    # no chunk cache: a failed write (a full disk) raises in the call that made it, with nothing
    # left dirty for the closing flush but metadata (see discard_file)
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
            sg.attrs["checkpoint_name"] = checkpoint_name(key)
            if coords is not None:
                sg.create_dataset("dof_coordinates", data=coords)
            shape = dof_shape(info)
            row_bytes = 8 * int(np.prod(shape))
            rows = int(np.clip(ROW_CHUNK_BYTES // row_bytes, 1, 1024))
            g.create_dataset(
                key, shape=(n_samples, *shape), maxshape=(None, *shape), dtype=np.float64,
                chunks=(min(rows, max(n_samples, 1)), *shape), fillvalue=np.nan,
            )
        create_row_records(g, n_samples, digest_fields(list(input_spaces)))
    except BaseException as exc:
        full = disk_full(exc, path)
        discard_file(h5, path)
        if full and not no_space(exc):
            raise no_space_error(path) from exc
        raise
    return DatasetWriter(h5, list(input_spaces))


def create_row_records(g: h5py.Group, n_samples: int, fields: Sequence[str]) -> None:
    """The per-row records of a new dataset file: ``digests`` (one per field), ``done``, ``time_per_sample``."""
    dg = g.create_dataset("digests", shape=(n_samples, len(fields), DIGEST_SIZE),
                          maxshape=(None, len(fields), DIGEST_SIZE), dtype=np.uint8, fillvalue=0,
                          chunks=(min(1024, max(n_samples, 1)), len(fields), DIGEST_SIZE))
    dg.attrs["fields"] = json.dumps(list(fields))
    g.create_dataset("done", shape=(n_samples,), maxshape=(None,), dtype=np.uint8, fillvalue=0)
    g.create_dataset("time_per_sample", shape=(n_samples,), maxshape=(None,), dtype=np.float64,
                     fillvalue=np.nan)


def save_checkpoint(path: str | os.PathLike, mesh: fd.MeshGeometry, functions: Sequence[fd.Function]) -> None:
    """Write ``mesh`` and ``functions`` to a new Firedrake ``CheckpointFile`` at ``path`` and close it.

    A failed write (a full disk) deletes the file and raises ``OSError(ENOSPC)`` naming it
    where PETSc's error does not say so.
    """
    import firedrake as fd

    cf = fd.CheckpointFile(str(path), "w", comm=mesh.comm)
    try:
        cf.save_mesh(mesh)
        for f in functions:
            cf.save_function(f)
        cf.close()
    except BaseException as exc:
        full = disk_full(exc, path)
        _discard_checkpoint(cf, path)
        if full and not no_space(exc):  # PETSc's error says "error code 76" only
            raise no_space_error(path) from exc
        raise


def _discard_checkpoint(cf: Any, path: str | os.PathLike) -> None:
    """Close a ``CheckpointFile`` whose writing failed, and delete the file (as :func:`discard_file`).

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


def discard_file(h5: h5py.File, path: str | os.PathLike) -> None:
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
        full = exc is not None and disk_full(exc, self.path)
        if self.h5.id.valid:
            discard_file(self.h5, self.path)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        if full and not no_space(exc):
            raise no_space_error(self.path) from exc
