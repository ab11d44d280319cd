"""Training the learned preconditioners: ``fe-operators precond train`` and its API.

:func:`train_preconditioner` takes a :class:`~fe_operators.precond.config.PrecondConfig`
(or the same as a mapping), samples the operator family on the training hierarchy, runs
Adam for the budget and writes a self-describing checkpoint
(:func:`~fe_operators.train.checkpoint.save_checkpoint`: model class, config, weights,
and under ``run`` the configuration, the loss history and a held-out report), which the
preconditioners load with ``-<prefix>model PATH``:

The driver is generic: the kind named by ``kind:`` (a registered
:class:`~fe_operators.precond.registry.LearnedPreconditioner`) trains its network on the
family (:meth:`~fe_operators.precond.registry.LearnedPreconditioner.train`, usually
through :func:`optimise`), and says what its network is compared with
(:meth:`~fe_operators.precond.registry.LearnedPreconditioner.worse`).  A network worse
than its classical counterpart on held-out data (drawn from :func:`heldout_seed`,
``family.validation_samples`` of them, at least one) is refused (no checkpoint written,
:class:`~fe_operators.errors.WorseThanClassicalError`) unless ``train.allow_worse``
(``--allow-worse``) is set.  fe_operators' kinds: ``neural_mg``
(:mod:`~fe_operators.precond.kind_neural_mg`: the held-out V-cycle convergence factor
against the same cycle with ℓ1-Jacobi weights) and ``dcdm``
(:mod:`~fe_operators.precond.kind_dcdm`: FCG iterations against CG + ICC(0)).

Example
-------
>>> result = train_preconditioner({"kind": "neural_mg", "family": {"mesh": "unitsquare:8/r3"},
...                                "out": "smoother.pt"})                      # doctest: +SKIP
>>> result.report["rho_learned"], result.report["rho_classical"]               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from fe_operators.precond.config import check_sizes, config_dict, is_precond_config, precond_config_from_dict
from fe_operators.errors import WorseThanClassicalError

__all__ = ["TrainResult", "train_preconditioner", "write_precond_checkpoint", "optimise", "heldout_seed",
           "heldout_count", "training_family"]

#: moved to the kind modules (the kind's report lives with its trainer)
_MOVED = {"smoother_report": "fe_operators.precond.kind_neural_mg", "dcdm_report": "fe_operators.precond.kind_dcdm",
          "DCDM_RTOL": "fe_operators.precond.kind_dcdm"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_preconditioner` returns.

    Attributes
    ----------
    model
        The trained network (eval mode).
    history
        ``[{"step", "loss", "seconds"}, ...]`` every ``train.log_every`` steps and at the end.
    report
        Held-out numbers: for ``neural_mg`` the V-cycle's energy-norm convergence factor
        with the learned and the classical (ℓ1-Jacobi) weights, ``rho_learned`` /
        ``rho_classical``; for ``dcdm`` the held-out loss ``val_loss`` and the mean FCG +
        DCDM and CG + ICC(0) iterations ``its_learned`` / ``its_classical``; both with the
        training coefficients' contrasts and ``train_seconds``.
    path
        The checkpoint written (None when not written).
    """

    model: torch.nn.Module
    history: list[dict[str, float]]
    report: dict[str, Any]
    path: str | None


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1),
                                                      eta_min=opt.param_groups[0]["lr"] / 10)


def optimise(params: list[torch.nn.Parameter], step_loss: Callable[[int], torch.Tensor], cfg: Any,
             log: Callable[[str], None]) -> tuple[list[dict[str, float]], float]:
    """Adam with cosine decay over ``train.steps`` (or until ``train.time_budget``).

    The training loop every kind's :meth:`~fe_operators.precond.registry.LearnedPreconditioner.train`
    runs: ``step_loss(step)`` returns the loss of one step (a scalar tensor with a graph).

    Returns
    -------
    tuple
        ``(history, seconds)``: ``[{"step", "loss", "seconds"}, ...]`` every
        ``train.log_every`` steps and at the end, and the optimisation's wall time.

    Raises
    ------
    TrainingError
        The loss became non-finite (naming ``train.lr``).
    """
    opt = torch.optim.Adam(params, lr=cfg.train.lr)
    sched = _schedule(opt, cfg.train.steps)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    running = []
    for step in range(cfg.train.steps):
        opt.zero_grad(set_to_none=True)
        loss = step_loss(step)
        if not torch.isfinite(loss):
            from fe_operators.errors import TrainingError

            raise TrainingError(0, step, f"the loss became {loss.item()}; nothing written: lower train.lr "
                                         f"(it is {cfg.train.lr:g})")
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        elapsed = time.perf_counter() - t0
        last = step == cfg.train.steps - 1 or (cfg.train.time_budget is not None and elapsed > cfg.train.time_budget)
        if (cfg.train.log_every and (step + 1) % cfg.train.log_every == 0) or last:
            row = {"step": step + 1, "loss": float(np.mean(running)), "seconds": elapsed}
            history.append(row)
            running = []
            log(f"step {row['step']:5d}  loss {row['loss']:.5g}  {elapsed:7.1f} s")
        if last:
            break
    return history, time.perf_counter() - t0


def heldout_seed(cfg: Any) -> list[int]:
    """The seed of the held-out coefficients: the entropy ``[train.seed, 1]``, a stream no
    training draw (seeded ``train.seed``) comes from."""
    return [int(cfg.train.seed), 1]


def heldout_count(cfg: Any) -> int:
    """The number of held-out coefficients: ``family.validation_samples``, at least one."""
    return max(1, cfg.family.validation_samples)


def training_family(cfg: Any, problem: Any = None) -> Any:
    """The training operators of ``cfg.family`` on one process, after the size guard
    (:func:`~fe_operators.precond.config.check_sizes`).

    ``family.problem`` null: the diffusion family
    (:class:`~fe_operators.precond.data.DiffusionFamily`); a family name: that registered
    family through its ``spd_operator`` hook (:class:`~fe_operators.precond.data.ProblemFamily`),
    built with ``family.params``, ``family.ranges`` drawn per operator.  A ``module:Class``
    read from the configuration is imported only when the user names the same class
    (``problem``: ``--problem`` on the command line, or the class or path in Python).
    """
    from firedrake import COMM_SELF

    from fe_operators.io import load_mesh
    from fe_operators.precond.data import DiffusionFamily, ProblemFamily

    fam = cfg.family
    mesh = load_mesh(fam.mesh, comm=COMM_SELF)
    if fam.problem is None:
        if problem is not None:
            from fe_operators.errors import UsageError

            raise UsageError(f"--problem {problem}: the configuration names no family.problem; set family.problem to "
                             "the same module:Class")
        family = DiffusionFamily(mesh, fam.coefficient, fam.variance, fam.length_scale)
    else:
        cls = _problem_class(fam.problem, problem)
        try:
            instance = cls(mesh, **fam.params)
        except (TypeError, ValueError) as exc:
            from fe_operators.errors import ConfigError

            raise ConfigError("family.params", f"{fam.problem}: {exc}") from None
        family = ProblemFamily(instance, fam.ranges)
    check_sizes(cfg, family.V.dim())  # before any operator is sampled
    return family


def _problem_class(named: str, given: Any) -> type:
    """The class of ``family.problem``: a registered family, or a ``module:Class`` imported only
    when the user names the same class (``given``: ``--problem`` or the class itself)."""
    from fe_operators.errors import ConfigError, UsageError
    from fe_operators.problems.registry import FAMILIES, problem_class, problem_reference, resolve_problem

    ref = problem_reference(named)
    if given is not None and problem_reference(given) != ref:
        shown = given if isinstance(given, str) else problem_reference(given)
        raise UsageError(f"--problem {shown} does not match family.problem {named!r} of the configuration: name the "
                         "same class in both (--problem is needed only for a class of your own)")
    if named in FAMILIES:
        return problem_class(named)
    if ":" not in named:
        raise ConfigError("family.problem", f"unknown problem family {named!r}; registered: "
                                            f"{', '.join(sorted(FAMILIES))}, or a 'module:Class' of your own")
    if given is None:
        raise ConfigError("family.problem", f"{named!r} is a problem class of your own; fe_operators never imports "
                                            "code a configuration file names: if you trust that module, name it "
                                            f"yourself with --problem {named} on the command line (problem="
                                            f"{named!r} in Python)")
    try:
        return resolve_problem(given)
    except ValueError as exc:
        raise UsageError(f"--problem {named}: {exc}") from None


def write_precond_checkpoint(path: str, model: torch.nn.Module, config: Any,
                             history: list[dict[str, float]], report: dict[str, Any]) -> None:
    """Write a self-describing checkpoint of a trained preconditioner network (atomic)."""
    from fe_operators.train.checkpoint import model_payload, save_checkpoint

    save_checkpoint(path, {
        "kind": "model",
        "model": model_payload(model),
        "normalizers": {"input": None, "output": None},
        "spaces": {},
        "run": {"config": config_dict(config), "precond": {"kind": config.kind, "history": history,
                                                           "report": report}},
        "progress": {"step": history[-1]["step"] if history else 0},
    })


def _check_out(path: str, kind: str) -> None:
    """Refuse an ``out`` that cannot be written before any training (not after it)."""
    from fe_operators.errors import OutputError
    from fe_operators.precond.registry import preconditioner_kind

    out = Path(path)
    if out.is_dir():
        example = out / preconditioner_kind(kind).checkpoint_name
        raise OutputError(f"out: {path} is a directory; name the checkpoint file, e.g. {example}")
    if not out.parent.is_dir():
        raise OutputError(f"out: the folder {out.parent} does not exist; create it or name another file")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"out: the folder {out.parent} is not writable; name a file in a folder you can write")


def _worse(cfg: Any, report: dict[str, Any]) -> WorseThanClassicalError | None:
    """The refusal of a network worse than its classical counterpart (None when it is not worse)."""
    from fe_operators.precond.registry import preconditioner_kind

    compared = preconditioner_kind(cfg.kind).worse(cfg, report)
    if compared is None:
        return None
    measure, learned, classical, name = compared
    if not learned > classical:
        return None
    return WorseThanClassicalError(cfg.kind, measure, learned, classical, name, cfg.out, report)


def train_preconditioner(config: Any, *, log: Callable[[str], None] | None = print,
                         write: bool = True, allow_worse: bool | None = None, problem: Any = None) -> TrainResult:
    """Train the network of a learned preconditioner and write its checkpoint.

    Parameters
    ----------
    config
        A :class:`~fe_operators.precond.config.PrecondConfig` or a mapping of the same
        keys (validated; relative ``out`` is taken from the current directory).
    log
        Where progress lines go (None: nowhere).
    write
        Write the checkpoint to ``config.out``.
    allow_worse
        Keep (and write) a network that does worse than its classical counterpart on the
        held-out coefficients (module docstring); None: ``config.train.allow_worse``.
    problem
        The problem class the user names (``--problem module:Class``, or the class): a
        ``family.problem`` that is not a registered family is imported only when it is
        this one (:func:`training_family`).

    Returns
    -------
    TrainResult

    Raises
    ------
    ConfigError
        An invalid configuration mapping.
    OutputError
        ``out`` is a directory or in a missing or read-only folder (checked before training).
    TrainingError
        The loss became non-finite.
    WorseThanClassicalError
        The network does worse than its classical counterpart (nothing written); its
        ``learned``, ``classical`` and ``report`` hold the numbers.
    """
    from fe_operators.precond.registry import preconditioner_kind

    cfg = config if is_precond_config(config) else precond_config_from_dict(dict(config))
    kind = preconditioner_kind(cfg.kind)
    allow_worse = cfg.train.allow_worse if allow_worse is None else bool(allow_worse)
    if write:
        _check_out(cfg.out, cfg.kind)
    log = log or (lambda _: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.threads)
    try:
        torch.manual_seed(cfg.train.seed)
        model, history, report = kind.train(cfg, training_family(cfg, problem), log)
    finally:
        torch.set_num_threads(threads)
    refused = _worse(cfg, report)
    if refused is not None:
        if not allow_worse:
            refused.path = cfg.out if write else None
            raise refused
        log(f"warning: {refused.measure} learned {refused.learned:.4g} is worse than classical "
            f"{refused.classical:.4g}; written anyway (allow_worse)")
    path = None
    if write:
        write_precond_checkpoint(cfg.out, model, cfg, history, report)
        path = cfg.out
        log(f"wrote {path}")
    return TrainResult(model, history, report, path)
