"""What every learned preconditioner shares: where its model comes from, and its fallback count.

Model
    A learned PC finds its trained network, in this order, in

    1. the object it was built with (a parent PC hands its model to its level smoothers);
    2. the PETSc option ``-<prefix>model PATH`` (``<prefix>`` is the PC's options prefix
       followed by the class's own prefix, e.g. ``neuralmg_``, as Firedrake's
       ``AssembledPC`` reads ``assembled_``): a checkpoint written by
       ``fe-operators precond train`` (or :func:`~fe_operators.train.checkpoint.save_checkpoint`);
    3. ``appctx["precond_model"]`` of a Firedrake solve: a checkpoint path, a
       :class:`~fe_operators.train.checkpoint.LoadedModel` or a ``torch.nn.Module``.

    Checkpoints are read once per path and modification time (:func:`load_precond_model`).

Fallbacks
    A network output that is non-finite (or, for a per-iteration network, not a descent
    direction) is replaced by a classical one for that application and counted by a
    :class:`FallbackCounter`; a PC that owns the Krylov solve reports the count after
    each solve (``postSolve``) and in ``view``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from fe_operators.precond.errors import ModelNotGivenError

__all__ = ["APPCTX_KEY", "load_precond_model", "resolve_model", "FallbackCounter", "options_prefix"]

#: the ``appctx`` key of a Firedrake solve that holds the preconditioner's model
APPCTX_KEY = "precond_model"

_CACHE: dict[tuple[str, int], torch.nn.Module] = {}


def load_precond_model(source: Any) -> torch.nn.Module:
    """The network of a checkpoint path, a ``LoadedModel`` or a module, in eval mode.

    Parameters
    ----------
    source
        A path (``str`` or ``os.PathLike``) of a checkpoint, an object with a ``model``
        attribute (:class:`~fe_operators.train.checkpoint.LoadedModel`) or a
        ``torch.nn.Module``.

    Raises
    ------
    CheckpointError
        The file is missing or not a loadable checkpoint.
    TypeError
        ``source`` is none of the above.
    """
    if isinstance(source, torch.nn.Module):
        return source.eval()
    if isinstance(source, (str, os.PathLike)):
        from fe_operators.train.checkpoint import load_model

        path = Path(source).expanduser().resolve()
        key = (str(path), path.stat().st_mtime_ns if path.exists() else -1)
        if key not in _CACHE:
            _CACHE[key] = load_model(path).network.eval()
        return _CACHE[key]
    model = getattr(source, "model", None)
    if isinstance(model, torch.nn.Module):
        return model.eval()
    raise TypeError(f"expected a checkpoint path, a LoadedModel or a torch.nn.Module as the preconditioner's "
                    f"model, got {type(source).__name__}")


def options_prefix(pc: Any, own: str) -> str:
    """``pc``'s options prefix followed by the class's own prefix ``own`` (e.g. ``"neuralmg_"``)."""
    return (pc.getOptionsPrefix() or "") + own


def resolve_model(pc_name: str, prefix: str, explicit: Any = None,
                  appctx: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The model of a learned PC: ``explicit``, else option ``-<prefix>model``, else ``appctx``.

    Parameters
    ----------
    pc_name
        The PC class, for messages.
    prefix
        The full options prefix of the PC's own options (see :func:`options_prefix`).
    explicit
        A model handed over directly (by a parent PC or the constructor), or None.
    appctx
        The Firedrake application context, or None outside Firedrake.

    Raises
    ------
    ModelNotGivenError
        None of the three gives a model.
    """
    if explicit is not None:
        return load_precond_model(explicit)
    from petsc4py import PETSc

    opts = PETSc.Options(prefix)
    if opts.hasName("model"):
        return load_precond_model(opts.getString("model"))
    if appctx is not None and APPCTX_KEY in appctx:
        return load_precond_model(appctx[APPCTX_KEY])
    raise ModelNotGivenError(pc_name, f"-{prefix}model", APPCTX_KEY if appctx is not None else None)


@dataclasses.dataclass
class FallbackCounter:
    """Applications of a network and how many of them fell back to a classical method.

    Attributes
    ----------
    what
        What the fallback is, for reports (e.g. ``"Jacobi"``).
    applications, fallbacks
        Counts of the current solve (reset by :meth:`start_solve`).
    total_applications, total_fallbacks
        Counts since the PC was made.
    """

    what: str
    applications: int = 0
    fallbacks: int = 0
    total_applications: int = 0
    total_fallbacks: int = 0

    def record(self, fell_back: bool) -> None:
        """Count one application (and whether it fell back)."""
        self.applications += 1
        self.total_applications += 1
        if fell_back:
            self.fallbacks += 1
            self.total_fallbacks += 1

    def start_solve(self) -> None:
        """Reset the per-solve counts."""
        self.applications = self.fallbacks = 0

    @property
    def fraction(self) -> float:
        """Fallbacks per application in the current solve (0 when there were none)."""
        return self.fallbacks / self.applications if self.applications else 0.0

    def summary(self, name: str) -> str:
        """One line: ``"<name>: 3 of 9 network applications fell back to Jacobi"``."""
        return (f"{name}: {self.fallbacks} of {self.applications} network applications fell back to "
                f"{self.what} (since set-up: {self.total_fallbacks} of {self.total_applications})")
