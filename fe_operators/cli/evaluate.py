"""``fe-operators evaluate``: a trained model on a dataset, in FE norms, with plots and a .vtu.

Usage::

    fe-operators evaluate RUN_DIR --data data.h5 [--split test|all] [--out DIR] [--problem MODULE:CLASS]
    fe-operators evaluate RUN_DIR --data trajectories.h5 [--steps N]   # a rollout surrogate

What is measured, checked and written: :mod:`fe_operators.evaluation`; for trajectory
files (a run of ``model.type: rollout_spon``) :mod:`fe_operators.evaluation.rollout_run`:
the error per step (printed), ``rollout.json``, ``errors.png`` and ``rollout.pvd``.
"""

from __future__ import annotations

import argparse

from fe_operators.cli.runner import command
from fe_operators.errors import UsageError
from fe_operators.evaluation import evaluate_run, format_table

__all__ = ["main_evaluate"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fe-operators evaluate",
        description="Evaluate a trained model on a dataset: relative L2/H1, boundary error, parameters, "
                    "inference time; PNG plots and a .vtu.")
    p.add_argument("run", metavar="RUN_DIR", help="run folder of 'fe-operators train' (or a checkpoint file)")
    p.add_argument("--data", required=True, metavar="FILE", help="dataset file of 'fe-operators generate'")
    p.add_argument("--mesh", metavar="SPEC",
                   help="not needed: evaluation runs on the mesh the dataset records (a mesh-agnostic model also "
                        "on other meshes than its training mesh); given, it asserts the dataset's mesh spec")
    p.add_argument("--split", choices=("test", "all"),
                   help="the run's test split (default for its training file) or all samples (default otherwise)")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/eval-<data>-<split>)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of RUN_DIR")
    p.add_argument("--batch-size", type=int, default=32, help="samples per forward pass (default 32)")
    p.add_argument("--plots", type=int, default=3, choices=range(4), metavar="{0,1,2,3}",
                   help="samples to plot: first, median, worst (default 3; 0: no PNG)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="trajectory files: steps to roll out from the first stored state (default: the whole "
                        "stored horizon; errors where the reference exists, steps past it to rollout_beyond.pvd)")
    p.add_argument("--problem", metavar="MODULE:CLASS",
                   help="the problem class of your own that generated the data (it must be importable, e.g. "
                        "with PYTHONPATH); only then is it imported: a file never names code to run")
    return p


def _is_trajectory_file(path: str) -> bool:
    """Whether ``path`` is a trajectory dataset (unreadable files go to the steady reader, which says why)."""
    from fe_operators.data import TrajectoryFile
    from fe_operators.data.info import open_dataset
    from fe_operators.errors import DatasetFileError

    try:
        return isinstance(open_dataset(path), TrajectoryFile)
    except DatasetFileError:
        return False


@command("evaluate")
def main_evaluate(argv: list[str]) -> int:
    """Entry point of ``fe-operators evaluate`` (``main_evaluate(argv=None)``); returns the exit status.

    0 on success, 1 on bad input (missing/corrupt checkpoint, mismatched data, ...), 2 on
    a usage error; errors are one line on stderr (:func:`fe_operators.cli.runner.run_command`).
    """
    args = _parser().parse_args(argv)
    if _is_trajectory_file(args.data):
        from fe_operators.evaluation.rollout_run import evaluate_rollout_run, format_rollout

        report = evaluate_rollout_run(args.run, args.data, steps=args.steps, split=args.split, out=args.out,
                                      checkpoint=args.checkpoint, batch_size=args.batch_size, device=args.device,
                                      mesh=args.mesh, problem=args.problem)
        print(format_rollout(report))
        return 0
    if args.steps is not None:
        raise UsageError(f"--steps is for trajectory files; {args.data} holds steady samples")
    result = evaluate_run(args.run, args.data, mesh=args.mesh, split=args.split, out=args.out,
                          checkpoint=args.checkpoint, batch_size=args.batch_size, plots=args.plots,
                          device=args.device, problem=args.problem)
    print(format_table(result))
    return 0
