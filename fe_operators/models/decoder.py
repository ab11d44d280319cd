"""SPON's decoder: ``u_h = g_h + Z z`` with exact Dirichlet values (DESIGN.md §4).

The processor predicts the free DOFs ``z``; the decoder writes them into a float64 copy
of the lifting ``g_h`` at the free positions.  The constrained DOFs are never touched by
the network's numbers, so the Dirichlet condition holds to the last bit whatever the
weights (and whatever the model's dtype).
"""

from __future__ import annotations

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext

__all__ = ["DirichletDecoder", "dirichlet_lifting"]


def dirichlet_lifting(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Liftings of a batch of boundary data given on the output nodes (vectorised).

    ``g`` holds the Dirichlet data's values on the output space's DOF nodes (for
    example the input ``g`` of Poisson's problem, interpolated to the output space); the
    lifting keeps them on the constrained DOFs and is zero elsewhere — what
    ``DirichletBC(V, g, ...).apply`` writes into a zero Function, for the whole batch
    at once.

    Parameters
    ----------
    g
        ``(batch, n)`` or ``(batch, n, ncomp)``.
    mask
        ``(n, ncomp)`` bool, True on constrained DOFs (``MeshContext.mask``).

    Returns
    -------
    torch.Tensor
        ``(batch, n, ncomp)`` float64.
    """
    if g.ndim == 2:
        g = g.unsqueeze(-1)
    if g.ndim != 3 or g.shape[1:] != mask.shape:
        raise SpaceMismatchError(
            f"expected boundary data of shape (batch, {', '.join(map(str, mask.shape))}), got {tuple(g.shape)}"
        )
    g = g.to(device=mask.device, dtype=torch.float64)
    return torch.where(mask, g, g.new_zeros(()))


class DirichletDecoder(torch.nn.Module):
    """Free DOFs + lifting -> output DOF tensors, added in float64 (no weights).

    .. math:: u_h = g_h + Z z

    Shapes
    ------
    ``z``: ``(batch, n_free)``; ``lifting``: ``(batch, n, ncomp)`` or ``(n, ncomp)``
    (values on free DOFs are ignored); output ``(batch, n, ncomp)`` float64.
    """

    def forward(self, z: torch.Tensor, context: MeshContext, lifting: torch.Tensor | None = None) -> torch.Tensor:
        """Decode; ``lifting=None`` uses the context's fixed lifting."""
        n, ncomp = context.mask.shape
        if z.ndim != 2 or z.shape[1] != context.n_free:
            raise SpaceMismatchError(f"expected free values (batch, {context.n_free}), got {tuple(z.shape)}")
        g = context.lifting if lifting is None else lifting
        if g.ndim == 2:
            g = g.unsqueeze(0)
        if g.ndim != 3 or g.shape[1:] != (n, ncomp) or g.shape[0] not in (1, z.shape[0]):
            raise SpaceMismatchError(
                f"expected a lifting of shape ({z.shape[0]}, {n}, {ncomp}) or ({n}, {ncomp}), got {tuple(g.shape)}"
            )
        g = g.to(device=z.device, dtype=torch.float64).expand(z.shape[0], n, ncomp).reshape(z.shape[0], n * ncomp)
        # index_copy overwrites the free DOFs only: constrained DOFs keep g bit for bit
        return g.index_copy(1, context.free, z.to(torch.float64)).reshape(z.shape[0], n, ncomp)
