"""``fe-operators train``: train a model from a YAML run configuration.

Usage::

    fe-operators train --config run.yaml            # a new run in out.dir
    fe-operators train --config run.yaml --resume   # continue it from out.dir/last.pt
    fe-operators train --print-config               # every key, documented, at its default

(also ``python -m fe_operators.train``).  A run folder holds ``config.yaml`` (the
resolved configuration), ``metrics.csv``, ``metrics.json``, ``best.pt`` (best validation
value) and ``last.pt`` (newest state).  At the end, ``best.pt`` is evaluated on the test
split and the result written to ``metrics.json`` under ``"test"``.

Models are built by the family named in ``model.type``, looked up in
:data:`MODEL_BUILDERS` (filled by :mod:`fe_operators.models`, or with
:func:`register_model`): a builder gets the ``model`` section and the train split
(:class:`~fe_operators.data.FEDataset`, whose ``file`` describes the spaces) and returns
a checkpointable ``torch.nn.Module``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch
import yaml

from fe_operators.cli import command
from fe_operators.data import FEDataset, FEFile, split_indices
from fe_operators.errors import CheckpointError, ConfigError, FEOperatorsError, SpaceMismatchError, UsageError
from fe_operators.models.normalized import NormalizedModel
from fe_operators.train.checkpoint import atomic_write, check_spaces, load_model, read_checkpoint
from fe_operators.train.config import (
    ModelSection, RunConfig, config_to_dict, default_config_yaml, load_config, register_model_schema,
)
from fe_operators.train.rng import seed_everything
from fe_operators.train.trainer import Trainer, TrainResult

__all__ = ["MODEL_BUILDERS", "ModelBuilder", "register_model", "build_model", "run_training", "main_train",
           "pin_threads"]

ModelBuilder = Callable[[ModelSection, FEDataset], torch.nn.Module]

#: model type -> builder, or "package.module:function" of one (imported on first use)
MODEL_BUILDERS: dict[str, Union[ModelBuilder, str]] = {}

#: keys that may change when resuming a run (they do not change the trajectory)
RESUMABLE_CHANGES = ("data.path", "data.preload", "train.epochs", "train.time_budget", "train.progress",
                     "train.num_workers", "train.device", "train.threads", "train.checkpoint_every", "out.dir")


def register_model(model_type: str, builder: ModelBuilder | str, schema: type | None = None) -> None:
    """Make ``model.type: <model_type>`` buildable.

    Parameters
    ----------
    model_type
        The name used in configurations.
    builder
        ``(model_section, train_dataset) -> nn.Module``, or its ``"module:function"``.
    schema
        Optional dataclass checking the section's other keys (see
        :func:`~fe_operators.train.config.register_model_schema`).
    """
    MODEL_BUILDERS[model_type] = builder
    if schema is not None:
        register_model_schema(model_type, schema)


def build_model(section: ModelSection, dataset: FEDataset) -> torch.nn.Module:
    """Build the model of ``section`` for ``dataset`` with its registered builder.

    Raises
    ------
    ConfigError
        No builder for ``section.type`` (the message lists the registered types), or
        the builder rejects the options (``ValueError``/``TypeError``).
    """
    builder = MODEL_BUILDERS.get(section.type)
    if builder is None:
        known = ", ".join(sorted(MODEL_BUILDERS)) or "none registered"
        raise ConfigError("model.type", f"no model builder for {section.type!r}; available types: {known}")
    if isinstance(builder, str):
        module, _, name = builder.partition(":")
        builder = getattr(importlib.import_module(module), name)
    try:
        return builder(section, dataset)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FEOperatorsError):
            raise
        raise ConfigError("model", f"the {section.type!r} builder rejected the section: {exc}") from exc


def pin_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in torch and in numba's parallel kernels (graphs, sparse products).

    numba cannot go above the pool it started with (``NUMBA_NUM_THREADS``, by default the
    number of cores), so its count is capped there.
    """
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _split(file: FEFile, split: list, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test file rows: counts (all ints) or fractions of the done samples."""
    n = int(file.done.sum())
    if all(isinstance(v, int) for v in split):
        if sum(split) > n:
            raise ConfigError("data.split", f"asks for {sum(split)} samples; {file.path} has {n} valid samples")
        fractions = [v / n for v in split]
    else:
        fractions = [float(v) for v in split]
    train, val, test = split_indices(file.done, fractions, seed)
    if train.size == 0 or val.size == 0:
        raise ConfigError("data.split", f"{split} of {n} samples leaves the train or val split empty")
    return train, val, test


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def run_training(cfg: RunConfig, resume: bool = False) -> TrainResult:
    """Build data, model and trainer from a configuration, train, and test ``best.pt``.

    Parameters
    ----------
    cfg
        A validated configuration (:func:`~fe_operators.train.config.load_config`).
    resume
        Continue the run in ``cfg.out.dir`` from ``last.pt``.

    Raises
    ------
    ConfigError
        Invalid splits, unknown model type, an existing run without ``resume``, or a
        changed configuration when resuming (other than :data:`RESUMABLE_CHANGES`).
    CheckpointError
        Resuming without a (valid) ``last.pt``.
    SpaceMismatchError
        Resuming on a dataset whose spaces (or DOF numbering) differ from the run's.
    DatasetFileError
        ``data.path`` is not a dataset file.
    """
    run_dir = Path(cfg.out.dir)
    last = run_dir / "last.pt"
    resolved = config_to_dict(cfg)
    stored = None
    if resume:
        if not last.exists():
            raise CheckpointError(last, "no such file; nothing to resume (run without --resume to start a new run)")
        stored = read_checkpoint(last)
        old = (stored.get("run") or {}).get("config") or {}
        changed = [k for k in _changed_keys(old, resolved) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(changed[0], f"differs from the run being resumed ({last}); changed keys: "
                                          f"{', '.join(changed)}")
    elif last.exists():
        raise ConfigError("out.dir", f"{run_dir} already holds a run; pass --resume to continue it, or choose "
                                     "another out.dir")
    if cfg.train.threads is not None:
        pin_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)

    file = FEFile(cfg.data.path)
    if stored is not None:
        check_spaces(stored["spaces"], file.space_dicts, expected_name=f"the run in {run_dir}",
                     actual_name=f"the dataset {file.path}")
        numbering = ((stored.get("run") or {}).get("dataset") or {}).get("numbering")
        if numbering and numbering != file.numbering:
            raise SpaceMismatchError(f"the dataset {file.path} numbers its DOFs differently from the one the run "
                                     f"in {run_dir} was trained on (another mesh or generator)")
    train_idx, val_idx, test_idx = _split(file, cfg.data.split, cfg.data.seed)
    dtype = getattr(torch, cfg.data.dtype)
    datasets = [FEDataset(file.path, idx, dtype=dtype, preload=cfg.data.preload) for idx in (train_idx, val_idx)]
    test = FEDataset(file.path, test_idx, dtype=dtype, preload=cfg.data.preload) if test_idx.size else None
    x_norm = y_norm = None  # fitted on the train split; a resumed run then loads the stored ones
    if cfg.data.normalize_inputs != "none":
        x_norm, _ = datasets[0].fit_normalizers(per=cfg.data.normalize_inputs)
    if cfg.data.normalize_output != "none":
        _, y_norm = datasets[0].fit_normalizers(per=cfg.data.normalize_output)

    from fe_operators.train.losses import relative_loss_for_file

    names = [cfg.train.loss] + [m for m in cfg.train.metrics if m != cfg.train.loss]
    metrics = {name: relative_loss_for_file(file, name) for name in names}
    model = NormalizedModel(build_model(cfg.model, datasets[0]), x_norm, y_norm)
    run_info = {"config": resolved, "dataset": {"path": file.path, "numbering": dict(file.numbering)}}
    trainer = Trainer(model, metrics[cfg.train.loss], datasets[0], datasets[1], run_dir=run_dir,
                      settings=cfg.train, metrics=metrics, select=cfg.train.loss, spaces=file.space_dicts,
                      run_info=run_info)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(resolved, sort_keys=False)
    atomic_write(run_dir / "config.yaml", lambda f: f.write(text.encode()))
    result = trainer.fit(resume=resume)
    if result.stopped == "completed" and test is not None:
        best = load_model(trainer.best_path, device=trainer.device)
        trainer.model.load_state_dict(best.model.state_dict())
        trainer.log.test = trainer.evaluate(test)
        trainer.log.write()
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fe-operators train", description="Train a model from a YAML configuration.")
    p.add_argument("--config", metavar="FILE", help="run configuration (YAML); see --print-config")
    p.add_argument("--resume", action="store_true", help="continue the run in out.dir from its last.pt")
    p.add_argument("--print-config", nargs="?", const=ModelSection.type, metavar="MODEL_TYPE",
                   help="print every key with its default (and those of model family MODEL_TYPE) and exit")
    return p


@command("train")
def main_train(argv: list[str]) -> int:
    """Entry point of ``fe-operators train`` (``main_train(argv=None)``); returns the exit status.

    0 on success, 1 on a data/checkpoint/training error, 2 on a usage or configuration
    error; errors are one line on stderr (:func:`fe_operators.cli.run_command`).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.print_config:
        sys.stdout.write(default_config_yaml(args.print_config))
        return 0
    if not args.config:
        parser.print_usage(sys.stderr)
        raise UsageError("--config FILE is required")
    result = run_training(load_config(args.config), resume=args.resume)
    best = result.best
    print(f"{result.stopped}: {result.epochs} epochs, {result.step} steps; best {best['metric']} = "
          f"{best['value']} (epoch {best['epoch']}); run in {result.run_dir}")
    return 0
