"""Normalised model application: the model sees encoded inputs, callers see physical units.

A trained operator is the composition

.. math:: x \\mapsto D_{\\text{out}}\\big(N_\\theta(E_{\\text{in}}(x))\\big)

of the input normalizer's encoding :math:`E_{\\text{in}}`, the network :math:`N_\\theta`
and the output normalizer's decoding :math:`D_{\\text{out}}`.  Losses and metrics are FE
norms of the decoded output against the physical target, so they mean what they say
(relative :math:`L^2`/:math:`H^1` errors of the discrete solution), whatever the
normalisation.  The trainer and :func:`~fe_operators.train.checkpoint.load_model` both go
through :func:`physical_forward`, so a loaded model reproduces training-time outputs.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import torch

from fe_operators.data.dataset import UnitGaussianNormalizer

__all__ = ["InputNormalizer", "Inputs", "encode_inputs", "decode_output", "physical_forward", "inputs_to"]

Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]
InputNormalizer = Union[UnitGaussianNormalizer, Mapping[str, UnitGaussianNormalizer], None]


def encode_inputs(normalizer: InputNormalizer, x: Inputs) -> Inputs:
    """Encode a batch of inputs: one tensor with one normalizer, or a dict with a dict of them.

    Inputs of a dict without a normalizer of their name pass through unchanged.

    Raises
    ------
    TypeError
        A tensor with a dict of normalizers, or a dict with a single normalizer.
    """
    if normalizer is None:
        return x
    if isinstance(x, torch.Tensor):
        if not isinstance(normalizer, UnitGaussianNormalizer):
            raise TypeError("stacked (tensor) inputs take one UnitGaussianNormalizer, got a mapping")
        return normalizer.encode(x)
    if isinstance(normalizer, UnitGaussianNormalizer):
        raise TypeError("dict inputs take a mapping name -> UnitGaussianNormalizer, got a single one")
    return {n: (normalizer[n].encode(v) if n in normalizer else v) for n, v in x.items()}


def decode_output(normalizer: UnitGaussianNormalizer | None, z: torch.Tensor) -> torch.Tensor:
    """Decode a batch of network outputs to physical units (identity without a normalizer)."""
    return z if normalizer is None else normalizer.decode(z)


def inputs_to(x: Inputs, device: torch.device) -> Inputs:
    """Move a batch of inputs (tensor or dict of tensors) to ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return {n: v.to(device) for n, v in x.items()}


def physical_forward(
    model: torch.nn.Module,
    x: Inputs,
    input_normalizer: InputNormalizer = None,
    output_normalizer: UnitGaussianNormalizer | None = None,
    **model_kwargs: Any,
) -> torch.Tensor:
    """Apply ``model`` to physical inputs and return physical outputs.

    A model with exact Dirichlet values (one with ``impose_dirichlet``, such as SPON)
    stays exact through the normalizers: after decoding, its constrained DOFs are set
    from the physical inputs (the network saw encoded ones).

    Parameters
    ----------
    model_kwargs
        Passed to the model (e.g. SPON's ``context=`` for another mesh).

    Shapes
    ------
    x: ``(batch, n_nodes, channels)`` or a dict of ``(batch, n_nodes[, ncomp])``;
    output: ``(batch, n_nodes[, ncomp])`` (the DOF-tensor layout of DESIGN.md §3).
    """
    u = decode_output(output_normalizer, model(encode_inputs(input_normalizer, x), **model_kwargs))
    impose = getattr(model, "impose_dirichlet", None)
    if impose is not None and (input_normalizer is not None or output_normalizer is not None):
        u = impose(u, x, **model_kwargs)
    return u
