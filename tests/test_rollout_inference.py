"""The batch-1 rollout path: node-major layout maps and ``RolloutSPON.inference`` (frozen processors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import firedrake as fd

from fe_operators.models.rollout_build import rollout_spon_for_problem, state_layout
from fe_operators.problems.heat import HeatEquation


def _dim1_map(layout, i: int, kind: str, x: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The layout's map as first written: gather and ``index_add`` along dim 1 of ``(batch, n, C)``."""
    rows, cols = getattr(layout, f"{kind}{i}_rows"), getattr(layout, f"{kind}{i}_cols")
    vals = getattr(layout, f"{kind}{i}_vals").to(x.dtype)
    out = x.new_zeros(x.shape[0], n_rows, x.shape[2])
    return out.index_add(1, rows, x[:, cols, :] * vals[None, :, None])


def test_taylor_hood_layout_maps_bit_for_bit_and_exact():
    """P1 pressure onto the P2 nodes and back: the node-major maps give the dim-1 version's
    values bit for bit, the embedding is the P2 interpolant (Firedrake's), the extraction reads
    the vertex values back exactly."""
    mesh = fd.UnitSquareMesh(4, 4)
    V, Q = fd.VectorFunctionSpace(mesh, "CG", 2), fd.FunctionSpace(mesh, "CG", 1)
    W = V * Q
    bcs = [fd.DirichletBC(W.sub(0), fd.Constant((1.0, 0.0)), 1)]
    layout = state_layout(W, bcs)
    assert [f["mapped"] for f in layout.fields] == [False, True]
    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.standard_normal((3, layout.n_dofs)))
    nodes = layout.to_nodes(s)
    p = layout.fields[1]
    block = s[:, p["offset"]:].reshape(3, p["n_nodes"], 1)
    ref = _dim1_map(layout, 1, "embed", block, layout.n_nodes)
    assert torch.equal(nodes[:, :, 2:], ref)
    # the P2 interpolant of the P1 pressure, by Firedrake
    q = fd.Function(Q, val=s[0, p["offset"]:].numpy().copy())
    q2 = fd.Function(fd.FunctionSpace(mesh, "CG", 2)).interpolate(q)
    np.testing.assert_allclose(nodes[0, :, 2].numpy(), q2.dat.data_ro, rtol=0, atol=1e-14)
    # back: each field at its own nodes; the dim-1 extraction of the same node values
    u = torch.from_numpy(rng.standard_normal((2, layout.n_nodes, 3)))
    flat = layout.from_nodes(u)
    ref = _dim1_map(layout, 1, "extract", u[:, :, 2:], p["n_nodes"]).reshape(2, -1)
    assert torch.equal(flat[:, p["offset"]:], ref)
    assert torch.equal(layout.from_nodes(nodes), s)  # P1 vertices are P2 nodes: exact round trip


def _heat(degree: int) -> tuple[HeatEquation, np.ndarray, np.ndarray]:
    problem = HeatEquation(fd.UnitSquareMesh(4, 4), dt=0.05, degree=degree, boundary_value=1.0,
                           boundary_frequency=4.0)
    rng = np.random.default_rng(0)
    params = [problem.sample_parameters(rng) for _ in range(2)]
    states = np.stack([problem.trajectory(p, 4) for p in params])
    values = np.array([[p[k] for k in problem.parameter_names] for p in params])
    return problem, states, values


@pytest.mark.parametrize("processor, options, degree", [
    ("gnn", {"width": 8, "depth": 2, "latent_cells": 0}, 2),
    # geometric levels: the network's finest level is reached through to_finest; aggregation
    # levels (as on the cylinder's mesh): it is the output's own nodes, its mask cached while frozen
    ("hierarchical", {"width": 8, "min_width": 4, "modes": 2, "coarsest_nodes": 10}, 2),
    ("hierarchical", {"width": 8, "min_width": 4, "modes": 2, "coarsest_nodes": 30, "geometric_levels": False}, 2),
])
def test_inference_steps_equal_plain_steps(processor, options, degree):
    """Inside ``inference()`` a step is the plain step bit for bit (boundary exact); a rollout is
    its steps; the frozen cache lives only inside, so changed weights are seen after it."""
    problem, states, values = _heat(degree)
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, processor, mesh_spec="unitsquare:4", **options)
    model.fit_normalizers(states, values)
    model.train()
    s, p = torch.from_numpy(states[:, 1]), torch.from_numpy(values)
    with torch.no_grad():
        plain = model.step(s, p)
        plain2 = model.step(plain, p)
    proc = model.spon.processor
    with model.inference() as m:
        assert m is model and not model.training and not torch.is_grad_enabled()
        fast = model.step(s, p)
        fast2 = model.step(fast, p)
        if processor == "hierarchical":
            assert proc.n_levels >= 2 and len(proc._frozen) > 0  # the weight-only products are reused
            own = model.spon.context.hierarchy.to_finest is None
            assert own == (not options.get("geometric_levels", True))
            assert any(k[0] == "finest" for k in proc._frozen if isinstance(k, tuple)) == own
            assert all(b.frozen_cache is proc._frozen for b in proc.down_blocks[1])
    assert model.training  # restored
    assert torch.equal(fast, plain) and torch.equal(fast2, plain2)
    mask = model.layout.mask
    assert torch.equal(fast2[:, mask], s[:, mask])  # the data of s: boundary error 0
    roll = model.rollout(s, p, 2)
    assert torch.equal(roll[:, 1], plain) and torch.equal(roll[:, 2], plain2)
    if processor == "hierarchical":
        assert proc._frozen is None and all(b.frozen_cache is None for b in proc.down_blocks[1])
        with torch.no_grad():
            proc.down_blocks[1][0].op_weights.mul_(2.0)
        changed = model.rollout(s, p, 1)[:, 1]
        with torch.no_grad():
            assert torch.equal(changed, model.step(s, p)) and not torch.equal(changed, plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csr_mm_op_is_scipys_product_bit_for_bit(dtype):
    """The registered CSR product a traced step records gives scipy's values exactly."""
    import scipy.sparse as sp

    from fe_operators.sparse.maps import SparseMap
    from fe_operators.sparse.kernels import csr_mm
    from fe_operators.sparse.spmm import spmm

    rng = np.random.default_rng(1)
    A = sp.random(40, 30, density=0.2, format="csr", random_state=rng)
    M = SparseMap.from_scipy(A)
    x = torch.from_numpy(rng.standard_normal((30, 7))).to(dtype)
    data = torch.from_numpy(M.scipy(dtype).data)
    assert torch.equal(csr_mm(M.crow, M.col, data, x), spmm(M, x))
    assert torch.equal(spmm(M, x), torch.from_numpy(A.astype(x.numpy().dtype) @ x.numpy()))


def test_traced_step_used_and_rejected_when_it_would_differ(monkeypatch):
    """Inside ``inference()`` the hierarchical step runs traced (one graph per input shape) and
    equals the plain step bit for bit; a kernel that escapes the trace (baked in as a constant)
    is caught by the two-step check and the plain step runs instead."""
    import fe_operators.models.layers.operator_conv as oc

    problem, states, values = _heat(2)
    torch.manual_seed(0)
    model = rollout_spon_for_problem(problem, "hierarchical", mesh_spec="unitsquare:4", width=8, min_width=4,
                                     modes=2, coarsest_nodes=10)
    model.fit_normalizers(states, values)
    s, p = torch.from_numpy(states[:, 1]), torch.from_numpy(values)
    with model.inference(traced=False):
        plain = model.rollout(s, p, 3)
        plain1 = model.step(s[:1], p[:1])
        assert model._traced is None
    with model.inference():
        fast = model.rollout(s, p, 3)
        kept = [v for v in model._traced.values() if v is not None]
        assert len(model._traced) == 1 and len(kept) == 1  # traced once, for (2, n_dofs)
        one = model.step(s[:1], p[:1])  # another shape: its own trace
        assert len(model._traced) == 2
    assert model._traced is None
    assert torch.equal(fast, plain) and torch.equal(one, plain1)
    # a product the trace cannot see: the plain numba call, whose output the trace keeps as a constant
    monkeypatch.setattr(oc, "channel_conv", lambda crow, col, w, u: oc._numba_product(crow, col, w, u))
    monkeypatch.setattr(oc, "channel_conv_norm",
                        lambda crow, col, w, u, *norm: oc._numba_product_norm(crow, col, w, u, *norm))
    with model.inference():
        again = model.rollout(s, p, 3)
        assert list(model._traced.values()) == [None]
    assert torch.equal(again, plain)
