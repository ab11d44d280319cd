"""Helmholtz, elasticity, nonlinear diffusion and Stokes families: their solutions are right.

Each family is checked against a manufactured (or exact) solution on generated meshes —
L2 convergence rates for CG1, exactness where the discrete space contains the solution —
and on a shipped mesh by discrete residuals written here independently of the family's
own forms, exact boundary values, and reproducibility by (seed, index).
"""

import json

import numpy as np
import pytest

import firedrake as fd

from fe_operators.errors import BoundaryMarkerError, SolveError
from fe_operators.io import load_mesh
from fe_operators.problems import get_problem, problem_class
from fe_operators.problems.elasticity import ElasticityProblem
from fe_operators.problems.helmholtz import HelmholtzProblem
from fe_operators.problems.nonlinear import NonlinearDiffusionProblem
from fe_operators.problems.stokes import StokesProblem

SIZES = (8, 16, 32)


@pytest.fixture(scope="module")
def meshes():
    """Shipped meshes, loaded once per module."""
    return {name: load_mesh(name) for name in ("lshape", "crescent", "plate_holes", "channel_cylinder")}


def l2(e):
    return float(np.sqrt(fd.assemble(fd.inner(e, e) * fd.dx)))


def rates(errors):
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


def free_residual(F, bcs):
    """Max |entry| of the assembled 1-form ``F`` on DOFs no condition in ``bcs`` fixes."""
    r = fd.assemble(F)
    for bc in bcs:
        bc.zero(r)
    return max(float(np.abs(d.data_ro).max()) for d in r.dat)


def assert_reproducible(problem, seed=3, index=5):
    a_in, a_out = problem.sample(seed, index)
    b_in, b_out = problem.sample(seed, index)
    c_in, _ = problem.sample(seed, index + 1)
    for key in a_in:
        np.testing.assert_array_equal(a_in[key].dat.data_ro, b_in[key].dat.data_ro)
    np.testing.assert_array_equal(a_out.dat.data_ro, b_out.dat.data_ro)
    assert any(not np.array_equal(a_in[k].dat.data_ro, c_in[k].dat.data_ro) for k in a_in)


# ---------------------------------------------------------------------------- registry
@pytest.mark.parametrize("name, cls", [
    ("helmholtz", HelmholtzProblem), ("elasticity", ElasticityProblem),
    ("nonlinear", NonlinearDiffusionProblem), ("stokes", StokesProblem),
])
def test_registry_and_json_params(name, cls):
    assert problem_class(name) is cls and cls.name == name
    problem = get_problem(name, fd.UnitSquareMesh(4, 4))
    desc = json.loads(json.dumps(problem.description()))
    assert desc["problem"] == name and desc["params"] == problem.params
    solution = problem.solve(problem.sample_inputs(np.random.default_rng(0)))
    assert solution.function_space() == problem.output_space


# ---------------------------------------------------------------------------- Helmholtz
def _cmul(a, b):
    return (a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0])


def test_helmholtz_manufactured_rate():
    # u = φ(x)φ(y), φ(t) = 1 + αt + βt² with φ'(0) = −ikφ(0), φ'(1) = ikφ(1): u meets the
    # impedance condition ∂u/∂n = iku on all four sides of the unit square (c = 1).
    k = 4.0
    alpha = -1j * k
    beta = (k**2 + 2j * k) / (2 - 1j * k)

    def phi(t):
        return (1 + alpha.real * t + beta.real * t**2, alpha.imag * t + beta.imag * t**2)

    errors = []
    for n in SIZES:
        mesh = fd.UnitSquareMesh(n, n)
        problem = HelmholtzProblem(mesh, omega=k, c_min=0.5, c_max=2.0)
        x, y = fd.SpatialCoordinate(mesh)
        u = _cmul(phi(x), phi(y))
        lap = [a + b for a, b in zip(_cmul((2 * beta.real, 2 * beta.imag), phi(y)),
                                     _cmul(phi(x), (2 * beta.real, 2 * beta.imag)))]
        problem.source.interpolate(fd.as_vector([-lap[i] - k**2 * u[i] for i in range(2)]))
        c = fd.Function(problem.input_spaces["c"]).assign(1.0)
        errors.append(l2(problem.solve({"c": c}) - fd.as_vector(u)))
    assert errors[-1] < 2e-3 * 1.53  # ‖u‖ ≈ 1.53
    assert np.all(rates(errors) > 1.9), rates(errors)


@pytest.mark.parametrize("coefficient_space", ["CG1", "DG0"])
def test_helmholtz_shipped_sample_power_balance(meshes, coefficient_space):
    # Im of the discrete energy identity a(u, ū) = (f, ū): the power radiated through the
    # impedance boundary, ∫_Γ k|u|², equals the power the source puts in, ∫ f_r u_i − f_i u_r.
    problem = HelmholtzProblem(meshes["crescent"], coefficient_space=coefficient_space)
    inputs, u = problem.sample(0, 1)
    c = inputs["c"]
    assert c.function_space().ufl_element().family() == ("Lagrange" if coefficient_space == "CG1"
                                                         else "Discontinuous Lagrange")
    assert 1.0 < c.dat.data_ro.min() and c.dat.data_ro.max() < 2.0
    k = problem.params["omega"] / c
    radiated = fd.assemble(k * fd.inner(u, u) * fd.ds)
    f = problem.source
    supplied = fd.assemble((f[0] * u[1] - f[1] * u[0]) * fd.dx)
    assert radiated > 0
    assert abs(radiated - supplied) < 1e-10 * radiated
    assert_reproducible(problem)


# ---------------------------------------------------------------------------- elasticity
def _sigma(u, E, nu=0.3):
    eps = fd.sym(fd.grad(u))
    mu, lam = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
    return 2 * mu * eps + lam * fd.tr(eps) * fd.Identity(len(u))


@pytest.mark.parametrize("load_type", ["traction", "body"])
def test_elasticity_manufactured_rate(load_type):
    errors = []
    for n in SIZES:
        mesh = fd.UnitSquareMesh(n, n)
        x, y = fd.SpatialCoordinate(mesh)
        E = 1 + 0.5 * fd.sin(x + y)
        if load_type == "traction":
            # clamped on left/bottom/top; the traction σ(u)e_x acts on the right side
            problem = ElasticityProblem(mesh, clamp_markers=(1, 3, 4), traction_markers=2)
            u = fd.as_vector([x * (1 + x) * fd.sin(fd.pi * y), x**2 * fd.sin(fd.pi * y)])
            problem.body_force.interpolate(-fd.div(_sigma(u, E)))
            load = _sigma(u, E)[:, 0]
        else:
            problem = ElasticityProblem(mesh, clamp_markers="on_boundary", traction_markers=None,
                                        load_type="body")
            u = fd.sin(fd.pi * x) * fd.sin(fd.pi * y) * fd.as_vector([1.0, x])
            load = -fd.div(_sigma(u, E))
        inputs = {"E": fd.Function(problem.input_spaces["E"]).interpolate(E),
                  "load": fd.Function(problem.input_spaces["load"]).interpolate(load)}
        errors.append(l2(problem.solve(inputs) - u))
    assert errors[-1] < 5e-3
    assert np.all(rates(errors) > 1.9), rates(errors)


@pytest.mark.parametrize("kwargs", [{}, {"degree": 2, "coefficient_space": "DG0"}])
def test_elasticity_plate_holes_sample(meshes, kwargs):
    mesh = meshes["plate_holes"]
    problem = ElasticityProblem(mesh, clamp_markers=1, traction_markers=(2, 5), **kwargs)
    inputs, u = problem.sample(0, 2)
    (bc,) = problem.output_bcs(inputs)
    assert len(bc.nodes) > 0
    assert np.all(u.dat.data_ro[bc.nodes] == 0.0)  # clamped exactly
    assert np.abs(u.dat.data_ro).max() > 0.1
    assert np.all(inputs["E"].dat.data_ro > 0)
    # the discrete equilibrium, written here from the maths (plane strain, ν = 0.3)
    v = fd.TestFunction(problem.output_space)
    F = (fd.inner(_sigma(u, inputs["E"]), fd.sym(fd.grad(v))) * fd.dx
         - fd.inner(inputs["load"], v) * fd.ds((2, 5)))
    scale = float(np.abs(fd.assemble(fd.inner(inputs["load"], v) * fd.ds((2, 5))).dat.data_ro).max())
    assert free_residual(F, [bc]) < 1e-10 * scale
    assert_reproducible(problem)


def test_elasticity_bad_marker_lists_available(meshes):
    with pytest.raises(BoundaryMarkerError, match=r"marker 7.*\[1, 2, 3, 4, 5\]"):
        ElasticityProblem(meshes["plate_holes"], clamp_markers=7)
    with pytest.raises(BoundaryMarkerError, match="marker 9"):
        ElasticityProblem(meshes["plate_holes"], traction_markers=(2, 9))


# ---------------------------------------------------------------------------- nonlinear
def test_nonlinear_manufactured_rate_and_newton():
    errors = []
    for n in SIZES:
        mesh = fd.UnitSquareMesh(n, n)
        problem = NonlinearDiffusionProblem(mesh)
        x, y = fd.SpatialCoordinate(mesh)
        u = fd.sin(fd.pi * x) * fd.sin(fd.pi * y)
        f = fd.Function(problem.input_spaces["f"]).interpolate(-fd.div((1 + u**2) * fd.grad(u)))
        errors.append(l2(problem.solve({"f": f}) - u))
        assert 2 <= problem.newton_iterations <= 6
    assert errors[-1] < 2e-3
    assert np.all(rates(errors) > 1.9), rates(errors)


def test_nonlinear_lshape_sample(meshes):
    problem = NonlinearDiffusionProblem(meshes["lshape"])
    inputs, u = problem.sample(0, 4)
    assert problem.newton_iterations <= 8
    assert np.abs(u.dat.data_ro).max() > 0.5  # the nonlinearity matters: 1 + u² ≥ 1.25
    (bc,) = problem.output_bcs(inputs)
    assert np.all(u.dat.data_ro[bc.nodes] == 0.0)
    v = fd.TestFunction(problem.output_space)
    F = ((1 + u**2) * fd.inner(fd.grad(u), fd.grad(v)) - inputs["f"] * v) * fd.dx
    scale = float(np.abs(fd.assemble(inputs["f"] * v * fd.dx).dat.data_ro).max())
    assert free_residual(F, [bc]) < 1e-9 * scale
    assert_reproducible(problem)


def test_nonlinear_failure_raises_solve_error():
    problem = NonlinearDiffusionProblem(fd.UnitSquareMesh(6, 6), solver_parameters={"snes_max_it": 1})
    with pytest.raises(SolveError, match="DIVERGED_MAX_IT") as info:
        problem.sample(0, 7)
    used = problem.solver_parameters  # what PETSc got: the family's Newton options and ours
    assert used["snes_max_it"] == 1 and used["snes_type"] == "newtonls" and used["pc_type"] == "lu"
    assert info.value.reason == -5 and info.value.sample == 7 and info.value.solver == "SNES"
    # named as the SNES reason it is, not as KSP's -5 (KSP_DIVERGED_BREAKDOWN)
    assert info.value.reason_text == "-5 (SNES_DIVERGED_MAX_IT)" and "KSP_" not in str(info.value)


# ---------------------------------------------------------------------------- Stokes
@pytest.mark.parametrize("spec, height", [("unitsquare:3", 1.0), ("rectangle:2.2,0.41:10x3", 0.41)])
def test_stokes_poiseuille_exact(spec, height):
    # parabolic inflow, straight channel, do-nothing outlet: Poiseuille flow, in P2 exactly
    mesh = load_mesh(spec)
    problem = StokesProblem(mesh, noslip_markers=(3, 4), perturbation=0.0)
    u = problem.solve(problem.sample_inputs(np.random.default_rng(0)))
    x, y = fd.SpatialCoordinate(mesh)
    exact = fd.as_vector([0.3 * 4 * y * (height - y) / height**2, 0.0])
    assert l2(u - exact) < 1e-12


def test_stokes_channel_cylinder_sample(meshes):
    mesh = meshes["channel_cylinder"]
    problem = StokesProblem(mesh)
    np.testing.assert_allclose(problem.inflow_direction, [1.0, 0.0], atol=1e-14)
    inputs, u = problem.sample(0, 0)
    g = inputs["inflow"]
    # boundary values exact: u = g e_x on the inlet, 0 on walls and cylinder (incl. corners)
    inlet, walls = problem.output_bcs(inputs)
    ud, gd = u.dat.data_ro, g.dat.data_ro
    np.testing.assert_array_equal(ud[inlet.nodes, 0], gd[inlet.nodes])
    np.testing.assert_array_equal(ud[inlet.nodes, 1], 0.0)
    np.testing.assert_array_equal(ud[walls.nodes], 0.0)
    assert gd[inlet.nodes].max() > 0.1
    corners = np.intersect1d(inlet.nodes, walls.nodes)
    assert len(corners) == 2 and np.all(gd[corners] == 0.0)  # the profile vanishes at the walls
    # the mixed system's residual, from the maths, is zero on the free DOFs
    w = problem.solve_mixed(inputs)
    np.testing.assert_array_equal(w.subfunctions[0].dat.data_ro, ud)
    uw, p = fd.split(w)
    v, q = fd.TestFunctions(problem.mixed_space)
    F = (fd.inner(fd.grad(uw), fd.grad(v)) - p * fd.div(v) - q * fd.div(uw)) * fd.dx
    assert free_residual(F, [fd.DirichletBC(problem.mixed_space.sub(0), 0, (1, 3, 4))]) < 1e-12
    # Taylor–Hood velocity is only weakly divergence-free: small, not zero
    assert l2(fd.div(u)) < 0.02 * l2(fd.grad(u))
    assert_reproducible(problem)


def test_stokes_rejects_curved_inlet(meshes):
    with pytest.raises(ValueError, match="straight segment"):
        StokesProblem(meshes["crescent"], inlet_marker=1, noslip_markers=2)
