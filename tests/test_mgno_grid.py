"""The paper's conv MgNO baseline (benchmarks/mgno_grid.py): V-cycle maths, levels, DOF wrapper, sizes."""

import math
import sys
from pathlib import Path

import firedrake as fd
import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from mgno_grid import (PINNED, GridMgNO, MgNOGrid, MgVCycle, OneCycle, grid_mgno,  # noqa: E402
                       level_sizes)


def expected_params(side: int, in_channels: int, channels: int, layers: int, levels: int, steps: int) -> int:
    """Parameters of MgNOGrid (one output channel), derived by hand.

    One layer with ``c`` input and ``C`` hidden channels, ``L`` levels and ``s`` smoothing
    steps in all: ``s`` smoothers S (3x3, c -> C) and ``s - 1`` operators A (3x3, C -> c; the
    first step starts from zero), ``L - 1`` data restrictions R (3x3, c -> c) and state
    restrictions Pi (3x3, C -> C), ``L - 1`` transposed convs (k x k, C -> C; k = 3 below an
    odd side, 4 below an even one), and the 1x1 conv W0 with bias (c C + C).  Plus the
    bias-free projection C -> 1.
    """
    sizes = level_sizes(side, levels)
    k2 = sum((3 if n % 2 else 4) ** 2 for n in sizes[:-1])
    total = channels
    for i in range(layers):
        c = in_channels if i == 0 else channels
        total += 9 * c * channels * (2 * steps - 1) + 9 * (levels - 1) * (channels ** 2 + c ** 2) \
            + channels ** 2 * k2 + c * channels + channels
    return total


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_levels_of_the_65_grid_and_sizes_coming_back():
    assert level_sizes(65) == [65, 33, 17, 9, 5, 3]
    assert level_sizes(211, 6) == [211, 106, 53, 27, 14, 7]  # the paper's Darcy grid: odd and even sides
    assert level_sizes(65, 3) == [65, 33, 17]
    with pytest.raises(ValueError, match="at most 7 levels"):
        level_sizes(65, 8)
    model = MgNOGrid(65, **PINNED)
    assert model.sizes == [65, 33, 17, 9, 5, 3] and model.smoothing == [1, 1, 1, 1, 1, 2]
    torch.manual_seed(0)
    for side, sizes in ((65, [65, 33, 17, 9, 5, 3]), (211, [211, 106, 53, 27, 14, 7])):
        cycle = MgVCycle(1, 3, level_sizes(side, len(sizes)), [1] * (len(sizes) - 1) + [2])
        states = cycle.down(torch.randn(2, 1, side, side))
        assert [tuple(s.shape) for s in states] == [(2, 3, n, n) for n in sizes]
        assert cycle.up(states).shape == (2, 3, side, side)


@pytest.mark.parametrize("in_channels", [1, 24])
def test_vcycle_is_linear(in_channels):
    torch.manual_seed(1)
    cycle = MgVCycle(in_channels, 24, level_sizes(65), [1, 1, 1, 1, 1, 2]).double()
    f1, f2 = torch.randn(2, in_channels, 65, 65, dtype=torch.float64), torch.randn(2, in_channels, 65, 65,
                                                                                  dtype=torch.float64)
    a, b = 0.7, -1.9
    with torch.no_grad():
        w1, w2, w12 = cycle(f1), cycle(f2), cycle(a * f1 + b * f2)
    assert w1.abs().max() > 1e-3  # not trivially zero
    assert (w12 - (a * w1 + b * w2)).abs().max() <= 1e-12 * (a * w1 + b * w2).abs().max()


def test_two_level_cycle_is_the_written_multigrid_step():
    """u0 = S0 f; u1 = Pi u0 + S1 (R f - A1 Pi u0); result u0 + P u1 (3x3 convs, zero padding)."""
    torch.manual_seed(2)
    cycle = MgVCycle(2, 3, [9, 5], [1, 1]).double()
    f = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    w = lambda m: m.weight  # noqa: E731
    u0 = F.conv2d(f, w(cycle.smoothers[0][0]), padding=1)
    f1 = F.conv2d(f, w(cycle.restrict_data[0]), stride=2, padding=1)
    u1 = F.conv2d(u0, w(cycle.restrict_state[0]), stride=2, padding=1)
    u1 = u1 + F.conv2d(f1 - F.conv2d(u1, w(cycle.operators[1][0]), padding=1), w(cycle.smoothers[1][0]), padding=1)
    expected = u0 + F.conv_transpose2d(u1, w(cycle.prolong[0]), stride=2, padding=1)
    assert len(cycle.operators[0]) == 0 and cycle.prolong[0].kernel_size == (3, 3)
    with torch.no_grad():
        assert torch.allclose(cycle(f), expected, rtol=0, atol=1e-13)


def test_parameter_count_formula():
    pinned = MgNOGrid(65, **PINNED)
    assert n_params(pinned) == expected_params(65, 1, 24, 4, 6, 7) == 492_021
    # on an even 6-level grid every transposed conv is 4x4: the paper's 0.57 M Darcy model
    assert n_params(MgNOGrid(128, **PINNED)) == expected_params(128, 1, 24, 4, 6, 7) == 572_661
    other = MgNOGrid(211, in_channels=1, channels=5, layers=2, levels=4, smoothing=[2, 1, 0, 3])
    assert n_params(other) == expected_params(211, 1, 5, 2, 4, 6)


@pytest.fixture(scope="module")
def unit_square_coords():
    n = 8
    mesh = fd.UnitSquareMesh(n, n)
    V = fd.FunctionSpace(mesh, "CG", 1)
    W = fd.VectorFunctionSpace(mesh, "CG", 1)
    coords = fd.assemble(fd.interpolate(fd.SpatialCoordinate(mesh), W)).dat.data_ro.copy()
    assert V.dim() == (n + 1) ** 2
    return n, coords


def test_dof_grid_round_trip(unit_square_coords):
    n, coords = unit_square_coords
    x = torch.from_numpy(coords[:, 0] + 10.0 * coords[:, 1])[None].repeat(3, 1) * torch.arange(1, 4.0)[:, None]
    model = grid_mgno(coords, n, x, x, channels=4, layers=1)
    g = model.grid(x)
    iy, ix = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    assert torch.allclose(g[1, 0], torch.from_numpy(2.0 * (ix + 10.0 * iy) / n), rtol=0, atol=1e-13)
    assert torch.equal(model.dofs(g), x)


def test_normalizers_are_the_papers_unit_gaussian(unit_square_coords):
    n, coords = unit_square_coords
    torch.manual_seed(3)
    x = torch.rand(6, coords.shape[0], dtype=torch.float64) * 9 + 3
    y = torch.randn(6, coords.shape[0], dtype=torch.float64)
    model = grid_mgno(coords, n, x, y, channels=4, layers=1)
    assert torch.allclose(model.dofs(model.x_mean), x.mean(0, keepdim=True), rtol=0, atol=1e-14)
    assert torch.allclose(model.dofs(model.y_std), y.std(0, keepdim=True) + 1e-5, rtol=0, atol=1e-14)
    model.mgno = torch.nn.Identity()  # encode then decode: x -> (x - mean_x)/std_x -> * std_y + mean_y
    expected = (x - x.mean(0)) / (x.std(0) + 1e-5) * (y.std(0) + 1e-5) + y.mean(0)
    assert torch.allclose(model(x), expected, rtol=1e-6, atol=1e-6)


def test_output_shape_and_every_parameter_gets_a_gradient():
    mesh = fd.UnitSquareMesh(64, 64)
    W = fd.VectorFunctionSpace(mesh, "CG", 1)
    coords = fd.assemble(fd.interpolate(fd.SpatialCoordinate(mesh), W)).dat.data_ro.copy()
    torch.manual_seed(4)
    x = torch.rand(2, coords.shape[0], dtype=torch.float64) * 9 + 3
    y = torch.randn(2, coords.shape[0], dtype=torch.float64)
    model = grid_mgno(coords, 64, x, y)
    out = model(x)
    assert out.shape == x.shape and out.dtype == torch.float64
    ((out - y) ** 2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_one_cycle_is_torchs_one_cycle_lr():
    """At the budget fraction of step t of T, OneCycle gives OneCycleLR's rate and beta1 of that step."""
    total, pct = 50, 0.2
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=total, pct_start=pct, div_factor=2,
                                              final_div_factor=100)
    ours = OneCycle(5e-4, div_factor=2, final_div_factor=100, pct_start=pct)
    end1 = pct * total - 1  # torch's last step of the rising phase
    for t in range(total):
        frac = pct * t / end1 if t <= end1 else pct + (1 - pct) * (t - end1) / (total - 1 - end1)
        lr, beta1 = ours.values(frac)
        group = opt.param_groups[0]
        assert math.isclose(lr, group["lr"], rel_tol=1e-12) and math.isclose(beta1, group["betas"][0], rel_tol=1e-12)
        opt.step()
        ref.step()
    assert ours.values(1.0)[0] == pytest.approx(5e-4 / 200, rel=1e-12)
