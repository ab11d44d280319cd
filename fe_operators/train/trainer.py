"""The Trainer: FE-norm losses, AdamW with schedules, checkpoints and exact resumption.

Layering (override one method to change one step)::

    fit                       fresh start or resume, the epoch loop, stop on time budget,
    │                         then the best validation weights restored (restore_best)
    └─ train_one_epoch        data order, mid-epoch checkpoints, progress bar
       └─ train_one_batch     forward → compute_loss → backward → optimizer/scheduler step
    └─ finish_epoch           evaluate (validation metrics), metrics row, best.pt, last.pt;
       │                      without progress bars, one printed line (epoch_line)
       └─ evaluate            mean per-sample metrics over a dataset, no gradients

Units.  The trainer trains one :class:`~fe_operators.models.NormalizedModel`: the network
between its input and output normalizers (fitted on the train split), physical values in
and out.  Datasets yield raw ``(inputs, output)`` pairs, and the loss and every metric
are measured in physical units against the raw targets.  Checkpoints store that one
module, and :func:`~fe_operators.train.load_model` rebuilds it, so a loaded model's
outputs are the trainer's, bit for bit.

Reproducibility.  One seeded ``torch.Generator`` draws each epoch's permutation of the
train split; checkpoints store its state at the start of the epoch and the number of
batches done, the optimizer, the scheduler, every global RNG (torch, CUDA, NumPy,
Python), the metrics log, the best validation value and the training seconds so far.  A
run killed at any point (even by SIGKILL) and resumed from ``last.pt`` replays the same
permutation, skips the batches already done, and ends with the same weights as an
uninterrupted run (bitwise on the CPU with a fixed thread count).

Schedules that end with the time budget.  With ``train.scheduler.length: time_budget``
the cosine schedule's progress is the training time so far (validation included,
summed over resumptions) over ``train.time_budget``, recomputed at every step, so the
rate reaches ``min_lr`` when the budget runs out, however fast the machine.  The rate
then depends on the clock; resuming restores the seconds already spent, so a resumed run
follows the same schedule (and, with a deterministic clock, :attr:`Trainer.clock`,
ends with the same weights).  The budget then ends the run: the epoch it cuts short is
validated and logged like a full one (its last weights, at ``min_lr``, may be the best).

The end of a run.  Unless ``train.restore_best`` is off, :meth:`Trainer.fit` ends by
loading ``best.pt``'s weights into the model (one printed line names the epoch and its
validation value, also in :attr:`TrainResult.restored`); ``last.pt`` keeps the last
weights for resuming.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fe_operators.errors import CheckpointError, RunDirectoryError, SpaceMismatchError, TrainingError
from fe_operators.models.normalized import Inputs, NormalizedModel
from fe_operators.train.checkpoint import (
    check_spaces, model_class_path, model_payload, read_checkpoint, remove_stale_temporaries, save_checkpoint,
    space_dicts,
)
from fe_operators.train.config import TrainSection
from fe_operators.train.metrics import MetricsLog
from fe_operators.train.optim import build_optimizer, build_scheduler
from fe_operators.train.rng import rng_state, seed_everything, set_rng_state
from fe_operators.train.sampler import EpochBatchSampler
from fe_operators.train.state import TrainResult, TrainState

__all__ = ["Trainer", "LossFn"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the block, then restore."""
    if not enabled:
        yield
        return
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _inputs_to(x: Inputs, device: torch.device) -> Inputs:
    """Move a batch of inputs (tensor or dict of tensors) to ``device``."""
    return x.to(device) if isinstance(x, torch.Tensor) else {n: v.to(device) for n, v in x.items()}


def _layout_key(layout: Mapping[str, Any]) -> tuple:
    """A normalizer layout, comparable whatever the order of input names."""
    return tuple(sorted(v) if isinstance(v, (list, tuple)) else v for v in (layout.get("input"), layout.get("output")))


def _config_json(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class Trainer:
    """Train a model in FE norms with AdamW, schedules, checkpoints and exact resumption.

    Parameters
    ----------
    model
        A :class:`~fe_operators.models.NormalizedModel` (a network between its
        normalizers), or a network, trained as one without normalizers; either maps
        physical inputs to physical output DOFs.  The network must be checkpointable: a
        registered model class (:func:`~fe_operators.models.register_model_class`) with
        ``config`` and ``from_config``.
    loss
        ``(prediction, target) -> scalar``, the mean over the batch, on physical DOF
        tensors, e.g. ``RelativeLoss(FENorm.l2(V))``.
    train_data
        Dataset of raw ``(inputs, output)`` samples.
    val_data
        Validation dataset (raw samples); its metrics pick ``best.pt``.  Without it no
        ``best.pt`` is written.
    run_dir
        Folder of ``last.pt``, ``best.pt``, ``metrics.csv``, ``metrics.json``.
    settings
        The ``train`` section of a run configuration (epochs, batch size, lr, ...);
        its ``loss``/``metrics`` names are not used here (pass callables).
    metrics
        Validation metrics by name, each like ``loss``; default ``{"loss": loss}``.
    select
        The metric whose validation value (lower is better) picks ``best.pt``; default
        the first of ``metrics``.
    spaces
        Space key (``"inputs/<name>"``, ``"output"``) -> SpaceInfo (or dict) of the data;
        stored in checkpoints and checked when resuming.
    run_info
        Plain data describing the run (e.g. the resolved configuration and the dataset's
        fingerprint), stored in checkpoints under ``"run"``.

    Attributes
    ----------
    clock
        ``() -> seconds``, the clock of the time budget and of time-based schedules
        (default ``time.monotonic``; a test may swap in a deterministic one).

    Raises
    ------
    TypeError
        The model cannot be checkpointed (see
        :func:`~fe_operators.train.checkpoint.model_class_path`).
    ValueError
        ``select`` is not a metric name.
    ConfigError
        ``settings.scheduler.length`` is ``"time_budget"`` without a ``time_budget``.

    Examples
    --------
    >>> loss = RelativeLoss(FENorm.l2(V))                          # doctest: +SKIP
    >>> model = NormalizedModel(network, *train.fit_normalizers(per="global"))
    >>> trainer = Trainer(model, loss, train, val, run_dir="runs/a",
    ...                   settings=TrainSection(epochs=50, lr=1e-3))
    >>> result = trainer.fit()             # or trainer.fit(resume=True) after a crash
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss: LossFn,
        train_data: Dataset,
        val_data: Dataset | None = None,
        *,
        run_dir: str | Path,
        settings: TrainSection | None = None,
        metrics: Mapping[str, LossFn] | None = None,
        select: str | None = None,
        spaces: Mapping[str, Any] | None = None,
        run_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else TrainSection()
        s = self.settings
        s.validate("train")
        self.clock: Callable[[], float] = time.monotonic
        self.state = TrainState()
        self.timed_schedule = s.scheduler.length == "time_budget"
        self._tick: float | None = None  # clock at the last time accounting inside an epoch
        self.device = torch.device(s.device)
        self.model_class = model_class_path(model)
        self.model = (model if isinstance(model, NormalizedModel) else NormalizedModel(model)).to(self.device)
        self.loss = loss
        self.metrics: dict[str, LossFn] = dict(metrics) if metrics else {"loss": loss}
        select = select if select is not None else next(iter(self.metrics))
        if select not in self.metrics:
            raise ValueError(f"select must name one of the metrics {list(self.metrics)}, got {select!r}")
        self.select = f"val_{select}"
        self.spaces = space_dicts(spaces)
        self.run_info = dict(run_info) if run_info is not None else None
        self.run_dir = Path(run_dir)
        self.train_data = train_data
        self.val_data = val_data
        self.sampler_generator = torch.Generator().manual_seed(s.seed)
        self.loader_generator = torch.Generator().manual_seed(s.seed + 1)
        self.batch_sampler = EpochBatchSampler(len(train_data), s.batch_size, self.sampler_generator)
        self.train_loader = DataLoader(train_data, batch_sampler=self.batch_sampler, num_workers=s.num_workers,
                                       generator=self.loader_generator)
        self.steps_per_epoch = len(self.batch_sampler)
        self.optimizer = build_optimizer(self.model.parameters(), s.lr, s.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, s.scheduler, s.lr, self.steps_per_epoch,
                                         s.epochs * self.steps_per_epoch,
                                         self.budget_progress if self.timed_schedule else None)
        self.log = MetricsLog(self.run_dir, self.select)
        self.show_progress = s.progress if s.progress is not None else sys.stderr.isatty()
        self.invocation_start = 0.0

    # ------------------------------------------------------------------ paths
    @property
    def last_path(self) -> Path:
        """``run_dir/last.pt``: the newest state, for resuming."""
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        """``run_dir/best.pt``: the weights with the best validation value."""
        return self.run_dir / "best.pt"

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``settings.epochs`` epochs are done (or the time budget is spent).

        Parameters
        ----------
        resume
            Continue the run in :attr:`run_dir` from ``last.pt`` (weights, optimizer,
            scheduler, RNGs, data order, position in the epoch, metrics, best value).
            Without it, the global RNGs are seeded with ``settings.seed`` and the run
            folder must not hold a run yet.

        Raises
        ------
        RunDirectoryError
            A fresh run would overwrite ``last.pt`` of an earlier run.
        CheckpointError
            Resuming without ``last.pt``, or from one that does not fit this trainer.
        SpaceMismatchError
            The checkpoint was trained on other function spaces.
        TrainingError
            The loss became NaN or infinite.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for target in (self.last_path, self.best_path):  # left by a run killed mid-write
            remove_stale_temporaries(target)
        if resume:
            if not self.last_path.exists():
                raise CheckpointError(self.last_path, "no checkpoint to resume from; start without resuming")
            self.load_state_dict(read_checkpoint(self.last_path), source=str(self.last_path))
        else:
            if self.last_path.exists():
                raise RunDirectoryError(
                    f"{self.run_dir} already holds a run ({self.last_path.name}); resume it, or choose another "
                    "run folder")
            seed_everything(self.settings.seed)
        self.invocation_start = self.clock()
        stopped: Literal["completed", "time_budget"] = "completed"
        with _deterministic(self.settings.deterministic):
            while self.state.epoch < self.settings.epochs:
                if self.timed_schedule and self._over_budget():  # resuming a run whose budget is spent
                    stopped = "time_budget"
                    break
                train_loss = self.train_one_epoch()
                if train_loss is None:
                    stopped = "time_budget"
                    break
                self.finish_epoch(train_loss)
                if self.state.epoch < self.settings.epochs and self._over_budget():
                    stopped = "time_budget"
                    break
        restored = self.restore_best() if self.settings.restore_best else None
        return TrainResult(str(self.run_dir), self.state.epoch, self.state.step, stopped, dict(self.log.best),
                           [dict(r) for r in self.log.rows], restored)

    def _over_budget(self) -> bool:
        """Whether the time budget is spent: the run's (time-based schedule) or this invocation's."""
        budget = self.settings.time_budget
        if budget is None:
            return False
        if self.timed_schedule:
            return self.state.elapsed >= budget
        return self.clock() - self.invocation_start > budget

    def budget_progress(self) -> float:
        """Training seconds so far (this step's included) over ``train.time_budget``.

        The progress of a time-based schedule (``scheduler.length: time_budget``).
        """
        elapsed = self.state.elapsed
        if self._tick is not None:  # inside an epoch: the time since the last accounting too
            elapsed += self.clock() - self._tick
        return elapsed / float(self.settings.time_budget or math.inf)

    def restore_best(self) -> dict[str, Any] | None:
        """Load ``best.pt``'s weights into the model and print which epoch they are from.

        Returns
        -------
        dict or None
            The log's best ``{"metric", "value", "epoch"}``, or None where there is no
            best checkpoint (no validation data, or no epoch completed).

        Raises
        ------
        CheckpointError
            ``best.pt`` is unreadable or holds another epoch than the log's best.
        """
        best = dict(self.log.best)
        if best.get("epoch") is None or not self.best_path.exists():
            return None
        data = read_checkpoint(self.best_path)
        epoch = data["progress"]["epoch"]
        if epoch != best["epoch"]:
            raise CheckpointError(self.best_path, f"holds the weights of epoch {epoch}, but the run's best "
                                                  f"{best['metric']} is at epoch {best['epoch']}")
        try:
            self.model.load_state_dict(data["model"]["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(self.best_path, f"does not fit this model: {exc}") from None
        print(f"restored the weights of epoch {epoch} ({best['metric']} {best['value']:.3e}, the best) from "
              f"{self.best_path}", flush=True)
        return best

    def train_one_epoch(self) -> float | None:
        """Run the rest of the current epoch.

        Returns
        -------
        float or None
            Mean training loss per sample over the epoch, or ``None`` if the time budget
            stopped it (``last.pt`` then holds the position).  With a time-based schedule
            the budget ends the run, not just this invocation: the epoch cut short is then
            returned as done, so that its last weights (at ``min_lr``) are validated and
            can be the best.
        """
        st = self.state
        self.model.train()
        if st.batches_done == 0:
            st.epoch_start_sampler_state = self.sampler_generator.get_state()
        else:
            self.sampler_generator.set_state(st.epoch_start_sampler_state)
        self.batch_sampler.skip = st.batches_done
        every = self.settings.checkpoint_every
        desc = f"epoch {st.epoch + 1}" + ("" if self.timed_schedule else f"/{self.settings.epochs}")
        bar = tqdm(total=self.steps_per_epoch, initial=st.batches_done, disable=not self.show_progress,
                   desc=desc, leave=False, dynamic_ncols=True)
        try:
            self._tick = self.clock()
            for x, y in self.train_loader:
                loss = self.train_one_batch(x, y)
                n = int(y.shape[0])
                st.step += 1
                st.batches_done += 1
                st.epoch_loss_sum += loss * n
                st.epoch_samples += n
                now = self.clock()
                st.epoch_time += now - self._tick
                st.elapsed += now - self._tick
                self._tick = now
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3e}", refresh=False)
                if st.batches_done < self.steps_per_epoch:
                    saved = bool(every) and st.step % every == 0
                    if saved:
                        self.save_checkpoint(self.last_path, "last")
                    if self._over_budget():
                        if self.timed_schedule:  # the schedule is over: finish the run with this epoch
                            break
                        if not saved:
                            self.save_checkpoint(self.last_path, "last")
                        return None
        finally:
            bar.close()
            self._tick = None
        return st.epoch_loss_sum / max(st.epoch_samples, 1)

    def train_one_batch(self, x: Inputs, y: torch.Tensor) -> float:
        """One optimizer step on a batch of raw inputs ``x`` and raw targets ``y``.

        Returns
        -------
        float
            The batch loss (before the step).

        Raises
        ------
        TrainingError
            The loss is NaN or infinite.
        """
        x, y = _inputs_to(x, self.device), y.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(self.forward(x), y)
        if not bool(torch.isfinite(loss)):
            raise TrainingError(self.state.epoch, self.state.step,
                                f"the loss is {float(loss.detach())}; lower train.lr, check the data for NaN, or "
                                "raise the normalizers' eps")
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def forward(self, x: Inputs) -> torch.Tensor:
        """Physical outputs for raw inputs: the model (encode, network, decode)."""
        return self.model(x)

    def compute_loss(self, pred: torch.Tensor, y: torch.Tensor, fn: LossFn | None = None) -> torch.Tensor:
        """``fn(pred, y)`` (default: the training loss) after checking that the shapes agree.

        Raises
        ------
        SpaceMismatchError
            The model's outputs do not have the shape of the targets' DOF tensors.
        """
        if pred.shape != y.shape:
            raise SpaceMismatchError(
                f"the model outputs DOF tensors of shape {tuple(pred.shape)} but the targets have shape "
                f"{tuple(y.shape)}: the model was built for another output space than the dataset's")
        return (self.loss if fn is None else fn)(pred, y)

    @torch.no_grad()
    def evaluate(self, data: Dataset | DataLoader | None = None) -> dict[str, float]:
        """Mean per-sample value of each metric over a dataset (default: the validation set).

        Each metric's batch mean is weighted by the batch size, so the result is the mean
        over samples whatever the batching.

        Raises
        ------
        ValueError
            No dataset given and no validation set.
        """
        data = self.val_data if data is None else data
        if data is None:
            raise ValueError("no dataset to evaluate: pass one, or give the Trainer val_data")
        loader = data if isinstance(data, DataLoader) else DataLoader(  # own generator: leaves global RNG alone
            data, batch_size=self.settings.batch_size, shuffle=False, num_workers=self.settings.num_workers,
            generator=torch.Generator())
        was_training = self.model.training
        self.model.eval()
        sums = {name: 0.0 for name in self.metrics}
        count = 0
        try:
            for x, y in loader:
                x, y = _inputs_to(x, self.device), y.to(self.device)
                pred = self.forward(x)
                n = int(y.shape[0])
                for name, fn in self.metrics.items():
                    sums[name] += float(self.compute_loss(pred, y, fn)) * n
                count += n
        finally:
            self.model.train(was_training)
        return {name: v / max(count, 1) for name, v in sums.items()}

    def finish_epoch(self, train_loss: float) -> None:
        """Validate, log the epoch's metrics row, write ``best.pt`` (if better) and ``last.pt``."""
        st = self.state
        tick = self.clock()
        val = self.evaluate() if self.val_data is not None else {}
        spent = self.clock() - tick
        row: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step, "train_loss": train_loss}
        row.update({f"val_{k}": v for k, v in val.items()})
        row.update({"lr": float(self.scheduler.get_last_lr()[0]), "epoch_time": st.epoch_time + spent,
                    "elapsed": st.elapsed + spent})
        st.epoch += 1
        st.batches_done = 0
        st.epoch_loss_sum, st.epoch_samples, st.epoch_time = 0.0, 0, 0.0
        st.elapsed += spent
        st.epoch_start_sampler_state = None
        best = self.log.append(row)
        if best:
            self.save_checkpoint(self.best_path, "best")  # before last.pt: a crash in between redoes it
        self.save_checkpoint(self.last_path, "last")
        self.log.write()
        if not self.show_progress:  # a log file, not a terminal: one line per epoch instead of bars
            print(self.epoch_line(row, best), flush=True)

    def epoch_line(self, row: Mapping[str, Any], best: bool = False) -> str:
        """One line on an epoch: losses, validation metrics (``*``: new best), seconds.

        Examples
        --------
        ``epoch 3/40: train_loss 2.113e-02, val_rel_l2 2.504e-02*, val_rel_h1 9.871e-02 (12.3 s)``;
        with a time-based schedule ``epoch 3 (41% of the budget): ...``.
        """
        parts = [f"train_loss {row['train_loss']:.3e}"]
        parts += [f"{k} {v:.3e}{'*' if best and k == self.select else ''}" for k, v in row.items()
                  if k.startswith("val_")]
        where = f"{row['epoch']}/{self.settings.epochs}"
        if self.timed_schedule:  # the budget, not the epochs, sets the length
            where = f"{row['epoch']} ({min(1.0, row['elapsed'] / float(self.settings.time_budget)):.0%} of the budget)"
        return f"epoch {where}: {', '.join(parts)} ({row['epoch_time']:.1f} s)"

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self, kind: Literal["last", "best"]) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`fe_operators.train.checkpoint`); training state for ``"last"``."""
        st = self.state
        payload: dict[str, Any] = {
            "kind": kind,
            "model": model_payload(self.model),
            "spaces": self.spaces,
            "run": self.run_info,
            "progress": {"epoch": st.epoch, "step": st.step, "best": dict(self.log.best)},
            "training": None,
        }
        if kind == "last":
            rng = rng_state()
            rng["sampler"] = self.sampler_generator.get_state()
            rng["loader"] = self.loader_generator.get_state()
            payload["training"] = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                "trainer": dataclasses.asdict(st),
                "log": self.log.state_dict(),
            }
        return payload

    def save_checkpoint(self, path: str | Path, kind: Literal["last", "best"] = "last") -> None:
        """Write :meth:`checkpoint_payload` atomically to ``path``."""
        save_checkpoint(path, self.checkpoint_payload(kind))

    def load_state_dict(self, data: Mapping[str, Any], source: str = "the checkpoint") -> None:
        """Restore everything from a ``last.pt`` dict (see :func:`read_checkpoint`).

        Raises
        ------
        CheckpointError
            The checkpoint holds another model class or config, another normalizer layout,
            or no training state.
        SpaceMismatchError
            It was trained on other function spaces than :attr:`spaces`.
        """
        model = data["model"]
        if model["class"] != self.model_class:
            raise CheckpointError(source, f"holds a {model['class']} model; this run trains a {self.model_class}")
        current = self.model.network.config
        if _config_json(model["config"]) != _config_json(current):
            raise CheckpointError(source, f"holds a model with config {_config_json(model['config'])}; this run's "
                                          f"model has config {_config_json(current)}")
        check_spaces(data["spaces"], self.spaces, expected_name=f"the checkpoint {source}",
                     actual_name="this run's data")
        if _layout_key(model["normalizers"]) != _layout_key(self.model.layout):
            raise CheckpointError(source, f"holds normalizers {model['normalizers']}; this run's model has "
                                          f"{self.model.layout} (data.normalize_inputs/normalize_output)")
        training = data.get("training")
        if not training:
            raise CheckpointError(source, "holds no training state (a best.pt or exported model); resume from last.pt")
        try:
            self.model.load_state_dict(model["state_dict"])
            self.optimizer.load_state_dict(training["optimizer"])
            self.scheduler.load_state_dict(training["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(source, f"does not fit this trainer: {type(exc).__name__}: {exc}") from None
        set_rng_state(training["rng"])
        self.sampler_generator.set_state(training["rng"]["sampler"])
        self.loader_generator.set_state(training["rng"]["loader"])
        self.state = TrainState(**training["trainer"])
        self.log.load_state_dict(training["log"])
