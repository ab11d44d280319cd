"""The exceptions fe_operators raises on bad input, all in one module.

Every error derives from :class:`FEOperatorsError` and from the built-in exception a
Python user would expect (``ValueError``, ``TypeError``, ``NotImplementedError``,
``OSError``, ``RuntimeError``), so ``except ValueError`` keeps working.  Messages say what
was expected, what was given, and where possible how to fix it; errors that carry
attributes build their message from them in ``__str__``.

The ``fe-operators`` commands map them to exit statuses in one place
(:func:`fe_operators.cli.runner.run_command`): :class:`UsageError` and :class:`ConfigError` exit
2, every other :class:`FEOperatorsError` exits 1.

Groups
------
general
    :class:`FEOperatorsError`, :class:`UsageError`, :class:`ConfigError`
spaces and meshes
    :class:`SpaceMismatchError`, :class:`UnsupportedSpaceError`,
    :class:`BoundaryMarkerError`, :class:`PointsOutsideMeshError`, :class:`MeshReadError`,
    :class:`NoHierarchyError`, :class:`BoundaryDataError`
problems
    :class:`LoadLimitError`
data (generation, HDF5 files, datasets)
    :class:`OutputError`, :class:`DatasetFileError`, :class:`SettingsMismatchError`,
    :class:`NumberingError`, :class:`GenerationError`, :class:`NonFiniteError`
training (checkpoints, runs)
    :class:`CheckpointError`, :class:`TrainingError`, :class:`RunDirectoryError`
learned preconditioners
    :class:`PreconditionerSetupError`, :class:`ModelNotGivenError`, :class:`ModelKindError`,
    :class:`WorseThanClassicalError`
resources
    :class:`MemoryLimitError`
solvers
    :class:`SolveError`

Values quoted in messages are cut to a bounded length first
(:func:`fe_operators.quoting.short`): a configuration can hold a value whose text is
gigabytes long.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

from fe_operators.quoting import clip, short

__all__ = [
    "FEOperatorsError",
    "UsageError",
    "ConfigError",
    "SpaceMismatchError",
    "UnsupportedSpaceError",
    "BoundaryMarkerError",
    "PointsOutsideMeshError",
    "MeshReadError",
    "NoHierarchyError",
    "BoundaryDataError",
    "LoadLimitError",
    "OutputError",
    "DatasetFileError",
    "SettingsMismatchError",
    "NumberingError",
    "GenerationError",
    "NonFiniteError",
    "CheckpointError",
    "TrainingError",
    "RunDirectoryError",
    "MemoryLimitError",
    "PreconditionerSetupError",
    "ModelNotGivenError",
    "ModelKindError",
    "WorseThanClassicalError",
    "SolveError",
]


class FEOperatorsError(Exception):
    """Base class of every error raised by fe_operators."""


class UsageError(FEOperatorsError, ValueError):
    """A command-line argument that is invalid, or arguments that do not go together.

    For what ``argparse`` cannot check by itself (e.g. a value valid only with another
    option); the commands exit with status 2, as for ``argparse``'s own usage errors.
    """


#: longest ConfigError message shown whole (longer ones lose their middle)
_MESSAGE_LIMIT = 1000


class ConfigError(FEOperatorsError, ValueError):
    """A configuration or option with an unknown key, a wrong type or an invalid value.

    Raised for run configurations (``fe-operators train --config``), model and processor
    options given in Python, and every other typed option schema
    (:mod:`fe_operators.options`).

    Parameters
    ----------
    key
        Dotted path of the offending key, e.g. ``"train.lr"``; ``""`` for the whole file.
    message
        What was expected and what was given, e.g. ``"expected float, got str 'abc'"``.
    source
        The configuration file, if the configuration came from one.
    """

    def __init__(self, key: str, message: str, source: "str | os.PathLike[str] | None" = None) -> None:
        self.key = key
        self.message = message
        self.source = None if source is None else str(source)
        super().__init__(str(self))

    def __str__(self) -> str:
        # the key may be user text (an unknown key); the message should quote values cut
        # already (fe_operators.quoting.short), this bounds what slipped through, keeping
        # its start (what is wrong) and its end (the fix)
        where = f"{self.source}: " if self.source else ""
        key = clip(self.key, 80)
        message = self.message
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT * 2 // 3] + " ... " + message[-(_MESSAGE_LIMIT // 3):]
        return f"{where}{key}: {message}" if key else f"{where}{message}"


class SpaceMismatchError(FEOperatorsError, ValueError):
    """A tensor, Function or operator does not match the function space it is used with."""


class UnsupportedSpaceError(FEOperatorsError, NotImplementedError):
    """The function space is of a kind fe_operators does not support (yet)."""


class BoundaryMarkerError(FEOperatorsError, ValueError):
    """A boundary marker that the mesh does not have.

    Parameters
    ----------
    marker
        The marker that was asked for.
    available
        The markers the mesh does have.
    """

    def __init__(self, marker: object, available: "list[int] | tuple[int, ...]") -> None:
        self.marker = marker
        self.available = tuple(int(m) for m in available)
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"the mesh has no boundary marker {self.marker!r}; "
            f"its boundary markers are {list(self.available)}"
        )


class PointsOutsideMeshError(FEOperatorsError, ValueError):
    """Target points of a transfer lie outside the source mesh."""


class MeshReadError(FEOperatorsError, ValueError):
    """A mesh file that cannot be read (missing, corrupt or unsupported)."""


class NoHierarchyError(SpaceMismatchError):
    """A mesh that is no level of a mesh hierarchy, where multigrid needs one."""


class BoundaryDataError(FEOperatorsError, ValueError):
    """Dirichlet data that are not an affine map of a problem's inputs.

    SPON lifts input-dependent boundary data through a fixed sparse map
    (:func:`fe_operators.fem.lifting.dirichlet_map`); data that depend on the inputs in
    another way (nonlinearly, or through Functions computed from them) cannot be lifted
    exactly.
    """


# ----------------------------------------------------------------------------- problems
class LoadLimitError(FEOperatorsError, ValueError):
    """Problem inputs outside the range where the problem has one solution, e.g. a compressive
    load on the hyperelastic beam above the documented fraction of its buckling load."""


# ----------------------------------------------------------------------------- data
class OutputError(FEOperatorsError, OSError):
    """The output path cannot be written (missing folder, a folder in the way, no permission)."""


class DatasetFileError(FEOperatorsError, ValueError):
    """A file that is not a (readable) fe_operators dataset, or lacks what was asked for."""


class SettingsMismatchError(FEOperatorsError, ValueError):
    """An existing dataset (or interrupted run) was made with other settings.

    Parameters
    ----------
    path
        The file or folder holding the other settings.
    differing
        Setting name -> (stored value, requested value), for each setting that differs.
    """

    def __init__(self, path: str, differing: Mapping[str, tuple[Any, Any]]) -> None:
        self.path = str(path)
        self.differing = dict(differing)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{k}: stored {short(a)}, requested {short(b)}" for k, (a, b) in self.differing.items()]
        return (
            f"{self.path} was generated with other settings ({'; '.join(parts)}); "
            "use another --out, or --overwrite to replace it"
        )


class NumberingError(FEOperatorsError, ValueError):
    """Stored DOFs cannot be matched to the DOFs of a rebuilt mesh/space (no silent renumbering)."""


class GenerationError(FEOperatorsError, RuntimeError):
    """Data generation stopped: a sample failed (e.g. the solver did not converge).

    Parameters
    ----------
    sample
        Index of the failed sample.
    message
        What went wrong (for solver failures it names PETSc's reason).
    stored
        Number of valid samples stored in the output file.
    path
        The output file.
    """

    def __init__(self, sample: int, message: str, stored: int, path: str) -> None:
        self.sample = int(sample)
        self.message = message
        self.stored = int(stored)
        self.path = str(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"sample {self.sample} failed: {self.message}; stopped, {self.stored} valid samples "
            f"stored in {self.path} (the failed sample is not stored)"
        )


class NonFiniteError(FEOperatorsError, ValueError):
    """NaN or infinite values where finite ones are needed: in a dataset's samples (named by
    sample and field) or in a model's predictions (with how many samples)."""


# ----------------------------------------------------------------------------- training
class CheckpointError(FEOperatorsError, ValueError):
    """A checkpoint that is missing, unreadable, corrupt, or does not fit what it is loaded into.

    Parameters
    ----------
    path
        The checkpoint file.
    reason
        What is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"checkpoint {self.path}: {self.reason}"


class TrainingError(FEOperatorsError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite).

    Parameters
    ----------
    epoch
        Zero-based epoch in which it happened.
    step
        Optimizer steps done before the failing batch.
    message
        What happened and what to try.
    """

    def __init__(self, epoch: int, step: int, message: str) -> None:
        self.epoch = int(epoch)
        self.step = int(step)
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step + 1}: {self.message}"


class RunDirectoryError(FEOperatorsError, FileExistsError):
    """A new run would overwrite the checkpoints of an existing run in the same folder."""



class MemoryLimitError(FEOperatorsError, MemoryError):
    """An allocation refused before it was made: its estimated size exceeds the memory
    available (:func:`fe_operators.limits.check_allocation`; sizes chosen by a
    configuration key raise :class:`ConfigError` naming the key instead)."""


# ---------------------------------------------------------------- learned preconditioners
class PreconditionerSetupError(FEOperatorsError, ValueError):
    """A preconditioner cannot be set up for the operator it was given.

    Parameters
    ----------
    pc_name
        The preconditioner class, e.g. ``"fe_operators.precond.NeuralMG"``.
    reason
        What is wrong with the operator or the options, and how to fix it.
    """

    def __init__(self, pc_name: str, reason: str) -> None:
        self.pc_name = pc_name
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.pc_name}: {self.reason}"


class ModelNotGivenError(PreconditionerSetupError):
    """A learned preconditioner found no trained model (no option, no ``appctx`` entry).

    Parameters
    ----------
    pc_name
        The preconditioner class.
    option
        The full option name it looked for, e.g. ``"-neuralmg_model"``.
    appctx_key
        The ``appctx`` key it looked for (None where it has no ``appctx``).
    """

    def __init__(self, pc_name: str, option: str, appctx_key: str | None) -> None:
        self.option = option
        self.appctx_key = appctx_key
        where = f"option {option} PATH" + (f" or appctx[{appctx_key!r}]" if appctx_key else "")
        super().__init__(pc_name, f"no trained model: give a checkpoint with {where} "
                                  "(train one with `fe-operators precond train --config FILE`)")


class ModelKindError(PreconditionerSetupError):
    """A model of another kind than the preconditioner needs (a DCDM network for NeuralMG,
    a smoother for DCDM, an operator-learning model for either).

    Parameters
    ----------
    pc_name
        The preconditioner (or ``precond evaluate`` method) that was given the model.
    source
        Where the model came from: ``"checkpoint PATH"`` or ``"the model given"``.
    found
        The model's kind (``"neural_mg"``, ``"dcdm"``) or, for another network, its
        class reference (``"fe_operators.models.spon:SPON"``).
    expected
        The kind the preconditioner needs.
    reason
        The message: what the model is, which preconditioner takes it, how to get the
        right one.
    """

    def __init__(self, pc_name: str, source: str, found: str, expected: str, reason: str) -> None:
        self.source = source
        self.found = found
        self.expected = expected
        super().__init__(pc_name, reason)


class WorseThanClassicalError(FEOperatorsError, RuntimeError):
    """A trained preconditioner that does worse than its classical counterpart on held-out
    coefficients; ``precond train`` writes no checkpoint (``--allow-worse`` overrides).

    Parameters
    ----------
    kind
        ``"neural_mg"`` or ``"dcdm"``.
    measure
        What was compared, e.g. ``"held-out V-cycle convergence factor"``.
    learned, classical
        The two numbers (lower is better).
    classical_name
        The classical counterpart, e.g. ``"the same Galerkin cycle with l1-Jacobi weights"``.
    path
        The checkpoint that was not written (None when none was to be written).
    report
        The held-out report of the training (both numbers and the rest).
    """

    def __init__(self, kind: str, measure: str, learned: float, classical: float, classical_name: str,
                 path: str | None, report: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.measure = measure
        self.learned = float(learned)
        self.classical = float(classical)
        self.classical_name = classical_name
        self.path = path
        self.report = dict(report or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"nothing written to {self.path}" if self.path else "nothing written"
        return (f"the trained {self.kind} preconditioner is worse than {self.classical_name} on held-out "
                f"coefficients ({self.measure}: learned {self.learned:.4g}, classical {self.classical:.4g}); "
                f"{where}: train longer or with a lower train.lr, or pass --allow-worse (train.allow_worse: true) "
                "to write it anyway")


class SolveError(FEOperatorsError, RuntimeError):
    """A PDE solve did not converge.

    Parameters
    ----------
    reason
        PETSc's converged reason (a negative integer) or a text.
    sample
        Index of the sample being solved, when known.
    detail
        More about the failure (e.g. Firedrake's message).
    solver
        Whose reason ``reason`` is: ``"SNES"`` (nonlinear solver) or ``"KSP"`` (linear
        solver); the two number their reasons differently (-5 is ``SNES_DIVERGED_MAX_IT``
        but ``KSP_DIVERGED_BREAKDOWN``).  ``None`` when unknown: the number is not named.
    """

    def __init__(self, reason: object, sample: int | None = None, detail: str = "",
                 solver: str | None = None) -> None:
        if solver not in (None, "SNES", "KSP"):
            raise ValueError(f"expected solver 'SNES', 'KSP' or None, got {solver!r}")
        self.reason = reason
        self.sample = sample
        self.detail = detail
        self.solver = solver
        super().__init__(str(self))

    @property
    def reason_text(self) -> str:
        """The reason with its PETSc name, e.g. ``"-5 (SNES_DIVERGED_MAX_IT)"`` (``str(reason)`` if unnamed)."""
        reason = self.reason
        # an integer reason of a known solver (bool is an int to Python, numpy integers are Integral)
        if self.solver is None or isinstance(reason, bool) or not isinstance(reason, numbers.Integral):
            return str(reason)
        from petsc4py import PETSc  # only here: errors.py is imported by code that never needs PETSc

        enum = PETSc.SNES.ConvergedReason if self.solver == "SNES" else PETSc.KSP.ConvergedReason
        names = {v: k for k, v in vars(enum).items() if k.isupper() and isinstance(v, int)}
        name = names.get(int(reason))
        return f"{int(reason)} ({self.solver}_{name})" if name else str(int(reason))

    def __str__(self) -> str:
        where = f"sample {self.sample}: " if self.sample is not None else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{where}solver did not converge, PETSc reason {self.reason_text}{extra}"
