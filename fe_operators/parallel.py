"""Launching MPI programs from Python, robustly.

A process that has initialised MPI as a *singleton* (any process that imported
Firedrake) carries Open MPI's and PMIx's bookkeeping variables in its C-level
environment; an ``mpiexec`` started with them inherits a foreign PMIx server and fails
silently.  :func:`mpiexec_env` removes them; :func:`mpiexec_command` adds what Open MPI
needs to run as root and with more ranks than cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["mpiexec_env", "mpiexec_command"]

_KEEP = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe")


def _c_environ() -> dict[str, str]:
    """The process's real environment (``os.environ`` misses C-level ``setenv`` calls)."""
    out = subprocess.run(["env", "-0"], capture_output=True, check=True).stdout
    env = {}
    for item in out.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def mpiexec_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for ``mpiexec``: singleton MPI variables removed, root allowed.

    Parameters
    ----------
    base
        Starting environment (default: the process's real environment).
    """
    env = dict(_c_environ() if base is None else base)
    for k in list(env):
        if k.startswith(("PMIX_", "ORTE_", "OMPI_")) and k not in _KEEP:
            del env[k]
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def mpiexec_command(nprocs: int, args: list[str]) -> list[str]:
    """``mpiexec -n nprocs [--oversubscribe] args...`` for this machine's MPI.

    Raises
    ------
    FileNotFoundError
        No ``mpiexec`` on ``PATH`` or beside the interpreter.
    """
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("mpiexec", path=path)
    if exe is None:
        raise FileNotFoundError("mpiexec not found on PATH; install Open MPI (openmpi-bin)")
    cmd = [exe, "-n", str(int(nprocs))]
    from mpi4py import MPI

    if "Open MPI" in MPI.Get_library_version():
        cmd.append("--oversubscribe")  # CI machines may have fewer cores than ranks
    return cmd + list(args)
