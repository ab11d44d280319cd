"""The ``dcdm`` kind: the DCDM network, in the one registered form.

Network :class:`~fe_operators.precond.dcdm.DCDMNet`; options section ``dcdm``
(:class:`DCDMSection`); trained on the scale-free loss
(:func:`~fe_operators.precond.dcdm.dcdm_loss`) over Ritz-vector and smooth right-hand sides
(:func:`~fe_operators.precond.data.training_rhs`); refused when its FCG takes more
held-out iterations than CG + ICC(0) (:func:`dcdm_report`).  Used by
:class:`~fe_operators.precond.DCDM` with ``fcg``; ``precond evaluate`` row ``dcdm``.

Nothing here imports Firedrake or torch at import time.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Literal

import numpy as np

from fe_operators.limits import check_allocation
from fe_operators.options import non_negative, option, positive
from fe_operators.precond.registry import LearnedPreconditioner, Method, register_preconditioner

__all__ = ["DCDMSection", "DCDMKind", "dcdm_report", "DCDM_RTOL"]

_ACT = Literal["tanh", "gelu", "relu", "silu"]

#: relative tolerance (true residual) of the held-out solves that compare DCDM with CG + ICC(0)
DCDM_RTOL = 1e-8


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
    architecture: Literal["vcycle", "mgno"] = option(
        "Network: 'vcycle' — a V-cycle on the operator's own Galerkin hierarchy (one channel, learned smoothing "
        "weights, exact coarsest solve) with small MLPs on the coarse levels, a few multiply-adds per node; "
        "'mgno' — the multi-channel MgNO-like net on the mesh's FE operators (width channels on every level, "
        "~10^4 multiply-adds per node).", default="vcycle")
    nonlinear_levels: int = option("vcycle: levels (counted from the coarsest, which is solved exactly) that get "
                                   "the nonlinear MLP correction (width channels, layers hidden layers).",
                                   non_negative, default=2)
    train_smoothing: bool = option("vcycle: train the per-level smoothing weights too (else they stay at the "
                                   "damped-Jacobi 0.6: the one-step loss over low-mode right-hand sides drives them "
                                   "towards over-relaxation, 0.93 after 300 steps, and FCG then needs 20 "
                                   "iterations at 66k DOFs instead of 14).", default=False)


def dcdm_report(net: Any, cfg: Any) -> dict[str, float]:
    """Mean iterations of FCG + DCDM (``net``) and of CG + ICC(0) on held-out coefficients.

    The solves of ``precond evaluate`` (:func:`~fe_operators.precond.evaluate.evaluate_preconditioners`)
    on the training mesh, ``family.validation_samples`` coefficients (at least one) of
    :func:`~fe_operators.precond.training.heldout_seed`, to ``rtol`` :data:`DCDM_RTOL` on
    the true residual.  A DCDM solve that does not converge within four times ICC's
    iterations (at least 50) counts as that many.

    Returns
    -------
    dict
        ``{"its_learned", "its_classical"}``.
    """
    from firedrake import COMM_SELF

    from fe_operators.precond.evaluate import evaluate_preconditioners
    from fe_operators.precond.training import heldout_count, heldout_seed

    fam = cfg.family
    kw = dict(samples=heldout_count(cfg), seed=heldout_seed(cfg), rtol=DCDM_RTOL, comm=COMM_SELF,
              **fam.evaluate_kwargs())
    (icc,), _ = evaluate_preconditioners(fam.mesh, ["icc"], **kw)
    cap = max(50, 4 * math.ceil(icc.iterations))
    (dcdm,), _ = evaluate_preconditioners(fam.mesh, ["dcdm"], models={"dcdm": net},
                                          options={"dcdm": {"ksp_max_it": cap}}, **kw)
    learned = dcdm.iterations if dcdm.converged else float(cap)
    return {"its_learned": float(learned), "its_classical": float(icc.iterations)}


@register_preconditioner("dcdm")
class DCDMKind(LearnedPreconditioner):
    """The deep conjugate-direction network (module docstring)."""

    section = "dcdm"
    options = DCDMSection
    section_doc = "DCDM network (kind dcdm)."
    description = "the DCDM network (DCDM, with fcg)"
    network = "fe_operators.precond.dcdm:DCDMNet"
    what = "a DCDM network"
    users = "DCDM"
    model_flag = "--dcdm-model"
    checkpoint_name = "dcdm.pt"
    methods = {
        "dcdm": Method("FCG(mmax 2) + DCDM network", "fe_operators.precond.DCDM", "dcdm_model",
                       needs_hierarchy=True,
                       options={"ksp_type": "fcg", "ksp_fcg_mmax": 2, "ksp_fcg_truncation_type": "standard"}),
    }

    def train(self, cfg: Any, family: Any, log: Callable[[str], None]) -> tuple[Any, list, dict]:
        import torch

        from fe_operators.models.build import hierarchy_context
        from fe_operators.multigrid.cycle import cast_levels, cycle_levels
        from fe_operators.precond.data import decoupled_rows
        from fe_operators.precond.dcdm import DCDMNet, coefficient_indicator, dcdm_loss
        from fe_operators.precond.training import optimise
        from fe_operators.sparse.maps import SparseMap

        V = family.V
        if V.value_shape != () or V.ufl_element().degree() != 1:
            from fe_operators.errors import ConfigError

            raise ConfigError("kind", f"dcdm trains on scalar CG1 operators (its network and smooth right-hand sides "
                                      f"are nodal), family.problem {cfg.family.problem!r} gives "
                                      f"{V.ufl_element().shortstr()}: use kind neural_mg for it")
        opts = cfg.dcdm
        if opts.architecture == "vcycle":
            return self._train_vcycle(cfg, family, log)
        dtype = getattr(torch, opts.dtype)
        t0 = time.perf_counter()
        hier = hierarchy_context(family.V, family.bcs)
        h0 = hier.levels[0].h
        levels = cast_levels(cycle_levels(hier, 0, h0), dtype)
        lap = hier.finest.stiffness_diag

        def prepare(A: Any) -> tuple:
            dec = decoupled_rows(A)
            c = coefficient_indicator(torch.from_numpy(A.diagonal()), lap, torch.from_numpy(dec)).to(dtype)
            return SparseMap.from_scipy(A), c

        train, val, contrasts = self._operators(cfg, family, prepare)
        log(f"{len(train)} training operators ({hier.finest.n_nodes} rows, {hier.n_levels} levels), "
            f"{train[0][2].shape[1]} right-hand sides each, contrast {min(contrasts):.0f}-{max(contrasts):.0f}; "
            f"set-up {time.perf_counter() - t0:.1f} s")
        torch.manual_seed(cfg.train.seed)
        net = DCDMNet(hier.levels[0].n_operators, hier.n_levels, h0, width=opts.width, layers=opts.layers,
                      pre_smoothing=opts.pre_smoothing, coarsest_smoothing=opts.coarsest_smoothing,
                      post_smoothing=opts.post_smoothing, act=opts.act, architecture="mgno")
        net.init_laplacian(hier.levels[0].laplacian)
        net = net.to(dtype)
        gen = torch.Generator().manual_seed(cfg.train.seed)

        def step_loss(step: int) -> torch.Tensor:
            A, c, b = train[step % len(train)]
            cols = torch.randperm(b.shape[1], generator=gen)[: opts.batch]
            return dcdm_loss(net, A, b[:, cols], c, levels)

        history, seconds = optimise(list(net.parameters()), step_loss, cfg, log)
        net.eval()
        with torch.no_grad():
            val_loss = float(np.mean([float(dcdm_loss(net, A, b, c, levels)) for A, c, b in val]))
        return self._finish(net, cfg, log, history, seconds, contrasts, val_loss)

    def _train_vcycle(self, cfg: Any, family: Any, log: Callable[[str], None]) -> tuple[Any, list, dict]:
        """Train the ``vcycle`` network: each training operator's own Galerkin levels."""
        import torch

        from fe_operators.fem.transfer import level_prolongations
        from fe_operators.multigrid.galerkin import galerkin_hierarchy
        from fe_operators.precond.dcdm import DCDMNet, dcdm_loss, mesh_level_sizes, vcycle_levels
        from fe_operators.precond.training import optimise
        from fe_operators.sparse.petsc import petsc_to_scipy

        opts = cfg.dcdm
        dtype = getattr(torch, opts.dtype)
        t0 = time.perf_counter()
        sizes = mesh_level_sizes(family.V)
        prolongations = [petsc_to_scipy(P) for P in level_prolongations(family.V)]

        def prepare(A: Any) -> tuple:
            hier = galerkin_hierarchy(A, prolongations)
            levels = vcycle_levels([lv.block(0).to_scipy() for lv in hier.levels],
                                   [P.to_scipy() for P in hier.prolongations], dtype)
            return levels[-1].operator, levels

        train, val, contrasts = self._operators(cfg, family, prepare)
        log(f"{len(train)} training operators ({train[0][1][-1].n_nodes} rows, {len(sizes)} levels), "
            f"{train[0][2].shape[1]} right-hand sides each, contrast {min(contrasts):.0f}-{max(contrasts):.0f}; "
            f"set-up {time.perf_counter() - t0:.1f} s")
        torch.manual_seed(cfg.train.seed)
        net = DCDMNet(0, len(sizes), sizes[0], width=opts.width, layers=opts.layers,
                      pre_smoothing=opts.pre_smoothing, coarsest_smoothing=opts.coarsest_smoothing,
                      post_smoothing=opts.post_smoothing, act=opts.act, architecture="vcycle",
                      nonlinear_levels=opts.nonlinear_levels).to(dtype)
        gen = torch.Generator().manual_seed(cfg.train.seed)

        def step_loss(step: int) -> torch.Tensor:
            A, levels, b = train[step % len(train)]
            cols = torch.randperm(b.shape[1], generator=gen)[: opts.batch]
            return dcdm_loss(net, A, b[:, cols], None, levels)

        if not opts.train_smoothing:
            net.vcycle.omega_pre.requires_grad_(False)
            net.vcycle.omega_post.requires_grad_(False)
        params = [p for p in net.parameters() if p.requires_grad]
        history, seconds = optimise(params, step_loss, cfg, log) if params else ([], 0.0)
        net.eval()
        with torch.no_grad():
            val_loss = float(np.mean([float(dcdm_loss(net, A, b, None, levels)) for A, levels, b in val]))
        return self._finish(net, cfg, log, history, seconds, contrasts, val_loss)

    def _operators(self, cfg: Any, family: Any, prepare: Callable[[Any], tuple]) -> tuple[list, list, list]:
        """Training and held-out samples ``(*prepare(A), b)`` of the family's operators ``A``
        (scipy CSR) with their right-hand sides ``b``, and the training coefficients' contrasts."""
        import torch

        from fe_operators.precond.data import training_rhs
        from fe_operators.precond.training import heldout_count, heldout_seed
        from fe_operators.sparse.petsc import petsc_to_scipy

        opts = cfg.dcdm
        dtype = getattr(torch, opts.dtype)

        def samples(count: int, rng: np.random.Generator) -> tuple[list, list]:
            out, contrasts = [], []
            for _ in range(count):
                a = family.sample_coefficient(rng)
                A = petsc_to_scipy(family.operator(a))
                first = prepare(A)
                b = training_rhs(A, opts.ritz, opts.combinations, opts.smooth, rng, mesh=family.V.mesh())
                out.append((*first, torch.from_numpy(b).to(dtype)))
                contrasts.append(family.contrast(a))
            return out, contrasts

        train, contrasts = samples(cfg.family.samples, np.random.default_rng(cfg.train.seed))
        # held out: another stream than the training draws
        val, _ = samples(heldout_count(cfg), np.random.default_rng(heldout_seed(cfg)))
        return train, val, contrasts

    def _finish(self, net: Any, cfg: Any, log: Callable[[str], None], history: list, seconds: float,
                contrasts: list, val_loss: float) -> tuple[Any, list, dict]:
        log(f"held-out DCDM loss {val_loss:.4g}")
        report = {"train_seconds": seconds, "contrast_min": float(min(contrasts)),
                  "contrast_max": float(max(contrasts)), "val_loss": val_loss, **dcdm_report(net, cfg)}
        log(f"held-out iterations to rtol {DCDM_RTOL:g}: FCG + DCDM {report['its_learned']:.4g}, CG + ICC(0) "
            f"{report['its_classical']:.4g}")
        return net, history, report

    def worse(self, cfg: Any, report: Any) -> tuple[str, float, float, str]:
        return f"iterations to rtol {DCDM_RTOL:g}", report["its_learned"], report["its_classical"], "CG + ICC(0)"

    def bytes_per_sample(self, cfg: Any, n_rows: int) -> int:
        n = int(n_rows)
        opts = cfg.dcdm
        if opts.combinations:  # a dense Lanczos basis of `ritz` columns per operator (and the Ritz problem)
            m = opts.ritz
            k = min(m, n)
            check_allocation(8 * (n * m + 2 * m + 3 * k * k + n * k),
                             f"the Lanczos basis of {m} Ritz vectors of the {n}-row training operator", "dcdm.ritz",
                             fix=f"lower dcdm.ritz (at most {n} are useful: the Krylov space of {n} rows)")
        itemsize = 8 if opts.dtype == "float64" else 4
        return 24 * n + n * itemsize * (1 + opts.combinations + opts.smooth)
