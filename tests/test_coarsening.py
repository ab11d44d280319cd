"""Levels below a hierarchy's coarsest mesh by smoothed aggregation (multigrid.aggregation)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import firedrake as fd

from fe_operators.fem.hierarchy import hierarchy_operators
from fe_operators.io import load_mesh
from fe_operators.models.build import hierarchy_context
from fe_operators.multigrid.aggregation import extend_hierarchy
from fe_operators.multigrid.cycle import MultigridCycle, cycle_levels


def _ops(spec: str, coarsest: int):
    V = fd.FunctionSpace(load_mesh(spec), "CG", 1)
    bc = fd.DirichletBC(V, 0.0, "on_boundary")
    return V, bc, extend_hierarchy(hierarchy_operators(V, [bc]), coarsest)


@pytest.fixture(scope="module")
def plate():
    return _ops("plate_holes/r1", 100)


def test_aggregated_levels_are_galerkin_and_vanish_on_the_dirichlet_nodes(plate):
    _V, _bc, ops = plate
    sizes = [lv.n_nodes for lv in ops.levels]
    assert len(sizes) == 4 and sizes[0] <= 100 and sizes[2:] == [867, 3286]
    for i in (0, 1):  # the two aggregated levels
        fine, coarse, P = ops.levels[i + 1], ops.levels[i], ops.prolongations[i].to_scipy()
        boundary = fine.boundary.numpy()
        assert not coarse.boundary.any()
        if boundary.any():
            assert abs(P[boundary]).max() == 0
        coarse_ops = coarse.scipy_operators()
        for name, A in fine.scipy_operators().items():
            assert abs(coarse_ops[name] - (P.T @ A @ P)).max() <= 1e-13 * abs(A).max()
        assert np.array_equal(coarse_ops["mass"].indices, coarse_ops["C_x"].indices)
        if boundary.any():  # the FE level: smoothed aggregation keeps constants away from the boundary
            K = fine.stiffness()
            near = (abs(K) @ boundary.astype(float)) > 0
            inner = ~near & ~boundary
            assert np.allclose((P @ np.ones(coarse.n_nodes))[inner], 1.0, rtol=0, atol=1e-12)
        assert np.isclose(coarse.h / fine.h, 2.0, rtol=0.35)


def test_every_refinement_of_a_base_mesh_gets_the_same_coarse_levels(plate):
    _V, _bc, ops1 = plate
    _V2, _bc2, ops2 = _ops("plate_holes/r2", 100)
    for a, b in zip(ops1.levels[:3], ops2.levels[:3]):
        assert torch.equal(a.coords, b.coords) and a.h == b.h
        assert abs(a.scipy_operators()["K_xx"] - b.scipy_operators()["K_xx"]).max() == 0


def test_classical_v_cycle_on_the_extended_hierarchy_converges(plate):
    V, bc, _ops = plate
    H = hierarchy_context(V, [bc], coarsest_nodes=100)
    assert H.n_levels == 4
    cycle = MultigridCycle(1, H.finest.n_operators, H.n_levels, pre_smoothing=2, post_smoothing=1,
                           coarsest_smoothing=30).double()
    cycle.set_classical(H.finest.laplacian, omega=2.0 / 3.0)
    levels = cycle_levels(H, 0, H.levels[0].h)
    n = H.finest.n_nodes
    ops = H.finest.operators.to_scipy()
    K = sum(c * ops[k * n:(k + 1) * n] for k, c in enumerate(H.finest.laplacian.tolist()))
    keep = (~H.finest.boundary.numpy()).astype(float)
    K = (sp.diags(keep) @ K @ sp.diags(keep) + sp.diags(1.0 - keep)).tocsr()
    x = np.random.default_rng(1).standard_normal(n) * keep
    energy = []
    for _ in range(10):
        with torch.no_grad():
            x = x + cycle(torch.from_numpy(-(K @ x) * keep)[:, None, None], levels, dual=True)[:, 0, 0].numpy()
        energy.append(np.sqrt(x @ (K @ x)))
    assert (energy[-1] / energy[3]) ** (1 / 6) < 0.6
