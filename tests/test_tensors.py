"""Functions <-> batched DOF tensors."""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem import functions_to_tensor, function_view, space_info, tensor_to_functions


@pytest.fixture(scope="module")
def mesh():
    return fd.UnitSquareMesh(4, 3)


def _funcs(V, k):
    x, y = fd.SpatialCoordinate(V.mesh())
    if V.value_shape == ():
        exprs = [fd.sin((i + 1) * x) + y**2 for i in range(k)]
    else:
        exprs = [fd.as_vector([x + i, x * y - i]) for i in range(k)]
    return [fd.Function(V).interpolate(e) for e in exprs]


@pytest.mark.parametrize("family,degree,vector", [("CG", 1, False), ("CG", 3, False), ("DG", 0, False),
                                                  ("CG", 2, True), ("DG", 1, True)])
def test_roundtrip_exact(mesh, family, degree, vector):
    V = (fd.VectorFunctionSpace if vector else fd.FunctionSpace)(mesh, family, degree)
    fs = _funcs(V, 3)
    t = functions_to_tensor(fs)
    n = V.dof_dset.size
    assert t.shape == ((3, n, 2) if vector else (3, n)) and t.dtype == torch.float64
    back = tensor_to_functions(t, V)
    for f, g in zip(fs, back):
        assert np.array_equal(f.dat.data_ro, g.dat.data_ro)
        assert g.function_space() == V
    # a copy, not a view: changing the tensor leaves the Function alone
    t.add_(1.0)
    assert np.array_equal(fs[0].dat.data_ro, back[0].dat.data_ro)


def test_values_mean_the_same_function(mesh):
    V = fd.FunctionSpace(mesh, "CG", 2)
    f = _funcs(V, 1)[0]
    t = functions_to_tensor([f])
    g = tensor_to_functions(2 * t, V)[0]
    assert fd.errornorm(2 * f, g) < 1e-14
    assert fd.assemble(g * fd.dx) == pytest.approx(2 * fd.assemble(f * fd.dx), rel=1e-14)


def test_float32_and_out(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    fs = _funcs(V, 2)
    t = functions_to_tensor(fs, dtype=torch.float32)
    assert t.dtype == torch.float32
    out = [fd.Function(V) for _ in range(2)]
    res = tensor_to_functions(t, V, out=out)
    assert res[0] is out[0]
    assert np.allclose(out[1].dat.data_ro, fs[1].dat.data_ro, rtol=1e-6)


def test_view_shares_memory(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    f = fd.Function(V)
    view = function_view(f)
    view[3] = 7.0
    assert f.dat.data_ro[3] == 7.0


def test_errors(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    W = fd.FunctionSpace(mesh, "CG", 2)
    with pytest.raises(SpaceMismatchError, match="one space"):
        functions_to_tensor([fd.Function(V), fd.Function(W)])
    t = torch.zeros(2, V.dof_dset.size)
    with pytest.raises(SpaceMismatchError, match="does not match"):
        tensor_to_functions(t, W)
    with pytest.raises(SpaceMismatchError, match="add a batch axis"):
        tensor_to_functions(t[0], V)
    with pytest.raises(TypeError, match="float32 or float64"):
        tensor_to_functions(t.to(torch.int64), V)
    with pytest.raises(TypeError, match="dtype"):
        functions_to_tensor([fd.Function(V)], dtype=torch.float16)
    with pytest.raises(SpaceMismatchError, match="expected 2 output"):
        tensor_to_functions(t, V, out=[fd.Function(V)])
    Z = V * W
    with pytest.raises(UnsupportedSpaceError, match="mixed"):
        functions_to_tensor([fd.Function(Z)])
    with pytest.raises(UnsupportedSpaceError, match="not supported yet"):
        tensor_to_functions(torch.zeros(1, 3), Z)


def test_space_info_roundtrip(mesh):
    V = fd.VectorFunctionSpace(mesh, "CG", 2)
    info = space_info(V)
    assert (info.family, info.degree, info.ncomp, info.n_nodes) == ("Lagrange", 2, 2, V.dof_dset.size)
    assert info.dof_shape == (V.dof_dset.size, 2)
    assert type(info).from_dict(info.to_dict()) == info


@pytest.mark.cuda
def test_cuda_roundtrip(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    fs = _funcs(V, 2)
    t = functions_to_tensor(fs, device="cuda")
    assert t.is_cuda
    back = tensor_to_functions(t, V)
    assert np.array_equal(back[1].dat.data_ro, fs[1].dat.data_ro)
