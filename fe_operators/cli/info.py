"""``fe-operators info [--json] FILE...``: print summaries of dataset files.

Steady datasets show their inputs' and output's DOF shapes, trajectory datasets their
shape (sample x step x DOF), parameters and time settings
(:func:`fe_operators.data.info.dataset_info`).  A file that cannot be read is reported
as the runner reports an error (one line on stderr) and the next one is summarised; the
exit status is then 1.
"""

from __future__ import annotations

import argparse
import json

from fe_operators.cli.runner import command, print_rank0, report_error
from fe_operators.data.info import dataset_info, format_dataset_info
from fe_operators.errors import DatasetFileError

__all__ = ["main_info"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fe-operators info",
                                description="Summarise dataset files: samples, shapes, problem, time settings.")
    p.add_argument("files", nargs="+", metavar="FILE", help="a dataset file of fe-operators generate")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


@command("info")
def main_info(argv: list[str]) -> int:
    """Entry point of ``fe-operators info`` (``main_info(argv=None)``); returns the exit status.

    0 on success; 1 if any file could not be read (one line on stderr each).
    """
    args = _parser().parse_args(argv)
    status, infos = 0, []
    for path in args.files:
        try:
            info = dataset_info(path)
        except DatasetFileError as exc:
            report_error("info", exc)
            status = 1
            continue
        if args.json:
            infos.append(info)
        else:
            print_rank0(format_dataset_info(info))
    if args.json and infos:
        print_rank0(json.dumps(infos if len(args.files) > 1 else infos[0], indent=2, default=str))
    return status
