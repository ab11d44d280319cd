"""NeuralMG with rediscretised coarse operators (``neuralmg_coarse rediscretise``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import ufl

import firedrake as fd
from firedrake.petsc import PETSc

from firedrake.mg.utils import get_level

from fe_operators.errors import PreconditionerSetupError
from fe_operators.io import load_mesh
from fe_operators.precond.smoother import SmootherNet
from fe_operators.sparse.petsc import petsc_to_scipy
from precond_helpers import NEURAL_MG, assert_pc_spd, family, make_solver, true_residual

REDISC = {**NEURAL_MG, "neuralmg_coarse": "rediscretise"}


def _random_net(seed: int = 0) -> SmootherNet:
    torch.manual_seed(seed)
    net = SmootherNet(hidden=8, layers=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # outputs spread over (0, 1), far from the initialisation
    return net


def _checkerboard(mesh, contrast: float = 1e4) -> fd.Function:
    x = fd.SpatialCoordinate(mesh)
    return fd.Function(fd.FunctionSpace(mesh, "DG", 0)).interpolate(
        ufl.conditional(ufl.sin(4 * ufl.pi * x[0]) * ufl.sin(4 * ufl.pi * x[1]) > 0, contrast, 1.0))


def _solve(V, k, params, model, reaction: float = 0.0):
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    a = k * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx
    if reaction:
        a += reaction * u * v * ufl.dx
    w = fd.Function(V)
    problem = fd.LinearVariationalProblem(a, v * ufl.dx, w, bcs=[fd.DirichletBC(V, 0.0, "on_boundary")])
    solver = fd.LinearVariationalSolver(problem, solver_parameters=params, appctx={"precond_model": model})
    solver.solve()
    return solver


def _operators(solver):
    return [petsc_to_scipy(M) for M in solver.snes.ksp.getPC().getPythonContext().hierarchy.operators]


@pytest.mark.parametrize("coefficient, levels", [("lognormal", None), ("checkerboard", None), ("lognormal", 2)])
def test_p1_rediscretised_operators_are_the_galerkin_ones(coefficient, levels):
    """Cell averages of the coefficient make the P1 coarse forms the Galerkin products (module docstring)."""
    fam = family("unitsquare:4/r3")
    k = fam.sample_coefficient(np.random.default_rng(3)) if coefficient == "lognormal" else _checkerboard(fam.V.mesh())
    extra = {} if levels is None else {"neuralmg_levels": levels}
    solvers = {c: _solve(fam.V, k, {**NEURAL_MG, "neuralmg_coarse": c, **extra}, _random_net())
               for c in ("galerkin", "rediscretise")}
    ops = {c: _operators(solver) for c, solver in solvers.items()}
    assert len(ops["galerkin"]) == (levels or 4)
    # the same values in the coarse form's own pattern, not MatPtAP's (about 2.6 times as many entries):
    # the Galerkin levels are cut to their compact patterns (precond.mg), which also drop the form's
    # structural zeros (the diagonal couplings of right-angled triangles)
    stored = {c: [int(M.getInfo()["nz_used"]) for M in s.snes.ksp.getPC().getPythonContext().hierarchy.operators]
              for c, s in solvers.items()}
    assert all(g <= r for r, g in zip(stored["rediscretise"][:-1], stored["galerkin"][:-1]))
    for G, R in zip(ops["galerkin"], ops["rediscretise"]):
        assert abs(G - R).max() <= 1e-12 * abs(G).max()


def test_rediscretised_coarse_operator_is_the_coarse_assembly_with_averaged_coefficient():
    """CG2 with a reaction term (not Galerkin): the coarse operator is the form on the coarse mesh,
    with the coefficient's cell average there and Dirichlet rows and columns as identity."""
    mesh = load_mesh("unitsquare:2/r2")
    V = fd.FunctionSpace(mesh, "CG", 2)
    k = fd.Function(fd.FunctionSpace(mesh, "CG", 1)).interpolate(
        ufl.exp(3 * ufl.sin(5 * fd.SpatialCoordinate(mesh)[0])))
    solver = _solve(V, k, REDISC, _random_net(), reaction=7.0)
    ops = _operators(solver)
    mh, level = get_level(mesh)
    coarse = mh[level - 1]
    Vc = fd.FunctionSpace(coarse, "CG", 2)
    # the cell average of k on the coarse mesh, computed independently: each coarse cell's
    # average is the mean of its (equal-area) children's averages of k
    Wf, Wc = fd.FunctionSpace(mesh, "DG", 0), fd.FunctionSpace(coarse, "DG", 0)
    kf = fd.project(k, Wf)  # DG0 projection: the fine cells' averages
    c2f = mh.coarse_to_fine_cells[level - 1]
    fine_dofs = Wf.cell_node_map().values[:, 0]
    kc = fd.Function(Wc)
    kc.dat.data[Wc.cell_node_map().values[:, 0]] = kf.dat.data_ro[fine_dofs[c2f]].mean(axis=1)
    assert abs(fd.assemble(kc * ufl.dx) - fd.assemble(k * ufl.dx)) <= 1e-12 * fd.assemble(k * ufl.dx)
    u, v = fd.TrialFunction(Vc), fd.TestFunction(Vc)
    ref = petsc_to_scipy(fd.assemble(kc * ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx + 7.0 * u * v * ufl.dx,
                                     bcs=[fd.DirichletBC(Vc, 0.0, "on_boundary")], mat_type="aij").petscmat)
    assert ops[-2].shape == ref.shape and abs(ops[-2] - ref).max() <= 1e-10 * abs(ref).max()
    # and it is not the Galerkin product (CG2: the rediscretisation is a different operator)
    galerkin = _operators(_solve(V, k, NEURAL_MG, _random_net(), reaction=7.0))
    assert abs(galerkin[-2] - ref).max() > 1e-3 * abs(ref).max()


@pytest.mark.parametrize("seed", [0, 1])
def test_rediscretised_cycle_is_symmetric_positive_definite(seed):
    """The whole V-cycle as a matrix (CG2, where the coarse operators are not Galerkin's):
    symmetric, and every eigenvalue positive, for random smoother weights."""
    mesh = load_mesh("unitsquare:2/r2")
    V = fd.FunctionSpace(mesh, "CG", 2)
    solver = _solve(V, _checkerboard(mesh, 1e3), REDISC, _random_net(seed), reaction=1.0)
    assert_pc_spd(solver, rtol=1e-8)


@pytest.mark.parametrize("contrast", [1e4, 1e6])
def test_cg_converges_on_a_high_contrast_checkerboard(contrast):
    mesh = load_mesh("unitsquare:4/r3")
    V = fd.FunctionSpace(mesh, "CG", 1)
    k = _checkerboard(mesh, contrast)
    its = {}
    for name, params in (("galerkin", NEURAL_MG), ("rediscretise", REDISC)):
        solver = _solve(V, k, params, _random_net())
        assert solver.snes.ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
        its[name] = solver.snes.ksp.getIterationNumber()
    assert its["rediscretise"] == its["galerkin"] <= 20


def test_a_new_coefficient_reaverages_and_reassembles_the_coarse_operators():
    fam = family("unitsquare:4/r2")
    k = fam.sample_coefficient(np.random.default_rng(0))
    solver, u = make_solver(fam, k, REDISC, {"precond_model": _random_net()})
    solver.solve()
    ctx = solver.snes.ksp.getPC().getPythonContext()
    handles = [M.handle for M in ctx.hierarchy.operators]
    k.assign(fam.sample_coefficient(np.random.default_rng(1)))  # the form's Function, new values
    u.assign(0.0)  # the same initial guess as the fresh solve's
    solver.solve()
    assert [M.handle for M in ctx.hierarchy.operators] == handles  # refilled in place
    fresh, _ = make_solver(fam, k, REDISC, {"precond_model": _random_net()})
    fresh.solve()
    for got, ref in zip(_operators(solver), _operators(fresh)):
        assert abs(got - ref).max() <= 1e-14 * abs(ref).max()
    assert solver.snes.ksp.getIterationNumber() == fresh.snes.ksp.getIterationNumber()
    assert "coarse operators" in ctx.setup_breakdown


def test_an_unknown_coarse_option_is_named():
    fam = family("unitsquare:4/r2")
    solver, _ = make_solver(fam, fam.sample_coefficient(np.random.default_rng(0)),
                            {**NEURAL_MG, "neuralmg_coarse": "geometric"}, {"precond_model": _random_net()})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    assert isinstance(info.value.__cause__, PreconditionerSetupError)
    assert "coarse 'geometric': expected galerkin or rediscretise" in str(info.value.__cause__)
