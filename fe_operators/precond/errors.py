"""The exceptions of the learned preconditioners.

Each derives from :class:`fe_operators.errors.FEOperatorsError` and from the built-in
exception a Python user would expect; the message says what was expected, what was
given and how to fix it.
"""

from __future__ import annotations

from typing import Any

from fe_operators.errors import FEOperatorsError

__all__ = ["PreconditionerSetupError", "ModelNotGivenError", "ModelKindError", "WorseThanClassicalError"]


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
