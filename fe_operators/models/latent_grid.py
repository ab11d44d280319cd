"""Multiscale remedy with a spectral core: mesh -> latent grid -> Fourier layer -> mesh.

The mesh features are averaged onto a regular grid over the domain's bounding box
(multilinear "hat" weights, the transpose of interpolation), mixed globally there by a
Fourier layer (per-mode channel mixing, as in FNO), and interpolated back to the mesh
nodes.  The grid lives in physical (bounding-box) coordinates, so it is the same grid on
every mesh of the domain: the global stage means the same thing on a coarse and a fine
mesh, and couples every point with every other in one application (the graph-encoder /
latent-grid / graph-decoder split of GINO, "Geometry-Informed Neural Operator for
Large-Scale 3D PDEs", with the graph parts being the mesh's own message passing).
"""

from __future__ import annotations

import itertools

import torch

from fe_operators.models.mlp import activation
from fe_operators.sparse_csr import csr_beta_warning_silenced

__all__ = ["LatentGridSpectral", "grid_transfer"]


def grid_transfer(x: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Interpolation from a vertex grid to the nodes, and the weighted average back.

    The grid has ``cells`` cells per axis over ``[-1, 1]^d``, so ``(cells + 1)^d``
    vertices.  ``interp`` (``(n, N_g)``) holds the multilinear weights
    :math:`\lambda_g(x_i)` (rows sum to one); ``pool`` (``(N_g, n)``) is its transpose with
    rows scaled to sum to one, :math:`\bar h_g = \sum_i \lambda_g(x_i) h_i / \sum_i
    \lambda_g(x_i)` (rows of vertices no node touches are zero).  Both are sparse CSR.

    Parameters
    ----------
    x
        ``(n, d)`` normalised coordinates in ``[-1, 1]^d``.
    cells
        Cells per axis (>= 1).

    Returns
    -------
    interp, pool
        Sparse CSR matrices of ``x``'s dtype.
    """
    n, gdim = x.shape
    t = ((x + 1) * (cells / 2)).clamp(0, cells)  # grid coordinates in [0, cells]
    lo = t.floor().clamp(max=cells - 1)
    frac = t - lo
    lo = lo.long()
    strides = (cells + 1) ** torch.arange(gdim, device=x.device)
    cols, vals = [], []
    for corner in itertools.product((0, 1), repeat=gdim):  # 2^d corners, not nodes
        c = torch.tensor(corner, device=x.device)
        vals.append(torch.where(c.bool(), frac, 1 - frac).prod(1))
        cols.append(((lo + c) * strides).sum(1))
    rows = torch.arange(n, device=x.device).repeat(len(cols))
    cols_t, vals_t = torch.cat(cols), torch.cat(vals)
    n_grid = (cells + 1) ** gdim
    # indices are in range by construction: skip torch's invariant checks (and their warning)
    interp = torch.sparse_coo_tensor(torch.stack([rows, cols_t]), vals_t, (n, n_grid),
                                     check_invariants=False).coalesce()
    weight = torch.zeros(n_grid, dtype=x.dtype, device=x.device).index_add_(0, cols_t, vals_t)
    scaled = vals_t / weight[cols_t].clamp_min(torch.finfo(x.dtype).tiny)
    pool = torch.sparse_coo_tensor(torch.stack([cols_t, rows]), scaled, (n_grid, n),
                                   check_invariants=False).coalesce()
    with csr_beta_warning_silenced():
        return interp.to_sparse_csr(), pool.to_sparse_csr()


class LatentGridSpectral(torch.nn.Module):
    r"""Residual global stage: pool to a vertex grid, one Fourier layer there, interpolate back.

    .. math::

        v = \Pi\, W_{in} h, \qquad
        \tilde v = \sigma\big(\mathcal F^{-1}(R \cdot \mathcal F v) + W v\big), \qquad
        h' = h + W_{out}\, I\, \tilde v

    :math:`\Pi` and :math:`I` from :func:`grid_transfer`; :math:`R` holds a complex
    ``W × W`` matrix per kept Fourier mode (frequencies ``|k| < modes`` on every axis;
    the last axis of the real FFT holds ``k >= 0`` only, the rest by symmetry), :math:`W`
    a pointwise linear map.  Cost
    ``O(n W 2^d + N_g W^2 + N_g log N_g W)`` with ``N_g = (cells + 1)^d``.

    Parameters
    ----------
    width
        Feature size ``W``.
    cells
        Cells per axis of the latent grid (>= 2).
    modes
        Fourier modes kept per axis, ``1 <= modes <= (cells + 1) // 2``.
    gdim
        Geometric dimension ``d``.
    act
        Activation name.

    Shapes
    ------
    ``h``: ``(n, batch, W)``; ``interp``/``pool`` from :func:`grid_transfer`; output
    ``(n, batch, W)``.
    """

    def __init__(self, width: int, cells: int, modes: int, gdim: int, act: str = "gelu") -> None:
        super().__init__()
        if cells < 2:
            raise ValueError(f"expected cells >= 2, got {cells}")
        if not 1 <= modes <= (cells + 1) // 2:
            raise ValueError(f"expected 1 <= modes <= (cells + 1) // 2 = {(cells + 1) // 2}, got {modes}")
        self.width, self.cells, self.modes, self.gdim = int(width), int(cells), int(modes), int(gdim)
        self.lin_in = torch.nn.Linear(width, width)
        block = (2 * self.modes - 1,) * (self.gdim - 1) + (self.modes,)
        scale = 1.0 / width
        # real and imaginary parts in a trailing axis: Module.to(dtype) / .double() keep them
        self.spectral = torch.nn.Parameter(scale * torch.randn(width, width, *block, 2) / 2 ** 0.5)
        self.pointwise = torch.nn.Linear(width, width)
        self.act = activation(act)
        self.lin_out = torch.nn.Linear(width, width)

    def _mode_index(self) -> tuple[torch.Tensor, ...]:
        """Open-mesh indices of the kept modes in the ``rfftn`` output."""
        size = self.cells + 1
        both = torch.cat([torch.arange(self.modes), torch.arange(size - self.modes + 1, size)])  # |k| < modes
        axes = [both] * (self.gdim - 1) + [torch.arange(self.modes)]
        return torch.meshgrid(*axes, indexing="ij")

    def forward(self, h: torch.Tensor, interp: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """Pool, Fourier layer, interpolate back, residual add."""
        n, batch, width = h.shape
        size = (self.cells + 1,) * self.gdim
        v = (pool @ self.lin_in(h).reshape(n, batch * width)).reshape(*size[::-1], batch, width)
        # grid axes are (x_{d-1}, ..., x_0) in C order (vertex index = sum_k i_k (cells+1)^k)
        v = v.permute(self.gdim, self.gdim + 1, *range(self.gdim))  # (batch, W, *grid)
        dims = tuple(range(2, 2 + self.gdim))
        spec = torch.fft.rfftn(v, dim=dims)
        index = tuple(i.to(h.device) for i in self._mode_index())
        kept = spec[(slice(None), slice(None), *index)]
        mixed = torch.einsum("bi...,io...->bo...", kept, torch.view_as_complex(self.spectral))
        out = torch.zeros_like(spec)
        out[(slice(None), slice(None), *index)] = mixed
        k = torch.fft.irfftn(out, s=size, dim=dims)
        w = self.act(k + torch.einsum("bi...,oi->bo...", v, self.pointwise.weight)
                     + self.pointwise.bias.reshape(1, -1, *([1] * self.gdim)))
        w = w.permute(*range(2, 2 + self.gdim), 0, 1).reshape(-1, batch * width)
        return h + self.lin_out((interp @ w).reshape(n, batch, width))

    def extra_repr(self) -> str:
        return f"width={self.width}, cells={self.cells}, modes={self.modes}, gdim={self.gdim}"
