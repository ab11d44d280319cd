"""The learned polynomial smoother (``SmootherNet(poly_levels=L)``): SPD for any weights, the PETSc
cycle is the trained torch cycle, and it trains and solves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from firedrake.petsc import PETSc

from fe_operators.errors import PreconditionerSetupError
from fe_operators.fem.transfer import level_prolongations
from fe_operators.multigrid.galerkin import galerkin_hierarchy
from fe_operators.precond.features import petsc_row_features
from fe_operators.precond.mg import GalerkinHierarchy, setup_learned_mg
from fe_operators.precond.smoother import LearnedPolynomial, SmootherNet, smoother_multipliers
from fe_operators.precond.vcycle import level_multipliers, level_steps, vcycle
from fe_operators.sparse.petsc import petsc_to_scipy
from precond_helpers import NEURAL_MG, assert_pc_spd, dense_operator, family, make_solver, true_residual


def _poly_net(seed: int = 0, sweeps: int = 3, poly_levels: int = 2) -> SmootherNet:
    torch.manual_seed(seed)
    net = SmootherNet(hidden=8, layers=2, sweeps=sweeps, poly_levels=poly_levels).double()
    with torch.no_grad():
        for p in net.mlp.parameters():
            p.mul_(3.0)  # row factors spread over (0, 1)
        net.step_logits.copy_(4.0 * torch.randn(net.step_logits.shape))  # weights spread over (0, 1)
    return net


@pytest.fixture(scope="module")
def operator():
    fam = family("unitsquare:4/r2")
    a = fam.sample_coefficient(np.random.default_rng(3))
    return fam, a, fam.operator(a)


def test_step_weights_are_in_the_unit_interval_and_per_level_from_the_finest():
    net = _poly_net(poly_levels=2)
    net.step_logits.data[:] = torch.tensor([[50.0, -50.0, 0.0], [1.0, 2.0, 3.0]])
    w = net.step_weights(4)  # coarsest smoothed level first
    w = [x.detach() for x in w]
    assert len(w) == 4 and all(float(x.min()) > 0 and float(x.max()) < 1 for x in w)
    assert torch.allclose(w[-1], torch.sigmoid(torch.tensor([50.0, -50.0, 0.0], dtype=torch.float64)), atol=2e-6)
    for x in w[:-1]:  # the second row, and deeper levels repeat the last row
        assert torch.allclose(x, torch.sigmoid(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)), atol=2e-6)
    assert "poly_levels" in net.config and SmootherNet.from_config(net.config).polynomial
    assert "poly_levels" not in SmootherNet().config  # older checkpoints: the plain smoother


@pytest.mark.parametrize("seed", [0, 1, 2, "s near 1"])
def test_polynomial_smoother_is_symmetric_and_energy_convergent_for_any_weights(operator, seed):
    """M = p(SA)S symmetric, ‖I − MA‖_A < 1 (every eigenvalue of MA in (0, 2)) for random weights;
    "s near 1" puts the spectrum of SA up to 2, where a step weight above 1 would break it."""
    _, _, A = operator
    net = _poly_net(seed if isinstance(seed, int) else 3)
    if not isinstance(seed, int):
        net.set_constant(0.999)
    m, _ = smoother_multipliers(net.float(), petsc_row_features(A))
    ctx = LearnedPolynomial(net, net.step_weights(1)[0].tolist())
    pc = PETSc.PC().create(comm=PETSc.COMM_SELF)
    pc.setOperators(A, A)
    ctx.setUp(pc)
    assert np.allclose(ctx.multipliers.array_r, m, rtol=1e-12)
    M = dense_operator(lambda x, y: ctx.apply(pc, x, y), A)
    assert np.abs(M - M.T).max() <= 1e-12 * np.abs(M).max()
    Ad = petsc_to_scipy(A).toarray()
    # eigenvalues of MA = those of A^{1/2} M A^{1/2}: similar to the symmetric L^T M L, A = L L^T
    L = np.linalg.cholesky(Ad)
    lam = np.linalg.eigvalsh(L.T @ (0.5 * (M + M.T)) @ L)
    assert lam.min() > 0 and lam.max() < 2
    pc.destroy()


def test_petsc_polynomial_cycle_is_the_torch_training_cycle(operator):
    fam, _, A = operator
    Ps = level_prolongations(fam.V)
    gh = GalerkinHierarchy(A, Ps)
    sh = galerkin_hierarchy(petsc_to_scipy(A), [petsc_to_scipy(P) for P in Ps])
    net = _poly_net(4)
    mg = PETSc.PC().create()
    mg.setOptionsPrefix("test_poly_cycle_")
    smoothers = setup_learned_mg(mg, gh, net, sweeps=1)
    mg.setUp()
    assert all(isinstance(s, LearnedPolynomial) for s in smoothers)
    applied = [None] + [torch.from_numpy(ctx.multipliers.array_r.copy()) for ctx in smoothers[::-1]]
    with torch.no_grad():
        trained = level_multipliers(net, sh)
        steps = level_steps(net, sh)
    for m_train, m_run in zip(trained[1:], applied[1:]):
        assert torch.allclose(m_run, m_train, rtol=1e-6, atol=0)
    X = np.random.default_rng(0).standard_normal((A.getSize()[0], 2))
    Y = vcycle(sh, applied, torch.from_numpy(X), net.sweeps, steps).numpy()
    x, y = A.createVecs()
    for j in range(2):
        x.array[:] = X[:, j]
        mg.apply(x, y)
        assert np.abs(y.array_r - Y[:, j]).max() <= 1e-12 * np.abs(Y[:, j]).max()
    mg.destroy()


@pytest.mark.parametrize("seed", [0, 1])
def test_neural_mg_with_the_polynomial_smoother_is_spd_and_solves(operator, seed):
    fam, a, _ = operator
    solver, _ = make_solver(fam, a, NEURAL_MG, {"precond_model": _poly_net(seed)})
    solver.solve()
    ksp = solver.snes.ksp
    assert ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    assert_pc_spd(solver, rtol=1e-10)


def test_trained_polynomial_smoother_beats_classical_weights_and_keeps_its_degree(tmp_path):
    from fe_operators.precond.training import train_preconditioner

    path = tmp_path / "poly.pt"
    result = train_preconditioner({"kind": "neural_mg", "family": {"mesh": "unitsquare:4/r2", "samples": 2,
                                                                   "validation_samples": 1},
                                   "smoother": {"poly_levels": 2},
                                   "train": {"steps": 30, "log_every": 0, "lr": 1e-2}, "out": str(path)}, log=None)
    assert result.report["rho_learned"] < result.report["rho_classical"] < 1
    fam = family("unitsquare:4/r3")
    a = fam.sample_coefficient(np.random.default_rng(7))
    solver, _ = make_solver(fam, a, NEURAL_MG, {"precond_model": str(path)})
    solver.solve()
    assert solver.snes.ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    amg = {**NEURAL_MG, "pc_python_type": "fe_operators.precond.NeuralAMG", "neuralamg_model": str(path)}
    solver, _ = make_solver(fam, a, amg)
    solver.solve()
    assert solver.snes.ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    assert all(isinstance(s, LearnedPolynomial) for s in solver.snes.ksp.getPC().getPythonContext().smoothers)
    solver, _ = make_solver(fam, a, {**NEURAL_MG, "neuralmg_sweeps": 3}, {"precond_model": str(path)})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    assert isinstance(info.value.__cause__, PreconditionerSetupError)
    assert "polynomial smoother's degree is its training's, 2" in str(info.value.__cause__)
