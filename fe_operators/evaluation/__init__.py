"""Evaluation of a trained model on a dataset, in FE norms, with plots and a .vtu.

The command is ``fe-operators evaluate RUN_DIR --data data.h5 [--split test|all] [--out DIR]
[--problem MODULE:CLASS]`` (:mod:`fe_operators.cli.evaluate`); in Python,
:func:`evaluate_run`.

``RUN_DIR`` is a run folder of ``fe-operators train`` (its ``best.pt`` is used, or
``--checkpoint last``) or a checkpoint file.  Printed (and written to
``evaluation.json``):

* relative L2 and relative H1 errors, mean (and max) over the samples, in the FE norms
  of the dataset's output space (:func:`~fe_operators.train.losses.fe_norm_for_file`);
* the max boundary error: ``max |prediction - truth|`` over the Dirichlet DOFs of every
  sample, relative to ``max |truth|`` there (to ``max |truth|`` overall where the
  boundary data are zero); a SPON's exact lifting makes it 0 (or round-off);
* the number of parameters, and the inference time per sample (batched, after a warm-up
  batch, inputs already in memory);

and written to the output folder: ``samples.png`` (input | truth | prediction | error on
the mesh, for the first, the median and the worst sample by relative L2),
``samples.vtu`` (the same fields, for ParaView) and ``evaluation.json``.

Data and model must agree: the dataset's spaces are checked against those the model was
trained on (element, cell, shape, components), each mismatch an error naming it.  The
dataset records the mesh it was generated on, and evaluation always runs there:

* the training mesh (the DOF numbering of the training data): the model's own mesh
  context;
* another mesh of the domain: a mesh-agnostic model (SPON with the ``gnn`` or
  ``multigrid`` processor) runs with a mesh context built for the dataset's problem on
  its mesh (``other_mesh`` in the result); a fixed-mesh model (``mlp`` processor), or one
  trained with per-DOF normalizers, is refused with an error saying what to do.

``--mesh SPEC`` is not needed; given, it asserts that the dataset was generated on mesh
``SPEC`` (a spec as for ``fe-operators generate``) and that the model is mesh-agnostic.
Non-finite predictions are an error naming how many samples have them.

The problem is rebuilt from the dataset's provenance with
:meth:`~fe_operators.data.FEFile.rebuild_problem`, whose DOF numbering is checked to equal
the stored arrays'; nothing is ever renumbered silently.  A dataset of a problem class of
your own records its ``module:Class``, which is imported only when ``--problem
MODULE:CLASS`` names it: a file never decides what code runs.

Modules: :mod:`~fe_operators.evaluation.run` (:func:`evaluate_run`, the steps in order),
:mod:`~fe_operators.evaluation.checks` (arguments, checkpoint, data against model, the
samples), :mod:`~fe_operators.evaluation.measure` (prediction, timing, FE-norm and
boundary errors), :mod:`~fe_operators.evaluation.files` (plots, .vtu, JSON) and
:mod:`~fe_operators.evaluation.result` (:class:`EvaluationResult`, :func:`format_table`).
"""

from fe_operators.evaluation.checks import resolve_checkpoint
from fe_operators.evaluation.result import EvaluationResult, format_table
from fe_operators.evaluation.run import evaluate_run

__all__ = ["EvaluationResult", "evaluate_run", "format_table", "resolve_checkpoint"]
