"""The exceptions of the learned preconditioners.

Each derives from :class:`fe_operators.errors.FEOperatorsError` and from the built-in
exception a Python user would expect; the message says what was expected, what was
given and how to fix it.
"""

from __future__ import annotations

from fe_operators.errors import FEOperatorsError

__all__ = ["PreconditionerSetupError", "ModelNotGivenError"]


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
