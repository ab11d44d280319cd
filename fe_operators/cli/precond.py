"""``fe-operators precond``: train and evaluate learned preconditioners.

Usage::

    fe-operators precond train --config pc.yaml [--allow-worse]   # writes the checkpoint of `out`
    fe-operators precond train --print-config         # every key, documented, at its default
    fe-operators precond evaluate --model smoother.pt --mesh unitsquare:16/r4 [--dcdm-model dcdm.pt]
        [--methods neural_mg,gamg,gmg,icc] [--samples 1] [--repeats 1] [--seed 1000] [--rtol 1e-8]

The kinds, their configuration sections, their checkpoint flags (``--model`` for
``neural_mg``, ``--dcdm-model`` for ``dcdm``, the ``model_flag`` of a kind of your own) and
their methods come from the registry (:mod:`fe_operators.precond.registry`).

``evaluate`` prints one row per method: DOFs, iterations, set-up and solve seconds,
fallbacks, whether the true residual met ``rtol``, then NeuralMG's set-up broken down
(row features, network, coarse operators, LU)
(:mod:`fe_operators.precond.evaluate`); the model files, their kinds and the mesh
hierarchy are checked before any solve.  ``train`` refuses (exit 1, nothing written) a
network worse than its classical counterpart on held-out coefficients, unless
``--allow-worse``.  Errors are one line on stderr, exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Sequence

from fe_operators.cli.runner import command

__all__ = ["main_precond"]


def _number(kind: type, low: float, high: float = math.inf, *, low_open: bool = False,
            high_open: bool = True) -> Callable[[str], float]:
    """An argparse type: a ``kind`` number in the given range (a usage error, exit 2, otherwise)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text[:40]!r}") from None
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise argparse.ArgumentTypeError(f"expected a value in {lo}{low:g}, {high:g}{hi}, got {text[:40]}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    from fe_operators.precond.registry import evaluation_methods, preconditioner_kinds

    p = argparse.ArgumentParser(prog="fe-operators precond",
                                description="Train and evaluate learned PETSc preconditioners.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a preconditioner network from a YAML config")
    train.add_argument("--config", help="the YAML configuration (see --print-config)")
    train.add_argument("--print-config", action="store_true", help="print every key with its default and exit")
    train.add_argument("--allow-worse", action="store_true",
                       help="write the checkpoint even if it does worse than its classical counterpart on held-out "
                            "coefficients (train.allow_worse)")
    train.add_argument("--problem", metavar="MODULE:CLASS",
                       help="your own problem class that family.problem names (imported only when named here)")
    ev = sub.add_parser("evaluate", help="solve with learned and classical preconditioners, print a table",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="methods:\n" + "\n".join(f"  {k:<16} {v}" for k, v in evaluation_methods().items()))
    for name, kind in preconditioner_kinds().items():  # one checkpoint flag per registered kind
        uses = [m for m, spec in kind.methods.items() if spec.takes_model]
        ev.add_argument(kind.model_flag, dest=f"model_{name}", metavar="PATH",
                        help=f"{kind.what} checkpoint (kind {name}): for {', '.join(uses)}")
    ev.add_argument("--mesh", required=True, help="mesh spec, a hierarchy level, e.g. unitsquare:16/r4")
    ev.add_argument("--methods", default=None,
                    help="comma-separated methods (default: the learned ones given a model, then galerkin_jacobi, "
                         "gamg, gmg, icc)")
    ev.add_argument("--samples", type=_number(int, 1), default=1, help="measured coefficients (after one warm-up)")
    ev.add_argument("--repeats", type=_number(int, 1), default=1,
                    help="solves per coefficient; the fastest set-up and solve are kept (noisy machines)")
    ev.add_argument("--seed", type=_number(int, 0), default=1000, help="seed of the coefficients")
    ev.add_argument("--rtol", type=_number(float, 0.0, 1.0, low_open=True), default=1e-8,
                    help="relative tolerance on the true residual, in (0, 1)")
    ev.add_argument("--coefficient", default="lognormal", choices=["lognormal", "dg0", "cg1"])
    ev.add_argument("--variance", type=_number(float, 0.0, low_open=True), default=2.0,
                    help="variance of the log-coefficient field")
    ev.add_argument("--problem", metavar="NAME|MODULE:CLASS",
                    help="solve a problem family's spd_operator instead of the diffusion family: a registered "
                         "family (elasticity, darcy) or your own module:Class (imported)")
    ev.add_argument("--params", metavar="YAML", default=None,
                    help="constructor parameters of --problem as a YAML mapping, e.g. '{degree: 2}'")
    return p


def _evaluate(args: argparse.Namespace) -> int:
    from fe_operators.errors import UsageError
    from fe_operators.precond.evaluate import (
        check_methods, evaluate_preconditioners, format_rows, format_setup_parts,
    )
    from fe_operators.precond.registry import evaluation_methods, learned_methods, preconditioner_kinds

    kinds = preconditioner_kinds()
    given = {name: getattr(args, f"model_{name}") for name in kinds}
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    else:  # the learned rows of the kinds whose checkpoint is given, then the classical ones
        methods = [m for name, kind in kinds.items() if given[name]
                   for m, spec in kind.methods.items() if spec.takes_model] \
            + [m for kind in kinds.values() for m, spec in kind.methods.items() if not spec.takes_model] \
            + ["gamg", "gmg", "icc"]
    table = evaluation_methods()
    unknown = [m for m in methods if m not in table]
    if unknown or not methods:
        raise UsageError(f"--methods: unknown {', '.join(repr(m[:40]) for m in unknown) or 'empty list'}; "
                         f"choose from {', '.join(table)}")
    learned = learned_methods()
    models = {}
    for method in methods:
        kind = learned.get(method)
        if kind is None or not kind.methods[method].takes_model:
            continue
        if not given[kind.name]:
            raise UsageError(f"--methods {method} needs {kind.model_flag} PATH (a checkpoint of `fe-operators "
                             f"precond train` with kind: {kind.name})")
        models[method] = given[kind.name]
    check_methods(methods, models)  # the model files and their kinds, before the mesh and any solve
    printed: list[str] = []

    def log(line: str) -> None:  # the header with the first row: after the mesh and its hierarchy are checked
        if not printed:
            print(format_rows([]))
        printed.append(line)
        print(line)

    params = None
    if args.params is not None:
        import yaml

        try:
            params = yaml.safe_load(args.params)
        except yaml.YAMLError:
            params = None
        if not isinstance(params, dict):
            raise UsageError(f"--params: expected a YAML mapping such as '{{degree: 2}}', got {args.params[:40]!r}")
        if args.problem is None:
            raise UsageError("--params are the constructor parameters of --problem: name the family too")
    rows, info = evaluate_preconditioners(args.mesh, methods, models=models, problem=args.problem, params=params,
                                          samples=args.samples, repeats=args.repeats, seed=args.seed, rtol=args.rtol,
                                          coefficient=args.coefficient, variance=args.variance, log=log)
    for line in format_setup_parts(rows):
        print(line)
    contrasts = info["contrasts"]
    print(f"{info['dofs']} DOFs, {len(contrasts)} coefficient(s), contrast max/min "
          f"{min(contrasts):.3g}-{max(contrasts):.3g}, rtol {args.rtol:g} on the true residual")
    failed = [r.method for r in rows if not r.converged]
    if failed:
        print(f"fe-operators precond evaluate: {', '.join(failed)} did not reach rtol {args.rtol:g} on the true "
              "residual (see the table)", file=sys.stderr)
    return 1 if failed else 0


@command("precond")
def main_precond(argv: Sequence[str]) -> int:
    """Entry point of ``fe-operators precond`` (``main_precond(argv=None)``); returns the exit status.

    Errors are one line on stderr with the exit statuses of every command
    (:func:`fe_operators.cli.runner.run_command`).
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
        train_preconditioner(load_precond_config(args.config), allow_worse=True if args.allow_worse else None,
                             problem=args.problem)
        return 0
    return _evaluate(args)
