"""bench_mgno's bounding-box grid for the FNO on a domain with holes: exact interpolations both ways."""

import sys
from pathlib import Path
from types import SimpleNamespace

import firedrake as fd
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_mgno import BoxGridModel, box_grid_maps  # noqa: E402

from fe_operators.io import load_mesh  # noqa: E402


def test_box_grid_maps_are_exact_on_linear_fields_and_zero_in_the_holes():
    mesh = load_mesh("plate_holes")  # bounding box [0, 1]^2, holes inside
    V = fd.FunctionSpace(mesh, "CG", 1)
    cells = 16
    to_box, from_box, to_grid, to_dofs, outside = box_grid_maps(SimpleNamespace(output_space=V), cells)
    x, y = fd.SpatialCoordinate(mesh)
    f = fd.Function(V).interpolate(5.0 + x + 2.0 * y)  # positive everywhere: 0 only outside the domain
    f_dofs = torch.from_numpy(f.dat.data_ro.copy())

    # DOFs -> grid: the field's values at grid nodes in the domain, zero in the holes
    model = BoxGridModel(torch.nn.Identity(), to_box, from_box)
    grid = model.boxed(f_dofs[None])[0][torch.from_numpy(to_grid)].reshape(cells + 1, cells + 1).numpy()
    iy, ix = np.meshgrid(np.arange(cells + 1), np.arange(cells + 1), indexing="ij")
    expected = 5.0 + ix / cells + 2.0 * iy / cells
    inside = grid != 0.0
    assert 0 < outside == int((~inside).sum()) < (cells + 1) ** 2 // 2
    np.testing.assert_allclose(grid[inside], expected[inside], rtol=0, atol=1e-12)

    # grid -> DOFs: piecewise-linear interpolation reproduces a linear field exactly
    full = torch.from_numpy(expected.reshape(-1))[torch.from_numpy(to_dofs)]  # grid-mesh DOF order
    back = from_box.apply(full[None, :, None])[0, :, 0]
    torch.testing.assert_close(back, f_dofs, rtol=0, atol=1e-12)
