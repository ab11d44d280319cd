"""The ``spon`` model type of ``fe-operators train``: a SPON for the dataset's problem.

``model.type: spon`` builds a :class:`~fe_operators.models.SPON` for the problem that
generated the training data.  The problem is rebuilt from the dataset file's provenance
(family, mesh spec, parameters) with :meth:`~fe_operators.data.FEFile.rebuild_problem`,
which checks that the rebuilt spaces number their DOFs exactly as the stored arrays do
(numbering hashes) and raises :class:`~fe_operators.data.NumberingError` otherwise, so
the model's mesh context (graph, Dirichlet DOFs, input maps) is always in the stored DOF
order, never silently permuted.

The section's keys (every key optional): SPON's own (:class:`SPONOptions`: ``processor``,
``method``, ``lifting_input``, ``weights_dtype``) and those of the chosen processor, each
processor's declared once in its ``Options`` dataclass (``fe-operators train
--print-config`` lists them all)::

    model:
      type: spon
      processor: gnn          # a registered processor: gnn | mlp | multigrid
      width: 64               # gnn: hidden features (keys left out: GNNOptions' defaults)
      depth: 3                # gnn: message-passing layers

Keys of another processor are an error, not ignored.  Normalisation: any
``data.normalize_inputs`` / ``normalize_output`` keeps SPON's Dirichlet values exact (the
:class:`~fe_operators.models.NormalizedModel` around the SPON re-imposes the physical
boundary data after decoding).

This module imports Firedrake only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Union

import torch

from fe_operators.errors import ConfigError
from fe_operators.models.processors.base import PROCESSORS, processor_class
from fe_operators.options import OptionRow, config_to_dict, dataclass_from_dict, option, option_rows, unknown_key
from fe_operators.train.config import ModelSection
from fe_operators.train.model_types import register_model

__all__ = ["SPONOptions", "SPONSchema", "spon_options", "build_spon", "parse_with_processor"]


def _registered(name: str) -> str | None:
    return None if name in PROCESSORS else f"expected one of {sorted(PROCESSORS)}, got {name!r}"


@dataclasses.dataclass
class SPONOptions:
    """The keys of ``model`` for ``type: spon`` that are not the processor's.

    The processor's own keys (its ``Options`` dataclass, e.g.
    :class:`~fe_operators.models.GNNOptions`) sit beside these in the same section;
    after :func:`spon_options` they are in :attr:`processor_options`.
    """

    processor: str = option(
        "Processor, a registered name: 'gnn' (message passing on the DOF graph, any mesh of the domain), "
        "'mlp' (dense, the training mesh only), 'multigrid' (MgNO V-cycles on the mesh hierarchy, any "
        "hierarchy of the domain), 'hierarchical' (a graph U-Net on the FE levels of any mesh, SPON-MG). Its "
        "keys follow; those of the others are shown commented out.",
        _registered, default="gnn")
    method: Literal["auto", "interpolate", "project"] = option(
        "How inputs reach the output's DOF nodes: 'auto' (lumped L2 projection from discontinuous inputs "
        "onto degree-1 nodes, interpolation otherwise), 'interpolate' or 'project'.", default="auto")
    lifting_input: Union[str, None] = option(
        "How the Dirichlet data are lifted: 'auto' (the problem's Dirichlet data as a sparse linear map of its "
        "inputs, e.g. Poisson's g or Stokes' d*g, exact in float64; fixed data where they do not depend on the "
        "inputs), the name of the one input they depend on (checked), or null (fixed data: an error where the "
        "data depend on the inputs).", default="auto")
    weights_dtype: Literal["float32", "float64"] = option(
        "Dtype of the weights (outputs are float64 either way).", default="float32")
    decoder: Literal["dirichlet", "divergence_free"] = option(
        "'dirichlet': the network's free values around the exact Dirichlet data; 'divergence_free' (2D "
        "Taylor-Hood velocity outputs): that, then a fixed Leray projection onto exactly divergence-free P2 "
        "velocities on the Alfeld-refined mesh (fe_operators.fem.leray), Dirichlet values still exact; its "
        "outputs are not on the dataset's DOFs, so steady training refuses it (Python API and rollouts).",
        default="dirichlet")
    processor_options: Any = dataclasses.field(default=None, init=False, metadata={"doc": ""})


#: the keys of SPONOptions itself
_SPON_KEYS = tuple(f.name for f in dataclasses.fields(SPONOptions) if f.init)


def _owner(name: str) -> str | None:
    """A processor (other than none) that has an option ``name``."""
    for proc, cls in sorted(PROCESSORS.items()):
        if name in {f.name for f in dataclasses.fields(cls.Options)}:
            return proc
    return None


def spon_options(section: ModelSection) -> SPONOptions:
    """Validate the options of a ``spon`` model section.

    Returns
    -------
    SPONOptions
        With :attr:`SPONOptions.processor_options` the processor's validated options.

    Raises
    ------
    ConfigError
        An unknown key, a wrong type or value, or a key of another processor (e.g.
        ``model.hidden`` with ``processor: gnn``), naming the key.
    """
    return _parse(dict(section.options), "model")


def _parse(given: dict[str, Any], key: str) -> SPONOptions:
    return parse_with_processor(SPONOptions, given, key)


def parse_with_processor(options_cls: type, given: dict[str, Any], key: str) -> Any:
    """A model section holding its own keys (``options_cls``'s init fields, one of them
    ``processor``) beside its processor's options, set on ``processor_options``.

    Raises
    ------
    ConfigError
        A bad value, or a key of neither (a key of another processor is named as such).
    """
    keys = tuple(f.name for f in dataclasses.fields(options_cls) if f.init)
    opts = dataclass_from_dict(options_cls, {k: v for k, v in given.items() if k in keys}, key)
    cls = processor_class(opts.processor, f"{key}.processor")
    own = {f.name for f in dataclasses.fields(cls.Options)}
    for name in given:
        if name in keys or name in own:
            continue
        other = _owner(name)
        if other is not None:
            raise ConfigError(f"{key}.{name}", f"is a key of the {other} processor; this model has processor: "
                                               f"{opts.processor}")
        raise unknown_key(key, str(name), list(keys) + sorted(own))
    opts.processor_options = dataclass_from_dict(cls.Options, {k: v for k, v in given.items() if k in own}, key)
    return opts


class SPONSchema:
    """The :class:`~fe_operators.train.model_types.ModelSchema` of ``type: spon``: SPON's keys
    plus the chosen processor's (each processor's options are declared once, in its
    ``Options`` dataclass)."""

    def check(self, options: dict[str, Any], key: str) -> dict[str, Any]:
        opts = _parse(dict(options), key)
        own = {k: config_to_dict(getattr(opts, k)) for k in _SPON_KEYS}
        return {**own, **config_to_dict(opts.processor_options)}

    def rows(self, prefix: str) -> list[OptionRow]:
        rows = option_rows(SPONOptions, prefix)
        default = SPONOptions.processor
        for name in [default] + sorted(set(PROCESSORS) - {default}):
            tag = f"[processor: {name}]"
            rows += [r._replace(doc=f"{tag} {r.doc}", commented=name != default)
                     for r in option_rows(PROCESSORS[name].Options, prefix)]
        return rows


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
        Invalid options; ``lifting_input: null`` (or another input's name) where the
        problem's boundary data depend on its inputs.
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
    if opts.decoder == "divergence_free":
        # the outputs live on the refined mesh; the trainer, the normalizers and the FE
        # losses of a steady dataset compare with the output space's own DOFs
        raise ConfigError("model.decoder", "'divergence_free' outputs are P2 velocities on the Alfeld-refined mesh, "
                                           "not the dataset's output DOFs that steady training compares with; use "
                                           "it from Python (spon_for_problem(..., decoder='divergence_free'), "
                                           "compared with model.projection.embed(target)) or in rollouts")
    file = dataset.file
    problem = file.rebuild_problem()
    got = {f"inputs/{n}": space_info(V).to_dict() for n, V in problem.input_spaces.items()}
    got["output"] = space_info(problem.output_space).to_dict()
    if got != file.space_dicts:
        raise SpaceMismatchError(f"the problem rebuilt from {file.path}'s provenance has spaces {got}, the file "
                                 f"describes {file.space_dicts}")
    lifting_input = opts.lifting_input
    names = list(problem.input_spaces)
    if lifting_input not in (None, "auto") and lifting_input not in names:
        raise ConfigError("model.lifting_input", f"expected 'auto', null or an input name in {names}, "
                                                 f"got {lifting_input!r}")
    try:  # weight_copies 4: training holds the weights, their gradients and Adam's two moments
        model = spon_for_problem(problem, opts.processor, lifting_input=lifting_input, method=opts.method,
                                 dtype=getattr(torch, opts.weights_dtype), mesh_spec=file.provenance.get("mesh"),
                                 weight_copies=4, decoder=opts.decoder,
                                 **config_to_dict(opts.processor_options))
    except ConfigError as exc:  # its keys are this section's
        raise ConfigError(f"model.{exc.key}" if exc.key else "model", exc.message) from None
    report = getattr(model.processor, "cost_report", None)
    if report is not None:  # processors that count their arithmetic: multiply-adds per level for one sample
        print(report(model.context), flush=True)
    return model


register_model("spon", build_spon, SPONSchema())
