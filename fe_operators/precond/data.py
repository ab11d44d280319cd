r"""Training operators and right-hand sides for the learned preconditioners (Firedrake side).

* :class:`DiffusionFamily` — :math:`-\nabla\cdot(a\nabla u) = f`, :math:`u = 0` on
  :math:`\partial\Omega`, continuous Lagrange on a mesh, with the random coefficient of
  the Darcy family (:class:`~fe_operators.problems.darcy.DarcyProblem`: log-normal,
  thresholded ...); it assembles the operator exactly as a user's ``solve`` does
  (Dirichlet rows as identity rows);
* :func:`smoother_samples` — Galerkin hierarchies of sampled operators as tensors, for
  training the multigrid smoother (:mod:`~fe_operators.precond.vcycle`);
* :func:`lanczos_ritz` and :func:`training_rhs` — the DCDM paper's right-hand sides:
  unit-norm random combinations of Ritz vectors of the assembled operator, the low end of
  the spectrum weighted ``low_weight`` times more, plus random smooth fields (a Matérn
  field as a load vector :math:`M\psi`).

Serial meshes (training runs on one process).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

import firedrake as fd

from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.fem.transfer import level_prolongations
from fe_operators.precond.features import row_parts
from fe_operators.multigrid.galerkin import galerkin_hierarchy
from fe_operators.problems.darcy import DarcyProblem, FNO_LENGTH_SCALE
from fe_operators.problems.random_fields import GaussianRandomField

__all__ = ["DiffusionFamily", "smoother_samples", "lanczos_ritz", "training_rhs", "decoupled_rows"]


class DiffusionFamily:
    """Variable-coefficient diffusion with zero Dirichlet data; the coefficient is random.

    Parameters
    ----------
    mesh
        A Firedrake mesh (a hierarchy level for multigrid).
    coefficient
        The Darcy family's coefficient: ``"lognormal"`` (``exp`` of a Matérn field),
        ``"dg0"`` or ``"cg1"`` (thresholded).
    variance
        Marginal variance of the field (log-normal: variance 2 gives max/min contrasts
        of 1e2–1e4 on the unit square, sometimes more).
    length_scale
        Matérn length scale (default the FNO field's).
    degree
        Lagrange degree of the solution.

    Attributes
    ----------
    V
        The solution space.
    bcs
        ``[DirichletBC(V, 0, "on_boundary")]``.
    """

    def __init__(self, mesh: fd.MeshGeometry, coefficient: str = "lognormal", variance: float = 2.0,
                 length_scale: float | None = None, degree: int = 1) -> None:
        self.coefficient = coefficient
        self.problem = DarcyProblem(mesh, coefficient=coefficient, variance=variance,
                                    length_scale=FNO_LENGTH_SCALE if length_scale is None else length_scale,
                                    degree=degree)
        self.V = self.problem.output_space
        self.bcs = [fd.DirichletBC(self.V, 0.0, "on_boundary")]

    def sample_coefficient(self, rng: np.random.Generator) -> fd.Function:
        """One coefficient ``a`` (a new Function)."""
        return self.problem.sample_inputs(rng)["a"]

    def form(self, a: fd.Function) -> Any:
        """The bilinear form ``∫ a ∇u·∇v``."""
        u, v = fd.TrialFunction(self.V), fd.TestFunction(self.V)
        return fd.inner(a * fd.grad(u), fd.grad(v)) * fd.dx

    def rhs_form(self) -> Any:
        """The load ``∫ v`` (f = 1)."""
        return fd.TestFunction(self.V) * fd.dx

    def operator(self, a: fd.Function) -> Any:
        """The assembled operator (PETSc AIJ, Dirichlet rows and columns as identity)."""
        return fd.assemble(self.form(a), bcs=self.bcs, mat_type="aij").petscmat

    @staticmethod
    def contrast(a: fd.Function) -> float:
        """``max a / min a`` (over the local values)."""
        vals = a.dat.data_ro
        return float(vals.max() / vals.min())


def decoupled_rows(A: sp.csr_matrix) -> np.ndarray:
    """Rows of ``A`` without off-diagonal entries (Dirichlet identity rows)."""
    A = sp.csr_matrix(A)
    return row_parts(A.indptr, A.indices, A.data)[2]


def smoother_samples(family: DiffusionFamily, n_samples: int, rng: np.random.Generator,
                     levels: int | None = None) -> tuple[list[Any], list[float]]:
    """Masked Galerkin hierarchies of ``n_samples`` sampled operators, and their contrasts.

    Parameters
    ----------
    family
        The operator family on a hierarchy level.
    n_samples
        Number of coefficients.
    rng
        Source of the coefficients.
    levels
        Levels used (the finest; default all).

    Returns
    -------
    tuple
        ``([Hierarchy, ...], [contrast, ...])`` (:func:`~fe_operators.multigrid.galerkin.galerkin_hierarchy`).
    """
    Ps = [petsc_to_scipy(P) for P in level_prolongations(family.V, levels)]
    out, contrasts = [], []
    for _ in range(int(n_samples)):
        a = family.sample_coefficient(rng)
        A = petsc_to_scipy(family.operator(a))
        out.append(galerkin_hierarchy(A, Ps))
        contrasts.append(family.contrast(a))
    return out, contrasts


def lanczos_ritz(A: sp.spmatrix, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values and vectors of ``m`` Lanczos steps on ``A`` (full reorthogonalisation).

    The start vector is ``A x`` for a random ``x`` that vanishes on the decoupled
    (Dirichlet) rows, as in the DCDM paper's data generation; the Krylov space then
    stays off those rows.

    Returns
    -------
    tuple
        ``(values, vectors)``: ``(k,)`` ascending and ``(n, k)`` orthonormal columns,
        ``k <= m`` (fewer when the Krylov space is exhausted).
    """
    A = sp.csr_matrix(A)
    n = A.shape[0]
    free = ~decoupled_rows(A)
    x = rng.standard_normal(n) * free
    q = A @ x
    Q = np.zeros((n, m))
    alpha, beta = np.zeros(m), np.zeros(m)
    k = 0
    for j in range(m):
        nrm = np.linalg.norm(q)
        if nrm < 1e-12 * max(1.0, abs(alpha[:j]).max(initial=0.0)):
            break
        Q[:, j] = q / nrm
        if j:
            beta[j - 1] = nrm
        w = A @ Q[:, j]
        alpha[j] = Q[:, j] @ w
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)  # twice is enough (Kahan)
        q = w
        k = j + 1
    T = np.diag(alpha[:k]) + np.diag(beta[: k - 1], 1) + np.diag(beta[: k - 1], -1)
    vals, S = np.linalg.eigh(T)
    return vals, Q[:, :k] @ S


def training_rhs(A: sp.spmatrix, n_ritz: int, n_combinations: int, n_smooth: int, rng: np.random.Generator,
                 *, mesh: fd.MeshGeometry | None = None, low_fraction: float = 0.5, low_weight: float = 9.0,
                 smooth_length: float = 0.2) -> np.ndarray:
    """Unit-norm training right-hand sides of the DCDM loss for one operator.

    Parameters
    ----------
    A
        The assembled operator (scipy).
    n_ritz
        Lanczos steps (Ritz vectors).
    n_combinations
        Random combinations ``Σ_j c_j v_j``, ``c_j ~ N(0, 1)``, times ``low_weight`` for
        the lowest ``low_fraction`` of the Ritz values (the paper's 9 and half).
    n_smooth
        Random smooth fields (needs ``mesh``): load vectors ``M ψ`` of a Matérn field
        ``ψ`` of length scale ``smooth_length``, zero on the Dirichlet rows.
    rng
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        ``(n, n_combinations + n_smooth)``, unit-norm columns.
    """
    A = sp.csr_matrix(A)
    cols = []
    if n_combinations:
        vals, vecs = lanczos_ritz(A, n_ritz, rng)
        c = rng.standard_normal((vecs.shape[1], n_combinations))
        c[: int(math.ceil(low_fraction * vecs.shape[1]))] *= low_weight
        cols.append(vecs @ c)
    if n_smooth:
        if mesh is None:
            raise ValueError("training_rhs: smooth fields need the mesh")
        V = fd.FunctionSpace(mesh, "CG", 1)
        grf = GaussianRandomField(V, smooth_length)
        M = petsc_to_scipy(fd.assemble(fd.TrialFunction(V) * fd.TestFunction(V) * fd.dx).petscmat)
        if M.shape != A.shape:
            raise ValueError(f"training_rhs: smooth fields are CG1, the operator has {A.shape[0]} rows")
        keep = ~decoupled_rows(A)
        cols.append(np.stack([(M @ grf.sample(rng).dat.data_ro) * keep for _ in range(n_smooth)], axis=1))
    B = np.concatenate(cols, axis=1)
    return B / np.linalg.norm(B, axis=0, keepdims=True)
