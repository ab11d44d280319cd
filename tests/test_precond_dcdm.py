"""DCDM: PETSc's FCG with the network PC is the DCDM iteration; loss, data and safeguards."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.models.build import hierarchy_context
from fe_operators.sparse.maps import SparseMap
from fe_operators.multigrid.cycle import cycle_levels
from fe_operators.precond.data import decoupled_rows, lanczos_ritz, training_rhs
from fe_operators.precond.dcdm import DCDMNet, dcdm_loss
from precond_helpers import family, make_solver, true_residual

FCG = {"mat_type": "aij", "ksp_type": "fcg", "ksp_fcg_mmax": 2, "ksp_fcg_truncation_type": "standard",
       "ksp_rtol": 1e-8, "ksp_atol": 0.0, "ksp_norm_type": "unpreconditioned", "ksp_max_it": 400,
       "pc_type": "python", "pc_python_type": "fe_operators.precond.DCDM"}


def _nonlinear(net: DCDMNet) -> DCDMNet:
    """Random last layers of a vcycle net's MLPs (they start at zero: the net would be linear)."""
    if net.architecture == "vcycle":
        with torch.no_grad():
            for mlp in net.vcycle.nets:
                last = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)][-1]
                last.weight.normal_(0.0, 0.3)
    return net


@pytest.fixture(scope="module", params=["mgno", "vcycle"])
def setting(request):
    fam = family("unitsquare:4/r2")
    hier = hierarchy_context(fam.V, fam.bcs)
    torch.manual_seed(0)
    net = DCDMNet(hier.levels[0].n_operators, hier.n_levels, hier.levels[0].h, width=3, layers=1,
                  architecture=request.param).double()
    net.init_laplacian(hier.levels[0].laplacian)
    a = fam.sample_coefficient(np.random.default_rng(7))
    return fam, hier, _nonlinear(net), a


def _dcdm_numpy(A: sp.csr_matrix, b: np.ndarray, direction, rtol: float, max_it: int) -> list[np.ndarray]:
    """Kaneda et al.'s DCDM: q = f(r), A-orthogonalised against the last two directions, exact line search."""
    x, r = np.zeros_like(b), b.copy()
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    iterates = []
    for _ in range(max_it):
        q = direction(r)
        p = q - sum(((q @ Apj) / (pj @ Apj)) * pj for pj, Apj in kept)
        Ap = A @ p
        alpha = (p @ r) / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        iterates.append(x.copy())
        kept = (kept + [(p, Ap)])[-2:]
        if np.linalg.norm(r) <= rtol * np.linalg.norm(b):
            break
    return iterates


def test_petsc_fcg_with_the_network_is_the_dcdm_iteration(setting):
    fam, _, net, a = setting
    solver, _ = make_solver(fam, a, FCG, {"precond_model": net})
    ksp = solver.snes.ksp
    petsc_iterates = []
    ksp.setMonitor(lambda k, it, rnorm: petsc_iterates.append(k.getSolution().array_r.copy()) if it else None)
    solver.solve()
    assert ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    ctx = ksp.getPC().getPythonContext()
    assert ctx.counter.fallbacks == 0
    A = petsc_to_scipy(ksp.getOperators()[0])
    b = ksp.getRhs().array_r.copy()
    ours = _dcdm_numpy(A, b, lambda r: ctx.direction(r)[0], 1e-8, 400)
    assert len(ours) == len(petsc_iterates) == ksp.getIterationNumber() > 3
    for x_petsc, x_ours in zip(petsc_iterates, ours):
        assert np.linalg.norm(x_petsc - x_ours) <= 1e-10 * np.linalg.norm(x_ours)


def test_the_network_is_scale_free(setting):
    fam, hier, net, a = setting
    if net.architecture != "mgno":
        pytest.skip("the vcycle network's homogeneity: tests/test_precond_dcdm_cost.py")
    levels = cycle_levels(hier, 0, net.coarsest_h)
    r = torch.randn(fam.V.dim(), 2, dtype=torch.float64)
    c = torch.randn(fam.V.dim(), dtype=torch.float64)
    with torch.no_grad():
        z = net(r, c, levels)
        assert torch.allclose(net(1e-7 * r, c, levels), z, rtol=1e-12, atol=1e-12 * z.abs().max())
        assert torch.all(z[hier.finest.boundary] == 0)


def test_dcdm_loss_is_the_line_search_residual():
    rng = np.random.default_rng(0)
    n = 30
    M = rng.standard_normal((n, n))
    A = M @ M.T + n * np.eye(n)
    b = rng.standard_normal((n, 4))
    b /= np.linalg.norm(b, axis=0)
    Amap = SparseMap.from_scipy(sp.csr_matrix(A))

    def exact(r, c, levels):
        return torch.from_numpy(np.linalg.solve(A, r.numpy()))

    assert float(dcdm_loss(exact, Amap, torch.from_numpy(b), None, None)) < 1e-24  # f = A⁻¹: α = 1, zero
    ident = float(dcdm_loss(lambda r, c, levels: 3.0 * r, Amap, torch.from_numpy(b), None, None))
    want = np.mean([np.sum((bj - (bj @ bj) / (bj @ A @ bj) * (A @ bj)) ** 2) for bj in b.T])
    assert ident == pytest.approx(want, rel=1e-12)


def test_ritz_vectors_and_training_rhs():
    fam = family("unitsquare:4/r1")
    A = petsc_to_scipy(fam.operator(fam.sample_coefficient(np.random.default_rng(1))))
    free = ~decoupled_rows(A)
    vals, vecs = lanczos_ritz(A, 40, np.random.default_rng(2))
    exact = np.linalg.eigvalsh(A.toarray()[np.ix_(free, free)])
    assert vals[0] == pytest.approx(exact[0], rel=1e-8) and vals[-1] == pytest.approx(exact[-1], rel=1e-8)
    assert np.allclose(vecs.T @ vecs, np.eye(vecs.shape[1]), atol=1e-10) and np.all(vecs[~free] == 0)
    B = training_rhs(A, 20, 5, 3, np.random.default_rng(3), mesh=fam.V.mesh())
    assert B.shape == (A.shape[0], 8) and np.allclose(np.linalg.norm(B, axis=0), 1.0)
    assert np.all(B[~free] == 0)


class _NaNEveryThirdCall(DCDMNet):
    """Returns NaN on every third call, the residual itself (a descent direction) otherwise."""

    calls = 0

    def forward(self, r, c, levels, multipliers=None):
        type(self).calls += 1
        return torch.full_like(r, float("nan")) if self.calls % 3 == 0 else r.clone()


def test_nan_every_third_call_still_converges_and_reports_a_third(setting, capfd):
    fam, hier, _, a = setting
    _NaNEveryThirdCall.calls = 0  # the class counts: once per parametrised run
    net = _NaNEveryThirdCall(hier.levels[0].n_operators, hier.n_levels, hier.levels[0].h, width=2, layers=0)
    ones = a.copy(deepcopy=True)
    ones.dat.data_wo[...] = 1.0  # the Laplacian: the identity and Jacobi directions agree up to scale
    solver, _ = make_solver(fam, ones, FCG, {"precond_model": net})
    solver.solve()
    ksp = solver.snes.ksp
    assert ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    counter = ksp.getPC().getPythonContext().counter
    assert counter.applications == _NaNEveryThirdCall.calls > 10
    assert counter.fallbacks == counter.applications // 3
    out = capfd.readouterr().out
    assert f"{counter.fallbacks} of {counter.applications} network applications fell back to Jacobi" in out


def test_a_preconditioned_norm_is_refused(setting):
    """A nonlinear PC's preconditioned norm is no residual: DCDM refuses to let FCG converge on it."""
    from firedrake.petsc import PETSc

    from fe_operators.errors import PreconditionerSetupError

    fam, _, net, a = setting
    solver, _ = make_solver(fam, a, {**FCG, "ksp_norm_type": "preconditioned"}, {"precond_model": net})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    assert isinstance(info.value.__cause__, PreconditionerSetupError)
    assert "ksp_norm_type unpreconditioned" in str(info.value.__cause__)
