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

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from fe_operators.data.h5 import FEFile

__all__ = ["LOSS_NAMES", "fe_norm_for_file", "relative_loss_for_file", "loss_for_file", "mean_squared_norm"]

#: loss/metric name -> the FE norm it measures (``scaled_l2``: :class:`~fe_operators.fem.norms.ScaledLoss`,
#: the squared L2 error over the training outputs' mean squared L2 norm; the others relative errors)
LOSS_NAMES = {"rel_l2": "L2", "rel_h1": "H1", "scaled_l2": "L2"}


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

    if name not in LOSS_NAMES or not name.startswith("rel_"):
        raise ValueError(f"unknown relative FE loss {name!r}; known: "
                         f"{', '.join(n for n in LOSS_NAMES if n.startswith('rel_'))}")
    return RelativeLoss(fe_norm_for_file(file, LOSS_NAMES[name]))


def mean_squared_norm(norm: Any, dataset: Any, block: int = 64) -> float:
    """The mean of ``norm.squared`` over the outputs of ``dataset`` (its physical ``raw`` rows, in blocks).

    Raises
    ------
    ValueError
        An empty dataset, or a mean that is not positive and finite (all-zero or NaN outputs).
    """
    total, count = 0.0, 0
    for start in range(0, len(dataset), block):
        _, y = dataset.raw(np.arange(start, min(start + block, len(dataset))))
        total += float(norm.squared(y.double()).sum())
        count += int(y.shape[0])
    mean = total / count if count else float("nan")
    if not (mean > 0 and np.isfinite(mean)):
        raise ValueError(f"the scaled loss needs training outputs with a positive finite mean squared norm, "
                         f"got {mean!r} over {count} samples")
    return mean


def loss_for_file(file: FEFile, name: str, train: Any = None) -> "object":
    """The loss or metric named ``name`` (:data:`LOSS_NAMES`) for the outputs of ``file``.

    Parameters
    ----------
    file
        The dataset file (its output space gives the FE norm).
    name
        ``"rel_l2"``, ``"rel_h1"`` (:class:`~fe_operators.fem.norms.RelativeLoss`) or
        ``"scaled_l2"`` (:class:`~fe_operators.fem.norms.ScaledLoss`, scaled by the mean
        squared L2 norm of ``train``'s outputs: :func:`mean_squared_norm`).
    train
        The training split (:class:`~fe_operators.data.FEDataset`); needed for ``scaled_l2``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones), or ``scaled_l2`` without ``train``.
    """
    from fe_operators.fem.norms import ScaledLoss

    if name != "scaled_l2":
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown FE loss {name!r}; known: {', '.join(LOSS_NAMES)}")
        return relative_loss_for_file(file, name)
    if train is None:
        raise ValueError("the scaled_l2 loss needs the training split to fix its scale")
    norm = fe_norm_for_file(file, LOSS_NAMES[name])
    return ScaledLoss(norm, mean_squared_norm(norm, train))
