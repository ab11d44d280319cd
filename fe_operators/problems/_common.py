"""Pieces shared by the problem families: markers, input assignment, checked solves."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

import firedrake as fd

from fe_operators.errors import SolveError, SpaceMismatchError

__all__ = ["SPARSE_CHOLESKY", "SPARSE_LU", "Markers", "COEFFICIENT_SPACES", "json_markers", "boundary_measure", "solve_or_raise", "assign_inputs"]

#: sparse direct Cholesky with PETSc's own factorisation and nested-dissection ordering;
#: on one process it measured several times faster per solve than MUMPS
SPARSE_CHOLESKY: dict[str, str] = {
    "mat_type": "aij",
    "ksp_type": "preonly",
    "pc_type": "cholesky",
    "pc_factor_mat_solver_type": "petsc",
    "pc_factor_mat_ordering_type": "nd",
}

#: the same with LU, for operators that are not symmetric positive definite
SPARSE_LU: dict[str, str] = {**SPARSE_CHOLESKY, "pc_type": "lu"}

Markers = str | int | Sequence[int]


def json_markers(markers: Markers) -> str | int | list[int]:
    """Markers in a JSON-able form (strings and ints kept, sequences as lists)."""
    if isinstance(markers, str) or np.isscalar(markers):
        return markers if isinstance(markers, str) else int(markers)
    return [int(m) for m in markers]


def solve_or_raise(solver: fd.LinearVariationalSolver) -> None:
    """Run ``solver``; turn Firedrake's ConvergenceError into :class:`SolveError`."""
    try:
        solver.solve()
    except fd.ConvergenceError as exc:
        reason = solver.snes.getKSP().getConvergedReason()
        raise SolveError(reason, detail=" ".join(str(exc).split()), solver="KSP") from exc


def assign_inputs(
    targets: Mapping[str, fd.Function], inputs: Mapping[str, fd.Function], family: str
) -> None:
    """Copy ``inputs`` into the solver's Functions, checking names and spaces."""
    missing = set(targets) - set(inputs)
    if missing:
        raise KeyError(f"{family}: missing inputs {sorted(missing)}; expected {list(targets)}")
    for key, target in targets.items():
        given = inputs[key]
        if given.function_space() != target.function_space():
            raise SpaceMismatchError(
                f"{family}: input {key!r} expected on {target.function_space().ufl_element()} "
                f"of the problem's mesh, got {given.function_space().ufl_element()}"
            )
        # a raw copy: Function.assign generates and runs a kernel (about 1 ms a call)
        target.dat.data_wo[...] = given.dat.data_ro


#: input space names accepted for the wave speed
COEFFICIENT_SPACES: dict[str, tuple[str, int]] = {"CG1": ("CG", 1), "DG0": ("DG", 0)}

def boundary_measure(markers: Markers) -> fd.Measure:
    """``ds`` restricted to ``markers`` (all of ∂Ω for ``"on_boundary"``)."""
    if isinstance(markers, str):
        return fd.ds
    return fd.ds(tuple(int(m) for m in np.atleast_1d(markers)))
