"""The metrics log of a run: one row per epoch, written as CSV and JSON.

``metrics.csv`` has one row per finished epoch with the columns ``epoch, step,
train_loss, val_<metric>..., lr, epoch_time, elapsed``; ``metrics.json`` holds the same
rows under ``"epochs"`` plus ``"best"`` (the validation metric that picks ``best.pt``,
its value and epoch) and ``"test"`` (test-split metrics of ``best.pt``, once evaluated).
Both files are rewritten atomically from the in-memory log, which itself travels in
``last.pt``; so after a crash and ``--resume`` they hold exactly the epochs of the
resumed run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

from fe_operators.train.checkpoint import atomic_write

__all__ = ["MetricsLog"]


class MetricsLog:
    """Epoch rows, best-checkpoint summary and test metrics of a run.

    Parameters
    ----------
    run_dir
        Folder of ``metrics.csv`` and ``metrics.json``.
    select
        Name of the column that picks the best checkpoint, e.g. ``"val_rel_l2"``.
    """

    def __init__(self, run_dir: str | os.PathLike, select: str) -> None:
        self.run_dir = Path(run_dir)
        self.select = select
        self.rows: list[dict[str, float | int]] = []
        self.best: dict[str, Any] = {"metric": select, "value": None, "epoch": None}
        self.test: dict[str, float] | None = None

    def append(self, row: Mapping[str, float | int]) -> bool:
        """Add an epoch row; return whether its :attr:`select` value is a new best (lower)."""
        self.rows.append(dict(row))
        value = row.get(self.select)
        if value is None:
            return False
        if self.best["value"] is None or float(value) < self.best["value"]:
            self.best = {"metric": self.select, "value": float(value), "epoch": int(row["epoch"])}
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint."""
        return {"select": self.select, "rows": [dict(r) for r in self.rows], "best": dict(self.best)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.select = state["select"]
        self.rows = [dict(r) for r in state["rows"]]
        self.best = dict(state["best"])

    def write(self) -> None:
        """Rewrite ``metrics.csv`` and ``metrics.json`` atomically."""
        columns: list[str] = []
        for row in self.rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.run_dir / "metrics.csv", lambda f: f.write(buf.getvalue().encode()))
        doc = {"epochs": self.rows, "best": self.best, "test": self.test}
        text = json.dumps(doc, indent=2, allow_nan=True) + "\n"
        atomic_write(self.run_dir / "metrics.json", lambda f: f.write(text.encode()))
