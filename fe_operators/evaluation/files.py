"""The files of an evaluation: ``samples.png``, ``samples.vtu`` and ``evaluation.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fe_operators.evaluation.result import EvaluationResult

__all__ = ["write_files"]


def write_files(result: EvaluationResult, out: Path, file: Any, problem: Any, pred: torch.Tensor,
                 plots: int) -> None:
    """Write ``samples.png`` (first, median, worst), ``samples.vtu`` and ``evaluation.json`` to ``out``."""
    import firedrake as fd

    from fe_operators.io import write_fields

    out.mkdir(parents=True, exist_ok=True)
    rows, rel_l2, n = result.indices, result.rel_l2, result.n_samples
    V = problem.output_space
    order = np.argsort(rel_l2, kind="stable")
    picks = list(dict.fromkeys([0, int(order[n // 2]), int(order[-1])]))[:max(0, min(plots, 3))] or [0]
    inputs_np, output_np = file.read(rows[picks])
    fields: dict[str, Any] = {}
    panels = []
    for j, k in enumerate(picks):
        truth = fd.Function(V, val=output_np[j].reshape(V.dof_dset.size, *V.value_shape))
        guess = fd.Function(V, val=pred[k].numpy().reshape(V.dof_dset.size, *V.value_shape))
        error = fd.Function(V).assign(guess - truth)
        ins = {name: fd.Function(W, val=inputs_np[name][j].reshape(W.dof_dset.size, *W.value_shape))
               for name, W in problem.input_spaces.items()}
        first = next(iter(ins))
        panels.append({f"input {first}": ins[first], "truth": truth, "prediction": guess, "error": error})
        row = int(rows[k])
        fields.update({f"{name}_{row}": f for name, f in ins.items()})
        fields.update({f"truth_{row}": truth, f"prediction_{row}": guess, f"error_{row}": error})
    if plots > 0:
        from fe_operators.errors import UnsupportedSpaceError
        from fe_operators.io.plots import plot_fields

        labels = [f"sample {int(rows[k])}, rel L2 {rel_l2[k]:.2%}" for k in picks]
        try:
            result.files["png"] = str(plot_fields(out / "samples.png", panels, row_labels=labels,
                                                  shared=[("truth", "prediction")],
                                                  title=f"{Path(file.path).name}: truth, prediction, error"))
        except UnsupportedSpaceError as exc:
            result.notes.append(f"no plot: {exc}")
    result.files["vtu"] = str(write_fields(out / "samples.vtu", fields))
    result.files["json"] = str(out / "evaluation.json")
    payload = result.summary()
    payload["indices"] = rows.tolist()
    payload["rel_l2_per_sample"] = rel_l2.tolist()
    payload["rel_h1_per_sample"] = result.rel_h1.tolist()
    (out / "evaluation.json").write_text(json.dumps(payload, indent=1) + "\n")
