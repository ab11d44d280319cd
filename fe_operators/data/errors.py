"""The exceptions of the data pipeline (generation, HDF5 files, datasets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fe_operators.errors import FEOperatorsError

__all__ = ["DatasetFileError", "GenerationError", "NumberingError", "OutputError", "SettingsMismatchError"]


class OutputError(FEOperatorsError, OSError):
    """The output path cannot be written (missing folder, a folder in the way, no permission)."""


class DatasetFileError(FEOperatorsError, ValueError):
    """A file that is not a (readable) fe_operators dataset, or lacks what was asked for."""


class SettingsMismatchError(FEOperatorsError, ValueError):
    """An existing dataset (or interrupted run) was made with other settings.

    Parameters
    ----------
    path
        The file or folder holding the other settings.
    differing
        Setting name -> (stored value, requested value), for each setting that differs.
    """

    def __init__(self, path: str, differing: Mapping[str, tuple[Any, Any]]) -> None:
        self.path = str(path)
        self.differing = dict(differing)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{k}: stored {_short(a)}, requested {_short(b)}" for k, (a, b) in self.differing.items()]
        return (
            f"{self.path} was generated with other settings ({'; '.join(parts)}); "
            "use another --out, or --overwrite to replace it"
        )


class NumberingError(FEOperatorsError, ValueError):
    """Stored DOFs cannot be matched to the DOFs of a rebuilt mesh/space (no silent renumbering)."""


class GenerationError(FEOperatorsError, RuntimeError):
    """Data generation stopped: a sample failed (e.g. the solver did not converge).

    Parameters
    ----------
    sample
        Index of the failed sample.
    message
        What went wrong (for solver failures it names PETSc's reason).
    stored
        Number of valid samples stored in the output file.
    path
        The output file.
    """

    def __init__(self, sample: int, message: str, stored: int, path: str) -> None:
        self.sample = int(sample)
        self.message = message
        self.stored = int(stored)
        self.path = str(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"sample {self.sample} failed: {self.message}; stopped, {self.stored} valid samples "
            f"stored in {self.path} (the failed sample is not stored)"
        )


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of ``value`` cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
