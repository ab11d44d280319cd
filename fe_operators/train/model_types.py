"""The model types of ``fe-operators train``: one entry per ``model.type``, builder and schema.

A model type is what ``model.type`` names in a run configuration.  Its entry
(:class:`ModelType`, registered with :func:`register_model`) holds

* the **builder**, ``(model_section, train_dataset) -> torch.nn.Module`` (or its
  ``"package.module:function"``, imported on first use): it gets the ``model`` section
  (:class:`~fe_operators.train.config.ModelSection`) and the train split
  (:class:`~fe_operators.data.FEDataset`, whose ``file`` describes the spaces) and returns
  a checkpointable module;
* the **schema** of the section's other keys (optional): a dataclass of options made
  with :func:`fe_operators.options.option`, or a :class:`ModelSchema`.  With one, the keys
  are checked, defaulted and documented like every other section (``--print-config``);
  without one, they go to the builder as given.

fe_operators registers ``spon`` (:mod:`fe_operators.train.builders`).  The classes a
checkpoint may name are another registry: :mod:`fe_operators.models.registry`.

Nothing here imports Firedrake.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Protocol, Union, runtime_checkable

import torch

from fe_operators.errors import ConfigError, FEOperatorsError
from fe_operators.options import OptionRow, config_to_dict, dataclass_from_dict, option_rows

__all__ = ["ModelBuilder", "ModelSchema", "DataclassSchema", "ModelType", "MODEL_TYPES", "register_model",
           "build_model"]

#: ``(model_section, train_dataset) -> nn.Module``
ModelBuilder = Callable[[Any, Any], torch.nn.Module]


@runtime_checkable
class ModelSchema(Protocol):
    """What checks and documents the ``model`` keys of a model type."""

    def check(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        """The validated options as plain data (defaults filled in); raise ConfigError naming the key."""

    def rows(self, prefix: str) -> list[OptionRow]:
        """Documentation rows of the type's keys (:func:`fe_operators.options.option_rows`)."""


@dataclasses.dataclass(frozen=True)
class DataclassSchema:
    """A :class:`ModelSchema` made from one options dataclass."""

    cls: type

    def check(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        return config_to_dict(dataclass_from_dict(self.cls, options, key))

    def rows(self, prefix: str) -> list[OptionRow]:
        return option_rows(self.cls, prefix)


@dataclasses.dataclass(frozen=True)
class ModelType:
    """One ``model.type``: its builder and the schema of its keys (None: keys unchecked)."""

    builder: Union[ModelBuilder, str]
    schema: Union[ModelSchema, None] = None

    def resolved_builder(self) -> ModelBuilder:
        """The builder, imported first if it is a ``"module:function"``."""
        if isinstance(self.builder, str):
            module, _, name = self.builder.partition(":")
            return getattr(importlib.import_module(module), name)
        return self.builder


#: model type -> its entry (filled by the model families, e.g. ``spon`` by fe_operators.train.builders)
MODEL_TYPES: dict[str, ModelType] = {}


def register_model(model_type: str, builder: ModelBuilder | str, schema: type | ModelSchema | None = None) -> None:
    """Make ``model.type: <model_type>`` buildable (and, with a schema, checked and documented).

    Parameters
    ----------
    model_type
        The name used in configurations.
    builder
        ``(model_section, train_dataset) -> nn.Module``, or its ``"module:function"``.
    schema
        A dataclass whose fields (made with :func:`fe_operators.options.option`) are the
        type's keys, or a :class:`ModelSchema`; None: the keys go to the builder unchecked.

    Raises
    ------
    TypeError
        ``schema`` is neither a dataclass type nor a :class:`ModelSchema`.
    """
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        schema = DataclassSchema(schema)
    if schema is not None and not isinstance(schema, ModelSchema):
        raise TypeError(f"expected a dataclass type or a ModelSchema as the schema of {model_type!r}, got {schema!r}")
    MODEL_TYPES[model_type] = ModelType(builder, schema)


def build_model(section: Any, dataset: Any) -> torch.nn.Module:
    """Build the model of a ``model`` section for ``dataset`` with its registered builder.

    Parameters
    ----------
    section
        The :class:`~fe_operators.train.config.ModelSection`.
    dataset
        The train split, an :class:`~fe_operators.data.FEDataset`.

    Raises
    ------
    ConfigError
        No model type ``section.type`` (the message lists the registered types), or the
        builder rejects the options (``ValueError``/``TypeError``).
    """
    entry = MODEL_TYPES.get(section.type)
    if entry is None:
        known = ", ".join(sorted(MODEL_TYPES)) or "none registered"
        raise ConfigError("model.type", f"no model builder for {section.type!r}; available types: {known}")
    builder = entry.resolved_builder()
    try:
        return builder(section, dataset)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, FEOperatorsError):
            raise
        raise ConfigError("model", f"the {section.type!r} builder rejected the section: {exc}") from exc
