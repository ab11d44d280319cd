"""SPON's decoder: exact Dirichlet values with untrained weights, scalar and vector outputs."""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.fem import DirichletDofs, functions_to_tensor
from fe_operators.models import SPON, affine_lifting
from fe_operators.models.build import context_from_spaces

PROCESSORS = {"gnn": dict(width=8, depth=2, hops=3, coarse_cells=4), "mlp": dict(hidden=[16])}


@pytest.fixture(scope="module")
def poisson_like():
    """CG2 on a square, inputs f and g on the output space, Dirichlet data g on the whole boundary."""
    V = fd.FunctionSpace(fd.UnitSquareMesh(5, 4), "CG", 2)
    return V, context_from_spaces({"f": V, "g": V}, V, lambda x: fd.DirichletBC(V, x["g"], "on_boundary"))


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_boundary_exact_with_random_weights_and_per_sample_data(poisson_like, kind):
    V, ctx = poisson_like
    torch.manual_seed(1)
    model = SPON.from_context(ctx, ["f", "g"], kind, **PROCESSORS[kind])
    assert next(model.parameters()).dtype == torch.float32
    # random per-sample data of large and varied magnitude: float32 round-off would show
    x = torch.randn(3, V.dof_dset.size, 2, dtype=torch.float64) * torch.tensor([1.0, 1e3])
    u = model(x)
    mask = ctx.mask[:, 0]
    g = x[..., 1]
    assert u.dtype == torch.float64 and u.shape == (3, V.dof_dset.size)
    assert torch.equal(u[:, mask], g[:, mask])
    # the free DOFs do come from the network (not the data)
    assert not torch.allclose(u[:, ~mask], g[:, ~mask])


def test_vectorised_lifting_equals_dirichletbc_per_sample(poisson_like):
    V, ctx = poisson_like
    rng = np.random.default_rng(0)
    gs = [fd.Function(V, val=rng.standard_normal(V.dof_dset.size)) for _ in range(3)]
    ref = torch.stack([DirichletDofs(V, fd.DirichletBC(V, g, "on_boundary")).lifting() for g in gs])
    g = functions_to_tensor(gs).unsqueeze(-1)
    lifting = affine_lifting([torch.zeros_like(g), g], ctx)
    assert torch.equal(lifting[..., 0], ref)
    # the shorthand lifting_input="g" on a context with fixed data builds the same map
    fixed = context_from_spaces({"f": V, "g": V}, V, fd.DirichletBC(V, 0.0, "on_boundary"))
    model = SPON.from_context(fixed, ["f", "g"], "mlp", lifting_input="g", hidden=[4])
    assert model.lifting_inputs == ("g",) and abs(model.context.lifting_maps[1].to_scipy()
                                                   - ctx.lifting_maps[1].to_scipy()).max() == 0


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_vector_output_clamped_boundary_exact(kind):
    mesh = fd.UnitSquareMesh(4, 4)
    V = fd.VectorFunctionSpace(mesh, "CG", 2)
    # clamped on marker 1 with non-zero data, one component fixed on marker 2
    bcs = [fd.DirichletBC(V, fd.Constant((0.25, -3.0)), 1), fd.DirichletBC(V.sub(1), 7.0, 2)]
    ctx = context_from_spaces({"load": V}, V, bcs)
    ref = DirichletDofs(V, bcs)
    assert torch.equal(ctx.mask, ref.mask) and ctx.mask[:, 1].sum() > ctx.mask[:, 0].sum() > 0
    torch.manual_seed(2)
    model = SPON.from_context(ctx, [("load", 2)], kind, **PROCESSORS[kind])
    x = torch.randn(2, V.dof_dset.size, 2, dtype=torch.float64)
    u = model(x)
    assert u.shape == (2, V.dof_dset.size, 2)
    g = ref.lifting()
    assert torch.equal(u[:, ctx.mask], g[ctx.mask].expand(2, -1))
    # per-sample data through lifting=: exact as well
    data = torch.randn(2, V.dof_dset.size, 2, dtype=torch.float64) * 1e4
    u = model(x, lifting=data)
    assert torch.equal(u[:, ctx.mask], data[:, ctx.mask])


@pytest.mark.parametrize("kind", sorted(PROCESSORS))
def test_boundary_exact_through_input_and_output_normalizers(poisson_like, kind):
    """The network sees encoded inputs and predicts encoded outputs; the boundary is still g."""
    from fe_operators.models import NormalizedModel, UnitGaussianNormalizer

    V, ctx = poisson_like
    torch.manual_seed(3)
    model = SPON.from_context(ctx, ["f", "g"], kind, **PROCESSORS[kind])
    n = V.dof_dset.size
    x_train = torch.randn(16, n, 2, dtype=torch.float64) * 5.0 + 2.0
    y_train = torch.randn(16, n, dtype=torch.float64) * 3.0 - 1.0
    x_norm = UnitGaussianNormalizer.fit(x_train, per="dof")
    y_norm = UnitGaussianNormalizer.fit(y_train, per="dof")
    x = torch.randn(3, n, 2, dtype=torch.float64) * torch.tensor([1.0, 1e3])
    mask = ctx.mask[:, 0]
    g = x[..., 1]
    # without re-imposition the boundary would carry the decoded encoded data: far off
    raw = y_norm.decode(model(x_norm.encode(x)))
    assert (raw[:, mask] - g[:, mask]).abs().max() > 1.0
    u = NormalizedModel(model, x_norm, y_norm)(x)
    assert u.dtype == torch.float64 and u.shape == (3, n)
    assert torch.equal(u[:, mask], g[:, mask])
    assert torch.equal(u[:, ~mask], raw[:, ~mask])
    # the same through another context object of the same mesh (the evaluate --mesh path)
    u2 = NormalizedModel(model, x_norm, y_norm)(x, context=ctx)
    assert torch.equal(u2, u)
