"""SPON wiring: shapes, gradients, config round trip, mesh contexts, input errors, graph kernels."""

import json

import pytest
import torch

import firedrake as fd

from fe_operators.errors import SpaceMismatchError
from fe_operators.models import SPON, DeepPropagation
from fe_operators.models.build import context_from_spaces
from fe_operators.models.layers.coarse_grid import CoarseGridMixing
from fe_operators.models.layers.graph_ops import mean_adjacency, mean_aggregate, normalized_coordinates, propagate_mean

OPTIONS = {"gnn": dict(width=8, depth=2, hops=4, coarse_cells=4, latent_cells=4, latent_modes=2),
           "mlp": dict(hidden=[16, 16])}


def _context(n):
    """Poisson-like: inputs f and g, Dirichlet data g on the whole boundary (lifting maps of g)."""
    V = fd.FunctionSpace(fd.UnitSquareMesh(n, n), "CG", 1)
    return V, context_from_spaces({"f": V, "g": V}, V, lambda x: fd.DirichletBC(V, x["g"], "on_boundary"))


@pytest.fixture(scope="module")
def mesh8():
    return _context(8)


@pytest.fixture(scope="module")
def mesh12():
    return _context(12)


def _model(ctx, kind, seed=0):
    torch.manual_seed(seed)
    return SPON.from_context(ctx, ["f", "g"], kind, **OPTIONS[kind])


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_every_parameter_gets_a_gradient(mesh8, kind):
    _V, ctx = mesh8
    model = _model(ctx, kind)
    x = torch.randn(2, ctx.n_nodes, 2)
    u = model(x)
    assert u.shape == (2, ctx.n_nodes) and u.dtype == torch.float64
    u.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_config_round_trip_and_checkpoint(mesh8, kind, tmp_path):
    _V, ctx = mesh8
    model = _model(ctx, kind)
    x = torch.randn(3, ctx.n_nodes, 2, dtype=torch.float64)
    config = json.loads(json.dumps(model.config))  # plain JSON
    path = tmp_path / "model.pt"
    torch.save({"config": config, "state_dict": model.state_dict()}, path)
    data = torch.load(path, weights_only=True)
    clone = SPON.from_config(data["config"])
    assert clone.context is None  # the mesh context travels in the state_dict
    clone.load_state_dict(data["state_dict"])
    assert clone.config == model.config
    assert torch.equal(clone(x), model(x))
    assert clone.context.mask.dtype == torch.bool and clone.context.lifting.dtype == torch.float64


def test_gnn_runs_on_another_mesh(mesh8, mesh12):
    (V8, ctx8), (V12, ctx12) = mesh8, mesh12
    model = _model(ctx8, "gnn")
    assert model.mesh_agnostic
    # the same smooth data on both meshes
    for V, ctx in ((V8, ctx8), (V12, ctx12)):
        xy = fd.SpatialCoordinate(V.mesh())
        f = fd.Function(V).interpolate(fd.sin(3 * xy[0]) * xy[1])
        g = fd.Function(V).interpolate(1 + xy[0] * xy[1])
        x = torch.stack([torch.from_numpy(f.dat.data_ro.copy()), torch.from_numpy(g.dat.data_ro.copy())], -1)[None]
        u = model(x, context=ctx)
        assert u.shape == (1, V.dof_dset.size) and torch.isfinite(u).all()
        assert torch.equal(u[0, ctx.mask[:, 0]], x[0, ctx.mask[:, 0], 1])
    # diffusive hop scaling: 12/8 finer -> (12/8)^2 as many hops
    assert model.processor.propagation.num_hops(float(ctx12.length_scale())) == round(4 * (12 / 8) ** 2)
    # storing the other context makes it the default
    model.set_context(ctx12)
    assert model.context.n_nodes == ctx12.n_nodes


def test_mlp_refuses_another_mesh(mesh8, mesh12):
    model = _model(mesh8[1], "mlp")
    assert not model.mesh_agnostic
    x = torch.randn(1, mesh12[1].n_nodes, 2)
    with pytest.raises(SpaceMismatchError, match="only on the mesh it was built for.*GNN"):
        model(x, context=mesh12[1])


def test_mismatched_inputs_raise_clear_errors(mesh8):
    _V, ctx = mesh8
    model = _model(ctx, "gnn")
    n = ctx.n_nodes
    with pytest.raises(SpaceMismatchError, match=rf"expected stacked inputs of shape \(batch, {n}, 2\)"):
        model(torch.randn(2, n + 1, 2))
    with pytest.raises(SpaceMismatchError, match="f:1 \\+ g:1"):
        model(torch.randn(2, n, 3))
    with pytest.raises(SpaceMismatchError, match=r"expected input fields \['f', 'g'\]"):
        model({"f": torch.randn(2, n)})
    with pytest.raises(SpaceMismatchError, match="batch size 3"):
        model({"f": torch.randn(2, n), "g": torch.randn(3, n)})
    with pytest.raises(SpaceMismatchError, match="lifting"):
        model(torch.randn(2, n, 2), lifting=torch.randn(2, n + 1))
    # dict inputs are the same as stacked ones
    x = torch.randn(2, n, 2)
    assert torch.equal(model({"f": x[..., 0], "g": x[..., 1]}), model(x))
    with pytest.raises(ValueError, match="no mesh context"):
        SPON.from_config(model.config)(x)


def test_dtype_casts_keep_fe_data_float64(mesh8):
    model = _model(mesh8[1], "gnn").double()
    assert next(model.parameters()).dtype == torch.float64
    assert model.context.lifting.dtype == torch.float64 and model.context.coords.dtype == torch.float64
    model = model.float()
    assert model.context.coords.dtype == torch.float64


def test_graph_kernels_against_dense(mesh8):
    ctx = mesh8[1]
    n = ctx.n_nodes
    source, target = ctx.edge_index
    A = torch.zeros(n, n, dtype=torch.float64)
    A[target, source] = 1.0
    deg = A.sum(1)
    x = torch.randn(n, 2, 3, dtype=torch.float64)
    P = (A + torch.eye(n, dtype=torch.float64)) / (deg + 1)[:, None]
    out = propagate_mean(x, *mean_adjacency(ctx.indptr, source, x.dtype))
    torch.testing.assert_close(out, torch.einsum("ij,jbc->ibc", P, x))
    ones = torch.ones(n, 1, dtype=torch.float64)
    torch.testing.assert_close(propagate_mean(ones, *mean_adjacency(ctx.indptr, source, ones.dtype)), ones)
    msg = torch.randn(ctx.n_edges, 4, dtype=torch.float64)
    M = torch.zeros(n, ctx.n_edges, dtype=torch.float64)
    M[target, torch.arange(ctx.n_edges)] = 1.0
    torch.testing.assert_close(mean_aggregate(msg, target, ctx.degree()), (M @ msg) / deg[:, None])


def test_hop_weights_follow_diffusion_time():
    prop = DeepPropagation(3, hops=4, reference_length=0.1)
    with torch.no_grad():
        prop.gamma.copy_(torch.arange(12.0).reshape(4, 3))
    assert prop.num_hops(0.1) == 4 and prop.num_hops(0.05) == 16 and prop.num_hops(0.2) == 1
    assert torch.equal(prop.hop_weights(4), prop.gamma)
    w = prop.hop_weights(16)
    # hop k of K' gets γ(k K/K') K/K': γ is reproduced at the shared diffusion times
    torch.testing.assert_close(w[3::4] * 4, prop.gamma)
    # and a constant γ keeps its total weight (the same diffusion-time integral)
    with torch.no_grad():
        prop.gamma.fill_(0.5)
    torch.testing.assert_close(prop.hop_weights(16).sum(0), prop.gamma.sum(0))
    torch.testing.assert_close(prop.hop_weights(1).sum(0), prop.gamma.sum(0))


def test_coarse_grid_means_the_same_function_on_every_mesh(mesh8, mesh12):
    torch.manual_seed(0)
    layer = CoarseGridMixing(5, cells=4, gdim=2).double()
    v = torch.randn(1, 2, 5, dtype=torch.float64)
    outs = {}
    for _, ctx in (mesh8, mesh12):
        out = layer(v.expand(ctx.n_nodes, 2, 5), normalized_coordinates(ctx.coords))
        # a constant field has the same cell means on every mesh: key outputs by position
        for xy, o in zip(ctx.coords.tolist(), out):
            outs.setdefault((round(xy[0], 9), round(xy[1], 9)), []).append(o)
    shared = [o for o in outs.values() if len(o) == 2]
    assert len(shared) == 25  # the nodes k/4 of both meshes
    for a, b in shared:
        torch.testing.assert_close(a, b)


@pytest.mark.cuda
def test_cuda_forward_backward_exact_boundary(mesh8):
    ctx = mesh8[1]
    model = _model(ctx, "gnn").cuda()
    assert model.context.device.type == "cuda" and model.context.lifting.dtype == torch.float64
    x = torch.randn(2, ctx.n_nodes, 2, dtype=torch.float64, device="cuda") * 1e3
    u = model(x)
    u.square().sum().backward()
    mask = model.context.mask[:, 0]
    assert torch.equal(u[:, mask], x[:, mask, 1])
    with pytest.raises(ValueError, match="context.to"):
        model(x, context=ctx)  # a CPU context for a CUDA model


def test_model_modules_import_one_way():
    """No import cycle among the modules of fe_operators.models (lazy imports inside functions count)."""
    import ast
    import pathlib

    import fe_operators.models as pkg

    folder = pathlib.Path(pkg.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        name = f"fe_operators.models.{path.stem}"
        tree = ast.parse(path.read_text())
        targets = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        targets |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        graph[name] = {t for t in targets if t.startswith("fe_operators.models.")}
    graph.pop("fe_operators.models.__init__")

    def cycle_from(node, stack):
        if node in stack:
            return stack[stack.index(node):] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, stack + [node])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(m, []) for m in sorted(graph)) if c]
    assert not cycles, " -> ".join(cycles[0])
    assert "fe_operators.models.build" not in graph["fe_operators.models.context"] | graph["fe_operators.models.spon"]
