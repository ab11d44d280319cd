"""Is the latent-grid stage the same function on different meshes of a domain?

One :class:`~fe_operators.models.layers.latent_grid.LatentGridSpectral` stage with fixed random
weights (seed 0, width 6, float64) is applied to six smooth channels (1, x, y,
sin(pi x) cos(2y), a Gaussian bump, xy) given at the nodes of two meshes of the same
domain; printed is the relative difference of its output (the residual branch, output
minus input) at the nodes the two meshes share.  Pairs: uniform meshes of the unit
square (16 vs 24 cells: the nodes of unitsquare:8 are shared), a uniform against a
graded one (``graded:N``: unitsquare:N with coordinates squared, cells 16x smaller near
x = 0 and y = 0), and the shipped ``plate_holes`` (unstructured, graded, two holes)
against its refinements.  The difference should shrink under refinement (discretisation
error), whichever mesh is coarser than the grid.

Usage: ``python benchmarks/experiments/latent_consistency.py [--cells 16] [--modes 8] [--padding 1]``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from fe_operators.petsc_argv import import_firedrake  # noqa: E402

fd = import_firedrake()  # first, without this script's arguments (PETSc would read them)

PAIRS = [("unitsquare:8", "unitsquare:12"), ("unitsquare:16", "unitsquare:24"), ("unitsquare:32", "unitsquare:48"),
         ("unitsquare:64", "unitsquare:96"), ("unitsquare:16", "graded:16"), ("unitsquare:32", "graded:32"),
         ("unitsquare:64", "graded:64"), ("plate_holes", "plate_holes/r1"), ("plate_holes/r1", "plate_holes/r2")]


def mesh(spec: str) -> fd.MeshGeometry:
    """A mesh from a spec, or ``graded:N`` (unitsquare:N with squared coordinates)."""
    from fe_operators.io.readers import load_mesh

    if spec.startswith("graded:"):
        n = int(spec.split(":")[1])
        m = fd.UnitSquareMesh(n, n)
        m.coordinates.dat.data[:] = m.coordinates.dat.data_ro ** 2
        return m
    return load_mesh(spec)


def features(c: torch.Tensor) -> torch.Tensor:
    """Six smooth channels of the physical coordinates ``(n, 2) -> (n, 6)``."""
    x, y = c[:, 0], c[:, 1]
    return torch.stack([torch.ones_like(x), x, y, torch.sin(np.pi * x) * torch.cos(2 * y),
                        torch.exp(-(x - 0.3) ** 2 - (y - 0.6) ** 2), x * y], 1)


def latent_output(spec: str, cells: int, modes: int, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """Node coordinates and the latent stage's residual branch on the mesh ``spec``."""
    from fe_operators.models import GNNProcessor, context_from_spaces

    V = fd.FunctionSpace(mesh(spec), "CG", 1)
    ctx = context_from_spaces([V], V)
    torch.manual_seed(0)
    gnn = GNNProcessor(1, 1, 2, width=6, depth=1, latent_cells=cells, latent_modes=modes,
                       latent_padding=padding).double()
    h = features(ctx.coords).unsqueeze(1)
    out = gnn.latent[0](h, *gnn.grid_transfer(ctx, torch.float64)) - h
    return ctx.coords.numpy(), out[:, 0].detach().numpy()


def discrepancy(a: str, b: str, **kw: float) -> tuple[int, float]:
    """Shared nodes and the relative L2 difference of the outputs there."""
    from scipy.spatial import cKDTree

    ca, oa = latent_output(a, **kw)
    cb, ob = latent_output(b, **kw)
    dist, j = cKDTree(cb).query(ca)
    i = np.nonzero(dist < 1e-9)[0]
    return len(i), float(np.linalg.norm(oa[i] - ob[j[i]]) / np.linalg.norm(oa[i]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=16)
    p.add_argument("--modes", type=int, default=8)
    p.add_argument("--padding", type=float, default=1.0)
    args = p.parse_args()
    print(f"latent grid {args.cells} cells, {args.modes} modes, padding {args.padding:g}")
    for a, b in PAIRS:
        shared, rel = discrepancy(a, b, cells=args.cells, modes=args.modes, padding=args.padding)
        print(f"{a:16s} vs {b:16s} shared nodes {shared:5d}  relative difference {rel:.5f}")


if __name__ == "__main__":
    main()
