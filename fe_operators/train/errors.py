"""The exceptions of the training pipeline (configuration, checkpoints, training runs).

Each derives from :class:`fe_operators.errors.FEOperatorsError` and from the built-in
exception a Python user would expect, and builds its message in ``__str__`` from the
attributes it carries, so callers can inspect what went wrong.
"""

from __future__ import annotations

import os

from fe_operators.errors import ConfigError, FEOperatorsError

__all__ = ["ConfigError", "CheckpointError", "TrainingError", "RunDirectoryError"]


class CheckpointError(FEOperatorsError, ValueError):
    """A checkpoint that is missing, unreadable, corrupt, or does not fit what it is loaded into.

    Parameters
    ----------
    path
        The checkpoint file.
    reason
        What is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"checkpoint {self.path}: {self.reason}"


class TrainingError(FEOperatorsError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite).

    Parameters
    ----------
    epoch
        Zero-based epoch in which it happened.
    step
        Optimizer steps done before the failing batch.
    message
        What happened and what to try.
    """

    def __init__(self, epoch: int, step: int, message: str) -> None:
        self.epoch = int(epoch)
        self.step = int(step)
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step + 1}: {self.message}"


class RunDirectoryError(FEOperatorsError, FileExistsError):
    """A new run would overwrite the checkpoints of an existing run in the same folder."""
