"""Dataset generation: :func:`generate_dataset`, the code behind ``fe-operators generate``.

Each sample ``i`` is drawn with ``numpy.random.default_rng([seed, i])`` and solved by the
problem's own solver, which keeps its assembled structures and PETSc objects between
samples.  The result is one HDF5 file (layout in :mod:`fe_operators.data.h5`).  For a
time-dependent family a sample is a trajectory (parameters drawn the same way, states at
fixed steps; layout in :mod:`fe_operators.data.trajectories`), and everything below
holds for trajectories as for steady samples (:mod:`~fe_operators.data.sources` adapts
each kind of family to the run).

Resuming
    Finished samples are journalled, a chunk at a time, in ``FILE.partial/`` (see
    :mod:`fe_operators.data.journal`); the output file is only ever replaced by a rename
    of a complete new file.  Rerunning a killed command therefore completes the file, and
    the result equals an uninterrupted run.  Asking for more samples than the file holds
    extends it; different settings (problem, parameters, seed, mesh, DOF numbering,
    solver options) are an error unless ``--overwrite``.

Parallel (ensemble)
    Under ``mpiexec -n P`` every rank builds its own copy of the mesh on ``COMM_SELF``
    and its own problem; the missing samples are dealt round-robin; each rank journals
    its own chunks and rank 0 writes the file.  Samples equal the serial run's.

Failures
    A sample whose solve fails (no convergence, non-finite values) is never stored: the
    run stops at the next chunk boundary, stores the valid samples, and raises
    :class:`~fe_operators.errors.GenerationError` naming the sample and PETSc's
    reason (the command exits with status 1).

Full disk
    A journal chunk or the final file that cannot be written (``ENOSPC``, a full quota,
    or another write error on any rank) stops every rank at the same chunk boundary; the
    journalled samples stay in ``FILE.partial/``, an unfinished new file is deleted, the
    output file is left as it was, and every rank raises one
    :class:`~fe_operators.errors.OutputError` ("no space left on device writing FILE;
    free space and re-run the same command to resume (N/M samples are kept in
    FILE.partial)"); re-running resumes from the journal.

The pieces: :mod:`~fe_operators.data.settings` (what decides the samples, provenance),
:mod:`~fe_operators.data.plan` (which samples are missing), :mod:`~fe_operators.data.worker`
(one rank's solve loop), :mod:`~fe_operators.data.merge` (journal -> HDF5 file); the
command line is :mod:`~fe_operators.cli.generate`.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
from time import perf_counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from fe_operators.data.disk import no_space
from fe_operators.data.journal import Journal
from fe_operators.data.merge import kept_samples, merge_run
from fe_operators.data.plan import Plan, check_output, plan_run
from fe_operators.data.layout import KIND_TRAJECTORIES
from fe_operators.data.settings import run_settings
from fe_operators.data.sources import TimeSettings, make_source
from fe_operators.data.worker import Worker
from fe_operators.errors import DatasetFileError, FEOperatorsError, GenerationError, OutputError

__all__ = ["GenerationReport", "generate_dataset"]


@dataclasses.dataclass(frozen=True)
class GenerationReport:
    """What a generation run did.

    Attributes
    ----------
    path
        The output file.
    n_samples
        Rows in the file.
    n_done
        Valid samples in the file.
    generated
        Samples solved by this run (all ranks).
    seconds
        Wall time from the end of mesh and problem set-up to the written file (planning,
        sampling and solving, journal, HDF5 file).
    written
        Whether this run wrote the file (``False``: it was complete already).
    """

    path: str
    n_samples: int
    n_done: int
    generated: int
    seconds: float
    written: bool = True

    @property
    def samples_per_second(self) -> float:
        """``generated / seconds`` (0 when nothing was generated)."""
        return self.generated / self.seconds if self.generated and self.seconds > 0 else 0.0


def generate_dataset(
    problem: str,
    mesh: str,
    n_samples: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: bool | None = None,
    command: str | None = None,
    comm: Any = None,
    time: Mapping[str, int] | None = None,
) -> GenerationReport:
    """Generate (or complete, or extend) a dataset file: steady samples, or trajectories.

    For a time-dependent family (:class:`~fe_operators.problems.timedep.TimeDependentProblem`)
    sample ``i`` is a trajectory: its parameters drawn with ``default_rng([seed, i])``,
    its states ``problem.trajectory(params, **time)``; the file is a trajectory file
    (:mod:`fe_operators.data.trajectories`), read with
    :func:`~fe_operators.data.trajectories.read_trajectories`.

    Parameters
    ----------
    problem
        Registry name (``"darcy"``) or ``"module:Class"`` of a Problem subclass.
    mesh
        Mesh spec for :func:`fe_operators.io.load_mesh`: shipped mesh name,
        ``"unitsquare:64"``, or a file path, optionally refined (``"plate_holes/r2"``).
    n_samples
        Number of samples wanted (a larger file is kept as it is).
    out
        Output HDF5 file.
    seed
        Dataset seed; sample ``i`` uses ``numpy.random.default_rng([seed, i])``.
    params
        Problem-family parameters.
    overwrite
        Replace a file (or interrupted run) made with other settings instead of failing.
    chunk_size
        Samples per rank between journal writes (and failure checks); default 16, and 1
        for trajectories (each is a long solve).
    progress
        Show a tqdm bar with samples/s on rank 0 (default: when stderr is a terminal).
    command
        The command line, stored in the provenance.
    comm
        The ensemble communicator (default ``COMM_WORLD``); meshes live on ``COMM_SELF``.
    time
        The time settings of a time-dependent family: ``n_steps`` (required),
        ``store_every`` (default 1), ``spinup_steps`` (default 0); see
        :class:`~fe_operators.data.sources.TimeSettings`.  The time step is the
        family's parameter ``dt``.  ``None`` for steady families.

    Returns
    -------
    GenerationReport

    Raises
    ------
    ValueError
        Bad arguments, unknown problem, invalid problem parameters, time settings for a
        steady family or none (or bad ones) for a time-dependent one
        (:class:`~fe_operators.errors.ConfigError` naming the setting).
    fe_operators.errors.MeshReadError
        The mesh cannot be read.
    OutputError
        The output path cannot be written, or a journal chunk or the file could not be
        written during the run (e.g. a full disk; the journal is kept: re-run to resume).
    DatasetFileError
        The existing file or the journal of an interrupted run is damaged (named, with
        the fix).
    SettingsMismatchError
        The file (or an interrupted run) has other settings and ``overwrite`` is false.
    GenerationError
        A sample failed; valid samples are stored, the failed one is not.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    rank, size = comm.rank, comm.size
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples <= 0:
        raise ValueError(f"expected a positive number of samples, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"expected a non-negative integer seed, got {seed!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0):
        raise ValueError(f"expected a positive chunk size, got {chunk_size!r}")
    from fe_operators.problems.registry import is_time_dependent, load_problem, resolve_problem  # imports Firedrake

    out = Path(out).absolute()
    check_output(out)
    cls = resolve_problem(problem)  # fail fast, before the mesh is read
    timing = TimeSettings.from_mapping(time or {}) if is_time_dependent(cls) else time  # checked before the mesh
    if timing and not is_time_dependent(cls):
        make_source(cls, timing)  # raises: time settings for a steady family
    prob = load_problem(problem, mesh, params or {}, comm=MPI.COMM_SELF)
    source = make_source(prob, timing)
    if chunk_size is None:
        chunk_size = 1 if source.kind == KIND_TRAJECTORIES else 16
    settings = run_settings(problem, mesh, prob, seed, source)
    journal = Journal(out)
    started = perf_counter()

    plan, (n_total, missing, nothing_to_do) = _plan_on_rank_0(comm, out, journal, settings, source,
                                                              int(n_samples), overwrite)
    try:  # rank 0 holds the journal's lock until the end, whatever happens
        if nothing_to_do:
            n_done = n_total
            return GenerationReport(str(out), n_total, n_done, 0, perf_counter() - started, written=False)

        # ---- solve this rank's share, round by round (rounds are the same on every rank)
        worker = Worker(source, seed, journal, comm)
        show = sys.stderr.isatty() if progress is None else progress
        t_loop = perf_counter()
        worker.run(missing, chunk_size, progress=show and rank == 0, label=f"generate {problem}")
        failure, failure_exc, generated = worker.failure, worker.failure_exc, worker.generated
        loop_seconds = perf_counter() - t_loop

        # ---- rank 0 merges the journal (and the previous file) into the output
        failures = comm.gather(failure, root=0)
        write_errors = comm.gather(worker.write_error, root=0)
        total_generated = comm.reduce(generated, op=MPI.SUM, root=0)
        result: tuple[int, tuple[int, str] | None, tuple[str, str] | None] | None = None
        unexpected: BaseException | None = None
        if rank == 0:
            run = {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": command, "ranks": size, "generated": total_generated,
                "loop_seconds": round(loop_seconds, 6),
            }
            result, unexpected = _merge_on_rank_0(out, journal, settings, source, plan, run, failures, write_errors)
        n_done, first, merge_error = comm.bcast(result, root=0)
        if unexpected is not None:
            raise unexpected
        if merge_error is not None:
            kind, text = merge_error
            raise {"data": DatasetFileError, "output": OutputError}.get(kind, FEOperatorsError)(text)
        if first is not None:
            exc = GenerationError(first[0], first[1], n_done, str(out))
            raise exc from (failure_exc if failure is not None and failure[0] == first[0] else None)
        total_generated = comm.bcast(total_generated, root=0)
        return GenerationReport(str(out), n_total, n_done, total_generated, perf_counter() - started)
    finally:
        journal.unlock()



def _plan_on_rank_0(comm: Any, out: Path, journal: Journal, settings: Mapping[str, Any], source: Any,
                    n_samples: int, overwrite: bool) -> tuple[Plan | None, tuple[int, Any, bool]]:
    """Rank 0 plans the run (:func:`plan_run`); every rank gets ``(n_total, missing, nothing_to_do)``.

    The plan itself stays on rank 0 (None elsewhere); a planning error is raised on every rank.
    """
    plan, error = None, None
    if comm.rank == 0:
        try:
            plan = plan_run(out, journal, settings, n_samples, overwrite, source.shapes(), source.open)
        except (FEOperatorsError, OSError) as exc:
            error = exc
            if not isinstance(exc, FEOperatorsError) and no_space(exc):
                error = OutputError(f"no space left on device writing {exc.filename or journal.path}; "
                                    "free space and re-run the same command")
    shared = (plan.n_total, plan.missing, plan.nothing_to_do) if comm.rank == 0 and error is None else None
    shared = comm.bcast(shared, root=0)
    if shared is None:
        if error is not None:
            raise error
        raise FEOperatorsError("rank 0 failed to plan the run (see its message)")
    return plan, shared


def _merge_on_rank_0(out: Path, journal: Journal, settings: Mapping[str, Any], source: Any, plan: Plan,
                     run: dict[str, Any], failures: list, write_errors: list
                     ) -> tuple[tuple[int, tuple[int, str] | None, tuple[str, str] | None], BaseException | None]:
    """Rank 0 merges the journal into ``out``: ``((n_done, first failure, error), unexpected)``.

    The error is ``(kind, message)`` with kind ``"data"`` (a damaged chunk), ``"output"``
    (a write failed, e.g. a full disk) or ``"other"``; ``unexpected`` is an exception
    that is a bug (rank 0 re-raises it with its traceback after every rank heard of it).
    """
    first = min((f for f in failures if f is not None), default=None)
    write_error = next((w for w in write_errors if w is not None), None)
    run = {**run, "failed_sample": None if first is None else first[0]}
    if write_error is not None:  # the disk is full (most likely): a merge would fail too
        return (0, first, ("output", _write_failure(*write_error, journal, plan))), None
    try:
        return (merge_run(out, journal, settings, source, plan, run), first, None), None
    except DatasetFileError as exc:  # a damaged chunk: the message names it and the fix
        return (0, first, ("data", str(exc))), None
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it, or the others hang
        if isinstance(exc, (OSError, FEOperatorsError)) or no_space(exc):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            detail = reason if isinstance(exc, OutputError) else None  # merge's own words
            return (0, first, ("output", _write_failure(str(out), reason, no_space(exc), journal, plan,
                                                        detail))), None
        return (0, first, ("other", f"rank 0 failed to write {out} (see its message)")), exc  # a bug

def _write_failure(path: str, reason: str, full: bool, journal: Journal, plan: Plan,
                   detail: str | None = None) -> str:
    """The one line for a run stopped by a failed write: the file, why, and how to resume."""
    where = str(journal.path) + (f" and {journal.out}" if plan.previous is not None else "")
    kept = f"{kept_samples(journal, plan)}/{plan.n_total} samples are kept in {where}"
    if full:
        detail = f" ({detail})" if detail else ""
        return (f"no space left on device writing {path}{detail}; free space and re-run the same command "
                f"to resume ({kept})")
    reason = " ".join(reason.split())[:200]
    return f"cannot write {path}: {reason}; fix that and re-run the same command to resume ({kept})"
