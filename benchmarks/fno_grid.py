"""FNO (``neuraloperator``) on the vertex grid of a CG1 unit-square mesh, for ``bench_spon``.

The CG1 DOF nodes of ``UnitSquareMesh(N, N)`` are exactly the ``(N+1)²`` grid points
``(i/N, j/N)``, so a DOF vector and an ``(N+1) × (N+1)`` image carry the same numbers.
:func:`grid_permutation` finds the map from DOF coordinates (exact integer rounding,
checked to be a bijection); :class:`GridFNO` wraps neuralop's ``FNO`` so that it takes
and returns DOF tensors (float64, the file's DOF order), with unit-Gaussian normalizers
(one mean/std per grid point, fitted on the train split, as in the FNO paper's code).

Also: :func:`ensure_neuralop`, which installs the ``neuraloperator`` package into the
running interpreter's environment if it is missing, never replacing the installed torch.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import torch

__all__ = ["GridFNO", "ensure_neuralop", "grid_permutation"]


def ensure_neuralop(install: bool = True) -> str:
    """Import ``neuralop``, installing ``neuraloperator`` with pip first if it is missing.

    The installed torch is pinned on pip's command line (``torch==<installed version>``),
    so pip either keeps it or fails; the torch version is checked again afterwards.

    Returns
    -------
    str
        neuralop's version.

    Raises
    ------
    SystemExit
        neuralop is missing and ``install`` is false, pip fails, or torch changed.
    """
    try:
        return importlib.import_module("neuralop").__version__
    except ImportError:
        pass
    if not install:
        raise SystemExit("neuralop is not installed: `python -m pip install neuraloperator` (or drop --no-install)")
    probe = [sys.executable, "-c", "import torch; print(torch.__version__)"]
    before = subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()
    print(f"installing neuraloperator (benchmark-only dependency; torch {before} pinned) ...", file=sys.stderr,
          flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "neuraloperator",
           f"torch=={before}"]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed")
    after = subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()
    if after != before:
        raise SystemExit(f"installing neuraloperator changed torch {before} -> {after}")
    importlib.invalidate_caches()
    return importlib.import_module("neuralop").__version__


def grid_permutation(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """DOF order <-> row-major grid order for the CG1 nodes of ``UnitSquareMesh(n, n)``.

    Parameters
    ----------
    coords
        ``(n_dofs, 2)`` DOF-node coordinates (DOF order).
    n
        Cells per side.

    Returns
    -------
    to_grid : numpy.ndarray
        ``grid_flat = dofs[..., to_grid]`` (grid index ``iy * (n + 1) + ix``).
    to_dofs : numpy.ndarray
        ``dofs = grid_flat[..., to_dofs]``.

    Raises
    ------
    ValueError
        The nodes are not exactly the ``(n+1)²`` grid points, each once.
    """
    scaled = np.asarray(coords, dtype=np.float64) * n
    ij = np.rint(scaled).astype(np.int64)
    if coords.shape != ((n + 1) ** 2, 2) or np.abs(scaled - ij).max() > 1e-8 or ij.min() < 0 or ij.max() > n:
        raise ValueError(f"the DOF nodes are not the vertices of a {n}x{n} unit-square grid")
    to_dofs = ij[:, 1] * (n + 1) + ij[:, 0]
    to_grid = np.argsort(to_dofs, kind="stable")
    if not np.array_equal(to_dofs[to_grid], np.arange((n + 1) ** 2)):
        raise ValueError("two DOF nodes share a grid point: the DOF -> grid map is not a bijection")
    return to_grid, to_dofs


class GridFNO(torch.nn.Module):
    """neuralop's FNO on DOF tensors: DOFs -> grid -> normalise -> FNO -> decode -> DOFs.

    Parameters
    ----------
    fno
        ``neuralop.models.FNO`` with one input and one output channel.
    to_grid, to_dofs
        From :func:`grid_permutation`.
    side
        Grid points per side (``n + 1``).
    x_train, y_train
        ``(batch, n_dofs)`` physical train inputs and outputs: the per-point normalizers
        are fitted on them.
    eps
        Added to the std (the Dirichlet points have std 0).

    Shapes
    ------
    ``forward``: ``(batch, n_dofs)`` -> ``(batch, n_dofs)`` float64.
    """

    def __init__(self, fno: torch.nn.Module, to_grid: np.ndarray, to_dofs: np.ndarray, side: int,
                 x_train: torch.Tensor, y_train: torch.Tensor, eps: float = 1e-8) -> None:
        super().__init__()
        self.fno, self.side = fno, int(side)
        self.register_buffer("to_grid", torch.as_tensor(to_grid, dtype=torch.int64))
        self.register_buffer("to_dofs", torch.as_tensor(to_dofs, dtype=torch.int64))
        xg, yg = self.grid(x_train), self.grid(y_train)
        for name, data in (("x", xg), ("y", yg)):
            self.register_buffer(f"{name}_mean", data.mean(dim=0, keepdim=True))
            self.register_buffer(f"{name}_std", data.std(dim=0, unbiased=False, keepdim=True) + eps)

    def grid(self, dofs: torch.Tensor) -> torch.Tensor:
        """``(batch, n_dofs)`` -> ``(batch, 1, side, side)`` (same dtype)."""
        return dofs.index_select(1, self.to_grid).reshape(dofs.shape[0], 1, self.side, self.side)

    def encode(self, x_grid: torch.Tensor) -> torch.Tensor:
        """Normalised float32 network input of physical grid inputs."""
        return ((x_grid - self.x_mean) / self.x_std).float()

    def forward_grid(self, x_grid: torch.Tensor) -> torch.Tensor:
        """Physical grid outputs ``(batch, 1, side, side)`` (float32) of physical grid inputs."""
        z = self.fno(self.encode(x_grid))
        return z * self.y_std.float() + self.y_mean.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Physical DOF outputs ``(batch, n_dofs)`` float64 of physical DOF inputs."""
        ug = self.forward_grid(self.grid(x.double())).double()
        return ug.reshape(x.shape[0], -1).index_select(1, self.to_dofs)
