"""``fe-operators doctor``: report the stack's versions and check that it works.

The first command a user runs after installing: it prints the versions that matter
(and PETSc's configure options of interest), then runs three small checks — a Poisson
solve against an exact solution, a torch ↔ Firedrake round trip, and a 2-rank MPI hello —
and exits non-zero if any fails.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from typing import Callable, TextIO

__all__ = ["run_doctor"]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _versions() -> list[tuple[str, str]]:
    import firedrake  # noqa: F401  (first: it initialises PETSc with its options)
    import h5py
    import numba
    import torch
    from mpi4py import MPI
    from petsc4py import PETSc

    import fe_operators

    petsc = ".".join(str(v) for v in PETSc.Sys.getVersion())
    extras = ", ".join(
        f"{pkg}={'yes' if PETSc.Sys.hasExternalPackage(pkg) else 'no'}"
        for pkg in ("mumps", "hdf5", "metis", "ptscotch", "umfpack", "cholmod", "hypre")
    )
    cuda = torch.cuda.is_available()
    device = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu"
    return [
        ("fe_operators", f"{fe_operators.__version__} ({os.path.dirname(fe_operators.__file__)})"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("Firedrake", _version("firedrake")),
        ("PETSc", f"{petsc} [{extras}]"),
        ("petsc4py", _version("petsc4py")),
        ("MPI", MPI.Get_library_version().replace("\x00", "").splitlines()[0].strip()),
        ("mpi4py", _version("mpi4py")),
        ("torch", f"{torch.__version__} (threads {torch.get_num_threads()}, device {device})"),
        ("numba", f"{numba.__version__} (threads {numba.config.NUMBA_NUM_THREADS})"),
        ("meshio", _version("meshio")),
        ("h5py", f"{h5py.__version__} (MPI {'yes' if h5py.get_config().mpi else 'no'})"),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "unset")),
    ]


def _check_poisson() -> str:
    import firedrake as fd

    mesh = fd.UnitSquareMesh(16, 16)
    V = fd.FunctionSpace(mesh, "CG", 2)
    x, y = fd.SpatialCoordinate(mesh)
    exact = fd.sin(fd.pi * x) * fd.sin(fd.pi * y)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    uh = fd.Function(V)
    fd.solve(
        fd.inner(fd.grad(u), fd.grad(v)) * fd.dx == 2 * fd.pi**2 * exact * v * fd.dx,
        uh,
        bcs=fd.DirichletBC(V, 0, "on_boundary"),
        solver_parameters={"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12},
    )
    err = fd.errornorm(exact, uh)
    if not err < 1e-4:
        raise RuntimeError(f"L2 error {err:.2e} vs exact solution, expected < 1e-4")
    return f"CG2 on 16x16, L2 error {err:.2e}"


def _check_roundtrip() -> str:
    import firedrake as fd
    import torch

    from fe_operators.fem.tensors import functions_to_tensor, tensor_to_functions

    mesh = fd.UnitSquareMesh(4, 4)
    V = fd.VectorFunctionSpace(mesh, "CG", 2)
    x, y = fd.SpatialCoordinate(mesh)
    fs = [fd.Function(V).interpolate(fd.as_vector([k * x * y, y - k])) for k in range(3)]
    t = functions_to_tensor(fs)
    back = tensor_to_functions(t * 2.0, V)
    err = max(fd.errornorm(2 * f, g) for f, g in zip(fs, back))
    if t.shape != (3, V.dof_dset.size, 2) or t.dtype != torch.float64 or err > 1e-13:
        raise RuntimeError(f"round trip gave shape {tuple(t.shape)}, error {err:.1e}")
    return f"3 vector CG2 Functions -> {tuple(t.shape)} -> Functions, error {err:.0e}"


def _check_mpi() -> str:
    from fe_operators.parallel import mpiexec_command, mpiexec_env

    # rank 0 prints for both: two ranks writing at once can interleave their lines
    code = (
        "from mpi4py import MPI; c = MPI.COMM_WORLD; "
        "s = c.allreduce(c.rank + 1); g = c.gather(f'hello from {c.rank}/{c.size} sum={s}'); "
        "c.rank == 0 and print(*g, sep=chr(10), flush=True)"
    )
    cmd = mpiexec_command(2, [sys.executable, "-c", code])
    out = subprocess.run(cmd, env=mpiexec_env(), capture_output=True, text=True, timeout=120)
    lines = sorted(line for line in out.stdout.splitlines() if line.startswith("hello"))
    if out.returncode != 0 or lines != ["hello from 0/2 sum=3", "hello from 1/2 sum=3"]:
        raise RuntimeError(f"mpiexec exited {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}")
    return "2 ranks, allreduce 1+2=3"


def run_doctor(stream: TextIO = sys.stdout) -> int:
    """Print versions and run the checks; return 0 when all pass, 1 otherwise."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    failed = 0
    try:
        rows = _versions()
    except Exception as exc:  # a broken import is itself the diagnosis
        print(f"FAIL  imports: {type(exc).__name__}: {exc}", file=stream)
        return 1
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=stream)
    print(file=stream)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("poisson solve", _check_poisson),
        ("torch<->firedrake round trip", _check_roundtrip),
        ("mpi hello (2 ranks)", _check_mpi),
    ]
    for name, check in checks:
        t0 = time.perf_counter()
        try:
            detail = check()
            status = "PASS"
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            status = "FAIL"
            failed += 1
        print(f"{status}  {name}: {detail} [{time.perf_counter() - t0:.1f} s]", file=stream)
    print(("all checks passed" if not failed else f"{failed} check(s) failed"), file=stream)
    return 1 if failed else 0
