"""The typed schema of ``fe-operators precond train --config FILE``.

One YAML file says which preconditioner to train, on which operator family and
hierarchy, with which network and budget, and where the checkpoint goes::

    kind: neural_mg             # or dcdm, or any registered kind
    family:                     # FamilySection
      mesh: unitsquare:8/r3     # the training hierarchy (a /rK spec)
      coefficient: lognormal
      variance: 2.0
      samples: 8
    smoother:                   # the options section of kind neural_mg (SmootherSection)
      hidden: 8
      sweeps: 2
    dcdm:                       # the options section of kind dcdm (DCDMSection)
      width: 8
    train:                      # TrainSection
      steps: 300
      lr: 3.0e-3
    out: smoother.pt            # the checkpoint

Every key is a field made with :func:`fe_operators.options.option` (type, default, doc,
check); :func:`load_precond_config` validates a file once and raises
:class:`~fe_operators.errors.ConfigError` naming the dotted key;
:func:`precond_config_yaml` prints every key with its default (``--print-config``).
The kinds and their sections come from the registry
(:mod:`fe_operators.precond.registry`): :func:`precond_config_class` builds the schema
of the registered kinds, so a kind registered by a user's module has its section here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Literal, Union

from fe_operators.configfile import commented_yaml, config_from_data, load_config_file
from fe_operators.errors import ConfigError
from fe_operators.limits import check_allocation, format_bytes
from fe_operators.options import (
    config_to_dict, finite_positive, non_negative, option, option_rows, optional,
    positive,
)

__all__ = ["FamilySection", "PrecondTrainSection", "precond_config_class", "is_precond_config",
           "load_precond_config", "precond_config_from_dict", "precond_config_yaml", "check_sizes"]


@dataclasses.dataclass
class FamilySection:
    """The operator family and training hierarchy (``family``)."""

    mesh: str = option("(required) Mesh spec of the training hierarchy's finest level, e.g. 'unitsquare:8/r3' "
                       "(a /rK spec: a MeshHierarchy of K refinements).")
    coefficient: Literal["lognormal", "dg0", "cg1"] = option(
        "Coefficient a of -div(a grad u) = f, u = 0: the Darcy family's log-normal field exp(psi), or its "
        "thresholded variants.", default="lognormal")
    variance: float = option("Marginal variance of the field psi (log-normal: 2.0 gives max/min contrasts of "
                             "1e2-1e4, sometimes more).", finite_positive, default=2.0)
    length_scale: Union[float, None] = option("Matern length scale of psi (null: the FNO field's, 0.94).",
                                              optional(finite_positive), default=None)
    samples: int = option("Training coefficients (operators).", positive, default=8)
    validation_samples: int = option("Held-out coefficients (drawn from another seed than the training ones) the "
                                     "final report and the comparison with the classical preconditioner are "
                                     "measured on (at least 1 is drawn).", non_negative, default=2)

    problem: Union[str, None] = option(
        "A problem family with the spd_operator hook to train on instead (docs/extending.md): a registered name "
        "('darcy', 'elasticity') or a 'module:Class' of your own, imported only when named on the command line "
        "(--problem module:Class); null: the diffusion family of coefficient, variance, length_scale.", default=None)
    params: dict[str, Any] = option("Constructor parameters of family.problem, e.g. {degree: 2} (CG2) or "
                                    "{clamp_markers: on_boundary}.", default_factory=dict)
    ranges: dict[str, list[float]] = option(
        "Parameters of family.problem's operator drawn per training operator, uniformly in [low, high], e.g. "
        "{poisson_ratio: [0.2, 0.35]} for elasticity.", default_factory=dict)

    def validate(self, key: str) -> None:
        """``params`` and ``ranges`` need ``problem``; each range is ``[low, high]``, low <= high."""
        sub = f"{key}.ranges" if key else "ranges"
        if (self.params or self.ranges) and self.problem is None:
            raise ConfigError(f"{key}.problem" if key else "problem",
                              "params and ranges are of a problem family: name it (e.g. problem: elasticity)")
        for name, pair in self.ranges.items():
            if len(pair) != 2 or not pair[0] <= pair[1] or not all(map(math.isfinite, pair)):
                raise ConfigError(f"{sub}.{name}", f"expected [low, high] with low <= high, got {pair}")

    def evaluate_kwargs(self) -> dict[str, Any]:
        """The family's keyword arguments of :func:`~fe_operators.precond.evaluate.evaluate_preconditioners`."""
        if self.problem is not None:
            return {"problem": self.problem, "params": dict(self.params)}
        return {"coefficient": self.coefficient, "variance": self.variance, "length_scale": self.length_scale}


@dataclasses.dataclass
class PrecondTrainSection:
    """Optimisation budget (``train``)."""

    steps: int = option("Adam steps.", positive, default=300)
    lr: float = option("Learning rate (Adam, cosine decay to lr/10).", finite_positive, default=3e-3)
    seed: int = option("Seed of the coefficients, initialisation and random vectors.", default=0)
    time_budget: Union[float, None] = option("Stop after this many seconds of optimisation (null: no limit).",
                                             optional(finite_positive), default=None)
    threads: int = option("torch threads.", positive, default=1)
    log_every: int = option("Print the loss every this many steps (0: never).", non_negative, default=25)
    allow_worse: bool = option("Write the checkpoint even if, on the held-out coefficients, it does worse than "
                               "its classical counterpart (neural_mg: the same V-cycle with l1-Jacobi weights; "
                               "dcdm: CG + ICC(0)); false: refuse, exit 1 (--allow-worse sets it).", default=False)


_CLASSES: dict[tuple, type] = {}

_MOVED = {"SmootherSection": "fe_operators.precond.kind_neural_mg", "DCDMSection": "fe_operators.precond.kind_dcdm"}


def precond_config_class() -> type:
    """The configuration schema for the registered kinds (:mod:`~fe_operators.precond.registry`).

    ``kind``, ``family``, one section per kind (its ``section`` name and ``options``
    dataclass), ``train`` and ``out``; rebuilt when a kind is registered.
    """
    from fe_operators.precond.registry import preconditioner_kinds

    kinds = preconditioner_kinds()
    key = tuple((name, kind.section, kind.options) for name, kind in kinds.items())
    if key not in _CLASSES:
        doc = "; ".join(f"{name!r}: {kind.description}" for name, kind in kinds.items())
        fields = [("kind", Literal[tuple(kinds)], option(f"(required) {doc}.")),
                  ("family", FamilySection, option("The operator family and training hierarchy."))]
        fields += [(kind.section, kind.options, option(kind.section_doc or f"Options of kind {name}.",
                                                       default_factory=kind.options))
                   for name, kind in kinds.items()]
        fields += [("train", PrecondTrainSection, option("Optimisation budget.", default_factory=PrecondTrainSection)),
                   ("out", str, option("(required) The checkpoint file to write; relative to the configuration "
                                       "file."))]
        cls = dataclasses.make_dataclass("PrecondConfig", fields, kw_only=True)
        cls.__module__ = __name__
        cls.__doc__ = "A validated ``precond train`` configuration."
        _CLASSES[key] = cls
    return _CLASSES[key]


def __getattr__(name: str) -> Any:
    # PrecondConfig is made from the registered kinds, on first use
    if name == "PrecondConfig":
        return precond_config_class()
    if name in _MOVED:  # the built-in kinds' sections live in their kind modules
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_precond_config(obj: Any) -> bool:
    """Whether ``obj`` is a validated configuration (of any registry state)."""
    return dataclasses.is_dataclass(obj) and type(obj).__name__ == "PrecondConfig" \
        and type(obj).__module__ == __name__


def precond_config_from_dict(data: Any, base_dir: str | os.PathLike | None = None,
                             source: str | os.PathLike | None = None) -> Any:
    """Validate a configuration mapping; ``out`` becomes absolute (relative to ``base_dir``).

    Raises
    ------
    ConfigError
        Unknown key, missing required key, wrong type or invalid value (naming the key).
    """
    return config_from_data(precond_config_class(), data, base_dir=base_dir, source=source, paths=("out",))


def load_precond_config(path: str | os.PathLike) -> Any:
    """Read and validate a YAML ``precond train`` configuration (YAML 1.2 numbers).

    Raises
    ------
    ConfigError
        The file is missing or not valid YAML, or the configuration is invalid.
    """
    return load_config_file(precond_config_class(), path, paths=("out",))


def precond_config_yaml() -> str:
    """Every key with its default and doc, as a commented YAML file."""
    return commented_yaml(option_rows(precond_config_class()), "fe-operators precond train")


def check_sizes(cfg: Any, n_dofs: int) -> None:
    """Refuse counts whose arrays would not fit in memory, once the mesh is known and before sampling.

    The estimates are lower bounds from the finest operator's ``n_dofs`` rows: every
    training (and held-out) operator keeps at least what its kind's
    :meth:`~fe_operators.precond.registry.LearnedPreconditioner.bytes_per_sample` says (its
    CSR matrix and per-row data; ``dcdm`` also checks its dense Lanczos basis of
    ``dcdm.ritz`` columns there).

    Raises
    ------
    ConfigError
        Naming the kind's key (``dcdm.ritz``), ``family.samples`` or
        ``family.validation_samples``, with the estimate and the memory available.
    """
    from fe_operators.precond.registry import preconditioner_kind

    n = int(n_dofs)
    per_sample = preconditioner_kind(cfg.kind).bytes_per_sample(cfg, n)
    train, held_out = cfg.family.samples, cfg.family.validation_samples
    key = "family.samples" if train >= held_out else "family.validation_samples"
    check_allocation((train + held_out) * per_sample,
                     f"{train} training and {held_out} held-out operators of {n} rows (at least "
                     f"{format_bytes(per_sample)} each)", key, fix=f"lower {key}")


def config_dict(cfg: Any) -> dict[str, Any]:
    """The configuration as plain data (stored in the checkpoint)."""
    return config_to_dict(cfg)
