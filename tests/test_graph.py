"""DOF graphs against the sparsity of Firedrake's assembled stiffness matrix."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import UnsupportedSpaceError
from fe_operators.fem.graph import DofGraph, _adjacency_scipy, dof_adjacency, dof_coordinates, dof_graph


def _stiffness_pattern(V):
    """The assembled stiffness matrix's pattern, collapsed to DOF nodes (block size)."""
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    indptr, indices, _ = fd.assemble(
        fd.inner(fd.grad(u), fd.grad(v)) * fd.dx, mat_type="aij"
    ).petscmat.getValuesCSR()
    n_dofs = indptr.size - 1
    A = sp.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n_dofs, n_dofs)).tocoo()
    bs = V.block_size
    n = n_dofs // bs
    P = sp.csr_matrix((np.ones(A.nnz), (A.row // bs, A.col // bs)), shape=(n, n))
    P.sum_duplicates()
    return P


def _same_pattern(A, B):
    A, B = sp.csr_matrix(A, dtype=bool), sp.csr_matrix(B, dtype=bool)
    return A.shape == B.shape and (A != B).nnz == 0


SPACES = {
    "square-CG1": lambda: fd.FunctionSpace(fd.UnitSquareMesh(6, 5), "CG", 1),
    "square-CG2": lambda: fd.FunctionSpace(fd.UnitSquareMesh(6, 5), "CG", 2),
    "square-DG1": lambda: fd.FunctionSpace(fd.UnitSquareMesh(3, 2), "DG", 1),
    "quad-Q2": lambda: fd.FunctionSpace(fd.UnitSquareMesh(3, 2, quadrilateral=True), "Q", 2),
    "cube-CG1": lambda: fd.FunctionSpace(fd.UnitCubeMesh(2, 2, 2), "CG", 1),
    "square-vecCG2": lambda: fd.VectorFunctionSpace(fd.UnitSquareMesh(6, 5), "CG", 2),
}


@pytest.fixture(scope="module", params=list(SPACES))
def space_graph(request):
    V = SPACES[request.param]()
    return V, dof_graph(V)


def test_two_triangles_by_hand():
    V = fd.FunctionSpace(fd.UnitSquareMesh(1, 1), "CG", 1)
    g = dof_graph(V)
    # 4 sides + 1 diagonal, both directions
    assert (g.num_nodes, g.num_edges) == (4, 10)
    lengths = np.sort(g.edge_attr[:, -1].numpy())
    assert np.allclose(lengths, [1.0] * 8 + [np.sqrt(2.0)] * 2, rtol=0, atol=1e-15)
    # the two ends of the diagonal have 3 neighbours, the other two corners 2
    deg = g.degree()
    assert sorted(deg.tolist()) == [2, 2, 3, 3]
    far = np.flatnonzero(deg == 2)
    assert np.allclose(np.linalg.norm(g.coords[far[0]] - g.coords[far[1]]), np.sqrt(2.0))
    assert repr(g) == "DofGraph(num_nodes=4, num_edges=10, gdim=2, self_loops=False, device=cpu)"


def test_adjacency_is_stiffness_sparsity(space_graph):
    V, g = space_graph
    K = _stiffness_pattern(V)
    eye = sp.identity(g.num_nodes, format="csr")
    assert g.num_nodes == V.dof_dset.size
    assert _same_pattern(g.to_scipy() + eye, K)
    assert np.all(g.indices != np.repeat(np.arange(g.num_nodes), g.degree()))  # no self loops
    gl = dof_graph(V, self_loops=True)
    assert gl.num_edges == g.num_edges + g.num_nodes
    assert _same_pattern(gl.to_scipy(), K)
    assert np.all(gl.edge_attr.numpy()[gl.indices == np.repeat(np.arange(g.num_nodes), gl.degree())] == 0)


def test_csr_and_edge_index_agree(space_graph):
    _, g = space_graph
    n = g.num_nodes
    assert g.indptr.dtype == g.indices.dtype == np.int64
    assert g.edge_index.dtype == torch.int64 and g.edge_index.shape == (2, g.num_edges)
    rows = np.repeat(np.arange(n), np.diff(g.indptr))
    assert np.array_equal(g.edge_index[1].numpy(), rows)  # target = CSR row
    assert np.array_equal(g.edge_index[0].numpy(), g.indices)  # source = CSR column
    # columns strictly increasing within each row: sorted, no duplicates
    inner = np.ones(g.num_edges, bool)
    inner[g.indptr[:-1][np.diff(g.indptr) > 0]] = False
    assert np.all(np.diff(g.indices)[inner[1:]] > 0)
    A = g.to_scipy()
    assert (A != A.T).nnz == 0  # every edge in both directions


def test_edge_features(space_graph):
    _, g = space_graph
    src, tgt = g.edge_index.numpy()
    rel = g.coords[src] - g.coords[tgt]
    attr = g.edge_attr.numpy()
    assert g.edge_attr.dtype == torch.float64 and attr.shape == (g.num_edges, g.gdim + 1)
    assert np.array_equal(attr[:, :-1], rel)
    assert np.allclose(attr[:, -1], np.linalg.norm(rel, axis=1), rtol=1e-15, atol=0)
    assert np.all(attr[:, -1] > 0)


def test_coords_are_the_nodes_of_V(space_graph):
    V, g = space_graph
    mesh = V.mesh()
    x = fd.SpatialCoordinate(mesh)
    for d in range(mesh.geometric_dimension):
        # the interpolant's k-th DOF is x_d at the point where basis function k is one
        expr = x[d] if V.value_shape == () else fd.as_vector([x[d]] * V.value_shape[0])
        f = fd.Function(V).interpolate(expr)
        vals = f.dat.data_ro.reshape(g.num_nodes, -1)
        assert np.allclose(vals, g.coords[:, d : d + 1], rtol=0, atol=1e-14)
    assert np.array_equal(dof_coordinates(V), g.coords)


def test_vector_space_graph_is_scalar_graph():
    mesh = fd.UnitSquareMesh(4, 3)
    g = dof_graph(fd.VectorFunctionSpace(mesh, "CG", 2))
    h = dof_graph(fd.FunctionSpace(mesh, "CG", 2))
    assert np.array_equal(g.indptr, h.indptr) and np.array_equal(g.indices, h.indices)
    assert np.array_equal(g.coords, h.coords)


def test_numba_and_scipy_agree():
    rng = np.random.default_rng(0)
    cell_nodes = rng.integers(0, 50, size=(40, 4)).astype(np.int32)  # repeats within a cell too
    for self_loops in (False, True):
        indptr, indices = dof_adjacency(cell_nodes, 60, self_loops=self_loops)
        ref_ptr, ref_ind = _adjacency_scipy(cell_nodes, 60, self_loops)
        assert np.array_equal(indptr, ref_ptr) and np.array_equal(indices, ref_ind)
    V = fd.FunctionSpace(fd.UnitCubeMesh(2, 1, 1), "CG", 2)
    vals = V.cell_node_map().values
    got = dof_adjacency(vals, V.dof_dset.size)
    ref = _adjacency_scipy(vals, V.dof_dset.size, False)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))


def test_to_moves_edge_tensors():
    g = dof_graph(fd.FunctionSpace(fd.UnitSquareMesh(2, 2), "CG", 1))
    h = g.to("cpu", dtype=torch.float32)
    assert isinstance(h, DofGraph) and h.edge_attr.dtype == torch.float32
    assert h.edge_index.dtype == torch.int64 and h.indptr is g.indptr
    assert g.edge_attr.dtype == torch.float64  # original untouched


@pytest.mark.parametrize("make", [
    lambda m: fd.FunctionSpace(m, "DG", 0),
    lambda m: fd.FunctionSpace(m, "RT", 1),
    lambda m: fd.FunctionSpace(m, "CG", 1) * fd.FunctionSpace(m, "CG", 1),
], ids=["DG0", "RT1", "mixed"])
def test_unsupported_spaces(make):
    with pytest.raises(UnsupportedSpaceError):
        dof_graph(make(fd.UnitSquareMesh(2, 2)))


def test_bad_cell_node_map():
    with pytest.raises(TypeError, match="2-D integer"):
        dof_adjacency(np.zeros(4), 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        dof_adjacency(np.array([[0, 3]]), 3)
