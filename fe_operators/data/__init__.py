"""Data: FE solves -> one HDF5 file -> a torch ``Dataset``.

* :mod:`~fe_operators.data.generation` — resumable, ensemble-parallel generation
  (:func:`generate_dataset`), built from :mod:`~fe_operators.data.settings` (what decides
  the samples), :mod:`~fe_operators.data.plan` (what is missing),
  :mod:`~fe_operators.data.worker` (one rank's solve loop) and
  :mod:`~fe_operators.data.merge` (journal -> file);
* :mod:`~fe_operators.data.generate` — the ``fe-operators generate`` command
  (:func:`main_generate`);
* :mod:`~fe_operators.data.h5` — the file layout, :class:`FEFile` (read arrays, rebuild
  mesh and spaces with checked DOF numbering); :mod:`~fe_operators.data.h5_writer` writes
  it, :mod:`~fe_operators.data.digests` checks every sample's bytes,
  :mod:`~fe_operators.data.disk` recognises a full disk;
* :mod:`~fe_operators.data.journal` — the crash-safe journal of an unfinished run;
* :mod:`~fe_operators.data.dataset` — :class:`FEDataset` (raw samples, normalizers fitted
  with :meth:`FEDataset.fit_normalizers`), :func:`split_indices`.

Importing this package does not import Firedrake; :func:`generate_dataset` and
:func:`main_generate` are loaded on first access.
"""

from __future__ import annotations

from typing import Any

from fe_operators.data.dataset import FEDataset, split_indices
from fe_operators.data.h5 import FEFile, FESpaces
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
    "UnitGaussianNormalizer",
    "generate_dataset",
    "main_generate",
    "split_indices",
]

#: lazily loaded name -> its module (they pull in MPI, and Firedrake when run)
_LAZY = {"generate_dataset": "generation", "GenerationReport": "generation", "main_generate": "generate"}


def __getattr__(name: str) -> Any:
    """Load the generation entry points on first access."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"fe_operators.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
