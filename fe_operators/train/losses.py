"""FE-norm losses for the DOF arrays of a dataset file.

The relative :math:`L^2` and :math:`H^1` losses of a dataset are the
:class:`~fe_operators.fem.norms.RelativeLoss` of the mass matrix :math:`M` (or
:math:`M + K`) of its output space.  The space is rebuilt from the file
(:meth:`~fe_operators.data.FEFile.rebuild`, which maps the rebuilt DOF numbering onto
the stored one), and the matrix is permuted into the file's DOF order,

.. math:: A_{\\text{stored}} = P^T A_{\\text{rebuilt}} P, \\qquad
          u_{\\text{rebuilt}} = P\\,u_{\\text{stored}},

so that :math:`u^T A_{\\text{stored}} u` is the FE norm of the stored DOF vector
:math:`u` exactly.  This module imports Firedrake (on first call).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from fe_operators.data.h5 import FEFile

__all__ = ["LOSS_NAMES", "fe_norm_for_file", "relative_loss_for_file"]

#: loss/metric name -> the FE norm it measures
LOSS_NAMES = {"rel_l2": "L2", "rel_h1": "H1"}


def fe_norm_for_file(file: FEFile, kind: Literal["L2", "H1"]) -> "object":
    """The FE norm (:class:`~fe_operators.fem.norms.FENorm`) of the output space of ``file``.

    Parameters
    ----------
    file
        The dataset file.
    kind
        ``"L2"`` (mass matrix) or ``"H1"`` (mass + stiffness).

    Returns
    -------
    FENorm
        Acting on DOF tensors in the file's DOF order, shape ``(batch, n_nodes[, ncomp])``.
    """
    from fe_operators.fem.norms import FENorm
    from fe_operators.fem.assembly import mass_matrix, stiffness_matrix

    if kind not in ("L2", "H1"):
        raise ValueError(f"expected kind 'L2' or 'H1', got {kind!r}")
    spaces = file.rebuild()
    V = spaces.output_space
    A = mass_matrix(V) if kind == "L2" else mass_matrix(V) + stiffness_matrix(V)
    perm = np.asarray(spaces.permutations["output"], dtype=np.int64)
    shape = file.dof_shape("output")
    ncomp = 1 if len(shape) == 1 else int(shape[1])
    cols = (perm[:, None] * ncomp + np.arange(ncomp)[None, :]).reshape(-1)  # interleaved DOFs
    n = cols.size
    P = sp.csr_matrix((np.ones(n), (np.arange(n), cols)), shape=(n, n))
    return FENorm(P.T @ sp.csr_matrix(A) @ P, shape, kind)


def relative_loss_for_file(file: FEFile, name: str) -> "object":
    """``RelativeLoss`` named ``"rel_l2"`` or ``"rel_h1"`` for the outputs of ``file``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    from fe_operators.fem.norms import RelativeLoss

    if name not in LOSS_NAMES:
        raise ValueError(f"unknown FE loss {name!r}; known: {', '.join(LOSS_NAMES)}")
    return RelativeLoss(fe_norm_for_file(file, LOSS_NAMES[name]))
