"""Solver options read from a file never make PETSc import Python code.

PETSc objects of type ``python`` import the module their options name when they are set
up from options: ``pc_type: python`` with ``pc_python_type: pkg.mod.Class`` (and the same
for KSP, SNES, TS, Tao, Mat and viewers, and ``ksp_monitor_python``), at any options
prefix (``fieldsplit_0_pc_python_type``, ``mg_levels_pc_python_type``).  Options that
come from a file (a dataset's provenance, above all the ``solver_parameters`` a rebuilt
problem hands to Firedrake) are data, so :func:`check_stored_options` refuses every such
key before PETSc sees it, and viewer options that name a file to write
(``ksp_monitor: ascii:/some/file``; PETSc opens it when the solver is set up or runs) as well.
Options a user passes in Python or on the command line are theirs and are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fe_operators.errors import DatasetFileError
from fe_operators.quoting import short

__all__ = ["check_stored_options", "unsafe_options"]


def _items(options: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key path, value) of nested options (Firedrake joins the keys with ``_``)."""
    if isinstance(options, Mapping):
        for key, value in options.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _items(value, name)
    elif isinstance(options, (list, tuple)):
        for i, value in enumerate(options):
            yield from _items(value, f"{prefix}[{i}]")
    else:
        yield prefix, options


#: PETSc's viewer types: an option value ``type:filename[:format[:mode]]`` opens a viewer
_VIEWERS = ("ascii", "binary", "draw", "socket", "matlab", "saws", "vtk", "hdf5", "glvis", "exodusii", "python",
            "pyvista")


def _refusal(key: str, value: Any) -> str | None:
    """Why PETSc must not get ``key: value`` from a file, or ``None`` if it may."""
    name = key.lower()
    if "python" in name:  # *_python_type, *_monitor_python: PETSc imports what the value names
        return "a Python type, which would make PETSc import the code it names"
    if not isinstance(value, str):
        return None
    kind, colon, rest = value.strip().lower().partition(":")
    if kind.endswith("python"):  # pc_type: python, ..., or a viewer of type python
        return "a Python type, which would make PETSc import the code it names"
    if colon and rest.partition(":")[0] and (not kind or kind.endswith(_VIEWERS)):
        return "a viewer writing to the file it names"
    return None


def unsafe_options(options: Any) -> list[str]:
    """The keys (dotted paths) of ``options`` that PETSc must not get from a file.

    ``options`` may be flat (``{"pc_type": "python"}``) or nested as Firedrake accepts
    them (``{"fieldsplit_0": {"pc_type": "python"}}`` gives ``"fieldsplit_0.pc_type"``);
    a refused key is one whose name contains ``python`` (``pc_python_type`` at any
    prefix, ``ksp_monitor_python``), one whose value is the type ``python`` (``pc_type``,
    ``ksp_type``, ``snes_type``, ``mat_type``, ... at any prefix), or one whose value
    opens a PETSc viewer on a file (``ksp_monitor: ascii:/some/file``).
    """
    return [key for key, value in _items(options, "") if _refusal(key, value)]


def check_stored_options(options: Any, source: str, *, error: type[Exception] = DatasetFileError) -> None:
    """Refuse solver options read from a file that would make PETSc import Python code (or write a file).

    Parameters
    ----------
    options
        The stored options (a mapping, possibly nested, e.g. a problem's parameters
        holding ``solver_parameters``).
    source
        Where they come from, for the message, e.g. ``"the dataset d.h5 (provenance
        params)"``.
    error
        The exception class raised (built from the message alone).

    Raises
    ------
    DatasetFileError
        (or ``error``) A key that selects a Python type (``pc_type: python``), names one
        (``pc_python_type``) or opens a viewer on a file; the message names the source
        and the key.
    """
    for key, value in _items(options, ""):
        why = _refusal(key, value)
        if why:
            raise error(
                f"{source} sets the PETSc option {short(key)}: {short(value)}, {why}; solver options read "
                "from a file never select Python types or name files (to use a Python preconditioner, pass "
                "your own solver options explicitly: solver_parameters= in Python)"
            )
