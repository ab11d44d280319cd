"""Planning a generation run: which samples are missing, given the output file and journal.

Rank 0 locks the journal, reads the existing output file (if any) and the journal of an
interrupted run (if any), refuses other settings unless ``overwrite``, and returns the
indices still to solve (:class:`Plan`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fe_operators.errors import DatasetFileError, NonFiniteError, OutputError, SettingsMismatchError
from fe_operators.data.h5 import FEFile
from fe_operators.data.journal import Journal
from fe_operators.data.settings import compare_settings
from fe_operators.limits import check_allocation

__all__ = ["Plan", "check_output", "plan_run"]


def check_output(out: Path) -> None:
    """Raise :class:`OutputError` unless ``out`` can be created or replaced."""
    if out.is_dir():
        raise OutputError(f"--out {out} is a directory; expected a file path such as {out}/data.h5")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise OutputError(f"cannot write {out}: the directory {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: no write permission in {parent}")


@dataclasses.dataclass
class Plan:
    """What a run must do (decided on rank 0).

    Attributes
    ----------
    n_total
        Rows of the file after the run.
    missing
        Indices of the samples to solve, increasing.
    previous
        The existing output file whose samples are kept (an :class:`FEFile`, or a
        :class:`~fe_operators.data.trajectories.TrajectoryFile`), or ``None``.
    nothing_to_do
        The existing file is complete and large enough.
    """

    n_total: int
    missing: np.ndarray
    previous: Any
    nothing_to_do: bool


def plan_run(out: Path, journal: Journal, settings: dict[str, Any], n_samples: int, overwrite: bool,
             shapes: tuple[Mapping[str, tuple[int, ...]], tuple[int, ...]],
             open_file: Callable[[Path], Any] = FEFile) -> Plan:
    """Lock the journal, inspect the existing file and journal, decide which samples are missing.

    The journal stays locked when this returns (released by :meth:`Journal.remove` or
    :meth:`Journal.unlock`); on an error it is unlocked.  ``shapes`` (input name -> DOF
    shape of one sample, and the output's) are what the journal's chunks must hold
    (:meth:`Journal.check_parts`).  ``open_file`` reads an existing output file of the
    run's kind (:class:`FEFile`, or :class:`~fe_operators.data.trajectories.TrajectoryFile`
    for trajectories).

    Raises
    ------
    OutputError
        The journal folder cannot be created, or another run holds it.
    DatasetFileError
        ``out`` exists and is not a readable dataset or holds a damaged sample (one
        whose values do not match their digests; checked when its samples are to be
        copied), or the journal is damaged (an unreadable ``settings.json``, a chunk
        that cannot be read or fails its digests), and ``overwrite`` is false.
    SettingsMismatchError
        ``out`` or the journal holds other settings (and ``overwrite`` is false).
    MemoryLimitError
        The plan of ``n_samples`` samples would not fit in memory.
    """
    try:
        journal.lock()
    except OSError as exc:
        raise OutputError(f"cannot write next to {out}: {exc}") from exc
    try:
        return _plan_locked(out, journal, settings, n_samples, overwrite, shapes, open_file)
    except BaseException:
        journal.unlock()
        raise


def _plan_locked(out: Path, journal: Journal, settings: dict[str, Any], n_samples: int, overwrite: bool,
                 shapes: tuple[Mapping[str, tuple[int, ...]], tuple[int, ...]],
                 open_file: Callable[[Path], Any]) -> Plan:
    """:func:`plan_run` once the journal is locked."""
    previous = None
    if out.exists():
        try:
            previous = open_file(out)
        except DatasetFileError as exc:
            if not overwrite:
                raise DatasetFileError(
                    f"{out} exists and is not a readable fe_operators dataset ({exc}); "
                    "choose another --out, or --overwrite to replace it"
                ) from exc
        if previous is not None:
            diff = compare_settings(previous.provenance, settings)
            if diff and not overwrite:
                raise SettingsMismatchError(str(out), diff)
            previous = None if diff else previous
        if previous is not None and not (previous.complete and previous.n_samples >= n_samples):
            try:  # its samples will be copied into the new file: verify them before solving any
                previous.check()
            except (DatasetFileError, NonFiniteError) as exc:
                if not overwrite:
                    raise DatasetFileError(
                        f"{exc}; to go on, choose another --out, or --overwrite to replace {out} (its "
                        "samples are solved again)"
                    ) from exc
                previous = None
    try:
        stored = journal.settings()
        if stored is not None and not compare_settings(stored, settings):
            journal.check_parts(*shapes)  # before any of its samples count as done
    except DatasetFileError:
        if not overwrite:
            raise
        stored = None  # --overwrite: discard the damaged journal
    if stored is None:
        journal.clear()  # new, damaged, or killed before its settings were written
    else:
        diff = compare_settings(stored, settings)
        if diff:
            if not overwrite:
                raise SettingsMismatchError(f"{journal.path} (an interrupted run)", diff)
            journal.clear()
    n_total = max(n_samples, previous.n_samples if previous is not None else 0)
    # the plan holds per sample a flag, its negation and an index, and is broadcast (pickled) to every rank
    check_allocation(n_total * (1 + 1 + 8 * 3), f"--samples {n_total}: the plan (sample flags and indices)",
                     fix="generate fewer samples per file")
    done = np.zeros(n_total, dtype=bool)
    if previous is not None:
        done[: previous.n_samples] = previous.done
    found = journal.indices()
    done[found[found < n_total]] = True
    nothing = previous is not None and previous.n_samples == n_total and previous.complete
    if nothing:
        journal.remove()
    else:
        journal.start(settings)
    return Plan(n_total, np.flatnonzero(~done), previous, nothing)
