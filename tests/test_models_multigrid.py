"""The multigrid processor (MgNO on a MeshHierarchy): the mathematics of its V-cycle."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.fem import interpolation_matrix, prolongation_matrix
from fe_operators.io import load_mesh
from fe_operators.models import SPON
from fe_operators.multigrid.cycle import MultigridCycle
from fe_operators.models.build import context_from_spaces, hierarchy_context, spon_for_problem
from fe_operators.multigrid.cycle import cycle_levels
from fe_operators.problems import get_problem


def _space(spec: str, degree: int = 1):
    mesh = load_mesh(spec)
    V = fd.FunctionSpace(mesh, "CG", degree)
    return V, fd.DirichletBC(V, 0.0, "on_boundary")


@pytest.fixture(scope="module")
def squares():
    """unitsquare:2 refined 3, 4 and 5 times: (V, bc, hierarchy context)."""
    out = {}
    for r in (3, 4, 5):
        V, bc = _space(f"unitsquare:2/r{r}")
        out[r] = (V, bc, hierarchy_context(V, [bc]))
    return out


@pytest.mark.parametrize("mixing", ["full", "separable"])
def test_cycle_is_linear(squares, mixing):
    _V, _bc, H = squares[3]
    torch.manual_seed(0)
    cycle = MultigridCycle(5, H.finest.n_operators, H.n_levels, pre_smoothing=2, post_smoothing=1,
                           mixing=mixing).double()
    levels = cycle_levels(H, 0, H.levels[0].h)
    f1, f2 = torch.randn(2, H.finest.n_nodes, 3, 5, dtype=torch.float64)
    a, b = 0.7, -2.3
    with torch.no_grad():
        lhs = cycle(a * f1 + b * f2, levels)
        rhs = a * cycle(f1, levels) + b * cycle(f2, levels)
    assert float((lhs - rhs).abs().max()) <= 1e-12 * float(rhs.abs().max())
    assert float(rhs.abs().max()) > 1e-3  # not trivially zero


def _stiffness(H):
    """The finest level's Laplacian stiffness with Dirichlet rows/columns replaced by identity."""
    n = H.finest.n_nodes
    ops = H.finest.operators.to_scipy()
    K = sum(c * ops[k * n:(k + 1) * n] for k, c in enumerate(H.finest.laplacian.tolist()))
    keep = (~H.finest.boundary.numpy()).astype(float)
    return (sp.diags(keep) @ K @ sp.diags(keep) + sp.diags(1.0 - keep)).tocsr(), keep


def test_classical_weights_give_an_h_independent_convergent_v_cycle(squares):
    rates = []
    for r in (3, 4, 5):
        _V, _bc, H = squares[r]
        cycle = MultigridCycle(1, H.finest.n_operators, H.n_levels, pre_smoothing=2, coarsest_smoothing=20).double()
        cycle.set_classical(H.finest.laplacian, omega=2.0 / 3.0)
        levels = cycle_levels(H, 0, H.levels[0].h)
        K, keep = _stiffness(H)
        # iterate x <- x + V(b - K x) on K x = 0: the iterate is the error
        x = np.random.default_rng(0).standard_normal(K.shape[0]) * keep
        energy = []
        for _ in range(10):
            res = torch.from_numpy(-(K @ x) * keep)[:, None, None]
            with torch.no_grad():
                x = x + cycle(res, levels, dual=True)[:, 0, 0].numpy()
            energy.append(np.sqrt(x @ (K @ x)))
        rates.append((energy[-1] / energy[3]) ** (1 / 6))
    assert max(rates) < 0.6, rates                         # a convergent multigrid cycle ...
    assert max(rates) / min(rates) < 1.1, rates            # ... whose rate does not depend on h


def test_restriction_is_the_adjoint_of_prolongation_on_every_level(squares):
    V, _bc, H = squares[4]
    levels = cycle_levels(H, 0, H.levels[0].h)
    for lv in levels[1:]:
        assert abs(lv.restrict.to_scipy() - lv.prolong.to_scipy().T).max() == 0
    # and the context's prolongations are Firedrake's, level by level
    hierarchy = fd.mg.utils.get_level(V.mesh())[0]
    Vc = fd.FunctionSpace(hierarchy[2], "CG", 1)
    Vf = fd.FunctionSpace(hierarchy[3], "CG", 1)
    assert abs(H.prolongations[2].to_scipy() - prolongation_matrix(Vc, Vf)).max() < 1e-14


def test_same_weights_agree_across_hierarchies(squares):
    """A model built on the level-3 hierarchy, applied on the level-4 and -5 ones, to a smooth input."""
    torch.manual_seed(0)
    out, model = {}, None
    for r in (3, 4, 5):
        V, bc, _H = squares[r]
        ctx = context_from_spaces({"a": V}, V, bc, hierarchy=True)
        if model is None:
            model = SPON.from_context(ctx, ["a"], "multigrid", width=8, layers=2).double()
        x, y = fd.SpatialCoordinate(V.mesh())
        f = fd.Function(V).interpolate(fd.sin(np.pi * x) * fd.cos(2 * y) + x * y)
        with torch.no_grad():
            out[r] = model(torch.from_numpy(f.dat.data_ro.copy())[None, :, None], context=ctx)[0].numpy()
    diffs = []
    for a, b in ((3, 4), (4, 5)):
        V = squares[b][0]
        X = fd.Function(fd.VectorFunctionSpace(V.mesh(), "CG", 1)).interpolate(
            fd.SpatialCoordinate(V.mesh())).dat.data_ro
        inner = np.abs(X - 0.5).max(axis=1) < 0.3  # away from SPON's one-element boundary layer
        d = (interpolation_matrix(squares[a][0], V) @ out[a] - out[b])[inner]
        diffs.append(np.abs(d).max() / np.abs(out[b][inner]).max())
    assert diffs[0] < 5e-3 and diffs[1] < diffs[0] / 3, diffs  # O(h^2): a quarter per refinement


def test_spon_multigrid_on_an_unstructured_hierarchy_is_exact_on_the_boundary():
    problem = get_problem("poisson", load_mesh("plate_holes/r1"))
    torch.manual_seed(0)
    model = spon_for_problem(problem, "multigrid", width=6, layers=2, mixing="separable", coarsest_nodes=0)
    ctx = model.context
    assert ctx.hierarchy.n_levels == 2 and model.processor.n_operators == 6
    x = torch.randn(3, ctx.n_nodes, 2, dtype=torch.float64)
    u = model(x)
    mask = ctx.mask[:, 0]
    assert torch.equal(u[:, mask], x[:, mask, 1])  # Poisson's g on the Dirichlet DOFs, bit for bit
    u.square().sum().backward()
    for name, p in model.named_parameters():
        # coefficient_scale/shift are empty without coefficient_operators: nothing to differentiate
        assert p.grad is not None or p.numel() == 0, name
    clone = SPON.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x), u.detach())


def test_structured_data_mesh_maps_onto_its_hierarchy_and_3d_runs():
    problem = get_problem("darcy", load_mesh("unitsquare:8"), coefficient="cg1")
    model = spon_for_problem(problem, "multigrid", width=4, layers=1, mesh_spec="unitsquare:8")
    H = model.context.hierarchy
    assert H.n_levels == 3 and [lv.n_nodes for lv in H.levels] == [9, 25, 81]
    perm = H.to_finest.to_scipy()
    assert perm.nnz == 81 and abs(perm @ H.from_finest.to_scipy() - sp.identity(81)).max() == 0
    assert model(torch.randn(2, 81, 1)).shape == (2, 81)
    problem3 = get_problem("poisson", load_mesh("unitcube:2/r1"))
    model3 = spon_for_problem(problem3, "multigrid", width=4, layers=1)
    assert model3.processor.n_operators == 10
    assert model3(torch.randn(1, model3.context.n_nodes, 2)).shape == (1, model3.context.n_nodes)


def test_a_mesh_without_hierarchy_gets_aggregated_levels():
    problem = get_problem("darcy", load_mesh("plate_holes"))
    model = spon_for_problem(problem, "multigrid", width=4, layers=1)
    H = model.context.hierarchy
    assert H.finest.n_nodes == 867 and H.levels[0].n_nodes <= 100 and H.n_levels >= 3
    assert model(torch.randn(2, model.context.input_nodes(0), 1)).shape == (2, 867)


def test_coefficient_stiffness_map_is_firedrakes_assembly():
    from fe_operators.fem import assemble_scipy
    from fe_operators.fem.hierarchy import hierarchy_operators

    for spec in ("plate_holes/r1", "unitcube:2/r1"):
        V, bc = _space(spec)
        level = hierarchy_operators(V, [bc]).levels[-1]
        x = fd.SpatialCoordinate(V.mesh())
        a = fd.Function(V).interpolate(1 + x[0] ** 2 + fd.sin(3 * x[1]))
        K = assemble_scipy(a * fd.inner(fd.grad(fd.TrialFunction(V)), fd.grad(fd.TestFunction(V))) * fd.dx)
        pattern = level.scipy_operators()["mass"]
        got = sp.csr_matrix((level.coefficient_map.to_scipy() @ a.dat.data_ro, pattern.indices, pattern.indptr),
                            shape=K.shape)
        assert abs(got - K).max() <= 1e-13 * abs(K).max()


def test_coefficient_operators_make_a_convergent_cycle_for_variable_diffusion(squares):
    """Ã = D⁻¹K_a (the input's own stiffness), damped Jacobi: a multigrid solver of -div(a grad u)."""
    from fe_operators.multigrid.cycle import coefficient_values

    V, bc, H = squares[4]
    x = fd.SpatialCoordinate(V.mesh())
    a_fn = fd.Function(V).interpolate(1 + 0.9 * fd.sin(7 * np.pi * x[0]) * fd.cos(5 * np.pi * x[1]))
    a = torch.from_numpy(a_fn.dat.data_ro.copy())
    cycle = MultigridCycle(1, H.finest.n_operators, H.n_levels, pre_smoothing=2, post_smoothing=2,
                           coarsest_smoothing=30, n_coefficients=1).double()
    cycle.set_classical(H.finest.laplacian, omega=2.0 / 3.0)
    with torch.no_grad():  # Ã = D⁻¹K_a, S̃ = ω D/diag(K_a): damped Jacobi for K_a
        cycle.A.zero_()
        cycle.Kc.fill_(1.0)
        cycle.Sc.fill_(2.0 / 3.0)
        cycle.S.zero_()
    levels = cycle_levels(H, 0, H.levels[0].h)
    coef = coefficient_values(levels, a[:, None, None])
    from fe_operators.fem import assemble_scipy

    K = assemble_scipy(a_fn * fd.inner(fd.grad(fd.TrialFunction(V)), fd.grad(fd.TestFunction(V))) * fd.dx)
    # the cycle's finest-level operator is exactly D⁻¹ K_a
    u = torch.randn(K.shape[0], 1, 1, dtype=torch.float64)
    with torch.no_grad():
        Au = cycle.apply_operator(u, levels[-1], H.n_levels - 1, coef[-1])[:, 0, 0].numpy()
    expected = (K @ u[:, 0, 0].numpy()) / H.finest.stiffness_diag.numpy()
    assert np.abs(Au - expected).max() <= 1e-12 * np.abs(expected).max()
    keep = (~H.finest.boundary.numpy()).astype(float)
    K = (sp.diags(keep) @ K @ sp.diags(keep) + sp.diags(1.0 - keep)).tocsr()

    def rate(coefficients):
        e = np.random.default_rng(2).standard_normal(K.shape[0]) * keep
        energy = []
        for _ in range(12):
            res = torch.from_numpy(-(K @ e) * keep)[:, None, None]
            with torch.no_grad():
                e = e + cycle(res, levels, dual=True, coefficients=coefficients)[:, 0, 0].numpy()
            energy.append(np.sqrt(e @ (K @ e)))
        return (energy[-1] / energy[4]) ** (1 / 7)

    with_a = rate(coef)
    with torch.no_grad():  # the same cycle on the Laplacian, blind to a (damping for a <= 1.9)
        cycle.set_classical(H.finest.laplacian, omega=1.0 / 3.0)
    blind = rate(None)
    assert with_a < 0.5 and blind > with_a + 0.15, (with_a, blind)


@pytest.mark.parametrize("options", [{"width": 6, "layers": 2},
                                     {"width": 5, "layers": 2, "mixing": "separable", "coefficient_operators": True}])
def test_float32_forward_equals_float64_forward(options):
    """Weights cast to float32: the processor computes in float32 (FE operators cast once, cached) and agrees."""
    import copy

    problem = get_problem("darcy", load_mesh("plate_holes"))
    torch.manual_seed(0)
    m64 = spon_for_problem(problem, "multigrid", dtype=torch.float64, **options)
    m32 = copy.deepcopy(m64).float()
    h = torch.rand(3, m64.context.n_nodes, m64.processor.in_channels, dtype=torch.float64) + 0.5
    with torch.no_grad():
        z64 = m64.processor(h, m64.context)
        z32 = m32.processor(h.float(), m32.context)
    assert z32.dtype == torch.float32 and z64.dtype == torch.float64
    assert float((z32.double() - z64).norm() / z64.norm()) < 1e-5
    levels = m32.processor.cycle_levels(m32.context.hierarchy, torch.float32)
    assert levels is m32.processor.cycle_levels(m32.context.hierarchy, torch.float32)  # cast once, cached
    assert all(lv.d.dtype == lv.keep.dtype == lv.mass_diag.dtype == torch.float32 for lv in levels)


def test_cost_per_level_is_the_hand_count():
    """unitsquare:2/r1, CG1: levels of 9 and 25 nodes, 41 and 137 pattern entries, P with 41 entries."""
    problem = get_problem("poisson", load_mesh("unitsquare:2/r1"))
    model = spon_for_problem(problem, "multigrid", width=2, layers=1, coarsest_nodes=0, pre_smoothing=1,
                             coarsest_smoothing=1, post_smoothing=0)
    H, proc = model.context.hierarchy, model.processor
    assert H.sizes == [9, 25] and [int(lv.operators.crow[lv.n_nodes]) for lv in H.levels] == [41, 137]
    assert H.prolongations[0].values.numel() == 41 and proc.in_channels == 2 and proc.n_operators == 6
    c, k = 2, 6
    blocks = lambda n, nnz: k * nnz * c + n * k * c * c  # noqa: E731  Σ_k Φ_k u W_k, full mixing
    smooth_first = lambda n, nnz: blocks(n, nnz) + n * c * c  # noqa: E731  u = 0: B S̃ f
    coarse = smooth_first(9, 41)                                          # 1 coarsest smoothing step
    fine = (137 * c                                                       # M f
            + smooth_first(25, 137)                                       # 1 pre-smoothing step
            + blocks(25, 137) + 41 * c + 9 * c * c                        # residual, P^T, W^R
            + 41 * c + 25 * c * c)                                        # P, W^P
    fine += (25 * ((2 + 2) * c + c * c)                                  # lifting MLP (2 inputs + 2 coordinates)
             + 25 * (2 * c + c * c)                                       # bias MLP
             + 2 * 25 * c * c                                             # W_out, W_0
             + 25 * (c * c + c * 1))                                      # projection MLP
    assert (coarse, fine) == (744, 6012)
    rows = proc.cost_per_level(model.context)
    assert [(r["level"], r["nodes"], r["macs"]) for r in rows] == [(1, 25, fine), (0, 9, coarse)]
    report = proc.cost_report(model.context)
    assert "level 1:       25 nodes" in report and f"total: {(fine + coarse) / 1e6:.2f} M" in report


def test_training_prints_the_cost_report(tmp_path, capsys):
    """``fe-operators train``'s model builder prints the report of a processor that has one."""
    from fe_operators.data import FEDataset, generate_dataset
    from fe_operators.train import config_from_dict
    from fe_operators.train.model_types import build_model

    path = tmp_path / "p.h5"
    generate_dataset("poisson", "unitsquare:4", 2, path, seed=1, progress=False)
    cfg = config_from_dict({"data": {"path": str(path)}, "out": {"dir": str(tmp_path / "run")},
                            "model": {"type": "spon", "processor": "multigrid", "width": 4, "layers": 1}})
    model = build_model(cfg.model, FEDataset(path, np.arange(2)))
    out = capsys.readouterr().out
    assert model.processor.cost_report(model.context) in out and "multigrid processor (1 V-cycles)" in out
