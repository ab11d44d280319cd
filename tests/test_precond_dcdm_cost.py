"""DCDM's ``vcycle`` network: the V-cycle it computes, its float32 direction, its counted
arithmetic, and FCG + a briefly trained network in a real PETSc solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fe_operators.precond.dcdm import DCDMNet, vcycle_levels
from precond_helpers import family, make_solver, true_residual

OMEGA = float(torch.tensor(0.6, dtype=torch.float32))  # the smoothing weights' start, as stored


def _laplace_1d(n: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")


def _interpolation(nc: int) -> sp.csr_matrix:
    """Linear interpolation from ``nc`` interior nodes to ``2 nc + 1`` (1D, zero ends): 3 entries per coarse node."""
    rows, cols, vals = [], [], []
    for j in range(nc):
        for i, v in ((2 * j, 0.5), (2 * j + 1, 1.0), (2 * j + 2, 0.5)):
            rows.append(i), cols.append(j), vals.append(v)
    return sp.csr_matrix((vals, (rows, cols)), shape=(2 * nc + 1, nc))


@pytest.fixture(scope="module")
def tiny():
    """A three-level 1D hierarchy (3, 7, 15 nodes), its operators Galerkin products of the finest."""
    P1, P2 = _interpolation(3), _interpolation(7)
    A2 = sp.csr_matrix(sp.diags(1.0 + np.arange(15) / 15.0) @ _laplace_1d(15))  # row-scaled: not symmetric
    A1 = sp.csr_matrix(P2.T @ A2 @ P2)
    A0 = sp.csr_matrix(P1.T @ A1 @ P1)
    return [A0, A1, A2], [P1, P2]


def _net(layers: int = 1, width: int = 2, nonlinear: int = 1) -> DCDMNet:
    torch.manual_seed(0)
    return DCDMNet(0, 3, 1.0, width=width, layers=layers, nonlinear_levels=nonlinear).double()


def _numpy_vcycle(ops, pros, f: np.ndarray) -> np.ndarray:
    """V(1,1), damped Jacobi (OMEGA), exact coarsest solve: what the untrained network must compute."""
    def cycle(level: int, b: np.ndarray) -> np.ndarray:
        A = ops[level].toarray()
        if level == 0:
            return np.linalg.solve(A, b)
        d = np.diag(A)[:, None]
        x = OMEGA * b / d
        x = x + pros[level - 1] @ cycle(level - 1, pros[level - 1].T @ (b - A @ x))
        return x + OMEGA * (b - A @ x) / d
    return cycle(len(ops) - 1, f)


def test_the_untrained_network_is_the_damped_jacobi_vcycle(tiny):
    ops, pros = tiny
    net = _net().eval()
    levels = vcycle_levels(ops, pros, torch.float64)
    f = np.random.default_rng(0).standard_normal((15, 2))
    with torch.no_grad():
        z = net(torch.from_numpy(f), None, levels).numpy()
    assert np.allclose(z, _numpy_vcycle(ops, pros, f), rtol=1e-12, atol=1e-12)


def test_mac_count_equals_a_hand_count(tiny):
    ops, pros = tiny
    net = _net(layers=1, width=2, nonlinear=1)
    levels = vcycle_levels(ops, pros, torch.float64)
    # coarsest: dense 3x3 solve = 9.
    # level 1 (7 nodes, tridiagonal 19 entries; P 7x3 and R 3x7 with 9 entries each):
    #   pre (first step D⁻¹f: free) + residual 19, restrict 9, prolong 9, post 19,
    #   nonlinear: residual 19 + D⁻¹A x 19 + 7 nodes x MLP weights (3*2 + 2*1 = 8) = 56  -> 150
    # level 2 (15 nodes, 43 entries; P, R 21 entries): 43 + 21 + 21 + 43 = 128
    assert net.cost_per_level(levels) == [9, 150, 128]


def test_float32_direction_matches_float64(tiny):
    fam = family("unitsquare:4/r2")
    from fe_operators.fem.transfer import level_prolongations
    from fe_operators.multigrid.galerkin import galerkin_hierarchy
    from fe_operators.sparse.petsc import petsc_to_scipy

    A = petsc_to_scipy(fam.operator(fam.sample_coefficient(np.random.default_rng(3))))
    hier = galerkin_hierarchy(A, [petsc_to_scipy(P) for P in level_prolongations(fam.V)])
    ops = [lv.block(0).to_scipy() for lv in hier.levels]
    pros = [P.to_scipy() for P in hier.prolongations]
    net = DCDMNet(0, 3, 1.0, width=4, layers=2, nonlinear_levels=2).double()
    with torch.no_grad():
        for mlp in net.vcycle.nets:
            [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1].weight.normal_(0.0, 0.5)
    r = torch.from_numpy(np.random.default_rng(4).standard_normal((A.shape[0], 3)))
    with torch.no_grad():
        z64 = net.eval()(r, None, vcycle_levels(ops, pros, torch.float64))
        z32 = net.float()(r.float(), None, vcycle_levels(ops, pros, torch.float32)).double()
        assert float(net.vcycle.nets[0](torch.ones(1, 3)).abs().max()) > 1e-3  # the MLPs do act
    err = (z32 - z64).norm(dim=0) / z64.norm(dim=0)
    assert torch.all(err < 1e-4) and torch.all(err > 0)  # float32 round-off, not the same computation
    # positively homogeneous of degree one (FCG's scale-free direction)
    with torch.no_grad():
        levels = vcycle_levels(ops, pros, torch.float64)
        net.double()
        z, z_small = net(r, None, levels), net(1e-6 * r, None, levels)
    assert torch.allclose(z_small, 1e-6 * z, rtol=1e-10, atol=1e-20)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fe_operators.precond.training import train_preconditioner

    out = tmp_path_factory.mktemp("dcdm") / "dcdm.pt"
    cfg = {"kind": "dcdm", "family": {"mesh": "unitsquare:4/r3", "samples": 2, "validation_samples": 1},
           "dcdm": {"width": 4, "layers": 1, "ritz": 20, "combinations": 8, "smooth": 4, "batch": 8},
           "train": {"steps": 30, "lr": 3e-3, "seed": 0, "log_every": 0}, "out": str(out)}
    result = train_preconditioner(cfg, log=None)
    return str(out), result.report


FCG = {"mat_type": "aij", "ksp_type": "fcg", "ksp_fcg_mmax": 2, "ksp_fcg_truncation_type": "standard",
       "ksp_rtol": 1e-8, "ksp_atol": 0.0, "ksp_norm_type": "unpreconditioned", "ksp_max_it": 200,
       "pc_type": "python", "pc_python_type": "fe_operators.precond.DCDM"}


def test_fcg_with_a_trained_vcycle_network_converges_flat_under_refinement(trained):
    path, report = trained
    assert report["its_learned"] < report["its_classical"]  # beats CG + ICC(0) on held-out coefficients
    its = {}
    for spec in ("unitsquare:4/r3", "unitsquare:4/r4", "unitsquare:4/r5"):  # trained on r3; finer reuse weights
        fam = family(spec)
        a = fam.sample_coefficient(np.random.default_rng(11))
        solver, _ = make_solver(fam, a, {**FCG, "dcdm_model": path})
        solver.solve()
        ksp = solver.snes.ksp
        assert ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8 * 1.01
        assert ksp.getPC().getPythonContext().counter.fallbacks == 0
        its[spec] = ksp.getIterationNumber()
    assert max(its.values()) <= 25 and its["unitsquare:4/r5"] <= 1.5 * its["unitsquare:4/r3"], its
