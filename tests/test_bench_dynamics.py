"""The MeshGraphNets baseline of ``make bench-dynamics`` (benchmarks/mgn.py) and the bench's smoke run."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

import firedrake as fd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from mgn import (NODE_TYPES, EncodeProcessDecode, MGNConfig, MGNSimulator, OnlineNormalizer,  # noqa: E402
                 cylinder_mesh_graph, rollout_mgn, train_mgn)

from fe_operators.io import load_mesh  # noqa: E402
from fe_operators.problems.navier_stokes import NavierStokesCylinder  # noqa: E402

TINY = MGNConfig(latent=8, message_passing_steps=2, warmup_batches=2)


@pytest.fixture(scope="module")
def cylinder():
    problem = NavierStokesCylinder(load_mesh("channel_cylinder"), dt=1 / 100)
    return problem, cylinder_mesh_graph(problem)


@pytest.fixture(scope="module")
def square_graph():
    """The graph of Taylor-Hood on a 4 x 4 unit square (inflow 1 left, outflow 2 right, walls 3 and 4)."""
    from types import SimpleNamespace

    mesh = fd.UnitSquareMesh(4, 4)
    V, Q = fd.VectorFunctionSpace(mesh, "CG", 2), fd.FunctionSpace(mesh, "CG", 1)
    return cylinder_mesh_graph(SimpleNamespace(velocity_space=V, state_space=V * Q, inlet_marker=1,
                                               noslip_markers=(3, 4)))


def _bc_state(problem, re, seed=0):
    """A random state array whose velocity satisfies the Dirichlet data of ``Re = re``."""
    rng = np.random.default_rng(seed)
    state = problem.array_to_state(rng.standard_normal(problem.n_dofs))
    for bc in problem.output_bcs({"Re": re}):
        bc.apply(state)
    return problem.state_to_array(state)


def _dense_reference(net: EncodeProcessDecode, x, edge_attr, senders, receivers):
    """The network with a dense adjacency: all pairs through the concatenating edge MLP, masked sums."""
    B, n = x.shape[:2]
    A = torch.zeros(n, n, dtype=torch.bool)
    A[receivers, senders] = True
    feat = torch.zeros(n, n, edge_attr.shape[-1], dtype=x.dtype)
    feat[receivers, senders] = edge_attr
    v = net.node_encoder(x)
    e = net.edge_encoder(feat).expand(B, n, n, -1)  # e[b, r, s]
    for block in net.blocks:
        vr = v[:, :, None, :].expand(B, n, n, -1)
        vs = v[:, None, :, :].expand(B, n, n, -1)
        e_new = block.edge_mlp(torch.cat([e, vs, vr], dim=-1)) * A[None, :, :, None]
        v_new = block.node_mlp(torch.cat([v, e_new.sum(2)], dim=-1))
        v, e = v + v_new, e + e_new
    return net.decoder(v)


def test_message_passing_equals_dense_reference():
    torch.manual_seed(0)
    n = 7
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2], [4, 5], [5, 6], [6, 4], [2, 4]])
    senders = torch.cat([pairs[:, 0], pairs[:, 1]])
    receivers = torch.cat([pairs[:, 1], pairs[:, 0]])
    edge_attr = torch.randn(senders.shape[0], 3, dtype=torch.float64)
    x = torch.randn(2, n, 5, dtype=torch.float64)
    net = EncodeProcessDecode(5, 3, 2, latent=8, steps=3).double()
    got = net(x, edge_attr, senders, receivers)
    want = _dense_reference(net, x, edge_attr, senders, receivers)
    assert got.shape == (2, n, 2)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the isolated structure matters: node 1's output changes if an edge into it changes
    edge_attr2 = edge_attr.clone()
    edge_attr2[0] += 1.0  # edge 0 -> 1
    changed = (net(x, edge_attr2, senders, receivers) - got).abs().sum(-1)[0]
    assert changed[1] > 0


def test_pinned_design_sizes():
    c = MGNConfig()
    assert (c.latent, c.message_passing_steps, c.hidden_layers, c.noise_std) == (128, 15, 2, 2e-2)
    net = EncodeProcessDecode(7, 3, 3)
    assert len(net.blocks) == 15
    ln = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(ln) == 2 + 2 * 15  # encoders and every block MLP; not the decoder
    assert not isinstance(list(net.decoder)[-1], torch.nn.LayerNorm)
    # encoder 7->128->128->128 + LN, edges 3->..., 15 x (edge 384->..., node 256->...), decoder 128->...->3
    def mlp(n_in, n_out, ln=True):  # Linear(n_in, 128), Linear(128, 128), Linear(128, n_out), LayerNorm
        return n_in * 128 + 128 + 128 * 128 + 128 + 128 * n_out + n_out + (2 * n_out if ln else 0)

    expected = mlp(7, 128) + mlp(3, 128) + 15 * (mlp(384, 128) + mlp(256, 128)) + mlp(128, 3, False)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_online_normalizer():
    norm = OnlineNormalizer(2, max_accumulations=2)
    a, b, c = torch.randn(10, 2), torch.randn(3, 4, 2) * 3 + 1, torch.randn(5, 2) + 100
    norm(a)
    norm(b)
    norm(c)  # past max_accumulations: not added
    rows = torch.cat([a, b.reshape(-1, 2)]).double()
    torch.testing.assert_close(norm.mean, rows.mean(0))
    torch.testing.assert_close(norm.std, rows.std(0, unbiased=False))
    norm.eval()
    norm2 = OnlineNormalizer(2)
    norm2.eval()
    norm2(a)
    assert int(norm2.calls) == 0
    torch.testing.assert_close(norm.inverse(norm(c)), c)


def test_cylinder_graph(cylinder):
    problem, g = cylinder
    V, Q = problem.velocity_space, problem.state_space.sub(1)
    assert g.n_dofs == problem.n_dofs and g.n_nodes == V.dof_dset.size and g.n_pressure == Q.dof_dset.size
    # Dirichlet nodes are exactly the nodes of the problem's output conditions
    bc_nodes = np.unique(np.concatenate([bc.nodes for bc in problem.output_bcs({"Re": 100.0})]))
    assert np.array_equal(np.flatnonzero(g.dirichlet.numpy()), bc_nodes)
    types = g.node_type.numpy()
    assert set(np.unique(types)) == set(range(len(NODE_TYPES)))
    outflow = fd.DirichletBC(V, 0.0, 2).nodes
    assert (types[np.setdiff1d(outflow, bc_nodes)] == NODE_TYPES.index("outflow")).all()
    # the P1 pressure read at the P2 nodes is Firedrake's interpolation into P2 (P1 ⊂ P2)
    x = fd.SpatialCoordinate(problem.mesh)
    p = fd.Function(Q).interpolate(x[0] ** 2 - 3 * x[1] * x[0] + 1)
    p2 = fd.Function(fd.FunctionSpace(problem.mesh, "CG", 2)).interpolate(p)
    got = g.pressure_at_nodes(torch.from_numpy(p.dat.data_ro.copy()))
    np.testing.assert_allclose(got.numpy(), p2.dat.data_ro, rtol=0, atol=1e-13)
    X1 = fd.Function(fd.VectorFunctionSpace(problem.mesh, "CG", 1)).interpolate(x).dat.data_ro
    np.testing.assert_allclose(g.coords[g.p_vertex.numpy()], X1, atol=1e-14)
    # split/join round trip in the order of state_to_array
    s = torch.from_numpy(_bc_state(problem, 100.0))
    u, pp = g.split(s)
    assert torch.equal(g.join(u, pp), s)
    np.testing.assert_array_equal(u.numpy(), problem.array_to_state(s.numpy()).subfunctions[0].dat.data_ro)


@pytest.mark.parametrize("nodes", ["p2", "p1"])
def test_step_shapes_and_exact_dirichlet(cylinder, nodes):
    problem = cylinder[0]
    g = cylinder[1] if nodes == "p2" else cylinder_mesh_graph(problem, "p1")
    assert g.n_dofs == problem.n_dofs
    if nodes == "p1":
        assert g.n_nodes == problem.state_space.sub(1).dof_dset.size
    torch.manual_seed(0)
    model = MGNSimulator(g, 1, TINY)
    res = [100.0, 160.0]
    states = np.stack([_bc_state(problem, r, k) for k, r in enumerate(res)])
    params = torch.tensor(res)[:, None]
    s = torch.as_tensor(states, dtype=torch.float32)
    model.train()
    model.loss(s, s, params)  # fill the normalisers once
    model.eval()
    new = model.step(s, params)
    assert new.shape == (2, problem.n_dofs) and new.dtype == torch.float32
    idx = g.dirichlet_dofs
    assert torch.equal(new[:, idx], s[:, idx])
    free = torch.ones(problem.n_dofs, dtype=torch.bool)
    free[idx] = False
    assert not torch.equal(new[:, free], s[:, free])  # the other DOFs moved
    rolled = rollout_mgn(model, states, params.numpy(), 3)
    assert rolled.shape == (2, 4, problem.n_dofs) and rolled.dtype == np.float64
    for k, r in enumerate(res):
        exact = problem.array_to_state(np.zeros(problem.n_dofs))
        for bc in problem.output_bcs({"Re": r}):
            bc.apply(exact)
        exact = problem.state_to_array(exact)
        bc_nodes = np.unique(np.concatenate([bc.nodes for bc in problem.output_bcs({"Re": r})]))
        assert np.array_equal(np.sort(idx.numpy()), np.sort(np.concatenate([2 * bc_nodes, 2 * bc_nodes + 1])))
        assert np.abs(exact[idx]).max() > 1.0  # the inflow is there
        for j in range(4):
            np.testing.assert_array_equal(rolled[k, j, idx], exact[idx])  # bitwise: boundary error 0


def test_vertex_graph_interpolates_midpoints(cylinder):
    problem = cylinder[0]
    g = cylinder_mesh_graph(problem, "p1")
    x = fd.SpatialCoordinate(problem.mesh)
    # a velocity linear in space is P1: reading it at the vertices and interpolating is exact
    w = fd.Function(problem.state_space)
    w.subfunctions[0].interpolate(fd.as_vector((1 + 2 * x[0] - x[1], 3 * x[1])))
    w.subfunctions[1].interpolate(x[0] * x[1])
    s = torch.from_numpy(problem.state_to_array(w))
    u, p = g.split(s)
    assert u.shape == (g.n_nodes, 2)
    torch.testing.assert_close(g.join(u, p), s, rtol=0, atol=1e-13)
    torch.testing.assert_close(g.pressure_at_nodes(p), p)
    # a quadratic one is not: the midpoints change, the vertices do not
    w.subfunctions[0].interpolate(fd.as_vector((x[0] ** 2, 0.0)))
    s = torch.from_numpy(problem.state_to_array(w))
    back = g.join(*g.split(s))
    vel = back[:2 * g.n_velocity_nodes].reshape(-1, 2)
    orig = s[:2 * g.n_velocity_nodes].reshape(-1, 2)
    torch.testing.assert_close(vel[g.velocity_nodes], orig[g.velocity_nodes], rtol=0, atol=0)
    assert (vel - orig).abs().max() > 1e-6


def test_square_graph(square_graph):
    g = square_graph
    assert (g.n_nodes, g.n_pressure) == (81, 25)
    counts = np.bincount(g.node_type.numpy(), minlength=4)
    # 9 nodes a side: walls (with the 4 corners) 2 x 9, inflow and outflow 7 each, 49 interior
    assert counts.tolist() == [49, 18, 7, 7]
    assert int(g.dirichlet.sum()) == 25


def test_training_reduces_loss(square_graph):
    g = square_graph
    torch.manual_seed(0)
    config = MGNConfig(latent=16, message_passing_steps=2, noise_std=0.0, lr=3e-3, lr_final=3e-3, batch=2,
                       warmup_batches=2)
    model = MGNSimulator(g, 1, config)
    rng = np.random.default_rng(1)
    s0 = rng.standard_normal((2, g.n_dofs))
    n_u = 2 * g.n_nodes
    s0[:, n_u:] = np.array([[1.0], [2.0]]) * g.coords[g.p_vertex.numpy(), 0]  # a pressure the inputs determine
    drift = np.zeros_like(s0)
    drift[:, :n_u] = np.repeat(rng.standard_normal((2, 1, 2)), g.n_nodes, axis=1).reshape(2, -1)
    drift[:, :n_u] *= ~np.repeat(g.dirichlet.numpy(), 2)
    traj = np.stack([s0, s0 + 0.1 * drift, s0 + 0.2 * drift], axis=1)  # (2 trajectories, 3 states)
    params = np.array([[100.0], [150.0]])
    train_mgn(model, traj, params, budget=1e9, max_steps=0, log=lambda _: None)  # normalisers only
    s, t = (torch.as_tensor(traj[:, j], dtype=torch.float32) for j in (0, 1))
    p = torch.as_tensor(params, dtype=torch.float32)
    with torch.no_grad():
        before = float(model.loss(s, t, p))
    info = train_mgn(model, traj, params, budget=1e9, max_steps=80, log=lambda _: None)
    with torch.no_grad():
        after = float(model.loss(s, t, p))
    assert info["steps"] == 80
    assert after < 0.4 * before, (before, after)


@pytest.mark.slow
def test_bench_dynamics_smoke(tmp_path, capsys):
    """The whole bench in its smoke mode, every stage (about 50-60 s on a loaded 2-core machine)."""
    import re

    from bench_dynamics import TARGETS, main

    results = main(["--smoke", "--out", str(tmp_path), "--threads", "1"])
    out = capsys.readouterr().out
    assert "machine:" in out
    for name in TARGETS:  # every ratio line prints, with a number (nan where St has no crossings)
        assert re.search(rf"^ratio {name} (nan|[-+0-9.e]+)$", out, re.M), name
    # the product's trajectory files, read back
    assert len(list(tmp_path.glob("cylinder-*.h5"))) == 2
    assert results["mgn"]["max_boundary_error"] == 0.0 and results["spon"]["max_boundary_error"] == 0.0
    assert np.isfinite(results["mgn"]["rel_l2_time_avg"]) and np.isfinite(results["spon"]["rel_l2_time_avg"])
    # the ratios are the printed quantities
    spon, ratios = results["spon"], results["ratios"]
    assert ratios["dyn_rollout_vs_mgn"] == pytest.approx(spon["rel_l2_time_avg"] / results["mgn"]["rel_l2_time_avg"])
    # the surrogates step every 2nd stored state in the smoke run: their step against 2 FE steps
    assert ratios["dyn_step_vs_fe_step"] == pytest.approx(spon["step_s"] / (2 * spon["fe_step_s"]))
    assert spon["steps"] > 0 and "the surrogates step every 2 stored states" in out
    assert spon["fe_step_s"] > 0 and spon["step_s"] > 0
    # the divergence-free option: divergence at round-off, Dirichlet values copied, the raw rollout is not
    assert spon["div_free"] <= 1e-10 < spon["div_raw"]
    assert spon["div_free_boundary_error"] == 0.0
    assert results["fe_step"]["fe_step_s"] > 0 and results["beam"]["newton_s"] > 0
    assert spon["processor"] == "hierarchical" and spon["options"]["act"] == "relu"  # the default
    # the projection at every step (default): the rollout without it and the step without it beside
    assert np.isfinite(spon["plain"]["rel_l2_time_avg"]) and 0 < spon["plain_step_s"]
    assert "SPON (divergence-free at every step): rollout of" in out and "SPON without it: rollout of" in out
    # the GNN on the same (cached) data: the SPON stage alone, rolled out without the projection, on
    # every stored state, the projection inside its loss
    gnn = main(["--smoke", "--out", str(tmp_path), "--threads", "1", "--stage", "spon", "--spon-processor", "gnn",
                "--no-spon-leray-loop", "--every", "1", "--spon-project-in-training"])
    assert "the Leray projection inside the loss" in capsys.readouterr().out
    assert gnn["spon"]["processor"] == "gnn" and gnn["spon"]["max_boundary_error"] == 0.0
    assert "plain" not in gnn["spon"] and "plain_step_s" not in gnn["spon"]
    # its own FE steps: the step ratio without the fe_step stage; one stored step per step
    assert gnn["ratios"]["dyn_step_vs_fe_step"] == pytest.approx(gnn["spon"]["step_s"] / gnn["spon"]["fe_step_s"])


def test_bench_dynamics_spon_options():
    """--spon-processor / --spon-options: the run's options with the given ones on top, checked up front."""
    from bench_dynamics import parse, settings, spon_processor

    from fe_operators.errors import ConfigError

    args = parse(["--smoke", "--spon-options", '{"width": 12}'])
    name, options = spon_processor(args, settings(args))
    assert name == "hierarchical" and options["width"] == 12 and options["min_width"] == 4
    args = parse(["--spon-processor", "gnn"])
    assert spon_processor(args, settings(args)) == ("gnn", {"width": 48, "depth": 4, "latent_cells": 0})
    with pytest.raises(ConfigError, match="--spon-options.*nodes"):
        args = parse(["--spon-options", '{"nodes": 3}'])
        spon_processor(args, settings(args))
    with pytest.raises(SystemExit, match="not JSON"):
        args = parse(["--spon-options", "{width: 3}"])
        spon_processor(args, settings(args))
