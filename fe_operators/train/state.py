"""What a training run has done: :class:`TrainState` (saved in ``last.pt``) and :class:`TrainResult` (what ``fit`` returns)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch

__all__ = ["TrainResult", "TrainState"]


@dataclasses.dataclass
class TrainState:
    """Progress of a run; everything here is saved in ``last.pt``.

    Attributes
    ----------
    epoch
        Completed epochs.
    step
        Optimizer steps done.
    batches_done
        Batches of the current (unfinished) epoch done.
    epoch_start_sampler_state
        State of the data-order generator before the current epoch's permutation.
    epoch_loss_sum, epoch_samples
        Sum of batch losses times batch sizes, and samples, in the current epoch.
    epoch_time
        Seconds spent in the current epoch (across resumptions).
    elapsed
        Seconds of training (across resumptions).
    """

    epoch: int = 0
    step: int = 0
    batches_done: int = 0
    epoch_start_sampler_state: torch.Tensor | None = None
    epoch_loss_sum: float = 0.0
    epoch_samples: int = 0
    epoch_time: float = 0.0
    elapsed: float = 0.0


@dataclasses.dataclass
class TrainResult:
    """What :meth:`fe_operators.train.trainer.Trainer.fit` returns.

    Attributes
    ----------
    run_dir
        The run folder.
    epochs
        Completed epochs.
    step
        Optimizer steps done.
    stopped
        ``"completed"`` (all epochs) or ``"time_budget"`` (this invocation's budget: resume
        to go on; with a time-based schedule the run's budget: the run is done).
    best
        ``{"metric", "value", "epoch"}`` of the best validation value (``value`` None
        without validation data).
    history
        The metric rows, one per completed epoch.
    restored
        ``{"metric", "value", "epoch"}`` of the weights the model holds after
        :meth:`fe_operators.train.trainer.Trainer.fit` when they are ``best.pt``'s (``train.restore_best``), else None
        (the last weights).
    """

    run_dir: str
    epochs: int
    step: int
    stopped: Literal["completed", "time_budget"]
    best: dict[str, Any]
    history: list[dict[str, Any]]
    restored: dict[str, Any] | None = None
