"""Data: FE solves -> one HDF5 file -> a torch ``Dataset``.

* :mod:`~fe_operators.data.generate` — ``fe-operators generate``: resumable, ensemble-
  parallel generation (:func:`generate_dataset`, :func:`main_generate`);
* :mod:`~fe_operators.data.h5` — the file layout, :class:`FEFile` (read arrays, rebuild
  mesh and spaces with checked DOF numbering);
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

_LAZY = {"generate_dataset", "main_generate", "GenerationReport"}


def __getattr__(name: str) -> Any:
    """Load the generation entry points on first access (they pull in MPI and Firedrake)."""
    if name in _LAZY:
        from fe_operators.data import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
