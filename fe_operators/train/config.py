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
key, e.g. ``train.lr: expected float, got str 'abc'``.  YAML is read with YAML 1.2 number
rules, so ``1e-3`` is a float (PyYAML's YAML 1.1 default would read a string).

The ``model`` section is a pass-through: ``type`` names the model family and every other
key goes to that family's builder.  A family may register a dataclass schema in
:data:`MODEL_SCHEMAS` (or with :func:`register_model_schema`); its keys are then checked
and defaulted the same way as the other sections (``model.width: expected int, ...``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Union

import yaml

from fe_operators.train.errors import ConfigError

__all__ = [
    "SchedulerSection",
    "DataSection",
    "ModelSection",
    "TrainSection",
    "OutSection",
    "RunConfig",
    "MODEL_SCHEMAS",
    "register_model_schema",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "dataclass_from_dict",
    "default_config_yaml",
    "config_reference",
]

Check = Callable[[Any], Union[str, None]]


def _key(doc: str, check: Check | None = None, **kwargs: Any) -> Any:
    """A dataclass field documented by ``doc``, with an optional value check.

    ``check(value)`` returns ``None`` when the (type-checked) value is valid and otherwise
    the reason, e.g. ``"expected a positive number"``.
    """
    return dataclasses.field(metadata={"doc": doc, "check": check}, **kwargs)


def _positive(v: Any) -> str | None:
    return None if v > 0 else "expected a positive number"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "expected a number >= 0"


def _finite_positive(v: Any) -> str | None:
    return None if math.isfinite(v) and v > 0 else "expected a finite positive number"


def _fraction(v: Any) -> str | None:
    return None if 0 < v <= 1 else "expected a number in (0, 1]"


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def _split(v: list) -> str | None:
    if len(v) != 3:
        return f"expected 3 numbers [train, val, test], got {len(v)}"
    if any(x < 0 for x in v):
        return f"expected non-negative sizes, got {v}"
    if all(isinstance(x, int) for x in v):
        return None if v[0] > 0 and v[1] > 0 else f"the train and val splits must not be empty, got {v}"
    if sum(v) > 1 + 1e-12:
        return f"fractions must sum to at most 1, got {v} (sum {sum(v):g})"
    return None if v[0] > 0 and v[1] > 0 else f"the train and val splits must not be empty, got {v}"


def _device(v: str) -> str | None:
    import torch

    try:
        dev = torch.device(v)
    except (RuntimeError, ValueError):
        return f"expected a torch device such as 'cpu' or 'cuda:0', got {v!r}"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"device {v!r} requested but torch sees no CUDA device"
    return None


# ----------------------------------------------------------------------------- schema
@dataclasses.dataclass
class SchedulerSection:
    """Learning-rate schedule, stepped once per optimizer step (``train.scheduler``)."""

    name: Literal["cosine", "step", "none"] = _key(
        "Schedule after warm-up: 'cosine' (decay to min_lr at the last step), 'step' (multiply "
        "by gamma every step_epochs epochs) or 'none' (constant).", default="cosine")
    warmup_steps: int = _key("Linear warm-up from lr/warmup_steps to lr over this many optimizer "
                             "steps (0: none).", _non_negative, default=0)
    step_epochs: int = _key("'step' schedule: epochs between decays.", _positive, default=30)
    gamma: float = _key("'step' schedule: decay factor.", _fraction, default=0.5)
    min_lr: float = _key("'cosine' schedule: learning rate at the last step.", _non_negative, default=0.0)


@dataclasses.dataclass
class DataSection:
    """The dataset and its splits (``data``)."""

    path: str = _key("(required) Dataset file written by `fe-operators generate`; a relative path "
                     "is relative to the configuration file.")
    split: list[Union[int, float]] = _key(
        "Sizes of the [train, val, test] splits: all integers = sample counts, otherwise fractions of "
        "the valid samples (sum <= 1). The val split picks the best checkpoint; the test split is only "
        "evaluated at the end.", _split, default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = _key("Seed of the random split.", default=0)
    normalize_inputs: Literal["dof", "global", "none"] = _key(
        "Unit-Gaussian normalizer of the inputs, fitted on the train split: one mean/std per DOF ('dof'), "
        "per channel ('global'), or none. The model sees encoded inputs.", default="dof")
    normalize_output: Literal["dof", "global", "none"] = _key(
        "Normalizer of the output, as normalize_inputs: the model predicts encoded outputs, which the trainer "
        "decodes before the loss (a SPON's Dirichlet DOFs are then reset to the physical boundary data, so "
        "they stay exact).", default="dof")
    dtype: Literal["float32", "float64"] = _key("Dtype of the tensors the model sees.", default="float32")
    preload: bool = _key("Read the selected samples into memory once (faster epochs).", default=True)


@dataclasses.dataclass
class ModelSection:
    """The model (``model``): ``type`` plus the keys of that model family."""

    type: str = _key("Model family, a key of fe_operators.train.cli.MODEL_BUILDERS (e.g. 'spon'). "
                     "Every other key of this section goes to the family's builder.", default="spon")
    options: dict[str, Any] = _key("The other keys of the section (not written as 'options').",
                                   default_factory=dict)


@dataclasses.dataclass
class TrainSection:
    """Optimisation and bookkeeping (``train``)."""

    epochs: int = _key("Number of epochs (passes over the train split).", _positive, default=100)
    batch_size: int = _key("Samples per optimizer step.", _positive, default=16)
    lr: float = _key("Peak learning rate of AdamW.", _finite_positive, default=1e-3)
    weight_decay: float = _key("AdamW weight decay (decoupled).", _non_negative, default=1e-4)
    scheduler: SchedulerSection = _key("Learning-rate schedule.", default_factory=SchedulerSection)
    loss: Literal["rel_l2", "rel_h1"] = _key(
        "Training loss: mean relative FE-norm error of the decoded (physical) output, in L2 "
        "(mass matrix) or full H1 (mass + stiffness). Also the validation metric that picks best.pt.",
        default="rel_l2")
    metrics: list[Literal["rel_l2", "rel_h1"]] = _key(
        "Validation (and test) metrics logged in addition to the loss.", default_factory=lambda: ["rel_l2"])
    seed: int = _key("Seed of model initialisation, data order and every RNG.", default=0)
    device: str = _key("Torch device, e.g. 'cpu' or 'cuda:0'.", _device, default="cpu")
    threads: Union[int, None] = _key("torch.set_num_threads (null: leave torch's default). Fix it for "
                                     "bitwise-reproducible CPU runs.", _optional(_positive), default=None)
    deterministic: bool = _key("torch.use_deterministic_algorithms during training (warn-only).", default=True)
    checkpoint_every: int = _key("Also write last.pt every this many optimizer steps (0: only at epoch "
                                 "ends).", _non_negative, default=0)
    time_budget: Union[float, None] = _key(
        "Stop (with a resumable last.pt) once this many seconds of training have passed in this "
        "invocation (null: no limit).", _optional(_finite_positive), default=None)
    num_workers: int = _key("DataLoader worker processes.", _non_negative, default=0)
    progress: Union[bool, None] = _key("tqdm progress bars (null: only when stderr is a terminal).",
                                       default=None)


@dataclasses.dataclass
class OutSection:
    """Where the run is written (``out``)."""

    dir: str = _key("(required) Run folder: config.yaml, metrics.csv, metrics.json, best.pt, last.pt; "
                    "a relative path is relative to the configuration file.")


@dataclasses.dataclass(kw_only=True)
class RunConfig:
    """A validated run configuration."""

    data: DataSection = _key("The dataset and its splits.")
    model: ModelSection = _key("The model.", default_factory=ModelSection)
    train: TrainSection = _key("Optimisation and bookkeeping.", default_factory=TrainSection)
    out: OutSection = _key("Where the run is written.")


#: model type -> dataclass schema of its options (filled by the models package)
MODEL_SCHEMAS: dict[str, type] = {}


def register_model_schema(model_type: str, schema: type) -> None:
    """Check the ``model`` options of ``model_type`` against the dataclass ``schema``.

    Parameters
    ----------
    model_type
        The value of ``model.type``.
    schema
        A dataclass whose fields (with ``doc`` metadata, see :func:`dataclass_from_dict`)
        are the family's keys.

    Raises
    ------
    TypeError
        ``schema`` is not a dataclass.
    """
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"expected a dataclass type as the schema of {model_type!r}, got {schema!r}")
    MODEL_SCHEMAS[model_type] = schema


# ----------------------------------------------------------------------------- validation
def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}" if value is not None else "null"


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type ``tp``; return it (ints widened to float where asked)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, key)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(key, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:  # exact type first: keep int counts as ints in list[int | float]
            if a is not type(None) and type(value) is a:
                return value
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {_describe(value)}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(key, f"expected a mapping with string keys, got {_describe(value)}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported type {tp!r} in a configuration schema ({key})")
    raise ConfigError(key, f"expected {_type_name(tp)}, got {_describe(value)}")


def _unknown(key: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}.{name}" if key else name, f"unknown key{hint} (known keys: {', '.join(known)})")


def dataclass_from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build the dataclass ``cls`` from a mapping, checking every key, type and value.

    Parameters
    ----------
    cls
        A dataclass whose fields carry ``metadata={"doc": ..., "check": ...}`` (``check``
        optional: ``value -> None | reason``).
    data
        The mapping (``None`` counts as empty).
    key
        Dotted path of ``data`` in the configuration, for messages.

    Raises
    ------
    ConfigError
        An unknown key, a missing required key, a wrong type or an invalid value.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = [f.name for f in fields]
    if cls is ModelSection:
        return _model_section(data, key)
    for name in data:
        if name not in known:
            raise _unknown(key, str(name), known)
    kwargs = {}
    for f in fields:
        sub = f"{key}.{f.name}" if key else f.name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in data:
            if required and not dataclasses.is_dataclass(hints[f.name]):
                raise ConfigError(sub, "required key missing")
            if required:  # a section with required keys: validate an empty one for the message
                kwargs[f.name] = _convert({}, hints[f.name], sub)
            continue
        if data[f.name] is None and required and not dataclasses.is_dataclass(hints[f.name]):
            raise ConfigError(sub, "required key missing (got null)")
        value = _convert(data[f.name], hints[f.name], sub)
        check = f.metadata.get("check")
        if check is not None:
            reason = check(value)
            if reason:
                raise ConfigError(sub, f"{reason}, got {value!r}" if "got" not in reason else reason)
        kwargs[f.name] = value
    return cls(**kwargs)


def _model_section(data: dict, key: str) -> ModelSection:
    """``model``: the family ``type`` plus its options, checked against a registered schema."""
    key = key or "model"
    model_type = _convert(data.get("type", ModelSection.type), str, f"{key}.type")
    options = {k: v for k, v in data.items() if k != "type"}
    schema = MODEL_SCHEMAS.get(model_type)
    if schema is not None:
        options = config_to_dict(dataclass_from_dict(schema, options, key))
    else:
        options = _convert(options, dict[str, Any], key)
    return ModelSection(type=model_type, options=options)


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
    try:
        cfg = dataclass_from_dict(RunConfig, data)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, source) from None
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    cfg.data.path = str((base / cfg.data.path).resolve())
    cfg.out.dir = str((base / cfg.out.dir).resolve())
    return cfg


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads floats by YAML 1.2 rules (``1e-3`` is a float, not a string)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run configuration.

    Relative paths in it are taken relative to the file's folder.

    Raises
    ------
    ConfigError
        The file is missing or not valid YAML, or the configuration is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read the configuration file ({exc.strerror or exc})", path) from None
    try:
        data = yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError("", f"not valid YAML: {exc}", path) from None
    return config_from_dict(data, base_dir=path.parent, source=path)


def config_to_dict(cfg: Any) -> Any:
    """A configuration dataclass as plain (YAML/JSON-able) data; ``model.options`` is inlined."""
    if isinstance(cfg, ModelSection):
        return {"type": cfg.type, **config_to_dict(cfg.options)}
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    return cfg


# ----------------------------------------------------------------------------- documentation
def _walk(cls: type, prefix: str = "", model_types: list[str] | None = None) -> list[tuple[str, Any, Any, str, bool]]:
    """(dotted key, type, default, doc, is_section) for every key of ``cls``, depth first.

    Under ``model``, the keys of the registered schemas of ``model_types`` follow ``type``.
    """
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if cls is ModelSection and f.name == "options":
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(tp):
            rows.append((key, tp, None, doc, True))
            rows.extend(_walk(tp, key + ".", model_types))
            if tp is ModelSection:
                for model_type in model_types or []:
                    schema = MODEL_SCHEMAS.get(model_type)
                    if schema is not None:
                        rows.extend((k, t, d, f"[{model_type}] {s}", sec)
                                    for k, t, d, s, sec in _walk(schema, key + "."))
        else:
            rows.append((key, tp, config_to_dict(default), doc, False))
    return rows


def _flow(value: Any) -> str:
    """``value`` as one line of YAML."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def config_reference() -> str:
    """A Markdown table of every key (with every registered model family's): name, type, default, meaning."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tp, default, doc, section in _walk(RunConfig, model_types=sorted(MODEL_SCHEMAS)):
        if section:
            continue
        shown = "—" if doc.startswith("(required)") else f"`{_flow(default)}`"
        lines.append(f"| `{key}` | {_type_name(tp)} | {shown} | {doc} |")
    return "\n".join(lines)


def default_config_yaml(model_type: str = ModelSection.type) -> str:
    """A commented YAML file with every key at its default (``fe-operators train --print-config``).

    Parameters
    ----------
    model_type
        The ``model.type`` to show; if its family registered a schema in
        :data:`MODEL_SCHEMAS`, its keys are listed under ``model`` too.

    Required keys are ``null`` and must be filled in; with them filled in, the file is a
    valid configuration.
    """
    out = ["# fe-operators train configuration: every key with its default.",
           "# Keys marked (required) must be set; all others may be left out.", ""]
    for key, _tp, default, doc, section in _walk(RunConfig, model_types=[model_type]):
        depth = key.count(".")
        pad = "  " * depth
        name = key.rsplit(".", 1)[-1]
        out.append(f"{pad}# {doc}")
        if section:
            out.append(f"{pad}{name}:")
            continue
        out.append(f"{pad}{name}: {_flow(model_type if key == 'model.type' else default)}")
        if key == "model.type" and model_type not in MODEL_SCHEMAS:
            out.append(f"{pad}# ...and the keys of the model family (it registered no schema).")
    return "\n".join(out) + "\n"
