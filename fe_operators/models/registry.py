"""The registry of checkpointable model classes: what a checkpoint may name.

A checkpoint stores its network's class as a ``"package.module:QualName"`` reference.
Loading it looks the reference up here and never imports a module the checkpoint names,
so a checkpoint cannot make fe_operators run code.  fe_operators' own models
(:class:`~fe_operators.models.SPON`, and every registered learned-preconditioner kind's
network, :mod:`fe_operators.precond.registry`: :class:`~fe_operators.precond.smoother.SmootherNet`,
:class:`~fe_operators.precond.dcdm.DCDMNet`, ...) are registered; a user's model class is loadable once
registered with :func:`register_model_class` (in the module that defines it, which the
user imports before loading).

A checkpointable class is a ``torch.nn.Module`` subclass with a JSON-able ``config``
property and a ``from_config`` classmethod, defined at the top level of an importable
module (not ``__main__``, not inside a function).

Nothing here imports Firedrake.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

import torch

__all__ = ["MODEL_CLASSES", "register_model_class", "model_class", "class_reference", "check_model_class"]

#: ``"module:QualName"`` -> class; fe_operators' own entries are imported on first lookup
MODEL_CLASSES: dict[str, type[torch.nn.Module] | None] = {
    "fe_operators.models.spon:SPON": None,
    "fe_operators.models.rollout:RolloutSPON": None,
}

M = TypeVar("M", bound=type)


def class_reference(cls: type) -> str:
    """The ``"module:QualName"`` reference of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def check_model_class(cls: Any) -> None:
    """Raise TypeError unless ``cls`` is a checkpointable model class (see the module docstring)."""
    ref = class_reference(cls) if isinstance(cls, type) else repr(cls)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{ref} is not a torch.nn.Module subclass")
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise TypeError(f"model class {ref} cannot be re-imported from a checkpoint; define it in an importable "
                        "module (a file on sys.path), not in a script or a function")
    if not callable(getattr(cls, "from_config", None)):
        raise TypeError(f"model class {ref} needs a JSON-able `config` property and a `from_config` classmethod")


def register_model_class(cls: M) -> M:
    """Make a model class loadable from checkpoints (usable as a class decorator).

    Raises
    ------
    TypeError
        Not a checkpointable class (see the module docstring), naming what it lacks.

    Examples
    --------
    >>> @register_model_class                                    # doctest: +SKIP
    ... class MyNet(torch.nn.Module):
    ...     config = property(lambda self: {...})
    ...     @classmethod
    ...     def from_config(cls, config): ...
    """
    check_model_class(cls)
    MODEL_CLASSES[class_reference(cls)] = cls
    return cls


def _precond_networks() -> None:
    """Add the learned-preconditioner kinds' networks (registered with their kinds, imported on use)."""
    from fe_operators.precond.registry import preconditioner_kinds

    for kind in preconditioner_kinds().values():
        MODEL_CLASSES.setdefault(kind.network, None)


def model_class(ref: str) -> type[torch.nn.Module]:
    """The registered class of a ``"module:QualName"`` reference (nothing else is imported).

    Raises
    ------
    LookupError
        ``ref`` is not registered; the message says how to register it.
    """
    if isinstance(ref, str) and ref not in MODEL_CLASSES:
        _precond_networks()
    if not isinstance(ref, str) or ref not in MODEL_CLASSES:
        raise LookupError(
            f"model class {ref!r} is not a registered model class (registered: {', '.join(sorted(MODEL_CLASSES))}); "
            "fe_operators loads only registered classes: import the module that defines it and call "
            "fe_operators.models.register_model_class(ItsClass) before loading")
    cls = MODEL_CLASSES[ref]
    if cls is None:  # one of fe_operators' own: import it now
        module, _, qualname = ref.partition(":")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        MODEL_CLASSES[ref] = cls
    return cls
