"""The latent-grid Fourier stage: grid transfers, the spectral layer, the GNN with it."""

import math

import pytest
import torch

from fe_operators.errors import ConfigError
from fe_operators.models import GNNProcessor, LatentGridSpectral, grid_transfer
from fe_operators.models.layers.latent_grid import COVERED, FILL_STIFFNESS


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


def _vertices(cells: int, gdim: int) -> torch.Tensor:
    """Vertex coordinates: vertex k is -1 + 2 i / cells with k = sum_j i_j (cells + 1)^j."""
    k = torch.arange((cells + 1) ** gdim)
    idx = torch.stack([(k // (cells + 1) ** j) % (cells + 1) for j in range(gdim)], 1)
    return -1 + 2 * idx.double() / cells


def _hat_integrals(cells: int, gdim: int) -> torch.Tensor:
    """Integral of each vertex's hat function over the box [-1, 1]^d (halved per box side it lies on)."""
    v = _vertices(cells, gdim)
    return (2 / cells) ** gdim * 0.5 ** (v.abs() == 1).sum(1).double()


def test_pool_is_the_area_average_where_covered():
    cells = 4
    x = _points(300, 2)
    w = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    w = w * 4 / w.sum()  # the box [-1, 1]^2 has measure 4
    interp, pool = grid_transfer(x, cells, w)
    p = pool.to_dense()
    lam = interp.to_dense().T  # (grid, n) hat values lambda_g(x_i)
    mass = lam @ w
    covered = mass / _hat_integrals(cells, 2) >= COVERED
    assert covered.sum() >= 20  # 300 points cover nearly all of a 5x5 grid
    # weighted by the nodes' shares of the domain, not by their number
    torch.testing.assert_close(p[covered], (lam * w)[covered] / mass[covered, None])
    torch.testing.assert_close(p.sum(1), torch.ones(p.shape[0], dtype=torch.float64))  # every row, filled ones too
    # equal weights: an average that counts nodes
    _, pool_eq = grid_transfer(x, cells)
    eq = pool_eq.to_dense()
    torch.testing.assert_close(eq[covered], lam[covered] / lam[covered].sum(1, keepdim=True))


@pytest.mark.parametrize("gdim", [2, 3])
def test_fill_extends_affine_fields_into_holes_exactly(gdim):
    # nodes on the grid vertices except in a hole in the middle, each weighing its hat's integral:
    # covered vertices get their node's value, the hole a harmonic extension, which keeps affine fields
    cells = 8
    v = _vertices(cells, gdim)
    hole = (v.abs() < 0.6).all(1)  # 3^d vertices, no node there
    x, w = v[~hole], _hat_integrals(cells, gdim)[~hole]
    _, pool = grid_transfer(x, cells, w)
    f = lambda p: 0.7 - p @ torch.linspace(0.5, 2.0, gdim, dtype=torch.float64)
    torch.testing.assert_close(pool.to_dense() @ f(x), f(v), rtol=0, atol=1e-12)


def test_partly_covered_vertices_blend_data_and_fill_continuously():
    # one node near a vertex, the rest of the grid covered: as the node's weight (coverage) drops
    # past COVERED, the vertex's value changes by a small fraction of (data - neighbours' mean)
    cells = 4
    v = _vertices(cells, 2)
    centre = int(torch.nonzero((v == 0).all(1))[0])
    others = torch.arange(v.shape[0]) != centre
    hat = _hat_integrals(cells, 2)

    def centre_value(coverage):
        x = torch.cat([v[others], v[centre:centre + 1]])
        w = torch.cat([hat[others], hat[centre:centre + 1] * coverage])
        h = torch.cat([torch.zeros(int(others.sum()), dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
        return float((grid_transfer(x, cells, w).pool.to_dense() @ h)[centre])

    above, below = centre_value(COVERED * (1 + 1e-9)), centre_value(COVERED * (1 - 1e-9))
    assert above == pytest.approx(1.0)
    # the fill's minimiser: c (v - 1) + alpha * 4 v = 0
    assert below == pytest.approx(COVERED / (COVERED + 4 * FILL_STIFFNESS), rel=1e-6)
    assert abs(above - below) < 0.1
    _, pool = grid_transfer(v[others], cells, hat[others])  # no node there: the neighbours' mean
    row = pool.to_dense()[centre]
    neighbours = ((v[others] - v[centre]).abs().sum(1) - 2 / cells).abs() < 1e-12
    torch.testing.assert_close(row, neighbours.double() / 4)


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
    cells, modes = 10, 3  # an 11x11 vertex grid, periodic (no padding)
    layer = LatentGridSpectral(2, cells, modes, 2, padding=0).double()
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


@pytest.mark.parametrize("padding", [0.0, 1.0, 0.5])
def test_single_mode_is_the_grid_mean(padding):
    layer = LatentGridSpectral(3, 6, 1, 2, padding=padding).double()
    torch.manual_seed(0)
    x = _points(500, 2)
    interp, pool = grid_transfer(x, 6)
    h = torch.randn(x.shape[0], 2, 3, dtype=torch.float64)
    v = (pool @ layer.lin_in(h).reshape(x.shape[0], 6)).reshape(-1, 2, 3)  # (grid, batch, W)
    # the zero mode of the zero-padded grid (P = 7 + round(7 padding) per axis): the sum over P^2 vertices
    size = 7 + round(7 * padding)
    mean = v.sum(0) / size ** 2  # (batch, W)
    spec = mean @ layer.spectral[..., 0].reshape(3, 3)  # modes=1 keeps k=0 only: Re(R_0) on the mean
    w = layer.act(spec.unsqueeze(0) + layer.pointwise(v))
    expected = h + layer.lin_out((interp @ w.reshape(-1, 6)).reshape(x.shape[0], 2, 3))
    torch.testing.assert_close(layer(h, interp, pool), expected)


@pytest.mark.parametrize("padding", [0.0, 1.0])
def test_padded_spectral_part_is_a_convolution_on_the_box(padding):
    # 1D, one channel, identity in/out maps, no pointwise part and no activation: the spectral
    # part maps a grid field v to sum_y kappa(x - y) v(y) with the band-limited kernel
    # kappa(d) = (Re R_0 + 2 sum_{0<k<m} Re(R_k e^{2 pi i k d / P})) / P, d taken modulo P.
    # With padding 1 (P = 2N) every d in (-N, N) is distinct modulo P: the sides do not couple;
    # without padding (P = N) the vertex next to one end is the neighbour of the other.
    cells, modes = 9, 4
    n = cells + 1
    layer = LatentGridSpectral(1, cells, modes, 1, padding=padding).double()
    with torch.no_grad():
        for lin in (layer.lin_in, layer.lin_out):
            lin.weight.fill_(1.0)
            lin.bias.zero_()
        layer.pointwise.weight.zero_()
        layer.pointwise.bias.zero_()
    layer.act = torch.nn.Identity()
    x = torch.linspace(-1, 1, n, dtype=torch.float64)[:, None]  # nodes on the vertices
    interp, pool = grid_transfer(x, cells)
    response = layer(torch.eye(n, dtype=torch.float64)[:, :, None], interp, pool)[:, :, 0] - torch.eye(n)
    P = layer.size
    assert P == (2 * n if padding else n)
    R = torch.view_as_complex(layer.spectral.detach())[0, 0]  # (modes,)
    d = (torch.arange(n)[:, None] - torch.arange(n)[None, :]) % P  # response[x, y]: x - y
    k = torch.arange(1, modes, dtype=torch.float64)
    phase = torch.exp(2j * math.pi * k[None, None, :] * d[..., None] / P)
    kappa = (R[0].real + 2 * (R[1:] * phase).real.sum(-1)) / P
    torch.testing.assert_close(response, kappa.to(torch.float64))
    assert (d[0, -1] == d[1, 0]) == (padding == 0)  # the periodic wrap, and only there


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
    with pytest.raises(ValueError, match="padding"):
        LatentGridSpectral(4, 8, 2, 2, padding=-0.5)
    with pytest.raises(ValueError, match="positive node weights"):
        grid_transfer(_points(10, 2), 4, torch.zeros(12, dtype=torch.float64))
    with pytest.raises(ConfigError, match="depth >= 1"):
        GNNProcessor(1, 1, 2, depth=0, latent_cells=8, latent_modes=2)
    for bad in (-0.5, math.inf, math.nan):
        with pytest.raises(ConfigError, match="latent_padding: expected a finite number >= 0"):
            GNNProcessor(1, 1, 2, latent_padding=bad)


def test_padding_defaults_to_one_and_old_configs_load_unpadded():
    from fe_operators.models import GNNOptions

    assert GNNOptions().latent_padding == 1.0
    gnn = GNNProcessor(1, 1, 2, latent_cells=8, latent_modes=2)
    assert gnn.latent_padding == 1.0 and gnn.latent[0].size == 18  # 9 vertices per axis, padded to 18
    clone = GNNProcessor.from_config(gnn.config)
    assert clone.latent_padding == 1.0 and clone.latent[0].size == 18
    # a config stored before latent_padding existed ran its FFT on the unpadded grid
    old = {k: v for k, v in gnn.config.items() if k != "latent_padding"}
    assert GNNProcessor.from_config(old).latent[0].size == 9


# ----------------------------------------------------------------------------- on meshes
def _mesh(spec):
    import firedrake as fd

    from fe_operators.io.readers import load_mesh

    if spec.startswith("graded:"):  # unitsquare:N with squared coordinates: 16x finer cells near x, y = 0
        n = int(spec.split(":")[1])
        m = fd.UnitSquareMesh(n, n)
        m.coordinates.dat.data[:] = m.coordinates.dat.data_ro ** 2
        return m
    return load_mesh(spec)


def _context(spec):
    import firedrake as fd

    from fe_operators.models import context_from_spaces

    V = fd.FunctionSpace(_mesh(spec), "CG", 1)
    return context_from_spaces([V], V)


def _latent_residual(ctx, cells):
    """A latent stage with fixed random weights on six smooth channels: its residual branch, ``(n, 6)``."""
    torch.manual_seed(0)
    gnn = GNNProcessor(1, 1, 2, width=6, depth=1, latent_cells=cells, latent_modes=8).double()
    x, y = ctx.coords[:, 0], ctx.coords[:, 1]
    h = torch.stack([torch.ones_like(x), x, y, torch.sin(math.pi * x) * torch.cos(2 * y),
                     torch.exp(-(x - 0.3) ** 2 - (y - 0.6) ** 2), x * y], 1).unsqueeze(1)
    return (gnn.latent[0](h, *gnn.grid_transfer(ctx, torch.float64)) - h)[:, 0].detach()


def _difference(a, b, cells):
    """Relative L2 difference of the residual branches at the nodes two meshes share."""
    from scipy.spatial import cKDTree

    out_a, out_b = _latent_residual(a, cells), _latent_residual(b, cells)
    dist, j = cKDTree(b.coords.numpy()).query(a.coords.numpy())
    shared = torch.from_numpy(dist < 1e-9)
    assert shared.sum() >= 25
    da, db = out_a[shared], out_b[torch.from_numpy(j)[shared]]
    return float((da - db).norm() / da.norm())


# the same differences with the latent stage before issue 10 (node-count weights, untouched vertices
# left at zero, no padding; same weights): 5.9 %, 4.4 % and 5.0 %; now 0.10 %, 0.15 % and 0.05 %
@pytest.mark.parametrize("a, b, cells", [
    ("unitsquare:8", "unitsquare:12", 16),   # the coarser mesh leaves 208 of 289 grid vertices untouched
    ("unitsquare:16", "graded:16", 32),      # uniform against graded (and 800 vs 560 untouched)
    ("plate_holes", "plate_holes/r1", 64),   # unstructured, graded, two holes; 1691 vs 378 untouched
])
def test_latent_stage_is_the_same_function_on_two_meshes_of_the_domain(a, b, cells):
    assert _difference(_context(a), _context(b), cells) < 5e-3


def test_latent_stage_difference_shrinks_under_refinement():
    r0, r1, r2 = (_context(s) for s in ("plate_holes", "plate_holes/r1", "plate_holes/r2"))
    coarse, fine = _difference(r0, r1, 32), _difference(r1, r2, 32)
    assert fine < coarse / 3  # measured: 8.1e-4 -> 1.1e-4 (before issue 10 too: 1.9e-3 -> 2.0e-4)


def test_gnn_builds_the_latent_transfer_once_per_context_and_dtype(monkeypatch):
    import dataclasses

    from fe_operators.models.processors import gnn as gnn_processor

    calls = []
    real = gnn_processor.grid_transfer
    monkeypatch.setattr(gnn_processor, "grid_transfer", lambda *args: calls.append(args) or real(*args))
    ctx = _context("unitsquare:6")
    gnn = GNNProcessor(1, 1, 2, width=4, depth=2, latent_cells=4, latent_modes=2)
    h = torch.randn(2, ctx.n_nodes, 1)
    first = gnn(h, ctx)
    torch.testing.assert_close(gnn(h, ctx), first)
    assert len(calls) == 1  # two forward passes, two latent stages: one transfer
    # the node weights, in the normalised coordinates of the unit square (a factor 4)
    torch.testing.assert_close(calls[0][2], 4 * ctx.node_weights)
    gnn.double()(h.double(), ctx)
    assert len(calls) == 2
    # a context stored before node weights existed: equal weights, and a warning that says so
    old = dataclasses.replace(ctx, node_weights=None)
    with pytest.warns(UserWarning, match="no node_weights"):
        gnn(h.double(), old)
    assert calls[-1][2] is None


def test_pooling_stays_sparse_on_a_non_convex_domain():
    # issue 15: on the crescent (half its bounding box uncovered) the fill's rows of the pooling,
    # formed as one (N_g, n) matrix, were dense over the nodes near the hole (237k entries for 4804
    # CG2 nodes, 820 per row; 12x the average alone) and training ran several times slower. The
    # pooling is kept as two factors whose size does not grow with the nodes near the hole.
    import firedrake as fd

    from fe_operators.io.readers import load_mesh
    from fe_operators.models import context_from_spaces
    from fe_operators.models.layers.latent_grid import GridPooling

    V = fd.FunctionSpace(load_mesh("crescent"), "CG", 2)
    ctx = context_from_spaces([V], V)
    gnn = GNNProcessor(1, 1, 2)  # defaults: 16 cells
    _, pool = gnn.grid_transfer(ctx, torch.float64)
    n, n_grid = ctx.n_nodes, (gnn.latent_cells + 1) ** 2
    assert isinstance(pool, GridPooling) and pool.fill is not None  # the crescent leaves vertices uncovered
    # the area average: each node in at most 2^d hat supports
    assert pool.local.values().numel() <= 4 * n
    assert pool.local.to_dense().ne(0).sum(0).max() <= 4
    # the fill maps grid to grid: at most N_g^2 entries whatever the mesh
    assert pool.fill.shape == (n_grid, n_grid)
    assert pool.nnz() <= 4 * n + n_grid ** 2
    # and it is still the pooling: rows sum to one, entries >= 0
    dense = pool.to_dense()
    torch.testing.assert_close(dense.sum(1), torch.ones(n_grid, dtype=torch.float64))
    assert dense.min() >= -1e-12
