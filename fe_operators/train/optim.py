"""AdamW and the learning-rate schedules (linear warm-up, then cosine, step or constant).

The cosine schedule spans either a number of optimizer steps or a time budget (its progress
recomputed from the elapsed training time at every step), so that it ends with the run.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from fe_operators.train.config import SchedulerSection

__all__ = ["lr_factor", "build_optimizer", "build_scheduler"]


def lr_factor(settings: SchedulerSection, lr: float, steps_per_epoch: int, total_steps: int,
              time_progress: Callable[[], float] | None = None) -> Callable[[int], float]:
    r"""The multiplier :math:`\eta_s/\eta` of the peak rate after ``s`` optimizer steps.

    * warm-up (``s < w``): :math:`(s+1)/w`;
    * ``cosine``: :math:`\rho + (1-\rho)\,\tfrac12(1+\cos(\pi t))`, :math:`t = (s-w)/(S-w)`
      clipped to 1, :math:`\rho` = ``min_lr / lr``, :math:`S` = ``total_steps``; with
      ``time_progress`` (the schedule's ``length: time_budget``), :math:`t` is the larger of
      that and ``time_progress()`` (elapsed training time over the budget, read when the
      factor is computed), so the rate reaches ``min_lr`` when either limit is reached;
    * ``step``: :math:`\gamma^{\lfloor (s-w)/(k\,n)\rfloor}` (``k = step_epochs``,
      ``n = steps_per_epoch``);
    * ``none``: 1.

    Returns a plain function (so ``LambdaLR.state_dict`` stays plain data).
    """
    warmup, name = settings.warmup_steps, settings.name
    rho = settings.min_lr / lr
    span = max(1, total_steps - warmup)
    period = max(1, settings.step_epochs * steps_per_epoch)
    gamma = settings.gamma

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        s = step - warmup
        if name == "cosine":
            t = s / span if time_progress is None else max(s / span, time_progress())
            t = min(1.0, t)
            return rho + (1.0 - rho) * 0.5 * (1.0 + math.cos(math.pi * t))
        if name == "step":
            return gamma ** (s // period)
        return 1.0

    return factor


def build_optimizer(params: object, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``params``."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, settings: SchedulerSection, lr: float,
                    steps_per_epoch: int, total_steps: int,
                    time_progress: Callable[[], float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`lr_factor`.

    Its state (``state_dict``) is the step count and the last rates; a time-based schedule
    reads the elapsed time from ``time_progress``, which the caller restores when resuming.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(settings, lr, steps_per_epoch, total_steps, time_progress))
