"""The ``fe-operators`` console script: parse the command name, run the command.

Each command lives in its own module of :mod:`fe_operators.cli` and is imported only
when it is run, so ``fe-operators --help`` stays fast and no command's imports (MPI,
Firedrake) happen before the runner hides the arguments from PETSc.  Exit statuses and
error reporting are :mod:`fe_operators.cli.runner`'s.
"""

from __future__ import annotations

import argparse
import sys

from fe_operators.cli.runner import CommandBody, run_command

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
    sub.add_parser("info", help="summarise dataset files (samples, shapes, trajectories)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("train", help="train a model from a YAML config", add_help=False).add_argument(
        "rest", nargs=argparse.REMAINDER)
    sub.add_parser("evaluate", help="evaluate a trained model on a dataset (errors, plots, .vtu)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("precond", help="train and evaluate learned preconditioners (precond train|evaluate)",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _command(argv: list[str]) -> tuple[str, CommandBody] | None:
    """The command ``argv`` names and its entry point (which parses the rest), or None.

    Imports inside: only the command that runs is imported (see the module docstring).
    """
    if argv[:1] == ["generate"]:
        from fe_operators.cli.generate import main_generate

        return "generate", main_generate
    if argv[:1] == ["info"]:
        from fe_operators.cli.info import main_info

        return "info", main_info
    if argv[:1] == ["train"]:
        from fe_operators.cli.train import main_train

        return "train", main_train
    if argv[:1] == ["evaluate"]:
        from fe_operators.cli.evaluate import main_evaluate

        return "evaluate", main_evaluate
    if argv[:1] == ["precond"]:
        from fe_operators.cli.precond import main_precond

        return "precond", main_precond
    if argv[:2] == ["mesh", "info"]:
        from fe_operators.cli.mesh import main_mesh_info

        return "mesh info", main_mesh_info
    if argv[:1] == ["doctor"] and len(argv) == 1:
        from fe_operators.cli.doctor import main_doctor

        return "doctor", main_doctor
    return None


def _parse_only(argv: list[str]) -> int:
    build_parser().parse_args(argv)
    return 2  # not reached: every command was dispatched by _command


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fe-operators`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    found = _command(argv)
    if found is None:  # help, --version, and usage errors: argparse prints them and exits
        return run_command("", _parse_only, argv)
    name, entry = found
    return entry(argv[len(name.split()):])


if __name__ == "__main__":
    sys.exit(main())
