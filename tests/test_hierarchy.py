"""fem.hierarchy: per-level FE operators and exact transfers of a mesh hierarchy."""

import types

import numpy as np
import pytest
import scipy.sparse as sp

import firedrake as fd
from firedrake.mg.utils import get_level

from fe_operators.errors import NoHierarchyError, SpaceMismatchError, UnsupportedSpaceError
from fe_operators.fem import mass_matrix, restriction_matrix, stiffness_matrix
from fe_operators.fem.hierarchy import find_hierarchy
from fe_operators.fem.hierarchy import hierarchy_operators as _hierarchy_operators
from fe_operators.io import load_hierarchy, load_mesh
from fe_operators.multigrid.hierarchy import operator_names


def _numpy_level(lv):
    """A level's pieces as numpy/scipy, for comparisons with Firedrake's assembly."""
    return types.SimpleNamespace(
        coords=lv.coords.numpy(), boundary=lv.boundary.numpy(), lumped_mass=lv.lumped_mass.numpy(),
        stiffness_diag=lv.stiffness_diag.numpy(), h=lv.h, n_nodes=lv.n_nodes,
        operators=lv.scipy_operators(), stiffness=lv.stiffness())


def hierarchy_operators(*args, **kwargs):
    """:func:`fe_operators.fem.hierarchy.hierarchy_operators` with numpy/scipy levels and maps."""
    H = _hierarchy_operators(*args, **kwargs)
    scipy = lambda M: None if M is None else M.to_scipy()  # noqa: E731
    return types.SimpleNamespace(levels=[_numpy_level(lv) for lv in H.levels],
                                 prolongations=[P.to_scipy() for P in H.prolongations],
                                 to_finest=scipy(H.to_finest), from_finest=scipy(H.from_finest))


def rel(a, b):
    """Largest entry of a - b relative to the largest of b."""
    if sp.issparse(a) or sp.issparse(b):
        return float(abs(sp.csr_matrix(a) - b).max() / max(abs(sp.csr_matrix(b)).max(), 1e-300))
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def level_spaces(mesh, degree, n_levels):
    """Firedrake spaces of the finest ``n_levels`` levels up to ``mesh`` (coarsest first)."""
    hierarchy, level = get_level(mesh)
    return [fd.FunctionSpace(m, "CG", degree) for m in hierarchy.meshes[level + 1 - n_levels: level + 1]]


@pytest.fixture(scope="module")
def lshape():
    """lshape refined twice: three levels, CG1, x = -1 and y = -1 constrained."""
    mesh = load_mesh("lshape/r2")
    V = fd.FunctionSpace(mesh, "CG", 1)
    bc = fd.DirichletBC(V, 0.0, (1, 2))
    return mesh, V, bc, hierarchy_operators(V, [bc])


@pytest.fixture(scope="module")
def cube():
    """unitcube:2 refined once, vector CG1 output, the face x = 0 fixed in component 0."""
    mesh = load_mesh("unitcube:2/r1")
    V = fd.VectorFunctionSpace(mesh, "CG", 1)
    bc = fd.DirichletBC(V.sub(0), 0.0, 1)
    return mesh, V, bc, hierarchy_operators(V, [bc])


# --- transfers ---------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [1, 2])
def test_prolongation_reproduces_linear_functions(lshape, degree):
    mesh = lshape[0]
    ops = lshape[3] if degree == 1 else hierarchy_operators(fd.FunctionSpace(mesh, "CG", degree))
    assert len(ops.prolongations) == len(ops.levels) - 1 == 2
    f = lambda x: 1.0 + 2.0 * x[:, 0] - 3.0 * x[:, 1]  # noqa: E731
    for P, coarse, fine in zip(ops.prolongations, ops.levels[:-1], ops.levels[1:]):
        assert P.shape == (fine.n_nodes, coarse.n_nodes)
        assert rel(P @ f(coarse.coords), f(fine.coords)) < 1e-12


def test_restriction_is_the_adjoint_of_prolongation(lshape):
    mesh, _, _, ops = lshape
    spaces = level_spaces(mesh, 1, 3)
    rng = np.random.default_rng(0)
    for P, Vc, Vf in zip(ops.prolongations, spaces[:-1], spaces[1:]):
        assert abs(restriction_matrix(Vf, Vc) - P.T).max() == 0.0  # R = P^T exactly
        rf = fd.Cofunction(Vf.dual())
        rf.dat.data_wo[:] = rng.standard_normal(Vf.dof_dset.size)
        rc = fd.restrict(rf, fd.Cofunction(Vc.dual()))
        assert rel(P.T @ rf.dat.data_ro, rc.dat.data_ro) < 1e-12
        uc = fd.Function(Vc)
        uc.dat.data_wo[:] = rng.standard_normal(Vc.dof_dset.size)
        assert rel(P @ uc.dat.data_ro, fd.prolong(uc, fd.Function(Vf)).dat.data_ro) < 1e-12


@pytest.mark.parametrize("which", ["lshape", "cube"])
def test_galerkin_identity_on_nested_spaces(lshape, cube, which):
    ops = {"lshape": lshape, "cube": cube}[which][3]
    for P, coarse, fine in zip(ops.prolongations, ops.levels[:-1], ops.levels[1:]):
        for name in ("mass", "K_xx", "K_xy", "C_y"):  # constant coefficients: all of them
            assert rel(P.T @ fine.operators[name] @ P, coarse.operators[name]) < 1e-12
        assert rel(P.T @ fine.stiffness @ P, coarse.stiffness) < 1e-12


# --- operators ---------------------------------------------------------------------------

def _reference_forms(u, v, gdim):
    """The operators' forms written another way (grad components, inner)."""
    g_u, g_v = fd.grad(u), fd.grad(v)
    out = {"mass": fd.inner(u, v) * fd.dx}
    ax = "xyz"[:gdim]
    for a in range(gdim):
        out[f"K_{ax[a]}{ax[a]}"] = g_u[a] * g_v[a] * fd.dx
        out[f"C_{ax[a]}"] = fd.inner(g_u[a], v) * fd.dx
        for b in range(a + 1, gdim):
            out[f"K_{ax[a]}{ax[b]}"] = (g_u[a] * g_v[b] + g_u[b] * g_v[a]) * fd.dx
    return out


@pytest.mark.parametrize("which", ["lshape", "cube"])
def test_operators_equal_firedrakes_assembly_of_their_forms(lshape, cube, which):
    mesh, _, _, ops = {"lshape": lshape, "cube": cube}[which]
    gdim = mesh.geometric_dimension
    rng = np.random.default_rng(1)
    for V, level in zip(level_spaces(mesh, 1, len(ops.levels)), ops.levels):
        u, v = fd.Function(V), fd.Function(V)
        u.dat.data_wo[:] = rng.standard_normal(level.n_nodes)
        v.dat.data_wo[:] = rng.standard_normal(level.n_nodes)
        forms = _reference_forms(u, v, gdim)
        assert tuple(level.operators) == operator_names(gdim) and set(forms) == set(level.operators)
        for name, A in level.operators.items():
            exact = fd.assemble(forms[name])
            assert abs(v.dat.data_ro @ (A @ u.dat.data_ro) - exact) <= 1e-12 * max(abs(exact), 1.0), name
        assert rel(level.stiffness, stiffness_matrix(V)) < 1e-12
        assert rel(level.operators["mass"], mass_matrix(V)) < 1e-12
        assert rel(level.stiffness_diag, stiffness_matrix(V).diagonal()) < 1e-12


def test_operators_share_one_sorted_pattern(lshape, cube):
    for ops in (lshape[3], cube[3]):
        for level in ops.levels:
            mats = list(level.operators.values())
            first = mats[0]
            for A in mats:
                assert isinstance(A, sp.csr_matrix) and A.dtype == np.float64
                assert A.shape == (level.n_nodes, level.n_nodes) and A.has_canonical_format
                assert np.array_equal(A.indptr, first.indptr) and np.array_equal(A.indices, first.indices)
            # the pattern is the node adjacency: the mass matrix has no zero in it
            assert np.count_nonzero(level.operators["mass"].data) == first.nnz


def test_lumped_mass_h_and_volume(lshape, cube):
    for ops, volume, dim in ((lshape[3], 3.0, 2), (cube[3], 1.0, 3)):
        for level in ops.levels:
            assert level.lumped_mass.sum() == pytest.approx(volume, rel=1e-12)
            assert rel(level.lumped_mass, level.operators["mass"].sum(axis=1).A1) < 1e-12
            assert (level.lumped_mass > 0).all()
    # midpoint refinement of a triangle gives 4 half-size copies: the diameter halves
    hs = [level.h for level in lshape[3].levels]
    assert hs[1] == pytest.approx(hs[0] / 2, rel=1e-12) and hs[2] == pytest.approx(hs[1] / 2, rel=1e-12)


def test_boundary_masks(lshape, cube):
    mesh, V, bc, ops = lshape
    finest = ops.levels[-1]
    want = np.zeros(V.dof_dset.size, dtype=bool)
    want[bc.nodes] = True
    assert np.array_equal(finest.boundary, want)
    for level in ops.levels:  # markers 1 (x = -1) and 2 (y = -1) on every level
        x = level.coords
        assert np.array_equal(level.boundary, (x[:, 0] == -1.0) | (x[:, 1] == -1.0))
    mesh, V, bc, ops = cube  # a condition on one component of a vector space
    for level in ops.levels:
        assert level.n_nodes == level.coords.shape[0] and level.coords.shape[1] == 3
        assert np.array_equal(level.boundary, level.coords[:, 0] == 0.0)
    want = np.zeros(V.dof_dset.size, dtype=bool)
    want[bc.nodes] = True
    assert np.array_equal(ops.levels[-1].boundary, want)


def test_on_boundary_and_vector_cg2_use_the_scalar_cg2_nodes():
    mesh = load_mesh("unitsquare:2/r1")
    V = fd.VectorFunctionSpace(mesh, "CG", 2)
    bc = fd.DirichletBC(V, 0.0, "on_boundary")
    ops = hierarchy_operators(V, [bc])
    assert [lev.n_nodes for lev in ops.levels] == [25, 81] and ops.to_finest is None
    want = np.zeros(81, dtype=bool)
    want[bc.nodes] = True
    assert np.array_equal(ops.levels[-1].boundary, want) and want.sum() == 32
    x = ops.levels[0].coords
    assert np.array_equal(ops.levels[0].boundary, ((x == 0) | (x == 1)).any(axis=1))


# --- which hierarchy ---------------------------------------------------------------------

def test_unitsquare_64_maps_onto_unitsquare_2_refined_5_times():
    mesh = load_mesh("unitsquare:64")
    V = fd.FunctionSpace(mesh, "CG", 1)
    ops = hierarchy_operators(V, [fd.DirichletBC(V, 0.0, "on_boundary")], mesh_spec="unitsquare:64")
    assert [lev.n_nodes for lev in ops.levels] == [n * n for n in (3, 5, 9, 17, 33, 65)]
    assert [int(lev.boundary.sum()) for lev in ops.levels] == [8, 16, 32, 64, 128, 256]
    hierarchy, level = find_hierarchy(mesh, "unitsquare:64")
    assert level == 5 and len(hierarchy) == 6 and hierarchy[0].num_cells() == 8

    def interpolant(m):
        x, y = fd.SpatialCoordinate(m)
        return fd.Function(fd.FunctionSpace(m, "CG", 1)).interpolate(fd.sin(fd.pi * x) * fd.cos(2 * y))

    on_data, on_finest = interpolant(mesh).dat.data_ro, interpolant(hierarchy[-1]).dat.data_ro
    assert ops.to_finest.shape == (4225, 4225) and ops.to_finest.nnz == 4225
    assert rel(ops.to_finest @ on_data, on_finest) < 1e-12
    assert rel(ops.from_finest @ on_finest, on_data) < 1e-12
    assert not np.array_equal(on_data, on_finest)  # the numbering does differ
    only = hierarchy_operators(V, mesh_spec="unitsquare:64", levels=2)
    assert [lev.n_nodes for lev in only.levels] == [33 * 33, 65 * 65] and len(only.prolongations) == 1


def test_no_hierarchy_and_bad_levels_are_clear_errors(lshape):
    V = fd.FunctionSpace(load_mesh("plate_holes"), "CG", 1)
    with pytest.raises(NoHierarchyError, match=r"no MeshHierarchy.*'plate_holes/r2'.*--mesh plate_holes/r2"):
        hierarchy_operators(V, mesh_spec="plate_holes")
    with pytest.raises(SpaceMismatchError, match="no MeshHierarchy"):  # still a SpaceMismatchError
        hierarchy_operators(V)
    W = fd.FunctionSpace(load_mesh("unitsquare:5"), "CG", 1)
    with pytest.raises(NoHierarchyError, match="no even cell counts"):
        hierarchy_operators(W, mesh_spec="unitsquare:5")
    with pytest.raises(ValueError, match=r"levels=4: the hierarchy has 3 levels"):
        hierarchy_operators(lshape[1], levels=4)
    with pytest.raises(SpaceMismatchError, match="output space has 36 nodes"):
        hierarchy_operators(W, mesh_spec="unitsquare:4/r1")
    with pytest.raises(UnsupportedSpaceError, match="continuous Lagrange"):
        hierarchy_operators(fd.FunctionSpace(lshape[0], "DG", 0))


def test_data_on_a_file_spec_rebuilds_as_a_hierarchy(tmp_path, monkeypatch):
    from fe_operators.data import FEFile
    from fe_operators.data import generate_dataset
    from fe_operators.io import shipped_meshes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.msh").write_bytes(shipped_meshes()["lshape"].read_bytes())
    generate_dataset("poisson", "l.msh/r1", 2, "d.h5", seed=3, progress=False)
    f = FEFile("d.h5")
    assert f.provenance["mesh"] == str(tmp_path / "l.msh") + "/r1"  # absolute path + suffix
    problem = f.rebuild_problem()  # raises NumberingError unless the numbering matches
    hierarchy, level = get_level(problem.mesh)
    assert level == 1 and len(hierarchy) == 2
    _, u = f.read([1])
    # the stored mesh (no hierarchy) maps onto the rebuilt one through the recorded spec
    spaces = f.rebuild()
    assert get_level(spaces.mesh) == (None, None)
    ops = hierarchy_operators(spaces.output_space, mesh_spec=f.provenance["mesh"])
    on_finest = u[0] if ops.to_finest is None else ops.to_finest @ u[0]
    exact = fd.Function(problem.output_space, val=u[0])
    V0 = fd.FunctionSpace(get_level(problem.mesh)[0][-1], "CG", problem.output_space.ufl_element().degree())
    assert ops.levels[-1].n_nodes == V0.dof_dset.size == exact.dat.data_ro.size
    assert rel(on_finest, exact.dat.data_ro) < 1e-12


def test_load_hierarchy_gives_firedrake_multigrid():
    hierarchy, finest = load_hierarchy("unitsquare:4/r2")
    assert len(hierarchy) == 3 and hierarchy[-1] is finest and finest.num_cells() == 512
    V = fd.FunctionSpace(finest, "CG", 1)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    uh = fd.Function(V)
    solver = fd.LinearVariationalSolver(
        fd.LinearVariationalProblem(fd.inner(fd.grad(u), fd.grad(v)) * fd.dx, v * fd.dx, uh,
                                    bcs=fd.DirichletBC(V, 0.0, "on_boundary")),
        solver_parameters={"ksp_type": "cg", "pc_type": "mg", "ksp_rtol": 1e-10})
    solver.solve()
    assert solver.snes.ksp.getIterationNumber() <= 10  # multigrid: a handful of iterations
    base, finest0 = load_hierarchy("lshape")  # no suffix: a one-level hierarchy
    assert len(base) == 1 and base[0] is finest0
