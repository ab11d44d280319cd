"""A hyperelastic beam under compression: compressible neo-Hookean, Newton with load stepping.

A beam ``Ω = [0, L] × [0, H]`` (default ``L = 1``, ``H = 0.1``: :data:`DEFAULT_MESH`) is
clamped at ``x = 0`` (``Γ_C``, marker 1) and loaded at ``x = L`` (``Γ_T``, marker 2) by a
dead traction ``t`` that compresses it and pushes it sideways; the rest of ∂Ω is free.
The displacement ``u`` minimises the potential energy

.. math::

    \\Pi(u) = \\int_\\Omega W(F)\\,dx - \\int_{\\Gamma_T} t\\cdot u\\,ds, \\qquad
    u = 0 \\ \\text{on } \\Gamma_C, \\qquad F = I + \\nabla u, \\quad J = \\det F,

    W = \\frac{\\mu}{2}\\big(I_1 - 2 - 2\\ln J\\big) + \\frac{\\lambda}{2}(\\ln J)^2,
    \\qquad I_1 = \\mathrm{tr}(F^T F),

the compressible neo-Hookean energy in 2D **plane strain** (the 3D energy
``μ/2 (tr C − 3 − 2 ln J) + λ/2 (ln J)²`` with out-of-plane stretch 1), with
``μ = E / (2(1 + ν))`` and ``λ = E ν / ((1 + ν)(1 − 2ν))``.  Linearised at ``u = 0`` it is
the plane-strain linear elasticity of :class:`~fe_operators.problems.elasticity.ElasticityProblem`
with the same ``E`` and ``ν``, which the tests check (the difference is O(load²)).

Inputs
------
``E``
    Young's modulus, a log-normal Matérn field on CG1 (as in the elasticity family).
``load``
    The traction ``t``, a vector CG1 Function (only its trace on ``Γ_T`` matters); the
    sampler makes it uniform, ``t = (−a, b) P_ref / H``: an axial compressive resultant
    ``P = a P_ref`` and a transverse one ``Q = b P_ref`` (per unit depth), with
    ``a ~ U(0, axial_load_max)`` and ``b ~ U(−transverse_load_max, transverse_load_max)``.

Buckling and uniqueness
-----------------------
``P_ref`` is the Euler load of the clamped–free beam made of the sample's *weakest*
material, ``P_ref = π² E_min I / (4 L²)`` with ``E_min = min_Ω E``, the plane-strain
modulus ``E_min / (1 − ν²)`` and ``I = H³/12`` (per unit depth; :func:`euler_load`).
Stiffening a beam raises its critical load (Rayleigh quotient), so ``P_ref`` bounds the
first critical load of the sample from below (in beam theory; the continuum's shear
correction is below 1 % at ``L/H = 10``).  The sampled axial resultant is at most
``axial_load_max ≤ MAX_AXIAL_LOAD_FRACTION = 0.5`` of it: the constructor refuses a
larger ``axial_load_max`` (:class:`~fe_operators.errors.ConfigError`) and :meth:`solve`
refuses inputs whose axial resultant ``−∫_{Γ_T} t_x ds`` exceeds ``0.5 P_ref``
(:class:`~fe_operators.errors.LoadLimitError`).  The FE model's own first critical load
(:func:`buckling_load`, a linearised buckling eigenproblem) is 0.3 % above the Euler
value for uniform ``E`` on the default mesh (0.6 % on a 20 × 2 mesh), so the sampled
loads stay at or below half of it; for sampled ``E`` (default ``E_log_variance = 0.02``)
it is 1.4–1.8 ``P_ref``, the margin of the ``E_min`` bound.  Below the critical load the tangent stiffness stays positive definite along the
load path (checked numerically in the tests at the corners of the sampled range), so the
equilibrium reached continuously from ``u = 0`` is unique and stable: each input has one
solution.  The transverse load (up to ``0.1 P_ref`` by default, a tip deflection of up to
about 0.16 L at ``a = 0.5``) makes the response a beam-column one: the axial load
amplifies the bending about ``1 / (1 − P/P_cr)``-fold, the geometric nonlinearity a
surrogate has to learn.

Solver
------
Newton (PETSc ``newtonls``) with a direct sparse LU per step and the full Newton step
(``snes_linesearch_type: basic``: the residual-norm backtracking of ``bt`` stalls on this
problem, where the residual norm is a poor merit function for a slender structure),
``snes_rtol = 1e-8``.  Load stepping: the traction is scaled by ``s = 1/n, 2/n, …, 1``
(``n = load_steps``), each step starting from the previous one's solution, with one
reusable solver (``s`` is a ``Constant`` of the form).  A step that does not converge is
cut in half from the last converged state, up to ``max_load_steps`` steps in all; a
solve starts from ``u = 0``, so a sample's solution does not depend on the samples
solved before it.  With the default range one step converges (8 Newton iterations at the
worst corner ``a = 0.5, |b| = 0.1``); the cut-back is a safety net.

The default mesh :data:`DEFAULT_MESH` with CG2 (bending locks with CG1 triangles) has
32 882 displacement DOFs, so that the FE solve is what a user would want to replace; any
2D mesh spec with markers 1 (clamped) and 2 (loaded) can be used.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

import firedrake as fd

from fe_operators.errors import ConfigError, LoadLimitError, SolveError
from fe_operators.fem.bcs import check_markers
from fe_operators.problems._common import SPARSE_LU, Markers, assign_inputs, boundary_measure
from fe_operators.problems.base import Problem, bound_params
from fe_operators.problems.registry import register_problem
from fe_operators.problems.random_fields import GaussianRandomField

__all__ = ["HyperelasticBeamProblem", "DEFAULT_MESH", "DEFAULT_SOLVER_PARAMETERS", "MAX_AXIAL_LOAD_FRACTION",
           "euler_load", "buckling_load"]

#: the benchmark beam: 1 × 0.1, square cells of side 0.005; with CG2, 32 882 DOFs
DEFAULT_MESH = "rectangle:1,0.1:200x20"

#: the largest axial resultant accepted, as a fraction of the Euler load ``P_ref``
MAX_AXIAL_LOAD_FRACTION = 0.5

#: full Newton steps, each a sparse direct LU solve
DEFAULT_SOLVER_PARAMETERS: dict[str, Any] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "basic",
    "snes_rtol": 1e-8,
    "snes_atol": 0.0,
    "snes_stol": 0.0,
    "snes_max_it": 25,
    **SPARSE_LU,
}


def euler_load(E_min: float, poisson_ratio: float, length: float, height: float) -> float:
    """Euler load ``π² E' I / (4 L²)`` of a clamped–free plane-strain beam, per unit depth.

    ``E' = E_min / (1 − ν²)`` (plane strain), ``I = H³ / 12``.
    """
    E_plane = E_min / (1.0 - poisson_ratio**2)
    return math.pi**2 * E_plane * height**3 / 12.0 / (4.0 * length**2)


@register_problem("hyperelastic_beam")
class HyperelasticBeamProblem(Problem):
    """Compressible neo-Hookean beam, clamped at ``x = 0``, loaded at ``x = L``; inputs ``E`` and ``load``.

    See the module docstring for the energy, the load range and the solver.

    Parameters
    ----------
    mesh
        A 2D mesh of the beam, its axis along ``x`` (length and height are read from
        its bounding box), e.g. :data:`DEFAULT_MESH`.
    degree
        Lagrange degree ``k`` of the output displacement (vector ``CG(k)``).
    clamp_markers
        Boundary markers of ``Γ_C`` (``u = 0``); default 1 (``x = 0``).
    load_markers
        Boundary markers of ``Γ_T`` where the traction acts; default 2 (``x = L``).
    poisson_ratio
        ``ν`` in ``[0, 0.5)``.
    young_modulus
        Median of ``E``: ``E = young_modulus · exp(g)`` with ``g`` a centred Matérn field
        of variance ``E_log_variance``.
    E_length_scale, E_smoothness, E_log_variance
        Matérn parameters of ``g`` (smoothness ``None``: ν = 2 − d/2 = 1).
    axial_load_max
        Largest sampled axial resultant, a fraction of ``P_ref`` in
        ``[0, MAX_AXIAL_LOAD_FRACTION]``.
    transverse_load_max
        Largest sampled transverse resultant (either sign), a fraction of ``P_ref``.
    load_steps
        Number of equal load steps ``n`` a solve starts with.
    max_load_steps
        Most load steps a solve may take after cutting failed steps in half.
    solver_parameters
        PETSc options of the SNES, merged over :data:`DEFAULT_SOLVER_PARAMETERS`.

    Attributes
    ----------
    E_field
        The Gaussian random field of ``log E``.
    length, height
        The beam's length ``L`` and height ``H`` (its bounding box).
    newton_iterations
        Newton iterations of the last successful solve, over all its load steps.
    load_steps_taken
        Load steps of the last successful solve (``load_steps`` unless steps were cut).

    Raises
    ------
    BoundaryMarkerError
        A clamp or load marker the mesh does not have.
    ConfigError
        A parameter out of range (``axial_load_max`` above the limit, ...), or a mesh
        that is not 2D.
    """


    def __init__(
        self,
        mesh: fd.MeshGeometry,
        degree: int = 2,
        clamp_markers: Markers = 1,
        load_markers: Markers = 2,
        poisson_ratio: float = 0.3,
        young_modulus: float = 1.0,
        E_length_scale: float = 0.2,
        E_smoothness: float | None = None,
        E_log_variance: float = 0.02,
        axial_load_max: float = 0.5,
        transverse_load_max: float = 0.1,
        load_steps: int = 1,
        max_load_steps: int = 16,
        solver_parameters: dict[str, Any] | None = None,
    ) -> None:
        dim = mesh.geometric_dimension
        if dim != 2:
            raise ConfigError("mesh", f"the hyperelastic beam is plane strain: expected a 2D mesh, got {dim}D")
        check_markers(mesh, clamp_markers)
        check_markers(mesh, load_markers)
        if not 0 <= poisson_ratio < 0.5:
            raise ConfigError("poisson_ratio", f"expected 0 <= poisson_ratio < 0.5, got {poisson_ratio!r}")
        if not young_modulus > 0:
            raise ConfigError("young_modulus", f"expected young_modulus > 0, got {young_modulus!r}")
        if not 0 <= axial_load_max <= MAX_AXIAL_LOAD_FRACTION:
            raise ConfigError(
                "axial_load_max",
                f"expected 0 <= axial_load_max <= {MAX_AXIAL_LOAD_FRACTION} (a fraction of the Euler "
                f"buckling load of the weakest material: above it the beam may buckle and the solution "
                f"is no longer unique), got {axial_load_max!r}")
        if not transverse_load_max >= 0:
            raise ConfigError("transverse_load_max", f"expected transverse_load_max >= 0, got {transverse_load_max!r}")
        if not (isinstance(load_steps, (int, np.integer)) and load_steps >= 1):
            raise ConfigError("load_steps", f"expected an integer >= 1, got {load_steps!r}")
        if not (isinstance(max_load_steps, (int, np.integer)) and max_load_steps >= load_steps):
            raise ConfigError("max_load_steps", f"expected an integer >= load_steps ({load_steps}), "
                                                f"got {max_load_steps!r}")
        E_smoothness = 2.0 - dim / 2 if E_smoothness is None else float(E_smoothness)
        solver_parameters = {**DEFAULT_SOLVER_PARAMETERS, **(solver_parameters or {})}
        super().__init__(mesh, **bound_params(HyperelasticBeamProblem, locals()))
        self.clamp_markers = clamp_markers
        self.load_markers = load_markers
        xy = mesh.coordinates.dat.data_ro
        self.length = float(np.ptp(xy[:, 0]))
        self.height = float(np.ptp(xy[:, 1]))
        self.newton_iterations = 0
        self.load_steps_taken = 0
        self._CG1 = fd.FunctionSpace(mesh, "CG", 1)
        self._L = fd.VectorFunctionSpace(mesh, "CG", 1)
        self._V = fd.VectorFunctionSpace(mesh, "CG", int(degree))
        self.E_field = GaussianRandomField(self._CG1, E_length_scale, E_smoothness, E_log_variance)
        self._ds_load = boundary_measure(load_markers)

        # the solver reads these Functions and the load fraction; solve() assigns into them
        self._E = fd.Function(self._CG1, name="E")
        self._load = fd.Function(self._L, name="load")
        self._u = fd.Function(self._V, name="u")
        self._fraction = fd.Constant(1.0)
        self._energy = self.energy(self._u, self._E, self._load, self._fraction)
        v = fd.TestFunction(self._V)
        residual = fd.derivative(self._energy, self._u, v)  # Jacobian by UFL derivative
        bc = fd.DirichletBC(self._V, fd.Constant([0.0, 0.0]), clamp_markers)
        problem = fd.NonlinearVariationalProblem(residual, self._u, bcs=bc)
        self._solver = fd.NonlinearVariationalSolver(problem, solver_parameters=solver_parameters)

    # -------------------------------------------------------------- forms
    def energy(self, u: fd.Function, E: Any, load: Any, fraction: Any = 1.0) -> Any:
        """The potential energy ``Π(u)`` (a UFL form) for modulus ``E`` and traction ``fraction · load``."""
        nu = self.params["poisson_ratio"]
        mu = E / (2 * (1 + nu))
        lam = E * nu / ((1 + nu) * (1 - 2 * nu))
        F = fd.Identity(2) + fd.grad(u)
        J = fd.det(F)
        W = mu / 2 * (fd.tr(F.T * F) - 2 - 2 * fd.ln(J)) + lam / 2 * fd.ln(J) ** 2
        return W * fd.dx - fraction * fd.inner(load, u) * self._ds_load

    def reference_load(self, E: fd.Function) -> float:
        """``P_ref``: the Euler load of this beam made of ``min E`` (per unit depth)."""
        return euler_load(float(E.dat.data_ro.min()), self.params["poisson_ratio"], self.length, self.height)

    def resultants(self, load: fd.Function) -> tuple[float, float]:
        """The compressive axial and the transverse resultants ``(−∫ t_x ds, ∫ t_y ds)`` on ``Γ_T``."""
        return (-fd.assemble(load[0] * self._ds_load), fd.assemble(load[1] * self._ds_load))

    # -------------------------------------------------------------- contract
    @property
    def input_spaces(self) -> dict[str, fd.FunctionSpace]:
        """``{"E": CG1, "load": vector CG1}``."""
        return {"E": self._CG1, "load": self._L}

    @property
    def output_space(self) -> fd.FunctionSpace:
        """Vector ``CG(k)``."""
        return self._V

    def sample_inputs(self, rng: np.random.Generator) -> dict[str, fd.Function]:
        """Draw ``E`` (log-normal field), then ``a`` and ``b``: ``load = (−a, b) P_ref / H`` (uniform)."""
        logE = self.E_field.sample(rng)
        E = fd.Function(self._CG1, name="E", val=self.params["young_modulus"] * np.exp(logE.dat.data_ro))
        a = rng.uniform(0.0, self.params["axial_load_max"])
        tmax = self.params["transverse_load_max"]
        b = rng.uniform(-tmax, tmax)
        scale = self.reference_load(E) / self.height
        load = fd.Function(self._L, name="load")
        load.dat.data_wo[...] = np.array([-a * scale, b * scale])
        return {"E": E, "load": load}

    def check_load(self, inputs: Mapping[str, fd.Function]) -> float:
        """The axial resultant as a fraction of ``P_ref``; refuse it above :data:`MAX_AXIAL_LOAD_FRACTION`.

        Raises
        ------
        LoadLimitError
            The compressive resultant exceeds ``MAX_AXIAL_LOAD_FRACTION · P_ref``, or
            ``E`` is not positive.
        """
        E_min = float(inputs["E"].dat.data_ro.min())
        if not E_min > 0:
            raise LoadLimitError(f"{self.name}: expected a positive Young's modulus E, got min E = {E_min!r}")
        axial, _ = self.resultants(inputs["load"])
        fraction = axial / self.reference_load(inputs["E"])
        if fraction > MAX_AXIAL_LOAD_FRACTION * (1 + 1e-9):
            raise LoadLimitError(
                f"{self.name}: the compressive resultant {axial:.6g} is {fraction:.3g} of the Euler load "
                f"P_ref = π² E_min I / (4 L²) = {self.reference_load(inputs['E']):.6g} of the weakest material "
                f"(E_min = {E_min:.6g}); at most {MAX_AXIAL_LOAD_FRACTION} is accepted, since the beam may "
                "buckle above it and the solution is then not unique: reduce the load")
        return fraction

    def solve(self, inputs: Mapping[str, fd.Function]) -> fd.Function:
        """Newton-solve with load stepping from ``u = 0``; return the displacement (a new Function).

        Raises
        ------
        LoadLimitError
            The axial load is above the limit (:meth:`check_load`).
        SolveError
            Newton did not converge even with ``max_load_steps`` steps; ``reason`` is the
            SNES converged reason of the last failure (the KSP's when the linear solve
            failed; ``solver`` says which).
        """
        assign_inputs({"E": self._E, "load": self._load}, inputs, self.name)
        self.check_load(inputs)
        self._u.zero()
        snes = self._solver.snes
        done, step = 0.0, 1.0 / self.params["load_steps"]
        steps = iterations = 0
        last = self._u.copy(deepcopy=True)
        while done < 1.0:
            target = 1.0 if done + step > 1.0 - 1e-12 else done + step  # no sliver step from round-off
            self._fraction.assign(target)
            try:
                self._solver.solve()
            except fd.ConvergenceError as exc:
                reason, kind = snes.getConvergedReason(), "SNES"
                if reason >= 0:  # SNES itself fine: the inner linear solve failed
                    reason, kind = snes.getKSP().getConvergedReason(), "KSP"
                step /= 2
                if steps + math.ceil((1.0 - done) / step - 1e-12) > self.params["max_load_steps"]:
                    raise SolveError(reason, detail=f"at load fraction {target:.4g} after {steps} load steps "
                                                    f"(max_load_steps {self.params['max_load_steps']}): "
                                                    + " ".join(str(exc).split()), solver=kind) from exc
                self._u.assign(last)
                continue
            iterations += int(snes.getIterationNumber())
            steps += 1
            done = target
            last.assign(self._u)
        self.newton_iterations, self.load_steps_taken = iterations, steps
        return self._u.copy(deepcopy=True)

    def output_bcs(self, inputs: Mapping[str, fd.Function]) -> list[fd.DirichletBC]:
        """``[DirichletBC(V, 0, clamp_markers)]``."""
        return [fd.DirichletBC(self._V, fd.Constant([0.0, 0.0]), self.clamp_markers)]


def buckling_load(problem: HyperelasticBeamProblem, E: fd.Function) -> float:
    """The FE model's first critical axial resultant for modulus ``E`` (linearised buckling).

    The tangent stiffness at the linear pre-buckling state under an axial resultant ``P``
    is ``K₀ + P K_G`` to first order (``K₀`` the linear stiffness, ``K_G`` the derivative
    of the Jacobian along the linear solution for a unit compressive resultant, uniform on
    ``Γ_T``); the critical load is the smallest ``P > 0`` with ``K₀ φ = −P K_G φ``.  A
    dense or shift-invert eigensolve (scipy): meant for small and moderate meshes.
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from fe_operators.sparse.petsc import petsc_to_scipy

    V = problem.output_space
    u0, u1 = fd.Function(V), fd.Function(V)
    unit = fd.Function(problem.input_spaces["load"])
    unit.dat.data_wo[:, 0] = -1.0 / problem.height  # resultant 1, compressive
    v, w = fd.TestFunction(V), fd.TrialFunction(V)
    bc = fd.DirichletBC(V, fd.Constant([0.0, 0.0]), problem.clamp_markers)
    residual = fd.derivative(problem.energy(u0, E, unit), u0, v)
    jac = fd.derivative(residual, u0, w)
    # the linear solution for the unit resultant (the Jacobian at u = 0)
    fd.solve(jac == fd.inner(unit, v) * problem._ds_load, u1, bcs=bc, solver_parameters=SPARSE_LU)
    K0 = petsc_to_scipy(fd.assemble(jac, bcs=bc).petscmat).tocsc()
    KG_form = fd.derivative(jac, u0, u1)
    KG = petsc_to_scipy(fd.assemble(KG_form).petscmat).tolil()
    nodes = bc.nodes
    dofs = np.concatenate([2 * nodes, 2 * nodes + 1])
    KG[dofs, :] = 0
    KG[:, dofs] = 0
    KG = sp.csc_matrix(KG)
    # K0 φ = −P KG φ  <=>  −KG φ = (1/P) K0 φ: the largest 1/P
    n = K0.shape[0]
    if n <= 3000:
        import scipy.linalg as sla

        vals = sla.eigh(-KG.toarray(), K0.toarray(), eigvals_only=True)
    else:
        vals = spla.eigsh(-KG, k=4, M=K0, which="LA", return_eigenvectors=False)
    largest = float(np.max(vals))
    return 1.0 / largest if largest > 0 else math.inf
