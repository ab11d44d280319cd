"""Linear elasticity with a random Young's modulus field and a random load.

.. math::

    -\\nabla\\cdot\\sigma(u) = b \\ \\text{in } \\Omega, \\qquad
    u = 0 \\ \\text{on } \\Gamma_C, \\qquad
    \\sigma(u) n = t \\ \\text{on } \\Gamma_T, \\qquad
    \\sigma(u) n = 0 \\ \\text{on the rest of } \\partial\\Omega,

    \\sigma(u) = 2\\mu\\,\\varepsilon(u) + \\lambda\\,\\mathrm{tr}\\,\\varepsilon(u)\\, I,
    \\quad \\mu = \\frac{E}{2(1+\\nu)}, \\quad
    \\lambda = \\frac{E\\nu}{(1+\\nu)(1-2\\nu)}
    \\ \\Big(\\text{plane stress: } \\lambda = \\frac{E\\nu}{1-\\nu^2}\\Big).

Inputs: ``E`` (log-normal Matérn field) and ``load``, a vector field whose components are
independent Matérn fields; depending on ``load_type`` it is the traction ``t`` (only its
trace on ``Γ_T`` matters) or an extra body force.  A fixed body force (``gravity``, e.g.
self-weight) can be added.  2D meshes are plane strain unless ``plane_stress=True``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

import firedrake as fd

from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import COEFFICIENT_SPACES, Markers, assign_inputs, boundary_measure, solve_or_raise
from fe_operators.problems.base import OperatorForm, Problem, bound_params
from fe_operators.problems.random_fields import GaussianRandomField
from fe_operators.problems.registry import register_problem

__all__ = ["ElasticityProblem", "DEFAULT_SOLVER_PARAMETERS", "LOAD_TYPES"]

#: sparse direct solve (the operator is symmetric positive definite once clamped);
#: PETSc's own LU with nested dissection beats MUMPS on one process at these sizes
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "mat_type": "aij",
    "ksp_type": "preonly",
    "pc_type": "lu",
    "pc_factor_mat_solver_type": "petsc",
    "pc_factor_mat_ordering_type": "nd",
}

#: what the random input ``load`` is
LOAD_TYPES = ("traction", "body")



@register_problem("elasticity")
class ElasticityProblem(Problem):
    """Linear elasticity, clamped on ``Γ_C``; inputs Young's modulus ``E`` and a ``load``.

    See the module docstring for the equations.

    Parameters
    ----------
    mesh
        A 2D or 3D Firedrake mesh.
    degree
        Lagrange degree ``k`` of the output displacement (vector ``CG(k)``).
    clamp_markers
        Boundary markers of ``Γ_C`` (``u = 0``); default 1 (``left`` on the built-in
        and shipped meshes).  ``"on_boundary"`` clamps all of ∂Ω.
    traction_markers
        Boundary markers of ``Γ_T`` where the traction acts (``load_type="traction"``);
        default 2 (``right``).  Ignored (may be ``None``) for ``load_type="body"``.
    load_type
        ``"traction"`` (default): ``load`` is the traction ``t`` on ``Γ_T``;
        ``"body"``: ``load`` is a body force added to ``gravity``.
    poisson_ratio
        ``ν`` in ``[0, 0.5)``.
    plane_stress
        2D only: plane stress instead of plane strain.
    coefficient_space
        Space of the input ``E``: ``"CG1"`` or ``"DG0"`` (the CG1 field at the centroid).
    young_modulus
        Median of ``E``: ``E = young_modulus · exp(g)`` with ``g`` a centred Matérn
        field of variance ``E_log_variance``.
    E_length_scale, E_smoothness, E_log_variance
        Matérn parameters of ``g`` (smoothness ``None``: ν = 2 − d/2).
    load_mean
        Constant mean of ``load`` (``d`` numbers; ``None``: zero).
    load_length_scale, load_smoothness, load_variance
        Matérn parameters of each component of ``load``.
    gravity
        Fixed body force (``d`` numbers; ``None``: zero); stored in :attr:`body_force`.
    solver_parameters
        PETSc options of the linear solve (default :data:`DEFAULT_SOLVER_PARAMETERS`).

    Attributes
    ----------
    body_force
        The fixed body force, a Function on :attr:`output_space` read by the solver
        (assigning into it changes every later solve).
    E_field, load_field
        The Gaussian random fields of ``log E`` and of the load components.

    Raises
    ------
    BoundaryMarkerError
        A clamp or traction marker the mesh does not have (the message lists those it has).
    ValueError
        Bad ``load_type``, ``poisson_ratio``, ``coefficient_space`` or vector length.
    """

    def __init__(
        self,
        mesh: fd.MeshGeometry,
        degree: int = 1,
        clamp_markers: Markers = 1,
        traction_markers: Markers | None = 2,
        load_type: str = "traction",
        poisson_ratio: float = 0.3,
        plane_stress: bool = False,
        coefficient_space: str = "CG1",
        young_modulus: float = 1.0,
        E_length_scale: float = 0.2,
        E_smoothness: float | None = None,
        E_log_variance: float = 0.25,
        load_mean: Sequence[float] | None = None,
        load_length_scale: float = 0.3,
        load_smoothness: float | None = None,
        load_variance: float = 1.0,
        gravity: Sequence[float] | None = None,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        dim = mesh.geometric_dimension
        if load_type not in LOAD_TYPES:
            raise ValueError(f"expected load_type in {LOAD_TYPES}, got {load_type!r}")
        check_markers(mesh, clamp_markers)
        if load_type == "traction":
            if traction_markers is None:
                raise ValueError("load_type='traction' needs traction_markers")
            check_markers(mesh, traction_markers)
        if not 0 <= poisson_ratio < 0.5:
            raise ValueError(f"expected 0 <= poisson_ratio < 0.5, got {poisson_ratio!r}")
        if coefficient_space not in COEFFICIENT_SPACES:
            raise ValueError(
                f"expected coefficient_space in {sorted(COEFFICIENT_SPACES)}, got {coefficient_space!r}"
            )
        if plane_stress and dim != 2:
            raise ValueError(f"plane_stress applies to 2D meshes, got a {dim}D mesh")
        if not young_modulus > 0:
            raise ValueError(f"expected young_modulus > 0, got {young_modulus!r}")

        def vector(value: Sequence[float] | None, what: str) -> list[float]:
            """``value`` as ``dim`` floats (zeros for ``None``), or a ValueError naming ``what``."""
            out = [0.0] * dim if value is None else [float(v) for v in value]
            if len(out) != dim:
                raise ValueError(f"expected {what} with {dim} components, got {value!r}")
            return out

        load_mean, gravity = vector(load_mean, "load_mean"), vector(gravity, "gravity")
        E_smoothness = 2.0 - dim / 2 if E_smoothness is None else float(E_smoothness)
        load_smoothness = 2.0 - dim / 2 if load_smoothness is None else float(load_smoothness)
        solver_parameters = dict(DEFAULT_SOLVER_PARAMETERS if solver_parameters is None else solver_parameters)
        super().__init__(mesh, **bound_params(ElasticityProblem, locals()))
        self.clamp_markers = clamp_markers
        self.traction_markers = traction_markers
        self._CG1 = fd.FunctionSpace(mesh, "CG", 1)
        self._C = fd.FunctionSpace(mesh, *COEFFICIENT_SPACES[coefficient_space])
        self._L = fd.VectorFunctionSpace(mesh, "CG", 1)
        self._V = fd.VectorFunctionSpace(mesh, "CG", int(degree))
        self.E_field = GaussianRandomField(self._CG1, E_length_scale, E_smoothness, E_log_variance)
        self.load_field = GaussianRandomField(self._CG1, load_length_scale, load_smoothness, load_variance)
        self.body_force = fd.Function(self._V, name="gravity").assign(fd.Constant(gravity))

        # the solver reads these Functions; solve() assigns the inputs into them
        self._E = fd.Function(self._C, name="E")
        self._load = fd.Function(self._L, name="load")
        self._u = fd.Function(self._V, name="u")
        a = self._stiffness(self._E, float(poisson_ratio))
        v = fd.TestFunction(self._V)
        L = fd.inner(self.body_force, v) * fd.dx
        if load_type == "traction":
            L += fd.inner(self._load, v) * boundary_measure(traction_markers)
        else:
            L += fd.inner(self._load, v) * fd.dx
        bc = fd.DirichletBC(self._V, fd.Constant([0.0] * dim), clamp_markers)
        problem = fd.LinearVariationalProblem(a, L, self._u, bcs=bc)
        self._solver = fd.LinearVariationalSolver(problem, solver_parameters=solver_parameters)

    def _stiffness(self, E: Any, nu: float) -> Any:
        """The bilinear form ``∫ σ(u) : ε(v)`` for Young's modulus ``E`` and Poisson ratio ``nu``."""
        mu = E / (2 * (1 + nu))
        lam = E * nu / (1 - nu**2) if self.params["plane_stress"] else E * nu / ((1 + nu) * (1 - 2 * nu))
        u, v = fd.TrialFunction(self._V), fd.TestFunction(self._V)
        eps_u, eps_v = fd.sym(fd.grad(u)), fd.sym(fd.grad(v))
        return (2 * mu * fd.inner(eps_u, eps_v) + lam * fd.tr(eps_u) * fd.tr(eps_v)) * fd.dx

    def spd_operator(self, inputs: Mapping[str, fd.Function], **overrides: float) -> OperatorForm:
        """The stiffness form with ``inputs["E"]``, clamped on ``Γ_C`` (:meth:`Problem.spd_operator`).

        ``poisson_ratio=`` overrides ν for this operator (training over a range of ratios).
        """
        unknown = sorted(set(overrides) - {"poisson_ratio"})
        if unknown:
            raise TypeError(f"elasticity: only poisson_ratio can be overridden in the operator, got {unknown}")
        nu = float(overrides.get("poisson_ratio", self.params["poisson_ratio"]))
        if not 0 <= nu < 0.5:
            raise ValueError(f"expected 0 <= poisson_ratio < 0.5, got {nu!r}")
        dim = self.mesh.geometric_dimension
        bc = fd.DirichletBC(self._V, fd.Constant([0.0] * dim), self.clamp_markers)
        return OperatorForm(self._stiffness(inputs["E"], nu), [bc])

    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"E": CG1 or DG0, "load": vector CG1}``."""
        return {"E": self._C, "load": self._L}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """Vector ``CG(k)``."""
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw ``E`` (log-normal field), then the ``d`` load components in order."""
        logE = self.E_field.sample(rng)
        E = fd.Function(self._CG1, name="E", val=self.params["young_modulus"] * np.exp(logE.dat.data_ro))
        if self._C != self._CG1:
            E = fd.Function(self._C, name="E").interpolate(E)
        comps = [self.load_field.sample(rng).dat.data_ro for _ in range(self._L.block_size)]
        load = fd.Function(self._L, name="load",
                           val=np.stack(comps, axis=1) + np.asarray(self.params["load_mean"]))
        return {"E": E, "load": load}

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Solve for ``inputs["E"]`` and ``inputs["load"]``; return the displacement (a new Function)."""
        assign_inputs({"E": self._E, "load": self._load}, inputs, self.name)
        # Firedrake solves A δ = b − A u_prev: start from zero so that a sample's
        # solution is bitwise independent of the sample solved before it
        self._u.zero()
        solve_or_raise(self._solver)
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """``[DirichletBC(V, 0, clamp_markers)]``."""
        dim = self.mesh.geometric_dimension
        return [fd.DirichletBC(self._V, fd.Constant([0.0] * dim), self.clamp_markers)]
