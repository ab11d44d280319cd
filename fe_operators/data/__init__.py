"""Data: FE solves -> one HDF5 file -> a torch ``Dataset``.

* :mod:`~fe_operators.data.generation` — resumable, ensemble-parallel generation
  (:func:`generate_dataset`), built from :mod:`~fe_operators.data.settings` (what decides
  the samples), :mod:`~fe_operators.data.plan` (what is missing),
  :mod:`~fe_operators.data.worker` (one rank's solve loop) and
  :mod:`~fe_operators.data.merge` (journal -> file);
* :mod:`~fe_operators.data.h5` — the file layout, :class:`FEFile` (read arrays, rebuild
  mesh and spaces with checked DOF numbering); :mod:`~fe_operators.data.h5_writer` writes
  it, :mod:`~fe_operators.data.digests` checks every sample's bytes,
  :mod:`~fe_operators.data.disk` recognises a full disk;
* :mod:`~fe_operators.data.trajectories` — trajectory files of time-dependent families
  (the same generation, one sample a trajectory): :func:`read_trajectories` ->
  :class:`TrajectoryData`, the arrays a rollout surrogate trains on;
* :mod:`~fe_operators.data.journal` — the crash-safe journal of an unfinished run;
* :mod:`~fe_operators.data.dataset` — :class:`FEDataset` (raw samples, normalizers fitted
  with :meth:`FEDataset.fit_normalizers`), :func:`split_indices`, :func:`split_rows` (a
  run's ``data.split``).

Importing this package does not import Firedrake; :func:`generate_dataset` is loaded on
first access.  The ``fe-operators generate`` command is :mod:`fe_operators.cli.generate`.
"""

from __future__ import annotations

from typing import Any

from fe_operators.data.dataset import FEDataset, split_indices, split_rows
from fe_operators.data.h5 import FEFile, FESpaces
from fe_operators.data.trajectories import TrajectoryData, TrajectoryFile, read_trajectories
from fe_operators.errors import (  # re-exported: the data pipeline's errors
    DatasetFileError,
    GenerationError,
    NumberingError,
    OutputError,
    SettingsMismatchError,
)
from fe_operators.models.normalized import UnitGaussianNormalizer  # re-exported: fitted by FEDataset

__all__ = [
    "DatasetFileError",
    "FEDataset",
    "FEFile",
    "FESpaces",
    "GenerationError",
    "GenerationReport",
    "NumberingError",
    "OutputError",
    "SettingsMismatchError",
    "TrajectoryData",
    "TrajectoryFile",
    "UnitGaussianNormalizer",
    "generate_dataset",
    "read_trajectories",
    "split_indices",
    "split_rows",
]

#: lazily loaded name -> its module (they pull in MPI, and Firedrake when run)
_LAZY = {"generate_dataset": "generation", "GenerationReport": "generation"}


def __getattr__(name: str) -> Any:
    """Load the generation entry points on first access."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"fe_operators.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
