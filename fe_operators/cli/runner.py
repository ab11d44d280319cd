"""The runner every ``fe-operators`` command goes through: exit statuses, errors, rank 0.

A command is a body ``(argv) -> exit status`` decorated with :func:`command` (its module
is in :mod:`fe_operators.cli`); :func:`run_command` runs it.  This module imports no
command and nothing heavy, so every command module can import it.

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

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence

from fe_operators.errors import ConfigError, FEOperatorsError, UsageError
from fe_operators.petsc_argv import argv_hidden_from_petsc

__all__ = ["CommandBody", "run_command", "command", "report_error", "print_rank0"]

#: a command's body: its arguments -> exit status (None: 0)
CommandBody = Callable[[list[str]], "int | None"]


def _rank() -> int:
    """This process's MPI rank if MPI is initialised (only rank 0 prints errors), else 0."""
    mpi = sys.modules.get("mpi4py.MPI")
    return int(mpi.COMM_WORLD.rank) if mpi is not None else 0


def print_rank0(*args: object, **kwargs: object) -> None:
    """``print`` on MPI rank 0 only (a command under ``mpiexec`` prints its output once)."""
    if _rank() == 0:
        print(*args, **kwargs)  # type: ignore[call-overload]


def report_error(name: str, exc: BaseException) -> None:
    """Print ``fe-operators NAME: error: ...`` for ``exc`` on one line of stderr (rank 0 only).

    What :func:`run_command` prints for a reported error; a command that goes on after
    an error (``mesh info`` with several meshes) prints its errors with it too.  A bare
    PETSc error is printed as its code, what the code means and PETSc's messages.
    """
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
        report_error(name, exc)
        return 2
    except (FEOperatorsError, ValueError, OSError) as exc:
        if traceback:
            raise
        report_error(name, exc)
        return 1
    except Exception as exc:  # a PETSc error: report its cause (module docstring), else a bug
        cause = _petsc_cause(exc)
        if cause is None or traceback:
            raise
        report_error(name, cause)
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
