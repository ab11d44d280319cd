"""Training the learned preconditioners: ``fe-operators precond train`` and its API.

:func:`train_preconditioner` takes a :class:`~fe_operators.precond.config.PrecondConfig`
(or the same as a mapping), samples the operator family on the training hierarchy, runs
Adam for the budget and writes a self-describing checkpoint
(:func:`~fe_operators.train.checkpoint.save_checkpoint`: model class, config, weights,
and under ``run`` the configuration, the loss history and a held-out report), which the
preconditioners load with ``-<prefix>model PATH``:

* ``kind: neural_mg`` — the smoother network
  (:class:`~fe_operators.precond.smoother.SmootherNet`), trained on the energy-norm
  convergence factor of the V-cycle on random errors
  (:func:`~fe_operators.precond.vcycle.convergence_loss`), each operator's Galerkin
  hierarchy computed once;
* ``kind: dcdm`` — the DCDM network (:class:`~fe_operators.precond.dcdm.DCDMNet`) on the
  scale-free loss (:func:`~fe_operators.precond.dcdm.dcdm_loss`) over Ritz-vector and
  smooth right-hand sides (:func:`~fe_operators.precond.data.training_rhs`).

A network worse than its classical counterpart is refused (no checkpoint written,
:class:`~fe_operators.errors.WorseThanClassicalError`) unless
``train.allow_worse`` (``--allow-worse``) is set: on held-out coefficients drawn from
another seed than the training ones (:func:`heldout_seed`, ``family.validation_samples``
of them, at least one), the learned V-cycle's energy-norm convergence factor against the
same Galerkin cycle with ℓ1-Jacobi weights (:func:`smoother_report`), and DCDM's FCG
iterations against CG + ICC(0)'s (:func:`dcdm_report`, through
:func:`~fe_operators.precond.evaluate.evaluate_preconditioners` on the training mesh).

Example
-------
>>> result = train_preconditioner({"kind": "neural_mg", "family": {"mesh": "unitsquare:8/r3"},
...                                "out": "smoother.pt"})                      # doctest: +SKIP
>>> result.report["rho_learned"], result.report["rho_classical"]               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from fe_operators.precond.config import PrecondConfig, check_sizes, config_dict, precond_config_from_dict
from fe_operators.errors import WorseThanClassicalError

__all__ = ["TrainResult", "train_preconditioner", "write_precond_checkpoint", "smoother_report", "dcdm_report",
           "heldout_seed"]


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


def _optimise(params: list[torch.nn.Parameter], step_loss: Callable[[int], torch.Tensor], cfg: PrecondConfig,
              log: Callable[[str], None]) -> tuple[list[dict[str, float]], float]:
    """Adam with cosine decay over ``train.steps`` (or until the time budget); the history."""
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


def heldout_seed(cfg: PrecondConfig) -> list[int]:
    """The seed of the held-out coefficients: the entropy ``[train.seed, 1]``, a stream no
    training draw (seeded ``train.seed``) comes from."""
    return [int(cfg.train.seed), 1]


def _heldout_count(cfg: PrecondConfig) -> int:
    return max(1, cfg.family.validation_samples)


def _family(cfg: PrecondConfig) -> Any:
    from firedrake import COMM_SELF

    from fe_operators.io import load_mesh
    from fe_operators.precond.data import DiffusionFamily

    mesh = load_mesh(cfg.family.mesh, comm=COMM_SELF)
    family = DiffusionFamily(mesh, cfg.family.coefficient, cfg.family.variance, cfg.family.length_scale)
    check_sizes(cfg, family.V.dim())  # before any operator is sampled
    return family


@torch.no_grad()
def smoother_report(net: torch.nn.Module, hierarchies: list[Any], sweeps: int, *, cycles: int = 8,
                    errors: int = 16, seed: int = 0) -> dict[str, float]:
    """The V-cycle's energy-norm convergence factor with ``net``'s and with classical weights.

    Geometric mean over ``hierarchies`` of ``(‖E^k e‖_A / ‖e‖_A)^{1/k}``, averaged in
    the log over ``errors`` random errors (``k = cycles``).

    Returns
    -------
    dict
        ``{"rho_learned", "rho_classical"}``.
    """
    from fe_operators.precond.smoother import SmootherNet
    from fe_operators.precond.vcycle import convergence_loss

    classical = SmootherNet(hidden=1, layers=0, sweeps=sweeps, init_s=0.5).double()
    gen = torch.Generator().manual_seed(seed)
    out = {"rho_learned": [], "rho_classical": []}
    for th in hierarchies:
        e = torch.randn(th.finest.n_nodes, errors, generator=gen, dtype=torch.float64)
        out["rho_learned"].append(float(convergence_loss(net, th, e, cycles, sweeps)))
        out["rho_classical"].append(float(convergence_loss(classical, th, e, cycles, sweeps)))
    return {k: float(math.exp(np.mean(v))) for k, v in out.items()}


def _train_smoother(cfg: PrecondConfig, log: Callable[[str], None]) -> tuple[torch.nn.Module, list, dict]:
    from fe_operators.precond.data import smoother_samples
    from fe_operators.precond.smoother import SmootherNet
    from fe_operators.precond.vcycle import convergence_loss

    rng = np.random.default_rng(cfg.train.seed)
    family = _family(cfg)
    t0 = time.perf_counter()
    train, contrasts = smoother_samples(family, cfg.family.samples, rng)
    val, _ = smoother_samples(family, _heldout_count(cfg), np.random.default_rng(heldout_seed(cfg)))
    log(f"{len(train)} training operators ({train[0].finest.n_nodes} rows, {len(train[0].levels)} levels), contrast "
        f"{min(contrasts):.0f}-{max(contrasts):.0f}; set-up {time.perf_counter() - t0:.1f} s")
    opts = cfg.smoother
    net = SmootherNet(opts.hidden, opts.layers, opts.act, opts.sweeps, init_s=opts.init_s).double()
    gen = torch.Generator().manual_seed(cfg.train.seed)

    def step_loss(step: int) -> torch.Tensor:
        th = train[step % len(train)]
        e = torch.randn(th.finest.n_nodes, opts.errors, generator=gen, dtype=torch.float64)
        return convergence_loss(net, th, e, opts.cycles, opts.sweeps)

    history, seconds = _optimise(list(net.parameters()), step_loss, cfg, log)
    net.eval()
    report = {"train_seconds": seconds, "contrast_min": float(min(contrasts)), "contrast_max": float(max(contrasts)),
              **smoother_report(net, val, opts.sweeps, seed=cfg.train.seed + 1)}
    log(f"held-out V-cycle convergence factor: learned {report['rho_learned']:.4f}, classical (l1-Jacobi) "
        f"{report['rho_classical']:.4f}")
    return net, history, report


def _train_dcdm(cfg: PrecondConfig, log: Callable[[str], None]) -> tuple[torch.nn.Module, list, dict]:
    from fe_operators.sparse.petsc import petsc_to_scipy
    from fe_operators.models.build import hierarchy_context
    from fe_operators.sparse.maps import SparseMap
    from fe_operators.multigrid.cycle import cast_levels, cycle_levels
    from fe_operators.precond.data import decoupled_rows, training_rhs
    from fe_operators.precond.dcdm import DCDMNet, coefficient_indicator, dcdm_loss

    opts = cfg.dcdm
    dtype = getattr(torch, opts.dtype)
    rng = np.random.default_rng(cfg.train.seed)
    family = _family(cfg)
    t0 = time.perf_counter()
    hier = hierarchy_context(family.V, family.bcs)
    h0 = hier.levels[0].h
    levels = cast_levels(cycle_levels(hier, 0, h0), dtype)
    lap = hier.finest.stiffness_diag

    def samples(count: int) -> tuple[list, list]:
        out, contrasts = [], []
        for _ in range(count):
            a = family.sample_coefficient(rng)
            A = petsc_to_scipy(family.operator(a))
            dec = decoupled_rows(A)
            c = coefficient_indicator(torch.from_numpy(A.diagonal()), lap, torch.from_numpy(dec)).to(dtype)
            b = training_rhs(A, opts.ritz, opts.combinations, opts.smooth, rng, mesh=family.V.mesh())
            out.append((SparseMap.from_scipy(A), c, torch.from_numpy(b).to(dtype)))
            contrasts.append(family.contrast(a))
        return out, contrasts

    train, contrasts = samples(cfg.family.samples)
    rng = np.random.default_rng(heldout_seed(cfg))  # held out: another stream than the training draws
    val, _ = samples(_heldout_count(cfg))
    log(f"{len(train)} training operators ({hier.finest.n_nodes} rows, {hier.n_levels} levels), "
        f"{train[0][2].shape[1]} right-hand sides each, contrast {min(contrasts):.0f}-{max(contrasts):.0f}; "
        f"set-up {time.perf_counter() - t0:.1f} s")
    torch.manual_seed(cfg.train.seed)
    net = DCDMNet(hier.levels[0].n_operators, hier.n_levels, h0, width=opts.width, layers=opts.layers,
                  pre_smoothing=opts.pre_smoothing, coarsest_smoothing=opts.coarsest_smoothing,
                  post_smoothing=opts.post_smoothing, act=opts.act)
    net.init_laplacian(hier.levels[0].laplacian)
    net = net.to(dtype)
    gen = torch.Generator().manual_seed(cfg.train.seed)

    def step_loss(step: int) -> torch.Tensor:
        A, c, b = train[step % len(train)]
        cols = torch.randperm(b.shape[1], generator=gen)[: opts.batch]
        return dcdm_loss(net, A, b[:, cols], c, levels)

    history, seconds = _optimise(list(net.parameters()), step_loss, cfg, log)
    net.eval()
    with torch.no_grad():
        val_loss = float(np.mean([float(dcdm_loss(net, A, b, c, levels)) for A, c, b in val]))
    log(f"held-out DCDM loss {val_loss:.4g}")
    report = {"train_seconds": seconds, "contrast_min": float(min(contrasts)),
              "contrast_max": float(max(contrasts)), "val_loss": val_loss, **dcdm_report(net, cfg)}
    log(f"held-out iterations to rtol {DCDM_RTOL:g}: FCG + DCDM {report['its_learned']:.4g}, CG + ICC(0) "
        f"{report['its_classical']:.4g}")
    return net, history, report


#: relative tolerance (true residual) of the held-out solves that compare DCDM with CG + ICC(0)
DCDM_RTOL = 1e-8


def dcdm_report(net: torch.nn.Module, cfg: PrecondConfig) -> dict[str, float]:
    """Mean iterations of FCG + DCDM (``net``) and of CG + ICC(0) on held-out coefficients.

    The solves of ``precond evaluate`` (:func:`~fe_operators.precond.evaluate.evaluate_preconditioners`)
    on the training mesh, ``family.validation_samples`` coefficients (at least one) of
    :func:`heldout_seed`, to ``rtol`` :data:`DCDM_RTOL` on the true residual.  A DCDM solve
    that does not converge within four times ICC's iterations (at least 50) counts as
    that many.

    Returns
    -------
    dict
        ``{"its_learned", "its_classical"}``.
    """
    from firedrake import COMM_SELF

    from fe_operators.precond.evaluate import evaluate_preconditioners

    fam = cfg.family
    kw = dict(samples=_heldout_count(cfg), seed=heldout_seed(cfg), rtol=DCDM_RTOL, coefficient=fam.coefficient,
              variance=fam.variance, length_scale=fam.length_scale, comm=COMM_SELF)
    (icc,), _ = evaluate_preconditioners(fam.mesh, ["icc"], **kw)
    cap = max(50, 4 * math.ceil(icc.iterations))
    (dcdm,), _ = evaluate_preconditioners(fam.mesh, ["dcdm"], models={"dcdm": net},
                                          options={"dcdm": {"ksp_max_it": cap}}, **kw)
    learned = dcdm.iterations if dcdm.converged else float(cap)
    return {"its_learned": float(learned), "its_classical": float(icc.iterations)}


def write_precond_checkpoint(path: str, model: torch.nn.Module, config: PrecondConfig,
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

    out = Path(path)
    if out.is_dir():
        example = out / ("dcdm.pt" if kind == "dcdm" else "smoother.pt")
        raise OutputError(f"out: {path} is a directory; name the checkpoint file, e.g. {example}")
    if not out.parent.is_dir():
        raise OutputError(f"out: the folder {out.parent} does not exist; create it or name another file")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"out: the folder {out.parent} is not writable; name a file in a folder you can write")


def _worse(cfg: PrecondConfig, report: dict[str, Any]) -> WorseThanClassicalError | None:
    """The refusal of a network worse than its classical counterpart (None when it is not worse)."""
    if cfg.kind == "neural_mg":
        learned, classical = report["rho_learned"], report["rho_classical"]
        measure, name = "V-cycle convergence factor", "the same Galerkin V-cycle with l1-Jacobi weights"
    else:
        learned, classical = report["its_learned"], report["its_classical"]
        measure, name = f"iterations to rtol {DCDM_RTOL:g}", "CG + ICC(0)"
    if not learned > classical:
        return None
    return WorseThanClassicalError(cfg.kind, measure, learned, classical, name, cfg.out, report)


def train_preconditioner(config: PrecondConfig | Mapping[str, Any], *, log: Callable[[str], None] | None = print,
                         write: bool = True, allow_worse: bool | None = None) -> TrainResult:
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
    cfg = config if isinstance(config, PrecondConfig) else precond_config_from_dict(dict(config))
    allow_worse = cfg.train.allow_worse if allow_worse is None else bool(allow_worse)
    if write:
        _check_out(cfg.out, cfg.kind)
    log = log or (lambda _: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.train.threads)
    try:
        torch.manual_seed(cfg.train.seed)
        train = _train_smoother if cfg.kind == "neural_mg" else _train_dcdm
        model, history, report = train(cfg, log)
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
