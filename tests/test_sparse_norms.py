"""Assembled operators and FE norms against Firedrake's own assembly and errornorm."""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.fem import (
    FENorm, RelativeLoss, assemble_scipy, assemble_torch, functions_to_tensor,
    mass_matrix, node_weights, stiffness_matrix,
)


@pytest.fixture(scope="module")
def mesh():
    return fd.UnitSquareMesh(5, 4)


def _rand_funcs(V, k, seed=0):
    rng = np.random.default_rng(seed)
    fs = []
    for _ in range(k):
        f = fd.Function(V)
        f.dat.data[:] = rng.standard_normal(f.dat.data.shape)
        fs.append(f)
    return fs


def test_matrices_match_firedrake_action(mesh):
    V = fd.FunctionSpace(mesh, "CG", 2)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    f = _rand_funcs(V, 1)[0]
    M, K = mass_matrix(V), stiffness_matrix(V)
    ref_M = fd.assemble(fd.action(fd.inner(u, v) * fd.dx, f)).dat.data_ro
    ref_K = fd.assemble(fd.action(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx, f)).dat.data_ro
    assert np.allclose(M @ f.dat.data_ro, ref_M, rtol=0, atol=1e-14)
    assert np.allclose(K @ f.dat.data_ro, ref_K, rtol=0, atol=1e-12)
    Kt = assemble_torch(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx)
    assert Kt.layout == torch.sparse_csr
    y = (Kt @ torch.from_numpy(f.dat.data_ro.copy())[:, None])[:, 0]
    assert np.allclose(y.numpy(), ref_K, atol=1e-12)


def test_free_block(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    a = fd.inner(fd.grad(u), fd.grad(v)) * fd.dx
    bc = fd.DirichletBC(V, 0, (1, 3))
    A = assemble_scipy(a)
    Af = assemble_scipy(a, bc, free_only=True)
    free = np.setdiff1d(np.arange(V.dof_dset.size), bc.nodes)
    assert Af.shape == (free.size, free.size)
    assert np.allclose(Af.toarray(), A.toarray()[np.ix_(free, free)])
    # the free block of Firedrake's bc-assembled matrix is the same
    mat = fd.assemble(a, bcs=bc, mat_type="aij").petscmat
    ip, ix, dv = mat.getValuesCSR()
    import scipy.sparse as sp
    Afd = sp.csr_matrix((dv, ix, ip), shape=mat.getSize()).toarray()
    assert np.allclose(Afd[np.ix_(free, free)], Af.toarray())


@pytest.mark.parametrize("vector", [False, True])
def test_norms_match_assemble_and_errornorm(mesh, vector):
    V = (fd.VectorFunctionSpace if vector else fd.FunctionSpace)(mesh, "CG", 2)
    fs = _rand_funcs(V, 3, seed=1)
    gs = _rand_funcs(V, 3, seed=2)
    u, g = functions_to_tensor(fs), functions_to_tensor(gs)
    l2, semi, h1 = FENorm.l2(V), FENorm.h1_seminorm(V), FENorm.h1(V)
    for k, (f, gg) in enumerate(zip(fs, gs)):
        ref_l2 = np.sqrt(fd.assemble(fd.inner(f, f) * fd.dx))
        ref_semi = np.sqrt(fd.assemble(fd.inner(fd.grad(f), fd.grad(f)) * fd.dx))
        assert l2(u)[k].item() == pytest.approx(ref_l2, rel=1e-10)
        assert l2(u)[k].item() == pytest.approx(fd.norm(f, "L2"), rel=1e-10)
        assert semi(u)[k].item() == pytest.approx(ref_semi, rel=1e-10)
        assert h1(u)[k].item() == pytest.approx(fd.norm(f, "H1"), rel=1e-10)
        rel = l2.relative(u, g)[k].item()
        assert rel == pytest.approx(fd.errornorm(gg, f, "L2") / fd.norm(gg, "L2"), rel=1e-10)
        relh1 = h1.relative(u, g)[k].item()
        assert relh1 == pytest.approx(fd.errornorm(gg, f, "H1") / fd.norm(gg, "H1"), rel=1e-10)


def test_energy_norm(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    x, y = fd.SpatialCoordinate(mesh)
    kappa = 1 + x * y
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    a = kappa * fd.inner(fd.grad(u), fd.grad(v)) * fd.dx + u * v * fd.dx
    f = _rand_funcs(V, 1)[0]
    ref = np.sqrt(fd.assemble(kappa * fd.inner(fd.grad(f), fd.grad(f)) * fd.dx + f * f * fd.dx))
    assert FENorm.energy(a)(functions_to_tensor(f)).item() == pytest.approx(ref, rel=1e-10)


def test_loss_is_differentiable_gradcheck(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    norm = FENorm.l2(V)
    pred = torch.randn(2, V.dof_dset.size, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, V.dof_dset.size, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: RelativeLoss(norm)(p, target), (pred,))
    assert torch.autograd.gradcheck(lambda p: FENorm.h1(V).squared(p), (pred,))
    # target may require grad too
    t2 = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: RelativeLoss(norm)(pred.detach(), t), (t2,))


def test_loss_float32_input_and_reductions(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    norm = FENorm.l2(V)
    p = torch.randn(4, V.dof_dset.size)
    t = torch.randn(4, V.dof_dset.size)
    per = RelativeLoss(norm, "none")(p, t)
    assert per.dtype == torch.float64 and per.shape == (4,)
    assert RelativeLoss(norm)(p, t).item() == pytest.approx(per.mean().item())
    assert RelativeLoss(norm, "sum")(p, t).item() == pytest.approx(per.sum().item())


def test_norm_errors(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    norm = FENorm.l2(V)
    with pytest.raises(SpaceMismatchError, match="shape"):
        norm(torch.zeros(2, V.dof_dset.size + 1))
    with pytest.raises(ValueError, match="zero norm"):
        norm.relative(torch.ones(2, V.dof_dset.size), torch.zeros(2, V.dof_dset.size))
    with pytest.raises(ValueError, match="reduction"):
        RelativeLoss(norm, "avg")


@pytest.mark.parametrize("spec, degree", [("plate_holes", 1), ("plate_holes", 2), ("unitcube:3", 2),
                                          ("unitsquare:4x3:quad", 1)])
def test_node_weights_are_positive_shares_that_integrate_affine_fields(spec, degree):
    from fe_operators.io.readers import load_mesh

    mesh = load_mesh(spec)
    V = fd.FunctionSpace(mesh, "CG" if "quad" not in spec else "Q", degree)
    w = node_weights(V)
    row_sums = fd.assemble(fd.TestFunction(V) * fd.dx).dat.data_ro
    if degree == 1:
        np.testing.assert_allclose(w, row_sums, rtol=0, atol=1e-15)  # the lumped mass
    else:
        assert row_sums.min() <= 1e-15  # P2 vertices: zero in 2D, negative in 3D; not usable as weights
    assert w.min() > 0 and w.shape == (V.dof_dset.size,)
    # sum_i w_i f(x_i) = int f for affine f (HRZ lumping on simplices, the lumped mass on quads)
    x = fd.SpatialCoordinate(mesh)
    coef = [0.3, -1.2, 0.7][: mesh.geometric_dimension]
    f = 2.0 + sum(c * xi for c, xi in zip(coef, x))
    nodes = fd.Function(V).interpolate(f).dat.data_ro
    np.testing.assert_allclose(w @ nodes, fd.assemble(f * fd.dx), rtol=1e-13)
    vector = fd.VectorFunctionSpace(mesh, V.ufl_element().family(), degree)
    np.testing.assert_array_equal(node_weights(vector), w)  # a vector space's scalar nodes


def test_scaled_l2_loss_is_the_squared_fe_error_over_the_mean_squared_norm():
    """train.loss scaled_l2 (the hyperelastic beam's): one scale for all samples (the mean squared FE-L2 norm of the
    training outputs), so a sample with a tiny norm does not dominate the gradient as it does
    under the per-sample relative loss; values against Firedrake's own assembled norms."""
    from fe_operators.fem import FENorm
    from fe_operators.fem.norms import ScaledLoss
    from fe_operators.io.readers import load_mesh
    from fe_operators.train.losses import mean_squared_norm

    V = fd.VectorFunctionSpace(load_mesh("unitsquare:4"), "CG", 1)
    norm = FENorm.l2(V)
    rng = np.random.default_rng(0)
    n = V.dof_dset.size
    y = torch.from_numpy(rng.standard_normal((3, n, 2)))
    y[0] *= 1e-3  # a sample with a tiny norm

    class Data:
        def __len__(self) -> int:
            return 3

        def raw(self, idx):
            return None, y[torch.as_tensor(idx)]

    loss = ScaledLoss(norm, mean_squared_norm(norm, Data(), block=2))

    def sq(u):
        f = fd.Function(V)
        f.dat.data[:] = u.numpy()
        return fd.assemble(fd.inner(f, f) * fd.dx)

    scale = np.mean([sq(y[k]) for k in range(3)])
    assert loss.scale == pytest.approx(scale, rel=1e-12)
    p = y + torch.from_numpy(rng.standard_normal((3, n, 2))) * 0.1
    expected = np.mean([sq(p[k] - y[k]) for k in range(3)]) / scale
    assert float(loss(p, y)) == pytest.approx(expected, rel=1e-12)
    # the tiny sample's error weighs what any other's does (the relative loss: 1000x more)
    p0 = y.clone().requires_grad_(True)
    shift = torch.zeros_like(y)
    shift[:, 0, 0] = 1.0
    loss(p0 + shift, y).backward()
    g = p0.grad[:, 0, 0].abs()
    assert torch.allclose(g, g[1].expand(3), rtol=1e-10)
    with pytest.raises(ValueError, match="positive finite scale"):
        ScaledLoss(norm, 0.0)
    y.zero_()  # all-zero outputs have no scale: a clear error, not a division by zero
    with pytest.raises(ValueError, match="positive finite mean squared norm"):
        mean_squared_norm(norm, Data())
