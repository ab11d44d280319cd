"""Multiscale remedy with a spectral core: mesh -> latent grid -> Fourier layer -> mesh.

The mesh features are averaged onto a regular grid over the domain's bounding box,
mixed globally there by a Fourier layer (per-mode channel mixing, as in FNO), and
interpolated back to the mesh nodes.  The grid lives in physical (bounding-box)
coordinates, so it is the same grid on every mesh of the domain, and the stage is built
to be the same function on every mesh of the domain, up to discretisation error:

* pooling is an area average: the multilinear "hat" weights of the nodes times their
  quadrature weights (each node's share of the domain, :attr:`MeshContext.node_weights`),
  so a graded mesh does not lean toward its fine regions;
* grid vertices the domain barely covers (holes, the corners of a non-box domain, or
  vertices between the nodes of a mesh coarser than the grid) are filled by a smooth
  (harmonic) extension of the covered ones, so the field the FFT sees does not depend on
  which vertices happen to be touched by nodes;
* the grid is zero-padded before the FFT (by default to twice its size, which makes the
  spectral convolution a convolution on the box rather than on a torus: opposite sides
  do not couple) and cropped after.

It couples every point with every other in one application (the graph-encoder /
latent-grid / graph-decoder split of GINO, "Geometry-Informed Neural Operator for
Large-Scale 3D PDEs", with the graph parts being the mesh's own message passing).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu

from fe_operators.models.layers.mlp import activation
from fe_operators.sparse.warnings import csr_beta_warning_silenced

__all__ = ["LatentGridSpectral", "GridTransfer", "GridPooling", "grid_transfer", "COVERED", "FILL_STIFFNESS"]

#: a vertex whose hat function the domain covers to at least this fraction is averaged as is
COVERED = 0.5
#: weight of the smoothness term of the fill relative to coverage (1: a fully covered vertex)
FILL_STIFFNESS = 1e-2


class GridPooling:
    """The pooling of a latent grid as two sparse factors: ``pool = fill @ local`` (see :func:`grid_transfer`).

    ``local`` (``(N_g, n)``) is the area average, nonzero only where a node lies in a
    vertex's hat support (at most ``2^d`` entries per node); ``fill`` (``(N_g, N_g)``, or
    None when the domain covers every vertex) is the identity on the covered vertices and
    the fill's grid-to-grid map on the others.  Their product has rows that are dense over
    all the nodes near a large uncovered region (half the nodes of a crescent), so it is
    never formed: applying the two factors costs ``O(2^d n + N_g^2)`` per column instead of
    ``O(N_g n)``, in the forward and the backward pass alike.
    """

    __slots__ = ("local", "fill")

    def __init__(self, local: torch.Tensor, fill: torch.Tensor | None) -> None:
        self.local, self.fill = local, fill

    @property
    def shape(self) -> torch.Size:
        return self.local.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    @property
    def device(self) -> torch.device:
        return self.local.device

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        v = self.local @ h
        return v if self.fill is None else self.fill @ v

    def to(self, *args, **kwargs) -> "GridPooling":
        """Both factors moved/cast as :meth:`torch.Tensor.to`."""
        return GridPooling(self.local.to(*args, **kwargs),
                           None if self.fill is None else self.fill.to(*args, **kwargs))

    def to_dense(self) -> torch.Tensor:
        """The product ``fill @ local`` as a dense ``(N_g, n)`` tensor (for tests and inspection)."""
        local = self.local.to_dense()
        return local if self.fill is None else self.fill.to_dense() @ local

    def nnz(self) -> int:
        """Stored entries of both factors."""
        return int(self.local.values().numel()) + (0 if self.fill is None else int(self.fill.values().numel()))


class GridTransfer(NamedTuple):
    """The two maps of a latent grid (see :func:`grid_transfer`)."""

    interp: torch.Tensor
    pool: GridPooling


def grid_transfer(x: torch.Tensor, cells: int, weights: torch.Tensor | None = None) -> GridTransfer:
    r"""Interpolation from a vertex grid to the nodes, and the area average (with fill) back.

    The grid has ``cells`` cells per axis over ``[-1, 1]^d``, so ``N_g = (cells + 1)^d``
    vertices with hat functions :math:`\lambda_g`.  ``interp`` (``(n, N_g)``) holds
    :math:`\lambda_g(x_i)` (rows sum to one).  ``pool`` (``(N_g, n)``) maps node values
    ``h`` to grid values ``v``:

    * the area average :math:`u_g = N_g / D_g`, :math:`N_g = \sum_i \lambda_g(x_i) w_i
      h_i`, :math:`D_g = \sum_i \lambda_g(x_i) w_i` (a lumped quadrature of
      :math:`\int_\Omega \lambda_g h / \int_\Omega \lambda_g`), on the vertices whose
      coverage :math:`c_g = D_g / \int_{[-1,1]^d} \lambda_g` is at least :data:`COVERED`;
    * on the others (``W``), the minimiser of :math:`\sum_{g \in W} c_g (v_g - u_g)^2 +
      \alpha \sum_{\text{grid edges } ab \ni W} (v_a - v_b)^2` with the covered values
      fixed (:math:`\alpha` = :data:`FILL_STIFFNESS`): the data where the domain covers
      a vertex partly, a harmonic extension where it does not (holes, outside the
      domain, between the nodes of a mesh coarser than the grid).

    Every row of ``pool`` sums to one (constants are kept) and its entries are >= 0; on
    any mesh of the domain the result approximates the same grid field.  Built once per
    mesh (callers cache it), with numpy/scipy on the CPU: the fill is one sparse
    factorisation of size ``|W|``.  Its rows of the product would be dense over all the
    nodes near their weak region (on a crescent, half of them), so ``pool`` is kept as
    two factors (:class:`GridPooling`): the area average (at most ``2^d`` entries per
    node) and the fill's ``(N_g, N_g)`` grid-to-grid map, whose size does not depend on
    the mesh.

    Parameters
    ----------
    x
        ``(n, d)`` normalised coordinates in ``[-1, 1]^d``.
    cells
        Cells per axis (>= 1).
    weights
        ``(n,)`` positive quadrature weights of the nodes *in the normalised
        coordinates* (each node's share of the domain mapped to ``[-1, 1]^d``: the
        physical weights times ``prod(2 / span)``).  None: equal weights of total
        ``2^d`` (a domain that fills its box; then the average counts nodes).

    Returns
    -------
    GridTransfer
        ``(interp, pool)``: ``interp`` sparse CSR, ``pool`` a :class:`GridPooling` of
        sparse CSR factors, of ``x``'s dtype on ``x``'s device (computed in float64).

    Raises
    ------
    ValueError
        ``weights`` of the wrong shape or not all positive.
    """
    xs = x.detach().to(torch.float64).cpu().numpy()
    n, gdim = xs.shape
    n_grid = (cells + 1) ** gdim
    if weights is None:
        w = np.full(n, 2.0 ** gdim / max(n, 1))
    else:
        w = weights.detach().to(torch.float64).cpu().numpy()
        if w.shape != (n,) or not (w > 0).all():
            raise ValueError(f"expected {n} positive node weights, got shape {w.shape}"
                             + ("" if w.shape != (n,) else f" with minimum {w.min():.3g}"))
    t = np.clip((xs + 1) * (cells / 2), 0, cells)  # grid coordinates in [0, cells]
    lo = np.minimum(np.floor(t), cells - 1)
    frac = t - lo
    lo = lo.astype(np.int64)
    strides = (cells + 1) ** np.arange(gdim)
    corners = np.array(list(itertools.product((0, 1), repeat=gdim)), dtype=bool)  # 2^d corners, not nodes
    vals = np.where(corners[:, None, :], frac, 1 - frac).prod(-1)  # (2^d, n)
    cols = ((lo + corners[:, None, :]) * strides).sum(-1)
    rows = np.broadcast_to(np.arange(n), cols.shape)
    interp = sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n_grid))
    lw = sp.csr_matrix(interp.multiply(w[:, None])).T.tocsr()  # (N_g, n): lambda_g(x_i) w_i
    mass = np.asarray(lw.sum(1)).ravel()
    index = (np.arange(n_grid)[:, None] // strides) % (cells + 1)  # vertex k = sum_j i_j (cells+1)^j
    hat = (2.0 / cells) ** gdim * 0.5 ** ((index == 0) | (index == cells)).sum(1)  # integral over the box
    coverage = mass / hat
    covered = coverage >= COVERED
    # u = Q h: the average where covered; N_g / hat (= c_g u_g) elsewhere, the fill's data
    scale = np.where(covered, 1.0 / np.maximum(mass, np.finfo(np.float64).tiny), 1.0 / hat)
    Q = sp.diags(scale) @ lw
    fill = None if covered.all() else _to_torch(_fill_map(coverage, covered, index, cells), x)
    return GridTransfer(_to_torch(interp, x), GridPooling(_to_torch(Q, x), fill))


def _to_torch(A: "sp.spmatrix", like: torch.Tensor) -> torch.Tensor:
    """A scipy matrix as a torch sparse CSR tensor of ``like``'s dtype and device."""
    A = sp.csr_matrix(A)
    A.sort_indices()
    with csr_beta_warning_silenced():
        return torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int64)),
                                       torch.from_numpy(A.indices.astype(np.int64)),
                                       torch.from_numpy(A.data), A.shape, check_invariants=False
                                       ).to(device=like.device, dtype=like.dtype)


def _fill_map(coverage: np.ndarray, covered: np.ndarray, index: np.ndarray, cells: int) -> sp.csr_matrix:
    """The fill as a grid-to-grid map ``G`` (``(N_g, N_g)``): the pooling is ``G Q`` (see :func:`grid_transfer`).

    With ``W`` the vertices not covered and ``S`` the others, the fill solves
    ``(diag(c_W) + alpha L_WW) v_W = u_W + alpha A_WS u_S`` (``L`` the grid graph
    Laplacian, ``A`` its adjacency) for the data ``u = Q h``, so ``G`` is the identity on
    the rows of ``S`` and ``K^{-1} (I_W + alpha A_WS)`` on those of ``W``: a sparse
    factorisation of ``K`` applied to the columns the right-hand side touches.  At most
    ``N_g^2`` entries whatever the mesh (the product ``G Q`` would have up to ``N_g n``).
    """
    n_grid = coverage.size
    # grid edges: each vertex and its successor along each axis, both directions
    first = [np.flatnonzero(index[:, k] < cells) for k in range(index.shape[1])]
    a = np.concatenate(first)
    b = np.concatenate([f + (cells + 1) ** k for k, f in enumerate(first)])
    A = sp.csr_matrix((np.ones(2 * a.size), (np.r_[a, b], np.r_[b, a])), shape=(n_grid, n_grid))
    weak = np.flatnonzero(~covered)
    A_w = A[weak]
    K = (sp.diags(coverage[weak] + FILL_STIFFNESS * np.asarray(A_w.sum(1)).ravel())
         - FILL_STIFFNESS * A_w[:, weak])
    B = sp.csr_matrix(sp.identity(n_grid, format="csr")[weak]
                      + FILL_STIFFNESS * A_w @ sp.diags(covered.astype(np.float64)))
    cols = np.unique(B.indices)
    # K is block-diagonal over the weak components, and so are its factors: the zeros
    # between components stay exact and are dropped by the sparse conversion
    F = sp.coo_matrix(splu(sp.csc_matrix(K)).solve(B[:, cols].toarray()))
    fill = sp.csr_matrix((F.data, (weak[F.row], cols[F.col])), shape=(n_grid, n_grid))
    return sp.diags(covered.astype(np.float64)) + fill


class LatentGridSpectral(torch.nn.Module):
    r"""Residual global stage: pool to a vertex grid, one Fourier layer there, interpolate back.

    .. math::

        v = \Pi\, W_{in} h, \qquad
        \tilde v = \sigma\big(\mathcal F^{-1}(R \cdot \mathcal F v) + W v\big), \qquad
        h' = h + W_{out}\, I\, \tilde v

    :math:`\Pi` and :math:`I` from :func:`grid_transfer`; :math:`\mathcal F` the DFT of
    the grid zero-padded to ``P = cells + 1 + round(padding (cells + 1))`` vertices per
    axis (:math:`\mathcal F^{-1}` crops back); :math:`R` holds a complex ``W × W``
    matrix per kept Fourier mode (frequencies ``|k| < modes`` of the padded grid on
    every axis; the last axis of the real FFT holds ``k >= 0`` only, the rest by
    symmetry), :math:`W` a pointwise linear map.  With ``padding >= 1`` (``P >= 2 N - 1``,
    ``N = cells + 1``) the spectral part is a convolution on the box, whose kernel is
    band-limited; with ``padding = 0`` it is periodic over the box (opposite sides
    couple).  Cost ``O(n W 2^d + N_g W^2 + P^d log P^d W)`` with ``N_g = (cells + 1)^d``
    (plus the fill's ``O(N_g^2 W)`` at most, see :class:`GridPooling`).

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
    padding
        Zero padding before the FFT, as a fraction of the vertices per axis (>= 0;
        default 1: twice the grid).

    Shapes
    ------
    ``h``: ``(n, batch, W)``; ``interp``/``pool`` from :func:`grid_transfer`; output
    ``(n, batch, W)``.
    """

    def __init__(self, width: int, cells: int, modes: int, gdim: int, act: str = "gelu",
                 padding: float = 1.0) -> None:
        super().__init__()
        if cells < 2:
            raise ValueError(f"expected cells >= 2, got {cells}")
        if not 1 <= modes <= (cells + 1) // 2:
            raise ValueError(f"expected 1 <= modes <= (cells + 1) // 2 = {(cells + 1) // 2}, got {modes}")
        if not padding >= 0:
            raise ValueError(f"expected padding >= 0, got {padding}")
        self.width, self.cells, self.modes, self.gdim = int(width), int(cells), int(modes), int(gdim)
        self.padding = float(padding)
        #: vertices per axis of the padded FFT grid
        self.size = self.cells + 1 + round(self.padding * (self.cells + 1))
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
        size = self.size
        both = torch.cat([torch.arange(self.modes), torch.arange(size - self.modes + 1, size)])  # |k| < modes
        axes = [both] * (self.gdim - 1) + [torch.arange(self.modes)]
        return torch.meshgrid(*axes, indexing="ij")

    def forward(self, h: torch.Tensor, interp: torch.Tensor, pool: GridPooling | torch.Tensor) -> torch.Tensor:
        """Pool, Fourier layer (padded), interpolate back, residual add."""
        n, batch, width = h.shape
        size = (self.cells + 1,) * self.gdim
        padded = (self.size,) * self.gdim
        v = (pool @ self.lin_in(h).reshape(n, batch * width)).reshape(*size[::-1], batch, width)
        # grid axes are (x_{d-1}, ..., x_0) in C order (vertex index = sum_k i_k (cells+1)^k)
        v = v.permute(self.gdim, self.gdim + 1, *range(self.gdim))  # (batch, W, *grid)
        dims = tuple(range(2, 2 + self.gdim))
        spec = torch.fft.rfftn(v, s=padded, dim=dims)  # zero-pads at the end of each axis
        index = tuple(i.to(h.device) for i in self._mode_index())
        kept = spec[(slice(None), slice(None), *index)]
        mixed = torch.einsum("bi...,io...->bo...", kept, torch.view_as_complex(self.spectral))
        out = torch.zeros_like(spec)
        out[(slice(None), slice(None), *index)] = mixed
        crop = (slice(None), slice(None)) + (slice(0, self.cells + 1),) * self.gdim
        k = torch.fft.irfftn(out, s=padded, dim=dims)[crop]
        w = self.act(k + torch.einsum("bi...,oi->bo...", v, self.pointwise.weight)
                     + self.pointwise.bias.reshape(1, -1, *([1] * self.gdim)))
        w = w.permute(*range(2, 2 + self.gdim), 0, 1).reshape(-1, batch * width)
        return h + self.lin_out((interp @ w).reshape(n, batch, width))

    def extra_repr(self) -> str:
        return (f"width={self.width}, cells={self.cells}, modes={self.modes}, gdim={self.gdim}, "
                f"padding={self.padding:g}")
