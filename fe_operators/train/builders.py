"""The ``spon`` model family of ``fe-operators train``: a SPON for the dataset's problem.

``model.type: spon`` builds a :class:`~fe_operators.models.SPON` for the problem that
generated the training data.  The problem is rebuilt from the dataset file's provenance
(family, mesh spec, parameters) with :meth:`~fe_operators.data.FEFile.rebuild_problem`,
which checks that the rebuilt spaces number their DOFs exactly as the stored arrays do
(numbering hashes) and raises :class:`~fe_operators.data.NumberingError` otherwise, so
the model's mesh context (graph, Dirichlet DOFs, input maps) is always in the stored DOF
order, never silently permuted.

The section's keys (:class:`SPONOptions`; every key optional)::

    model:
      type: spon
      processor: gnn          # gnn (any mesh of the domain) | mlp (the training mesh only)
      width: 32               # gnn: hidden features
      depth: 2                # gnn: message-passing layers
      latent_cells: 16        # gnn: latent Fourier grid cells per axis (0: none)
      latent_modes: 8         # gnn: Fourier modes per axis on the latent grid
      hops: 0                 # gnn: deep-propagation hops (0: none)
      coarse_cells: 0         # gnn: coarse-grid cells per axis (0: none)
      hidden: [256, 256]      # mlp: hidden layer sizes
      act: gelu

Keys of the other processor are an error, not ignored.  Normalisation: any
``data.normalize_inputs`` / ``normalize_output`` keeps SPON's Dirichlet values exact (the
trainer re-imposes the physical boundary data after decoding, see
:func:`~fe_operators.train.physical_forward`).

This module imports Firedrake only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Union

import torch

from fe_operators.train.config import ModelSection, _key, dataclass_from_dict
from fe_operators.train.errors import ConfigError

__all__ = ["SPONOptions", "GNN_KEYS", "MLP_KEYS", "spon_options", "build_spon"]


def _positive(v: Any) -> str | None:
    return None if v > 0 else "expected a positive number"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "expected a number >= 0"


def _sizes(v: list) -> str | None:
    return None if v and all(s > 0 for s in v) else f"expected a non-empty list of positive sizes, got {v}"


@dataclasses.dataclass
class SPONOptions:
    """The keys of ``model`` for ``type: spon`` (see the module docstring)."""

    processor: Literal["gnn", "mlp"] = _key(
        "Processor: 'gnn' (message passing on the DOF graph, runs on any mesh of the domain) or 'mlp' "
        "(dense, tied to the training mesh).", default="gnn")
    width: int = _key("gnn: hidden feature size.", _positive, default=32)
    depth: int = _key("gnn: message-passing layers (half before, half after the global stage).",
                      _non_negative, default=2)
    hops: int = _key("gnn: deep-propagation hops on the training mesh (0: none).", _non_negative, default=0)
    coarse_cells: int = _key("gnn: coarse-grid cells per axis of the global mixing stage (0: none).",
                             _non_negative, default=0)
    latent_cells: int = _key(
        "gnn: cells per axis of the latent grid of the Fourier stage that follows each message-passing "
        "layer (0: none).", _non_negative, default=16)
    latent_modes: int = _key("gnn: Fourier modes per axis on the latent grid, 1 <= modes <= "
                             "(latent_cells + 1) // 2 (ignored when latent_cells is 0).", _non_negative, default=8)
    hop_scaling: Literal["diffusive", "fixed"] = _key(
        "gnn: how the hops follow the mesh size on other meshes.", default="diffusive")
    layer_norm: bool = _key("gnn: LayerNorm after each residual update.", default=True)
    hidden: list[int] = _key("mlp: hidden layer sizes.", _sizes, default_factory=lambda: [256, 256])
    act: Literal["gelu", "relu", "silu", "tanh"] = _key("Activation.", default="gelu")
    method: Literal["auto", "interpolate", "project"] = _key(
        "How inputs reach the output's DOF nodes: 'auto' (lumped L2 projection from discontinuous inputs "
        "onto degree-1 nodes, interpolation otherwise), 'interpolate' or 'project'.", default="auto")
    lifting_input: Union[str, None] = _key(
        "Input whose values on the Dirichlet DOFs are the boundary data: 'auto' (found from the problem), "
        "an input name, or null (the fixed lifting of the problem's conditions).", default="auto")
    weights_dtype: Literal["float32", "float64"] = _key(
        "Dtype of the weights (outputs are float64 either way).", default="float32")


#: keys that only the GNN / only the MLP processor takes
GNN_KEYS = ("width", "depth", "hops", "coarse_cells", "latent_cells", "latent_modes", "hop_scaling", "layer_norm")
MLP_KEYS = ("hidden",)


def spon_options(section: ModelSection) -> SPONOptions:
    """Validate the options of a ``spon`` model section.

    Raises
    ------
    ConfigError
        An unknown key, a wrong type or value, or a key of the other processor
        (e.g. ``model.hidden`` with ``processor: gnn``), naming the key.
    """
    given = dict(section.options)
    opts = dataclass_from_dict(SPONOptions, given, "model")
    other = MLP_KEYS if opts.processor == "gnn" else GNN_KEYS
    for name in other:
        if name in given:
            raise ConfigError(f"model.{name}", f"is a key of the {'mlp' if opts.processor == 'gnn' else 'gnn'} "
                                               f"processor; this model has processor: {opts.processor}")
    if opts.processor == "gnn" and opts.latent_cells:
        top = (opts.latent_cells + 1) // 2
        if opts.latent_cells < 2:
            raise ConfigError("model.latent_cells", f"expected 0 (none) or >= 2, got {opts.latent_cells}")
        if not 1 <= opts.latent_modes <= top:
            raise ConfigError("model.latent_modes", f"expected 1 <= latent_modes <= (latent_cells + 1) // 2 = "
                                                    f"{top}, got {opts.latent_modes}")
        if opts.depth < 1:
            raise ConfigError("model.depth", "expected depth >= 1 with latent_cells (a latent stage follows each "
                                             "message-passing layer)")
    return opts


def build_spon(section: ModelSection, dataset: Any) -> torch.nn.Module:
    """Build the SPON of a ``spon`` model section for the problem of ``dataset``'s file.

    Parameters
    ----------
    section
        The ``model`` section (``type: spon`` and :class:`SPONOptions` keys).
    dataset
        The train split, an :class:`~fe_operators.data.FEDataset`; its ``file`` gives the
        provenance and the stored DOF numbering.

    Returns
    -------
    SPON
        With the training mesh's context (in the file's DOF order) as its default.

    Raises
    ------
    ConfigError
        Invalid options.
    NumberingError
        The problem rebuilt from the provenance numbers its DOFs differently from the
        stored arrays (the model would read scrambled data).
    SpaceMismatchError
        The rebuilt problem's spaces differ from those the file describes.
    """
    from fe_operators.errors import SpaceMismatchError
    from fe_operators.fem.spaces import space_info
    from fe_operators.models.build import spon_for_problem

    opts = spon_options(section)
    file = dataset.file
    problem = file.rebuild_problem()
    got = {f"inputs/{n}": space_info(V).to_dict() for n, V in problem.input_spaces.items()}
    got["output"] = space_info(problem.output_space).to_dict()
    if got != file.space_dicts:
        raise SpaceMismatchError(f"the problem rebuilt from {file.path}'s provenance has spaces {got}, the file "
                                 f"describes {file.space_dicts}")
    keys = GNN_KEYS if opts.processor == "gnn" else MLP_KEYS
    processor_options = {k: getattr(opts, k) for k in keys}
    processor_options["act"] = opts.act
    lifting_input = opts.lifting_input
    names = list(problem.input_spaces)
    if lifting_input not in (None, "auto") and lifting_input not in names:
        raise ConfigError("model.lifting_input", f"expected 'auto', null or an input name in {names}, "
                                                 f"got {lifting_input!r}")
    return spon_for_problem(problem, opts.processor, lifting_input=lifting_input, method=opts.method,
                            dtype=getattr(torch, opts.weights_dtype), **processor_options)


def _register() -> None:
    from fe_operators.train.cli import register_model

    register_model("spon", build_spon)


_register()
