"""Merging a run into its output file: previous file + journal -> a new file, one rename.

The new file is written next to the journal (``FILE.partial/merge.h5.tmp``), synced, and
renamed over the output file, so the output file is always either the old or the new
complete file; the journal is removed after the rename.  A merge that fails (a full
disk, a damaged chunk) deletes its unfinished ``merge.h5.tmp`` and leaves the output
file and the journal as they were, so the same command, re-run, merges again.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fe_operators.data.digests import DIGEST_SIZE

from fe_operators.data.h5_writer import create_dataset_file  # noqa: F401  (kept: the writer of steady files)
from fe_operators.data.journal import Journal
from fe_operators.data.plan import Plan
from fe_operators.data.settings import jsonable, versions
from fe_operators.errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.data.sources import SteadySource, TrajectorySource

__all__ = ["kept_samples", "merge_run"]


def merge_run(out: Path, journal: Journal, settings: dict[str, Any], source: SteadySource | TrajectorySource,
              plan: Plan, run: dict[str, Any]) -> int:
    """Write the previous file and the journal into a new file, rename it over ``out``.

    Parameters
    ----------
    out
        The output file.
    journal
        The run's journal (removed at the end).
    settings
        The run's settings (:func:`~fe_operators.data.settings.run_settings`), stored as
        provenance with the problem's description, the versions and ``run`` appended to
        the previous file's runs.
    source
        The run's source (:mod:`~fe_operators.data.sources`): its problem's mesh and
        spaces, and which kind of file to write (steady or trajectories).
    plan
        The run's plan (previous file, number of rows).
    run
        What this run did (date, command, ranks, samples, failed sample).

    Returns
    -------
    int
        Valid samples in the new file (0, and no file, when there is nothing valid).

    Raises
    ------
    DatasetFileError
        A journal chunk is damaged (:meth:`Journal.parts`), or so is the previous file.
    OSError
        The new file cannot be written (e.g. ``ENOSPC``); ``out`` and the journal are
        kept, the unfinished new file is deleted.
    """
    tmp = journal.path / "merge.h5.tmp"
    tmp.unlink(missing_ok=True)
    if plan.previous is None and journal.indices().size == 0:
        journal.remove()  # nothing valid to store: no file is better than an empty one
        return 0
    runs = list(plan.previous.provenance.get("runs", [])) if plan.previous is not None else []
    provenance = dict(settings)
    provenance.update({
        "description": jsonable(source.description()), "versions": versions(), "runs": runs + [run],
        "n_samples": plan.n_total,
    })
    _check_space(out, journal, source, plan)
    try:
        n_done = _write_merged(tmp, journal, source, plan, provenance)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # never mistaken for a finished file, and its space is freed
        raise
    os.replace(tmp, out)
    journal.remove()
    return n_done


def kept_samples(journal: Journal, plan: Plan) -> int:
    """Valid samples of the run's file-to-be: the previous file's and the journal's."""
    done = np.zeros(plan.n_total, dtype=bool)
    if plan.previous is not None:
        done[: plan.previous.n_samples] = plan.previous.done[: plan.n_total]
    found = journal.indices()
    done[found[found < plan.n_total]] = True
    return int(done.sum())


def _check_space(out: Path, journal: Journal, source: SteadySource | TrajectorySource, plan: Plan) -> None:
    """Raise ``OutputError(ENOSPC)`` if the disk cannot hold the new file.

    From a lower bound of its size (the valid rows, and the stored mesh at 128 KiB plus
    80 bytes per DMPlex point, below what was measured on 2D meshes of 113 to 25k
    points): a merge that may fit is tried, one that cannot is refused before PETSc
    writes the mesh.  PETSc's HDF5 viewer cannot be closed on a full disk (its file then
    stays open until HDF5's exit handler, which runs after MPI is finalised and aborts).
    """
    row = source.row_bytes() + DIGEST_SIZE * (len(source.input_names) + 1) + 9
    start, end = source.mesh.topology_dm.getChart()
    needed = kept_samples(journal, plan) * row + (128 << 10) + 80 * (end - start)
    free = shutil.disk_usage(journal.path).free
    if free < needed:
        raise OutputError(errno.ENOSPC, f"the file needs at least {_size(needed)}, {_size(free)} are free", str(out))


def _size(n: int) -> str:
    """``n`` bytes to three significant digits: ``"950 kB"``, ``"1.52 GB"``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _write_merged(tmp: Path, journal: Journal, source: SteadySource | TrajectorySource, plan: Plan,
                  provenance: dict[str, Any]) -> int:
    """Write the previous file's and the journal's samples into the new file ``tmp``; return #done."""
    writer = source.create(tmp, provenance, plan.n_total)
    try:
        if plan.previous is not None:
            writer.copy_from(plan.previous)
        for part in journal.parts():
            keep = part.indices < plan.n_total
            writer.write(part.indices[keep], {n: a[keep] for n, a in part.inputs.items()},
                         part.output[keep], part.times[keep])
        times = writer.datasets["time_per_sample"][...]
        if np.isfinite(times).any():
            provenance["seconds_per_sample_mean"] = float(np.nanmean(times))
        return writer.close(provenance)
    except BaseException as exc:
        writer.discard(exc)  # closes safely on a full disk, deletes tmp
        raise
