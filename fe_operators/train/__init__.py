"""Training: the Trainer, self-describing checkpoints, run configurations, metrics.

* :mod:`~fe_operators.train.trainer` — :class:`Trainer` (``fit`` → ``train_one_epoch`` →
  ``train_one_batch`` / ``evaluate``) of one :class:`~fe_operators.models.NormalizedModel`,
  losses in FE norms on physical outputs, exact resume;
* :mod:`~fe_operators.train.checkpoint` — one-file checkpoints loadable with
  ``torch.load(weights_only=True)``, atomic writes, :func:`load_model`;
* :mod:`~fe_operators.train.config` — the typed schema of ``fe-operators train --config``;
* :mod:`~fe_operators.train.run` — :func:`run_training`, a run from a configuration
  (the command ``fe-operators train`` is :mod:`fe_operators.cli.train`);
* :mod:`~fe_operators.train.model_types` — one entry per ``model.type``, builder and
  schema together (:func:`register_model`, :data:`MODEL_TYPES`);
* :mod:`~fe_operators.train.builders` — the ``spon`` model type (registered on import);
* :mod:`~fe_operators.train.rollout_run` — the ``rollout_spon`` model type: trajectory files;
* :mod:`~fe_operators.train.losses` — relative L2/H1 losses for a dataset file (Firedrake);
* :mod:`~fe_operators.train.metrics` — ``metrics.csv`` / ``metrics.json``.

Importing this package does not import Firedrake.
"""

from __future__ import annotations

from fe_operators.train.checkpoint import (
    LoadedModel, atomic_write, check_spaces, load_model, read_checkpoint, save_checkpoint,
)
from fe_operators.train.config import (
    DataSection, ModelSection, OutSection, RunConfig, SchedulerSection, TrainSection,
    config_from_dict, config_reference, config_to_dict, default_config_yaml, load_config,
)
from fe_operators.train.model_types import MODEL_TYPES, ModelSchema, ModelType, build_model, register_model
from fe_operators.train.run import run_training
from fe_operators.errors import CheckpointError, ConfigError, RunDirectoryError, TrainingError
from fe_operators.train.metrics import MetricsLog
from fe_operators.train.state import TrainResult, TrainState
from fe_operators.train.trainer import Trainer
from fe_operators.train import builders as _builders  # noqa: E402,F401  (registers model.type "spon")
from fe_operators.train import rollout_run as _rollout_run  # noqa: E402,F401  (registers "rollout_spon")

__all__ = [
    "Trainer", "TrainResult", "TrainState", "MetricsLog",
    "LoadedModel", "load_model", "read_checkpoint", "save_checkpoint", "atomic_write", "check_spaces",
    "RunConfig", "DataSection", "ModelSection", "TrainSection", "SchedulerSection", "OutSection",
    "load_config", "config_from_dict", "config_to_dict", "default_config_yaml", "config_reference",
    "MODEL_TYPES", "ModelType", "ModelSchema", "register_model", "build_model", "run_training",
    "ConfigError", "CheckpointError", "TrainingError", "RunDirectoryError",
]
