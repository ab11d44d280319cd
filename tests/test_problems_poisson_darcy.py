"""Poisson and Darcy families: convergence rates, discrete residuals, inputs, reproducibility."""

import json

import numpy as np
import pytest

import firedrake as fd

from fe_operators.errors import BoundaryMarkerError, SolveError, SpaceMismatchError
from fe_operators.io import load_mesh
from fe_operators.problems import get_problem
from fe_operators.problems.darcy import DarcyProblem
from fe_operators.problems.poisson import PoissonProblem


def _rates(errors):
    """Observed orders for meshes refined by a factor of 2."""
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


def _errors(uh, u_exact):
    d = uh - u_exact
    l2 = fd.assemble(d * d * fd.dx) ** 0.5
    h1 = fd.assemble(fd.inner(fd.grad(d), fd.grad(d)) * fd.dx) ** 0.5
    return l2, h1


def _free_residual(uh, form_a, form_L, bcs):
    """‖(A u − b)_free‖ / ‖b_free‖ of the assembled forms (no conditions applied)."""
    r = fd.assemble(fd.action(form_a, uh) - form_L).dat.data_ro
    b = fd.assemble(form_L).dat.data_ro
    free = np.ones(r.size, dtype=bool)
    free[np.concatenate([bc.nodes for bc in bcs])] = False
    return np.linalg.norm(r[free]) / np.linalg.norm(b[free])


# ------------------------------------------------------------------ Poisson
@pytest.mark.parametrize("degree, sizes", [(1, (8, 16, 32)), (2, (4, 8, 16))])
def test_poisson_manufactured_solution_converges(degree, sizes):
    l2, h1 = [], []
    for n in sizes:
        mesh = fd.UnitSquareMesh(n, n)
        x, y = fd.SpatialCoordinate(mesh)
        u_exact = fd.sin(2 * x + 0.5) * fd.cos(1.5 * y) + x * y
        minus_lap = 6.25 * fd.sin(2 * x + 0.5) * fd.cos(1.5 * y)
        problem = PoissonProblem(mesh, degree=degree)
        V = problem.input_spaces["f"]
        inputs = {"f": fd.Function(V).interpolate(minus_lap), "g": fd.Function(V).interpolate(u_exact)}
        errs = _errors(problem.solve(inputs), u_exact)
        l2.append(errs[0])
        h1.append(errs[1])
    assert np.all(abs(_rates(l2) - (degree + 1)) < 0.2), _rates(l2)
    assert np.all(abs(_rates(h1) - degree) < 0.15), _rates(h1)


def test_poisson_sample_satisfies_bc_and_discrete_equations():
    problem = PoissonProblem(fd.UnitSquareMesh(12, 12), markers=[1, 3])
    inputs, u = problem.sample(seed=5, index=2)
    assert set(inputs) == {"f", "g"} and u.function_space() == problem.output_space
    bcs = problem.output_bcs(inputs)
    nodes = bcs[0].nodes
    np.testing.assert_array_equal(u.dat.data_ro[nodes], inputs["g"].dat.data_ro[nodes])
    V = problem.output_space
    w, v = fd.TrialFunction(V), fd.TestFunction(V)
    res = _free_residual(u, fd.inner(fd.grad(w), fd.grad(v)) * fd.dx, inputs["f"] * v * fd.dx, bcs)
    assert res < 1e-10
    # natural condition on the other sides: the solution differs from g there
    other = fd.DirichletBC(V, 0, 2).nodes
    assert not np.allclose(u.dat.data_ro[other], inputs["g"].dat.data_ro[other])


def test_poisson_errors():
    mesh = fd.UnitSquareMesh(4, 4)
    with pytest.raises(BoundaryMarkerError, match=r"\[1, 2, 3, 4\]"):
        PoissonProblem(mesh, markers=[1, 7])
    problem = PoissonProblem(
        mesh, solver_parameters={"ksp_type": "cg", "pc_type": "none", "ksp_max_it": 1, "ksp_rtol": 1e-12},
    )
    with pytest.raises(SolveError) as info:
        problem.sample(seed=0, index=4)
    assert info.value.sample == 4 and info.value.reason == -3  # KSP_DIVERGED_ITS
    good = {"f": fd.Function(problem.output_space), "g": fd.Function(problem.output_space)}
    with pytest.raises(SpaceMismatchError, match="'g'"):
        problem.solve({**good, "g": fd.Function(fd.FunctionSpace(mesh, "DG", 0))})
    with pytest.raises(KeyError, match="missing inputs"):
        problem.solve({"f": good["f"]})


# ------------------------------------------------------------------ Darcy
@pytest.mark.parametrize("coefficient, family", [("dg0", "DG"), ("cg1", "CG"), ("lognormal", "CG")])
def test_darcy_inputs_residual_and_bc(coefficient, family):
    mesh = fd.UnitSquareMesh(24, 24)
    problem = DarcyProblem(mesh, coefficient=coefficient)
    A = problem.input_spaces["a"]
    assert A.ufl_element().family().startswith({"DG": "Discontinuous", "CG": "Lagrange"}[family])
    fractions = []
    for index in range(8):
        inputs, u = problem.sample(seed=1, index=index)
        a = inputs["a"].dat.data_ro
        if coefficient == "lognormal":
            assert np.all(a > 0)
        else:
            assert set(np.unique(a)) <= {3.0, 12.0}
            fractions.append(np.mean(a == 12.0))
    if fractions:
        # zero-mean field: both phases in every sample, neither dominating on average
        assert all(0 < f < 1 for f in fractions) and 0.3 < np.mean(fractions) < 0.7, fractions
    # the last sample: u = 0 on ∂Ω exactly, the discrete equations hold on free DOFs
    bcs = problem.output_bcs(inputs)
    assert np.all(u.dat.data_ro[bcs[0].nodes] == 0.0)
    V = problem.output_space
    w, v = fd.TrialFunction(V), fd.TestFunction(V)
    form = fd.inner(inputs["a"] * fd.grad(w), fd.grad(v)) * fd.dx
    assert _free_residual(u, form, fd.Constant(1.0) * v * fd.dx, bcs) < 1e-8


def test_darcy_cg1_grid_matches_fno_vertices():
    problem = DarcyProblem(fd.UnitSquareMesh(64, 64), coefficient="cg1")
    assert problem.input_spaces["a"].dof_dset.size == 65 * 65
    assert abs(problem.field.kappa - 3.0) < 1e-12 and problem.field.alpha == 2.0


def test_darcy_manufactured_smooth_coefficient_on_disk():
    # −∇·(a∇u) = 1 on the unit disk with a = 1/(1+r²): u = 3/8 − r²/4 − r⁴/8, u(1) = 0
    l2, h1 = [], []
    for level in (2, 3, 4):
        mesh = fd.UnitDiskMesh(level)
        x, y = fd.SpatialCoordinate(mesh)
        r2 = x**2 + y**2
        problem = DarcyProblem(mesh, coefficient="lognormal")
        a = fd.Function(problem.input_spaces["a"]).interpolate(1 / (1 + r2))
        errs = _errors(problem.solve({"a": a}), 3 / 8 - r2 / 4 - r2**2 / 8)
        l2.append(errs[0])
        h1.append(errs[1])
    assert np.all(abs(_rates(l2) - 2) < 0.2), _rates(l2)
    assert np.all(abs(_rates(h1) - 1) < 0.15), _rates(h1)


def test_darcy_errors():
    mesh = fd.UnitSquareMesh(4, 4)
    with pytest.raises(ValueError, match="coefficient"):
        DarcyProblem(mesh, coefficient="dg1")
    with pytest.raises(BoundaryMarkerError):
        DarcyProblem(mesh, markers="left")


# ------------------------------------------------------------------ both
@pytest.mark.parametrize("name", ["poisson", "darcy"])
def test_reproducible_samples_through_registry(name):
    problem = get_problem(name, fd.UnitSquareMesh(10, 10))
    json.dumps(problem.description())
    (in1, u1), (in2, u2), (in3, u3) = (problem.sample(3, i) for i in (0, 0, 1))
    for key in problem.input_spaces:
        np.testing.assert_array_equal(in1[key].dat.data_ro, in2[key].dat.data_ro)
        assert not np.array_equal(in1[key].dat.data_ro, in3[key].dat.data_ro)
    np.testing.assert_array_equal(u1.dat.data_ro, u2.dat.data_ro)
    assert not np.allclose(u1.dat.data_ro, u3.dat.data_ro)
    assert u1 is not u2  # a new Function per solve


def test_shipped_mesh():
    mesh = load_mesh("lshape")
    darcy = DarcyProblem(mesh, length_scale=0.5)
    inputs, u = darcy.sample(0, 0)
    assert np.all(u.dat.data_ro[darcy.output_bcs(inputs)[0].nodes] == 0.0)
    assert u.dat.data_ro.max() > 0
    markers = [int(m) for m in mesh.exterior_facets.unique_markers[:2]]
    poisson = PoissonProblem(mesh, markers=markers)
    inputs, u = poisson.sample(0, 0)
    nodes = poisson.output_bcs(inputs)[0].nodes
    np.testing.assert_array_equal(u.dat.data_ro[nodes], inputs["g"].dat.data_ro[nodes])
