"""Gaussian random fields: white-noise covariance, Matérn statistics, mesh independence."""

import numpy as np
import pytest

import firedrake as fd

from fe_operators.errors import UnsupportedSpaceError
from fe_operators.sparse.petsc import petsc_to_scipy
from fe_operators.problems.random_fields import (
    GaussianRandomField, _white_noise_factor, allowed_smoothness, matern_correlation,
)

LENGTH = 0.25   # distances ℓ/4, ℓ/2, ℓ are vertex offsets on both 32x32 and 64x64 meshes
VARIANCE = 2.0
N_SAMPLES = 2000


@pytest.mark.parametrize("mesh", [
    fd.UnitSquareMesh(4, 3), fd.UnitSquareMesh(3, 3, quadrilateral=True), fd.UnitCubeMesh(2, 2, 2),
], ids=["triangles", "quads", "tets"])
@pytest.mark.parametrize("degree", [1, 2])
def test_white_noise_covariance_is_the_mass_matrix(mesh, degree):
    V = fd.FunctionSpace(mesh, "CG", degree)
    u, v = fd.TrialFunction(V), fd.TestFunction(V)
    M = petsc_to_scipy(fd.assemble(u * v * fd.dx).petscmat).toarray()
    G = _white_noise_factor(V)
    np.testing.assert_allclose((G @ G.T).toarray(), M, atol=1e-14 * abs(M).max())


def _grid_samples(n: int, smoothness: float) -> tuple[np.ndarray, np.ndarray]:
    """N_SAMPLES fields on UnitSquareMesh(n, n) and the vertex index of each grid point (i, j)."""
    mesh = fd.UnitSquareMesh(n, n)
    grf = GaussianRandomField(mesh, LENGTH, smoothness, variance=VARIANCE)
    rng = np.random.default_rng(7)
    out = fd.Function(grf.space)
    samples = np.stack([grf.sample(rng, out=out).dat.data_ro.copy() for _ in range(N_SAMPLES)])
    ij = np.rint(mesh.coordinates.dat.data_ro * n).astype(np.int64)
    grid = np.empty((n + 1, n + 1), dtype=np.int64)
    grid[ij[:, 0], ij[:, 1]] = np.arange(len(ij))
    return samples, grid


def _statistics(samples: np.ndarray, grid: np.ndarray) -> dict:
    """Interior variance and correlations at ℓ/4, ℓ/2, ℓ (x and y offsets) of one mesh."""
    n = grid.shape[0] - 1
    lo, hi = int(0.3 * n), int(0.7 * n)  # ≥ 1.2 ℓ from ∂Ω: no visible Neumann effect
    var = samples.var(axis=0)
    interior = grid[lo:hi + 1, lo:hi + 1].ravel()
    corr = {}
    for frac in (0.25, 0.5, 1.0):
        s = round(frac * LENGTH * n)
        a = np.concatenate([grid[lo:hi + 1 - s, lo:hi + 1].ravel(), grid[lo:hi + 1, lo:hi + 1 - s].ravel()])
        b = np.concatenate([grid[lo + s:hi + 1, lo:hi + 1].ravel(), grid[lo:hi + 1, lo + s:hi + 1].ravel()])
        cov = ((samples[:, a] - samples[:, a].mean(0)) * (samples[:, b] - samples[:, b].mean(0))).mean(0)
        corr[frac] = float(np.mean(cov / np.sqrt(var[a] * var[b])))
    return {
        "var_interior": var[interior],
        "var_edge": float(var[grid[n // 2, 0]]),
        "corr": corr,
    }


@pytest.mark.parametrize("smoothness", [1.0, 3.0], ids=["alpha2", "alpha4"])
def test_matern_statistics_and_mesh_independence(smoothness):
    stats = {n: _statistics(*_grid_samples(n, smoothness)) for n in (32, 64)}
    for n, st in stats.items():
        v = st["var_interior"]
        # pointwise sampling error of a variance: sqrt(2/N) ≈ 3%
        assert abs(v.mean() / VARIANCE - 1) < 0.05, (n, v.mean())
        assert np.all(abs(v / VARIANCE - 1) < 0.15), (n, v.min(), v.max())
        # reflecting (Neumann) boundary: about twice the variance on an edge
        assert 1.5 < st["var_edge"] / VARIANCE < 2.6, (n, st["var_edge"])
        for frac, c in st["corr"].items():
            target = float(matern_correlation(frac * LENGTH, LENGTH, smoothness))
            assert abs(c - target) < 0.04, (n, frac, c, target)
    coarse, fine = stats[32], stats[64]
    assert abs(fine["var_interior"].mean() / coarse["var_interior"].mean() - 1) < 0.05
    for frac in coarse["corr"]:
        assert abs(fine["corr"][frac] - coarse["corr"][frac]) < 0.03, frac


def test_reproducible_by_seed():
    grf = GaussianRandomField(fd.UnitSquareMesh(8, 8), length_scale=0.3, mean=1.5)
    a = grf.sample(np.random.default_rng([3, 1])).dat.data_ro
    b = grf.sample(np.random.default_rng([3, 1])).dat.data_ro
    c = grf.sample(np.random.default_rng([3, 2])).dat.data_ro
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert grf.sample(np.random.default_rng(0)).function_space() == grf.space


def test_space_input_degree_and_3d():
    V = fd.FunctionSpace(fd.UnitSquareMesh(6, 6), "CG", 2)
    grf = GaussianRandomField(V, length_scale=0.3, smoothness=3.0)
    assert grf.space is V and grf.n_solves == 2 and grf.alpha == 4.0
    assert grf.sample(np.random.default_rng(0)).function_space() == V
    grf3 = GaussianRandomField(fd.UnitCubeMesh(3, 3, 3), length_scale=0.5)
    assert grf3.nu == 0.5 and grf3.n_solves == 1
    assert allowed_smoothness(3, 2) == [0.5, 2.5]
    assert matern_correlation(0.0, 1.0, 1.0) == 1.0


def test_invalid_arguments():
    mesh = fd.UnitSquareMesh(4, 4)
    with pytest.raises(ValueError, match="supported"):
        GaussianRandomField(mesh, 0.2, smoothness=2.0)  # α = 3: odd
    with pytest.raises(ValueError, match="length_scale"):
        GaussianRandomField(mesh, 0.0)
    with pytest.raises(ValueError, match="variance"):
        GaussianRandomField(mesh, 0.2, variance=-1.0)
    with pytest.raises(UnsupportedSpaceError):
        GaussianRandomField(fd.FunctionSpace(mesh, "DG", 1), 0.2)
    with pytest.raises(UnsupportedSpaceError):
        GaussianRandomField(fd.VectorFunctionSpace(mesh, "CG", 1), 0.2)
    with pytest.raises(TypeError, match="mesh or function space"):
        GaussianRandomField("unitsquare", 0.2)
