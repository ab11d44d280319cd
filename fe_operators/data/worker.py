"""One rank's share of a generation run: sample, solve, buffer, journal, stop together.

The missing samples are dealt round-robin (``missing[rank::size]``); every
``chunk_size`` rounds each rank journals its buffered samples as one part file and the
ranks agree (one ``allreduce``) whether any of them failed (a sample, or a journal
write, e.g. on a full disk), so that all stop at the same chunk boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from mpi4py import MPI

from fe_operators.data.disk import no_space
from fe_operators.data.journal import Journal

if TYPE_CHECKING:  # pragma: no cover
    from fe_operators.data.sources import SteadySource, TrajectorySource

__all__ = ["Worker", "failure_message"]


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


def failure_message(exc: BaseException) -> str:
    """One line saying why a sample failed (PETSc's reason, named, for solver failures)."""
    from firedrake.exceptions import ConvergenceError

    from fe_operators.errors import SolveError

    if isinstance(exc, SolveError):
        text = f"solver did not converge, PETSc reason {exc.reason_text}"
        text += f" ({exc.detail})" if exc.detail else ""
    elif isinstance(exc, ConvergenceError):
        text = "solver did not converge: " + str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


class Worker:
    """One rank's share of a run: solve, buffer, journal, and agree on stopping.

    Parameters
    ----------
    source
        This rank's source of samples (:mod:`~fe_operators.data.sources`: its problem on
        its own mesh copy, with its solver): steady samples or trajectories.
    seed
        Dataset seed.
    journal
        The run's journal.
    comm
        The ensemble communicator.

    Attributes
    ----------
    failure : tuple of (int, str) or None
        The first failed sample of this rank and why.
    failure_exc : BaseException or None
        Its exception.
    write_error : tuple of (str, str, bool) or None
        A journal chunk this rank could not write: the file, why, and whether the disk
        (or quota) was full.  The chunk's samples are not kept; the run stops.
    generated : int
        Samples this rank solved.
    """

    def __init__(self, source: SteadySource | TrajectorySource, seed: int, journal: Journal, comm: Any) -> None:
        self.source = source
        self.seed = int(seed)
        self.journal = journal
        self.comm = comm
        self.names = list(source.input_names)
        self.buffer = _Buffer(self.names)
        self.failure: tuple[int, str] | None = None
        self.failure_exc: BaseException | None = None
        self.write_error: tuple[str, str, bool] | None = None
        self.generated = 0

    def flush(self) -> None:
        """Journal the buffered samples; a failed write is recorded in :attr:`write_error`."""
        try:
            self.buffer.flush(self.journal, self.comm.rank)
        except OSError as exc:
            self.buffer.clear()  # not journalled: a rerun solves them again
            path = str(exc.filename or self.journal.path)
            self.write_error = (path, exc.strerror or str(exc), no_space(exc))

    def solve_one(self, index: int) -> None:
        """Sample and solve ``index`` (a steady sample or a trajectory); buffer it, or record the failure."""
        t0 = time.perf_counter()
        try:
            arrays, u_arr = self.source.solve(self.seed, index)
            if not np.isfinite(u_arr).all():
                raise FloatingPointError("the solution has non-finite values (NaN or inf)")
        except Exception as exc:  # noqa: BLE001 - every failure stops the run, with its reason
            self.failure, self.failure_exc = (index, failure_message(exc)), exc
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
                    self.flush()
                    stop = self.failure is not None or self.write_error is not None
                    if self.comm.allreduce(stop, op=MPI.LOR):
                        break
        except KeyboardInterrupt:
            self.flush()  # keep what is done: a rerun resumes from here
            raise
        finally:
            if bar is not None:
                bar.close()
