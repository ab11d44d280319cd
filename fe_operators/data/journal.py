"""The crash-safe journal of an unfinished generation run.

While ``fe-operators generate ... --out data.h5`` runs, finished samples go to a folder
``data.h5.partial/`` next to the output file, never into ``data.h5`` itself (an HDF5
file killed mid-write can be left unreadable):

* the folder itself is ``flock``-ed by the running generator (the kernel drops the lock
  when the process dies, even by ``SIGKILL``), so two runs never write one file;
* ``settings.json`` — the run's settings (problem, parameters, seed, mesh, numbering,
  solver options), written before any sample;
* ``part-<rank>-<first index>-<random>.npz`` — one chunk of finished samples each
  (indices, input and output DOF arrays, seconds per sample, and per sample and field
  the digest of :func:`~fe_operators.data.digests.sample_digests`, taken as it is written).

Every file is written under a temporary name and renamed into place, and a rename is
atomic, so after a ``SIGKILL`` at any instant the folder holds only complete chunks (and
perhaps a ``*.tmp`` to delete).  When all samples are done, the chunks and the previous
``data.h5`` (if any) are merged into a new file that replaces ``data.h5`` by one rename,
and the folder is removed.

A journal damaged from outside (an unreadable ``settings.json``, a chunk that cannot be
read, holds arrays of other shapes than the run's spaces, values that do not match their
digests, or NaN or infinite values) is refused when it is read, before any sample is
solved, and again before its chunks are merged, with a
:class:`~fe_operators.errors.DatasetFileError` naming the file, the sample and the fix:
delete that chunk and re-run the same command, which solves its samples again
(:meth:`Journal.settings`, :meth:`Journal.check_parts`, :meth:`Journal.parts`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fe_operators.data.digests import DIGEST_SIZE, find_digest_mismatch, sample_digests

from fe_operators.data.layout import space_key
from fe_operators.errors import DatasetFileError, OutputError

__all__ = ["Journal", "Part", "journal_path"]

_SETTINGS = "settings.json"


def journal_path(out: str | os.PathLike) -> Path:
    """The journal folder of output file ``out``: ``<out>.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write() names no file: name the one being written
        raise


def _part_fields(arrays: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """A chunk's digested fields: ``inputs/<name>`` by sorted name, then ``output``."""
    names = sorted(k.split(".", 1)[1] for k in arrays if k.startswith("input."))
    return [(space_key(n), arrays[f"input.{n}"]) for n in names] + [(space_key(None), arrays["output"])]


def _content_problem(arrays: Mapping[str, np.ndarray]) -> str | None:
    """What is wrong with a chunk's values (digests, finiteness), naming the sample; ``None``: nothing."""
    indices = arrays["indices"]
    fields = _part_fields(arrays)
    found = find_digest_mismatch(indices, fields, arrays["digests"])
    if found is not None:
        k, j = found
        key, values = fields[j]
        count = int((~np.isfinite(values[k])).sum())
        what = f"holds {count} NaN or infinite value(s) in" if count else "does not match its digest in"
        return f"sample {int(indices[k])} {what} {key} (damaged after it was written)"
    for key, values in fields:  # digests match: values written non-finite would still be refused
        bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            return f"sample {int(indices[k])} holds NaN or infinite values in {key}"
    return None


def _part_problem(path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                  output_shape: tuple[int, ...]) -> str | None:
    """What is wrong with chunk file ``path`` given the per-sample DOF shapes (``None``: nothing)."""
    shapes = {f"input.{n}": tuple(v) for n, v in input_shapes.items()}
    shapes["output"] = tuple(output_shape)
    expected = {"indices", "times", "digests", *shapes}
    try:
        with zipfile.ZipFile(path) as zf:
            headers = {}
            for member in zf.namelist():
                with zf.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh)
                headers[member.removesuffix(".npy")] = (tuple(shape), np.dtype(dtype))
        if set(headers) != expected:
            return f"it holds arrays {sorted(headers)}, expected {sorted(expected)}"
        with np.load(path) as z:
            indices = z["indices"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return f"it cannot be read ({type(exc).__name__}: {exc})"
    k = indices.shape[0] if indices.ndim == 1 else -1
    if k < 1 or indices.dtype.kind not in "iu" or (indices < 0).any():
        return f"its indices are not a list of sample numbers (shape {indices.shape}, dtype {indices.dtype})"
    for key, (shape, dtype) in sorted(headers.items()):
        if key == "digests":
            want, want_dtype = (k, len(shapes), DIGEST_SIZE), np.dtype(np.uint8)
        else:
            want, want_dtype = ((k,) if key in ("indices", "times") else (k, *shapes[key])), np.dtype(np.float64)
        if key != "indices" and (shape != want or dtype != want_dtype):
            return f"its array {key!r} has shape {shape} and dtype {dtype}, expected {want} and {want_dtype}"
    try:
        with np.load(path) as z:
            arrays = {key: z[key] for key in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return f"it cannot be read ({type(exc).__name__}: {exc})"
    return _content_problem({key.removesuffix(".npy"): a for key, a in arrays.items()})


class Part(NamedTuple):
    """One chunk of finished samples (arrays batch first)."""

    indices: np.ndarray
    inputs: dict[str, np.ndarray]
    output: np.ndarray
    times: np.ndarray


class Journal:
    """The journal folder of one output file.

    Parameters
    ----------
    out
        The output file whose journal this is.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = journal_path(out)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Create the folder if needed and lock it for this process.

        Raises
        ------
        OutputError
            Another run holds the lock.
        """
        self.path.mkdir(exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"another fe-operators generate is writing {self.out} (it holds {self.path}); "
                "wait for it to finish or stop it"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (if held); an empty folder is removed."""
        if self._lock_fd is None:
            return
        try:
            self.path.rmdir()  # only succeeds when empty
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    @property
    def exists(self) -> bool:
        """Whether the folder exists."""
        return self.path.is_dir()

    def settings(self) -> dict[str, Any] | None:
        """The stored settings, or ``None`` if the folder or its settings file is missing.

        Raises
        ------
        DatasetFileError
            ``settings.json`` exists but is not a JSON object (the message names the file
            and says to delete the folder or rerun with ``--overwrite``).
        """
        path = self.path / _SETTINGS
        try:
            settings = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._damaged(path, f"it cannot be read as JSON ({exc})") from exc
        if not isinstance(settings, dict):
            raise self._damaged(path, f"expected a JSON object of settings, got {type(settings).__name__}")
        return settings

    def _damaged(self, path: Path, what: str, delete: Path | None = None) -> DatasetFileError:
        """The error for a damaged file of this journal: what is wrong and the two fixes."""
        delete = self.path if delete is None else delete
        return DatasetFileError(
            f"{path}: {what}; the journal of an interrupted run of {self.out.name} is damaged: "
            f"delete {delete} and re-run the same command (its samples are solved again), or rerun "
            "with --overwrite (which discards the interrupted run)"
        )

    def check_parts(self, input_shapes: Mapping[str, tuple[int, ...]], output_shape: tuple[int, ...]) -> None:
        """Check every chunk file before its samples are counted as done.

        Each chunk must hold ``indices`` (``(k,)`` integers >= 0), ``times`` (``(k,)``),
        ``output`` and one ``input.<name>`` per input, float64 of shape ``(k, *shape)``,
        and ``digests`` (``(k, fields, DIGEST_SIZE)`` uint8), checked from the arrays'
        headers first; then every sample's values must match its digests and be finite.

        Parameters
        ----------
        input_shapes
            Input name -> the DOF shape of one sample, e.g. ``{"a": (1550,)}``.
        output_shape
            The output's DOF shape of one sample, e.g. ``(867,)`` or ``(867, 2)``.

        Raises
        ------
        DatasetFileError
            A chunk that cannot be read, holds other arrays, or a sample whose values do
            not match their digests or are not finite; the message names the file (and
            the sample) and the fixes (delete that file and re-run, which solves its
            samples again, or rerun with ``--overwrite``).
        """
        for path in self._part_files():
            problem = _part_problem(path, input_shapes, output_shape)
            if problem is not None:
                raise self._damaged(path, problem, delete=path)

    def start(self, settings: Mapping[str, Any]) -> None:
        """Create the folder (if needed) and write ``settings`` (if not there yet)."""
        self.path.mkdir(exist_ok=True)
        if not (self.path / _SETTINGS).exists():
            text = json.dumps(settings, sort_keys=True, indent=1, default=str).encode()
            _atomic_write(self.path / _SETTINGS, lambda fh: fh.write(text))

    def clear(self) -> None:
        """Delete everything in the folder (the folder, and its lock, stay)."""
        for entry in self.path.iterdir() if self.exists else ():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the folder and everything in it, and release the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.unlock()

    def write_part(
        self,
        rank: int,
        indices: Sequence[int],
        inputs: Mapping[str, np.ndarray],
        output: np.ndarray,
        times: Sequence[float],
    ) -> None:
        """Atomically add a chunk of finished samples, with their digests.

        The values are stored as float64; the digests (:func:`~fe_operators.data.digests.sample_digests`)
        are taken of the values as stored.

        Raises
        ------
        OSError
            The chunk cannot be written (e.g. ``ENOSPC``, the disk is full); its
            ``filename`` names the chunk, and no partial chunk is left.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return
        arrays = {"indices": idx, "output": np.ascontiguousarray(output, dtype="<f8"),
                  "times": np.asarray(times, dtype=np.float64)}
        arrays.update({f"input.{name}": np.ascontiguousarray(a, dtype="<f8") for name, a in inputs.items()})
        arrays["digests"] = sample_digests(idx, _part_fields(arrays))
        name = f"part-{rank:04d}-{int(idx[0]):09d}-{uuid.uuid4().hex[:8]}.npz"
        _atomic_write(self.path / name, lambda fh: np.savez(fh, **arrays))

    def _part_files(self) -> list[Path]:
        """Chunk files, sorted by name (stale temporaries are not listed)."""
        return sorted(self.path.glob("part-*.npz")) if self.exists else []

    def parts(self) -> Iterator[Part]:
        """The stored chunks, each verified (digests, finite values) as it is read.

        Raises
        ------
        DatasetFileError
            A chunk that cannot be read, or a sample in it that does not match its
            digests or holds NaN or infinite values; the message names the chunk, the
            sample and the fix (as :meth:`check_parts`).
        """
        for path in self._part_files():
            try:
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                problem = _content_problem(arrays)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                problem = f"it cannot be read ({type(exc).__name__}: {exc})"
            if problem is not None:
                raise self._damaged(path, problem, delete=path)
            inputs = {k.split(".", 1)[1]: a for k, a in arrays.items() if k.startswith("input.")}
            yield Part(arrays["indices"], inputs, arrays["output"], arrays["times"])

    def indices(self) -> np.ndarray:
        """Indices of all samples in the stored chunks."""
        found = []
        for path in self._part_files():
            try:
                with np.load(path) as z:
                    found.append(z["indices"])
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
