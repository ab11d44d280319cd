"""Shared pieces of the preconditioner tests: a small trained smoother, solvers on the family."""

from __future__ import annotations

import numpy as np
import pytest

import firedrake as fd

from fe_operators.io import load_mesh
from fe_operators.precond.data import DiffusionFamily

CG = {"mat_type": "aij", "ksp_type": "cg", "ksp_rtol": 1e-8, "ksp_atol": 0.0, "ksp_norm_type": "unpreconditioned"}
NEURAL_MG = {**CG, "pc_type": "python", "pc_python_type": "fe_operators.precond.NeuralMG"}


@pytest.fixture(scope="session")
def trained_smoother(tmp_path_factory):
    """A smoother network trained briefly on unitsquare:4/r3 (checkpoint path, report)."""
    from fe_operators.precond.training import train_preconditioner

    path = tmp_path_factory.mktemp("precond") / "smoother.pt"
    result = train_preconditioner({"kind": "neural_mg", "family": {"mesh": "unitsquare:4/r3", "samples": 3,
                                                                   "validation_samples": 1},
                                   "train": {"steps": 40, "log_every": 0, "lr": 1e-2}, "out": str(path)}, log=None)
    return path, result.report


def family(spec: str = "unitsquare:4/r3", **kwargs) -> DiffusionFamily:
    """The log-normal diffusion family on a mesh spec."""
    return DiffusionFamily(load_mesh(spec), **kwargs)


def make_solver(fam: DiffusionFamily, a: fd.Function, params: dict, appctx: dict | None = None):
    """A LinearVariationalSolver for -div(a grad u) = 1, u = 0, and its solution Function."""
    u = fd.Function(fam.V)
    problem = fd.LinearVariationalProblem(fam.form(a), fam.rhs_form(), u, bcs=fam.bcs)
    return fd.LinearVariationalSolver(problem, solver_parameters=params, appctx=appctx or {}), u


def true_residual(solver) -> float:
    """``‖b − A x‖ / ‖b‖`` of the solver's last solve."""
    from fe_operators.precond.evaluate import true_residual as ksp_true_residual

    return ksp_true_residual(solver.snes.ksp)


def lanczos(apply, n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values and vectors of a symmetric operator given as ``apply(x) -> y`` (numpy)."""
    Q = np.zeros((n, steps))
    q = rng.standard_normal(n)
    alpha, beta = [], []
    for j in range(steps):
        Q[:, j] = q / np.linalg.norm(q)
        w = apply(Q[:, j])
        alpha.append(Q[:, j] @ w)
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        if j < steps - 1:
            beta.append(np.linalg.norm(w))
        q = w
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    vals, S = np.linalg.eigh(T)
    return vals, Q @ S


def dense_operator(apply, A) -> np.ndarray:
    """The matrix of ``apply(x, y)`` (``y = B x`` on PETSc Vecs shaped like ``A``), column by
    column from the unit vectors (tiny problems only: n applications)."""
    n = A.getSize()[0]
    x, y = A.createVecs()
    B = np.empty((n, n))
    for j in range(n):
        x.set(0.0)
        x.setValue(j, 1.0)
        x.assemble()
        apply(x, y)
        B[:, j] = y.array_r
    return B


def assert_pc_spd(solver, rtol: float = 1e-10) -> None:
    """The solver's preconditioner as a matrix (:func:`dense_operator`) is symmetric with
    every eigenvalue above ``rtol`` times the largest."""
    pc = solver.snes.ksp.getPC()
    A, _ = solver.snes.ksp.getOperators()
    B = dense_operator(pc.apply, A)
    assert np.abs(B - B.T).max() <= 1e-12 * np.abs(B).max()
    eig = np.linalg.eigvalsh(0.5 * (B + B.T))
    assert eig.min() > rtol * eig.max()
