"""``fe-operators train`` on a trajectory file: the ``rollout_spon`` model type and its run.

A run configuration whose ``data.path`` is a trajectory dataset (``fe-operators generate``
of a time-dependent family, :class:`~fe_operators.data.TrajectoryFile`) trains a
:class:`~fe_operators.models.rollout.RolloutSPON` with
:func:`~fe_operators.train.rollout.train_rollout`::

    data:
      path: heat.h5              # a trajectory file
      split: [0.8, 0.2, 0.0]     # whole trajectories: train / val (picks best.pt by full rollouts) / test
    model:
      type: rollout_spon         # the only model type of trajectory files
      processor: gnn             # any registered processor, its keys beside (width, depth, ...)
      unroll: 2                  # steps of the unrolled loss
      noise_std: 0.01            # training noise on the input state (units of its std)
      pushforward: 0             # up to this many steps without gradient before the loss (0: none)
      pushforward_curriculum: false  # grow that number from 0 over training
      loss: l2                   # relative L2 (or h1) of the state space, per step
      every: 1                   # the model's step in stored states (k: a step of k stored steps)
    train: {epochs: 20, lr: 3.0e-3}
    out: {dir: runs/heat}

The problem is rebuilt from the file (a registered family, or the ``module:Class`` that
``--problem`` names, as for steady data) with its DOF numbering checked, so the
model's Dirichlet DOFs are those of the stored states.  The run folder is the usual one
(``config.yaml``, ``metrics.csv``/``.json``, ``best.pt``, ``last.pt``; resume, time
budget); ``best.pt`` is the checkpoint with the smallest validation rollout error
(``val_rollout_rel_l2``), evaluated on the test trajectories at the end.

Importing this module does not import Firedrake.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from fe_operators.errors import ConfigError, SpaceMismatchError
from fe_operators.options import OptionRow, config_to_dict, non_negative, option, option_rows, positive
from fe_operators.train.config import ModelSection, RunConfig
from fe_operators.train.model_types import register_model

__all__ = ["ROLLOUT_MODEL_TYPE", "RolloutOptions", "RolloutSchema", "rollout_options", "run_rollout_training"]

#: the ``model.type`` of trajectory files
ROLLOUT_MODEL_TYPE = "rollout_spon"


def _registered(name: str) -> str | None:
    from fe_operators.models.processors.base import PROCESSORS

    return None if name in PROCESSORS else f"expected one of {sorted(PROCESSORS)}, got {name!r}"


@dataclasses.dataclass
class RolloutOptions:
    """The keys of ``model`` for ``type: rollout_spon`` that are not the processor's."""

    processor: str = option("Processor of the increment network, a registered name ('gnn', 'mlp', 'multigrid', "
                            "'hierarchical'); its keys sit beside these.", _registered, default="gnn")
    unroll: int = option("Steps k of the unrolled loss (1: one-step loss); below the stored states per "
                         "trajectory.", positive, default=1)
    noise_std: float = option("Training noise on the input state's free DOFs, in units of the state's std per "
                              "channel (0: none).", non_negative, default=0.0)
    pushforward: int = option("Pushforward trick: each training batch first unrolls m ~ U{0..pushforward} steps "
                              "without gradient, then the unrolled loss from that state (0: none); "
                              "unroll + pushforward below the stored states per trajectory.", non_negative,
                              default=0)
    pushforward_curriculum: bool = option("Grow the largest pushforward m from 0 to pushforward over training.",
                                          default=False)
    loss: Literal["l2", "h1"] = option("Per-step loss: relative L2 or H1 norm of the state space.", default="l2")
    every: int = option("The model's step in stored states: it trains on and rolls out with every k-th stored "
                        "state of the file, a step of k times its dt (fewer, larger steps over the same time: "
                        "less error to accumulate; keep several steps per period of the dynamics).", positive,
                        default=1)
    weights_dtype: Literal["float32", "float64"] = option("Dtype of the weights (states stay float64).",
                                                          default="float32")
    processor_options: Any = dataclasses.field(default=None, init=False, metadata={"doc": ""})


_KEYS = tuple(f.name for f in dataclasses.fields(RolloutOptions) if f.init)


def _parse(given: dict[str, Any], key: str) -> RolloutOptions:
    from fe_operators.train.builders import parse_with_processor

    return parse_with_processor(RolloutOptions, given, key)


def rollout_options(section: ModelSection) -> RolloutOptions:
    """Validate a ``rollout_spon`` model section (ConfigError naming the key otherwise)."""
    return _parse(dict(section.options), "model")


class RolloutSchema:
    """The :class:`~fe_operators.train.model_types.ModelSchema` of ``type: rollout_spon``."""

    def check(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        opts = _parse(dict(options), key)
        return {**{k: config_to_dict(getattr(opts, k)) for k in _KEYS}, **config_to_dict(opts.processor_options)}

    def rows(self, prefix: str) -> list[OptionRow]:
        from fe_operators.models.processors.base import PROCESSORS

        rows = option_rows(RolloutOptions, prefix)
        default = RolloutOptions.processor
        for name in [default] + sorted(set(PROCESSORS) - {default}):
            rows += [r._replace(doc=f"[processor: {name}] {r.doc}", commented=name != default)
                     for r in option_rows(PROCESSORS[name].Options, prefix)]
        return rows


def _refuse_steady(section: ModelSection, dataset: Any) -> torch.nn.Module:
    """The builder of ``rollout_spon`` on steady data: an error naming the fix."""
    path = getattr(getattr(dataset, "file", None), "path", "data.path")
    raise ConfigError("model.type", f"{ROLLOUT_MODEL_TYPE!r} trains on trajectory files (fe-operators generate of a "
                                    f"time-dependent family such as heat or navier_stokes); {path} holds steady "
                                    "samples: use model.type: spon")


register_model(ROLLOUT_MODEL_TYPE, _refuse_steady, RolloutSchema())


def run_rollout_training(cfg: RunConfig, file: Any, resume: bool, problem: str | type | None,
                         stored: dict[str, Any] | None = None) -> Any:
    """Train a rollout SPON on the trajectory file ``file`` (:func:`~fe_operators.train.run.run_training` for one).

    Parameters
    ----------
    cfg
        The validated configuration (``model.type`` must be ``rollout_spon``).
    file
        The :class:`~fe_operators.data.TrajectoryFile` of ``cfg.data.path``.
    resume
        Continue the run in ``cfg.out.dir``.
    problem
        ``--problem``: the ``module:Class`` of a family of your own (see
        :meth:`~fe_operators.data.TrajectoryFile.rebuild_problem`).
    stored
        The checkpoint being resumed (its run's dataset numbering is checked).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        Another ``model.type``, invalid model keys, bad splits or ``unroll``.
    SpaceMismatchError
        Resuming on trajectories of another mesh or numbering.
    DatasetFileError, NumberingError, UsageError
        As :meth:`~fe_operators.data.TrajectoryFile.rebuild_problem`.
    """
    from fe_operators.data import split_rows
    from fe_operators.train.checkpoint import atomic_write
    from fe_operators.train.rollout import train_rollout

    if cfg.model.type != ROLLOUT_MODEL_TYPE:
        raise ConfigError("model.type", f"{file.path} holds trajectories of {file.provenance.get('problem')!r}; "
                                        f"they train model.type: {ROLLOUT_MODEL_TYPE} (got {cfg.model.type!r})")
    opts = rollout_options(cfg.model)
    n_states = (file.n_stored - 1) // opts.every + 1  # the states the model steps through
    if n_states < 2:
        raise ConfigError("model.every", f"must leave at least two of the {file.n_stored} states stored per "
                                         f"trajectory in {file.path}, got {opts.every}")
    seen = f"the {n_states} states per trajectory the model sees in {file.path} (every {opts.every})" \
        if opts.every > 1 else f"the {file.n_stored} states stored per trajectory in {file.path}"
    if not opts.unroll < n_states:
        raise ConfigError("model.unroll", f"must be below {seen}, got {opts.unroll}")
    if not opts.unroll + opts.pushforward < n_states:
        raise ConfigError("model.pushforward", f"unroll + pushforward must be below {seen}, got {opts.unroll} + "
                                               f"{opts.pushforward}")
    run_dir = Path(cfg.out.dir)
    if stored is not None:
        numbering = ((stored.get("run") or {}).get("dataset") or {}).get("numbering")
        if numbering and numbering != file.numbering:
            raise SpaceMismatchError(f"the trajectories in {file.path} number their DOFs differently from those the "
                                     f"run in {run_dir} was trained on (another mesh or generator)")
    rebuilt = file.rebuild_problem(problem=problem)
    train_idx, val_idx, test_idx = split_rows(file, cfg.data.split, cfg.data.seed)
    train, val = file.data(train_idx).every(opts.every), file.data(val_idx).every(opts.every)
    resolved = config_to_dict(cfg)
    run_info = {"config": resolved, "dataset": {"path": file.path, "kind": "trajectories",
                                                "numbering": file.numbering, "mesh": file.mesh_spec,
                                                "problem": file.provenance.get("problem")}}
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(resolved, sort_keys=False)
    atomic_write(run_dir / "config.yaml", lambda f: f.write(text.encode()))
    dtype = getattr(torch, opts.weights_dtype)
    options = config_to_dict(opts.processor_options)
    network, result = train_rollout(rebuilt, train, val, run_dir, processor=opts.processor, options=options,
                                    unroll=opts.unroll, noise_std=opts.noise_std, loss=opts.loss,
                                    pushforward=opts.pushforward,
                                    pushforward_curriculum=opts.pushforward_curriculum,
                                    settings=cfg.train, resume=resume, dtype=dtype, mesh_spec=file.mesh_spec,
                                    run_info=run_info,
                                    test=file.data(test_idx).every(opts.every) if test_idx.size else None)
    return result
