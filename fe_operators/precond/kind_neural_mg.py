"""The ``neural_mg`` kind: the SPD multigrid's learned smoother, in the one registered form.

Network :class:`~fe_operators.precond.smoother.SmootherNet`; options section ``smoother``
(:class:`SmootherSection`); trained on the energy-norm convergence factor of the Galerkin
V-cycle on random errors (:func:`~fe_operators.precond.vcycle.convergence_loss`), each
training operator's hierarchy computed once; refused when, on held-out coefficients, it
does worse than the same cycle with ℓ1-Jacobi weights (:func:`smoother_report`).  Used by
:class:`~fe_operators.precond.NeuralMG`, :class:`~fe_operators.precond.NeuralAMG` and
:class:`~fe_operators.precond.LearnedJacobi`; ``precond evaluate`` rows ``neural_mg``,
``neural_mg_rediscretised`` (``neuralmg_coarse rediscretise``), ``neural_amg`` and
``galerkin_jacobi`` (the classical weights in the same cycle).

Nothing here imports Firedrake or torch at import time.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Literal

import numpy as np

from fe_operators.options import fraction, non_negative, option, positive
from fe_operators.precond.registry import LearnedPreconditioner, Method, register_preconditioner

__all__ = ["SmootherSection", "NeuralMGKind", "smoother_report"]

_ACT = Literal["tanh", "gelu", "relu", "silu"]


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
    poly_levels: int = option("0: sweeps equal Richardson steps with the learned diagonal. L > 0: the learned "
                              "polynomial smoother of degree sweeps, its step weights learned for the finest L levels "
                              "(SPD for any weights; fe_operators.precond.smoother).", non_negative, default=0)
    cycles: int = option("V-cycles of the loss, log(|E^k e|_A / |e|_A) / k on random errors e.", positive,
                         default=4)
    errors: int = option("Random errors e per training operator and step.", positive, default=8)


def smoother_report(net: Any, hierarchies: list[Any], sweeps: int, *, cycles: int = 8, errors: int = 16,
                    seed: int = 0) -> dict[str, float]:
    """The V-cycle's energy-norm convergence factor with ``net``'s and with classical weights.

    Geometric mean over ``hierarchies`` of ``(‖E^k e‖_A / ‖e‖_A)^{1/k}``, averaged in
    the log over ``errors`` random errors (``k = cycles``).

    Returns
    -------
    dict
        ``{"rho_learned", "rho_classical"}``.
    """
    import torch

    from fe_operators.precond.smoother import SmootherNet
    from fe_operators.precond.vcycle import convergence_loss

    classical = SmootherNet(hidden=1, layers=0, sweeps=sweeps, init_s=0.5).double()
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"rho_learned": [], "rho_classical": []}
    with torch.no_grad():
        for th in hierarchies:
            e = torch.randn(th.finest.n_nodes, errors, generator=gen, dtype=torch.float64)
            out["rho_learned"].append(float(convergence_loss(net, th, e, cycles, sweeps)))
            out["rho_classical"].append(float(convergence_loss(classical, th, e, cycles, sweeps)))
    return {k: float(math.exp(np.mean(v))) for k, v in out.items()}


@register_preconditioner("neural_mg")
class NeuralMGKind(LearnedPreconditioner):
    """The learned diagonal smoother of the SPD Galerkin multigrid (module docstring)."""

    section = "smoother"
    options = SmootherSection
    section_doc = "Smoother network (kind neural_mg)."
    description = "the SPD multigrid's learned smoother (NeuralMG, NeuralAMG, LearnedJacobi)"
    network = "fe_operators.precond.smoother:SmootherNet"
    what = "a learned smoother"
    users = "NeuralMG, NeuralAMG or LearnedJacobi"
    model_flag = "--model"
    checkpoint_name = "smoother.pt"
    methods = {
        "neural_mg": Method("CG + NeuralMG (Galerkin V-cycle, learned smoothers)", "fe_operators.precond.NeuralMG",
                            "neuralmg_model", needs_hierarchy=True),
        "neural_mg_rediscretised": Method("CG + NeuralMG, coarse operators rediscretised (cell-averaged coefficients)",
                                          "fe_operators.precond.NeuralMG", "neuralmg_model", needs_hierarchy=True,
                                          options={"neuralmg_coarse": "rediscretise"}),
        "neural_amg": Method("CG + NeuralAMG (GAMG, learned smoothers)", "fe_operators.precond.NeuralAMG",
                             "neuralamg_model"),
        "galerkin_jacobi": Method("CG + the same Galerkin V-cycle, classical l1-Jacobi weights",
                                  "fe_operators.precond.NeuralMG", takes_model=False, needs_hierarchy=True),
    }

    def train(self, cfg: Any, family: Any, log: Callable[[str], None]) -> tuple[Any, list, dict]:
        import torch

        from fe_operators.precond.data import smoother_samples
        from fe_operators.precond.smoother import SmootherNet
        from fe_operators.precond.training import heldout_count, heldout_seed, optimise
        from fe_operators.precond.vcycle import convergence_loss

        rng = np.random.default_rng(cfg.train.seed)
        t0 = time.perf_counter()
        train, contrasts = smoother_samples(family, cfg.family.samples, rng)
        val, _ = smoother_samples(family, heldout_count(cfg), np.random.default_rng(heldout_seed(cfg)))
        log(f"{len(train)} training operators ({train[0].finest.n_nodes} rows, {len(train[0].levels)} levels), "
            f"contrast {min(contrasts):.0f}-{max(contrasts):.0f}; set-up {time.perf_counter() - t0:.1f} s")
        opts = cfg.smoother
        net = SmootherNet(opts.hidden, opts.layers, opts.act, opts.sweeps, init_s=opts.init_s,
                          poly_levels=opts.poly_levels).double()
        gen = torch.Generator().manual_seed(cfg.train.seed)

        def step_loss(step: int) -> torch.Tensor:
            th = train[step % len(train)]
            e = torch.randn(th.finest.n_nodes, opts.errors, generator=gen, dtype=torch.float64)
            return convergence_loss(net, th, e, opts.cycles, opts.sweeps)

        history, seconds = optimise(list(net.parameters()), step_loss, cfg, log)
        net.eval()
        report = {"train_seconds": seconds, "contrast_min": float(min(contrasts)),
                  "contrast_max": float(max(contrasts)),
                  **smoother_report(net, val, opts.sweeps, seed=cfg.train.seed + 1)}
        log(f"held-out V-cycle convergence factor: learned {report['rho_learned']:.4f}, classical (l1-Jacobi) "
            f"{report['rho_classical']:.4f}")
        return net, history, report

    def worse(self, cfg: Any, report: Any) -> tuple[str, float, float, str]:
        return ("V-cycle convergence factor", report["rho_learned"], report["rho_classical"],
                "the same Galerkin V-cycle with l1-Jacobi weights")

    def bytes_per_sample(self, cfg: Any, n_rows: int) -> int:
        # the CSR matrix, six row features and three row vectors (float64), a mask
        return int(n_rows) * (24 + 6 * 8 + 3 * 8 + 1)

    def fixed_model(self, method: str) -> Any:
        if method != "galerkin_jacobi":
            return None
        from fe_operators.precond.smoother import SmootherNet

        return SmootherNet(hidden=1, layers=0, init_s=0.5).double()  # s = 1/2 everywhere: l1-Jacobi
