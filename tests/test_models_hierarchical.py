"""The hierarchical processor (SPON-MG, a graph U-Net on the FE levels) and the levels of any mesh."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.io import load_mesh
from fe_operators.io.specs import shipped_meshes
from fe_operators.models import SPON
from fe_operators.models.build import hierarchy_context, spon_for_problem
from fe_operators.models.processors.hierarchical import HierarchicalProcessor, unet_levels
from fe_operators.multigrid.aggregation import aggregates, extend_hierarchy
from fe_operators.multigrid.hierarchy import Level
from fe_operators.multigrid.levels import mesh_levels, single_level
from fe_operators.problems import get_problem

#: a small configuration for tiny meshes
SMALL = {"width": 16, "min_width": 4, "depth": 2, "global_layers": 1, "heads": 2, "spectral_layers": 1, "modes": 3,
         "coarsest_nodes": 100}


def _space(spec, degree=1):
    V = fd.FunctionSpace(load_mesh(spec), "CG", degree)
    return V, fd.DirichletBC(V, 0.0, "on_boundary")


def _train(model, x, y, steps, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# ----------------------------------------------------------------------------- levels


def test_aggregation_levels_cover_every_node_down_to_the_configured_size():
    V, bc = _space("plate_holes")
    ops = mesh_levels(V, [bc], coarsest_nodes=60)
    sizes = [lv.n_nodes for lv in ops.levels]
    assert sizes[-1] == 867 and sizes[0] <= 60 and len(sizes) >= 3, sizes   # every level below by aggregation
    for i in range(len(sizes) - 1, 0, -1):
        fine = ops.levels[i]
        ids, m = aggregates(fine)
        assert m == sizes[i - 1]
        free = ~fine.boundary.numpy()
        assert np.all(ids[free] >= 0) and np.all(ids[~free] == -1)          # each free node in exactly one
        assert np.all(np.bincount(ids[free], minlength=m) >= 1)             # no empty aggregate
        assert ops.prolongations[i - 1].shape == (sizes[i], sizes[i - 1])


def _permuted_level(lv: Level, perm: np.ndarray) -> Level:
    """The level with node ``perm[i]`` renumbered ``i``."""
    from fe_operators.multigrid.hierarchy import on_common_pattern

    Pi = sp.csr_matrix((np.ones(perm.size), (np.arange(perm.size), perm)), shape=(perm.size,) * 2)
    ops = {k: (Pi @ A @ Pi.T).tocsr() for k, A in lv.scipy_operators().items()}
    ops = dict(zip(ops, on_common_pattern(list(ops.values()))))
    return Level.from_scipy(ops, lv.boundary.numpy()[perm], coords=lv.coords.numpy()[perm],
                            lumped_mass=lv.lumped_mass.numpy()[perm], stiffness_diag=lv.stiffness_diag.numpy()[perm],
                            h=lv.h)


def test_aggregates_do_not_depend_on_the_node_numbering():
    V, bc = _space("plate_holes")
    base = single_level(V, [bc])
    perm = np.random.default_rng(0).permutation(base.levels[0].n_nodes)
    permuted = dataclasses.replace(base, levels=(_permuted_level(base.levels[0], perm),))
    a, b = extend_hierarchy(base, 60), extend_hierarchy(permuted, 60)
    assert [lv.n_nodes for lv in a.levels] == [lv.n_nodes for lv in b.levels]
    for la, lb in zip(a.levels[:-1], b.levels[:-1]):                    # coarse levels: the same numbering
        assert np.allclose(la.coords, lb.coords, rtol=0, atol=1e-13)
        ops_a, ops_b = la.scipy_operators(), lb.scipy_operators()
        for k in ops_a:
            assert abs(ops_a[k] - ops_b[k]).max() <= 1e-12 * abs(ops_a[k]).max()
    # the first prolongation is the same up to the fine permutation, the others equal
    assert abs(a.prolongations[-1].to_scipy()[perm] - b.prolongations[-1].to_scipy()).max() <= 1e-13
    for Pa, Pb in zip(a.prolongations[:-1], b.prolongations[:-1]):
        assert abs(Pa.to_scipy() - Pb.to_scipy()).max() <= 1e-12


def test_restriction_is_the_adjoint_of_prolongation():
    V, bc = _space("plate_holes/r1")
    H = hierarchy_context(V, [bc], coarsest_nodes=100, levels="auto")
    sizes = [lv.n_nodes for lv in H.levels]
    assert sizes[-2:] == [867, 3286] and sizes[0] <= 100                 # geometric, then aggregated below
    levels = unet_levels(H, 0)
    rng = np.random.default_rng(0)
    for j in range(1, len(levels)):
        fine, coarse = levels[j], levels[j - 1]
        P, R, Pt = fine.prolong.to_scipy(), fine.restrict.to_scipy(), fine.restrict_dual.to_scipy()
        assert abs(Pt - P.T).max() == 0                                   # dual vectors: Pᵀ
        wf, wc = fine.weights.numpy(), coarse.weights.numpy()
        assert np.all(wf > 0) and np.all(wc > 0)
        # nodal values: R = M_c⁻¹ Pᵀ M_f, i.e. (R u, v)_{M_c} = (u, P v)_{M_f} ...
        u, v = rng.standard_normal(P.shape[0]), rng.standard_normal(P.shape[1])
        assert np.isclose((R @ u) @ (wc * v), u @ (wf * (P @ v)), rtol=1e-12)
        assert abs(R - sp.diags(1 / wc) @ P.T @ sp.diags(wf)).max() <= 1e-13 * abs(R).max()
        # ... which reproduces constants (a mass-weighted average)
        assert np.allclose(R @ np.ones(P.shape[0]), 1.0, rtol=0, atol=1e-12)
    # on the geometric CG1 step M_c = Pᵀ M_f 1 is the coarse level's lumped mass: R is the lumped L2 projection
    assert np.allclose(levels[-2].weights.numpy(), H.levels[-2].lumped_mass.numpy(), rtol=1e-12)
    assert np.allclose(levels[-1].weights.numpy(), H.levels[-1].lumped_mass.numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- the processor


def test_boundary_values_are_exact_untrained_and_trained():
    problem = get_problem("poisson", load_mesh("unitsquare:4/r1"))
    torch.manual_seed(0)
    model = spon_for_problem(problem, "hierarchical", **{**SMALL, "coarsest_nodes": 30})
    ctx = model.context
    assert isinstance(model.processor, HierarchicalProcessor) and model.processor.n_levels == 2
    x = torch.randn(6, ctx.n_nodes, 2, dtype=torch.float64)
    mask = ctx.mask[:, 0]
    assert torch.equal(model(x)[:, mask], x[:, mask, 1])                 # Poisson's g, bit for bit
    losses = _train(model, x, torch.randn(6, ctx.n_nodes, dtype=torch.float64), 5)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert torch.equal(model(x)[:, mask], x[:, mask, 1])
    clone = SPON.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))


def test_untrained_output_does_not_depend_on_the_node_numbering():
    problem = get_problem("darcy", load_mesh("plate_holes"))
    torch.manual_seed(1)
    model = spon_for_problem(problem, "hierarchical", **{**SMALL, "coarsest_nodes": 60})
    ctx = model.context
    proc = model.processor
    V, bc = _space("plate_holes")
    base = single_level(V, [bc])
    n = base.levels[0].n_nodes
    perm = np.random.default_rng(2).permutation(n)
    permuted = dataclasses.replace(base, levels=(_permuted_level(base.levels[0], perm),))
    H = extend_hierarchy(base, 60)
    Hp = extend_hierarchy(permuted, 60)
    assert np.allclose(H.finest.coords.numpy(), ctx.coords.numpy())
    ctx0 = dataclasses.replace(ctx, hierarchy=H)
    mask_p = ctx.mask[perm]
    free_p = torch.nonzero(~mask_p[:, 0])[:, 0]
    ctxp = dataclasses.replace(ctx, coords=ctx.coords[perm], mask=mask_p, lifting=ctx.lifting[perm], free=free_p,
                               hierarchy=Hp, node_weights=None)
    h = torch.randn(2, n, 1)
    with torch.no_grad():
        y = torch.zeros(2, n).index_copy_(1, ctx0.free, proc(h, ctx0))
        yp = torch.zeros(2, n).index_copy_(1, free_p, proc(h[:, perm], ctxp))
    assert float(y.abs().max()) > 1e-2
    assert torch.allclose(yp, y[:, perm], rtol=0, atol=1e-5 * float(y.abs().max())), float((yp - y[:, perm]).abs().max())


def _sine_data(spec, samples, seed):
    """f = Σ c_kl sin(kπx) sin(lπy) and the solution of -Δu = f, u = 0 on ∂(unit square), nodal values."""
    V, _bc = _space(spec)
    x, y = fd.SpatialCoordinate(V.mesh())
    modes = [(k, l) for k in (1, 2, 3) for l in (1, 2, 3)]
    basis = np.stack([fd.Function(V).interpolate(fd.sin(k * np.pi * x) * fd.sin(l * np.pi * y)).dat.data_ro.copy()
                      for k, l in modes])                                  # one compiled kernel per mode
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((samples, len(modes))) * np.array([20 / (k + l) for k, l in modes])
    f = c @ basis
    u = (c / np.array([(k * k + l * l) * np.pi ** 2 for k, l in modes])) @ basis
    xs = np.stack([f, np.zeros_like(f)], axis=2)
    return get_problem("poisson", V.mesh()), torch.tensor(xs), torch.tensor(u)


def test_trained_on_r1_evaluates_on_a_finer_hierarchy():
    problem1, x1, y1 = _sine_data("unitsquare:8/r1", 24, 0)
    torch.manual_seed(0)
    model = spon_for_problem(problem1, "hierarchical", **SMALL)
    assert model.processor.n_levels == 2
    scale = float(y1.abs().max())
    losses = _train(model, x1 / 20, y1 / scale, 60, lr=5e-3)
    assert losses[-1] < 0.2 * losses[0]
    problem2, x2, y2 = _sine_data("unitsquare:8/r2", 8, 1)
    from fe_operators.models.build import context_for_model

    ctx2 = context_for_model(model, problem2)
    assert ctx2.hierarchy.n_levels == 3                                    # one level finer than trained
    with torch.no_grad():
        _p1, x1t, y1t = _sine_data("unitsquare:8/r1", 8, 1)
        e1 = float((model(x1t / 20) - y1t / scale).norm() / (y1t / scale).norm())
        e2 = float((model(x2 / 20, context=ctx2) - y2 / scale).norm() / (y2 / scale).norm())
    print(f"relative error on r1 {e1:.4f}, on r2 {e2:.4f}")
    assert np.isfinite(e2) and e2 < max(1.5 * e1, 0.05), (e1, e2)


def _dof_coords(V):
    W = fd.VectorFunctionSpace(V.mesh(), V.ufl_element().family(), V.ufl_element().degree())
    return fd.Function(W).interpolate(fd.SpatialCoordinate(V.mesh())).dat.data_ro.copy()


def test_on_a_finer_hierarchy_the_output_is_the_fe_interpolation_of_the_trained_levels_prediction():
    """An r1 model given r2 inputs predicts on r1 from the inputs' values at the r1 nodes and
    returns that field's FE interpolation on r2, the boundary data exact on both levels;
    through normalizers too (the processor then reads the boundary data in encoded units)."""
    from scipy.spatial import cKDTree

    from fe_operators.models import NormalizedModel, UnitGaussianNormalizer
    from fe_operators.models.build import context_for_model

    problem1, _x, _y = _sine_data("unitsquare:8/r1", 1, 0)
    torch.manual_seed(3)
    spon = spon_for_problem(problem1, "hierarchical", **SMALL)
    problem2, x2, _y2 = _sine_data("unitsquare:8/r2", 3, 1)
    V1, V2 = problem1.output_space, problem2.output_space
    c1, c2 = _dof_coords(V1), _dof_coords(V2)
    x2[..., 1] = torch.tensor(1.0 + c2[:, 0] * c2[:, 1] + 0.5 * c2[:, 1] ** 2)    # boundary data g
    dist, at = cKDTree(c2).query(c1)
    assert dist.max() < 1e-12                                              # every r1 node is an r2 node
    ctx2 = context_for_model(spon, problem2)
    normalized = NormalizedModel(spon, UnitGaussianNormalizer(torch.tensor([0.3, 1.0]), torch.tensor([2.0, 0.5])),
                                 UnitGaussianNormalizer(torch.tensor(0.1), torch.tensor(0.05)))
    for model in (spon, normalized):
        with torch.no_grad():
            y1 = model(x2[:, at].clone())
            y2 = model(x2, context=ctx2)
        expected = []
        for row in y1:
            u1 = fd.Function(V1)
            u1.dat.data[:] = row.numpy()
            expected.append(np.array(u1.at(c2, tolerance=1e-10)))
        expected = torch.tensor(np.stack(expected))
        mask = ctx2.mask[:, 0]                         # free nodes: the interpolation; Dirichlet nodes: the data
        assert float(y2.abs().max()) > 0.5
        assert torch.allclose(y2[:, ~mask], expected[:, ~mask], rtol=0, atol=1e-5 * float(expected.abs().max())), \
            float((y2 - expected)[:, ~mask].abs().max())
        assert torch.equal(y2[:, mask], x2[:, mask, 1])


def test_runs_on_shipped_meshes_without_hierarchy_and_on_a_users_msh(tmp_path):
    user = tmp_path / "my_domain.msh"
    shutil.copy(shipped_meshes()["lshape"], user)
    for spec in ("plate_holes", str(user)):
        problem = get_problem("poisson", load_mesh(spec))
        torch.manual_seed(0)
        model = spon_for_problem(problem, "hierarchical", mesh_spec=spec, **{**SMALL, "coarsest_nodes": 80})
        ctx = model.context
        assert ctx.hierarchy.levels[0].n_nodes <= 80 and ctx.hierarchy.to_finest is None
        x = torch.randn(2, ctx.n_nodes, 2, dtype=torch.float64)
        u = model(x)
        mask = ctx.mask[:, 0]
        assert torch.isfinite(u).all() and torch.equal(u[:, mask], x[:, mask, 1])


def test_cg2_output_and_dirichlet_data_on_part_of_the_boundary():
    problem = get_problem("poisson", load_mesh("unitsquare:4/r1"), degree=2, markers=(1, 2))
    torch.manual_seed(0)
    model = spon_for_problem(problem, "hierarchical", **SMALL)
    ctx = model.context
    mask = ctx.mask[:, 0]
    assert 0 < int(mask.sum()) < int((ctx.coords[:, 0] * (1 - ctx.coords[:, 0]) * ctx.coords[:, 1]
                                      * (1 - ctx.coords[:, 1]) == 0).sum())  # part of the boundary only
    x = torch.randn(4, ctx.n_nodes, 2, dtype=torch.float64)
    losses = _train(model, x, torch.randn(4, ctx.n_nodes, dtype=torch.float64), 5)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert torch.equal(model(x)[:, mask], x[:, mask, 1])


def test_vector_cg2_output_with_a_component_fixed_on_part_of_the_boundary():
    from fe_operators.fem import DirichletDofs
    from fe_operators.models.build import context_from_spaces

    V = fd.VectorFunctionSpace(fd.UnitSquareMesh(6, 6), "CG", 2)
    bcs = [fd.DirichletBC(V, fd.Constant((0.25, -3.0)), 1), fd.DirichletBC(V.sub(1), 7.0, 2)]
    ctx = context_from_spaces({"load": V}, V, bcs, **HierarchicalProcessor.context_options(SMALL))
    assert ctx.hierarchy.to_finest is None and ctx.hierarchy.n_levels >= 2   # no MeshHierarchy: aggregation
    torch.manual_seed(2)
    model = SPON.from_context(ctx, [("load", 2)], "hierarchical", **{**SMALL, "coarsest_nodes": 60})
    x = torch.randn(3, V.dof_dset.size, 2, dtype=torch.float64)
    with torch.no_grad():
        u = model(x)
    g = DirichletDofs(V, bcs).lifting()
    assert torch.equal(u[:, ctx.mask], g[ctx.mask].expand(3, -1))
    roller = ctx.mask[:, 1] & ~ctx.mask[:, 0]                               # x free, y fixed (marker 2)
    assert roller.sum() > 0 and float(u[:, roller, 0].std(dim=0).min()) > 0  # the free component is predicted


def test_multiply_adds_per_node_grow_toward_the_coarsest_level_with_the_defaults():
    problem = get_problem("darcy", load_mesh("plate_holes/r1"))
    model = spon_for_problem(problem, "hierarchical")
    rows = model.processor.cost_per_level(model.context)
    assert [r["nodes"] for r in rows][:2] == [3286, 867] and rows[-1]["nodes"] <= 300
    per_node = [r["macs"] / r["nodes"] for r in rows]
    assert per_node == sorted(per_node) and per_node[-1] > 10 * per_node[0], rows   # light fine, heavy coarse
    assert [r["width"] for r in rows] == sorted(r["width"] for r in rows)  # widths grow toward the coarsest
    assert "multiply-adds" in model.processor.cost_report(model.context)


# ----------------------------------------------------------------------------- end to end


def test_trainer_end_to_end(tmp_path):
    import sys

    import yaml

    from fe_operators.cli.main import main

    def cli(*args):
        before = sys.argv[:]
        status = main([str(a) for a in args])
        sys.argv[:] = before
        return status

    assert cli("generate", "darcy", "--mesh", "unitsquare:6", "--samples", 24, "--out", tmp_path / "d.h5",
               "--seed", 0) == 0
    cfg = {"data": {"path": str(tmp_path / "d.h5"), "split": [16, 4, 4], "normalize_inputs": "global",
                    "normalize_output": "none"},
           "model": {"type": "spon", "processor": "hierarchical", "width": 16, "min_width": 4, "heads": 2,
                     "global_layers": 1, "coarsest_nodes": 20},
           "train": {"epochs": 6, "batch_size": 4, "lr": 3e-3, "threads": 1, "progress": False},
           "out": {"dir": str(tmp_path / "run")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert cli("train", "--config", tmp_path / "c.yaml") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    loss = [e["train_loss"] for e in metrics["epochs"]]
    assert loss[-1] < loss[0], loss


def test_cost_per_level_matches_a_hand_count():
    """unitsquare:4/r1 (5×5 and 9×9 vertices, one diagonal per square), SMALL options, coarsest 30 nodes."""
    problem = get_problem("poisson", load_mesh("unitsquare:4/r1"))
    model = spon_for_problem(problem, "hierarchical", **{**SMALL, "coarsest_nodes": 30})
    proc = model.processor
    rows = proc.cost_per_level(model.context)
    assert [(r["nodes"], r["width"], r["blocks"]) for r in rows] == [(81, 8, 2), (25, 16, 2)]
    K, ci, out = 6, proc.in_channels + 2, 1

    def block(n, edges, c):  # per-channel values, product, LayerNorm + residual, MLP c -> 2c -> c
        nnz = n + 2 * edges                                   # diagonal + both directions of every edge
        return nnz * (K + 1) * c + nnz * c + 5 * n * c + 4 * n * c * c

    e_coarse, e_fine = 3 * 16 + 2 * 4, 3 * 64 + 2 * 8     # 4×4 and 8×8 squares: 2 sides + diagonal each, + far sides
    spectral = 2 * 25 * 9 * 16 + 9 * 16 * 16 + 4 * 25 * 16 * 16 + 10 * 25 * 16     # 3² modes: in, mix, out; MLP
    coarse = 2 * block(25, e_coarse, 16) + (25 * 8 * 16 * 16 + 2 * 25 * 25 * 16) + spectral  # + 1 attention layer
    p_nnz = 25 + 2 * 56                                   # coarse vertices copied, 56 edge midpoints averaged
    fine = (2 * block(81, e_fine, 8)                      # one block down, one up
            + 25 * (8 * 16 + 16 * 8) + 25 * (2 * 16 + 16 * 16)   # channel maps, coordinate features (coarse nodes)
            + 2 * p_nnz * 8                               # R and P (same pattern)
            + 81 * (ci * 8 + 8 * 8) + 81 * (8 * 8 + 8 * out))      # lifting, projection
    assert [r["macs"] for r in rows] == [fine, coarse]


def test_channel_spmm_is_the_per_channel_operator_combination_and_differentiates():
    from fe_operators.models.layers.operator_conv import channel_spmm, operator_pattern

    V, bc = _space("unitsquare:4")
    S = mesh_levels(V, [bc], coarsest_nodes=10 ** 6).levels[-1].operators     # (K n, n), stacked by rows
    n = S.n_cols
    K = S.n_rows // n
    stacked = S.to_scipy()
    mats = [stacked[k * n:(k + 1) * n] for k in range(K)]
    scale = torch.rand(K * n, dtype=torch.float64) + 0.5
    pat = operator_pattern(S, scale)
    torch.manual_seed(0)
    a = torch.randn(K + 1, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(n, 2, 3, dtype=torch.float64, requires_grad=True)
    z = channel_spmm(pat, pat.values @ a, u)
    s = scale.numpy().reshape(K, n)
    un = u.detach().numpy()
    for c in range(3):
        ad = a.detach().numpy()
        A = sum(ad[k, c] * sp.diags(s[k]) @ mats[k] for k in range(K)) + ad[K, c] * sp.eye(n)
        assert np.allclose(z[:, :, c].detach().numpy(), A @ un[:, :, c], rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda u, a: channel_spmm(pat, pat.values @ a, u), (u, a))
    # the compiled CPU kernels and the gather/index_add path (other devices) agree, gradients too
    from fe_operators.models.layers.operator_conv import _torch_product

    g = torch.randn_like(z)
    ga = torch.autograd.grad(z, (u, a), g)
    zt = _torch_product(pat.rows, pat.col, pat.values @ a, u, n)
    gt = torch.autograd.grad(zt, (u, a), g)
    assert torch.allclose(zt, z, rtol=0, atol=1e-12)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-12) for x, y in zip(ga, gt))


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("batch", [1, 3])
def test_channel_spmm_norm_fused_equals_layernorm_of_the_product(dtype, tol, batch):
    """Without autograd the product and the LayerNorm (affine included) run in one compiled pass:
    the same values as torch's LayerNorm of the product; a traced call records the registered op."""
    from fe_operators.models.layers import operator_conv as oc

    V, _ = _space("unitsquare:8")
    S = mesh_levels(V, [], coarsest_nodes=10 ** 6).levels[-1].operators
    K = S.n_rows // S.n_cols
    pat = oc.operator_pattern(S).to(dtype)
    torch.manual_seed(0)
    a = torch.randn(K + 1, 5, dtype=dtype)
    u = torch.randn(S.n_cols, batch, 5, dtype=dtype) * 3 + 1
    norm = torch.nn.LayerNorm(5).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
        w = pat.values @ a
        ref = torch.nn.functional.layer_norm(oc._torch_product(pat.rows, pat.col, w, u, S.n_cols), (5,),
                                             norm.weight, norm.bias, norm.eps)
        fused = oc.channel_spmm_norm(pat, w, u, norm)
        assert fused.dtype == dtype and torch.allclose(fused, ref, rtol=0, atol=tol)
        assert fused.std(dim=2, unbiased=False).sub(1).abs().max() > 0.1  # the affine part was applied
        assert torch.equal(oc.channel_conv(pat.crow, pat.col, w, u), oc.channel_spmm(pat, w, u))

        class Step(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.norm = norm

            def forward(self, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
                return oc.channel_spmm_norm(pat, w, u, self.norm)

        traced = torch.jit.freeze(torch.jit.trace(Step().eval(), (w, u), check_trace=False))
        kinds = {n.kind() for n in traced.graph.nodes()}
        assert "fe_operators::channel_conv_norm" in kinds
        assert torch.equal(traced(w, 2 * u), oc.channel_spmm_norm(pat, w, 2 * u, norm))  # not a constant
    # with gradients: the composition, differentiable
    ug = u.clone().requires_grad_(True)
    out = oc.channel_spmm_norm(pat, w, ug, norm)
    assert out.requires_grad and torch.allclose(out.detach(), ref, rtol=0, atol=tol)
    out.square().sum().backward()
    assert ug.grad is not None and norm.weight.grad is not None


def test_cosine_basis_is_orthogonal_under_the_node_weight_quadrature():
    from fe_operators.models.processors.hierarchical import cosine_basis

    V, bc = _space("unitsquare:32")
    H = hierarchy_context(V, [bc], coarsest_nodes=10, levels="algebraic")
    lv = unet_levels(H, H.n_levels - 1)[0]                                  # the finest level only
    w = lv.weights / lv.weights.sum()
    psi = cosine_basis(lv.coords, 4)                                        # (n, 16), coords in [-1, 1]²
    assert psi.shape == (33 * 33, 16)
    gram = psi.T @ (w[:, None] * psi)
    k = torch.arange(4)
    norms = torch.where(k == 0, 1.0, 0.5).double()                          # ∫_0^1 cos²(πkt) dt
    expected = torch.diag(torch.outer(norms, norms).reshape(-1))
    assert torch.allclose(gram, expected, rtol=0, atol=5e-3), float((gram - expected).abs().max())
