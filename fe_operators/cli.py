"""The ``fe-operators`` command line.

Subcommands
-----------
doctor
    Print the stack's versions and run small checks (exit 1 on any failure).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fe-operators``."""
    p = argparse.ArgumentParser(prog="fe-operators", description=__doc__.splitlines()[0])
    from fe_operators import __version__

    p.add_argument("--version", action="version", version=f"fe_operators {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="print versions and check the installation")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fe-operators`` console script."""
    # Firedrake warns (and runs slower) unless OpenMP is single-threaded.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from fe_operators.doctor import run_doctor

        return run_doctor()
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
