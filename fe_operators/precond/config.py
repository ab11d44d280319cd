"""The typed schema of ``fe-operators precond train --config FILE``.

One YAML file says which preconditioner to train, on which operator family and
hierarchy, with which network and budget, and where the checkpoint goes::

    kind: neural_mg             # or dcdm
    family:                     # FamilySection
      mesh: unitsquare:8/r3     # the training hierarchy (a /rK spec)
      coefficient: lognormal
      variance: 2.0
      samples: 8
    smoother:                   # SmootherSection (kind neural_mg)
      hidden: 8
      sweeps: 2
    dcdm:                       # DCDMSection (kind dcdm)
      width: 8
    train:                      # TrainSection
      steps: 300
      lr: 3.0e-3
    out: smoother.pt            # the checkpoint

Every key is a field made with :func:`fe_operators.options.option` (type, default, doc,
check); :func:`load_precond_config` validates a file once and raises
:class:`~fe_operators.errors.ConfigError` naming the dotted key;
:func:`precond_config_yaml` prints every key with its default (``--print-config``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal, Union

from fe_operators.configfile import commented_yaml, config_from_data, load_config_file
from fe_operators.errors import ConfigError
from fe_operators.limits import check_allocation, format_bytes
from fe_operators.options import (
    config_to_dict, finite_positive, fraction, non_negative, option, option_rows, optional,
    positive,
)

__all__ = ["FamilySection", "SmootherSection", "DCDMSection", "PrecondTrainSection", "PrecondConfig",
           "load_precond_config", "precond_config_from_dict", "precond_config_yaml", "check_sizes"]

_ACT = Literal["tanh", "gelu", "relu", "silu"]


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


@dataclasses.dataclass
class SmootherSection:
    """The learned smoother of the SPD neural multigrid (``smoother``, kind ``neural_mg``)."""

    hidden: int = option("Hidden width of the smoother MLP (8 x 1 layer: the held-out convergence factor of "
                         "16 x 2, 0.169, at a seventh of the set-up arithmetic).", positive, default=8)
    layers: int = option("Hidden layers of the smoother MLP.", non_negative, default=1)
    act: _ACT = option("Activation (relu: the cheapest at set-up, as accurate as tanh here).", default="relu")
    sweeps: int = option("Richardson sweeps per level before and after the coarse correction.", positive,
                         default=2)
    init_s: float = option("Smoothing factor s of every row at initialisation (0.5: l1-Jacobi).", fraction,
                           default=0.6)
    cycles: int = option("V-cycles of the loss, log(|E^k e|_A / |e|_A) / k on random errors e.", positive,
                         default=4)
    errors: int = option("Random errors e per training operator and step.", positive, default=8)


@dataclasses.dataclass
class DCDMSection:
    """The DCDM network and its training right-hand sides (``dcdm``, kind ``dcdm``)."""

    width: int = option("Channels of the network's V-cycles.", positive, default=8)
    layers: int = option("Nonlinear layers after the first (linear) V-cycle.", non_negative, default=2)
    pre_smoothing: int = option("Smoothing steps per level on the way down.", non_negative, default=1)
    coarsest_smoothing: int = option("Smoothing steps on the coarsest level.", non_negative, default=2)
    post_smoothing: int = option("Smoothing steps per level on the way up.", non_negative, default=1)
    act: _ACT = option("Activation.", default="gelu")
    ritz: int = option("Lanczos steps per training operator (Ritz vectors for the right-hand sides).", positive,
                       default=100)
    combinations: int = option("Random unit-norm combinations of Ritz vectors per operator (low half of the "
                               "spectrum weighted 9x, as in the DCDM paper).", non_negative, default=48)
    smooth: int = option("Random smooth fields (Matern, length 0.2) per operator.", non_negative, default=16)
    batch: int = option("Right-hand sides per step.", positive, default=16)
    dtype: Literal["float32", "float64"] = option("Dtype of the network (training and preconditioner).",
                                                  default="float32")


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


@dataclasses.dataclass(kw_only=True)
class PrecondConfig:
    """A validated ``precond train`` configuration."""

    kind: Literal["neural_mg", "dcdm"] = option(
        "(required) 'neural_mg': the SPD multigrid's learned smoother (NeuralMG, NeuralAMG, LearnedJacobi); "
        "'dcdm': the DCDM network (DCDM, with fcg).")
    family: FamilySection = option("The operator family and training hierarchy.")
    smoother: SmootherSection = option("Smoother network (kind neural_mg).", default_factory=SmootherSection)
    dcdm: DCDMSection = option("DCDM network (kind dcdm).", default_factory=DCDMSection)
    train: PrecondTrainSection = option("Optimisation budget.", default_factory=PrecondTrainSection)
    out: str = option("(required) The checkpoint file to write; relative to the configuration file.")


def precond_config_from_dict(data: Any, base_dir: str | os.PathLike | None = None,
                             source: str | os.PathLike | None = None) -> PrecondConfig:
    """Validate a configuration mapping; ``out`` becomes absolute (relative to ``base_dir``).

    Raises
    ------
    ConfigError
        Unknown key, missing required key, wrong type or invalid value (naming the key).
    """
    return config_from_data(PrecondConfig, data, base_dir=base_dir, source=source, paths=("out",))


def load_precond_config(path: str | os.PathLike) -> PrecondConfig:
    """Read and validate a YAML ``precond train`` configuration (YAML 1.2 numbers).

    Raises
    ------
    ConfigError
        The file is missing or not valid YAML, or the configuration is invalid.
    """
    return load_config_file(PrecondConfig, path, paths=("out",))


def precond_config_yaml() -> str:
    """Every key with its default and doc, as a commented YAML file."""
    return commented_yaml(option_rows(PrecondConfig), "fe-operators precond train")


def check_sizes(cfg: PrecondConfig, n_dofs: int) -> None:
    """Refuse counts whose arrays would not fit in memory, once the mesh is known and before sampling.

    The estimates are lower bounds from the finest operator's ``n_dofs`` rows: every
    training (and held-out) operator keeps at least its CSR matrix (at least one entry
    per row) and its per-row data: for ``neural_mg`` the smoother's six row features
    and three row vectors, for ``dcdm`` the coefficient indicator and the right-hand
    sides; ``dcdm`` also builds, per operator, a dense Lanczos basis of ``dcdm.ritz``
    columns (and the Ritz problem's dense matrices).

    Raises
    ------
    ConfigError
        Naming ``dcdm.ritz``, ``family.samples`` or ``family.validation_samples``, with
        the estimate and the memory available.
    """
    n = int(n_dofs)
    csr = 24 * n  # a value, a column index and a row pointer per row, at least
    if cfg.kind == "dcdm":
        itemsize = 8 if cfg.dcdm.dtype == "float64" else 4
        per_sample = csr + n * itemsize * (1 + cfg.dcdm.combinations + cfg.dcdm.smooth)
        if cfg.dcdm.combinations:
            m = cfg.dcdm.ritz
            k = min(m, n)
            check_allocation(8 * (n * m + 2 * m + 3 * k * k + n * k),
                             f"the Lanczos basis of {m} Ritz vectors of the {n}-row training operator", "dcdm.ritz",
                             fix=f"lower dcdm.ritz (at most {n} are useful: the Krylov space of {n} rows)")
    else:
        per_sample = csr + n * (6 * 8 + 3 * 8 + 1)
    train, held_out = cfg.family.samples, cfg.family.validation_samples
    key = "family.samples" if train >= held_out else "family.validation_samples"
    check_allocation((train + held_out) * per_sample,
                     f"{train} training and {held_out} held-out operators of {n} rows (at least "
                     f"{format_bytes(per_sample)} each)", key, fix=f"lower {key}")


def config_dict(cfg: PrecondConfig) -> dict[str, Any]:
    """The configuration as plain data (stored in the checkpoint)."""
    return config_to_dict(cfg)
