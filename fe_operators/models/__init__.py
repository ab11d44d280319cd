"""Models: SPON's encoder, processors and exact Dirichlet decoder (docs/design.md §3, §4).

* :mod:`~fe_operators.models.context` — :class:`MeshContext`, the mesh-dependent tensors
  (graph, coordinates, Dirichlet split, lifting and its maps of the inputs, input maps, the
  mesh's levels as a :class:`fe_operators.multigrid.hierarchy.Hierarchy`), kept apart from the weights; :mod:`~fe_operators.models.context_buffers` —
  :class:`ContextBuffers`, a context as buffers in a model's ``state_dict``;
* :mod:`~fe_operators.models.encoder` / :mod:`~fe_operators.models.decoder` — inputs onto
  the output nodes; ``u = g_h + Z z`` in float64, ``g_h = g_0 + Σ_k L_k x_k``;
* :mod:`~fe_operators.models.processors` — the processor extension point
  (:class:`Processor`, :func:`register_processor`, :data:`PROCESSORS`) and the
  processors that ship (``mlp``, ``gnn``, ``multigrid``), registered when the package
  is imported;
* :mod:`~fe_operators.models.layers` — the layers processors are built from (MLP,
  message passing, deep propagation, coarse and latent grids; the multigrid processor's
  learned V-cycle is :class:`fe_operators.multigrid.cycle.MultigridCycle`);
* :mod:`~fe_operators.models.spon` — :class:`SPON` (``config`` / ``from_config``);
* :mod:`~fe_operators.models.normalized` — :class:`NormalizedModel`, a network between its
  :class:`UnitGaussianNormalizer` s (buffers): physical values in and out;
* :mod:`~fe_operators.models.registry` — the model classes a checkpoint may name
  (:func:`register_model_class`);
* :mod:`~fe_operators.models.build` — contexts and SPONs from Firedrake spaces and Problems;
* :mod:`~fe_operators.models.inference` — :func:`predict`, Functions in and out.

Sparse maps and products (:class:`~fe_operators.sparse.SparseMap`,
:func:`~fe_operators.sparse.spmm`) are in :mod:`fe_operators.sparse`.

Importing this package does not import Firedrake (``build`` and ``predict`` do, on use).

Example
-------
>>> import firedrake as fd                                              # doctest: +SKIP
>>> from fe_operators.problems import get_problem
>>> from fe_operators.models import context_for_model, predict, spon_for_problem
>>> problem = get_problem("poisson", fd.UnitSquareMesh(32, 32))
>>> model = spon_for_problem(problem, "gnn", depth=3)   # other options: GNNOptions' defaults
>>> inputs = [problem.sample_inputs(rng) for rng in rngs]
>>> u = predict(model, inputs, problem.output_space)                  # list of Functions
>>> fine = get_problem("poisson", fd.UnitSquareMesh(64, 64))
>>> u64 = predict(model, [fine.sample_inputs(rng)], fine.output_space,
...               context=context_for_model(model, fine))        # same weights, fine's lifting
"""

from __future__ import annotations

from typing import Any

from fe_operators.models.context import MeshContext
from fe_operators.models.context_buffers import ContextBuffers
from fe_operators.models.decoder import DirichletDecoder, affine_lifting
from fe_operators.models.encoder import InputEncoder, InputField
from fe_operators.models.layers import (
    MLP, CoarseGridMixing, DeepPropagation, GridTransfer, LatentGridSpectral, MeshConv, grid_transfer,
)
from fe_operators.models.normalized import NormalizedModel, RunningMoments, UnitGaussianNormalizer
from fe_operators.models.processors import (
    PROCESSORS, GNNOptions, GNNProcessor, MLPOptions, MLPProcessor, MultigridOptions, MultigridProcessor, Processor,
    processor_class, register_processor,
)
from fe_operators.models.registry import MODEL_CLASSES, model_class, register_model_class
from fe_operators.models.spon import SPON
from fe_operators.models.rollout import RolloutSPON, StateLayout

__all__ = [
    "SPON", "Processor", "PROCESSORS", "register_processor", "processor_class",
    "MeshContext", "ContextBuffers", "MLPOptions", "GNNOptions",
    "MultigridProcessor", "MultigridOptions",
    "InputEncoder", "InputField", "DirichletDecoder", "affine_lifting",
    "MLPProcessor", "GNNProcessor", "MeshConv", "DeepPropagation", "CoarseGridMixing", "LatentGridSpectral",
    "GridTransfer", "grid_transfer", "MLP",
    "NormalizedModel", "UnitGaussianNormalizer", "RunningMoments",
    "MODEL_CLASSES", "register_model_class", "model_class",
    "RolloutSPON", "StateLayout", "rollout_spon_for_problem",
    "predict", "spon_for_problem", "context_from_spaces", "context_from_problem", "context_for_model",
]

_FIREDRAKE_SIDE = {
    "predict": "fe_operators.models.inference",
    "spon_for_problem": "fe_operators.models.build",
    "context_from_spaces": "fe_operators.models.build",
    "context_from_problem": "fe_operators.models.build",
    "context_for_model": "fe_operators.models.build",
    "rollout_spon_for_problem": "fe_operators.models.rollout_build",
}


def __getattr__(name: str) -> Any:
    # Firedrake-side helpers load on first use, so importing models stays torch-only.
    if name in _FIREDRAKE_SIDE:
        import importlib

        return getattr(importlib.import_module(_FIREDRAKE_SIDE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
