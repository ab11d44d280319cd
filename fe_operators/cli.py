"""The ``fe-operators`` command line.

Subcommands
-----------
doctor
    Print the stack's versions and run small checks (exit 1 on any failure).
mesh info FILE_OR_NAME
    Summarise a mesh: cells, vertices, boundary tags, element quality.
generate PROBLEM --mesh MESH --samples N --out FILE --seed S
    Generate a dataset by solving a problem family on a mesh.
train --config run.yaml [--resume]
    Train a model on a generated dataset.
evaluate RUN_DIR --data FILE [--mesh SPEC] [--split test|all] [--out DIR]
    Evaluate a trained model: FE-norm errors, boundary error, timing, plots and a .vtu.
precond train --config FILE | precond evaluate --model PATH --mesh SPEC
    Train a learned preconditioner; solve with it and classical ones, print a table.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fe-operators`` (subcommands parse their own options)."""
    from fe_operators import __version__

    p = argparse.ArgumentParser(
        prog="fe-operators", description="Finite-element operator learning on Firedrake meshes.",
        epilog="Run 'fe-operators COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"fe_operators {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("doctor", help="print versions and check the installation")
    mesh = sub.add_parser("mesh", help="mesh tools (mesh info FILE_OR_NAME)")
    mesh_sub = mesh.add_subparsers(dest="mesh_command", required=True, metavar="MESH_COMMAND")
    mesh_sub.add_parser("info", help="cells, vertices, boundary tags, quality", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("generate", help="generate a dataset by solving a problem family", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("train", help="train a model from a YAML config", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("evaluate", help="evaluate a trained model on a dataset (errors, plots, .vtu)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("precond", help="train and evaluate learned preconditioners (precond train|evaluate)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _delegate(argv: list[str]) -> int | None:
    """Run a subcommand that parses its own options; None if ``argv`` names none."""
    if argv[:1] == ["generate"]:
        from fe_operators.data.generate import main_generate

        return main_generate(argv[1:])
    if argv[:1] == ["train"]:
        from fe_operators.train.cli import main_train

        return main_train(argv[1:])
    if argv[:1] == ["evaluate"]:
        from fe_operators.evaluate import main_evaluate

        return main_evaluate(argv[1:])
    if argv[:1] == ["precond"]:
        from fe_operators.precond.cli import main_precond

        return main_precond(argv[1:])
    if argv[:2] == ["mesh", "info"]:
        from fe_operators.io.info import main_mesh_info

        return main_mesh_info(argv[2:])
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fe-operators`` console script."""
    # Firedrake warns (and runs slower) unless OpenMP is single-threaded.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    # Firedrake hands sys.argv to PETSc on import: keep our flags away from it.
    sys.argv = sys.argv[:1]
    status = _delegate(argv)
    if status is not None:
        return status
    args = build_parser().parse_args(argv)  # help, --version, doctor, and usage errors
    if args.command == "doctor":
        from fe_operators.doctor import run_doctor

        return run_doctor()
    raise AssertionError(args.command)  # delegated commands returned above


if __name__ == "__main__":
    sys.exit(main())
