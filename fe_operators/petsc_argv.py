"""Keeping a program's command-line flags away from PETSc.

Firedrake initialises PETSc with ``sys.argv`` when it is first imported, so PETSc reads
the flags of whatever program imports it (``fe-operators train --config run.yaml``,
``pytest -q``, a benchmark's ``--quick``) as PETSc options, and warns about, or acts on,
those it knows.  Every entry point imports Firedrake through :func:`import_firedrake`,
or runs under :func:`argv_hidden_from_petsc` (the ``fe-operators`` commands, whose
modules import Firedrake lazily), instead of editing ``sys.argv`` by hand.

Nothing here imports Firedrake at module import.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import ModuleType

__all__ = ["argv_hidden_from_petsc", "import_firedrake"]


@contextlib.contextmanager
def argv_hidden_from_petsc() -> Iterator[list[str]]:
    """Cut ``sys.argv`` to the program name for the block, then restore it.

    Any first import of Firedrake inside the block initialises PETSc without the
    program's flags.

    Yields
    ------
    list of str
        The hidden arguments (``sys.argv[1:]`` on entry).

    Examples
    --------
    >>> with argv_hidden_from_petsc() as argv:            # doctest: +SKIP
    ...     status = run(argv)                            # may import firedrake lazily
    """
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield list(saved[1:])
    finally:
        sys.argv = saved


def import_firedrake() -> ModuleType:
    """Import Firedrake (once) so that PETSc does not read this program's flags.

    Returns
    -------
    module
        The ``firedrake`` module.
    """
    module = sys.modules.get("firedrake")
    if module is not None:
        return module
    with argv_hidden_from_petsc():
        import firedrake
    return firedrake
