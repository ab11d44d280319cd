"""``fe-operators mesh info [--json] FILE_OR_NAME...``: print mesh summaries.

The summaries are :func:`fe_operators.io.info.mesh_info`'s.  A mesh that cannot be read
is reported as the runner reports an error (one line on stderr) and the next one is
summarised; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json

from fe_operators.cli.runner import command, print_rank0, report_error
from fe_operators.errors import MeshReadError
from fe_operators.io.info import format_mesh_info, mesh_info
from fe_operators.io.specs import BUILTIN_SPECS, shipped_meshes

__all__ = ["main_mesh_info"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fe-operators mesh info",
                                description="Summarise meshes: counts, boundary tags, quality.")
    p.add_argument("specs", nargs="*", metavar="FILE_OR_NAME",
                   help="a shipped mesh name, a built-in spec or a mesh file, with /rK for K uniform refinements")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


@command("mesh info")
def main_mesh_info(argv: list[str]) -> int:
    """Entry point of ``fe-operators mesh info`` (``main_mesh_info(argv=None)``); returns the exit status.

    Without arguments, lists the shipped meshes and the built-in specs.  0 on success; 1
    if any mesh could not be read (one line on stderr each).
    """
    args = _parser().parse_args(argv)
    if not args.specs:
        print_rank0("shipped meshes: " + ", ".join(shipped_meshes()))
        print_rank0("built-in specs: " + ", ".join(BUILTIN_SPECS))
        print_rank0("refined:        any of them + /rK, K uniform refinements (plate_holes/r2)")
        return 0
    status, infos = 0, []
    for spec in args.specs:
        try:
            info = mesh_info(spec)
        except MeshReadError as exc:  # reported as the runner does; then the next spec
            report_error("mesh info", exc)
            status = 1
            continue
        if args.json:
            infos.append(info)
        else:
            print_rank0(format_mesh_info(info) + ("\n" if spec != args.specs[-1] else ""))
    if args.json and infos:
        print_rank0(json.dumps(infos if len(args.specs) > 1 else infos[0], indent=2))
    return status
