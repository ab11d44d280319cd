"""The SPD neural multigrid: the PETSc cycle is the trained cycle, and it is SPD for any weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd
from firedrake.petsc import PETSc

from fe_operators.errors import NoHierarchyError
from fe_operators.sparse.petsc import petsc_to_scipy, seqaij_csr
from fe_operators.fem.transfer import level_prolongations
from fe_operators.errors import ModelNotGivenError
from fe_operators.precond.features import FEATURE_NAMES, csr_row_features, petsc_row_features
from fe_operators.multigrid.galerkin import galerkin_hierarchy
from fe_operators.precond.mg import GalerkinHierarchy, setup_learned_mg
from fe_operators.precond.smoother import LearnedJacobi, SmootherNet, fused_multipliers, smoother_multipliers
from fe_operators.precond.vcycle import level_multipliers, vcycle
from precond_helpers import CG, NEURAL_MG, family, lanczos, make_solver, trained_smoother, true_residual  # noqa: F401


def _random_net(seed: int = 0, scale: float = 3.0) -> SmootherNet:
    torch.manual_seed(seed)
    net = SmootherNet(hidden=8, layers=2).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)  # far from the initialisation: outputs spread over (0, 1)
    return net


@pytest.fixture(scope="module")
def operator():
    fam = family("unitsquare:4/r3")
    a = fam.sample_coefficient(np.random.default_rng(3))
    return fam, a, fam.operator(a)


def test_features_are_dimensionless_and_match_the_laplacian_stencil():
    mesh = fd.UnitSquareMesh(8, 8)
    V = fd.FunctionSpace(mesh, "CG", 1)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    bc = fd.DirichletBC(V, 0, "on_boundary")
    A = petsc_to_scipy(fd.assemble(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx, bcs=bc).petscmat)
    f = csr_row_features(A)
    assert np.allclose(f.values, csr_row_features(7.5 * A).values, rtol=0, atol=1e-14)  # scale-free
    interior = np.flatnonzero(~f.decoupled & (np.abs(f.values[:, 1]) < 1e-12))
    x = fd.assemble(fd.interpolate(fd.SpatialCoordinate(mesh), fd.VectorFunctionSpace(mesh, "CG", 1))).dat.data_ro
    deep = interior[np.all((x[interior] > 0.2) & (x[interior] < 0.8), axis=1)]
    assert deep.size > 0
    # P1 on right triangles: 4 neighbours with -1, diagonal 4
    assert np.allclose(f.values[deep], [1.0, 0.0, 0.0, 0.25, 0.0, 0.25], atol=1e-12)
    assert f.decoupled.sum() == 32 and np.all(f.values[f.decoupled] == [0, 1, 0, 0, 1, 0])
    assert len(FEATURE_NAMES) == f.values.shape[1]


def test_seqaij_csr_is_a_view_of_the_matrix_storage_and_features_agree_on_every_path(operator):
    from fe_operators.sparse.petsc import seqaij_csr

    _, _, A0 = operator
    A = A0.duplicate(copy=True)
    view = seqaij_csr(A)
    assert view is not None and not any(arr.flags.writeable for arr in view)
    for got, ref in zip(view, A.getValuesCSR()):
        assert np.array_equal(got, ref)
    A.scale(2.0)  # the view is the storage: it sees the new values, no copy was made
    assert np.array_equal(view[2], A.getValuesCSR()[2])
    # the compiled serial path, the row-by-row path of other matrix types, and scipy's agree
    B = A.convert("mpiaij")  # one process, another type: no view, read with getValuesCSR
    assert seqaij_csr(B) is None and seqaij_csr(A.convert("dense")) is None
    fa, fb, fc = petsc_row_features(A), petsc_row_features(B), csr_row_features(petsc_to_scipy(A))
    for f in (fb, fc):
        assert np.allclose(fa.values, f.values, rtol=1e-13, atol=1e-15)
        assert np.array_equal(fa.decoupled, f.decoupled) and np.allclose(fa.abs_row_sum, f.abs_row_sum, rtol=1e-14)


def test_galerkin_operators_and_cycle_agree_with_the_torch_training_cycle(operator):
    fam, _, A = operator
    Ps = level_prolongations(fam.V)
    gh = GalerkinHierarchy(A, Ps)
    sh = galerkin_hierarchy(petsc_to_scipy(A), [petsc_to_scipy(P) for P in Ps])
    for Ap, lv in zip(gh.operators, sh.levels):
        As = lv.block(0).to_scipy()
        assert abs(petsc_to_scipy(Ap) - As).max() <= 1e-13 * abs(As).max()
        # coarse Dirichlet rows decoupled, identity
        b = lv.boundary.numpy()
        assert np.array_equal(csr_row_features(As).decoupled, b) and np.all(As.diagonal()[b] == 1.0)
    net = _random_net()
    mg = PETSc.PC().create()
    mg.setOptionsPrefix("test_torch_cycle_")
    smoothers = setup_learned_mg(mg, gh, net, sweeps=2)
    mg.setUp()
    with torch.no_grad():
        trained = level_multipliers(net, sh)  # float64, as in training
    applied = [None] + [torch.from_numpy(ctx.multipliers.array_r.copy()) for ctx in smoothers[::-1]]
    for m_train, m_run in zip(trained[1:], applied[1:]):  # the set-up runs the network in float32
        assert torch.allclose(m_run, m_train, rtol=1e-6, atol=0)
    X = np.random.default_rng(0).standard_normal((A.getSize()[0], 3))
    Y = vcycle(sh, applied, torch.from_numpy(X), 2).numpy()
    x, y = A.createVecs()
    for j in range(3):
        x.array[:] = X[:, j]
        mg.apply(x, y)
        assert np.abs(y.array_r - Y[:, j]).max() <= 1e-12 * np.abs(Y[:, j]).max()
    mg.destroy()


@pytest.mark.parametrize("act", ["relu", "tanh", "gelu", "silu"])
def test_compiled_smoother_network_equals_the_torch_forward(operator, act):
    """smoother_multipliers evaluates a plain SmootherNet by a compiled loop: the torch forward's factors
    (float64 to round-off; float32 on the float32 feature-major features to float32 accuracy), and a
    network with non-finite weights falls back on every row, as the torch path does."""
    _, _, A = operator
    torch.manual_seed(1)
    net = SmootherNet(hidden=8, layers=2, act=act).double()
    with torch.no_grad():
        for q in net.parameters():
            q.mul_(3.0)
    f64, f32 = petsc_row_features(A), petsc_row_features(A, np.float32)
    assert f32.values.dtype == np.float32 and f32.values.T.flags.c_contiguous
    assert np.allclose(f32.values, f64.values, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        s = net(torch.from_numpy(f64.values)).numpy()
    expect = np.where(f64.decoupled, 1.0 / f64.diagonal, 2.0 * s / f64.abs_row_sum)
    m, bad = smoother_multipliers(net, f64)
    assert bad == 0 and np.allclose(m, expect, rtol=1e-12, atol=0)
    m32, _ = smoother_multipliers(net.float(), f32)
    assert np.allclose(m32, expect, rtol=1e-5, atol=0)
    with torch.no_grad():
        net.mlp[0].weight[0, 0] = float("nan")
    m, bad = smoother_multipliers(net.double(), f64)
    assert bad == A.getSize()[0] and np.allclose(m, np.where(f64.decoupled, 1.0 / f64.diagonal, 1.0 / f64.abs_row_sum))


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_fused_multipliers_equal_the_two_step_route(operator, act):
    """fused_multipliers (features and network in one compiled pass over the rows, one process) gives
    the multipliers of features then network (float64 bit for bit, float32 to round-off), the same fallback count for
    non-finite weights, and LearnedJacobi's set-up (which takes the fused route) the same Vec."""
    _, _, A = operator
    torch.manual_seed(2)
    net = SmootherNet(hidden=8, layers=1, act=act)
    with torch.no_grad():
        for q in net.parameters():
            q.mul_(3.0)
    view = seqaij_csr(A)
    for dtype, model in ((np.float32, net.float()), (np.float64, net.double())):
        expect, bad = smoother_multipliers(model, petsc_row_features(A, dtype))
        out = np.full(A.getSize()[0], np.nan)
        assert fused_multipliers(model, *view, out) == bad == 0
        # float64 bit for bit; float32 to its round-off (the compiler may contract the two loops'
        # products differently)
        assert np.allclose(out, expect, rtol=1e-6 if dtype == np.float32 else 0.0, atol=0.0)
    smoother = LearnedJacobi(model=net.float())
    pc = PETSc.PC().create()
    pc.setOperators(A, A)
    smoother.setUp(pc)
    assert np.allclose(smoother.multipliers.array_r, smoother_multipliers(net.float(), petsc_row_features(
        A, np.float32))[0], rtol=1e-6, atol=0.0)
    pc.destroy()
    with torch.no_grad():
        net.mlp[0].weight[0, 0] = float("nan")
    expect, bad = smoother_multipliers(net.float(), petsc_row_features(A, np.float32))
    out = np.empty(A.getSize()[0])
    assert fused_multipliers(net.float(), *view, out) == bad == A.getSize()[0]
    assert np.array_equal(out, expect)  # every row 1 / sum |a_ij| (or 1 / a_ii)


def _dense_ops(gh: GalerkinHierarchy) -> list[np.ndarray]:
    return [petsc_to_scipy(M).toarray() for M in gh.operators]


def test_compact_galerkin_operators_reuse_their_pattern_and_equal_fresh_products_for_new_coefficients(operator):
    """The compact coarse patterns (precond.mg) hold at most three quarters of MatPtAP's entries (half, on
    this mesh's coarse levels); refilled for two new
    coefficients (the symbolic structure reused, the same Mat objects) they equal fresh full products to
    round-off, and stay SPD."""
    fam, _, A = operator
    Ps = level_prolongations(fam.V)
    gh = GalerkinHierarchy(A, Ps, compact=True)
    built = list(gh.operators)
    rng = np.random.default_rng(11)
    for _ in range(2):
        B = fam.operator(fam.sample_coefficient(rng))
        gh.update(B)
        assert all(M is N for M, N in zip(gh.operators, built[:-1]))  # refilled in place
        fresh = GalerkinHierarchy(B, Ps)  # MatPtAP's full patterns
        for level, (Mc, Mf) in enumerate(zip(gh.operators[:-1], fresh.operators[:-1])):
            c, f = petsc_to_scipy(Mc), petsc_to_scipy(Mf)
            assert c.nnz < 0.75 * f.nnz, level
            assert abs(c - f).max() <= 1e-13 * abs(f).max()
            dense = c.toarray()
            assert np.abs(dense - dense.T).max() <= 1e-13 * np.abs(dense).max()
            assert np.linalg.eigvalsh(0.5 * (dense + dense.T)).min() > 0
        fresh.destroy()
        assert max(c.dropped for c in gh._compactions.values()) < 1e-12
    gh.destroy()


def test_compact_level_that_would_drop_real_couplings_keeps_the_full_product(operator):
    """A new matrix of the same pattern that is no finite-element form (random off-diagonal values) has real
    couplings where the first coefficient's product had cancellations: the levels rebuild with full products
    (new objects), equal to fresh ones, SPD."""
    fam, _, A = operator
    Ps = level_prolongations(fam.V)
    gh = GalerkinHierarchy(A, Ps, compact=True)
    old = list(gh.operators)
    S = petsc_to_scipy(A).tocoo()
    rng = np.random.default_rng(5)
    off = S.row != S.col
    coupled = off & (S.data != 0)
    w = rng.uniform(0.5, 1.5, S.shape[0])
    data = np.where(coupled, S.data * w[S.row] * w[S.col], S.data)  # symmetric, same pattern
    T = sp.csr_matrix((data, (S.row, S.col)), shape=S.shape)
    d = T.diagonal()
    off_sum = np.asarray(abs(T).sum(axis=1)).ravel() - np.abs(d)
    T = (T + sp.diags(np.maximum(d, 1.01 * off_sum) - d)).tocsr()  # diagonally dominant: SPD
    T.sort_indices()
    B = A.duplicate(copy=True)
    B.setValuesCSR(T.indptr.astype(PETSc.IntType), T.indices.astype(PETSc.IntType), T.data)
    B.assemble()
    gh.update(B)
    assert gh._full_levels and any(M is not N for M, N in zip(gh.operators, old[:-1]))
    fresh = GalerkinHierarchy(B, Ps)
    for Mc, Mf in zip(gh.operators[:-1], fresh.operators[:-1]):
        c, f = petsc_to_scipy(Mc), petsc_to_scipy(Mf)
        assert abs(c - f).max() <= 1e-13 * abs(f).max()
        assert np.linalg.eigvalsh(c.toarray()).min() > 0
    fresh.destroy()
    gh.destroy()
    B.destroy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learned_smoother_is_energy_convergent_for_any_weights(operator, seed):
    """2 S⁻¹ − A ≻ 0 (S symmetric): ‖I − S A‖_A < 1, whatever the network outputs."""
    _, _, A = operator
    net = _random_net(seed, scale=10.0)
    m, bad = smoother_multipliers(net, petsc_row_features(A))
    assert bad == 0 and m.min() > 0
    Ad = petsc_to_scipy(A).toarray()
    assert np.linalg.eigvalsh(np.diag(2.0 / m) - Ad).min() > 0


def _pc_operator(solver):
    pc = solver.snes.ksp.getPC()
    A, _ = solver.snes.ksp.getOperators()
    x, y = A.createVecs()

    def apply(v: np.ndarray) -> np.ndarray:
        x.array[:] = v
        pc.apply(x, y)
        return y.array_r.copy()

    return apply, petsc_to_scipy(A)


@pytest.mark.parametrize("weights", ["random", "trained"])
def test_neural_mg_is_symmetric_positive_definite(operator, trained_smoother, weights):
    fam, a, _ = operator
    model = _random_net(5) if weights == "random" else str(trained_smoother[0])
    solver, _ = make_solver(fam, a, NEURAL_MG, {"precond_model": model})
    solver.solve()
    B, A = _pc_operator(solver)
    n = A.shape[0]
    rng = np.random.default_rng(11)
    for _ in range(5):
        x, y = rng.standard_normal(n), rng.standard_normal(n)
        assert abs(x @ B(y) - y @ B(x)) <= 1e-10 * np.linalg.norm(x) * np.linalg.norm(y)
        assert x @ B(x) > 0
    # the extreme Ritz vectors of B and of A
    vals, vecs = lanczos(B, n, 40, rng)
    assert vals.min() > 0
    _, a_vecs = lanczos(lambda v: A @ v, n, 40, rng)
    for v in np.concatenate([vecs[:, [0, 1, -1]], a_vecs[:, [0, 1, -2, -1]]], axis=1).T:
        assert v @ B(v) > 1e-12 * (v @ v) * vals.max()


def test_trained_neural_mg_solves_and_beats_classical_weights(trained_smoother):
    path, report = trained_smoother
    assert report["rho_learned"] < report["rho_classical"] < 1
    fam = family("unitsquare:4/r4")
    a = fam.sample_coefficient(np.random.default_rng(2024))
    its = {}
    for name, model in (("learned", str(path)), ("classical", SmootherNet(1, 0, init_s=0.5).double())):
        solver, u = make_solver(fam, a, NEURAL_MG, {"precond_model": model})
        solver.solve()
        assert solver.snes.ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
        its[name] = solver.snes.ksp.getIterationNumber()
    assert its["learned"] <= its["classical"]
    direct, u_ref = make_solver(fam, a, {"ksp_type": "preonly", "pc_type": "lu"})
    direct.solve()
    assert np.abs(u.dat.data_ro - u_ref.dat.data_ro).max() <= 1e-6 * np.abs(u_ref.dat.data_ro).max()


def test_a_new_coefficient_updates_the_coarse_operators(operator, trained_smoother):
    fam, a, _ = operator
    coeff = fd.Function(a.function_space()).assign(a)
    solver, _ = make_solver(fam, coeff, NEURAL_MG, {"precond_model": str(trained_smoother[0])})
    solver.solve()
    coeff.dat.data_wo[...] = fam.sample_coefficient(np.random.default_rng(99)).dat.data_ro
    solver.solve()
    ctx = solver.snes.ksp.getPC().getPythonContext()
    A, _ = solver.snes.ksp.getOperators()
    sh = galerkin_hierarchy(petsc_to_scipy(A), [petsc_to_scipy(P) for P in level_prolongations(fam.V)])
    for Ap, lv in zip(ctx.hierarchy.operators, sh.levels):
        As = lv.block(0).to_scipy()
        assert abs(petsc_to_scipy(Ap) - As).max() <= 1e-13 * abs(As).max()
    fresh, _ = make_solver(fam, coeff, NEURAL_MG, {"precond_model": str(trained_smoother[0])})
    fresh.solve()
    assert fresh.snes.ksp.getIterationNumber() == solver.snes.ksp.getIterationNumber()
    for updated, new in zip(ctx.smoothers, fresh.snes.ksp.getPC().getPythonContext().smoothers):
        assert np.array_equal(updated.multipliers.array_r, new.multipliers.array_r)  # re-read, not stale


class _NaNEveryThirdRow(SmootherNet):
    """A smoother network whose output is NaN on every third row it is given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = super().forward(x)
        return torch.where(torch.arange(s.shape[0]) % 3 == 0, torch.full_like(s, float("nan")), s)


def test_non_finite_smoother_weights_fall_back_and_are_reported(operator, capfd):
    fam, a, _ = operator
    solver, _ = make_solver(fam, a, NEURAL_MG, {"precond_model": _NaNEveryThirdRow(init_s=0.7).double()})
    solver.solve()
    assert solver.snes.ksp.getConvergedReason() > 0 and true_residual(solver) <= 1e-8
    ctx = solver.snes.ksp.getPC().getPythonContext()
    rows = [A.getSize()[0] for A in ctx.hierarchy.operators[1:]]
    assert ctx.fallback_rows == sum((n + 2) // 3 for n in rows)
    out = capfd.readouterr().out
    assert f"{ctx.fallback_rows} rows with the classical weight" in out


def test_neural_amg_preconditions_a_plain_petsc_matrix(trained_smoother):
    """A matrix that never saw Firedrake: 5-point variable-coefficient diffusion on a grid."""
    from fe_operators.precond.mg import NeuralAMG

    m = 48
    rng = np.random.default_rng(4)
    k = np.exp(2.0 * rng.standard_normal((m + 1, m)))  # edge conductivities
    idx = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [], [], []
    for (i0, i1, kk) in ((idx[:-1, :], idx[1:, :], k[1:-1, :]), (idx[:, :-1], idx[:, 1:], k[1:-1, :].T)):
        rows += [i0.ravel(), i1.ravel()]
        cols += [i1.ravel(), i0.ravel()]
        vals += [-kk.ravel(), -kk.ravel()]
    off = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m,) * 2)
    Asp = (off + sp.diags(-np.asarray(off.sum(axis=1)).ravel() + 0.01)).tocsr()
    A = PETSc.Mat().createAIJ(Asp.shape, csr=(Asp.indptr, Asp.indices, Asp.data), comm=PETSc.COMM_SELF)
    ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-8, atol=0.0, max_it=500)
    pc = ksp.getPC()
    pc.setType("python")
    pc.setPythonContext(NeuralAMG(model=str(trained_smoother[0])))
    x, b = A.createVecs()
    b.setArray(rng.standard_normal(m * m))
    ksp.solve(b, x)
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    assert ksp.getConvergedReason() > 0 and r.norm() <= 1e-8 * b.norm()
    u, v, Bu, Bv = A.createVecLeft(), A.createVecLeft(), A.createVecLeft(), A.createVecLeft()
    u.setArray(rng.standard_normal(m * m))
    v.setArray(rng.standard_normal(m * m))
    pc.apply(u, Bu)
    pc.apply(v, Bv)
    assert abs(v.dot(Bu) - u.dot(Bv)) <= 1e-10 * u.norm() * v.norm()
    assert pc.getPythonContext().smoothers  # the learned smoothers are in place


def test_missing_model_and_missing_hierarchy_are_named(operator):
    """PETSc turns the set-up's exception into its error 101; the exception is its cause."""
    fam, a, _ = operator
    solver, _ = make_solver(fam, a, NEURAL_MG)
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    assert isinstance(info.value.__cause__, ModelNotGivenError)
    assert "neuralmg_model PATH or appctx['precond_model']" in str(info.value.__cause__)
    flat = family("unitsquare:16")
    solver, _ = make_solver(flat, flat.sample_coefficient(np.random.default_rng(0)), NEURAL_MG,
                            {"precond_model": _random_net()})
    with pytest.raises(PETSc.Error) as info:
        solver.solve()
    assert isinstance(info.value.__cause__, NoHierarchyError) and "unitsquare:16/r4" in str(info.value.__cause__)
