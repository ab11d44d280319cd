"""Multiscale remedy: global mixing on a fixed coarse grid over the domain's bounding box."""

from __future__ import annotations

import itertools

import torch

from fe_operators.models.layers.mlp import activation

__all__ = ["CoarseGridMixing"]


class CoarseGridMixing(torch.nn.Module):
    r"""Pool to a coarse grid, mix every cell with every other, interpolate back, add.

    .. math::

        \bar h_c = \frac{1}{|c|}\sum_{i \in c} W_{in} h_i, \qquad
        \tilde h_c = \sigma\Big(\sum_{c'} M_{cc'} \bar h_{c'}\Big), \qquad
        h_i' = h_i + W_{out} \sum_c \lambda_c(x_i)\,\tilde h_c

    The grid has ``cells`` cells per axis over the bounding box of the nodes (normalised
    coordinates ``[-1, 1]^d``); pooling is the mean over the nodes in a cell and
    :math:`\lambda_c(x_i)` the multilinear interpolation weights of the cell centres.
    Both are in physical coordinates, so the layer means the same on every mesh of the
    domain (a cell average does not depend on how many nodes it holds), and one
    application couples every point with every other: the receptive field is the domain
    whatever the mesh size.  Cost ``O(n W + C^2 W)`` with ``C = cells^d``.

    Parameters
    ----------
    width
        Feature size ``W``.
    cells
        Cells per axis (>= 2).
    gdim
        Geometric dimension ``d``.
    act
        Activation name.

    Shapes
    ------
    ``h``: ``(n, batch, W)``; ``x``: ``(n, d)`` normalised coordinates; output
    ``(n, batch, W)``.
    """

    def __init__(self, width: int, cells: int, gdim: int, act: str = "gelu") -> None:
        super().__init__()
        if cells < 2:
            raise ValueError(f"expected cells >= 2, got {cells}")
        self.cells, self.gdim = int(cells), int(gdim)
        n_cells = self.cells ** self.gdim
        self.lin_in = torch.nn.Linear(width, width)
        self.mix = torch.nn.Parameter(torch.randn(n_cells, n_cells) / n_cells ** 0.5)
        self.act = activation(act)
        self.lin_out = torch.nn.Linear(width, width)
        self.register_buffer("strides", self.cells ** torch.arange(self.gdim), persistent=False)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Pool, mix, interpolate back, residual add."""
        n_cells = self.cells ** self.gdim
        t = (x.to(h.dtype) + 1) * (self.cells / 2)  # grid coordinates in [0, cells]
        cell = (t.floor().long().clamp(0, self.cells - 1) * self.strides).sum(1)
        count = torch.bincount(cell, minlength=n_cells).clamp_min(1).to(h.dtype)
        pooled = h.new_zeros((n_cells,) + h.shape[1:]).index_add_(0, cell, self.lin_in(h))
        pooled = pooled / count.reshape(-1, 1, 1)
        mixed = self.act(torch.einsum("cd,dbw->cbw", self.mix.to(h.dtype), pooled))
        # multilinear interpolation from the cell centres (clamped at the outer half cells)
        s = (t - 0.5).clamp(0, self.cells - 1)
        lo = s.floor().clamp(max=self.cells - 2)
        frac = s - lo
        lo = lo.long()
        out = torch.zeros_like(h)
        for corner in itertools.product((0, 1), repeat=self.gdim):  # 2^d corners, not nodes
            c = torch.tensor(corner, device=h.device)
            weight = torch.where(c.bool(), frac, 1 - frac).prod(1)
            out = out + weight.reshape(-1, 1, 1) * mixed[((lo + c) * self.strides).sum(1)]
        return h + self.lin_out(out)

    def extra_repr(self) -> str:
        return f"cells={self.cells}, gdim={self.gdim}"
