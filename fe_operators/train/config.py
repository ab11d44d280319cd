"""The typed schema of ``fe-operators train --config run.yaml``.

A run configuration has four sections; every key is documented in the ``doc`` metadata
of its dataclass field, and :func:`default_config_yaml` (``--print-config``) prints them
all, with defaults, as a commented YAML file::

    data:                       # DataSection
      path: darcy.h5            # required
      split: [0.8, 0.1, 0.1]
    model:                      # ModelSection: "type" + keys of the model family
      type: spon
      processor: mlp
    train:                      # TrainSection (scheduler: SchedulerSection)
      epochs: 100
      lr: 1.0e-3
    out:                        # OutSection
      dir: runs/darcy           # required

Validation happens once, in :func:`config_from_dict`: an unknown key, a missing required
key, a wrong type or an out-of-range value raises :class:`ConfigError` naming the dotted
key, e.g. ``train.lr: expected float, got str 'abc'``.  The file is read, and the relative
paths in it resolved, by :mod:`fe_operators.configfile` (YAML 1.2 number rules: ``1e-3`` is
a float, where PyYAML's YAML 1.1 default would read a string).

The ``model`` section: ``type`` names the model type and every other key goes to that
type's builder.  A type registered with a schema
(:func:`~fe_operators.train.model_types.register_model`) has its keys checked, defaulted
and documented the same way as the other sections (``model.width: expected int, ...``).
The machinery is :mod:`fe_operators.options`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Union

from fe_operators.configfile import commented_yaml, config_from_data, flow, load_config_file
from fe_operators.quoting import short
from fe_operators.train.model_types import MODEL_TYPES
from fe_operators.options import (
    OptionRow, config_to_dict, convert, dataclass_from_dict, finite_positive, fraction, non_negative, option,
    option_rows, optional, positive, type_name,
)

__all__ = [
    "SchedulerSection",
    "DataSection",
    "ModelSection",
    "TrainSection",
    "OutSection",
    "RunConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "dataclass_from_dict",
    "default_config_yaml",
    "config_reference",
    "device_error",
]


def _split(v: list) -> str | None:
    if len(v) != 3:
        return f"expected 3 numbers [train, val, test], got {len(v)}"
    if any(x < 0 for x in v):
        return f"expected non-negative sizes, got {short(v)}"
    if all(isinstance(x, int) for x in v):
        return None if v[0] > 0 and v[1] > 0 else f"the train and val splits must not be empty, got {short(v)}"
    if sum(v) > 1 + 1e-12:
        return f"fractions must sum to at most 1, got {short(v)} (sum {sum(v):g})"
    return None if v[0] > 0 and v[1] > 0 else f"the train and val splits must not be empty, got {short(v)}"


def device_error(v: Any) -> str | None:
    """Why ``v`` is not a usable torch device here (None if it is): unknown, or a CUDA device
    this machine does not have."""
    import torch

    try:
        dev = torch.device(v)
    except (RuntimeError, ValueError, TypeError):
        return f"expected a torch device such as 'cpu' or 'cuda:0', got {short(v)}"
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"device {v!r} requested but torch sees no CUDA device; use 'cpu'"
        if dev.index is not None and dev.index >= count:
            return f"device {v!r} requested but torch sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
    elif dev.type not in ("cpu", "meta") and not getattr(getattr(torch, dev.type, None), "is_available", bool)():
        return f"device {v!r} requested but torch cannot use {dev.type!r} here; use 'cpu'"
    return None


# ----------------------------------------------------------------------------- schema
@dataclasses.dataclass
class SchedulerSection:
    """Learning-rate schedule, stepped once per optimizer step (``train.scheduler``)."""

    name: Literal["cosine", "step", "none"] = option(
        "Schedule after warm-up: 'cosine' (decay to min_lr at the end of the schedule, see length), 'step' "
        "(multiply by gamma every step_epochs epochs) or 'none' (constant).", default="cosine")
    length: Literal["epochs", "time_budget"] = option(
        "What the cosine schedule spans: 'epochs' (the optimizer steps of train.epochs epochs) or "
        "'time_budget' (progress = training seconds / train.time_budget, recomputed every step, or steps / "
        "the steps of train.epochs epochs where that is further on: the rate reaches min_lr when the run "
        "ends, whichever limit ends it). With 'time_budget', train.time_budget counts the run's training "
        "seconds across resumptions, not one invocation's.", default="epochs")
    warmup_steps: int = option("Linear warm-up from lr/warmup_steps to lr over this many optimizer "
                             "steps (0: none).", non_negative, default=0)
    step_epochs: int = option("'step' schedule: epochs between decays.", positive, default=30)
    gamma: float = option("'step' schedule: decay factor.", fraction, default=0.5)
    min_lr: float = option("'cosine' schedule: learning rate at the end of the schedule.", non_negative,
                           default=0.0)


@dataclasses.dataclass
class DataSection:
    """The dataset and its splits (``data``)."""

    path: str = option("(required) Dataset file written by `fe-operators generate`; a relative path "
                     "is relative to the configuration file.")
    split: list[Union[int, float]] = option(
        "Sizes of the [train, val, test] splits: all integers = sample counts, otherwise fractions of "
        "the valid samples (sum <= 1). The val split picks the best checkpoint; the test split is only "
        "evaluated at the end.", _split, default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = option("Seed of the random split.", default=0)
    normalize_inputs: Literal["dof", "global", "none"] = option(
        "Unit-Gaussian normalizer of the inputs, fitted on the train split: one mean/std per DOF ('dof'), "
        "per channel ('global'), or none. The normalizers are part of the model (its network sees encoded "
        "inputs; the model takes and returns physical values).", default="dof")
    normalize_output: Literal["dof", "global", "none"] = option(
        "Normalizer of the output, as normalize_inputs: the network predicts encoded outputs, which the model "
        "decodes (a SPON's Dirichlet DOFs are then reset to the physical boundary data, so they stay "
        "exact).", default="dof")
    dtype: Literal["float32", "float64"] = option("Dtype of the tensors the model sees.", default="float32")
    preload: bool = option("Read the selected samples into memory once (faster epochs).", default=True)


@dataclasses.dataclass
class ModelSection:
    """The model (``model``): ``type`` plus the keys of that model family."""

    type: str = option("Model type, a key of fe_operators.train.model_types.MODEL_TYPES (e.g. 'spon'). "
                     "Every other key of this section goes to the type's builder.", default="spon")
    options: dict[str, Any] = option("The other keys of the section (not written as 'options').",
                                   default_factory=dict)

    @classmethod
    def __from_dict__(cls, data: dict, key: str) -> "ModelSection":
        # ``type`` plus the family's options, checked by its registered schema if any
        key = key or "model"
        model_type = convert(data.get("type", cls.type), str, f"{key}.type")
        options = {k: v for k, v in data.items() if k != "type"}
        schema = _schema(model_type)
        if schema is not None:
            options = schema.check(options, key)
        else:
            options = convert(options, dict[str, Any], key)
        return cls(type=model_type, options=options)

    def __to_dict__(self) -> dict[str, Any]:
        return {"type": self.type, **config_to_dict(self.options)}

    @classmethod
    def __option_rows__(cls, prefix: str) -> list[OptionRow]:
        doc = cls.__dataclass_fields__["type"].metadata["doc"]
        return [OptionRow(f"{prefix}type", str, cls.type, doc)]


@dataclasses.dataclass
class TrainSection:
    """Optimisation and bookkeeping (``train``)."""

    epochs: int = option("Number of epochs (passes over the train split).", positive, default=100)
    batch_size: int = option("Samples per optimizer step.", positive, default=16)
    lr: float = option("Peak learning rate of AdamW.", finite_positive, default=1e-3)
    weight_decay: float = option("AdamW weight decay (decoupled).", non_negative, default=1e-4)
    scheduler: SchedulerSection = option("Learning-rate schedule.", default_factory=SchedulerSection)
    loss: Literal["rel_l2", "rel_h1", "scaled_l2"] = option(
        "Training loss: mean relative FE-norm error of the decoded (physical) output, in L2 "
        "(mass matrix) or full H1 (mass + stiffness); or scaled_l2, the squared L2 error over the "
        "training outputs' mean squared L2 norm (one scale for every sample: for outputs whose norms "
        "span orders of magnitude, where the relative losses let the smallest dominate). Also the "
        "validation metric that picks best.pt.",
        default="rel_l2")
    metrics: list[Literal["rel_l2", "rel_h1"]] = option(
        "Validation (and test) metrics logged in addition to the loss.", default_factory=lambda: ["rel_l2"])
    seed: int = option("Seed of model initialisation, data order and every RNG.", default=0)
    device: str = option("Torch device, e.g. 'cpu' or 'cuda:0'.", device_error, default="cpu")
    threads: Union[int, None] = option("CPU threads of torch (torch.set_num_threads) and of numba's kernels "
                                     "(null: leave their defaults). Fix it for bitwise-reproducible CPU runs.",
                                     optional(positive), default=None)
    deterministic: bool = option("torch.use_deterministic_algorithms during training (warn-only).", default=True)
    checkpoint_every: int = option("Also write last.pt every this many optimizer steps (0: only at epoch "
                                 "ends).", non_negative, default=0)
    time_budget: Union[float, None] = option(
        "Stop (with a resumable last.pt) once this many seconds of training have passed in this "
        "invocation (null: no limit); with scheduler.length 'time_budget', in the whole run (the "
        "schedule's length).", optional(finite_positive), default=None)
    restore_best: bool = option(
        "At the end of training, load best.pt's weights (the best validation value) into the model; "
        "last.pt keeps the last ones, for resuming.", default=True)
    num_workers: int = option("DataLoader worker processes.", non_negative, default=0)
    progress: Union[bool, None] = option("tqdm progress bars (null: only when stderr is a terminal); without "
                                         "them, one line per epoch is printed (losses, metrics, seconds).",
                                       default=None)

    def validate(self, key: str = "") -> None:
        """Cross-field checks, naming the key."""
        from fe_operators.errors import ConfigError

        if self.scheduler.length == "time_budget" and self.time_budget is None:
            raise ConfigError(f"{key}.scheduler.length" if key else "scheduler.length",
                              "'time_budget' needs a time budget: set train.time_budget (seconds), or use "
                              "length 'epochs'")


@dataclasses.dataclass
class OutSection:
    """Where the run is written (``out``)."""

    dir: str = option("(required) Run folder: config.yaml, metrics.csv, metrics.json, best.pt, last.pt; "
                    "a relative path is relative to the configuration file.")


@dataclasses.dataclass(kw_only=True)
class RunConfig:
    """A validated run configuration."""

    data: DataSection = option("The dataset and its splits.")
    model: ModelSection = option("The model.", default_factory=ModelSection)
    train: TrainSection = option("Optimisation and bookkeeping.", default_factory=TrainSection)
    out: OutSection = option("Where the run is written.")


#: the keys whose values are paths, taken relative to the configuration file
PATH_KEYS = ("data.path", "out.dir")

def _schema(model_type: str) -> Any:
    """The schema of a registered model type's keys, or None (unregistered, or no schema)."""
    entry = MODEL_TYPES.get(model_type)
    return None if entry is None else entry.schema


def config_from_dict(data: Any, base_dir: str | os.PathLike | None = None,
                     source: str | os.PathLike | None = None) -> RunConfig:
    """Validate a configuration mapping (e.g. parsed YAML).

    Parameters
    ----------
    data
        The mapping with sections ``data``, ``model``, ``train``, ``out``.
    base_dir
        Folder that relative ``data.path`` and ``out.dir`` are taken relative to
        (default: the current directory); both are returned absolute.
    source
        The file the mapping came from, named in error messages.

    Raises
    ------
    ConfigError
        Unknown key, missing required key, wrong type or invalid value (naming the key).
    """
    return config_from_data(RunConfig, data, base_dir=base_dir, source=source, paths=PATH_KEYS)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run configuration.

    Relative paths in it are taken relative to the file's folder.

    Raises
    ------
    ConfigError
        The file is missing or not valid YAML, or the configuration is invalid.
    """
    return load_config_file(RunConfig, path, paths=PATH_KEYS)


def _walk(model_types: list[str]) -> list[OptionRow]:
    """Every key of a run configuration; under ``model``, the rows of the schemas of ``model_types``."""
    rows = []
    for row in option_rows(RunConfig):
        rows.append(row)
        if row.key == "model.type":
            for model_type in model_types:
                schema = _schema(model_type)
                if schema is not None:
                    rows.extend(r._replace(doc=f"[{model_type}] {r.doc}") for r in schema.rows("model."))
    return rows


def config_reference() -> str:
    """A Markdown table of every key (with every registered model family's): name, type, default, meaning."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for row in _walk(sorted(MODEL_TYPES)):
        if row.section:
            continue
        shown = "—" if row.doc.startswith("(required)") else f"`{flow(row.default)}`"
        lines.append(f"| `{row.key}` | {type_name(row.type)} | {shown} | {row.doc} |")
    return "\n".join(lines)


def default_config_yaml(model_type: str = ModelSection.type) -> str:
    """A commented YAML file with every key at its default (``fe-operators train --print-config``).

    Parameters
    ----------
    model_type
        The ``model.type`` to show; if it was registered with a schema
        (:data:`~fe_operators.train.model_types.MODEL_TYPES`), its keys are listed under ``model`` too (keys of
        alternatives, such as the other processors of a SPON, commented out).

    Required keys are ``null`` and must be filled in; with them filled in, the file is a
    valid configuration.
    """
    notes = {} if _schema(model_type) is not None else {
        "model.type": "...and the keys of the model type (it registered no schema)."}
    return commented_yaml(_walk([model_type]), "fe-operators train", values={"model.type": model_type}, notes=notes)
