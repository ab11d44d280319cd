"""``fe-operators doctor``: print the stack's versions and run small checks.

The checks are :func:`fe_operators.doctor.run_doctor`'s; exit status 1 if any fails.
"""

from __future__ import annotations

import argparse

from fe_operators.cli.runner import command
from fe_operators.doctor import run_doctor

__all__ = ["main_doctor"]


@command("doctor")
def main_doctor(argv: list[str]) -> int:
    """Entry point of ``fe-operators doctor`` (``main_doctor(argv=None)``); returns the exit status."""
    argparse.ArgumentParser(prog="fe-operators doctor",
                            description="Print versions and check the installation.").parse_args(argv)
    return run_doctor()
