"""Transfer matrices against Firedrake's interpolate / prolong / restrict."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import PointsOutsideMeshError, SpaceMismatchError, UnsupportedSpaceError
from fe_operators.errors import NoHierarchyError
from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.fem.transfer import (
    interpolation_matrix, interpolation_matrix_torch, level_prolongations, prolongation_matrix,
    prolongation_matrix_torch, restriction_matrix, restriction_matrix_torch,
)

TOL = 1e-12


def _random_function(V, seed=0):
    u = fd.Function(V)
    u.dat.data_wo[...] = np.random.default_rng(seed).standard_normal(u.dat.data_ro.shape)
    return u


def _flat(f):
    return np.asarray(f.dat.data_ro).ravel()


def _check_interpolation(V_src, V_dst, seed=0):
    I = interpolation_matrix(V_src, V_dst)
    assert isinstance(I, sp.csr_matrix) and I.dtype == np.float64
    assert I.shape == (V_dst.dof_dset.size * V_dst.block_size, V_src.dof_dset.size * V_src.block_size)
    u = _random_function(V_src, seed)
    ref = fd.Function(V_dst).interpolate(u)
    assert np.abs(I @ _flat(u) - _flat(ref)).max() <= TOL
    return I


# ----------------------------------------------------------------- one mesh


@pytest.fixture(scope="module")
def mesh():
    return fd.UnitSquareMesh(4, 3)


@pytest.mark.parametrize("src,dst", [
    (("CG", 1), ("CG", 2)),
    (("CG", 2), ("CG", 1)),
    (("CG", 2), ("DG", 1)),
])
def test_same_mesh_scalar(mesh, src, dst):
    _check_interpolation(fd.FunctionSpace(mesh, *src), fd.FunctionSpace(mesh, *dst))


def test_same_mesh_vector_interleaved(mesh):
    V2, V1 = fd.VectorFunctionSpace(mesh, "CG", 2), fd.VectorFunctionSpace(mesh, "CG", 1)
    I = _check_interpolation(V2, V1)
    # components do not couple: an x-only field stays x-only
    u = fd.Function(V2)
    u.dat.data_wo[:, 0] = 1.0
    out = (I @ _flat(u)).reshape(-1, 2)
    assert np.all(out[:, 0] == 1.0) and np.all(out[:, 1] == 0.0)


def test_torch_matches_scipy(mesh):
    V1, V2 = fd.FunctionSpace(mesh, "CG", 1), fd.FunctionSpace(mesh, "CG", 2)
    I = interpolation_matrix(V1, V2)
    It = interpolation_matrix_torch(V1, V2, dtype=torch.float32)
    assert It.layout == torch.sparse_csr and It.dtype == torch.float32
    assert np.allclose(It.to_dense().double().numpy(), I.toarray(), rtol=0, atol=1e-7)


def test_shape_mismatch(mesh):
    with pytest.raises(SpaceMismatchError, match="value shapes"):
        interpolation_matrix(fd.FunctionSpace(mesh, "CG", 1), fd.VectorFunctionSpace(mesh, "CG", 1))


def test_mixed_rejected(mesh):
    V = fd.FunctionSpace(mesh, "CG", 1)
    with pytest.raises(UnsupportedSpaceError, match="mixed"):
        interpolation_matrix(V * V, V)


# --------------------------------------------------------------- two meshes


@pytest.fixture(scope="module")
def src_mesh():
    return fd.UnitSquareMesh(5, 5)


@pytest.fixture(scope="module")
def dst_mesh():
    # another structured mesh of the unit square, interior vertices moved off the grid
    m = fd.UnitSquareMesh(7, 4, diagonal="left")
    x = m.coordinates.dat.data
    inner = np.all((x > 1e-12) & (x < 1 - 1e-12), axis=1)
    x[inner] += 0.03 * np.sin(7.0 * x[inner][:, ::-1])
    return m


@pytest.fixture(scope="module")
def unstructured_mesh():
    # a small Delaunay-style mesh of the unit square from random interior points
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(3)
    s = np.linspace(0, 1, 6)
    edge = np.concatenate([
        np.c_[s, 0 * s], np.c_[s, 0 * s + 1], np.c_[0 * s[1:-1], s[1:-1]], np.c_[0 * s[1:-1] + 1, s[1:-1]],
    ])
    pts = np.concatenate([edge, 0.1 + 0.8 * rng.random((20, 2))])
    tri = Delaunay(pts)
    plex = fd.mesh.plex_from_cell_list(2, tri.simplices.astype(np.int32), pts, fd.COMM_WORLD)
    return fd.Mesh(plex)


@pytest.mark.parametrize("src,dst", [
    (("CG", 1), ("CG", 2)),
    (("CG", 2), ("CG", 1)),
    (("CG", 2), ("DG", 1)),
    (("DG", 1), ("CG", 2)),
    (("CG", 2), ("DG", 0)),
])
def test_cross_mesh_matches_firedrake(src_mesh, dst_mesh, src, dst):
    _check_interpolation(fd.FunctionSpace(src_mesh, *src), fd.FunctionSpace(dst_mesh, *dst))


def test_cross_mesh_vector(src_mesh, dst_mesh):
    _check_interpolation(fd.VectorFunctionSpace(src_mesh, "CG", 2), fd.VectorFunctionSpace(dst_mesh, "CG", 1))


def test_cross_mesh_non_nodal_target(src_mesh, dst_mesh):
    # RT DOFs are not point evaluations: Firedrake goes through a quadrature space
    _check_interpolation(fd.VectorFunctionSpace(src_mesh, "CG", 2), fd.FunctionSpace(dst_mesh, "RT", 1))


def test_cross_mesh_unstructured(src_mesh, unstructured_mesh):
    _check_interpolation(fd.FunctionSpace(src_mesh, "CG", 2), fd.FunctionSpace(unstructured_mesh, "CG", 2))
    _check_interpolation(fd.FunctionSpace(unstructured_mesh, "CG", 1), fd.FunctionSpace(src_mesh, "CG", 1))


@pytest.mark.parametrize("degree", [1, 2])
def test_cross_mesh_reproduces_polynomials(src_mesh, dst_mesh, degree):
    V_src, V_dst = fd.FunctionSpace(src_mesh, "CG", degree), fd.FunctionSpace(dst_mesh, "CG", 2)

    def poly(m):
        x, y = fd.SpatialCoordinate(m)
        return 0.3 + 2 * x - y if degree == 1 else 0.3 + x * y - 2 * x * x + y * y

    u = fd.Function(V_src).interpolate(poly(src_mesh))
    exact = fd.Function(V_dst).interpolate(poly(dst_mesh))
    I = interpolation_matrix(V_src, V_dst)
    assert np.abs(I @ _flat(u) - _flat(exact)).max() <= TOL
    # a partition of unity
    assert np.abs(I @ np.ones(I.shape[1]) - 1).max() <= TOL


@pytest.fixture(scope="module")
def outer_mesh():
    return fd.RectangleMesh(6, 6, 1.1, 1.1)  # sticks out of the unit square


def test_points_outside_raise(src_mesh, outer_mesh):
    V_src, V_dst = fd.FunctionSpace(src_mesh, "CG", 1), fd.FunctionSpace(outer_mesh, "CG", 1)
    n_out = int(np.sum(np.any(outer_mesh.coordinates.dat.data_ro > 1 + 1e-12, axis=1)))
    with pytest.raises(PointsOutsideMeshError, match=rf"^{n_out} of the 49 target points") as err:
        interpolation_matrix(V_src, V_dst)
    assert "1.1" in str(err.value) and "allow_missing=True" in str(err.value)
    assert isinstance(err.value, ValueError)
    assert src_mesh.tolerance == 0.5  # Firedrake's default, restored


def test_points_outside_allow_missing(src_mesh, outer_mesh):
    V_src, V_dst = fd.FunctionSpace(src_mesh, "CG", 1), fd.FunctionSpace(outer_mesh, "CG", 1)
    I = interpolation_matrix(V_src, V_dst, allow_missing=True)
    X = outer_mesh.coordinates.dat.data_ro
    outside = np.any(X > 1 + 1e-12, axis=1)
    x, y = fd.SpatialCoordinate(src_mesh)
    u = fd.Function(V_src).interpolate(1 + x + 2 * y)
    v = I @ _flat(u)
    assert np.all(v[outside] == 0.0)  # documented: zero rows
    assert np.abs(v[~outside] - (1 + X[~outside, 0] + 2 * X[~outside, 1])).max() <= TOL
    assert np.all(np.diff(I.indptr)[outside] == 0)
    # and Firedrake's own allow_missing_dofs interpolation agrees on the found points
    ref = fd.Function(V_dst).interpolate(u, allow_missing_dofs=True)
    assert np.abs(v[~outside] - _flat(ref)[~outside]).max() <= TOL


def test_points_outside_tolerance_extrapolates(src_mesh, outer_mesh):
    V_src, V_dst = fd.FunctionSpace(src_mesh, "CG", 1), fd.FunctionSpace(outer_mesh, "CG", 1)
    I = interpolation_matrix(V_src, V_dst, tolerance=2.0)
    x, y = fd.SpatialCoordinate(src_mesh)
    u = fd.Function(V_src).interpolate(1 + x + 2 * y)
    X = outer_mesh.coordinates.dat.data_ro
    # a linear field is extrapolated exactly from the nearest cell
    assert np.abs(I @ _flat(u) - (1 + X[:, 0] + 2 * X[:, 1])).max() <= TOL
    assert src_mesh.tolerance == 0.5


# ---------------------------------------------------------------- hierarchy


@pytest.fixture(scope="module")
def hierarchy():
    return fd.MeshHierarchy(fd.UnitSquareMesh(4, 4), 2)


def _check_prolong_restrict(Vc, Vf, seed=0):
    P = prolongation_matrix(Vc, Vf)
    assert isinstance(P, sp.csr_matrix) and P.dtype == np.float64
    assert P.shape == (Vf.dof_dset.size * Vf.block_size, Vc.dof_dset.size * Vc.block_size)
    uc = _random_function(Vc, seed)
    uf = fd.Function(Vf)
    fd.prolong(uc, uf)
    assert np.abs(P @ _flat(uc) - _flat(uf)).max() <= TOL

    R = restriction_matrix(Vf, Vc)
    assert (R != P.T).nnz == 0  # the exact transpose
    rf = fd.Cofunction(Vf.dual())
    rf.dat.data_wo[...] = np.random.default_rng(seed + 1).standard_normal(rf.dat.data_ro.shape)
    rc = fd.Cofunction(Vc.dual())
    fd.restrict(rf, rc)
    assert np.abs(R @ _flat(rf) - _flat(rc)).max() <= TOL
    return P


@pytest.mark.parametrize("degree", [1, 2])
def test_prolong_restrict_match_firedrake(hierarchy, degree):
    for lc, lf in [(0, 1), (1, 2), (0, 2)]:
        _check_prolong_restrict(fd.FunctionSpace(hierarchy[lc], "CG", degree),
                                fd.FunctionSpace(hierarchy[lf], "CG", degree))


def test_prolong_vector_and_dg(hierarchy):
    _check_prolong_restrict(fd.VectorFunctionSpace(hierarchy[0], "CG", 2),
                            fd.VectorFunctionSpace(hierarchy[1], "CG", 2))
    # discontinuous: fine nodes on coarse edges must use their parent cell
    _check_prolong_restrict(fd.FunctionSpace(hierarchy[0], "DG", 1), fd.FunctionSpace(hierarchy[1], "DG", 1))


def test_prolong_non_nodal(hierarchy):
    # RT: Firedrake prolongs through a fine quadrature space
    _check_prolong_restrict(fd.FunctionSpace(hierarchy[0], "RT", 1), fd.FunctionSpace(hierarchy[1], "RT", 1))


def test_prolong_refinements_per_level():
    h = fd.MeshHierarchy(fd.UnitSquareMesh(2, 2), 1, refinements_per_level=2)
    P = _check_prolong_restrict(fd.FunctionSpace(h[0], "CG", 2), fd.FunctionSpace(h[1], "CG", 2))
    assert P.shape == (17 * 17, 5 * 5)


def test_restriction_accepts_dual_spaces(hierarchy):
    Vc, Vf = fd.FunctionSpace(hierarchy[0], "CG", 1), fd.FunctionSpace(hierarchy[1], "CG", 1)
    assert (restriction_matrix(Vf.dual(), Vc.dual()) != restriction_matrix(Vf, Vc)).nnz == 0


def test_prolongation_sparsity_and_torch(hierarchy):
    Vc, Vf = fd.FunctionSpace(hierarchy[0], "CG", 1), fd.FunctionSpace(hierarchy[1], "CG", 1)
    P = prolongation_matrix(Vc, Vf)
    # P1 on a uniformly refined mesh: 1 entry at coarse vertices, 2 at edge midpoints
    assert set(np.diff(P.indptr)) == {1, 2}
    assert np.abs(P @ np.ones(P.shape[1]) - 1).max() <= TOL
    Pt = prolongation_matrix_torch(Vc, Vf)
    Rt = restriction_matrix_torch(Vf, Vc)
    assert Pt.layout == torch.sparse_csr and Pt.dtype == torch.float64
    assert np.array_equal(Pt.to_dense().numpy(), P.toarray())
    assert np.array_equal(Rt.to_dense().numpy(), P.T.toarray())


@pytest.mark.parametrize("degree", [1, 2])
def test_prolongation_reproduces_polynomials(hierarchy, degree):
    def poly(m):
        x, y = fd.SpatialCoordinate(m)
        return 1 - x + 3 * y if degree == 1 else x * x - 2 * x * y + 0.5 * y + 1

    Vc = fd.FunctionSpace(hierarchy[0], "CG", degree)
    Vf = fd.FunctionSpace(hierarchy[2], "CG", degree)
    uc = fd.Function(Vc).interpolate(poly(hierarchy[0]))
    uf = fd.Function(Vf).interpolate(poly(hierarchy[2]))
    assert np.abs(prolongation_matrix(Vc, Vf) @ _flat(uc) - _flat(uf)).max() <= TOL


@pytest.mark.parametrize("degree, rpl", [(1, 1), (2, 1), (2, 2)])
def test_level_prolongations_are_the_one_level_prolongations(degree, rpl):
    h = fd.MeshHierarchy(fd.UnitSquareMesh(2, 2), 2, refinements_per_level=rpl)
    spaces = [fd.FunctionSpace(m, "CG", degree) for m in h]
    Ps = level_prolongations(spaces[-1])
    assert len(Ps) == 2 and len(level_prolongations(spaces[-1], levels=2)) == 1
    for k, P in enumerate(Ps):
        assert P.getType() in ("seqaij", "mpiaij")
        S, R = petsc_to_scipy(P), prolongation_matrix(spaces[k], spaces[k + 1])
        assert abs(S - R).max() <= TOL
        # the same entries stored: round-off of vanishing basis functions dropped in both
        assert S.nnz == R.nnz and np.abs(S.data).min() > 1e-12
        if degree == 1 and rpl == 1:  # nested CG1: a vertex row 1 entry, a midpoint row 2
            assert set(np.diff(S.indptr)) == {1, 2}
    with pytest.raises(ValueError, match="ask for 1 to 3"):
        level_prolongations(spaces[-1], levels=4)
    with pytest.raises(NoHierarchyError, match="unitsquare:16/r4"):
        level_prolongations(fd.FunctionSpace(fd.UnitSquareMesh(4, 4), "CG", 1))


def test_hierarchy_errors(hierarchy):
    Vc, Vf = fd.FunctionSpace(hierarchy[0], "CG", 1), fd.FunctionSpace(hierarchy[1], "CG", 1)
    with pytest.raises(SpaceMismatchError, match="coarser level"):
        prolongation_matrix(Vf, Vc)
    with pytest.raises(SpaceMismatchError, match="coarser level"):
        prolongation_matrix(Vc, Vc)
    with pytest.raises(SpaceMismatchError, match="coarser level"):
        restriction_matrix(Vc, Vf)
    other = fd.MeshHierarchy(fd.UnitSquareMesh(4, 4), 1)
    with pytest.raises(SpaceMismatchError, match="two different hierarchies"):
        prolongation_matrix(Vc, fd.FunctionSpace(other[1], "CG", 1))
    with pytest.raises(SpaceMismatchError, match="not a level of a MeshHierarchy"):
        prolongation_matrix(fd.FunctionSpace(fd.UnitSquareMesh(4, 4), "CG", 1), Vf)
    with pytest.raises(SpaceMismatchError, match="value shapes"):
        prolongation_matrix(Vc, fd.VectorFunctionSpace(hierarchy[1], "CG", 1))
    with pytest.raises(TypeError, match="expected a Firedrake FunctionSpace"):
        prolongation_matrix(fd.Function(Vc), Vf)
    with pytest.raises(TypeError, match="primal FunctionSpace"):
        prolongation_matrix(Vc.dual(), Vf)
