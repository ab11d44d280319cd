"""The ``fe-operators`` command line.

Subcommands
-----------
doctor
    Print the stack's versions and run small checks (exit 1 on any failure).
mesh info FILE_OR_NAME
    Summarise a mesh: cells, vertices, boundary tags, element quality.
generate PROBLEM --mesh MESH --samples N --out FILE --seed S
    Generate a dataset by solving a problem family on a mesh.
train --config run.yaml [--resume]
    Train a model on a generated dataset.
evaluate RUN_DIR --data FILE [--split test|all] [--out DIR]
    Evaluate a trained model: FE-norm errors, boundary error, timing, plots and a .vtu.
precond train --config FILE | precond evaluate --model PATH --mesh SPEC
    Train a learned preconditioner; solve with it and classical ones, print a table.

Exit statuses (the same for every command, see :func:`run_command`)
----------------------------------------------------------------------
0
    Success.
1
    The command failed on its input: a :class:`~fe_operators.errors.FEOperatorsError`
    (a corrupt checkpoint, a dataset that does not fit, a failed solve, ...) or a plain
    ``ValueError``/``OSError`` (a missing file, no permission); one line
    ``fe-operators COMMAND: error: ...`` on stderr, no traceback.  A
    ``petsc4py.PETSc.Error`` is reported as its cause: the exception raised in a Python
    callback of PETSc (a learned preconditioner's set-up), or, with no Python cause,
    PETSc's error when its code means bad input (an unknown type name, an unreadable
    file, a zero pivot, ...).
2
    A usage or configuration error (``argparse``'s, :class:`~fe_operators.errors.UsageError`,
    :class:`~fe_operators.errors.ConfigError`), reported the same way.
130
    Interrupted (Ctrl-C).

Any other exception is a bug: it keeps its traceback.  Set ``FE_OPERATORS_TRACEBACK=1``
to get the traceback of the errors above as well.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable, Sequence

from fe_operators.petsc_argv import argv_hidden_from_petsc

__all__ = ["main", "build_parser", "run_command", "command"]

#: a command's body: its arguments -> exit status (None: 0)
CommandBody = Callable[[list[str]], "int | None"]


def _rank() -> int:
    """This process's MPI rank if MPI is initialised (only rank 0 prints errors), else 0."""
    mpi = sys.modules.get("mpi4py.MPI")
    return int(mpi.COMM_WORLD.rank) if mpi is not None else 0


def _error(name: str, exc: BaseException) -> None:
    if _rank() == 0:
        code = _petsc_code(exc)
        if code is not None:  # a bare PETSc error of bad input: its code, what it means, PETSc's messages
            # str() is "error code N" and the call stack ("[0] KSPSetType() at file:line"), then the messages
            said = [line.split("]", 1)[-1].strip() for line in str(exc).splitlines()[1:]
                    if not re.match(r"\[\d+\] \w+\(\) at ", line)]
            text = f"PETSc error {code} ({_PETSC_INPUT_ERRORS[code]})" + (f": {' '.join(said)}" if said else "")
        else:
            text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fe-operators {name}: error: {text}", file=sys.stderr)


#: petsc4py.PETSc.Error codes (``ierr``, PETSc's ``PETSC_ERR_*``) that mean bad input, not a bug
_PETSC_INPUT_ERRORS = {
    65: "unable to open a file", 66: "unable to read a file", 67: "unable to write a file",
    79: "unexpected data in a file", 71: "zero pivot in an LU factorization",
    81: "zero pivot in a Cholesky factorization: the matrix is not positive definite",
    82: "the iterative method failed", 86: "unknown type name in the solver options",
    91: "the solver did not converge", 92: "the factorization is not available in this PETSc",
    94: "wrong number of MPI processes", 95: "missing or incorrect input",
}


def _petsc_code(exc: BaseException) -> int | None:
    """The error code of a ``petsc4py.PETSc.Error`` (None for any other exception)."""
    petsc = sys.modules.get("petsc4py.PETSc")  # not imported: the exception is no PETSc error
    error = getattr(petsc, "Error", None)
    if error is None or not isinstance(exc, error):
        return None
    return int(getattr(exc, "ierr", -1))


def _petsc_cause(exc: BaseException) -> BaseException | None:
    """What a ``petsc4py.PETSc.Error`` reports, or None (not a PETSc error, or a bug).

    An exception raised in a Python callback of PETSc (a Python PC's set-up or apply)
    reaches the caller as ``PETSc.Error`` (code 101) whose ``__cause__`` is the original;
    PETSc errors raised inside nested callbacks chain the same way.  The first exception
    down that chain that is not a PETSc error is the cause: reported when it is an
    fe_operators error, ``ValueError`` or ``OSError``, a bug otherwise.  A PETSc error
    with no Python cause is reported when its code means bad input
    (:data:`_PETSC_INPUT_ERRORS`).
    """
    from fe_operators.errors import FEOperatorsError

    if _petsc_code(exc) is None:
        return None
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _petsc_code(current) is None:
            return current if isinstance(current, (FEOperatorsError, ValueError, OSError)) else None
        last = current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return last if _petsc_code(last) in _PETSC_INPUT_ERRORS else None


def run_command(name: str, body: CommandBody, argv: Sequence[str]) -> int:
    """Run one ``fe-operators`` command with the exit statuses of the module docstring.

    The body runs with ``OMP_NUM_THREADS`` defaulting to 1 and ``sys.argv`` hidden from
    PETSc (:func:`~fe_operators.petsc_argv.argv_hidden_from_petsc`).

    Parameters
    ----------
    name
        The command as typed, e.g. ``"train"`` or ``"mesh info"`` (for messages).
    body
        Parses its arguments (``argparse``) and does the work; returns the exit status.
    argv
        The arguments after the command name.

    Returns
    -------
    int
        The exit status.
    """
    from fe_operators.errors import ConfigError, FEOperatorsError, UsageError

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # Firedrake warns (and runs slower) otherwise
    traceback = os.environ.get("FE_OPERATORS_TRACEBACK", "") not in ("", "0")
    try:
        with argv_hidden_from_petsc():
            status = body(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        print(f"fe-operators {name}: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ConfigError) as exc:
        if traceback:
            raise
        _error(name, exc)
        return 2
    except (FEOperatorsError, ValueError, OSError) as exc:
        if traceback:
            raise
        _error(name, exc)
        return 1
    except Exception as exc:  # a PETSc error: report its cause (module docstring), else a bug
        cause = _petsc_cause(exc)
        if cause is None or traceback:
            raise
        _error(name, cause)
        return 2 if isinstance(cause, (UsageError, ConfigError)) else 1
    return 0 if status is None else int(status)


def command(name: str) -> Callable[[CommandBody], Callable[[Sequence[str] | None], int]]:
    """Decorate a command's body into its entry point ``main_x(argv=None) -> int``.

    The entry point reads ``sys.argv[1:]`` when ``argv`` is None and runs the body
    through :func:`run_command`.

    Examples
    --------
    >>> @command("train")                                     # doctest: +SKIP
    ... def main_train(argv):
    ...     args = parser().parse_args(argv)
    ...     ...
    """

    def decorate(body: CommandBody) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(body)
        def entry(argv: Sequence[str] | None = None) -> int:
            return run_command(name, body, sys.argv[1:] if argv is None else argv)

        return entry

    return decorate


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fe-operators`` (subcommands parse their own options)."""
    from fe_operators import __version__

    p = argparse.ArgumentParser(
        prog="fe-operators", description="Finite-element operator learning on Firedrake meshes.",
        epilog="Run 'fe-operators COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"fe_operators {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("doctor", help="print versions and check the installation")
    mesh = sub.add_parser("mesh", help="mesh tools (mesh info FILE_OR_NAME)")
    mesh_sub = mesh.add_subparsers(dest="mesh_command", required=True, metavar="MESH_COMMAND")
    mesh_sub.add_parser("info", help="cells, vertices, boundary tags, quality", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("generate", help="generate a dataset by solving a problem family", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("train", help="train a model from a YAML config", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("evaluate", help="evaluate a trained model on a dataset (errors, plots, .vtu)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("precond", help="train and evaluate learned preconditioners (precond train|evaluate)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _command(argv: list[str]) -> tuple[str, CommandBody] | None:
    """The command ``argv`` names and its body (which parses the rest), or None."""
    if argv[:1] == ["generate"]:
        from fe_operators.data.generate import main_generate

        return "generate", main_generate
    if argv[:1] == ["train"]:
        from fe_operators.train.cli import main_train

        return "train", main_train
    if argv[:1] == ["evaluate"]:
        from fe_operators.evaluate import main_evaluate

        return "evaluate", main_evaluate
    if argv[:1] == ["precond"]:
        from fe_operators.precond.cli import main_precond

        return "precond", main_precond
    if argv[:2] == ["mesh", "info"]:
        from fe_operators.io.info import main_mesh_info

        return "mesh info", main_mesh_info
    if argv[:1] == ["doctor"] and len(argv) == 1:
        from fe_operators.doctor import run_doctor

        return "doctor", lambda rest: run_doctor()
    return None


def _parse_only(argv: list[str]) -> int:
    build_parser().parse_args(argv)
    return 2  # not reached: every command was dispatched by _command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fe-operators`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    found = _command(argv)
    if found is None:  # help, --version, and usage errors: argparse prints them and exits
        return run_command("", _parse_only, argv)
    name, body = found
    return run_command(name, body, argv[len(name.split()):])


if __name__ == "__main__":
    sys.exit(main())
