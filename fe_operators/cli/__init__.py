"""The ``fe-operators`` command line: one module per command, one runner for all.

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
evaluate RUN_DIR --data FILE [--split test|all] [--out DIR]
    Evaluate a trained model: FE-norm errors, boundary error, timing, plots and a .vtu.
precond train --config FILE | precond evaluate --model PATH --mesh SPEC
    Train a learned preconditioner; solve with it and classical ones, print a table.

Modules
-------
* :mod:`~fe_operators.cli.main` — :func:`~fe_operators.cli.main.main`, the console
  script: dispatches to a command, importing only that command's module;
* :mod:`~fe_operators.cli.runner` — :func:`~fe_operators.cli.runner.run_command` and the
  :func:`~fe_operators.cli.runner.command` decorator: the exit statuses (0 success, 1 bad
  input, 2 usage or configuration error, 130 interrupted), one-line errors on stderr,
  printing on MPI rank 0 only;
* :mod:`~fe_operators.cli.generate`, :mod:`~fe_operators.cli.train`,
  :mod:`~fe_operators.cli.evaluate`, :mod:`~fe_operators.cli.precond`,
  :mod:`~fe_operators.cli.mesh`, :mod:`~fe_operators.cli.doctor` — one command each: its
  ``argparse`` parser and its body, calling the library.

Importing this package imports nothing else (``python -m fe_operators.cli`` runs
:func:`~fe_operators.cli.main.main`).
"""
