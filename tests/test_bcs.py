"""Boundary DOFs, liftings and free-DOF injection against DirichletBC."""

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.errors import BoundaryMarkerError
from fe_operators.fem import DirichletDofs, boundary_nodes, functions_to_tensor


@pytest.fixture(scope="module")
def mesh():
    return fd.UnitSquareMesh(4, 4)


def test_boundary_nodes_match_dirichletbc(mesh):
    V = fd.FunctionSpace(mesh, "CG", 2)
    for marker in (1, (2, 4), "on_boundary"):
        ref = np.unique(fd.DirichletBC(V, 0, marker).nodes)
        assert np.array_equal(boundary_nodes(V, marker), ref)
    # CG2 on a 4x4 square: 8 edge segments of 3 nodes sharing ends -> 2*4+1 = 9 nodes per side
    assert boundary_nodes(V, 1).size == 9
    assert boundary_nodes(V, "on_boundary").size == 32


def test_missing_marker_names_available(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    with pytest.raises(BoundaryMarkerError, match=r"no boundary marker 7.*\[1, 2, 3, 4\]"):
        boundary_nodes(V, 7)
    with pytest.raises(BoundaryMarkerError):
        DirichletDofs(V, fd.DirichletBC(V, 0, (1, 9)))
    with pytest.raises(BoundaryMarkerError, match="'top'"):
        boundary_nodes(V, "top")
    # the whole boundary, however Firedrake stores it (bc.sub_domain is a tuple)
    dd = DirichletDofs(V, fd.DirichletBC(V, 0, "on_boundary"))
    assert dd.constrained.size == 16


def test_lifting_inject_restrict(mesh):
    V = fd.FunctionSpace(mesh, "CG", 2)
    x, y = fd.SpatialCoordinate(mesh)
    g = 1 + x * x + y
    bcs = [fd.DirichletBC(V, g, 1), fd.DirichletBC(V, 0.0, 3)]
    dd = DirichletDofs(V, bcs)
    nodes = np.union1d(bcs[0].nodes, bcs[1].nodes)
    assert np.array_equal(dd.constrained, nodes)
    assert dd.n_free + nodes.size == V.dof_dset.size
    lift = dd.lifting()
    ref = fd.Function(V)
    for bc in bcs:  # in order, as Firedrake applies them: the last one wins at shared corners
        bc.apply(ref)
    assert torch.equal(lift, torch.from_numpy(ref.dat.data_ro.copy()))
    assert torch.all(lift[~dd.mask] == 0)
    gvals = fd.Function(V).interpolate(g).dat.data_ro
    only1 = np.setdiff1d(bcs[0].nodes, bcs[1].nodes)
    assert np.array_equal(lift[only1].numpy(), gvals[only1]) and lift[only1].abs().min() >= 1
    # u = g_h + Z z satisfies the BC exactly and restrict inverts inject
    z = torch.randn(3, dd.n_free, dtype=torch.float64, requires_grad=True)
    u = lift + dd.inject(z)
    assert torch.equal(u.detach()[:, dd.mask], lift[dd.mask].expand(3, -1))
    assert torch.equal(dd.restrict(u), z)
    u.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    Z = dd.injection_matrix()
    assert np.allclose(Z @ z[0].detach().numpy(), dd.inject(z)[0].detach().numpy())


def test_vector_components(mesh):
    V = fd.VectorFunctionSpace(mesh, "CG", 1)
    bcs = [fd.DirichletBC(V.sub(0), 2.0, 1), fd.DirichletBC(V, fd.Constant((5.0, 6.0)), 2)]
    dd = DirichletDofs(V, bcs)
    n1 = fd.DirichletBC(V, 0, 1).nodes
    n2 = fd.DirichletBC(V, 0, 2).nodes
    assert dd.mask.shape == (V.dof_dset.size, 2)
    assert dd.mask[n1, 0].all() and dd.mask[n2].all()
    only1 = np.setdiff1d(n1, n2)
    assert not dd.mask[only1, 1].any()
    assert dd.constrained.size == 2 * n2.size + only1.size
    lift = dd.lifting()
    ref = fd.Function(V)
    for bc in bcs:
        bc.apply(ref)
    assert torch.equal(lift, torch.from_numpy(ref.dat.data_ro.copy()))
    assert boundary_nodes(V, 1, component=0).size == n1.size
    # inject/flatten ordering is the interleaved PETSc order
    z = torch.arange(dd.n_free, dtype=torch.float64)[None]
    full = dd.inject(z)
    assert torch.equal(full.reshape(1, -1)[0, torch.as_tensor(dd.free)], z[0])
    assert torch.equal(functions_to_tensor(ref), lift[None])
