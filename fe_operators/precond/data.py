r"""Training operators and right-hand sides for the learned preconditioners (Firedrake side).

* :class:`ProblemFamily` — the operators of any problem family with the
  :meth:`~fe_operators.problems.base.Problem.spd_operator` hook (Darcy in CG1 or CG2,
  vector elasticity, a user's own), one per sampled input (and parameters drawn from
  ``ranges``);
* :class:`DiffusionFamily` — the Darcy family's case, a draw being the coefficient: :math:`-\nabla\cdot(a\nabla u) = f`, :math:`u = 0` on
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
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

import firedrake as fd

from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.fem.transfer import level_prolongations
from fe_operators.precond.features import row_parts
from fe_operators.multigrid.galerkin import galerkin_hierarchy
from fe_operators.problems.darcy import DarcyProblem, FNO_LENGTH_SCALE
from fe_operators.problems.random_fields import GaussianRandomField

__all__ = ["ProblemFamily", "DiffusionFamily", "smoother_samples", "lanczos_ritz", "training_rhs", "decoupled_rows"]


class ProblemFamily:
    """The operators of a problem family with :meth:`~fe_operators.problems.base.Problem.spd_operator`.

    What learned preconditioners are trained on and evaluated with: each draw is one
    sample's inputs (:meth:`~fe_operators.problems.base.Problem.sample_inputs`) and, for
    every parameter of ``ranges``, a value drawn uniformly from its interval (passed to
    the hook as an override); the operator is the hook's form assembled as a user's
    ``solve`` assembles it (Dirichlet rows and columns as identity).

    Parameters
    ----------
    problem
        A Problem whose family implements ``spd_operator``.
    ranges
        Parameter -> ``(low, high)``, drawn per operator (e.g. elasticity's
        ``{"poisson_ratio": (0.2, 0.35)}``).

    Attributes
    ----------
    V
        The operator's space (the problem's ``output_space``).
    bcs
        The homogeneous Dirichlet conditions of the operator.

    Raises
    ------
    ConfigError
        The family has no ``spd_operator`` hook (naming ``family.problem``).
    """

    def __init__(self, problem: Any, ranges: Mapping[str, Sequence[float]] | None = None) -> None:
        from fe_operators.errors import ConfigError
        from fe_operators.problems.base import has_spd_operator

        if not has_spd_operator(problem):
            raise ConfigError("family.problem", f"problem family {problem.name or type(problem).__name__!r} gives no "
                                                "spd_operator(inputs) hook, which learned preconditioners train on; "
                                                "implement it (docs/extending.md) or choose a family that has it "
                                                "(darcy, elasticity)")
        self.problem = problem
        self.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in (ranges or {}).items()}
        self.V = problem.output_space
        self._inputs = {k: fd.Function(W) for k, W in problem.input_spaces.items()}
        self.bcs = problem.spd_operator(self._inputs, **self._middle()).bcs

    def _middle(self) -> dict[str, float]:
        return {k: 0.5 * (lo + hi) for k, (lo, hi) in self.ranges.items()}

    def sample_coefficient(self, rng: np.random.Generator) -> dict[str, Any]:
        """One draw: the sample's inputs (new Functions) and the drawn parameters (key ``"overrides"``)."""
        inputs = dict(self.problem.sample_inputs(rng))
        inputs["overrides"] = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in self.ranges.items()}
        return inputs

    def holder(self) -> dict[str, Any]:
        """Inputs that later draws are assigned into (:meth:`assign`): one form serves every draw."""
        return {**{k: fd.Function(f.function_space()) for k, f in self._inputs.items()}, "overrides": self._middle()}

    @staticmethod
    def assign(holder: Any, draw: Any) -> None:
        """Copy a draw's values into ``holder`` (the overrides must be equal: they are in the form)."""
        for k, f in holder.items():
            if k != "overrides":
                f.dat.data_wo[...] = draw[k].dat.data_ro

    def form(self, draw: Any) -> Any:
        """The bilinear form of a draw."""
        return self.problem.spd_operator({k: v for k, v in draw.items() if k != "overrides"},
                                         **draw.get("overrides", {})).form

    def rhs_form(self) -> Any:
        """The load ``∫ 1·v`` (every component 1) of the evaluation solves."""
        v = fd.TestFunction(self.V)
        one = fd.Constant(1.0) if v.ufl_shape == () else fd.Constant(np.ones(v.ufl_shape))
        return fd.inner(one, v) * fd.dx

    def operator(self, draw: Any) -> Any:
        """The assembled operator (PETSc AIJ, Dirichlet rows and columns as identity)."""
        return fd.assemble(self.form(draw), bcs=self.bcs, mat_type="aij").petscmat

    def contrast(self, draw: Any) -> float:
        """``max / min`` of the first input's (local) values: the coefficient contrast (NaN when
        they change sign)."""
        vals = np.abs(next(iter(v for k, v in draw.items() if k != "overrides")).dat.data_ro)
        return float(vals.max() / vals.min()) if vals.min() > 0 else float("nan")

    def near_nullspace(self) -> Any:
        """The rigid-body modes of a vector space of the mesh's dimension (what GAMG wants for
        elasticity), else None."""
        mesh = self.V.mesh()
        dim = mesh.geometric_dimension
        if self.V.value_shape != (dim,) or dim not in (2, 3):
            return None
        x = fd.SpatialCoordinate(mesh)
        modes = [fd.Constant(tuple(float(i == j) for j in range(dim))) for i in range(dim)]
        if dim == 2:
            modes.append(fd.as_vector([-x[1], x[0]]))
        else:
            modes += [fd.as_vector([-x[1], x[0], 0]), fd.as_vector([0, -x[2], x[1]]), fd.as_vector([x[2], 0, -x[0]])]
        basis = fd.VectorSpaceBasis([fd.Function(self.V).interpolate(m) for m in modes])
        basis.orthonormalize()
        return basis


class DiffusionFamily(ProblemFamily):
    """Variable-coefficient diffusion with zero Dirichlet data; the coefficient is random.

    The Darcy family (:class:`~fe_operators.problems.darcy.DarcyProblem`) through its
    ``spd_operator`` hook; a draw is the coefficient Function ``a`` itself.

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
        super().__init__(DarcyProblem(mesh, coefficient=coefficient, variance=variance,
                                      length_scale=FNO_LENGTH_SCALE if length_scale is None else length_scale,
                                      degree=degree))

    def sample_coefficient(self, rng: np.random.Generator) -> fd.Function:
        """One coefficient ``a`` (a new Function)."""
        return self.problem.sample_inputs(rng)["a"]

    def holder(self) -> fd.Function:
        return fd.Function(self._inputs["a"].function_space())

    @staticmethod
    def assign(holder: Any, draw: Any) -> None:
        holder.dat.data_wo[...] = draw.dat.data_ro

    def form(self, a: fd.Function) -> Any:
        """The bilinear form ``∫ a ∇u·∇v``."""
        return self.problem.spd_operator({"a": a}).form

    def rhs_form(self) -> Any:
        """The load ``∫ v`` (f = 1)."""
        return fd.TestFunction(self.V) * fd.dx

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
