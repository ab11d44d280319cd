"""What an evaluation measured (:class:`EvaluationResult`) and its table (:func:`format_table`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EvaluationResult", "format_table"]


@dataclasses.dataclass
class EvaluationResult:
    """What :func:`evaluate_run` measured and wrote.

    Attributes
    ----------
    checkpoint, data, mesh
        The checkpoint file, the dataset file, the dataset's mesh spec.
    split
        ``"test"`` (the run's test split of its training file) or ``"all"``.
    other_mesh
        Whether the model ran on another mesh than its training mesh (the dataset's).
    indices
        File rows evaluated.
    rel_l2, rel_h1
        Per-sample relative errors, ``(n,)``.
    boundary_error
        Max boundary error (see the module docstring).
    n_params
        Number of model parameters.
    ms_per_sample
        Inference milliseconds per sample (batched, warm).
    batch_size
        Samples per forward pass.
    device
        Torch device of the model.
    files
        Written files by kind (``"png"``, ``"vtu"``, ``"json"``).
    notes
        Remarks printed under the table.
    """

    checkpoint: str
    data: str
    mesh: str
    split: str
    other_mesh: bool
    indices: np.ndarray
    rel_l2: np.ndarray
    rel_h1: np.ndarray
    boundary_error: float
    n_params: int
    ms_per_sample: float
    batch_size: int
    device: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def n_samples(self) -> int:
        """Number of samples evaluated."""
        return int(self.indices.size)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``evaluation.json`` holds, without per-sample errors)."""
        return {
            "checkpoint": self.checkpoint, "data": self.data, "mesh": self.mesh, "split": self.split,
            "other_mesh": self.other_mesh, "n_samples": self.n_samples,
            "rel_l2": float(self.rel_l2.mean()), "rel_l2_max": float(self.rel_l2.max()),
            "rel_h1": float(self.rel_h1.mean()), "rel_h1_max": float(self.rel_h1.max()),
            "boundary_error": float(self.boundary_error), "n_params": int(self.n_params),
            "ms_per_sample": float(self.ms_per_sample), "batch_size": int(self.batch_size),
            "device": self.device, "files": dict(self.files), "notes": list(self.notes),
        }


def format_table(result: EvaluationResult) -> str:
    """The result as a small Markdown table with a header line."""
    s = result.summary()
    where = "another mesh, " if result.other_mesh else ""
    rows = [
        ("relative L2 (mean / max)", f"{s['rel_l2']:.4e} / {s['rel_l2_max']:.4e}"),
        ("relative H1 (mean / max)", f"{s['rel_h1']:.4e} / {s['rel_h1_max']:.4e}"),
        ("max boundary error", f"{s['boundary_error']:.3e}"),
        ("parameters", f"{s['n_params']}"),
        ("inference ms/sample", f"{s['ms_per_sample']:.3f} (batch {s['batch_size']}, {s['device']})"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{Path(result.checkpoint).name} of {Path(result.checkpoint).parent} on {result.data}",
             f"({result.split} split, {result.n_samples} samples, {where}mesh {result.mesh})",
             f"| {'metric'.ljust(w0)} | {'value'.ljust(w1)} |", f"|{'-' * (w0 + 2)}|{'-' * (w1 + 2)}|"]
    lines += [f"| {a.ljust(w0)} | {b.ljust(w1)} |" for a, b in rows]
    lines += [f"note: {n}" for n in result.notes]
    if result.files:
        lines.append("wrote " + ", ".join(result.files[k] for k in sorted(result.files)))
    return "\n".join(lines)
