"""``fe-operators train``: train a model from a YAML run configuration.

Usage::

    fe-operators train --config run.yaml            # a new run in out.dir
    fe-operators train --config run.yaml --resume   # continue it from out.dir/last.pt
    fe-operators train --print-config               # every key, documented, at its default
    fe-operators train --config run.yaml --problem my_problems:Mine   # data of your own problem class

(also ``python -m fe_operators.train``).  The run is
:func:`~fe_operators.train.run.run_training`, which describes the run folder; model types
are registered in :mod:`fe_operators.train.model_types`.  A trajectory file in
``data.path`` (a time-dependent family) trains a rollout surrogate, ``model.type:
rollout_spon`` (:mod:`fe_operators.train.rollout_run`; ``--print-config rollout_spon``).
"""

from __future__ import annotations

import argparse
import sys

from fe_operators.cli.runner import command
from fe_operators.errors import UsageError
from fe_operators.train.config import ModelSection, default_config_yaml, load_config
from fe_operators.train.run import run_training

__all__ = ["main_train"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fe-operators train", description="Train a model from a YAML configuration.")
    p.add_argument("--config", metavar="FILE", help="run configuration (YAML); see --print-config")
    p.add_argument("--resume", action="store_true", help="continue the run in out.dir from its last.pt")
    p.add_argument("--problem", metavar="MODULE:CLASS",
                   help="the problem class of your own that generated the data (it must be importable, e.g. "
                        "with PYTHONPATH); only then is it imported: a file never names code to run")
    p.add_argument("--print-config", nargs="?", const=ModelSection.type, metavar="MODEL_TYPE",
                   help="print every key with its default (and those of model family MODEL_TYPE) and exit")
    return p


@command("train")
def main_train(argv: list[str]) -> int:
    """Entry point of ``fe-operators train`` (``main_train(argv=None)``); returns the exit status.

    0 on success, 1 on a data/checkpoint/training error, 2 on a usage or configuration
    error; errors are one line on stderr (:func:`fe_operators.cli.runner.run_command`).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.print_config:
        sys.stdout.write(default_config_yaml(args.print_config))
        return 0
    if not args.config:
        parser.print_usage(sys.stderr)
        raise UsageError("--config FILE is required")
    result = run_training(load_config(args.config), resume=args.resume, problem=args.problem)
    best = result.best
    print(f"{result.stopped}: {result.epochs} epochs, {result.step} steps; best {best['metric']} = "
          f"{best['value']} (epoch {best['epoch']}); run in {result.run_dir}")
    return 0
