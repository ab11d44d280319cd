"""Decoupled deep propagation: many cheap hops with learned per-hop weights (docs/design.md §4.2)."""

from __future__ import annotations

import torch

from fe_operators.models.layers.graph_ops import mean_adjacency, propagate_mean

__all__ = ["DeepPropagation", "HOP_SCALINGS"]

#: how the number of hops follows the mesh size
HOP_SCALINGS = ("diffusive", "fixed")


class DeepPropagation(torch.nn.Module):
    r"""Residual sum of ``K`` hops of mean propagation with learned per-hop, per-channel weights.

    .. math:: h' = h + \sum_{k=1}^{K} \gamma_k \odot \hat A^k h, \qquad \hat A = (A + I)/(d + 1)

    (the transform-then-propagate scheme of "Towards Deeper Graph Neural Networks", with
    GPR-GNN's learned hop weights; :math:`\hat A` via :func:`~fe_operators.models.layers.graph_ops.propagate_mean`).
    ``K`` sparse products extend the receptive field by ``K`` hops at the cost of ``K``
    averaging steps, without weights per hop beyond the ``(K, W)`` table ``γ``.

    Mesh refinement: :math:`\hat A^k` diffuses over a time :math:`\propto k h^2`, so the
    same physical reach needs :math:`K (h_{ref}/h)^2` hops on a mesh of mean edge length
    ``h``.  With ``scaling="diffusive"`` and a ``reference_length`` (the training mesh's
    ``h``), the layer takes :math:`K' = \mathrm{round}(K (h_{ref}/h)^2)` hops and reads
    :math:`\gamma` as a function of diffusion time: hop ``k`` of ``K'`` gets the weight
    interpolated at ``k K/K'``, times ``K/K'`` (the quadrature of
    :math:`\int_0^T \gamma(t)\,e^{t c\Delta}\,dt`).  On the training mesh
    :math:`K' = K` and the weights are exactly ``γ``.  Cost grows like :math:`h^{-2}`
    hops of :math:`h^{-d}` nodes.

    Parameters
    ----------
    width
        Feature size ``W``.
    hops
        ``K`` on the reference mesh (>= 1).
    scaling
        ``"diffusive"`` (hops follow ``(h_ref/h)^2``) or ``"fixed"`` (always ``K``).
    reference_length
        ``h_ref``; None: hops never scale.

    Shapes
    ------
    ``h``: ``(n, batch, W) -> (n, batch, W)``.
    """

    def __init__(self, width: int, hops: int = 16, scaling: str = "diffusive",
                 reference_length: float | None = None) -> None:
        super().__init__()
        if hops < 1:
            raise ValueError(f"expected hops >= 1, got {hops}")
        if scaling not in HOP_SCALINGS:
            raise ValueError(f"expected scaling in {HOP_SCALINGS}, got {scaling!r}")
        self.hops, self.scaling = int(hops), scaling
        self.reference_length = None if reference_length is None else float(reference_length)
        # start as the plain average of the hops: a smooth global component from step 0
        self.gamma = torch.nn.Parameter(torch.full((self.hops, width), 1.0 / self.hops))

    def num_hops(self, length: float) -> int:
        """``K'``: hops on a mesh of mean edge length ``length``."""
        if self.scaling == "fixed" or self.reference_length is None:
            return self.hops
        return max(1, round(self.hops * (self.reference_length / length) ** 2))

    def hop_weights(self, n_hops: int) -> torch.Tensor:
        """``(n_hops, W)`` weights: ``γ`` read at diffusion times ``k K / n_hops``, times ``K / n_hops``."""
        if n_hops == self.hops:
            return self.gamma
        pos = torch.arange(1, n_hops + 1, device=self.gamma.device, dtype=self.gamma.dtype) * (self.hops / n_hops)
        pos = (pos - 1).clamp(0, self.hops - 1)  # table index of hop k is k - 1
        lo = pos.floor().long().clamp(max=self.hops - 2) if self.hops > 1 else pos.long()
        frac = (pos - lo).unsqueeze(1)
        hi = (lo + 1).clamp(max=self.hops - 1)
        return (self.gamma[lo] * (1 - frac) + self.gamma[hi] * frac) * (self.hops / n_hops)

    def forward(self, h: torch.Tensor, indptr: torch.Tensor, source: torch.Tensor, length: float) -> torch.Tensor:
        """Propagate ``K'`` hops (``length``: the mesh's mean edge length)."""
        weights = self.hop_weights(self.num_hops(length)).to(h.dtype)
        adjacency, self_weight = mean_adjacency(indptr, source, h.dtype)
        out, x = h, h
        for w in weights:  # a loop over hops, each one sparse product over all nodes
            x = propagate_mean(x, adjacency, self_weight)
            out = out + w * x
        return out

    def extra_repr(self) -> str:
        return f"hops={self.hops}, scaling={self.scaling!r}, reference_length={self.reference_length}"
