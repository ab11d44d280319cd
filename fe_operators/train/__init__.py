"""Training: the Trainer, self-describing checkpoints, run configurations, metrics.

* :mod:`~fe_operators.train.trainer` — :class:`Trainer` (``fit`` → ``train_one_epoch`` →
  ``train_one_batch`` / ``evaluate``) of one :class:`~fe_operators.models.NormalizedModel`,
  losses in FE norms on physical outputs, exact resume;
* :mod:`~fe_operators.train.checkpoint` — one-file checkpoints loadable with
  ``torch.load(weights_only=True)``, atomic writes, :func:`load_model`;
* :mod:`~fe_operators.train.config` — the typed schema of ``fe-operators train --config``;
* :mod:`~fe_operators.train.cli` — ``fe-operators train`` (:func:`main_train`) and the
  model-builder registry :data:`~fe_operators.train.cli.MODEL_BUILDERS`;
* :mod:`~fe_operators.train.builders` — the ``spon`` model family (registered on import);
* :mod:`~fe_operators.train.losses` — relative L2/H1 losses for a dataset file (Firedrake);
* :mod:`~fe_operators.train.metrics` — ``metrics.csv`` / ``metrics.json``.

Importing this package does not import Firedrake.
"""

from __future__ import annotations

from fe_operators.train.checkpoint import (
    LoadedModel, atomic_write, check_spaces, load_model, read_checkpoint, save_checkpoint,
)
from fe_operators.train.cli import MODEL_BUILDERS, build_model, main_train, register_model, run_training
from fe_operators.train.config import (
    MODEL_SCHEMAS, DataSection, ModelSection, OutSection, RunConfig, SchedulerSection, TrainSection,
    config_from_dict, config_reference, config_to_dict, default_config_yaml, load_config, register_model_schema,
)
from fe_operators.errors import CheckpointError, ConfigError, RunDirectoryError, TrainingError
from fe_operators.train.metrics import MetricsLog
from fe_operators.train.trainer import Trainer, TrainResult, TrainState
from fe_operators.train import builders as _builders  # noqa: E402,F401  (registers model.type "spon")

__all__ = [
    "Trainer", "TrainResult", "TrainState", "MetricsLog",
    "LoadedModel", "load_model", "read_checkpoint", "save_checkpoint", "atomic_write", "check_spaces",
    "RunConfig", "DataSection", "ModelSection", "TrainSection", "SchedulerSection", "OutSection",
    "MODEL_SCHEMAS", "register_model_schema", "load_config", "config_from_dict", "config_to_dict",
    "default_config_yaml", "config_reference",
    "MODEL_BUILDERS", "register_model", "build_model", "run_training", "main_train",
    "ConfigError", "CheckpointError", "TrainingError", "RunDirectoryError",
]
