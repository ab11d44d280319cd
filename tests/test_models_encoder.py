"""Input maps (interpolation from another mesh, lumped projection) and predict()."""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.fem import functions_to_tensor
from fe_operators.models import SPON, predict
from fe_operators.models.build import context_from_spaces, spon_for_problem
from fe_operators.problems import get_problem


@pytest.fixture(scope="module")
def output_space():
    return fd.FunctionSpace(fd.UnitSquareMesh(6, 6), "CG", 2)


def test_interpolation_from_another_mesh_equals_firedrake(output_space):
    other = fd.UnitSquareMesh(5, 3, quadrilateral=True)
    W, Wv = fd.FunctionSpace(other, "Q", 2), fd.VectorFunctionSpace(other, "Q", 1)
    xy = fd.SpatialCoordinate(other)
    f = fd.Function(W).interpolate(fd.sin(3 * xy[0]) * fd.exp(xy[1]))
    w = fd.Function(Wv).interpolate(fd.as_vector([xy[0] * xy[1], fd.cos(xy[0])]))
    ctx = context_from_spaces({"f": W, "w": Wv}, output_space)
    model = SPON.from_context(ctx, [("f", 1), ("w", 2)], "gnn", width=4, depth=1, hops=1)
    nodes = model.encode({"f": functions_to_tensor(f), "w": functions_to_tensor(w)})
    V = output_space
    ref_f = fd.Function(V).interpolate(f).dat.data_ro
    ref_w = fd.Function(fd.VectorFunctionSpace(V.mesh(), "CG", 2)).interpolate(w).dat.data_ro
    assert np.abs(nodes[0, :, 0].numpy() - ref_f).max() < 1e-13
    assert np.abs(nodes[0, :, 1:].numpy() - ref_w).max() < 1e-13


def test_discontinuous_input_is_projected_lumped():
    mesh = fd.UnitSquareMesh(5, 5)
    V, A = fd.FunctionSpace(mesh, "CG", 1), fd.FunctionSpace(mesh, "DG", 0)
    ctx = context_from_spaces({"a": A}, V)  # "auto": DG0 -> CG1 is the lumped projection
    a = fd.Function(A, val=np.random.default_rng(0).uniform(3, 12, A.dof_dset.size))
    m = ctx.input_maps[0]
    out = m.apply(functions_to_tensor(a).unsqueeze(-1))[0, :, 0].numpy()
    v = fd.TestFunction(V)
    ref = fd.assemble(a * v * fd.dx).dat.data_ro / fd.assemble(v * fd.dx).dat.data_ro
    assert np.abs(out - ref).max() < 1e-13
    ones = torch.ones(1, A.dof_dset.size, 1, dtype=torch.float64)
    assert torch.allclose(m.apply(ones), torch.ones(1, V.dof_dset.size, 1, dtype=torch.float64), atol=1e-14)


def test_predict_functions_expressions_and_other_meshes():
    mesh = fd.UnitSquareMesh(6, 6)
    V = fd.FunctionSpace(mesh, "CG", 1)
    bc = fd.DirichletBC(V, 0.0, "on_boundary")
    torch.manual_seed(0)
    model = SPON.from_context(context_from_spaces({"f": V, "g": V}, V, bc), ["f", "g"], "gnn",
                              lifting_input="g", width=4, depth=1, hops=2)
    xy = fd.SpatialCoordinate(mesh)
    samples = [{"f": fd.Function(V).interpolate(k * xy[0]), "g": fd.Function(V).interpolate(1 + k * xy[1])}
               for k in (1.0, 2.0, 3.0)]
    out = predict(model, samples, V)
    x = torch.stack([functions_to_tensor([s["f"] for s in samples]), functions_to_tensor([s["g"] for s in samples])], -1)
    ref = model(x).detach()
    assert len(out) == 3 and all(u.function_space() == V for u in out)
    assert np.abs(np.stack([u.dat.data_ro for u in out]) - ref.numpy()).max() == 0
    # in batches of 2: the same up to float32 round-off
    small = predict(model, samples, V, batch_size=2)
    assert np.abs(np.stack([u.dat.data_ro for u in small]) - ref.numpy()).max() < 1e-5
    # UFL expressions are interpolated onto the output nodes: same numbers
    exprs = [{"f": k * xy[0], "g": 1 + k * xy[1]} for k in (1.0, 2.0, 3.0)]
    assert all(np.array_equal(a.dat.data_ro, b.dat.data_ro) for a, b in zip(predict(model, exprs, V), out, strict=True))
    (u,) = predict(model, [{"f": 2.0, "g": 1 + xy[1]}], V)  # numbers are constants
    assert np.array_equal(u.dat.data_ro, predict(model, [{"f": fd.Constant(2.0), "g": 1 + xy[1]}], V)[0].dat.data_ro)
    # another mesh: a new context from the Functions' spaces; BC data g exact there too
    fine = fd.UnitSquareMesh(9, 9)
    V9 = fd.FunctionSpace(fine, "CG", 1)
    xy9 = fd.SpatialCoordinate(fine)
    g9 = fd.Function(V9).interpolate(1 + xy9[1])
    with pytest.raises(ValueError, match="pass bcs=.*function of the named inputs"):
        predict(model, [{"f": xy9[0], "g": g9}], V9)
    # fixed conditions cannot lift g: refused, not imposed as zero
    with pytest.raises(SpaceMismatchError, match=r"depend on the input fields \['g'\], the mesh context lifts \[\]"):
        predict(model, [{"f": xy9[0], "g": g9}], V9, bcs=fd.DirichletBC(V9, 0.0, "on_boundary"))
    on_9 = lambda x: fd.DirichletBC(V9, x["g"], "on_boundary")  # noqa: E731
    (u9,) = predict(model, [{"f": xy9[0], "g": g9}], V9, bcs=on_9)
    nodes = fd.DirichletBC(V9, 0.0, "on_boundary").nodes
    assert np.array_equal(u9.dat.data_ro[nodes], g9.dat.data_ro[nodes])
    # an MLP-SPON is refused on the other mesh
    mlp = SPON.from_context(model.context, ["f", "g"], "mlp", hidden=[8])
    with pytest.raises(SpaceMismatchError, match="GNN"):
        predict(mlp, [{"f": xy9[0], "g": g9}], V9, bcs=on_9)


def test_darcy_spon_from_problem_fixed_lifting():
    problem = get_problem("darcy", fd.UnitSquareMesh(4, 4))  # DG0 permeability, u = 0 on the boundary
    model = spon_for_problem(problem, "gnn", width=4, depth=1, hops=1, coarse_cells=2)
    assert model.lifting_inputs == () and model.context.input_maps[0] is not None
    (u,) = predict(model, [problem.sample_inputs(np.random.default_rng(0))], problem.output_space)
    nodes = fd.DirichletBC(problem.output_space, 0.0, "on_boundary").nodes
    assert np.all(u.dat.data_ro[nodes] == 0) and np.any(u.dat.data_ro != 0)
