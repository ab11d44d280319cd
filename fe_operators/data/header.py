"""What a dataset file is: opening it, checking its format, version and kind, and the damage errors.

A leaf shared by the steady reader (:class:`fe_operators.data.h5.FEFile`), the trajectory
reader (:class:`fe_operators.data.trajectories.TrajectoryFile`) and ``fe-operators info``:
each file is checked in one place before its metadata is trusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import h5py

from fe_operators.data.layout import FORMAT, FORMAT_VERSION, GROUP, KIND_STEADY, KIND_TRAJECTORIES, file_kind
from fe_operators.errors import DatasetFileError

__all__ = ["DAMAGE", "damaged_file_error", "dataset_group", "read_metadata", "wrong_kind_message"]

#: what h5py and Firedrake raise on a damaged file (bad signatures, checksums, JSON)
DAMAGE = (OSError, KeyError, ValueError, TypeError, RuntimeError)


def dataset_group(h5: h5py.File) -> Any:
    """``h5[GROUP]`` (the fe_operators group of a dataset file), or ``None`` when there is no such object (``h5.get`` also hides damage)."""
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


def wrong_kind_message(path: str, kind: str, attrs: Mapping[str, Any]) -> str:
    """Why a steady reader refuses a trajectory file (or the trajectory reader a steady one), and what reads it."""
    if kind == KIND_TRAJECTORIES:
        try:
            problem = json.loads(attrs["provenance"]).get("problem")
            shape = f" ({attrs['n_samples']} trajectories x {attrs['n_stored']} states x {attrs['n_dofs']} DOFs)"
        except (KeyError, ValueError, TypeError, AttributeError):
            problem, shape = None, ""
        family = f" of the time-dependent family {problem!r}" if isinstance(problem, str) else ""
        return (f"{path} holds trajectories{family}{shape}, not steady samples (inputs -> output); read it with "
                "fe_operators.data.read_trajectories(path), or train a rollout model on it")
    if kind == KIND_STEADY:
        return (f"{path} holds steady samples (inputs -> output), not trajectories; read it with "
                "fe_operators.data.FEFile or FEDataset, or generate trajectories with a time-dependent family")
    return (f"{path} holds data of an unknown kind {kind!r:.40} (this fe_operators reads {KIND_STEADY!r} and "
            f"{KIND_TRAJECTORIES!r}): upgrade fe_operators, or regenerate the file")


def read_metadata(path: str, kind: str, read: Callable[[h5py.Group], None]) -> None:
    """Open a dataset file, check its format, version and kind, then ``read(group)``.

    The one place both readers (:class:`FEFile`, and
    :class:`~fe_operators.data.trajectories.TrajectoryFile`) check what a file is before
    trusting its metadata; ``read`` gets the open ``/fe_operators`` group.

    Raises
    ------
    DatasetFileError
        The file is missing, not HDF5, not an fe_operators dataset, of another format
        version (version 1 had no per-sample digests: regenerate), of the other kind
        (the message names the right reader), or damaged (``read`` may raise it too).
    """
    if not os.path.isfile(path):
        raise DatasetFileError(f"no dataset file at {path}")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetFileError(f"{path} is not a readable HDF5 file (damaged, or not HDF5: "
                               f"{' '.join(str(exc).split())})") from exc
    try:
        with h5:
            g = dataset_group(h5)
            if not isinstance(g, h5py.Group):
                raise DatasetFileError(f"{path} is not an fe_operators dataset (no /{GROUP} group)")
            if g.attrs.get("format") != FORMAT:
                raise DatasetFileError(
                    f"{path} is not an fe_operators dataset: its /{GROUP} group has format "
                    f"{g.attrs.get('format')!r:.60}, expected {FORMAT!r} (a damaged file, or "
                    "another program's)"
                )
            version = int(g.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise DatasetFileError(
                    f"{path} has format version {version}; this fe_operators reads up to "
                    f"{FORMAT_VERSION}: upgrade fe_operators"
                )
            if version < FORMAT_VERSION:  # version 1 had no digests: its samples cannot be verified
                raise DatasetFileError(
                    f"{path} has format version {version}, written by an older fe_operators "
                    "without per-sample digests; regenerate it with this version (fe-operators "
                    "generate ... --overwrite)"
                )
            found = file_kind(g.attrs)
            if found != kind:
                raise DatasetFileError(wrong_kind_message(path, found, g.attrs))
            read(g)
    except DatasetFileError:
        raise
    except DAMAGE as exc:  # a bad signature, checksum, heap or attribute
        raise damaged_file_error(path, exc, "its metadata") from exc
