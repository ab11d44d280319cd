"""SPON's decoder: ``u_h = g_h + Z z`` with exact Dirichlet values (docs/design.md §3.3).

The processor predicts the free DOFs ``z``; the decoder writes them into a float64 copy
of the lifting ``g_h`` at the free positions.  The constrained DOFs are never touched by
the network's numbers, so the Dirichlet condition holds to the last bit whatever the
weights (and whatever the model's dtype).  Boundary data that depend on the inputs are
lifted by :func:`affine_lifting`, ``g_h = g_0 + Σ_k L_k x_k`` from the physical inputs,
in float64, with the context's sparse maps (:mod:`fe_operators.fem.lifting`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from fe_operators.errors import SpaceMismatchError
from fe_operators.models.context import MeshContext

__all__ = ["DirichletDecoder", "affine_lifting"]


def affine_lifting(fields: Sequence[torch.Tensor], context: MeshContext) -> torch.Tensor:
    """The lifting ``g_h = g_0 + Σ_k L_k x_k`` of a batch of inputs, in float64.

    ``g_0`` is ``context.lifting`` and ``L_k`` are ``context.lifting_maps`` (the
    problem's Dirichlet data as a sparse map of its inputs, see
    :func:`fe_operators.fem.lifting.dirichlet_map`).  Where each constrained DOF reads
    one input DOF (Poisson's ``g``, Stokes' ``d g``) the values are the problem's data
    bit for bit.

    Parameters
    ----------
    fields
        The input fields in the model's order, ``(batch, n_in_k, ncomp_k)`` each, physical
        values (not normalised).
    context
        The mesh context.

    Returns
    -------
    torch.Tensor
        ``(batch, n, ncomp)`` float64; ``context.lifting`` itself, ``(n, ncomp)``, when
        the context has no lifting maps.
    """
    if not context.lifting_maps:
        return context.lifting
    n, ncomp = context.mask.shape
    g = context.lifting.reshape(1, n * ncomp, 1)
    for k, (x, L) in enumerate(zip(fields, context.lifting_maps, strict=True)):
        if L is None:
            continue
        flat = x.to(device=context.device, dtype=torch.float64).reshape(x.shape[0], -1, 1)
        if flat.shape[1] != L.n_cols:
            raise SpaceMismatchError(f"input field {k}: the lifting map takes {L.n_cols} DOFs, got "
                                     f"{flat.shape[1]} (shape {tuple(x.shape)})")
        g = g + L.apply(flat)
    return g.reshape(-1, n, ncomp)


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
