"""The latent-grid Fourier stage: grid transfers, the spectral layer, the GNN with it."""

import math

import pytest
import torch

from fe_operators.models import GNNProcessor, LatentGridSpectral, grid_transfer


def _points(n: int, gdim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, gdim, generator=g, dtype=torch.float64) * 2 - 1
    return torch.cat([x, -torch.ones(1, gdim, dtype=torch.float64), torch.ones(1, gdim, dtype=torch.float64)])


@pytest.mark.parametrize("gdim", [1, 2, 3])
def test_interpolation_is_exact_for_multilinear_fields(gdim):
    cells = 5
    x = _points(200, gdim)
    interp, pool = grid_transfer(x, cells)
    n_grid = (cells + 1) ** gdim
    assert interp.shape == (x.shape[0], n_grid) and pool.shape == (n_grid, x.shape[0])
    dense = interp.to_dense()
    torch.testing.assert_close(dense.sum(1), torch.ones(x.shape[0], dtype=torch.float64))
    # vertex k has coordinates -1 + 2 i_j / cells with k = sum_j i_j (cells + 1)^j
    k = torch.arange(n_grid)
    idx = torch.stack([(k // (cells + 1) ** j) % (cells + 1) for j in range(gdim)], 1)
    vertices = -1 + 2 * idx.double() / cells
    coef = torch.linspace(0.5, 2.0, gdim, dtype=torch.float64)
    f = lambda p: p @ coef + 0.3 + p.prod(1)  # affine plus the multilinear product term
    torch.testing.assert_close(dense @ f(vertices), f(x))


def test_pool_is_a_weighted_average():
    x = _points(300, 2)
    interp, pool = grid_transfer(x, 4)
    p = pool.to_dense()
    touched = p.sum(1) > 0
    torch.testing.assert_close(p.sum(1)[touched], torch.ones(int(touched.sum()), dtype=torch.float64))
    assert touched.all()  # 300 random points touch every vertex of a 5x5 grid
    # pool = D^-1 interp^T: the same sparsity, rows rescaled
    t = interp.to_dense().T
    torch.testing.assert_close(p, t / t.sum(1, keepdim=True))


def _grid_field(layer: LatentGridSpectral, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes placed at the grid vertices (so pooling and interpolation are identities)."""
    cells = layer.cells
    k = torch.arange((cells + 1) ** layer.gdim)
    idx = torch.stack([(k // (cells + 1) ** j) % (cells + 1) for j in range(layer.gdim)], 1)
    x = -1 + 2 * idx.double() / cells
    return x, values


def _identity_spectral(layer: LatentGridSpectral) -> None:
    """R = identity on every kept mode, W = 0, identity in/out maps, no activation."""
    w = layer.width
    with torch.no_grad():
        layer.spectral.zero_()
        eye = torch.eye(w, dtype=layer.spectral.dtype)
        layer.spectral[..., 0] = eye.reshape(w, w, *([1] * layer.gdim))
        for lin in (layer.lin_in, layer.lin_out):
            lin.weight.copy_(torch.eye(w))
            lin.bias.zero_()
        layer.pointwise.weight.zero_()
        layer.pointwise.bias.zero_()
    layer.act = torch.nn.Identity()


def test_fourier_stage_keeps_low_modes_and_drops_high_ones():
    cells, modes = 10, 3  # an 11x11 vertex grid
    layer = LatentGridSpectral(2, cells, modes, 2).double()
    _identity_spectral(layer)
    x, _ = _grid_field(layer, None)
    interp, pool = grid_transfer(x, cells)
    size = cells + 1
    i0 = torch.round((x[:, 0] + 1) * cells / 2)
    i1 = torch.round((x[:, 1] + 1) * cells / 2)
    # channel 0: a kept mode (frequency 2 along axis 0, -1 along axis 1: both signs are indexed)
    low = torch.cos(2 * math.pi * (2 * i0 - 1 * i1) / size)
    # channel 1: a dropped mode (frequency 4 >= modes along axis 1)
    high = torch.cos(2 * math.pi * (4 * i1) / size)
    h = torch.stack([low, high], -1).unsqueeze(1)  # (n, batch 1, 2)
    out = layer(h, interp, pool) - h  # the residual branch only
    torch.testing.assert_close(out[:, 0, 0], low)
    torch.testing.assert_close(out[:, 0, 1], torch.zeros_like(high), atol=1e-12, rtol=0)


def test_single_mode_is_the_grid_mean():
    layer = LatentGridSpectral(3, 6, 1, 2).double()
    torch.manual_seed(0)
    x = _points(500, 2)
    interp, pool = grid_transfer(x, 6)
    h = torch.randn(x.shape[0], 2, 3, dtype=torch.float64)
    v = (pool @ layer.lin_in(h).reshape(x.shape[0], 6)).reshape(-1, 2, 3)  # (grid, batch, W)
    mean = v.mean(0)  # (batch, W): the zero mode over the grid
    spec = mean @ layer.spectral[..., 0].reshape(3, 3)  # modes=1 keeps k=0 only: Re(R_0) on the mean
    w = layer.act(spec.unsqueeze(0) + layer.pointwise(v))
    expected = h + layer.lin_out((interp @ w.reshape(-1, 6)).reshape(x.shape[0], 2, 3))
    torch.testing.assert_close(layer(h, interp, pool), expected)


def test_fourier_stage_float32_and_float64_and_gradients():
    x = _points(100, 2)
    for dtype in (torch.float32, torch.float64):
        layer = LatentGridSpectral(4, 8, 4, 2).to(dtype)
        interp, pool = grid_transfer(x.to(dtype), 8)
        h = torch.randn(x.shape[0], 3, 4, dtype=dtype, requires_grad=True)
        out = layer(h, interp, pool)
        assert out.dtype == dtype and out.shape == h.shape
        out.square().sum().backward()
        assert h.grad is not None and torch.isfinite(h.grad).all()
        assert layer.spectral.grad is not None and layer.spectral.grad.abs().sum() > 0


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="modes"):
        LatentGridSpectral(4, 8, 5, 2)
    with pytest.raises(ValueError, match="cells"):
        LatentGridSpectral(4, 1, 1, 2)
    with pytest.raises(ValueError, match="depth >= 1"):
        GNNProcessor(1, 1, 2, depth=0, latent_cells=8, latent_modes=2)
