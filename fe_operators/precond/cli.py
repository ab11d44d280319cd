"""``fe-operators precond``: train and evaluate learned preconditioners.

Usage::

    fe-operators precond train --config pc.yaml       # writes the checkpoint of `out`
    fe-operators precond train --print-config         # every key, documented, at its default
    fe-operators precond evaluate --model smoother.pt --mesh unitsquare:16/r4 [--dcdm-model dcdm.pt]
        [--methods neural_mg,gamg,gmg,icc] [--samples 1] [--repeats 1] [--seed 1000] [--rtol 1e-8]

``evaluate`` prints one row per method: DOFs, iterations, set-up and solve seconds,
fallbacks, whether the true residual met ``rtol``
(:mod:`fe_operators.precond.evaluate`).  Errors are one line on stderr, exit status 1
(2 for usage errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from fe_operators.cli import command

__all__ = ["main_precond"]


def _parser() -> argparse.ArgumentParser:
    from fe_operators.precond.evaluate import METHODS

    p = argparse.ArgumentParser(prog="fe-operators precond",
                                description="Train and evaluate learned PETSc preconditioners.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a preconditioner network from a YAML config")
    train.add_argument("--config", help="the YAML configuration (see --print-config)")
    train.add_argument("--print-config", action="store_true", help="print every key with its default and exit")
    ev = sub.add_parser("evaluate", help="solve with learned and classical preconditioners, print a table",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="methods:\n" + "\n".join(f"  {k:<16} {v}" for k, v in METHODS.items()))
    ev.add_argument("--model", help="a smoother checkpoint (kind neural_mg): for neural_mg, neural_amg")
    ev.add_argument("--dcdm-model", help="a DCDM checkpoint (kind dcdm): for dcdm")
    ev.add_argument("--mesh", required=True, help="mesh spec, a hierarchy level, e.g. unitsquare:16/r4")
    ev.add_argument("--methods", default=None,
                    help="comma-separated methods (default: the learned ones given a model, then galerkin_jacobi, "
                         "gamg, gmg, icc)")
    ev.add_argument("--samples", type=int, default=1, help="measured coefficients (after one warm-up)")
    ev.add_argument("--repeats", type=int, default=1,
                    help="solves per coefficient; the fastest set-up and solve are kept (noisy machines)")
    ev.add_argument("--seed", type=int, default=1000, help="seed of the coefficients")
    ev.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance on the true residual")
    ev.add_argument("--coefficient", default="lognormal", choices=["lognormal", "dg0", "cg1"])
    ev.add_argument("--variance", type=float, default=2.0, help="variance of the log-coefficient field")
    return p


def _evaluate(args: argparse.Namespace) -> int:
    from fe_operators.precond.evaluate import evaluate_preconditioners, format_rows

    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:
        methods = (["neural_mg", "neural_amg"] if args.model else []) + (["dcdm"] if args.dcdm_model else []) \
            + ["galerkin_jacobi", "gamg", "gmg", "icc"]
    models = {"neural_mg": args.model, "neural_amg": args.model, "dcdm": args.dcdm_model}
    if args.samples < 1 or args.repeats < 1:
        raise ValueError(f"--samples, --repeats: expected at least 1, got {args.samples}, {args.repeats}")
    print(format_rows([]))
    rows, info = evaluate_preconditioners(args.mesh, methods, models={k: v for k, v in models.items() if v},
                                          samples=args.samples, repeats=args.repeats, seed=args.seed, rtol=args.rtol,
                                          coefficient=args.coefficient, variance=args.variance, log=print)
    contrasts = info["contrasts"]
    print(f"{info['dofs']} DOFs, {len(contrasts)} coefficient(s), contrast max/min "
          f"{min(contrasts):.3g}-{max(contrasts):.3g}, rtol {args.rtol:g} on the true residual")
    return 0 if all(r.converged for r in rows) else 1


@command("precond")
def main_precond(argv: Sequence[str]) -> int:
    """Entry point of ``fe-operators precond`` (``main_precond(argv=None)``); returns the exit status.

    Errors are one line on stderr with the exit statuses of every command
    (:func:`fe_operators.cli.run_command`).
    """
    args = _parser().parse_args(list(argv))
    if args.action == "train":
        from fe_operators.errors import UsageError
        from fe_operators.precond.config import load_precond_config, precond_config_yaml
        from fe_operators.precond.training import train_preconditioner

        if args.print_config:
            print(precond_config_yaml(), end="")
            return 0
        if not args.config:
            raise UsageError("--config FILE is required (or --print-config)")
        train_preconditioner(load_precond_config(args.config))
        return 0
    return _evaluate(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_precond())
