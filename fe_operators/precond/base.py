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
    Each PC checks that the model is of its kind (:data:`MODEL_KINDS`, the registered
    kinds of :mod:`~fe_operators.precond.registry`) before it builds
    anything: a DCDM network given to ``NeuralMG``, a smoother given to ``DCDM`` or an
    operator-learning checkpoint given to either is a
    :class:`~fe_operators.errors.ModelKindError` naming the file, its kind and the
    preconditioner that takes it.

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
from typing import Any, Iterator, Mapping

import torch

from fe_operators.errors import ModelKindError, ModelNotGivenError

__all__ = ["APPCTX_KEY", "MODEL_KINDS", "load_precond_model", "check_model_kind", "resolve_model",
           "require_hierarchy", "FallbackCounter", "options_prefix"]

#: the ``appctx`` key of a Firedrake solve that holds the preconditioner's model
APPCTX_KEY = "precond_model"

_CACHE: dict[tuple[str, int], torch.nn.Module] = {}


class _ModelKinds(Mapping[str, Any]):
    """kind -> the registered kind (:mod:`~fe_operators.precond.registry`): its network
    ``reference``, ``what`` it is, the preconditioners that take it (``users``) and the
    ``precond evaluate`` ``option`` of its checkpoint, for the kind checks and messages."""

    def _kinds(self) -> dict[str, Any]:
        from fe_operators.precond.registry import preconditioner_kinds

        return preconditioner_kinds()

    def __getitem__(self, name: str) -> Any:
        return self._kinds()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds())

    def __len__(self) -> int:
        return len(self._kinds())


#: kind -> the network it trains and the preconditioners that use it (the registered kinds)
MODEL_KINDS: Mapping[str, Any] = _ModelKinds()


def _kind_of(cls: type) -> str | None:
    """The kind whose network ``cls`` is (a subclass counts), or None."""
    from fe_operators.models.registry import model_class

    for kind, info in MODEL_KINDS.items():
        if isinstance(cls, type) and issubclass(cls, model_class(info.reference)):
            return kind
    return None


def check_model_kind(cls: type, kind: str, pc_name: str, source: str) -> None:
    """Raise :class:`~fe_operators.errors.ModelKindError` unless ``cls`` is ``kind``'s network.

    Parameters
    ----------
    cls
        The network's class.
    kind
        A key of :data:`MODEL_KINDS`: the kind ``pc_name`` needs.
    pc_name
        The preconditioner (or ``precond evaluate`` method), for the message.
    source
        ``"checkpoint PATH"`` or ``"the model given"``, for the message.
    """
    found = _kind_of(cls)
    if found == kind:
        return
    need = MODEL_KINDS[kind]
    train = f"{pc_name} needs a checkpoint of `fe-operators precond train` with kind: {kind}"
    if found is None:
        from fe_operators.models.registry import class_reference

        ref = class_reference(cls)
        text = f"{source} holds a {ref} model, not {need.what} (kind {kind}); {train}"
    else:
        other = MODEL_KINDS[found]
        text = (f"{source} holds {other.what} (kind {found}), not {need.what} (kind {kind}): use it with "
                f"{other.users} (precond evaluate {other.option}); {train}")
        ref = found
    raise ModelKindError(pc_name, source, ref, kind, text)


def load_precond_model(source: Any, kind: str | None = None, pc_name: str = "the preconditioner") -> torch.nn.Module:
    """The network of a checkpoint path, a ``LoadedModel`` or a module, in eval mode.

    Parameters
    ----------
    source
        A path (``str`` or ``os.PathLike``) of a checkpoint, an object with a ``model``
        attribute (:class:`~fe_operators.train.checkpoint.LoadedModel`) or a
        ``torch.nn.Module``.
    kind
        A key of :data:`MODEL_KINDS`: the network must be of this kind (checked from the
        checkpoint's class entry before the network is built).  None: any network.
    pc_name
        Who asks (a preconditioner class, a ``precond evaluate`` method), for messages.

    Raises
    ------
    CheckpointError
        The file is missing or not a loadable checkpoint.
    ModelKindError
        The network is not of ``kind``.
    TypeError
        ``source`` is none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        from fe_operators.train.checkpoint import load_model, read_checkpoint

        path = Path(source).expanduser().resolve()
        key = (str(path), path.stat().st_mtime_ns if path.is_file() else -1)
        if key not in _CACHE:
            if kind is not None:  # the kind from the class entry, before anything is built
                _check_reference(read_checkpoint(path)["model"]["class"], kind, pc_name, f"checkpoint {source}")
            _CACHE[key] = load_model(path).network.eval()
        net = _CACHE[key]
        where = f"checkpoint {source}"
    elif isinstance(source, torch.nn.Module):
        net, where = source.eval(), "the model given"
    elif isinstance(getattr(source, "model", None), torch.nn.Module):
        net = getattr(source, "network", source.model).eval()
        where = f"checkpoint {source.path}" if getattr(source, "path", None) else "the model given"
    else:
        raise TypeError(f"expected a checkpoint path, a LoadedModel or a torch.nn.Module as the preconditioner's "
                        f"model, got {type(source).__name__}")
    if kind is not None:
        check_model_kind(type(net), kind, pc_name, where)
    return net


def _check_reference(ref: Any, kind: str, pc_name: str, source: str) -> None:
    """:func:`check_model_kind` for a checkpoint's class reference (an unregistered one is left
    to :func:`~fe_operators.train.checkpoint.load_model` to report)."""
    from fe_operators.models.registry import model_class

    try:
        cls = model_class(ref)
    except LookupError:
        return
    check_model_kind(cls, kind, pc_name, source)


def require_hierarchy(V: Any, pc_name: str) -> None:
    """Raise :class:`~fe_operators.errors.NoHierarchyError` unless ``V``'s mesh is a level of a
    ``MeshHierarchy`` (where a preconditioner needs one), with the fix for CLI and API users."""
    from firedrake.mg.utils import get_level

    from fe_operators.errors import NoHierarchyError

    hierarchy, level = get_level(V.mesh().unique())
    if hierarchy is None or level != int(level):
        raise NoHierarchyError(
            f"{pc_name}: the mesh is not a level of a MeshHierarchy: use a mesh spec with /rK refinements "
            "(--mesh unitsquare:16/r4 on the command line, load_mesh('unitsquare:16/r4') in Python), or "
            "firedrake.MeshHierarchy(base, k)[-1]")


def options_prefix(pc: Any, own: str) -> str:
    """``pc``'s options prefix followed by the class's own prefix ``own`` (e.g. ``"neuralmg_"``)."""
    return (pc.getOptionsPrefix() or "") + own


def resolve_model(pc_name: str, prefix: str, explicit: Any = None,
                  appctx: Mapping[str, Any] | None = None, kind: str | None = None) -> torch.nn.Module:
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
    kind
        The kind of network the PC needs (a key of :data:`MODEL_KINDS`; None: any).

    Raises
    ------
    ModelNotGivenError
        None of the three gives a model.
    ModelKindError
        The model is of another kind.
    CheckpointError
        The checkpoint is missing or unreadable.
    """
    if explicit is not None:
        return load_precond_model(explicit, kind, pc_name)
    from petsc4py import PETSc

    opts = PETSc.Options(prefix)
    if opts.hasName("model"):
        return load_precond_model(opts.getString("model"), kind, pc_name)
    if appctx is not None and APPCTX_KEY in appctx:
        return load_precond_model(appctx[APPCTX_KEY], kind, pc_name)
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
