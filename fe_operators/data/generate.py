"""Dataset generation: ``fe-operators generate PROBLEM --mesh MESH --samples N --out FILE``.

Each sample ``i`` is drawn with ``numpy.random.default_rng([seed, i])`` and solved by the
problem's own solver, which keeps its assembled structures and PETSc objects between
samples.  The result is one HDF5 file (layout in :mod:`fe_operators.data.h5`).

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
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mpi4py import MPI

from fe_operators.data.h5 import FORMAT_VERSION, FEFile, numbering_hash, space_key
from fe_operators.data.journal import Journal
from fe_operators.errors import (
    DatasetFileError,
    FEOperatorsError,
    GenerationError,
    OutputError,
    SettingsMismatchError,
)
from fe_operators.petsc_argv import import_firedrake

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.problems.base import Problem

__all__ = [
    "COMPARED_SETTINGS",
    "GenerationReport",
    "build_parser",
    "compare_settings",
    "generate_dataset",
    "load_problem",
    "main_generate",
    "resolve_problem",
    "run_settings",
]

#: settings that must agree to resume or extend a file
COMPARED_SETTINGS = ("format_version", "problem", "params", "seed", "mesh", "numbering",
                     "solver_parameters", "inputs")


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
    """

    path: str
    n_samples: int
    n_done: int
    generated: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        """``generated / seconds`` (0 when nothing was generated)."""
        return self.generated / self.seconds if self.generated and self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------- problems
def resolve_problem(name: str) -> type[Problem]:
    """The Problem class of a registry name (``"darcy"``) or an import path (``"pkg.mod:Class"``).

    Raises
    ------
    ValueError
        Unknown family, or an import path that does not name a Problem subclass.
    """
    from fe_operators.problems import FAMILIES, Problem, problem_class

    if ":" in name and name not in FAMILIES:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import problem class {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Problem)):
            raise ValueError(f"expected {name!r} to name a Problem subclass, got {cls!r}")
        return cls
    return problem_class(name)


def load_problem(name: str, mesh: str, params: Mapping[str, Any], comm: Any = None) -> Problem:
    """Build problem ``name`` with ``params`` on the mesh ``mesh`` (a spec for ``load_mesh``).

    Parameters
    ----------
    name
        Registry name or ``"module:Class"``.
    mesh
        Mesh spec: a shipped mesh name, ``"unitsquare:64"`` or a file path, optionally
        refined (``"plate_holes/r2"``).
    params
        Family parameters.
    comm
        Communicator of the mesh (default ``COMM_SELF``: one copy per process).

    Raises
    ------
    ValueError
        Unknown problem or invalid parameters.
    fe_operators.errors.MeshReadError
        The mesh spec cannot be read.
    """
    from fe_operators.io import load_mesh

    cls = resolve_problem(name)
    mesh_obj = load_mesh(mesh, comm=MPI.COMM_SELF if comm is None else comm)
    try:
        return cls(mesh_obj, **dict(params))
    except TypeError as exc:
        raise ValueError(f"invalid parameters {dict(params)} for problem {name!r}: {exc}") from exc


def _jsonable(value: Any) -> Any:
    """``value`` after a JSON round trip (tuples become lists, odd objects strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _normalise_mesh_spec(spec: str) -> str:
    """A mesh spec that names an existing file becomes an absolute path.

    With a refinement suffix on a file (``mesh.msh/r1``) the file's path becomes absolute
    and the suffix stays (``/abs/mesh.msh/r1``); other specs are kept as given.
    """
    if os.path.isfile(spec):
        return os.path.abspath(spec)
    from fe_operators.errors import MeshReadError
    from fe_operators.io.readers import resolve_mesh_spec

    try:
        source = resolve_mesh_spec(spec)
    except MeshReadError:  # not ours to judge here: loading the mesh reports it
        return spec
    if source.kind == "file" and source.refinements is not None:
        return os.path.abspath(source.path) + f"/r{source.refinements}"
    return spec


def run_settings(name: str, mesh: str, problem: Problem, seed: int) -> dict[str, Any]:
    """The settings of a run that decide its samples (compared when resuming).

    ``solver_parameters`` is read from the problem's ``solver_parameters`` attribute
    when it has one (``None`` otherwise).
    """
    numbering = {space_key(n): numbering_hash(V) for n, V in problem.input_spaces.items()}
    numbering[space_key(None)] = numbering_hash(problem.output_space)
    return {
        "format_version": FORMAT_VERSION,
        "problem": name,
        "params": _jsonable(problem.params),
        "seed": int(seed),
        "mesh": _normalise_mesh_spec(mesh),
        "numbering": numbering,
        "solver_parameters": _jsonable(getattr(problem, "solver_parameters", None)),
        "inputs": list(problem.input_spaces),
    }


def compare_settings(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings that differ, as dotted keys (``"params.solver_parameters.pc_type"``) -> (stored, requested)."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in COMPARED_SETTINGS:
        a, b = stored.get(key), requested.get(key)
        if key == "numbering":  # hashes: the first 12 hex digits say enough
            a = {k: v[:12] for k, v in a.items()} if isinstance(a, dict) else a
            b = {k: v[:12] for k, v in b.items()} if isinstance(b, dict) else b
        _diff(key, a, b, diff)
    return diff


class _Unset:
    """Marks a setting one side does not have."""

    def __repr__(self) -> str:
        return "unset"


_MISSING = _Unset()


def _diff(key: str, a: Any, b: Any, out: dict[str, tuple[Any, Any]]) -> None:
    """Record in ``out`` where ``a`` and ``b`` differ, descending into dicts."""
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for sub in sorted(set(a) | set(b), key=str):
            _diff(f"{key}.{sub}", a.get(sub, _MISSING), b.get(sub, _MISSING), out)
    else:
        out[key] = (a, b)


def _versions() -> dict[str, str | None]:
    """Versions of Python, the stack and fe_operators."""
    import h5py
    from petsc4py import PETSc

    import fe_operators

    out: dict[str, str | None] = {"python": platform.python_version(), "fe_operators": fe_operators.__version__}
    for dist in ("firedrake", "petsc4py", "mpi4py", "numpy", "h5py", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["petsc"] = ".".join(str(v) for v in PETSc.Sys.getVersion())
    out["hdf5"] = h5py.version.hdf5_version
    return out


# ---------------------------------------------------------------------------- planning
def _check_output(out: Path) -> None:
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
class _Plan:
    """What a run must do (decided on rank 0)."""

    n_total: int
    missing: np.ndarray
    previous: FEFile | None
    nothing_to_do: bool


def _plan(out: Path, journal: Journal, settings: dict[str, Any], n_samples: int, overwrite: bool) -> _Plan:
    """Lock the journal, inspect the existing file and journal, decide which samples are missing.

    The journal stays locked when this returns (released by :meth:`Journal.remove` or
    :meth:`Journal.unlock`); on an error it is unlocked.
    """
    try:
        journal.lock()
    except OSError as exc:
        raise OutputError(f"cannot write next to {out}: {exc}") from exc
    try:
        return _plan_locked(out, journal, settings, n_samples, overwrite)
    except BaseException:
        journal.unlock()
        raise


def _plan_locked(out: Path, journal: Journal, settings: dict[str, Any], n_samples: int, overwrite: bool) -> _Plan:
    """:func:`_plan` once the journal is locked."""
    previous = None
    if out.exists():
        try:
            previous = FEFile(out)
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
    stored = journal.settings()
    if stored is None:
        journal.clear()  # new, or killed before its settings were written: holds no samples
    else:
        diff = compare_settings(stored, settings)
        if diff:
            if not overwrite:
                raise SettingsMismatchError(f"{journal.path} (an interrupted run)", diff)
            journal.clear()
    n_total = max(n_samples, previous.n_samples if previous is not None else 0)
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
    return _Plan(n_total, np.flatnonzero(~done), previous, nothing)


# ---------------------------------------------------------------------------- the loop
class _Buffer:
    """Finished samples of one rank, waiting to be journalled."""

    def __init__(self, input_names: Sequence[str]) -> None:
        self.input_names = list(input_names)
        self.indices: list[int] = []
        self.inputs: dict[str, list[np.ndarray]] = {n: [] for n in self.input_names}
        self.outputs: list[np.ndarray] = []
        self.times: list[float] = []

    def clear(self) -> None:
        """Forget the buffered samples."""
        self.indices, self.outputs, self.times = [], [], []
        self.inputs = {n: [] for n in self.input_names}

    def add(self, index: int, inputs: Mapping[str, np.ndarray], output: np.ndarray, seconds: float) -> None:
        """Add one finished sample."""
        self.indices.append(int(index))
        for n in self.input_names:
            self.inputs[n].append(inputs[n])
        self.outputs.append(output)
        self.times.append(seconds)

    def flush(self, journal: Journal, rank: int) -> None:
        """Journal the buffered samples as one chunk and empty the buffer."""
        if self.indices:
            journal.write_part(
                rank, self.indices, {n: np.stack(v) for n, v in self.inputs.items()},
                np.stack(self.outputs), self.times,
            )
        self.clear()


def _dofs(f: Any) -> np.ndarray:
    """A copy of ``f``'s DOFs in the DOF-tensor layout ``(n_nodes,)`` or ``(n_nodes, ncomp)``."""
    V = f.function_space()
    n = V.dof_dset.size
    shape = (n,) if V.value_shape == () else (n, V.block_size)
    return np.array(f.dat.data_ro, dtype=np.float64).reshape(shape)


def _reason_text(reason: object) -> str:
    """PETSc's converged reason with its name: ``"-3 (KSP_DIVERGED_ITS)"``.

    Integer reasons are named as KSP reasons, which is what the problem families report.
    """
    from petsc4py import PETSc

    if isinstance(reason, (int, np.integer)) and not isinstance(reason, bool):
        names = {v: k for k, v in vars(PETSc.KSP.ConvergedReason).items()
                 if k.isupper() and isinstance(v, int)}
        if int(reason) in names:
            return f"{int(reason)} (KSP_{names[int(reason)]})"
    return str(reason)


def _failure_message(exc: BaseException) -> str:
    """One line saying why a sample failed (PETSc's reason for solver failures)."""
    from firedrake.exceptions import ConvergenceError

    from fe_operators.problems.base import SolveError

    if isinstance(exc, SolveError):
        text = f"solver did not converge, PETSc reason {_reason_text(exc.reason)}"
        text += f" ({exc.detail})" if exc.detail else ""
    elif isinstance(exc, ConvergenceError):
        text = "solver did not converge: " + str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


class _Worker:
    """One rank's share of a run: solve, buffer, journal, and agree on stopping.

    Parameters
    ----------
    prob
        This rank's problem (its own mesh copy and solver).
    seed
        Dataset seed.
    journal
        The run's journal.
    comm
        The ensemble communicator.
    """

    def __init__(self, prob: Problem, seed: int, journal: Journal, comm: Any) -> None:
        self.prob = prob
        self.seed = int(seed)
        self.journal = journal
        self.comm = comm
        self.names = list(prob.input_spaces)
        self.buffer = _Buffer(self.names)
        self.failure: tuple[int, str] | None = None
        self.failure_exc: BaseException | None = None
        self.generated = 0

    def solve_one(self, index: int) -> None:
        """Sample and solve ``index``; buffer it, or record the failure."""
        t0 = time.perf_counter()
        try:
            inputs, u = self.prob.sample(self.seed, index)
            arrays = {n: _dofs(inputs[n]) for n in self.names}
            u_arr = _dofs(u)
            if not np.isfinite(u_arr).all():
                raise FloatingPointError("the solution has non-finite values (NaN or inf)")
        except Exception as exc:  # noqa: BLE001 - every failure stops the run, with its reason
            self.failure, self.failure_exc = (index, _failure_message(exc)), exc
        else:
            self.buffer.add(index, arrays, u_arr, time.perf_counter() - t0)
            self.generated += 1

    def run(self, missing: np.ndarray, chunk_size: int, progress: bool, label: str) -> None:
        """Solve ``missing[rank::size]``; every ``chunk_size`` rounds journal and check for failures."""
        rank, size = self.comm.rank, self.comm.size
        mine = missing[rank::size]
        n_rounds = math.ceil(missing.size / size)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=int(missing.size), unit="sample", desc=label, dynamic_ncols=True)
        try:
            for r in range(n_rounds):
                if self.failure is None and r < mine.size:
                    self.solve_one(int(mine[r]))
                if bar is not None:
                    bar.update(min(size, missing.size - r * size))
                if (r + 1) % chunk_size == 0 or r == n_rounds - 1:
                    self.buffer.flush(self.journal, rank)
                    if self.comm.allreduce(self.failure is not None, op=MPI.LOR):
                        break
        except KeyboardInterrupt:
            self.buffer.flush(self.journal, rank)  # keep what is done: a rerun resumes from here
            raise
        finally:
            if bar is not None:
                bar.close()


def generate_dataset(
    problem: str,
    mesh: str,
    n_samples: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk_size: int = 16,
    progress: bool | None = None,
    command: str | None = None,
    comm: Any = None,
) -> GenerationReport:
    """Generate (or complete, or extend) a dataset file.

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
        Samples per rank between journal writes (and failure checks).
    progress
        Show a tqdm bar with samples/s on rank 0 (default: when stderr is a terminal).
    command
        The command line, stored in the provenance.
    comm
        The ensemble communicator (default ``COMM_WORLD``); meshes live on ``COMM_SELF``.

    Returns
    -------
    GenerationReport

    Raises
    ------
    ValueError
        Bad arguments, unknown problem, invalid problem parameters.
    fe_operators.errors.MeshReadError
        The mesh cannot be read.
    OutputError
        The output path cannot be written.
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
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise ValueError(f"expected a positive chunk size, got {chunk_size!r}")
    out = Path(out).absolute()
    _check_output(out)
    resolve_problem(problem)  # fail fast, before the mesh is read
    prob = load_problem(problem, mesh, params or {}, comm=MPI.COMM_SELF)
    settings = run_settings(problem, mesh, prob, seed)
    journal = Journal(out)
    started = time.perf_counter()

    plan, error = None, None
    if rank == 0:
        try:
            plan = _plan(out, journal, settings, int(n_samples), overwrite)
        except (FEOperatorsError, OSError) as exc:
            error = exc
    shared = None
    if rank == 0 and error is None:
        shared = (plan.n_total, plan.missing, plan.nothing_to_do)
    shared = comm.bcast(shared, root=0)
    if shared is None:
        if error is not None:
            raise error
        raise FEOperatorsError("rank 0 failed to plan the run (see its message)")
    n_total, missing, nothing_to_do = shared
    try:  # rank 0 holds the journal's lock until the end, whatever happens
        if nothing_to_do:
            n_done = n_total
            return GenerationReport(str(out), n_total, n_done, 0, time.perf_counter() - started)

        # ---- solve this rank's share, round by round (rounds are the same on every rank)
        worker = _Worker(prob, seed, journal, comm)
        show = sys.stderr.isatty() if progress is None else progress
        t_loop = time.perf_counter()
        worker.run(missing, chunk_size, progress=show and rank == 0, label=f"generate {problem}")
        failure, failure_exc, generated = worker.failure, worker.failure_exc, worker.generated
        loop_seconds = time.perf_counter() - t_loop

        # ---- rank 0 merges the journal (and the previous file) into the output
        failures = comm.gather(failure, root=0)
        total_generated = comm.reduce(generated, op=MPI.SUM, root=0)
        result: tuple[int, tuple[int, str] | None, str | None] | None = None
        if rank == 0:
            first = min((f for f in failures if f is not None), default=None)
            run = {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": command, "ranks": size, "generated": total_generated,
                "loop_seconds": round(loop_seconds, 6), "failed_sample": None if first is None else first[0],
            }
            try:
                n_done = _merge(out, journal, settings, prob, plan, run)
                result = (n_done, first, None)
            except (OSError, FEOperatorsError) as exc:
                result = (0, first, f"cannot write {out}: {exc}")
        n_done, first, merge_error = comm.bcast(result, root=0)
        if merge_error is not None:
            raise OutputError(merge_error)
        if first is not None:
            exc = GenerationError(first[0], first[1], n_done, str(out))
            raise exc from (failure_exc if failure is not None and failure[0] == first[0] else None)
        total_generated = comm.bcast(total_generated, root=0)
        return GenerationReport(str(out), n_total, n_done, total_generated, time.perf_counter() - started)
    finally:
        journal.unlock()


def _merge(out: Path, journal: Journal, settings: dict[str, Any], prob: Problem, plan: _Plan,
           run: dict[str, Any]) -> int:
    """Write previous file + journal into a new file, rename it over ``out``; return #done."""
    from fe_operators.data.h5 import create_dataset_file

    tmp = journal.path / "merge.h5.tmp"
    tmp.unlink(missing_ok=True)
    if plan.previous is None and journal.indices().size == 0:
        journal.remove()  # nothing valid to store: no file is better than an empty one
        return 0
    runs = list(plan.previous.provenance.get("runs", [])) if plan.previous is not None else []
    provenance = dict(settings)
    provenance.update({
        "description": _jsonable(prob.description()), "versions": _versions(), "runs": runs + [run],
        "n_samples": plan.n_total,
    })
    writer = create_dataset_file(tmp, prob.mesh, prob.input_spaces, prob.output_space, provenance, plan.n_total)
    try:
        if plan.previous is not None:
            writer.copy_from(plan.previous)
        for part in journal.parts():
            keep = part.indices < plan.n_total
            writer.write(part.indices[keep], {n: a[keep] for n, a in part.inputs.items()},
                         part.output[keep], part.times[keep])
        times = writer.group["time_per_sample"][...]
        if np.isfinite(times).any():
            provenance["seconds_per_sample_mean"] = float(np.nanmean(times))
        n_done = writer.close(provenance)
    finally:
        writer.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    journal.remove()
    return n_done


# ---------------------------------------------------------------------------- the command
_OPTIONS = {"--mesh", "-m", "--samples", "-n", "--out", "-o", "--seed", "--param", "-p",
            "--overwrite", "--quiet", "-q", "--chunk-size", "--help", "-h"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fe-operators generate``."""
    p = argparse.ArgumentParser(
        prog="fe-operators generate",
        description="Generate a dataset of FE solutions (resumable; ensemble-parallel under mpiexec).",
        epilog="Problem options: --param KEY=VALUE, or any other --KEY VALUE / --KEY=VALUE "
               "(dashes become underscores; VALUE is parsed as JSON when it can be, e.g. "
               "--coefficient lognormal --length-scale 0.2).",
        allow_abbrev=False,
    )
    p.add_argument("problem", help="problem family (e.g. darcy) or module:Class of a Problem subclass")
    p.add_argument("--mesh", "-m", required=True,
                   help="mesh: shipped name (plate_holes), built-in spec (unitsquare:64) or file "
                        "path; append /rK to refine K times (plate_holes/r2)")
    p.add_argument("--samples", "-n", required=True, type=_positive_int, help="number of samples (> 0)")
    p.add_argument("--out", "-o", required=True, help="output HDF5 file")
    p.add_argument("--seed", type=_nonnegative_int, default=0, help="dataset seed (default 0)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="a problem parameter (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a file or interrupted run made with other settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.add_argument("--chunk-size", type=_positive_int, default=16,
                   help="samples per rank between journal writes (default 16)")
    return p


def _positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _parse_value(text: str) -> Any:
    """A problem-option value: JSON when it parses (numbers, true, lists, objects), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_problem_options(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Take ``--key value`` / ``--key=value`` options unknown to the parser out of ``argv``."""
    rest: list[str] = []
    params: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.split("=", 1)[0]
        if tok == "--" or not tok.startswith("--") or name in _OPTIONS:
            rest.append(tok)
            if tok == "--":
                rest.extend(argv[i + 1:])
                break
            i += 1
            continue
        if "=" in tok:
            value = tok.split("=", 1)[1]
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            raise ValueError(f"problem option {tok} needs a value ({tok} VALUE or {tok}=VALUE)")
        params[name[2:].replace("-", "_")] = _parse_value(value)
    return rest, params


def main_generate(argv: Sequence[str] | None = None) -> int:
    """Run ``fe-operators generate`` with arguments ``argv``; return the exit status.

    Exit status 0 on success, 1 on a failed run (one-line message on stderr), 2 on
    bad command-line arguments.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    import_firedrake()
    parser = build_parser()
    rank = MPI.COMM_WORLD.rank
    try:
        rest, params = _split_problem_options(argv)
        args = parser.parse_args(rest)
        for item in args.param:
            if "=" not in item:
                parser.error(f"--param expects KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            params[key.strip().replace("-", "_")] = _parse_value(value)
    except ValueError as exc:
        if rank == 0:
            parser.print_usage(sys.stderr)
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help or a usage error
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        report = generate_dataset(
            args.problem, args.mesh, args.samples, args.out, seed=args.seed, params=params,
            overwrite=args.overwrite, chunk_size=args.chunk_size,
            progress=False if args.quiet else None,
            command=shlex.join(["fe-operators", "generate", *argv]),
        )
    except (FEOperatorsError, ValueError, OSError) as exc:
        if rank == 0:
            print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if rank == 0 and not args.quiet:
        if report.generated:
            print(f"generated {report.generated} samples in {report.seconds:.2f} s "
                  f"({report.samples_per_second:.1f} samples/s); {report.path}: "
                  f"{report.n_done}/{report.n_samples} samples")
        else:
            print(f"nothing to do: {report.path} already holds {report.n_done}/{report.n_samples} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main_generate())
